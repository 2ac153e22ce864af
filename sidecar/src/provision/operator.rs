//! `sidecar init-operator`: the one-time bootstrap of a NATS operator deployment.
//!
//! Makes the operator key pair (seed written 0600, JWT beside it), the SYS account and the
//! CONTROL account (stored with encrypted seeds), and prints the nats-server configuration block
//! that points the server at our resolver, so a person can start nats-server in one step.

use std::path::{Path, PathBuf};

use broker_auth::nats_jwt::{self, NatsClaims, Operator};
use broker_auth_runtime::secret_file::{read_private, write_private};

use super::{CONTROL, Provisioner, SYS};
use crate::error::SidecarError;

fn cfg(path: &Path, what: &str) -> SidecarError {
    SidecarError::config(format!("{}: {what}", path.display()))
}

fn internal(e: impl Into<crate::error::Cause>) -> SidecarError {
    SidecarError::internal_from("", e)
}

/// Read the operator seed, refusing a file group or others can read.
pub fn load_operator(path: &Path) -> Result<nkeys::KeyPair, SidecarError> {
    let seed = read_private(path).map_err(|e| SidecarError::config_from("", e))?;
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
    let seed = operator.seed().map_err(internal)?;
    let public = operator.public_key();
    let p = provisioner_for(nkeys::KeyPair::from_seed(&seed).map_err(internal)?);
    let names = p.names.clone();
    let (sys, _) = p.ensure_account(SYS, "SYS", now)?;
    p.ensure_account(CONTROL, &names.control_account, now)?;
    let mut op = NatsClaims::<Operator>::new(public);
    op.name = "broker-auth".into();
    op.nats.system_account = Some(sys.public_key.clone());
    op.nats.account_server_url = Some(resolver_url.to_owned());
    let jwt = nats_jwt::encode(&mut op, &operator, now).map_err(internal)?;
    // Never overwrites: an existing seed is refused above, and a race loses here.
    write_private(seed_path, format!("{seed}\n").as_bytes())
        .map_err(|e| SidecarError::config_from("", e))?;
    let jwt_path = seed_path.with_extension("jwt");
    std::fs::write(&jwt_path, format!("{jwt}\n"))
        .map_err(|e| SidecarError::config_from(jwt_path.display().to_string(), e))?;
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
