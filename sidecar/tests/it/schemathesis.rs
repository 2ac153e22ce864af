//! Schemathesis (PyPI) against the sidecar binary's own `/openapi.json`: generated, mutated and
//! stateful requests to every documented route, with an admin key; no answer may be a 5xx
//! (quality.md). A fixed seed keeps CI reproducible; run `st` by hand with other seeds for more.

use std::process::Command;

use test_support::require_tool;

use super::server::{Server, bootstrap};

#[test]
fn schemathesis_finds_no_server_error_on_any_documented_route() {
    let st = require_tool("st", "pip install schemathesis");
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrap(dir.path());
    let server = Server::start(
        dir.path(),
        &["--rate-limit", "1000000/60", "--mqtt-listen", "off"],
    );
    let out = Command::new(st)
        .args([
            "run",
            &server.url("/openapi.json"),
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--workers",
            "2",
            "--seed",
            "20261122",
            "--no-color",
        ])
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(stdout.contains("passed"), "{stdout}");
}
