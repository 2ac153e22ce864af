//! MQTT sessions belong to the identity that made them, tried as the security pass did: paho-mqtt
//! (v3.1.1 and v5) against `sidecar serve`, a superuser's persisted session, a freshly announced
//! device as the intruder, and a policy edit that shrinks a device's grants between two
//! connections of its own session.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::harness::TestKey;
use super::mqtt_e2e::{python_with_paho, register_and_login};
use super::server::{Server, bootstrap};

/// Run one phase of `tests/py/mqtt_sessions.py`; its JSON observations.
fn paho(server: &Server, phase: &str, proto: u8, args: &[&str]) -> Value {
    paho_script("mqtt_sessions.py", server, phase, proto, args)
}

/// Run one phase of the paho script `tests/py/<name>` against `server`'s broker.
pub(super) fn paho_script(
    name: &str,
    server: &Server,
    phase: &str,
    proto: u8,
    args: &[&str],
) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name);
    let out = Command::new(python_with_paho())
        .arg(script)
        .args([
            phase,
            "127.0.0.1",
            &server.mqtt_port.unwrap().to_string(),
            &proto.to_string(),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{phase} v{proto}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Announce a fresh device key, as anyone may by default; (device address, access token).
pub(super) fn announce(c: &Client, server: &Server) -> (String, String) {
    let key = TestKey::ed();
    let ts = test_support::unix_now();
    let sig = key.sign(format!("announce:{}:{ts}", key.public()).as_bytes());
    let r: Value = c
        .post(server.url("/v1/announce"))
        .json(&json!({"public_key": key.public(), "timestamp": ts, "signature": sig}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    (
        r["device_address"].as_str().expect("announced").to_owned(),
        r["access_token"].as_str().unwrap().to_owned(),
    )
}

/// An `internal` identity with scope `mqtt.admin` (an MQTT superuser); its access token.
pub(super) fn superuser(c: &Client, server: &Server, admin: &str) -> String {
    let body = json!({"type": "internal", "scopes": ["mqtt.admin"]});
    register_and_login(c, server, admin, &TestKey::p256(), body).1
}

fn metrics(c: &Client, server: &Server) -> String {
    c.get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The shipped policies, copied where the test may edit them.
fn own_policies(dir: &Path) -> PathBuf {
    let to = dir.join("policies");
    std::fs::create_dir_all(&to).unwrap();
    let from = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for f in ["broker.rego", "mqtt_acl.rego"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    to
}

#[test]
fn another_identity_cannot_take_over_an_mqtt_session_and_the_owner_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let server = Server::start(&data, &[]);
    let c = Client::new();
    let root = superuser(&c, &server, &admin);
    let (publisher, publisher_token) = announce(&c, &server);
    let (_, intruder) = announce(&c, &server);
    for proto in [3, 5] {
        let cid = format!("monitor-v{proto}");
        let r = paho(
            &server,
            "takeover",
            proto,
            &[&cid, &root, &publisher_token, &publisher, &intruder],
        );
        // paho 2 reports the v3.1.1 return code 5 as the v5 reason it maps to (0x87).
        let refused = 0x87;
        assert_eq!(r["victim_first"], json!([0, false]), "v{proto}: {r}");
        for case in ["thief_offline", "thief_clean", "thief_online"] {
            assert_eq!(r[case], json!([refused, false]), "v{proto} {case}: {r}");
        }
        assert_eq!(r["thief_offline_messages"], json!([]), "v{proto}: {r}");
        assert_eq!(r["thief_online_messages"], json!([]), "v{proto}: {r}");
        assert_eq!(
            r["victim_resume"],
            json!([0, true]),
            "v{proto}: the owner's session is still there: {r}"
        );
        let telemetry = format!("devices/{publisher}/telemetry");
        assert_eq!(
            r["victim_queued"],
            json!([[telemetry, "queued"]]),
            "v{proto}: {r}"
        );
        assert_eq!(
            r["victim_live"],
            json!([telemetry, "live"]),
            "v{proto}: {r}"
        );
        assert_eq!(r["victim_kicked"], false, "v{proto}: {r}");
    }
    let m = metrics(&c, &server);
    assert!(
        m.contains("broker_auth_mqtt_connects_refused{reason=\"client_id_in_use\"} 6"),
        "{m}"
    );
}

#[test]
fn a_resumed_session_whose_grants_shrank_receives_nothing_outside_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let policies = own_policies(dir.path());
    let server = Server::start(&data, &["--policies", policies.to_str().unwrap()]);
    let c = Client::new();
    let root = superuser(&c, &server, &admin);
    let devices: Vec<(u8, String, String)> = [3u8, 5]
        .into_iter()
        .map(|proto| {
            let (id, token) = announce(&c, &server);
            (proto, id, token)
        })
        .collect();
    for (proto, id, token) in &devices {
        let r = paho(
            &server,
            "shrink-prepare",
            *proto,
            &[&format!("shrink-v{proto}"), token, id, &root],
        );
        assert_eq!(r["connect"], json!([0, false]), "v{proto}: {r}");
        assert_eq!(r["suback"], json!([[1], [1]]), "v{proto}: {r}");
    }

    // Devices may now only receive firmware commands.
    let broker = policies.join("broker.rego");
    let text = std::fs::read_to_string(&broker).unwrap();
    let narrowed = text.replace(
        r#"device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d])"#,
        r#"device_subscribe(p) := {sprintf("devices/%s/cmd/ota/#", [d])"#,
    );
    assert_ne!(text, narrowed, "the shipped policy changed shape");
    std::fs::write(&broker, narrowed).unwrap();
    let (probe_id, probe) = (&devices[0].1, &devices[0].2);
    let reloaded = test_support::wait_until(Duration::from_secs(20), || {
        let r = c
            .post(server.url("/acl"))
            .bearer_auth(probe)
            .json(&json!({"topic": format!("devices/{probe_id}/cmd/#"), "acc": 4, "clientid": "probe"}))
            .send()
            .unwrap();
        r.status().as_u16() == 403
    });
    assert!(reloaded, "the sidecar never loaded the edited policy");

    for (proto, id, token) in &devices {
        let r = paho(
            &server,
            "shrink-resume",
            *proto,
            &[&format!("shrink-v{proto}"), token, id, &root],
        );
        assert_eq!(
            r["connect"],
            json!([0, true]),
            "v{proto}: resumed its own session: {r}"
        );
        let ota = format!("devices/{id}/cmd/ota/");
        let all = r["all"].as_array().unwrap();
        assert!(
            all.iter().all(|m| m[0].as_str().unwrap().starts_with(&ota)),
            "v{proto}: a message outside the new grants: {r}"
        );
        assert_eq!(
            all.iter().filter(|m| m[1] == "marker").count(),
            1,
            "v{proto}: the kept subscription still delivers: {r}"
        );
    }
    let m = metrics(&c, &server);
    for line in [
        "broker_auth_mqtt_inherited_dropped{kind=\"subscription\"} 2",
        "broker_auth_mqtt_inherited_dropped{kind=\"message\"} 2",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
}
