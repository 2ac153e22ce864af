//! `sidecar callout-keys`: the two key pairs of a config-mode auth callout, made once.
//!
//! nats-server's `auth_callout` block names two public keys: the `issuer` account key whose
//! signature it accepts on responses, and the `xkey` curve key it seals requests to. The responder
//! (in `serve` or the standalone `callout`) holds their seeds. This command makes both seeds (mode
//! 0600, never overwritten) and writes `callout-keys.conf` with the two public keys, for a
//! nats-server configuration to `include` inside its `auth_callout` block — so a deployment (the
//! compose file's `keys` service) gets its own keys instead of the examples in `docker/`.
//!
//! Run again on the same directory it changes nothing and prints the same keys: it is safe as a
//! start-up step.

use std::path::{Path, PathBuf};

use broker_auth_runtime::secret_file::{read_private, write_private};

use crate::error::SidecarError;

/// The account seed that signs callout responses.
pub const ISSUER_SEED: &str = "issuer.seed";
/// The curve seed requests are sealed to.
pub const XKEY_SEED: &str = "xkey.seed";
/// The public halves, as nats-server configuration lines.
pub const CONF: &str = "callout-keys.conf";

/// What `callout-keys` left in its directory.
#[derive(Debug, PartialEq, Eq)]
pub struct CalloutKeys {
    /// The issuer account's public key (`A…`).
    pub issuer: String,
    /// The curve public key (`X…`).
    pub xkey: String,
    /// The configuration file written.
    pub conf: PathBuf,
}

/// Make the seeds in `dir` unless they exist, and (re)write the configuration lines from them.
pub fn ensure(dir: &Path) -> Result<CalloutKeys, SidecarError> {
    let issuer = seed(&dir.join(ISSUER_SEED), || {
        nkeys::KeyPair::new_account().seed()
    })?;
    let issuer = nkeys::KeyPair::from_seed(&issuer)
        .map_err(|e| bad_seed(dir, ISSUER_SEED, e))?
        .public_key();
    if !issuer.starts_with('A') {
        return Err(SidecarError::config(format!(
            "{}: not an account seed (SA…)",
            dir.join(ISSUER_SEED).display()
        )));
    }
    let xkey = seed(&dir.join(XKEY_SEED), || nkeys::XKey::new().seed())?;
    let xkey = nkeys::XKey::from_seed(&xkey)
        .map_err(|e| bad_seed(dir, XKEY_SEED, e))?
        .public_key();
    let conf = dir.join(CONF);
    let text = format!(
        "# Written by `sidecar callout-keys`: the public halves of {ISSUER_SEED} and {XKEY_SEED}.\n\
         # Include it inside nats-server's `auth_callout` block.\n\
         issuer: {issuer}\n\
         xkey: {xkey}\n"
    );
    write_whole(&conf, &text)?;
    Ok(CalloutKeys { issuer, xkey, conf })
}

/// Write a configuration file whole or not at all (a temporary file beside it, then a rename):
/// nats-server may read it while a second run rewrites it.
pub(crate) fn write_whole(path: &Path, text: &str) -> Result<(), SidecarError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| SidecarError::config_from(dir.display().to_string(), e))?;
    }
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| SidecarError::config_from(path.display().to_string(), e))
}

/// The seed in `path`, made by `make` when the file does not exist.
fn seed(
    path: &Path,
    make: impl FnOnce() -> Result<String, nkeys::error::Error>,
) -> Result<String, SidecarError> {
    match read_private(path) {
        Ok(s) => Ok(s),
        Err(e) if e.is_missing() => {
            let s = make().map_err(|e| SidecarError::config(format!("generate a key: {e}")))?;
            write_private(path, format!("{s}\n").as_bytes())
                .map_err(|e| SidecarError::config_from("", e))?;
            Ok(s)
        }
        Err(e) => Err(SidecarError::config_from("", e)),
    }
}

fn bad_seed(dir: &Path, name: &str, e: nkeys::error::Error) -> SidecarError {
    SidecarError::config(format!("{}: {e}", dir.join(name).display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_private_and_the_same_on_a_second_run() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path()).unwrap();
        assert!(first.issuer.starts_with('A') && first.xkey.starts_with('X'));
        for name in [ISSUER_SEED, XKEY_SEED] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let conf = std::fs::read_to_string(&first.conf).unwrap();
        assert!(
            conf.contains(&format!("issuer: {}\n", first.issuer)),
            "{conf}"
        );
        assert!(conf.contains(&format!("xkey: {}\n", first.xkey)), "{conf}");
        assert_eq!(
            ensure(dir.path()).unwrap(),
            first,
            "a second run keeps the keys"
        );
    }

    #[test]
    fn a_readable_or_wrong_seed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(ISSUER_SEED);
        // A user seed is a valid nkey but not an account: responses signed by it would be refused.
        let user = nkeys::KeyPair::new_user().seed().unwrap();
        write_private(&p, user.as_bytes()).unwrap();
        assert!(
            ensure(dir.path())
                .unwrap_err()
                .to_string()
                .contains("account seed")
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            ensure(dir.path())
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
    }
}
