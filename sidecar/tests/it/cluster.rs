//! The cluster test of `scale-out.md`, on loopback: three nats-server nodes in one cluster (R3
//! buckets, `sync_interval: always`), two sidecars on `--store nats` seeded with all three.
//! Registrations run at both sidecars while one node is killed with SIGKILL: every write a
//! sidecar acknowledged is readable afterwards from both, both keep writing on the two nodes
//! left, and the node rejoins. Then sidecar A is killed and B serves on.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use test_support::{NatsServer, free_port, http_get, wait_until};

use super::harness::TestKey;
use super::mqtt_e2e::login;
use super::server::{Server, bin};

const KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn node_conf(dir: &Path, n: usize, cluster_ports: &[u16]) -> String {
    let routes: Vec<String> = cluster_ports
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect();
    format!(
        "server_name: n{n}\njetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
         cluster {{ name: broker_auth_test, listen: 127.0.0.1:{}, routes: [{}] }}\n",
        dir.join(format!("js{n}")).display(),
        cluster_ports[n],
        routes.join(", ")
    )
}

/// Three nodes started at once (none is healthy before a quorum exists).
fn cluster(dir: &Path) -> (Vec<NatsServer>, Vec<String>) {
    let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let confs: Vec<String> = (0..3).map(|n| node_conf(dir, n, &cluster_ports)).collect();
    let nodes: Vec<NatsServer> = std::thread::scope(|s| {
        let hs: Vec<_> = confs
            .iter()
            .map(|c| s.spawn(move || NatsServer::start(c)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (nodes, confs)
}

fn flags(urls: &str) -> Vec<String> {
    [
        "--store",
        "nats",
        "--store-nats-url",
        urls,
        "--store-replicas",
        "3",
        "--key-encryption-key",
        KEK,
        "--store-timeout-ms",
        "3000",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn bootstrap(data: &Path, urls: &str) -> String {
    let out = std::process::Command::new(bin())
        .arg("bootstrap")
        .args(["--data-dir", data.to_str().unwrap()])
        .args(flags(urls))
        .env_remove("KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

fn register(c: &Client, at: &Server, admin: &str, key: &TestKey) -> Option<String> {
    let res = c
        .post(at.url("/identity/register"))
        .bearer_auth(admin)
        .json(&json!({"public_key": key.public(), "type": "user"}))
        .timeout(Duration::from_secs(10))
        .send()
        .ok()?;
    if res.status().as_u16() != 201 {
        return None;
    }
    let body: Value = res.json().ok()?;
    Some(body["identity_id"].as_str()?.to_owned())
}

/// Register at A and B in turn until `stop`; the ids each acknowledged.
fn writer(
    c: Client,
    servers: [Arc<Server>; 2],
    admin: String,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(id) = register(&c, &servers[i % 2], &admin, &TestKey::ed()) {
            acked.push(id);
        }
        i += 1;
    }
    acked
}

#[test]
fn three_nodes_two_sidecars_one_node_killed_under_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, confs) = cluster(dir.path());
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    let urls = urls.join(",");
    let admin = bootstrap(&dir.path().join("a"), &urls);
    let mut f = flags(&urls);
    // The writer below is one address registering as fast as it can.
    f.extend(["--rate-limit".to_owned(), "100000/60".to_owned()]);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let a = Arc::new(Server::start(&dir.path().join("a"), &f));
    let b = Arc::new(Server::start(&dir.path().join("b"), &f));
    let c = Client::new();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = {
        let (c, servers, admin, stop, acked) = (
            c.clone(),
            [a.clone(), b.clone()],
            admin.clone(),
            stop.clone(),
            acked.clone(),
        );
        std::thread::spawn(move || {
            acked
                .lock()
                .unwrap()
                .extend(writer(c, servers, admin, stop))
        })
    };
    // Let writes flow, kill a node, and keep writing on the two left.
    std::thread::sleep(Duration::from_millis(1500));
    let (port, monitor) = (nodes[1].port, nodes[1].monitor_port);
    nodes[1].stop();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "cluster: {} registrations acknowledged across the kill",
        acked.len()
    );
    assert!(
        acked.len() > 20,
        "too few writes to mean anything: {}",
        acked.len()
    );

    // Both still write on two nodes.
    for at in [&a, &b] {
        let key = TestKey::ed();
        assert!(
            wait_until(Duration::from_secs(10), || register(&c, at, &admin, &key)
                .is_some()),
            "no writes on two nodes:\n{}",
            at.log()
        );
    }
    // Every acknowledged registration is readable from both sidecars.
    for at in [&a, &b] {
        let missing: Vec<&String> = acked
            .iter()
            .filter(|id| {
                let res = c
                    .get(at.url(&format!("/identity/{id}")))
                    .bearer_auth(&admin)
                    .send();
                !res.is_ok_and(|r| r.status().as_u16() == 200)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged writes lost: {missing:?}",
            missing.len(),
            acked.len()
        );
    }
    // The killed node rejoins.
    let back = NatsServer::start_with_ports(&confs[1], port, monitor);
    assert!(
        wait_until(Duration::from_secs(20), || matches!(
            http_get(back.monitor_port, "/healthz"),
            Some((200, _))
        )),
        "node did not rejoin:\n{}",
        back.log()
    );

    // Sidecar A killed: B serves logins and writes on.
    let key = TestKey::ed();
    assert!(register(&c, &b, &admin, &key).is_some());
    match Arc::try_unwrap(a) {
        Ok(mut a) => a.kill9(),
        Err(_) => panic!("sidecar A still shared"),
    }
    assert!(
        login(&c, &b, &key).starts_with("ey"),
        "B logs in after A died"
    );
    eprintln!(
        "cluster: {} acknowledged registrations, none lost",
        acked.len()
    );
}
