//! The one record encoding (`broker_auth::shared_store`: a version byte, then JSON), with the
//! tree a failure happened in. JSON keeps records readable with any dump tool; the version byte
//! lets a future format coexist and makes a newer record an error here.

use broker_auth::shared_store;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CodecError, StoreError};

pub fn encode<T: Serialize>(tree: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    shared_store::encode(v).map_err(|e| corrupt(tree, e.into()))
}

pub fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    shared_store::decode(bytes).map_err(|e| corrupt(tree, e.into()))
}

pub fn corrupt(tree: &'static str, source: CodecError) -> StoreError {
    StoreError::Corrupt { tree, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_its_tree() {
        let e = decode::<Vec<i32>>("revocations", &[2, b'[', b']']).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Corrupt {
                    tree: "revocations",
                    ..
                }
            ),
            "{e}"
        );
    }
}
