//! What the sidecar's broker keeps, tried with paho-mqtt (v3.1.1 and v5) against `sidecar
//! serve`: a shared group of two gets every command once, and retained messages are kept in
//! the data directory across a restart and reach a late subscriber only through its grants.

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::mqtt_sessions::{announce, paho_script, superuser};
use super::server::{Server, bootstrap};

/// Run one phase of `tests/py/mqtt_state.py`; its JSON observations.
fn paho(server: &Server, phase: &str, proto: u8, args: &[&str]) -> Value {
    paho_script("mqtt_state.py", server, phase, proto, args)
}

#[test]
fn a_shared_group_of_two_receives_each_message_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let server = Server::start(&data, &[]);
    let c = Client::new();
    let root = superuser(&c, &server, &admin);
    let (device, token) = announce(&c, &server);
    for proto in [3, 5] {
        let r = paho(&server, "shared", proto, &[&token, &device, &root, "10"]);
        assert_eq!(r["suback"], json!([[1], [1]]), "v{proto}: {r}");
        let received = r["received"].as_array().unwrap();
        let mut all: Vec<&str> = received
            .iter()
            .flat_map(|m| m.as_array().unwrap())
            .map(|b| b.as_str().unwrap())
            .collect();
        all.sort_unstable();
        let mut want: Vec<String> = (0..10).map(|i| format!("job-{i}")).collect();
        want.sort_unstable();
        assert_eq!(all, want, "v{proto}: every message once: {r}");
        assert!(
            received.iter().all(|m| !m.as_array().unwrap().is_empty()),
            "v{proto}: both members take part: {r}"
        );
    }
}

#[test]
fn retained_messages_survive_a_restart_and_follow_the_grants() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let mut server = Server::start(&data, &[]);
    let c = Client::new();
    let (device, token) = announce(&c, &server);
    let (other, other_token) = announce(&c, &server);
    let config = format!("devices/{device}/cmd/config");
    let marker = format!("devices/{device}/cmd/zz-marker");
    let other_marker = format!("devices/{other}/cmd/zz-marker");
    paho(&server, "retain", 3, &[&token, &config, "interval=60"]);
    paho(&server, "retain", 5, &[&token, &marker, "-"]);
    paho(&server, "retain", 3, &[&other_token, &other_marker, "-"]);
    // Refused at the PUBLISH hook (another device's topic), so never stored.
    paho(
        &server,
        "retain",
        3,
        &[&token, &format!("devices/{other}/cmd/x"), "hijack"],
    );

    let stopped = server.terminate().expect("the sidecar exits on SIGTERM");
    assert!(stopped.success(), "{stopped}");
    let server = Server::start(&data, &[]);
    let root = superuser(&c, &server, &admin);
    for proto in [3, 5] {
        let own = format!("devices/{device}/cmd/#");
        let r = paho(&server, "late", proto, &[&token, &marker, &own]);
        assert_eq!(r["suback"], json!([[1]]), "v{proto}: {r}");
        assert_eq!(
            r["messages"],
            json!([[config, "interval=60"]]),
            "v{proto}: {r}"
        );
        assert_eq!(r["retained"], json!([config]), "v{proto}: {r}");

        // Without the grant: no SUBACK success, none of the device's messages, and its own
        // filter has its own marker but not the refused hijack.
        let theirs = format!("devices/{other}/cmd/#");
        let r = paho(
            &server,
            "late",
            proto,
            &[&other_token, &other_marker, &own, &theirs],
        );
        // paho reports v3.1.1's failure code 0x80 as it is, v5's "not authorized" as 0x87.
        let refused = if proto == 5 { 0x87 } else { 0x80 };
        assert_eq!(r["suback"], json!([[refused], [1]]), "v{proto}: {r}");
        assert_eq!(r["messages"], json!([]), "v{proto}: {r}");

        // A superuser sees every retained message there is: the hijack was never stored.
        let r = paho(&server, "late", proto, &[&root, &other_marker, "devices/#"]);
        assert_eq!(
            r["messages"],
            json!([[config, "interval=60"], [marker, "-"]]),
            "v{proto}: {r}"
        );
    }
    // An empty retained payload clears the topic.
    paho(&server, "retain", 3, &[&token, &config, ""]);
    let r = paho(
        &server,
        "late",
        3,
        &[&token, &marker, &format!("devices/{device}/cmd/#")],
    );
    assert_eq!(r["messages"], json!([]), "cleared: {r}");
}
