use super::*;
use crate::store::{SledStore, Store};

fn provisioner(dir: &std::path::Path) -> Provisioner {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let policy = broker_auth_runtime::policy_dir::load_dir(&policies).unwrap();
    let p = Provisioner::new(
        nkeys::KeyPair::new_operator(),
        MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap(),
        store,
        Some(broker_auth_runtime::LiveAuth::new(
            broker_auth::token::KeySet::new(vec![]),
            broker_auth::token::Verifier::new(broker_auth::token::TokenConfig::new("i", "a")),
            Default::default(),
            policy,
            1,
        )),
        Names::default(),
    );
    p.ensure_account(SYS, "SYS", 1_800_000_000).unwrap();
    p.ensure_account(CONTROL, "CONTROL", 1_800_000_000).unwrap();
    p
}

#[test]
fn a_principal_the_policy_grants_nothing_is_not_minted() {
    let dir = tempfile::tempdir().unwrap();
    let p = provisioner(dir.path());
    p.ensure_account("t1", "t1", 1_800_000_000).unwrap();
    let nobody = Provisioner::principal("x", None, "visitor");
    let r = p.ensure_user("t1/x", "t1", &nobody, 1_800_000_000);
    assert!(matches!(r, Err(SidecarError::Forbidden(_))));
    assert!(p.store.nats_user("t1/x").unwrap().is_none());
    let sensor = Provisioner::principal("s1", Some("t1"), "sensor");
    let u = p
        .ensure_user("t1/s1", "t1", &sensor, 1_800_000_000)
        .unwrap();
    assert!(u.created && u.creds.contains("SU"));
    let again = p
        .ensure_user("t1/s1", "t1", &sensor, 1_800_000_001)
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.creds, u.creds);
}

#[test]
fn seeds_open_only_with_their_key_and_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = provisioner(dir.path());
    let (t1, created) = p.ensure_account("t1", "t1", 1_800_000_000).unwrap();
    assert!(created);
    let kp = p.unseal("t1", &t1.seed).unwrap();
    assert_eq!(kp.public_key(), t1.public_key);
    // The record id is the associated data: a seed moved to another record does not open.
    assert!(p.unseal("t2", &t1.seed).is_err());
    let wrong = Provisioner {
        seeds: MasterKey::from_base64("HxwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgEAAAA=").unwrap(),
        ..provisioner(tempfile::tempdir().unwrap().path())
    };
    assert!(wrong.unseal("t1", &t1.seed).is_err());
    // Create-or-return: the second call returns the stored account.
    let (again, created) = p.ensure_account("t1", "other name", 1_800_000_001).unwrap();
    assert!(!created);
    assert_eq!(again.public_key, t1.public_key);
}

#[test]
fn revocation_is_recorded_in_the_account_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let p = provisioner(dir.path());
    p.ensure_account("t1", "t1", 1_800_000_000).unwrap();
    let sensor = Provisioner::principal("s1", Some("t1"), "sensor");
    let u = p
        .ensure_user("t1/s1", "t1", &sensor, 1_800_000_000)
        .unwrap();
    assert!(p.revoke("t1", "not-a-key", 1_800_000_100).is_err());
    let acc = p.revoke("t1", &u.record.public_key, 1_800_000_100).unwrap();
    let claims = nats_jwt::decode_at::<Account>(&acc.jwt, None).unwrap();
    assert_eq!(
        claims.nats.revocations.get(&u.record.public_key),
        Some(&1_800_000_100)
    );
    // Re-provisioning a revoked sensor gives it a new key.
    let fresh = p
        .ensure_user("t1/s1", "t1", &sensor, 1_800_000_200)
        .unwrap();
    assert!(fresh.created);
    assert_ne!(fresh.record.public_key, u.record.public_key);
}
