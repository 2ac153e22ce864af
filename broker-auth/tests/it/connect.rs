//! `authorize_connect` with the shipped policy: the connect-time decision every adapter uses.

use rand_core::OsRng;
use std::sync::Arc;

use broker_auth::decision::{ConnectContext, authorize_connect};
use broker_auth::grants::Action;
use broker_auth::revocation::RevocationSet;
use broker_auth::token::{Claims, KeySet, TokenAlg, TokenConfig, TokenKey, TokenUse, Verifier};
use broker_auth::{Decision, DenyCode, Protocol};

const NOW: i64 = 1_800_000_000;

struct World {
    keys: KeySet,
    verifier: Verifier,
    revocations: RevocationSet,
    policy: broker_auth::policy::PolicySet,
    cfg: TokenConfig,
}

fn world() -> World {
    let cfg = TokenConfig::new("https://auth.test", "broker-auth");
    World {
        keys: KeySet::new(vec![Arc::new(
            TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap(),
        )]),
        verifier: Verifier::new(cfg.clone()),
        revocations: RevocationSet::new(),
        policy: super::policy::shipped(),
        cfg,
    }
}

impl World {
    fn ctx(&self) -> ConnectContext<'_> {
        ConnectContext {
            verifier: &self.verifier,
            keys: &self.keys,
            revocations: &self.revocations,
            policy: &self.policy,
            cache: None,
            now: NOW,
        }
    }
    fn token(&self, sub: &str, f: impl FnOnce(&mut Claims)) -> String {
        let mut c = Claims::new(&self.cfg, sub, NOW, 3600, TokenUse::Access, &mut OsRng);
        f(&mut c);
        self.keys.sign(&c).unwrap()
    }
}

fn code<T>(d: &Decision<T>) -> Option<DenyCode> {
    d.denial().map(|d| d.code)
}

#[test]
fn a_device_token_yields_its_grants() {
    let w = world();
    let t = w.token("dev-AAAAAAAAAAAAAAAA", |c| c.sid = Some("ann-1".into()));
    let Decision::Permit(p) = authorize_connect(w.ctx(), Some(&t), Protocol::Mqtt, Some("c1"))
    else {
        panic!("expected a permit")
    };
    assert_eq!(p.reason, "authenticated");
    let g = &p.value.grants;
    assert!(g.allows(Action::Publish, "devices/dev-AAAAAAAAAAAAAAAA/temp"));
    assert!(!g.allows(Action::Publish, "devices/dev-BBBBBBBBBBBBBBBB/temp"));
    w.revocations.revoke_session("ann-1", NOW + 3600);
    assert_eq!(
        code(&authorize_connect(w.ctx(), Some(&t), Protocol::Mqtt, None)),
        Some(DenyCode::Revoked)
    );
}

#[test]
fn missing_bad_and_grantless_tokens_are_denied_with_codes() {
    let w = world();
    assert_eq!(
        code(&authorize_connect(w.ctx(), None, Protocol::Nats, None)),
        Some(DenyCode::MissingToken)
    );
    assert_eq!(
        code(&authorize_connect(
            w.ctx(),
            Some("  "),
            Protocol::Nats,
            None
        )),
        Some(DenyCode::MissingToken)
    );
    assert_eq!(
        code(&authorize_connect(
            w.ctx(),
            Some("not.a.jwt"),
            Protocol::Nats,
            None
        )),
        Some(DenyCode::MalformedToken)
    );
    // A user with no roles and no tenant: authenticated, but the policy grants nothing.
    let t = w.token("usr-AAAAAAAAAAAAAAAA", |_| {});
    let d = authorize_connect(w.ctx(), Some(&t), Protocol::Mqtt, None);
    assert_eq!(code(&d), Some(DenyCode::NoGrants));
    assert!(!DenyCode::NoGrants.is_authentication_failure());
    // A subject that would inject wildcards into topics.
    let t = w.token("dev-A/#", |_| {});
    assert_eq!(
        code(&authorize_connect(w.ctx(), Some(&t), Protocol::Mqtt, None)),
        Some(DenyCode::InvalidPrincipal)
    );
}

#[test]
fn superusers_are_marked() {
    let w = world();
    let t = w.token("usr-AAAAAAAAAAAAAAAA", |c| c.groups = vec!["admin".into()]);
    let Decision::Permit(p) = authorize_connect(w.ctx(), Some(&t), Protocol::Mqtt, None) else {
        panic!("expected a permit")
    };
    assert_eq!(p.reason, "superuser");
    assert!(p.value.grants.allows(Action::Subscribe, "$SYS/#"));
}

#[test]
fn a_policy_that_fails_at_connect_denies_and_says_why() {
    let mut w = world();
    // Grants of the wrong shape, for one principal only (the load-time cross-check does not
    // try it).
    w.policy = broker_auth::policy::PolicySet::from_sources(vec![
        broker_auth::policy::PolicySource {
            path: "broken.rego".into(),
            text: "package broker\nimport rego.v1\n\
                   grants := {\"publish\": \"devices/#\"} if input.principal.id == \"dev-BOOMBOOMBOOMBOOM\"\n"
                .into(),
        },
        broker_auth::policy::PolicySource {
            path: "acl.rego".into(),
            text: "package broker.mqtt.acl\nallow := false\n".into(),
        },
    ])
    .unwrap();
    let t = w.token("dev-BOOMBOOMBOOMBOOM", |_| {});
    let d = authorize_connect(w.ctx(), Some(&t), Protocol::Mqtt, Some("c1"));
    let denial = d.denial().expect("denied");
    assert_eq!(denial.code, DenyCode::PolicyError);
    assert!(denial.detail.contains("wrong shape"), "{}", denial.detail);
}
