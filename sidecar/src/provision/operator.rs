//! `sidecar init-operator`: the one-time bootstrap of a NATS operator deployment.
//!
//! Makes the operator key pair (seed written 0600, JWT beside it), the SYS account and the
//! CONTROL account (stored with encrypted seeds), and prints the nats-server configuration block
//! that points the server at our resolver, so a person can start nats-server in one step.

use std::io::Write;
use std::path::{Path, PathBuf};

use broker_auth::nats_jwt::{self, NatsClaims, Operator};

use super::{CONTROL, Provisioner, SYS};
use crate::error::SidecarError;

fn cfg(path: &Path, e: impl std::fmt::Display) -> SidecarError {
    SidecarError::Config(format!("{}: {e}", path.display()))
}

/// Write `text` to a new file with mode 0600 (refusing to overwrite an existing seed).
fn write_secret_file(path: &Path, text: &str) -> Result<(), SidecarError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| cfg(dir, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| cfg(path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| cfg(path, e))
}

/// Read the operator seed, refusing a file group or others can read.
pub fn load_operator(path: &Path) -> Result<nkeys::KeyPair, SidecarError> {
    let seed = callout::config::read_seed(path).map_err(|e| SidecarError::Config(e.to_string()))?;
    let kp = nkeys::KeyPair::from_seed(&seed).map_err(|_| cfg(path, "is not an nkeys seed"))?;
    if !kp.public_key().starts_with('O') {
        return Err(cfg(path, "is not an operator seed (SO...)"));
    }
    Ok(kp)
}

/// What `init-operator` made.
pub struct Initialized {
    pub seed_path: PathBuf,
    pub jwt_path: PathBuf,
    pub system_account: String,
    pub config_block: String,
}

/// Make the operator, SYS and CONTROL; `provisioner_for` builds the provisioner on the new key.
pub fn init(
    seed_path: &Path,
    resolver_url: &str,
    now: i64,
    provisioner_for: impl FnOnce(nkeys::KeyPair) -> Provisioner,
) -> Result<Initialized, SidecarError> {
    if seed_path.exists() {
        return Err(cfg(
            seed_path,
            "already exists; this deployment has an operator (remove it to start over)",
        ));
    }
    let operator = nkeys::KeyPair::new_operator();
    let seed = operator
        .seed()
        .map_err(|e| SidecarError::Internal(e.to_string()))?;
    let public = operator.public_key();
    let p = provisioner_for(
        nkeys::KeyPair::from_seed(&seed).map_err(|e| SidecarError::Internal(e.to_string()))?,
    );
    let names = p.names.clone();
    let (sys, _) = p.ensure_account(SYS, "SYS", now)?;
    p.ensure_account(CONTROL, &names.control_account, now)?;
    let mut op = NatsClaims::<Operator>::new(public);
    op.name = "broker-auth".into();
    op.nats.system_account = Some(sys.public_key.clone());
    op.nats.account_server_url = Some(resolver_url.to_owned());
    let jwt = nats_jwt::encode(&mut op, &operator, now)
        .map_err(|e| SidecarError::Internal(e.to_string()))?;
    write_secret_file(seed_path, &format!("{seed}\n"))?;
    let jwt_path = seed_path.with_extension("jwt");
    std::fs::write(&jwt_path, format!("{jwt}\n")).map_err(|e| cfg(&jwt_path, e))?;
    let config_block = format!(
        "# nats-server configuration for the broker-auth operator\n\
         operator: {jwt}\n\
         system_account: {sys}\n\
         resolver: URL({url})\n",
        jwt = jwt_path.display(),
        sys = sys.public_key,
        url = resolver_url,
    );
    Ok(Initialized {
        seed_path: seed_path.to_owned(),
        jwt_path,
        system_account: sys.public_key,
        config_block,
    })
}
