//! Wycheproof Ed25519 and ECDSA P-256 vectors against `identity::PublicKey`.
//!
//! Our verification is stricter than plain ECDSA in one documented way: high-S signatures are
//! refused (they are malleated twins). So a vector Wycheproof calls valid must verify unless its
//! S is high; every invalid vector must fail.

use broker_auth::identity::PublicKey;
use wycheproof::TestResult;

#[test]
fn ed25519_vectors() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut checked = 0;
    for group in set.test_groups {
        let key = PublicKey::from_bytes(&group.key.pk);
        for t in group.tests {
            let ok = key.as_ref().is_ok_and(|k| k.verify(&t.msg, &t.sig).is_ok());
            match t.result {
                TestResult::Valid => assert!(ok, "tc {} ({}) should verify", t.tc_id, t.comment),
                TestResult::Invalid => {
                    assert!(!ok, "tc {} ({}) must be rejected", t.tc_id, t.comment)
                }
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} vectors");
}

fn is_high_s(sig: &p256::ecdsa::Signature) -> bool {
    sig.normalize_s().is_some()
}

fn ecdsa_vectors(name: wycheproof::ecdsa::TestName, raw: bool) {
    let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
    let (mut valid, mut high_s, mut invalid) = (0, 0, 0);
    for group in set.test_groups {
        let key = PublicKey::from_bytes(&group.key.key);
        for t in group.tests {
            let ok = key.as_ref().is_ok_and(|k| k.verify(&t.msg, &t.sig).is_ok());
            let parsed = if raw {
                p256::ecdsa::Signature::from_slice(&t.sig).ok()
            } else {
                p256::ecdsa::Signature::from_der(&t.sig).ok()
            };
            match t.result {
                TestResult::Valid => {
                    if parsed.as_ref().is_some_and(is_high_s) {
                        assert!(!ok, "tc {}: high-S must be refused", t.tc_id);
                        high_s += 1;
                    } else {
                        assert!(ok, "tc {} ({}) should verify", t.tc_id, t.comment);
                        valid += 1;
                    }
                }
                TestResult::Invalid => {
                    assert!(!ok, "tc {} ({}) must be rejected", t.tc_id, t.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    assert!(
        valid > 10 && invalid > 10,
        "valid {valid} high-S {high_s} invalid {invalid}"
    );
}

#[test]
fn ecdsa_p256_der_vectors() {
    ecdsa_vectors(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256, false);
}

#[test]
fn ecdsa_p256_p1363_vectors() {
    ecdsa_vectors(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363, true);
}
