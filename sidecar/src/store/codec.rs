//! The one record encoding: a version byte, then JSON. JSON keeps records readable with any sled
//! dump tool; the version byte lets a future format coexist and makes a newer record an error here.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CodecError, StoreError};

const VERSION: u8 = 1;

pub fn encode<T: Serialize>(tree: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![VERSION];
    serde_json::to_writer(&mut out, v).map_err(|e| corrupt(tree, e.into()))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VERSION, body)) => serde_json::from_slice(body).map_err(|e| corrupt(tree, e.into())),
        Some((v, _)) => Err(corrupt(tree, CodecError::Version(*v))),
        None => Err(corrupt(tree, CodecError::Empty)),
    }
}

pub fn corrupt(tree: &'static str, source: CodecError) -> StoreError {
    StoreError::Corrupt { tree, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_byte_guards_the_format() {
        let b = encode("t", &vec![1, 2, 3]).unwrap();
        assert_eq!(b[0], 1);
        assert_eq!(decode::<Vec<i32>>("t", &b).unwrap(), vec![1, 2, 3]);
        let mut newer = b.clone();
        newer[0] = 2;
        assert!(decode::<Vec<i32>>("t", &newer).is_err());
        assert!(decode::<Vec<i32>>("t", &[]).is_err());
        assert!(decode::<Vec<i32>>("t", &[1, b'{']).is_err());
    }
}
