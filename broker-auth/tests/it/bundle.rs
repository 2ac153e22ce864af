//! Bundles, the deploy gate and the access diff, on the shipped policy and edited copies of it.

use std::collections::BTreeMap;

use broker_auth::identity::IdentityType;
use broker_auth::policy::bundle::{Bundle, BundleError, MAX_FILE_BYTES, gate};
use broker_auth::policy::diff::access_diff;
use broker_auth::policy::{Evaluator, PolicySet};
use broker_auth::{Principal, Protocol};
use sha2::{Digest, Sha256};

use crate::policy::shipped_dir;

pub fn shipped_files() -> BTreeMap<String, String> {
    broker_auth_runtime::policy_dir::read_bundle(&shipped_dir())
        .unwrap()
        .files()
        .clone()
}

fn edited(file: &str, from: &str, to: &str) -> Bundle {
    let mut files = shipped_files();
    let text = files.get_mut(file).unwrap();
    assert!(text.contains(from), "{file} no longer contains {from:?}");
    *text = text.replacen(from, to, 1);
    Bundle::new(files).unwrap()
}

#[test]
fn the_hash_is_sha256_of_sorted_names_and_bytes_with_nul_separators() {
    let files = BTreeMap::from([
        ("b.rego".to_owned(), "package b\n".to_owned()),
        ("a.rego".to_owned(), "package a\n".to_owned()),
    ]);
    let bundle = Bundle::new(files).unwrap();
    let mut h = Sha256::new();
    h.update(b"a.rego\0package a\n\0b.rego\0package b\n\0");
    let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(bundle.hash(), want);
    // One byte more in one file is another hash.
    let other = edited("broker.rego", "package broker", "package broker ");
    assert_ne!(
        other.hash(),
        Bundle::new(shipped_files()).unwrap().hash(),
        "an edit must change the hash"
    );
}

#[test]
fn files_that_cannot_be_a_bundle_are_refused_before_any_rego_is_read() {
    let one = |name: &str, text: &str| Bundle::new(BTreeMap::from([(name.into(), text.into())]));
    for bad in [
        "../x.rego",
        "a/b.rego",
        ".hidden.rego",
        "x.txt",
        ".rego",
        "",
        "x.rego\0",
    ] {
        assert!(
            matches!(one(bad, "package x"), Err(BundleError::BadName(_))),
            "{bad:?} must be refused"
        );
    }
    assert!(matches!(
        one("x.rego", &"#".repeat(MAX_FILE_BYTES + 1)),
        Err(BundleError::FileTooLarge { .. })
    ));
    assert!(matches!(
        Bundle::new(BTreeMap::new()),
        Err(BundleError::FileCount(0))
    ));
    let many: BTreeMap<_, _> = (0..65)
        .map(|i| (format!("p{i}.rego"), "package p".to_owned()))
        .collect();
    assert!(matches!(Bundle::new(many), Err(BundleError::FileCount(65))));
    assert!(matches!(
        one("data.json", "[1]"),
        Err(BundleError::BadData(_))
    ));
    assert!(matches!(
        one("data.json", "{"),
        Err(BundleError::BadData(_))
    ));
    assert!(one("data.json", "{}").is_ok() && one("x_test.rego", "package x").is_ok());
}

#[test]
fn the_shipped_bundle_passes_the_gate_with_every_test_run() {
    let g = gate(&Bundle::new(shipped_files()).unwrap()).unwrap();
    assert_eq!(g.set.evaluator(), Evaluator::Rvm);
    assert!(g.tests.outcomes.len() >= 15, "{:?}", g.tests);
    assert_eq!(g.tests.failed(), 0);
}

#[test]
fn a_syntax_error_is_refused_at_its_file_line_and_column() {
    let bundle = edited(
        "broker.rego",
        "grants := grants_for(input.principal)",
        "grants := grants_for(input.principal",
    );
    let line = bundle.files()["broker.rego"]
        .lines()
        .position(|l| l.starts_with("grants := grants_for(input.principal"))
        .unwrap() as u32
        + 1;
    let r = gate(&bundle).unwrap_err();
    let p = &r.problems[0];
    assert_eq!(p.file.as_deref(), Some("broker.rego"), "{r:?}");
    // regorus reports an unclosed call where it notices it: at the next token after the edit.
    assert!(
        (line..=line + 2).contains(&p.line),
        "{r:?} (edit at {line})"
    );
    assert!(p.col >= 1 && !p.message.is_empty(), "{r:?}");
    assert!(r.tests.is_empty());
}

#[test]
fn a_failing_test_is_refused_by_name_at_its_line() {
    // Devices lose their command subscription: the shipped tests say they must have it.
    let bundle = edited(
        "broker.rego",
        r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)}"#,
        r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p); false}"#,
    );
    let r = gate(&bundle).unwrap_err();
    let failed: Vec<_> = r.tests.iter().filter(|t| !t.passed).collect();
    assert!(!failed.is_empty(), "{r:?}");
    assert!(
        r.tests.iter().any(|t| t.passed),
        "the others still ran and passed"
    );
    let first = failed[0];
    assert!(r.message.contains(&first.rule), "{}", r.message);
    let p = r
        .problems
        .iter()
        .find(|p| p.message.contains(&first.rule))
        .unwrap();
    let (file, line) = first.location.rsplit_once(':').unwrap();
    assert_eq!(p.file.as_deref(), Some(file));
    assert_eq!(p.line.to_string(), line);
    let text = &bundle.files()[file];
    let at = text.lines().nth(p.line as usize - 1).unwrap();
    assert!(
        first.rule.ends_with(at.split([' ', '(']).next().unwrap()),
        "the problem points at the rule's line: {at:?}"
    );
}

#[test]
fn data_json_is_data_for_both_evaluators() {
    let mut files = shipped_files();
    files.insert(
        "data.json".into(),
        r#"{"fleet": {"extra": "fleet/announcements"}}"#.into(),
    );
    let broker = files.get_mut("broker.rego").unwrap();
    *broker = broker.replacen(
        "subscribe_patterns(p) := ((device_subscribe(p)",
        "subscribe_patterns(p) := (({data.fleet.extra | p.type == \"device\"} | device_subscribe(p)",
        1,
    );
    let set = PolicySet::from_bundle(&Bundle::new(files).unwrap()).unwrap();
    assert_eq!(
        set.evaluator(),
        Evaluator::Rvm,
        "the RVM sees data too: {:?}",
        set.warnings()
    );
    let g = set.grants(&device("dev-D1")).unwrap();
    assert!(
        g.source()
            .subscribe
            .contains(&"fleet/announcements".to_owned()),
        "{:?}",
        g.source()
    );
}

fn device(id: &str) -> Principal {
    principal(id, IdentityType::Device, None, &[])
}

fn principal(id: &str, kind: IdentityType, tenant: Option<&str>, roles: &[&str]) -> Principal {
    Principal {
        id: id.into(),
        kind,
        tenant: tenant.map(Into::into),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        scopes: vec![],
        groups: vec![],
        devices: vec![],
        client_id: None,
        protocol: Protocol::Mqtt,
    }
}

#[test]
fn the_access_diff_names_exactly_who_gains_and_who_loses() {
    let shipped = PolicySet::from_bundle(&Bundle::new(shipped_files()).unwrap()).unwrap();
    let mut files = shipped_files();
    let broker = files.get_mut("broker.rego").unwrap();
    *broker = broker
        .replacen(
            r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)}"#,
            r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)} | {"fleet/#" | p.type == "device"}"#,
            1,
        )
        .replacen(
            r#"has_role(p, "writer"); t := tenant_of(p)"#,
            "false; t := tenant_of(p)",
            1,
        );
    let changed = PolicySet::from_bundle(&Bundle::new(files).unwrap()).unwrap();
    let people = [
        device("dev-D1"),
        principal("gw-G1", IdentityType::Gateway, None, &[]),
        principal("usr-W", IdentityType::User, Some("t1"), &["writer"]),
        principal("usr-R", IdentityType::User, Some("t1"), &["reader"]),
    ];
    let diff = access_diff(&shipped, &changed, &people);
    let got: Vec<_> = diff
        .iter()
        .map(|d| {
            (
                d.principal.id.as_str(),
                d.publish.added.clone(),
                d.publish.removed.clone(),
                d.subscribe.added.clone(),
                d.subscribe.removed.clone(),
                d.nats_subscribe.added.clone(),
                d.nats_publish.removed.clone(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (
                "dev-D1",
                s(&[]),
                s(&[]),
                s(&["fleet/#"]),
                s(&[]),
                // MQTT `#` also matches its parent, so NATS gets both.
                s(&["fleet", "fleet.>"]),
                s(&[])
            ),
            (
                "usr-W",
                s(&[]),
                s(&["tenants/t1/#"]),
                s(&[]),
                s(&[]),
                s(&[]),
                s(&["tenants.t1", "tenants.t1.>"])
            ),
        ],
        "the gateway and the reader keep what they had"
    );
    assert!(diff.iter().all(|d| !d.superuser.from && !d.superuser.to));
    assert!(
        access_diff(&shipped, &shipped, &people).is_empty(),
        "a set against itself changes nothing"
    );
}
