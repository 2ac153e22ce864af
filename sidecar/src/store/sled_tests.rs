//! Tests of the sled backend: uniqueness, durability across reopen, single-use records.

use super::records::*;
use super::sled_store::SledStore;
use super::*;
use broker_auth::identity::{IdentityType, KeyAlgorithm};

fn ident(id: &str, key: &str) -> IdentityRecord {
    IdentityRecord {
        id: id.into(),
        kind: IdentityType::Device,
        key_algorithm: Some(KeyAlgorithm::Ed25519),
        public_key: Some(key.into()),
        upstream: None,
        name: None,
        tenant: None,
        scopes: vec![],
        groups: vec![],
        metadata: Default::default(),
        created_at: 1,
        disabled_at: None,
    }
}

#[test]
fn identities_keys_are_unique_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.insert_identity(&ident("dev-A", "k1")).unwrap();
        assert!(matches!(
            s.insert_identity(&ident("dev-B", "k1")),
            Err(StoreError::Conflict(_))
        ));
        assert!(
            s.identity("dev-B").unwrap().is_none(),
            "nothing half-written"
        );
        s.insert_identity(&ident("dev-C", "k2")).unwrap();
        assert_eq!(s.identity_by_key("k2").unwrap().unwrap().id, "dev-C");
        let page = s.list_identities(Some("dev-A"), 10).unwrap();
        assert_eq!(page.len(), 1);
        futures_lite(s.flush()).unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.identity_count().unwrap(), 2);
}

#[test]
fn challenges_are_single_use_and_signatures_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let c = ChallengeRecord {
        public_key: "k".into(),
        expires_at: 10,
    };
    s.put_challenge("c1", &c).unwrap();
    assert_eq!(s.take_challenge("c1").unwrap(), Some(c));
    assert_eq!(s.take_challenge("c1").unwrap(), None);
    assert!(s.remember_signature(b"sig", 100).unwrap());
    assert!(!s.remember_signature(b"sig", 100).unwrap());
    assert_eq!(s.prune(200).unwrap(), 1);
    assert!(s.remember_signature(b"sig", 300).unwrap());
}

#[test]
fn announcements_replace_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let a1 = AnnouncementRecord {
        id: "ann-1".into(),
        device: "dev-A".into(),
        created_at: 10,
        expires_at: 100,
        ended_at: None,
    };
    assert!(s.open_announcement(&a1).unwrap().is_none());
    let a2 = AnnouncementRecord {
        id: "ann-2".into(),
        created_at: 20,
        ..a1.clone()
    };
    assert_eq!(s.open_announcement(&a2).unwrap().unwrap().id, "ann-1");
    assert_eq!(s.announcement("ann-1").unwrap().unwrap().ended_at, Some(20));
    assert!(
        s.end_announcement("dev-A", "ann-1", 30).unwrap().is_none(),
        "not current"
    );
    assert_eq!(
        s.end_announcement("dev-A", "ann-2", 30)
            .unwrap()
            .unwrap()
            .ended_at,
        Some(30)
    );
}

#[test]
fn revocation_feed_is_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let r = |id: &str| RevocationRecord {
        kind: RevocationKind::Session,
        id: id.into(),
        at: 1,
        until: 2,
        attrs: None,
    };
    let a = s.append_revocation(&r("a")).unwrap();
    let b = s.append_revocation(&r("b")).unwrap();
    assert!(b > a && a > 0);
    let all = s.revocations_since(0, 10).unwrap();
    assert_eq!(
        all.iter().map(|(_, r)| r.id.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(s.revocations_since(a, 10).unwrap().len(), 1);
}

#[test]
fn a_second_process_cannot_open_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let _s = SledStore::open(dir.path()).unwrap();
    // sled's lock is per process; a second open in the same process shares the file lock,
    // so the cross-process case is covered by the binary tests.
    let err = SledStore::open(&dir.path().join("nonexistent\0bad"));
    assert!(err.is_err());
}

fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn pending_steps_are_taken_once_and_codes_are_used_once() {
    use super::oauth_records::*;
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let req = AuthorizeRequest {
        client_id: "cli-A".into(),
        redirect_uri: "https://g/cb".into(),
        state: "s".into(),
        code_challenge: "c".into(),
        scopes: vec![],
        nonce: None,
        challenge: "ch".into(),
    };
    let pending = PendingRecord {
        expires_at: 100,
        step: PendingStep::Authorize(req),
    };
    s.put_pending("p1", &pending).unwrap();
    s.put_pending("p2", &pending).unwrap();
    assert_eq!(s.take_pending("p1").unwrap(), Some(pending));
    assert_eq!(s.take_pending("p1").unwrap(), None);
    // Expired steps are pruned.
    s.prune(101).unwrap();
    assert_eq!(s.take_pending("p2").unwrap(), None);
    let code = AuthCodeRecord {
        client_id: "cli-A".into(),
        redirect_uri: "https://g/cb".into(),
        code_challenge: "c".into(),
        identity_id: "usr-A".into(),
        scopes: vec![],
        nonce: None,
        expires_at: 160,
        used_at: None,
        family: None,
    };
    s.put_code("d", &code).unwrap();
    // Two exchanges read the same record; only the first compare-and-swap wins.
    let mut a = code.clone();
    a.used_at = Some(120);
    a.family = Some("ses-A".into());
    let mut b = code.clone();
    b.used_at = Some(120);
    b.family = Some("ses-B".into());
    assert!(s.use_code("d", &code, &a).unwrap());
    assert!(!s.use_code("d", &code, &b).unwrap());
    assert_eq!(
        s.code("d").unwrap().unwrap().family.as_deref(),
        Some("ses-A")
    );
}

#[test]
fn the_check_finds_torn_records_and_dangling_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    s.insert_identity(&ident("dev-A", "k1")).unwrap();
    let ok = s.check().unwrap();
    assert_eq!((ok.records, ok.index_entries), (1, 1));
    // An index entry whose record is gone: half of a transaction.
    s.keys.insert("k9", "dev-gone").unwrap();
    let e = s.check().unwrap_err().to_string();
    assert!(e.contains("identity_keys") && e.contains("dev-gone"), "{e}");
    s.keys.remove("k9").unwrap();
    // A record cut short.
    s.identities
        .insert("dev-T", &b"\x01{\"id\":\"dev-T\""[..])
        .unwrap();
    assert!(matches!(
        s.check(),
        Err(StoreError::Corrupt {
            tree: "identities",
            ..
        })
    ));
}
