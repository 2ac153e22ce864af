//! `sidecar policy …` against the shipped policies and a deliberately broken copy.

use std::path::PathBuf;
use std::process::{Command, Output};

fn sidecar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sidecar"))
        .args(args)
        .env_remove("POLICY_DIR")
        .output()
        .unwrap()
}

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn shipped_policies_check_and_test_green() {
    let dir = shipped();
    let o = sidecar(&["policy", "check", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Rvm"), "{}", text(&o));
    let o = sidecar(&["policy", "test", dir.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

fn broken_copy(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(shipped()).unwrap() {
        let f = f.unwrap().path();
        let body = std::fs::read_to_string(&f).unwrap();
        let body = if f.ends_with("broker.rego") {
            edit(body)
        } else {
            body
        };
        std::fs::write(dir.path().join(f.file_name().unwrap()), body).unwrap();
    }
    dir
}

#[test]
fn a_syntax_error_fails_with_file_line_col() {
    let dir = broken_copy(|s| {
        s.replace(
            "superuser_scopes := {\"mqtt.admin\"}",
            "superuser_scopes := {\"mqtt.admin\"",
        )
    });
    for cmd in ["check", "test"] {
        let o = sidecar(&["policy", cmd, dir.path().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = text(&o);
        let file = dir.path().join("broker.rego");
        let prefix = format!("{}:", file.display());
        let at = err
            .find(&prefix)
            .unwrap_or_else(|| panic!("no file in: {err}"));
        let loc: Vec<&str> = err[at + prefix.len()..].splitn(3, ':').collect();
        assert!(
            loc[0].parse::<u32>().is_ok() && loc[1].parse::<u32>().is_ok(),
            "no line:col in: {err}"
        );
    }
}

#[test]
fn a_failing_policy_test_fails_the_command() {
    // Devices now publish under the wrong prefix: the Rego unit tests must notice.
    let dir = broken_copy(|s| s.replace("\"devices/%s/#\"", "\"device/%s/#\""));
    let o = sidecar(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("FAIL data.broker_test.test_device_publishes_under_its_own_id"),
        "{}",
        text(&o)
    );
}

#[test]
fn eval_prints_the_decision_and_explains_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    std::fs::write(
        &input,
        r#"{"principal": {"id": "dev-D1", "type": "device", "roles": [], "scopes": [], "groups": [], "protocol": "mqtt"},
            "clientid": "c1", "topic": "devices/dev-D2/x", "acc": 2, "action": "publish"}"#,
    )
    .unwrap();
    let pol = shipped();
    let o = sidecar(&[
        "policy",
        "eval",
        "--input",
        input.to_str().unwrap(),
        "--policies",
        pol.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["value"], false);

    std::fs::write(
        &input,
        r#"{"principal": {"id": "dev-D1", "type": "device", "protocol": "mqtt"}}"#,
    )
    .unwrap();
    let o = sidecar(&[
        "policy",
        "eval",
        "--input",
        input.to_str().unwrap(),
        "--policies",
        pol.to_str().unwrap(),
        "--explain",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["value"]["publish"][0], "devices/dev-D1/#");
    let fired: Vec<&str> = v["fired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(fired.contains(&"data.broker.grants"), "{fired:?}");

    // Not JSON, and a missing file: clear errors, exit 2.
    std::fs::write(&input, "{not json").unwrap();
    let o = sidecar(&[
        "policy",
        "eval",
        "--input",
        input.to_str().unwrap(),
        "--policies",
        pol.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("not JSON"));
    let o = sidecar(&["policy", "eval", "--input", "/nonexistent.json"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn diff_prints_who_gains_and_who_loses_between_two_directories() {
    // Devices without a tenant also subscribe `fleet/#` (the shipped tests' device has one).
    let new = broken_copy(|s| {
        s.replace(
            r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)}"#,
            r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)} | {"fleet/#" | p.type == "device"; not p.tenant}"#,
        )
    });
    let principals = new.path().join("principals.jsonl");
    std::fs::write(
        &principals,
        "# one per line\n{\"id\": \"dev-A1\", \"type\": \"device\"}\n\n{\"id\": \"dev-T1\", \"type\": \"device\", \"tenant\": \"t1\"}\n",
    )
    .unwrap();
    let old = shipped();
    let (old, new_dir) = (old.to_str().unwrap(), new.path().to_str().unwrap());
    let o = sidecar(&[
        "policy",
        "diff",
        old,
        new_dir,
        "--principals",
        principals.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["principals_examined"], 2);
    let changed = v["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "only the device without a tenant: {v}");
    assert_eq!(changed[0]["principal"]["id"], "dev-A1");
    assert_eq!(
        changed[0]["subscribe"]["added"],
        serde_json::json!(["fleet/#"])
    );
    assert_eq!(changed[0]["subscribe"]["removed"], serde_json::json!([]));
    // Without principals: one of every type × shipped role; the same policy changes nobody.
    let o = sidecar(&["policy", "diff", old, old]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["principals_examined"].as_u64().unwrap() >= 40, "{v}");
    assert_eq!(v["changed"], serde_json::json!([]));
    // A bundle that fails the gate is refused, with where.
    let broken = broken_copy(|s| s.replace("grants := grants_for(input.principal)", "grants := ("));
    let o = sidecar(&["policy", "diff", old, broken.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("broker.rego:"), "{}", text(&o));
}
