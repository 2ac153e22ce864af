//! The coverage-guided fuzz targets (`fuzz/`, a workspace of its own, libFuzzer on stable Rust):
//! `bash fuzz/run.sh --budget 10 --jobs 2` from the repository root builds them, replays every
//! regression input and fuzzes each default target for 10 s. It must exit 0, and every default
//! target must report executions and coverage, so a build that links no engine or instruments
//! nothing fails here instead of passing quietly.

use std::collections::BTreeMap;
use std::process::Command;

use broker_auth_journeys::repo;

/// The targets `run.sh` runs by default, read from its `default_targets=(...)` line.
fn default_targets() -> Vec<String> {
    let script = std::fs::read_to_string(repo().join("fuzz/run.sh")).unwrap();
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix("default_targets=("))
        .expect("fuzz/run.sh has a default_targets=(...) line");
    line.trim_end_matches(')')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `RESULT target=NAME key=value ...` lines, by target.
fn results(stdout: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| {
            let fields: BTreeMap<String, String> = l
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (fields["target"].clone(), fields)
        })
        .collect()
}

#[test]
fn every_fuzz_target_runs_clean_with_coverage() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    test_support::require_tool(&cxx, "apt-get install -y g++");
    let out = Command::new("bash")
        .args(["fuzz/run.sh", "--budget", "10", "--jobs", "2"])
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    assert!(
        out.status.success(),
        "fuzz/run.sh failed ({}):\n{stdout}\n--- stderr (end) ---\n{}",
        out.status,
        tail(&stderr)
    );
    let results = results(&stdout);
    let targets = default_targets();
    assert!(targets.len() >= 5, "default targets: {targets:?}");
    for t in &targets {
        let r = results
            .get(t)
            .unwrap_or_else(|| panic!("{t} reported no RESULT line:\n{stdout}"));
        assert_eq!(r["status"], "ok", "{t}: {r:?}");
        for key in ["execs", "cov", "ft"] {
            let n: u64 = r[key].parse().unwrap_or(0);
            assert!(
                n > 0,
                "{t} reported {key}={}: no engine or no coverage\n{stdout}",
                r[key]
            );
        }
    }
}
