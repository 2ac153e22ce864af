//! Independent implementations: Python `cryptography` signs the login challenge (Ed25519 and
//! P-256) and PyJWT verifies the token from the JWKS alone (EdDSA and ES256 signing keys).

use std::path::PathBuf;
use std::process::Command;

use super::server::{Server, bootstrap};

fn python() -> PathBuf {
    let py = test_support::require_tool(
        "python3",
        "apt-get install python3 (and pip install pyjwt cryptography)",
    );
    let ok = Command::new(&py)
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "PyJWT and cryptography are missing: pip install pyjwt cryptography"
    );
    py
}

#[test]
fn python_clients_log_in_and_pyjwt_verifies_from_the_jwks() {
    let py = python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/interop.py");
    for server_alg in ["EdDSA", "ES256"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // The first signing key is made at bootstrap; give it the algorithm under test.
        let admin = bootstrap_with_alg(&data, server_alg);
        let server = Server::start(
            &data,
            &[
                "--public-url",
                "https://auth.example",
                "--signing-alg",
                server_alg,
            ],
        );
        for client in ["ed25519", "p256"] {
            let out = Command::new(&py)
                .arg(&script)
                .args([
                    &server.url(""),
                    &admin,
                    client,
                    "https://auth.example",
                    "broker-auth",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "server {server_alg}, client {client}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["alg"], server_alg);
        }
    }
}

fn bootstrap_with_alg(data: &std::path::Path, alg: &str) -> String {
    if alg == "EdDSA" {
        return bootstrap(data);
    }
    let key = bootstrap(data);
    // Rotate to an ES256 key before the server starts: it becomes the active signer.
    let out = Command::new(super::server::bin())
        .args([
            "keys",
            "rotate",
            "--data-dir",
            data.to_str().unwrap(),
            "--alg",
            "ES256",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    key
}
