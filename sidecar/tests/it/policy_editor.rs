//! The policy editor page (`/ui/policies`) in Debian's Chromium, driven by playwright-core, against
//! the real binary and a real MQTT client: an admin pastes the key, types an error and sees it at
//! the line the gate names with Deploy disabled, fixes it into a new grant, sees the tests pass
//! and the announced device gain `fleet/#` in the access diff, deploys (a device's SUBSCRIBE to
//! `fleet/#` goes from refused to granted), rolls back (refused again) and dry-runs a publish; no
//! console error (CSP violations show there) and no request leaves 127.0.0.1. Also: the committed
//! bundle under `sidecar/ui/dist` is what its sources build to.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use serde_json::{Value, json};
use test_support::require_tool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::enforcement::mqtt;
use super::harness::TestKey;
use super::nats_callout::announce;
use super::policy_routes::{DEVICE_SUBSCRIBE, edit, shipped_files};
use super::server::{Server, bootstrap};

/// What the script types at the end of the `device_subscribe` line: an error, then (after one
/// Backspace) a grant for devices without a tenant. Announced devices have none; the shipped
/// tests' device has tenant t1, so the tests keep passing.
const FIX: &str = r#" | {"fleet/#" | p.type == "device"; not p.tenant}"#;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped policy as the page leaves it after the fix (Backspace left the space before `|`).
fn fixed_files() -> std::collections::BTreeMap<String, String> {
    let fixed = format!("{DEVICE_SUBSCRIBE} {FIX}");
    edit(&shipped_files(), "broker.rego", DEVICE_SUBSCRIBE, &fixed)
}

/// A copy of the shipped policy (all four files) the server may turn into versions.
fn policies_copy(dir: &Path) -> PathBuf {
    let to = dir.join("policies");
    std::fs::create_dir_all(&to).unwrap();
    for (name, text) in shipped_files() {
        std::fs::write(to.join(name), text).unwrap();
    }
    to
}

async fn admin_post(
    c: &reqwest::Client,
    s: &Server,
    admin: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = c
        .post(s.url(path))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Before relying on it: the fixed bundle passes the gate and grants the announced device, and
/// only it, `fleet/#`; the device has no tenant.
async fn fix_does_what_the_scenario_says(
    c: &reqwest::Client,
    s: &Server,
    admin: &str,
    device: &str,
) {
    let files = fixed_files();
    let (status, v) = admin_post(c, s, admin, "/policies/validate", json!({"files": files})).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["passed"] == true),
        "{v}"
    );
    let (status, d) = admin_post(
        c,
        s,
        admin,
        "/policies/diff",
        json!({"to": {"files": files}}),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    let changed = d["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "only the announced device changes: {d}");
    assert_eq!(changed[0]["principal"]["id"], device);
    assert!(changed[0]["principal"].get("tenant").is_none(), "{d}");
    assert_eq!(changed[0]["subscribe"]["added"], json!(["fleet/#"]), "{d}");
}

/// SUBSCRIBE `filter` on a live session; the SUBACK's reason.
async fn subscribe(c: &AsyncClient, el: &mut EventLoop, filter: &str) -> SubscribeReasonCode {
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), el.poll())
            .await
            .expect("SUBACK in time")
            .expect("session alive")
        {
            Event::Incoming(Packet::SubAck(a)) => return a.return_codes[0],
            _ => continue,
        }
    }
}

/// A fresh MQTT session of the device; its SUBSCRIBE to `fleet/#`.
async fn fresh_subscribe(port: u16, id: &str, token: &str) -> SubscribeReasonCode {
    let (c, mut el) = mqtt(port, id, token).await.expect("connected");
    let code = subscribe(&c, &mut el, "fleet/#").await;
    let _ = c.disconnect().await;
    code
}

fn granted(code: SubscribeReasonCode) -> bool {
    matches!(code, SubscribeReasonCode::Success(_))
}

/// The node script, killed with the test if the test fails first.
fn script(server: &Server, admin: &str, device: &str, node: &Path) -> tokio::process::Child {
    tokio::process::Command::new(node)
        .arg("policy_editor.mjs")
        .current_dir(manifest().join("tests/node"))
        .env("BASE_URL", server.url(""))
        .env("ADMIN_KEY", admin)
        .env("DEVICE_ID", device)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The line after `event` from the script (its stderr when it ended instead).
async fn expect_line(
    out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    child: &mut tokio::process::Child,
    event: &str,
) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(120), out.next_line())
        .await
        .unwrap_or_else(|_| panic!("no `{event}` from the script in 120 s"))
        .unwrap();
    let Some(line) = line else {
        let mut err = String::new();
        let mut stderr = child.stderr.take().unwrap();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
            .await
            .unwrap();
        panic!("the script ended before `{event}`:\n{err}");
    };
    let (name, data) = line.split_once(' ').unwrap_or((&line, "null"));
    assert_eq!(name, event, "{line}");
    serde_json::from_str(data).unwrap()
}

fn require_browser() -> PathBuf {
    let node = require_tool("node", "apt-get install nodejs (Node.js 20 or later)");
    require_tool("chromium", "apt-get update && apt-get install -y chromium");
    assert!(
        manifest()
            .join("tests/node/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is not installed. Run: npm ci --prefix sidecar/tests/node"
    );
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_edits_validates_deploys_and_rolls_back_on_the_page_in_chromium() {
    let node = require_browser();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let policies = policies_copy(dir.path());
    let flags = [
        "--rate-limit",
        "100000/60",
        "--policies",
        policies.to_str().unwrap(),
    ];
    let server = Server::start(&data, &flags);
    let port = server.mqtt_port.unwrap();
    let http = reqwest::Client::new();
    let (device, token) = announce(&http, &server, &TestKey::ed(), 0).await;
    fix_does_what_the_scenario_says(&http, &server, &admin, &device).await;
    // Before the deploy a live session of the device is refused `fleet/#` (so the test can fail).
    let (live, mut live_el) = mqtt(port, "editor-live", &token).await.expect("connected");
    let before = subscribe(&live, &mut live_el, "fleet/#").await;
    assert!(!granted(before), "{before:?}");

    let mut child = script(&server, &admin, &device, &node);
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();

    assert_eq!(
        expect_line(&mut out, &mut child, "deployed").await["version"],
        2
    );
    // The live session's next SUBSCRIBE is granted: a deploy that widens grants reaches live
    // MQTT sessions (within a second), not only their next CONNECT.
    let deployed = std::time::Instant::now();
    loop {
        let code = subscribe(&live, &mut live_el, "fleet/#").await;
        if granted(code) {
            break;
        }
        assert!(
            deployed.elapsed() < Duration::from_secs(1),
            "deployed, yet the live session is refused after {:?}: {code:?}\n{}",
            deployed.elapsed(),
            server.log()
        );
    }
    let after_deploy = fresh_subscribe(port, "editor-after-deploy", &token).await;
    assert!(granted(after_deploy), "a new session: {after_deploy:?}");
    stdin.write_all(b"continue\n").await.unwrap();

    assert_eq!(
        expect_line(&mut out, &mut child, "rolled-back").await["version"],
        3
    );
    // The rollback narrows the live session's grants: it is closed, and a new one is refused.
    let took = super::enforcement::mqtt_closed(&mut live_el).await;
    assert!(
        took < Duration::from_secs(1),
        "closed {took:?} after the rollback"
    );
    let after_rollback = fresh_subscribe(port, "editor-after-rollback", &token).await;
    assert!(
        !granted(after_rollback),
        "rolled back, yet granted: {after_rollback:?}"
    );
    stdin.write_all(b"continue\n").await.unwrap();

    let report = expect_line(&mut out, &mut child, "report").await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the script failed");
    check_report(&report, &server, &device);
}

fn check_report(r: &Value, server: &Server, device: &str) {
    let s = &r["signIn"];
    assert_eq!(s["keyInSession"], true, "{s}");
    assert_eq!(s["keyFieldCleared"], true, "{s}");
    assert_eq!(s["deployDisabledUnchanged"], true, "{s}");
    assert_eq!(s["files"].as_array().unwrap().len(), 4, "{s}");
    check_broken(&r["broken"]);
    let f = &r["fixed"];
    assert_eq!(f["problemsLeft"], 0, "{f}");
    assert_eq!(f["testsFailed"], 0, "{f}");
    assert!(f["testsPassed"].as_u64().unwrap() >= 18, "{f}");
    assert_eq!(f["deployEnabled"], true, "{f}");
    assert_eq!(f["changedPrincipals"], json!([device]), "{f}");
    assert_eq!(f["device"]["type"], "device", "{f}");
    assert_eq!(
        f["device"]["gains"],
        json!([
            "subscribe fleet/#",
            "NATS subscribe fleet",
            "NATS subscribe fleet.>"
        ]),
        "{f}"
    );
    assert_eq!(f["device"]["losses"], json!([]), "{f}");
    assert_eq!(r["deployed"]["deployDisabledAfter"], true, "{r}");
    assert_eq!(r["deployed"]["history"], json!(["2", "1"]), "{r}");
    assert_eq!(
        r["rolledBack"]["editorHasTheFix"], false,
        "the editor shows version 3: {r}"
    );
    // The dry run: the device may publish under its own id, not under another's.
    assert_eq!(r["allowed"]["principal"]["id"], device, "{r}");
    assert_eq!(r["allowed"]["decision"], "allow", "{r}");
    let fired: Vec<&str> = r["allowed"]["fired"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(fired.contains(&"data.broker.mqtt.acl.allow"), "{fired:?}");
    assert_eq!(r["denied"]["decision"], "deny", "{r}");
    assert_eq!(
        r["consoleErrors"],
        json!([]),
        "console errors (CSP violations show there)"
    );
    assert_eq!(r["pageErrors"], json!([]));
    // Chromium's own line for each 4xx answer: the typed error's 422s, nothing else.
    let network = r["networkErrors"].as_array().unwrap();
    assert!(
        !network.is_empty()
            && network.iter().all(|e| e["status"] == 422
                && e["url"].as_str().unwrap().ends_with("/policies/validate")),
        "{network:?}"
    );
    let origin = server.url("/");
    let requests = r["requests"].as_array().unwrap();
    assert!(requests.len() > 10, "{requests:?}");
    let away: Vec<&Value> = requests
        .iter()
        .filter(|u| !u.as_str().unwrap().starts_with(&origin))
        .collect();
    assert!(away.is_empty(), "requests that left {origin}: {away:?}");
}

/// The error is listed, marked in the editor and in the gutter at the line the gate's 422 names:
/// the edited line, or the next line with code on it (regorus reports an unfinished expression
/// where the next token fails to parse; only blank and comment lines may lie between).
fn check_broken(b: &Value) {
    let shown = b["listed"]["line"].as_u64().unwrap();
    assert_eq!(b["listed"]["file"], "broker.rego", "{b}");
    assert_eq!(b["problem422"]["file"], "broker.rego", "{b}");
    assert_eq!(
        b["problem422"]["line"].as_u64(),
        Some(shown),
        "the page shows the gate's line: {b}"
    );
    assert_eq!(b["markedLine"].as_u64(), Some(shown), "{b}");
    assert_eq!(b["gutterMarkerLine"].as_u64(), Some(shown), "{b}");
    assert_eq!(b["deployDisabled"], true, "{b}");
    let edited = b["editedLine"].as_u64().unwrap();
    let broker = &shipped_files()["broker.rego"];
    let lines: Vec<&str> = broker.lines().collect();
    assert_eq!(lines[edited as usize - 1], DEVICE_SUBSCRIBE, "{b}");
    assert!(shown >= edited && shown - edited <= 6, "{b}");
    for l in &lines[edited as usize..shown as usize - 1] {
        let l = l.trim();
        assert!(
            l.is_empty() || l.starts_with('#'),
            "code between the edit and line {shown}: {l:?}"
        );
    }
}

/// The committed bundle is what `npm run build` makes of `sidecar/ui/src` (the binary includes
/// `sidecar/ui/dist`, so a source edit without a rebuild would ship the old page).
#[test]
fn the_committed_bundle_is_built_from_its_sources() {
    let node = require_tool("node", "apt-get install nodejs (Node.js 20 or later)");
    let ui = manifest().join("ui");
    assert!(
        ui.join("node_modules/esbuild").is_dir(),
        "the editor's build tools are not installed. Run: npm ci --prefix sidecar/ui"
    );
    let out = tempfile::tempdir().unwrap();
    let built = std::process::Command::new(node)
        .arg("build.mjs")
        .arg(out.path())
        .current_dir(&ui)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let dist = ui.join("dist");
    assert_eq!(names(out.path()), names(&dist));
    for name in names(&dist) {
        let same = std::fs::read(out.path().join(&name)).unwrap()
            == std::fs::read(dist.join(&name)).unwrap();
        assert!(
            same,
            "sidecar/ui/dist/{name} is not what its sources build to. Run: npm run build --prefix sidecar/ui, and commit dist/"
        );
    }
}
