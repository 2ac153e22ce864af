use broker_auth::policy::{PolicySet, PolicySource};
use broker_auth::token::{KeySet, TokenConfig, Verifier};

use super::*;

fn policy() -> PolicySet {
    PolicySet::from_sources(vec![
        PolicySource {
            path: "p.rego".into(),
            text: "package broker\ngrants := {\"superuser\": true}\n".into(),
        },
        PolicySource {
            path: "acl.rego".into(),
            text: "package broker.mqtt.acl\nallow := false\n".into(),
        },
    ])
    .unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(TokenConfig::new("iss", "aud"))
}

#[test]
fn every_change_bumps_its_generation() {
    let live = LiveAuth::new(
        KeySet::new(vec![]),
        verifier(),
        RevocationSet::new(),
        policy(),
        1,
    );
    let mut rx = live.subscribe();
    live.revoke_session("s", 10);
    live.revoke_subject("u", 1, 10);
    live.update_identity("u", 1, IdentityAttrs::default(), 10);
    live.set_policy(policy());
    live.set_keys(KeySet::new(vec![]));
    assert!(rx.has_changed().unwrap());
    let g = *rx.borrow_and_update();
    assert_eq!((g.revocations, g.policy, g.keys), (3, 1, 1));
    assert_eq!(live.revocation_changes(0).0.len(), 3);
    assert_eq!(live.revocation_cursor(), 3);
}

#[test]
fn a_feed_process_is_blind_until_its_first_poll_and_after_the_staleness_window() {
    let live = LiveAuth::with_feed(KeySet::new(vec![]), verifier(), policy(), 1, 30);
    let deny = |now| {
        live.authorize(now, Some("x.y.z"), Protocol::Nats, None)
            .denial()
            .map(|d| d.code)
    };
    assert!(live.is_blind(100));
    assert_eq!(deny(100), Some(DenyCode::RevocationsStale));
    live.feed_ok(100);
    assert!(!live.is_blind(130));
    assert_ne!(
        deny(130),
        Some(DenyCode::RevocationsStale),
        "decided on the token again"
    );
    assert!(live.is_blind(131));
    live.feed_ok(131);
    assert!(!live.is_blind(131));
    let own = LiveAuth::new(
        KeySet::new(vec![]),
        verifier(),
        RevocationSet::new(),
        policy(),
        1,
    );
    assert!(
        !own.is_blind(i64::MAX),
        "a process with its own revocations is never blind"
    );
}
