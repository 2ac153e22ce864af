//! The example signer, run as a program: the key file it makes is private, its public key and
//! signatures verify under the algorithm it was asked for, and a second run reuses the key.
//!
//! This integration test is also why `cargo test --workspace` builds every example program:
//! the README's first session (`tests/it/first_session.rs`) runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Verifier as _;

fn sign(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sign"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "sign {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn ed25519_signatures_verify_under_the_printed_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("me.key");
    let key = key.to_str().unwrap();
    let public = sign(&["--key-file", key, "--alg", "ed25519", "--public"]);
    let mode = std::fs::metadata(key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let signature = sign(&["--key-file", key, "challenge-1"]);
    assert_eq!(public, sign(&["--key-file", key, "--public"]), "key reused");

    let pk: [u8; 32] = STANDARD.decode(&public).unwrap().try_into().unwrap();
    let pk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    let sig: [u8; 64] = STANDARD.decode(&signature).unwrap().try_into().unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    pk.verify(b"challenge-1", &sig).unwrap();
    assert!(
        pk.verify(b"challenge-2", &sig).is_err(),
        "bound to its message"
    );
}

#[test]
fn p256_signatures_are_low_s_and_verify() {
    use p256::ecdsa::signature::Verifier as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("p.key");
    let key = key.to_str().unwrap();
    let public = sign(&["--key-file", key, "--alg", "p256", "--public"]);
    let pk =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&STANDARD.decode(&public).unwrap()).unwrap();
    for msg in ["a", "b", "c", "d"] {
        let sig = STANDARD.decode(sign(&["--key-file", key, msg])).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        assert!(sig.normalize_s().is_none(), "already low-S");
        pk.verify(msg.as_bytes(), &sig).unwrap();
    }
}

#[test]
fn a_message_that_starts_with_a_dash_is_signed_after_a_double_dash() {
    // base64url challenges start with `-` one time in 64: the README passes them after `--`.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("d.key");
    let key = key.to_str().unwrap();
    let public = sign(&["--key-file", key, "--public"]);
    let signature = sign(&["--key-file", key, "--", "-0abc"]);
    let pk: [u8; 32] = STANDARD.decode(&public).unwrap().try_into().unwrap();
    let pk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    let sig: [u8; 64] = STANDARD.decode(&signature).unwrap().try_into().unwrap();
    pk.verify(b"-0abc", &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();
}

#[test]
fn a_missing_message_and_an_unknown_algorithm_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    let key = key.to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sign"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--key-file", key, "--alg", "rsa", "--public"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown algorithm rsa"));
    assert!(
        !std::path::Path::new(key).exists(),
        "no key file for a refused algorithm"
    );
    let out = run(&["--key-file", key]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the message to sign"));
}
