use super::*;
use crate::grants::Grants;
use crate::identity::IdentityType;

fn grants(publish: &[&str]) -> Arc<CompiledGrants> {
    Arc::new(
        CompiledGrants::compile(Grants {
            publish: publish.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap(),
    )
}

fn conn(sub: &str, sid: Option<&str>, iat: UnixTime, exp: UnixTime) -> Arc<LiveConn> {
    Arc::new(LiveConn {
        principal: Principal {
            id: sub.into(),
            kind: IdentityType::Device,
            tenant: None,
            roles: vec![],
            scopes: vec![],
            groups: vec![],
            devices: vec![],
            client_id: Some(format!("{sub}-c")),
            protocol: Protocol::Mqtt,
        },
        subject: sub.into(),
        sid: sid.map(Into::into),
        issued_at: iat,
        exp,
        grants: grants(&[&format!("devices/{sub}/#")]),
    })
}

fn handles(v: Vec<Ended<&'static str>>) -> Vec<(&'static str, EndReason)> {
    let mut v: Vec<_> = v.into_iter().map(|e| (e.handle, e.reason)).collect();
    v.sort_by_key(|(h, _)| *h);
    v
}

#[test]
fn expiry_ends_exactly_the_connections_due() {
    let mut r = Registry::default();
    r.admit(conn("dev-a", None, 0, 100), "a");
    r.admit(conn("dev-b", None, 0, 200), "b");
    assert_eq!(r.next_expiry(), Some(100));
    assert!(r.expire(99).is_empty());
    assert_eq!(handles(r.expire(100)), [("a", EndReason::Expired)]);
    assert_eq!(r.next_expiry(), Some(200));
    assert_eq!(r.len(), 1);
}

#[test]
fn a_subject_revocation_reaches_only_tokens_issued_up_to_its_instant() {
    let mut r = Registry::default();
    r.admit(conn("dev-a", Some("s1"), 10, 1000), "old");
    r.admit(conn("dev-a", Some("s2"), 50, 1000), "new");
    r.admit(conn("dev-b", Some("s3"), 10, 1000), "other");
    let ended = r.revoke(&[Revoked::Subject("dev-a".into(), 30)]);
    assert_eq!(handles(ended), [("old", EndReason::Revoked)]);
    let ended = r.revoke(&[Revoked::Session("s3".into())]);
    assert_eq!(handles(ended), [("other", EndReason::Revoked)]);
    assert!(
        r.revoke(&[Revoked::Identity("dev-a".into(), 99)])
            .is_empty()
    );
    assert_eq!(r.connections_of("dev-a").len(), 1);
}

#[test]
fn forgotten_connections_leave_every_index() {
    let mut r = Registry::default();
    let id = r.admit(conn("dev-a", Some("s1"), 0, 100), "a");
    assert_eq!(r.forget(id), Some("a"));
    assert_eq!(r.forget(id), None);
    assert!(r.is_empty() && r.next_expiry().is_none());
    assert!(r.revoke(&[Revoked::Session("s1".into())]).is_empty());
    assert!(r.connections_of("dev-a").is_empty());
    let b = r.admit(conn("dev-b", None, 0, 100), "b");
    let ended = r.end_all([b, id], EndReason::PolicyChanged);
    assert_eq!(handles(ended), [("b", EndReason::PolicyChanged)]);
}

#[test]
fn narrowing_is_losing_a_topic_or_the_client_id() {
    let c = conn("dev-a", None, 0, 100);
    assert!(!c.narrowed_by(&grants(&["devices/dev-a/#"])));
    assert!(!c.narrowed_by(&grants(&["devices/#"])), "growth keeps it");
    assert!(c.narrowed_by(&grants(&["devices/dev-a/telemetry"])));
    let bound = CompiledGrants::compile(Grants {
        publish: vec!["devices/#".into()],
        client_ids: Some(vec!["dev-b-*".into()]),
        ..Default::default()
    })
    .unwrap();
    assert!(c.narrowed_by(&bound), "its client id is no longer allowed");
}
