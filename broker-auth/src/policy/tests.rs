use super::*;

fn src(path: &str, text: &str) -> PolicySource {
    PolicySource {
        path: path.into(),
        text: text.into(),
    }
}

const MINIMAL: &str = r#"package broker
import rego.v1
grants := {"publish": [sprintf("x/%s", [input.principal.id])]}
"#;
const MINIMAL_ACL: &str = r#"package broker.mqtt.acl
import rego.v1
default allow := false
"#;

#[test]
fn syntax_errors_name_file_line_and_column() {
    let broken = "package broker\nimport rego.v1\ngrants := {\"publish\": [}\n";
    let err = PolicySet::from_sources(vec![
        src("p/broken.rego", broken),
        src("p/acl.rego", MINIMAL_ACL),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("p/broken.rego:3:"), "{err}");
}

#[test]
fn runtime_errors_are_caught_at_load() {
    // Unknown builtin: parses fine, fails when compiled or evaluated.
    let bad = "package broker\nimport rego.v1\ngrants := {\"publish\": [no_such_fn(1)]}\n";
    assert!(PolicySet::from_sources(vec![src("b.rego", bad), src("a.rego", MINIMAL_ACL)]).is_err());
    // Missing entry point.
    assert!(PolicySet::from_sources(vec![src("b.rego", MINIMAL)]).is_err());
    // Grants of the wrong shape.
    let shape = "package broker\nimport rego.v1\ngrants := {\"publish\": \"x/#\"}\n";
    assert!(
        PolicySet::from_sources(vec![src("b.rego", shape), src("a.rego", MINIMAL_ACL)]).is_err()
    );
    assert!(PolicySet::from_sources(vec![]).is_err());
}

#[test]
fn failed_reload_keeps_the_old_set_serving() {
    let good = vec![src("b.rego", MINIMAL), src("a.rego", MINIMAL_ACL)];
    let shared = SharedPolicy::new(PolicySet::from_sources(good).unwrap());
    let before = shared.current();
    assert!(
        shared
            .reload(vec![src("b.rego", "package broker\ngrants := {")])
            .is_err()
    );
    assert!(Arc::ptr_eq(&before, &shared.current()));
    let next = MINIMAL.replace("x/%s", "y/%s");
    shared
        .reload(vec![src("b.rego", &next), src("a.rego", MINIMAL_ACL)])
        .unwrap();
    let p = sample_principal();
    assert_eq!(
        shared.current().grants(&p).unwrap().source().publish,
        vec!["y/dev-SAMPLE"]
    );
}

#[test]
fn test_runner_reports_pass_and_fail() {
    let tests =
        "package t\nimport rego.v1\nimport data.broker\ntest_ok if true\ntest_bad if 1 == 2\n";
    let set = PolicySet::from_sources(vec![
        src("b.rego", MINIMAL),
        src("a.rego", MINIMAL_ACL),
        src("b_test.rego", tests),
    ])
    .unwrap();
    let r = set.run_tests().unwrap();
    assert_eq!((r.passed(), r.failed()), (1, 1));
    assert_eq!(r.outcomes[1].location, "b_test.rego:5");
}
