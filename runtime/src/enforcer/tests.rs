//! The task ends connections when told, with the injected clock (no sleeps: every wait is for an
//! `Ender` call, bounded by a timeout that only a broken task reaches).

use std::time::Duration;

use broker_auth::enforce::{EndReason, LiveConn};
use broker_auth::policy::{PolicySet, PolicySource};
use broker_auth::revocation::{IdentityAttrs, RevocationSet};
use broker_auth::token::{KeySet, TokenConfig, Verifier};
use broker_auth::{Principal, Protocol};
use tokio::sync::mpsc;

use super::*;
use crate::clock::ManualClock;

const NOW: i64 = 1_700_000_000;

const POLICY: &str = r#"package broker
import rego.v1
grants := {"publish": array.concat(dev, rw), "subscribe": rw}
dev := [sprintf("devices/%s/#", [input.principal.id]) | input.principal.type == "device"]
rw := [sprintf("tenants/%s/#", [input.principal.tenant]) | "writer" in input.principal.roles]
"#;

fn policy(text: &str) -> PolicySet {
    PolicySet::from_sources(vec![
        PolicySource {
            path: "broker.rego".into(),
            text: text.into(),
        },
        PolicySource {
            path: "acl.rego".into(),
            text: "package broker.mqtt.acl\nallow := false\n".into(),
        },
    ])
    .unwrap()
}

struct Recorder(mpsc::UnboundedSender<(String, EndReason)>);

impl Ender for Recorder {
    fn end(&self, conn: &LiveConn, reason: EndReason) {
        let _ = self.0.send((conn.subject.clone(), reason));
    }
}

struct World {
    live: LiveAuth,
    clock: Arc<ManualClock>,
    enforcer: Arc<Enforcer>,
    ended: mpsc::UnboundedReceiver<(String, EndReason)>,
    ender: Arc<Recorder>,
    _task: tokio::task::JoinHandle<()>,
}

impl World {
    fn start() -> World {
        let live = LiveAuth::new(
            KeySet::new(vec![]),
            Verifier::new(TokenConfig::new("iss", "aud")),
            RevocationSet::new(),
            policy(POLICY),
            10,
        );
        let clock = Arc::new(ManualClock::at(NOW));
        let enforcer = Arc::new(Enforcer::default());
        let task = spawn(enforcer.clone(), live.clone(), clock.clone());
        let (tx, ended) = mpsc::unbounded_channel();
        World {
            live,
            clock,
            enforcer,
            ended,
            ender: Arc::new(Recorder(tx)),
            _task: task,
        }
    }

    /// Admit `sub` as the policy grants it now.
    fn admit(&self, sub: &str, kind: &str, roles: &[&str], sid: &str, exp: i64) {
        self.admit_with(sub, kind, roles, sid, exp, self.ender.clone());
    }

    fn admit_with(
        &self,
        sub: &str,
        kind: &str,
        roles: &[&str],
        sid: &str,
        exp: i64,
        ender: Arc<dyn Ender>,
    ) {
        let principal = Principal {
            id: sub.into(),
            kind: kind.parse().unwrap(),
            tenant: Some("t1".into()),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            scopes: vec![],
            groups: vec![],
            devices: vec![],
            client_id: None,
            protocol: Protocol::Nats,
        };
        let grants = self.live.policy().grants_cached(&principal).unwrap();
        let conn = LiveConn {
            principal,
            subject: sub.into(),
            sid: Some(sid.into()),
            issued_at: NOW,
            exp,
            grants,
        };
        self.enforcer.admit(Arc::new(conn), ender);
    }

    async fn next_end(&mut self) -> (String, EndReason) {
        tokio::time::timeout(Duration::from_secs(5), self.ended.recv())
            .await
            .expect("an end in time")
            .expect("recorder alive")
    }

    fn nothing_ended(&mut self) -> bool {
        self.ended.try_recv().is_err()
    }
}

#[tokio::test]
async fn the_injected_clock_reaching_exp_ends_the_connection() {
    let mut w = World::start();
    w.admit("dev-a", "device", &[], "s1", NOW + 60);
    w.admit("dev-b", "device", &[], "s2", NOW + 600);
    // Connects accept a token up to `exp` plus the leeway (30 s); so long the connection lives.
    w.clock.advance(89);
    w.clock.advance(1);
    assert_eq!(w.next_end().await, ("dev-a".into(), EndReason::Expired));
    assert!(w.nothing_ended());
    assert_eq!(w.enforcer.len(), 1);
}

#[tokio::test]
async fn revocations_end_what_they_name_when_recorded() {
    let mut w = World::start();
    w.admit("dev-a", "device", &[], "s1", NOW + 600);
    w.admit("dev-b", "device", &[], "s2", NOW + 600);
    w.live.revoke_session("s2", NOW + 600);
    assert_eq!(w.next_end().await, ("dev-b".into(), EndReason::Revoked));
    // A subject revocation before the token's issue time does not reach it.
    w.live.revoke_subject("dev-a", NOW - 1, NOW + 600);
    w.live.revoke_subject("dev-a", NOW, NOW + 600);
    assert_eq!(w.next_end().await, ("dev-a".into(), EndReason::Revoked));
    assert!(w.enforcer.is_empty());
}

#[tokio::test]
async fn a_policy_that_narrows_grants_ends_only_those_connections() {
    let mut w = World::start();
    w.admit("dev-a", "device", &[], "s1", NOW + 600);
    w.admit("usr-w", "user", &["writer"], "s2", NOW + 600);
    // Devices lose publish; writers keep theirs (and devices of course are not writers).
    w.live.set_policy(policy(
        &POLICY.replace(r#""publish": array.concat(dev, rw)"#, r#""publish": rw"#),
    ));
    assert_eq!(
        w.next_end().await,
        ("dev-a".into(), EndReason::PolicyChanged)
    );
    // A policy that only grants more ends nobody; the identity change below is the marker.
    w.live.set_policy(policy(&POLICY.replace(
        r#""subscribe": rw"#,
        r##""subscribe": array.concat(rw, ["#"])"##,
    )));
    w.live.update_identity(
        "usr-w",
        NOW,
        IdentityAttrs {
            kind: None,
            tenant: Some("t1".into()),
            ..Default::default()
        },
        NOW + 600,
    );
    assert_eq!(
        w.next_end().await,
        ("usr-w".into(), EndReason::IdentityChanged)
    );
    assert!(w.nothing_ended());
}

#[tokio::test]
async fn an_identity_change_that_keeps_the_grants_ends_nothing() {
    let mut w = World::start();
    w.admit("usr-w", "user", &["writer"], "s1", NOW + 600);
    w.admit("dev-a", "device", &[], "s2", NOW + 60);
    w.live.update_identity(
        "usr-w",
        NOW,
        IdentityAttrs {
            tenant: Some("t1".into()),
            roles: vec!["writer".into(), "reader".into()],
            ..Default::default()
        },
        NOW + 600,
    );
    // The marker: the next end is the device's expiry, not the user.
    w.clock.advance(90);
    assert_eq!(w.next_end().await, ("dev-a".into(), EndReason::Expired));
    assert_eq!(w.enforcer.len(), 1);
}

/// Records ends through the world's recorder, and what grants grew to.
struct Widening(Arc<Recorder>, mpsc::UnboundedSender<Vec<String>>);

impl Ender for Widening {
    fn end(&self, conn: &LiveConn, reason: EndReason) {
        self.0.end(conn, reason);
    }

    fn widen(&self, grants: &Arc<CompiledGrants>) {
        let _ = self.1.send(grants.source().subscribe.clone());
    }
}

#[tokio::test]
async fn grants_that_grew_are_handed_on_and_a_later_narrowing_is_judged_against_them() {
    let mut w = World::start();
    let (tx, mut widened) = mpsc::unbounded_channel();
    let ender = Arc::new(Widening(w.ender.clone(), tx));
    w.admit_with("dev-a", "device", &[], "s1", NOW + 600, ender);
    let wider = POLICY.replace(
        r#""subscribe": rw"#,
        r#""subscribe": array.concat(rw, ["fleet/#"])"#,
    );
    w.live.set_policy(policy(&wider));
    let grown = tokio::time::timeout(Duration::from_secs(5), widened.recv())
        .await
        .expect("widened in time");
    assert_eq!(grown, Some(vec!["fleet/#".to_owned()]));
    assert!(w.nothing_ended(), "grants that grew end nothing");
    // Back to the first policy: narrower than what the connection holds *now*, so it ends.
    w.live.set_policy(policy(POLICY));
    assert_eq!(
        w.next_end().await,
        ("dev-a".into(), EndReason::PolicyChanged)
    );
}
