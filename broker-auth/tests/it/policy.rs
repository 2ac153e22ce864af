//! The shipped policies: their Rego tests pass, and `allow` agrees with `grants` everywhere.

use std::path::PathBuf;

use broker_auth::grants::Action;
use broker_auth::identity::IdentityType;
use broker_auth::policy::{AclInput, Evaluator, PolicySet};
use broker_auth::{Principal, Protocol};

pub fn shipped_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

pub fn shipped() -> PolicySet {
    broker_auth_runtime::policy_dir::load_dir(&shipped_dir()).unwrap()
}

#[test]
fn shipped_policy_is_served_from_the_rvm() {
    let set = shipped();
    assert_eq!(set.evaluator(), Evaluator::Rvm, "{:?}", set.warnings());
}

#[test]
fn shipped_rego_tests_pass() {
    let report = shipped().run_tests().unwrap();
    for o in report.outcomes.iter().filter(|o| !o.passed) {
        eprintln!("FAIL {} {}: {:?}", o.location, o.rule, o.error);
    }
    assert!(
        report.outcomes.len() >= 15,
        "{} tests found",
        report.outcomes.len()
    );
    assert_eq!(report.failed(), 0);
}

#[test]
fn a_broken_copy_of_the_policy_fails_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(shipped_dir()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let target = dir.path().join("broker.rego");
    let text = std::fs::read_to_string(&target).unwrap();
    std::fs::write(
        &target,
        text.replace(
            "grants := grants_for(input.principal)",
            "grants := grants_for(input.principal",
        ),
    )
    .unwrap();
    let err = broker_auth_runtime::policy_dir::load_dir(dir.path())
        .unwrap_err()
        .to_string();
    let needle = format!("{}:", target.display());
    assert!(err.contains(&needle), "error should name the file: {err}");
    let after = &err[err.find(&needle).unwrap() + needle.len()..];
    let mut nums = after.split(':').take(2).map(|n| n.trim().parse::<u32>());
    assert!(
        nums.next().unwrap().is_ok() && nums.next().unwrap().is_ok(),
        "line and column: {err}"
    );
}

fn principals() -> Vec<Principal> {
    let mut out = Vec::new();
    let role_sets: [&[&str]; 6] = [
        &[],
        &["reader"],
        &["writer"],
        &["sensor"],
        &["backend"],
        &["control-admin"],
    ];
    for kind in broker_auth::identity::ALL_TYPES {
        for roles in role_sets {
            for tenant in [None, Some("t1")] {
                for (scopes, groups) in [
                    (vec![], vec![]),
                    (vec!["mqtt.admin"], vec![]),
                    (vec![], vec!["admin"]),
                ] {
                    let id = match kind {
                        IdentityType::Device => "dev-D1".to_owned(),
                        IdentityType::Gateway => "gw-G1".to_owned(),
                        k => format!("{}X1", k.id_prefix()),
                    };
                    out.push(Principal {
                        id,
                        kind,
                        tenant: tenant.map(str::to_owned),
                        roles: roles.iter().map(|s| s.to_string()).collect(),
                        scopes: scopes.iter().map(|s| s.to_string()).collect(),
                        groups: groups.iter().map(|s| s.to_string()).collect(),
                        devices: if kind == IdentityType::Gateway {
                            vec!["dev-D1".into()]
                        } else {
                            vec![]
                        },
                        client_id: Some("c1".into()),
                        protocol: Protocol::Mqtt,
                    });
                }
            }
        }
    }
    out
}

const TOPICS: &[&str] = &[
    "devices/dev-D1/telemetry",
    "devices/dev-D1",
    "devices/dev-D1/cmd/reboot",
    "devices/dev-D1/cmd/#",
    "devices/dev-D1/cmd/+",
    "devices/dev-D2/telemetry",
    "devices/gw-G1/status",
    "devices/+/cmd/#",
    "devices/#",
    "tenants/t1/a/b",
    "tenants/t1/#",
    "tenants/t2/a",
    "tenants/+/a",
    "rxc/t1/s1/status",
    "rxc/t1/s1/cmd",
    "rxc/+/+/cmd",
    "rxc/+/+/status",
    "rxc/t1/dev-D1/status",
    "$SYS/broker/load",
    "$SYS/#",
    "$share/g/devices/dev-D1/cmd/#",
    "$share/g/tenants/t1/#",
    "$share/g",
    "#",
    "+",
    "+/#",
    "/+/#",
    "/#",
    "/a",
    "a/#/b",
    "a+b/c",
    "",
];

#[test]
fn allow_agrees_with_grants_over_generated_principals_and_topics() {
    let set = shipped();
    let mut checked = 0;
    let mut permits = 0;
    for p in principals() {
        let grants = set.grants(&p).unwrap();
        for topic in TOPICS {
            for action in [Action::Publish, Action::Subscribe, Action::Read] {
                let input = AclInput::new(&p, "c1", action, topic);
                let from_grants = grants.allows(action, topic);
                for ev in [Evaluator::Rvm, Evaluator::Interpreter] {
                    let from_allow = set.eval_allow(&input, ev).unwrap();
                    assert_eq!(
                        from_allow, from_grants,
                        "{ev:?} {action:?} {topic:?} for {} {:?} roles {:?} scopes {:?} groups {:?}",
                        p.id, p.kind, p.roles, p.scopes, p.groups
                    );
                }
                checked += 1;
                permits += from_grants as usize;
            }
        }
    }
    // The table must exercise both answers, or agreement proves nothing.
    assert!(
        permits > 200 && checked - permits > 200,
        "permits {permits} of {checked}"
    );
}

#[test]
fn explain_names_the_rules_that_fired() {
    let set = shipped();
    let input = serde_json::json!({"principal": {"id": "dev-D1", "type": "device", "roles": [], "scopes": ["mqtt.admin"], "groups": [], "protocol": "mqtt"}});
    let e = set.explain("data.broker.grants", &input).unwrap();
    assert_eq!(e.value["superuser"], true);
    assert!(
        e.fired
            .iter()
            .any(|f| f.rule == "data.broker.grants" && f.location.contains("broker.rego:")),
        "{:?}",
        e.fired
    );
    assert!(!e.lines_evaluated.is_empty());
}

fn device_with(client_id: &str, protocol: Protocol) -> Principal {
    Principal {
        id: "dev-D1".into(),
        kind: IdentityType::Device,
        tenant: None,
        roles: vec![],
        scopes: vec![],
        groups: vec![],
        devices: vec![],
        client_id: Some(client_id.into()),
        protocol,
    }
}

#[test]
fn the_grants_cache_shares_client_ids_and_protocols_only_when_the_policy_cannot_read_them() {
    let set = shipped();
    assert_eq!(
        set.cache_keys_on(),
        (false, false),
        "the shipped policy reads neither"
    );
    let a = set
        .grants_cached(&device_with("a", Protocol::Mqtt))
        .unwrap();
    let b = set
        .grants_cached(&device_with("b", Protocol::Nats))
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(set.cache_stats(), (1, 1), "one evaluation for both");

    // A policy that grants by client id gets each client id's own answer.
    let mut sources = broker_auth_runtime::policy_dir::read_dir(&shipped_dir()).unwrap();
    sources.retain(|s| !s.is_test());
    let broker = sources
        .iter_mut()
        .find(|s| s.path.ends_with("/broker.rego"))
        .unwrap();
    let before = broker.text.clone();
    broker.text = before.replace(
        "publish_patterns(p) := (",
        "publish_patterns(p) := {sprintf(\"clients/%s\", [object.get(p, \"client_id\", \"\")])} | (",
    );
    assert_ne!(before, broker.text, "the shipped policy changed shape");
    let set = PolicySet::from_sources(sources).unwrap();
    assert!(set.cache_keys_on().0);
    let a = set
        .grants_cached(&device_with("a", Protocol::Mqtt))
        .unwrap();
    let b = set
        .grants_cached(&device_with("b", Protocol::Mqtt))
        .unwrap();
    assert!(a.allows(Action::Publish, "clients/a") && !a.allows(Action::Publish, "clients/b"));
    assert!(b.allows(Action::Publish, "clients/b") && !b.allows(Action::Publish, "clients/a"));
    let again = set
        .grants_cached(&device_with("a", Protocol::Mqtt))
        .unwrap();
    assert_eq!(again, a);
    assert_eq!(set.cache_stats(), (1, 2));
}
