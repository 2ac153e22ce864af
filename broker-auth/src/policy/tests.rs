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

#[test]
fn an_rvm_divergence_falls_back_to_the_interpreter() {
    // regorus 0.14's RVM returns undefined here (an `else` after an empty `some` iteration),
    // while the interpreter returns the empty set. The set must notice and not serve the RVM.
    let divergent = r#"package broker
import rego.v1
subs(p) := {"x/#"} if {
	some r in p.roles
	r == "reader"
}
else := set()
grants := {"publish": ["a/#"], "subscribe": sort([s | some s in subs(input.principal)])}
"#;
    let set = PolicySet::from_sources(vec![src("b.rego", divergent), src("a.rego", MINIMAL_ACL)])
        .unwrap();
    let p = sample_principal();
    let interp = set.grants_with(&p, Evaluator::Interpreter).unwrap();
    if set.grants_with(&p, Evaluator::Rvm).ok().as_ref() != Some(&interp) {
        assert_eq!(set.evaluator(), Evaluator::Interpreter);
        assert!(!set.warnings().is_empty());
    }
    assert_eq!(set.grants(&p).unwrap(), interp);
    let ok =
        PolicySet::from_sources(vec![src("b.rego", MINIMAL), src("a.rego", MINIMAL_ACL)]).unwrap();
    assert_eq!(ok.evaluator(), Evaluator::Rvm);
}

#[test]
fn grants_are_memoized_per_principal_and_per_set() {
    let set =
        PolicySet::from_sources(vec![src("b.rego", MINIMAL), src("a.rego", MINIMAL_ACL)]).unwrap();
    let p = sample_principal();
    let a = set.grants_cached(&p).unwrap();
    let b = set.grants_cached(&p).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "second call served from the cache");
    let mut other = p.clone();
    other.id = "dev-OTHER".into();
    assert_eq!(
        set.grants_cached(&other).unwrap().source().publish,
        vec!["x/dev-OTHER"]
    );
    // A new set (a reload) computes afresh.
    let again =
        PolicySet::from_sources(vec![src("b.rego", MINIMAL), src("a.rego", MINIMAL_ACL)]).unwrap();
    assert!(!Arc::ptr_eq(&a, &again.grants_cached(&p).unwrap()));
}
