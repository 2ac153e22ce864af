//! The cluster test of `scale-out.md`, on loopback: three nats-server nodes in one cluster (R3
//! buckets, `sync_interval: always`, the shipped callout configuration), two sidecars on
//! `--store nats` seeded with all three, two standalone callouts following the store in one
//! queue group. Register at A and log in at B; one refresh token at both; a device disabled at
//! A is cut within a second from B's embedded MQTT broker, from NATS and from nats-server's MQTT
//! listener (those two through the callouts); a deploy at A is served by B and both callouts
//! within a second (plus the compile this build needs, measured in the run). Registrations run at both
//! sidecars while one node is killed with SIGKILL: every write a sidecar acknowledged is
//! readable afterwards from both, both keep writing on the two nodes left, and the node rejoins.
//! Then sidecar A is killed and B and the callouts serve on.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use test_support::nats_client::{expect_event, token_client};
use test_support::{NatsServer, free_port, http_get, wait_until};

use super::harness::TestKey;
use super::mqtt_e2e::login;
use super::server::Server;
use super::shared_store::KEK;
use super::shared_store::{metric, post};
use super::standalone_callout::{Callout, until_connects};

/// One node: the shipped callout configuration (its `STORE` account holds the store) plus
/// JetStream as the shipped configurations set it, and the cluster.
fn node_conf(dir: &Path, n: usize, cluster_ports: &[u16], mqtt_ports: &[u16]) -> String {
    let routes: Vec<String> = cluster_ports
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect();
    format!(
        "{}\nserver_name: n{n}\nmax_payload: 8MB\n\
         jetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
         mqtt {{ listen: 127.0.0.1:{} }}\n\
         cluster {{ name: broker_auth_test, listen: 127.0.0.1:{}, routes: [{}] }}\n",
        super::nats_callout::nats_config(),
        dir.join(format!("js{n}")).display(),
        mqtt_ports[n],
        cluster_ports[n],
        routes.join(", ")
    )
}

/// Three nodes started at once (none is healthy before a quorum exists): the nodes, their
/// configurations and their MQTT listeners' ports.
fn cluster(dir: &Path) -> (Vec<NatsServer>, Vec<String>, Vec<u16>) {
    let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mqtt_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let confs: Vec<String> = (0..3)
        .map(|n| node_conf(dir, n, &cluster_ports, &mqtt_ports))
        .collect();
    let nodes: Vec<NatsServer> = std::thread::scope(|s| {
        let hs: Vec<_> = confs
            .iter()
            .map(|c| s.spawn(move || NatsServer::start(c)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (nodes, confs, mqtt_ports)
}

fn flags(urls: &str) -> Vec<String> {
    [
        "--store",
        "nats",
        "--store-nats-url",
        urls,
        "--store-replicas",
        "3",
        "--store-nats-user",
        "store",
        "--store-nats-password",
        "store-pw",
        "--key-encryption-key",
        KEK,
        "--store-timeout-ms",
        "3000",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn bootstrap(data: &Path, urls: &str) -> String {
    super::server::bootstrap_with(data, &flags(urls))
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

/// A device (NATS and MQTT grants under the shipped policy) registered at `at`; its id.
fn device(c: &Client, at: &Server, admin: &str, key: &TestKey) -> String {
    let (s, body) = super::shared_store::register(c, at, admin, key, "device");
    assert_eq!(s, 201, "{body}");
    body["identity_id"].as_str().unwrap().to_owned()
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

/// Within this of an acknowledgement at A, every enforcement point has it in force.
const WITHIN: Duration = Duration::from_secs(1);

/// An MQTT 3.1.1 client (what nats-server's MQTT listener speaks) of nats-server's listener on
/// `port`, the token as its password; the event loop once the CONNACK accepted it.
async fn nats_mqtt(port: u16, token: &str) -> rumqttc::EventLoop {
    let mut o = rumqttc::MqttOptions::new("cluster-nats-mqtt", "127.0.0.1", port);
    o.set_credentials("device", token);
    o.set_keep_alive(Duration::from_secs(30));
    let (_client, mut el) = rumqttc::AsyncClient::new(o, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)))) => {
                assert_eq!(a.code, rumqttc::ConnectReturnCode::Success);
                return el;
            }
            Ok(Ok(_)) => {}
            other => panic!("nats-server's MQTT listener did not admit the device: {other:?}"),
        }
    }
}

/// Poll until the server closes the connection (panics after `within`).
async fn nats_mqtt_closed(el: &mut rumqttc::EventLoop, within: Duration) {
    tokio::time::timeout(within, async { while el.poll().await.is_ok() {} })
        .await
        .expect("nats-server's MQTT listener kept a revoked device");
}

/// A device registered at A, connected to B's embedded MQTT broker, to NATS and to
/// nats-server's MQTT listener (both through the callouts), then disabled at A: every one of
/// the three connections is cut within a second.
fn revocation_at_a_cuts_everywhere(
    c: &Client,
    (a, b): (&Server, &Server),
    admin: &str,
    nats: &str,
    nats_mqtt_port: u16,
) {
    let key = TestKey::ed();
    let id = device(c, a, admin, &key);
    let token = login(c, a, &key);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mqtt, mut mqtt_events) = rt
        .block_on(super::enforcement::mqtt(
            b.mqtt_port.unwrap(),
            "cluster-dev",
            &token,
        ))
        .unwrap_or_else(|code| panic!("B refused a token A issued: {code:?}"));
    let (nats_client, mut nats_events) = rt
        .block_on(token_client(nats, &token))
        .expect("the callouts admit a token A issued");
    let mut listener = rt.block_on(nats_mqtt(nats_mqtt_port, &token));
    let t0 = Instant::now();
    let res = c
        .delete(a.url(&format!("/identity/{id}")))
        .bearer_auth(admin)
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    rt.block_on(expect_event(&mut nats_events, "disconnected", WITHIN));
    let nats_cut = t0.elapsed();
    rt.block_on(nats_mqtt_closed(
        &mut listener,
        WITHIN.saturating_sub(t0.elapsed()),
    ));
    let listener_cut = t0.elapsed();
    // Polled after the other two: the time since A acknowledged is what counts.
    rt.block_on(super::enforcement::mqtt_closed(&mut mqtt_events));
    let mqtt_cut = t0.elapsed();
    eprintln!(
        "cluster: revocation at A cut NATS in {nats_cut:?}, nats-server MQTT in \
         {listener_cut:?}, MQTT at B in {mqtt_cut:?}"
    );
    assert!(
        mqtt_cut < WITHIN,
        "B cut the MQTT session {mqtt_cut:?} after A's revocation"
    );
    assert!(
        rt.block_on(token_client(nats, &token)).is_err(),
        "the callouts admit a disabled device again"
    );
    drop((mqtt, nats_client));
}

/// A deploy at A: B serves it and both callouts say they do, within a second of the store's
/// acknowledgement plus the time this build takes to compile the version (each process
/// compiles it before serving it; measured here, in this run, as the Rego cross-check of a
/// debug build takes a quarter of a second and grows with the machine's load).
fn deploy_at_a_reaches_every_point(
    c: &Client,
    a: &Server,
    b: &Server,
    admin: &str,
    callouts: &[Callout],
) {
    let live = metric(c, a, "broker_auth_policy_version").unwrap();
    let files = super::policy_routes::shipped_files();
    let files =
        super::policy_routes::edit(&files, "broker.rego", "package", "# edited at A\npackage");
    let compile = {
        let bundle = broker_auth::policy::bundle::Bundle::new(files.clone()).unwrap();
        let t = Instant::now();
        broker_auth::policy::PolicySet::from_bundle(&bundle).unwrap();
        t.elapsed()
    };
    let body = json!({"files": files, "message": "from A", "base_version": live as u64});
    let (s, dep) = post(c, a.url("/policies"), Some(admin), body);
    assert_eq!(s, 201, "{dep}");
    let version = dep["version"].as_u64().unwrap();
    let t0 = Instant::now();
    let served = format!("policy version from the store version={version} ");
    let everywhere = || {
        metric(c, b, "broker_auth_policy_version") == Some(version as f64)
            && callouts.iter().all(|co| co.log().contains(&served))
    };
    // Three processes compile at once on this machine's cores: twice one compile's time.
    let bound = WITHIN + compile * 2;
    assert!(
        wait_until(bound, everywhere),
        "deploy {version} not everywhere within {bound:?}: B {:?}; callouts:\n{}",
        metric(c, b, "broker_auth_policy_version"),
        callouts
            .iter()
            .map(Callout::log)
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    eprintln!(
        "cluster: deploy at A served by B and both callouts in {:?} (one compile here: {compile:?})",
        t0.elapsed()
    );
}

/// On R3 every read must see the write just acknowledged (a direct get from a lagging replica
/// did not, for about one login in ten under load): no bucket serves direct gets, and a
/// challenge answered at once, 150 times, and a refresh token rotated 150 times never miss.
fn reads_see_the_writes_just_made(c: &Client, a: &Server, admin: &str, urls: &str) {
    // Structurally: no bucket serves direct gets (the race is too rare to hit every run).
    let rt = tokio::runtime::Runtime::new().unwrap();
    for bucket in ["state", "ephemeral", "codes"] {
        let direct = rt.block_on(async {
            let nc = async_nats::ConnectOptions::with_user_and_password(
                "store".into(),
                "store-pw".into(),
            )
            .connect(urls.split(',').collect::<Vec<_>>().as_slice())
            .await
            .unwrap();
            let js = async_nats::jetstream::new(nc);
            let mut stream = js
                .get_stream(format!("KV_broker_auth_{bucket}"))
                .await
                .unwrap();
            stream.info().await.unwrap().config.allow_direct
        });
        assert!(
            !direct,
            "bucket {bucket} serves direct gets: reads may miss acknowledged writes"
        );
    }
    let key = TestKey::ed();
    device(c, a, admin, &key);
    let mut refresh = None;
    let mut refused = Vec::new();
    for _ in 0..150 {
        let (_, ch) = post(
            c,
            a.url("/auth/challenge"),
            None,
            json!({"public_key": key.public()}),
        );
        let challenge = ch["challenge"].as_str().unwrap_or_default().to_owned();
        let answer = json!({"public_key": key.public(),
            "signature": key.sign(challenge.as_bytes()), "challenge": challenge});
        let (s, body) = post(c, a.url("/auth/verify"), None, answer);
        if s != 200 {
            refused.push(format!("verify {s} {}", body["error"]));
        }
        refresh = refresh.or_else(|| body["refresh_token"].as_str().map(str::to_owned));
    }
    let mut rt = refresh.expect("a login with a refresh token");
    for _ in 0..150 {
        let (s, body) = post(
            c,
            a.url("/auth/refresh"),
            None,
            json!({"refresh_token": rt}),
        );
        match body["refresh_token"].as_str() {
            Some(next) if s == 200 => rt = next.to_owned(),
            _ => {
                refused.push(format!("refresh {s} {}", body["error"]));
                break;
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} refused on R3: {refused:?}",
        refused.len()
    );
}

/// Registrations at A and B while node 1 is killed: every acknowledged one is readable from
/// both; both write on the two nodes left; the node rejoins.
fn node_killed_under_writes(
    c: &Client,
    nodes: &mut [NatsServer],
    confs: &[String],
    servers: [Arc<Server>; 2],
    admin: &str,
) -> NatsServer {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = {
        let (c, servers, admin, stop, acked) = (
            c.clone(),
            servers.clone(),
            admin.to_owned(),
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
    assert!(
        acked.len() > 20,
        "too few writes to mean anything: {}",
        acked.len()
    );
    for at in &servers {
        let key = TestKey::ed();
        assert!(
            wait_until(Duration::from_secs(10), || register(c, at, admin, &key)
                .is_some()),
            "no writes on two nodes:\n{}",
            at.log()
        );
    }
    for at in &servers {
        let missing: Vec<&String> = acked
            .iter()
            .filter(|id| {
                let res = c
                    .get(at.url(&format!("/identity/{id}")))
                    .bearer_auth(admin)
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
    eprintln!(
        "cluster: {} registrations acknowledged across the kill, none lost",
        acked.len()
    );
    let back = NatsServer::start_with_ports(&confs[1], port, monitor);
    assert!(
        wait_until(Duration::from_secs(20), || matches!(
            http_get(back.monitor_port, "/healthz"),
            Some((200, _))
        )),
        "node did not rejoin:\n{}",
        back.log()
    );
    back
}

#[test]
fn three_nodes_two_sidecars_two_callouts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, confs, mqtt_ports) = cluster(dir.path());
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    let urls = urls.join(",");
    let admin = bootstrap(&dir.path().join("a"), &urls);
    let mut f = flags(&urls);
    // The writer below is one address registering as fast as it can.
    f.extend(["--rate-limit".to_owned(), "100000/60".to_owned()]);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let a = Arc::new(Server::start(&dir.path().join("a"), &f));
    let b = Arc::new(Server::start(&dir.path().join("b"), &f));
    let callouts = [
        Callout::on_store(dir.path(), "callout1", &urls, &urls),
        Callout::on_store(dir.path(), "callout2", &urls, &urls),
    ];
    let c = Client::new();
    // NATS clients connect to node 0 (node 1 is the one killed below).
    let nats = nodes[0].url();
    let key = TestKey::ed();
    device(&c, &a, &admin, &key);
    let token = login(&c, &b, &key);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for co in &callouts {
        rt.block_on(until_connects(
            &nats,
            &token,
            true,
            Duration::from_secs(20),
            co,
        ));
    }

    super::shared_store::login_across(&c, &a, &b, &admin);
    super::shared_store::refresh_race(&c, &a, &b, &admin);
    reads_see_the_writes_just_made(&c, &a, &admin, &urls);
    revocation_at_a_cuts_everywhere(&c, (&a, &b), &admin, &nats, mqtt_ports[0]);
    deploy_at_a_reaches_every_point(&c, &a, &b, &admin, &callouts);
    let _back = node_killed_under_writes(&c, &mut nodes, &confs, [a.clone(), b.clone()], &admin);

    // Sidecar A killed: B serves logins and writes, the callouts admit what B issues.
    let key = TestKey::ed();
    device(&c, &b, &admin, &key);
    match Arc::try_unwrap(a) {
        Ok(mut a) => a.kill9(),
        Err(_) => panic!("sidecar A still shared"),
    }
    let token = login(&c, &b, &key);
    assert!(token.starts_with("ey"), "B logs in after A died");
    for co in &callouts {
        rt.block_on(until_connects(
            &nats,
            &token,
            true,
            Duration::from_secs(5),
            co,
        ));
    }
}
