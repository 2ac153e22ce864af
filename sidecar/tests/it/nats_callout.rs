//! `sidecar serve` with `--nats-url`: the in-process responder shares the sidecar's keys and
//! revocations, so a device announced over REST connects to a real nats-server with its token,
//! and deregistering over REST cuts its live NATS connection.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::NatsServer;

use super::harness::TestKey;
use super::server::Server;
use test_support::nats_client::{expect_event as expect, token_client as connect};

pub const ISSUER_SEED: &str = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI";
pub const CURVE_SEED: &str = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4";

/// docker/nats-callout.conf as shipped, on the example keys above.
pub fn nats_config() -> String {
    let issuer = nkeys::KeyPair::from_seed(ISSUER_SEED).unwrap().public_key();
    let curve = nkeys::XKey::from_seed(CURVE_SEED).unwrap().public_key();
    test_support::nats_callout_conf(&issuer, Some(&curve))
}

/// The `sidecar serve` flags of an in-process callout on `nats` (kicks through the system
/// account), with its seed files written into `dir`.
pub fn callout_flags(dir: &std::path::Path, nats: &NatsServer) -> Vec<String> {
    let issuer = seed_file(dir, "issuer.seed", ISSUER_SEED);
    let curve = seed_file(dir, "xkey.seed", CURVE_SEED);
    [
        "--nats-url",
        &nats.url(),
        "--callout-nats-user",
        "auth",
        "--callout-nats-password",
        "auth-pw",
        "--callout-issuer-seed-file",
        &issuer,
        "--callout-xkey-seed-file",
        &curve,
        "--callout-kick-user",
        "sys",
        "--callout-kick-password",
        "sys-pw",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Announce `key` over REST; `nth` makes each announcement's signed timestamp distinct (a
/// signature is usable once). (device address, access token).
pub async fn announce(
    http: &reqwest::Client,
    server: &Server,
    key: &TestKey,
    nth: i64,
) -> (String, String) {
    let ts = test_support::unix_now() + nth;
    let sig = key.sign(format!("announce:{}:{ts}", key.public()).as_bytes());
    let r: Value = http
        .post(server.url("/v1/announce"))
        .json(&json!({"public_key": key.public(), "timestamp": ts, "signature": sig}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        r["device_address"].as_str().expect("announced").to_owned(),
        r["access_token"].as_str().unwrap().to_owned(),
    )
}

pub fn seed_file(dir: &std::path::Path, name: &str, seed: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, seed).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_announced_over_rest_connect_to_nats_and_deregistering_cuts_them() {
    let nats = NatsServer::start(&nats_config());
    let dir = tempfile::tempdir().unwrap();
    let flags = callout_flags(dir.path(), &nats);
    let data = dir.path().join("data");
    let server = tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start(&data, &flags)
    })
    .await
    .unwrap();

    let http = reqwest::Client::new();
    let (device, token) = announce(&http, &server, &TestKey::ed(), 0).await;

    // The responder subscribes in the background; poll until the first connect goes through.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (client, mut events) = loop {
        match connect(&nats.url(), &token).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no connect through the in-process callout: {e}\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await; // poll for the responder's readiness
            }
        }
    };
    // Its grants: its own command subjects, not another device's.
    client
        .subscribe(format!("devices.{device}.cmd.reboot"))
        .await
        .unwrap();
    client
        .subscribe("devices.dev-SOMEONEELSE.cmd.reboot")
        .await
        .unwrap();
    expect(&mut events, "permissions violation", Duration::from_secs(5)).await;

    // Deregister over REST: the live NATS connection is cut within about a second.
    let t = Instant::now();
    let res = http
        .delete(server.url("/v1/announce"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    expect(&mut events, "disconnected", Duration::from_secs(3)).await;
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "cut after {:?}",
        t.elapsed()
    );
    assert!(
        connect(&nats.url(), &token).await.is_err(),
        "the ended announcement's token must not reconnect"
    );
}
