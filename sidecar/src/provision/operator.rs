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

/// What `init-operator` made or found.
pub struct Initialized {
    pub seed_path: PathBuf,
    pub jwt_path: PathBuf,
    pub system_account: String,
    pub config_block: String,
    /// False when the operator seed was already there (nothing was made but the JWT).
    pub created: bool,
}

/// Make the operator, SYS and CONTROL, or find them: safe to run at every start (a compose
/// one-shot). An existing seed is loaded (and refused when it is readable by others or is not an
/// operator's), never replaced; the accounts are kept if the store has them. The operator JWT is
/// signed again each time (same key) and is inlined in the block, so nats-server needs no file
/// of ours: the block works where the sidecar's data directory is not mounted.
pub fn init(
    seed_path: &Path,
    resolver_url: &str,
    now: i64,
    provisioner_for: impl FnOnce(nkeys::KeyPair) -> Provisioner,
) -> Result<Initialized, SidecarError> {
    let (operator, created) = if seed_path.exists() {
        (load_operator(seed_path)?, false)
    } else {
        (nkeys::KeyPair::new_operator(), true)
    };
    let seed = operator.seed().map_err(internal)?;
    let public = operator.public_key();
    let p = provisioner_for(nkeys::KeyPair::from_seed(&seed).map_err(internal)?);
    let names = p.names.clone();
    let (sys, _) = p.ensure_account(SYS, "SYS", now)?;
    p.ensure_account(CONTROL, &names.control_account, now)?;
    let mut op = NatsClaims::<Operator>::new(public.clone());
    op.name = "broker-auth".into();
    op.nats.system_account = Some(sys.public_key.clone());
    op.nats.account_server_url = Some(resolver_url.to_owned());
    let jwt = nats_jwt::encode(&mut op, &operator, now).map_err(internal)?;
    if created {
        // create_new: two first starts racing, one loses here rather than overwriting.
        write_private(seed_path, format!("{seed}\n").as_bytes())
            .map_err(|e| SidecarError::config_from("", e))?;
    }
    let jwt_path = seed_path.with_extension("jwt");
    std::fs::write(&jwt_path, format!("{jwt}\n"))
        .map_err(|e| SidecarError::config_from(jwt_path.display().to_string(), e))?;
    let config_block = format!(
        "# nats-server configuration for the broker-auth operator {public}\n\
         operator: \"{jwt}\"\n\
         system_account: {sys}\n\
         resolver: URL({url})\n",
        sys = sys.public_key,
        url = resolver_url,
    );
    Ok(Initialized {
        seed_path: seed_path.to_owned(),
        jwt_path,
        system_account: sys.public_key,
        config_block,
        created,
    })
}
