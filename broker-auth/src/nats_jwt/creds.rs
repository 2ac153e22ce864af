//! `.creds` files: a user JWT and its seed in the decorated text format of Go's
//! `FormatUserConfig` (five dashes before `BEGIN`, six around `END`), which async-nats and the
//! `nats` CLI read.

use crate::error::{Error, Result};
use crate::secret::SecretString;

/// Write a `.creds` file. The seed must be a user seed (`SU…`) whose public key is the JWT's `sub`.
pub fn format_user_creds(user_jwt: &str, seed: &SecretString) -> Result<String> {
    let kp = nkeys::KeyPair::from_seed(seed.expose().trim())
        .map_err(|_| Error::nats_jwt("invalid seed"))?;
    if !seed.expose().trim().starts_with("SU") {
        return Err(Error::nats_jwt("seed is not a user seed"));
    }
    // A creds file may hold an expired JWT: only structure and signature matter here.
    let claims = super::decode_at::<super::User>(user_jwt, None)?;
    if claims.sub != kp.public_key() {
        return Err(Error::nats_jwt("seed does not match the JWT subject"));
    }
    Ok(format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
************************* IMPORTANT *************************\n\
NKEY Seed printed below can be used to sign and prove identity.\n\
NKEYs are sensitive and should be treated as secrets.\n\n\
-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
*************************************************************\n",
        jwt = user_jwt.trim(),
        seed = seed.expose().trim()
    ))
}

/// Read a `.creds` file into (JWT, seed). Tolerates CRLF and surrounding text, as Go does.
pub fn parse_creds(text: &str) -> Result<(String, SecretString)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if is_fence(line) && line.contains("BEGIN") {
            let body = lines.by_ref().find(|l| !l.is_empty()).unwrap_or_default();
            let end = lines.next().unwrap_or_default();
            if !(is_fence(end) && end.contains("END")) || body.is_empty() {
                return Err(Error::nats_jwt("malformed creds block"));
            }
            blocks.push(body.to_owned());
        }
    }
    match blocks.as_slice() {
        [jwt, seed, ..] => {
            if !jwt
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
            {
                return Err(Error::nats_jwt("malformed JWT in creds"));
            }
            nkeys::KeyPair::from_seed(seed)
                .map_err(|_| Error::nats_jwt("invalid seed in creds"))?;
            Ok((jwt.clone(), SecretString::new(seed.clone())))
        }
        _ => Err(Error::nats_jwt("creds need a JWT block and a seed block")),
    }
}

fn is_fence(line: &str) -> bool {
    line.len() > 6 && line.starts_with("---") && line.ends_with("---")
}
