//! Store backends compared against real `sidecar serve` processes, in one run:
//! `cargo bench -p sidecar --bench store [-- --secs N --threads N --revocations N]`.
//!
//! For `--store sled`, `--store nats` R1 (one local nats-server with JetStream) and R3 (three
//! nats-server nodes clustered on loopback), each with JetStream's default `sync_interval` and
//! with `sync_interval: always`: key logins (challenge + verify, Ed25519) per second and p99,
//! then refresh-token rotations (`POST /auth/refresh`) per second and p99, each for a fixed
//! duration at a fixed number of client threads (closed loop: p99 includes queueing). Then the
//! revocation propagation latency across two sidecars on one R3 store (`sync_interval: always`):
//! an MQTT client on sidecar B's embedded broker, its identity disabled at sidecar A, timed from
//! A's HTTP acknowledgement to the client seeing its connection closed.
//!
//! Only the HTTP API and the binaries are used (no store types). The sidecars are pinned to CPU 0
//! and the load generator to CPU 1 (taskset, when there are two CPUs); nats-servers are unpinned.
//! `SIDECAR_LOG=debug` sets the sidecars' `RUST_LOG` (default `warn`); their logs are in the
//! run's temporary directory, removed at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot run should stop loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use reqwest::blocking::Client;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::{Value, json};
use test_support::{NatsServer, free_port, http_get, wait_until};

/// Base64 of 32 bytes: the master key the sidecars of one store share.
const KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// Identities registered per store (logins cycle through them, each thread its own).
const IDENTITIES: usize = 256;
/// How long one request may take before it counts as unanswered.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Whether the sidecars run on CPU 0 and the load on CPU 1.
static PIN: AtomicBool = AtomicBool::new(false);
/// CPUs this process could use before it pinned itself.
static CPUS: AtomicUsize = AtomicUsize::new(1);

#[derive(Clone, Copy)]
struct Opts {
    /// Seconds per timed phase.
    secs: u64,
    /// Client threads of the load generator.
    threads: usize,
    /// Revocations timed for the propagation figure.
    revocations: usize,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
            .unwrap_or(default)
    };
    Opts {
        secs: value("--secs", 5),
        threads: value("--threads", 8).max(1) as usize,
        revocations: value("--revocations", 40) as usize,
    }
}

/// Pin this process (the load generator) to CPU 1 when there are two CPUs and taskset works.
fn pin_self() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    CPUS.store(cpus, Ordering::Relaxed);
    let ok = cpus >= 2
        && Command::new("taskset")
            .args(["-p", "-c", "1", &std::process::id().to_string()])
            .output()
            .is_ok_and(|o| o.status.success());
    PIN.store(ok, Ordering::Relaxed);
}

/// Give a process spawned from here (which inherits CPU 1) every CPU back.
fn unpin(pid: u32) {
    if PIN.load(Ordering::Relaxed) {
        let all = format!("0-{}", CPUS.load(Ordering::Relaxed) - 1);
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", &all, &pid.to_string()])
            .output();
    }
}

fn sidecar_cmd() -> Command {
    let bin = env!("CARGO_BIN_EXE_sidecar");
    let mut cmd = if PIN.load(Ordering::Relaxed) {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.env_remove("KEY_ENCRYPTION_KEY")
        .env_remove("RATE_LIMIT")
        .env(
            "RUST_LOG",
            std::env::var("SIDECAR_LOG").unwrap_or("warn".into()),
        );
    cmd
}

/// A `sidecar serve` child; killed and reaped on drop.
struct Sidecar {
    child: Child,
    port: u16,
    mqtt_port: Option<u16>,
    log: PathBuf,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `/health` answers within 2 s (a wedged process accepts, then never answers).
    fn alive(&self) -> bool {
        let c = Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        c.get(format!("{}/health", self.base()))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }
}

/// `sidecar serve` on `data` with the store flags; with its MQTT listener when `mqtt`.
fn start(data: &Path, store: &[String], mqtt: bool) -> Sidecar {
    let port = free_port();
    let mqtt_port = mqtt.then(free_port);
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mqtt_listen = mqtt_port.map_or("off".to_owned(), |p| format!("127.0.0.1:{p}"));
    let log = data.with_extension("log");
    let child = sidecar_cmd()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--policies", policies.to_str().unwrap()])
        .args([
            "--rate-limit",
            "100000000/60",
            "--mqtt-listen",
            &mqtt_listen,
        ])
        .args(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the sidecar binary (and taskset, util-linux, when pinning)");
    let mut s = Sidecar {
        child,
        port,
        mqtt_port,
        log,
    };
    let ready = wait_until(Duration::from_secs(30), || {
        s.child.try_wait().is_ok_and(|e| e.is_some())
            || (matches!(http_get(port, "/health"), Some((200, _)))
                && mqtt_port.is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok()))
    });
    assert!(
        ready && s.child.try_wait().is_ok_and(|e| e.is_none()),
        "sidecar did not start:\n{}",
        s.log()
    );
    s
}

/// `sidecar bootstrap` on the store; the admin key (the last line of stdout).
fn bootstrap(data: &Path, store: &[String]) -> String {
    let out = sidecar_cmd()
        .args(["bootstrap", "--data-dir", data.to_str().unwrap()])
        .args(store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bootstrap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap().trim().to_owned()
}

/// One store under test: its name, the `serve`/`bootstrap` flags, the nats-servers it runs on.
struct Store {
    name: String,
    flags: Vec<String>,
    _nodes: Vec<NatsServer>,
}

fn sync_line(always: bool) -> &'static str {
    if always {
        ", sync_interval: always"
    } else {
        ""
    }
}

fn sync_name(always: bool) -> &'static str {
    if always {
        "sync always"
    } else {
        "default sync"
    }
}

fn nats_flags(urls: &str, replicas: u8) -> Vec<String> {
    [
        "--store",
        "nats",
        "--store-nats-url",
        urls,
        "--store-replicas",
        &replicas.to_string(),
        "--key-encryption-key",
        KEK,
        "--store-timeout-ms",
        "3000",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn sled() -> Store {
    Store {
        name: "sled".into(),
        flags: vec!["--store".into(), "sled".into()],
        _nodes: vec![],
    }
}

fn nats_r1(dir: &Path, always: bool) -> Store {
    let conf = format!(
        "jetstream {{ store_dir: \"{}\"{} }}\nmax_payload: 8MB\n",
        dir.join("js").display(),
        sync_line(always)
    );
    let node = NatsServer::start(&conf);
    unpin(node.pid());
    Store {
        name: format!("nats R1, {}", sync_name(always)),
        flags: nats_flags(&node.url(), 1),
        _nodes: vec![node],
    }
}

fn node_conf(dir: &Path, n: usize, cluster_ports: &[u16], always: bool) -> String {
    let routes: Vec<String> = cluster_ports
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect();
    format!(
        "server_name: n{n}\njetstream {{ store_dir: \"{}\"{} }}\nmax_payload: 8MB\n\
         cluster {{ name: broker_auth_bench, listen: 127.0.0.1:{}, routes: [{}] }}\n",
        dir.join(format!("js{n}")).display(),
        sync_line(always),
        cluster_ports[n],
        routes.join(", ")
    )
}

/// Three nodes clustered on loopback, started at once (none is healthy before a quorum exists).
fn nats_r3(dir: &Path, always: bool) -> Store {
    let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let confs: Vec<String> = (0..3)
        .map(|n| node_conf(dir, n, &cluster_ports, always))
        .collect();
    let nodes: Vec<NatsServer> = std::thread::scope(|s| {
        let hs: Vec<_> = confs
            .iter()
            .map(|c| s.spawn(move || NatsServer::start(c)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    nodes.iter().for_each(|n| unpin(n.pid()));
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    Store {
        name: format!("nats R3, {}", sync_name(always)),
        flags: nats_flags(&urls.join(","), 3),
        _nodes: nodes,
    }
}

fn client() -> Client {
    Client::builder().timeout(TIMEOUT).build().unwrap()
}

/// POST JSON; 200/201 gives the body, anything else an error label ("HTTP 503", "transport").
fn post(c: &Client, url: &str, bearer: Option<&str>, body: Value) -> Result<Value, String> {
    let mut req = c.post(url).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let path = path_of(url);
    let res = req.send().map_err(|e| match e.is_timeout() {
        true => format!("{path} no answer in {} s", TIMEOUT.as_secs()),
        false => format!("{path} transport error"),
    })?;
    let status = res.status().as_u16();
    if status != 200 && status != 201 {
        let body: Value = res.json().unwrap_or(Value::Null);
        let code = body["error"].as_str().unwrap_or("");
        return Err(format!("{path} HTTP {status} {code}"));
    }
    res.json().map_err(|_| "unreadable body".to_owned())
}

fn path_of(url: &str) -> &str {
    url.find("/auth")
        .or_else(|| url.find("/identity"))
        .map_or(url, |i| &url[i..])
}

fn public(sk: &SigningKey) -> String {
    STANDARD.encode(sk.verifying_key().as_bytes())
}

/// Register `sk` as `kind`; its identity id.
fn register(c: &Client, base: &str, admin: &str, sk: &SigningKey, kind: &str) -> String {
    let body = json!({"public_key": public(sk), "type": kind});
    let reg = post(c, &format!("{base}/identity/register"), Some(admin), body)
        .unwrap_or_else(|e| panic!("registration refused: {e}"));
    reg["identity_id"].as_str().unwrap().to_owned()
}

/// `n` fresh Ed25519 users registered through the API, one at a time (not timed).
fn register_all(base: &str, admin: &str, n: usize) -> Vec<SigningKey> {
    let c = client();
    (0..n)
        .map(|_| {
            let sk = SigningKey::generate(&mut rand_core::OsRng);
            register(&c, base, admin, &sk, "user");
            sk
        })
        .collect()
}

/// One key login: challenge, Ed25519 signature, verify. The verify body (token, refresh_token).
fn login(c: &Client, base: &str, sk: &SigningKey) -> Result<Value, String> {
    let pk = public(sk);
    let ch = post(
        c,
        &format!("{base}/auth/challenge"),
        None,
        json!({"public_key": pk}),
    )?;
    let challenge = ch["challenge"].as_str().ok_or("no challenge")?;
    let sig = STANDARD.encode(sk.sign(challenge.as_bytes()).to_bytes());
    let body = json!({"public_key": pk, "signature": sig, "challenge": challenge});
    post(c, &format!("{base}/auth/verify"), None, body)
}

/// What a timed phase measured: the latency of every successful operation, errors by kind, and
/// whether the sidecar still answered at the end.
#[derive(Default)]
struct Phase {
    lat: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    rate: f64,
    /// From the start to the last successful operation.
    answered_for: Duration,
    hung: bool,
}

impl Phase {
    fn p99_ms(&self) -> f64 {
        pct(&self.lat, 0.99)
    }

    fn merge(&mut self, p: Phase) {
        self.lat.extend(p.lat);
        self.rate += p.rate;
        self.answered_for = self.answered_for.max(p.answered_for);
        for (k, n) in p.errors {
            *self.errors.entry(k).or_default() += n;
        }
    }
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// `opts.threads` closed-loop clients for `opts.secs`: each makes its state with `init` (not
/// timed), then all start together and run `step` back to back.
fn drive<S>(
    opts: Opts,
    init: impl Fn(usize, &Client) -> S + Sync,
    step: impl Fn(&Client, &mut S) -> Result<(), String> + Sync,
) -> Phase {
    let barrier = Barrier::new(opts.threads);
    let (init, step, barrier) = (&init, &step, &barrier);
    let run = Duration::from_secs(opts.secs);
    let parts: Vec<Phase> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..opts.threads)
            .map(|i| {
                s.spawn(move || {
                    let c = client();
                    let mut state = init(i, &c);
                    let mut part = Phase::default();
                    barrier.wait();
                    let t0 = Instant::now();
                    while t0.elapsed() < run {
                        let t = Instant::now();
                        match step(&c, &mut state) {
                            Ok(()) => {
                                part.lat.push(t.elapsed());
                                part.answered_for = t0.elapsed();
                            }
                            Err(e) => *part.errors.entry(e).or_default() += 1,
                        }
                    }
                    part.rate = part.lat.len() as f64 / t0.elapsed().as_secs_f64();
                    part
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = Phase::default();
    parts.into_iter().for_each(|p| all.merge(p));
    all
}

fn login_phase(opts: Opts, base: &str, keys: &[SigningKey]) -> Phase {
    drive(
        opts,
        |i, _| i,
        |c, k| {
            let body = login(c, base, &keys[*k % keys.len()])?;
            *k += opts.threads;
            body["token"].as_str().map(|_| ()).ok_or("no token".into())
        },
    )
}

/// Each thread logs in once, then rotates its refresh token back to back (a failed rotation
/// logs in again for a fresh family, untimed).
fn rotation_phase(opts: Opts, base: &str, keys: &[SigningKey]) -> Phase {
    let fresh = |c: &Client, i: usize| -> Option<String> {
        let body = login(c, base, &keys[i % keys.len()]).ok()?;
        Some(body["refresh_token"].as_str()?.to_owned())
    };
    drive(
        opts,
        |i, c| (i, fresh(c, i)),
        |c, (i, rt)| {
            let Some(token) = rt.as_ref() else {
                *rt = fresh(c, *i);
                return Err("login for a refresh token failed".into());
            };
            let url = format!("{base}/auth/refresh");
            match post(c, &url, None, json!({"refresh_token": token})) {
                Ok(body) => {
                    *rt = body["refresh_token"].as_str().map(str::to_owned);
                    rt.as_ref().map(|_| ()).ok_or("no refresh_token".into())
                }
                Err(e) => {
                    *rt = fresh(c, *i);
                    Err(e)
                }
            }
        },
    )
}

struct Row {
    name: String,
    login: Phase,
    rotate: Phase,
}

/// Mark a phase whose sidecar stopped answering (requests timed out, or `/health` did), and
/// start a fresh one on the same data.
fn check(server: &mut Sidecar, phase: &mut Phase, data: &Path, store: &Store) {
    let unanswered = phase.errors.keys().any(|e| e.contains("no answer"));
    if unanswered || !server.alive() {
        phase.hung = true;
        eprintln!(
            "[store bench] {}: the sidecar stopped answering (last success {:.1} s into the \
             phase); restarting it",
            store.name,
            phase.answered_for.as_secs_f64()
        );
        let _ = server.child.kill(); // sled allows one process per store
        let _ = server.child.wait();
        *server = start(data, &store.flags, false);
    }
}

fn bench_store(store: Store, dir: &Path, opts: Opts) -> Row {
    eprintln!("[store bench] {} ...", store.name);
    let data = dir.join("sidecar");
    let admin = bootstrap(&data, &store.flags);
    let mut server = start(&data, &store.flags, false);
    let keys = register_all(&server.base(), &admin, IDENTITIES);
    let mut login = login_phase(opts, &server.base(), &keys);
    check(&mut server, &mut login, &data, &store);
    let mut rotate = rotation_phase(opts, &server.base(), &keys);
    check(&mut server, &mut rotate, &data, &store);
    drop(server); // before its nats-servers
    Row {
        name: store.name,
        login,
        rotate,
    }
}

/// An MQTT v5 client connected with `token`, or why not.
async fn mqtt(port: u16, id: &str, token: &str) -> Result<(AsyncClient, EventLoop), String> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials("x", token);
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut el) = AsyncClient::new(o, 100);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) if a.code == ConnectReturnCode::Success => {
                return Ok((c, el));
            }
            Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) => return Err(format!("{:?}", a.code)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("no CONNACK: {e:?}")),
            Err(_) => return Err("no CONNACK in 10 s".into()),
        }
    }
}

/// Poll until the broker ends the session (DISCONNECT or the connection closed); send when.
async fn watch_close(mut el: EventLoop, tx: std::sync::mpsc::Sender<Instant>) {
    let closed = async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Disconnect(_))) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .is_ok()
    {
        let _ = tx.send(Instant::now());
    }
}

/// One device: registered and logged in at A, connected to B's broker, disabled at A. From A's
/// acknowledgement to the close seen by the client (zero, and `early`, if it came first).
fn revoke_once(
    rt: &tokio::runtime::Runtime,
    (a, b): (&Sidecar, &Sidecar),
    admin: &str,
    i: usize,
) -> Result<(Duration, bool), String> {
    let c = client();
    let sk = SigningKey::generate(&mut rand_core::OsRng);
    let id = register(&c, &a.base(), admin, &sk, "device");
    let body = login(&c, &a.base(), &sk)?;
    let token = body["token"].as_str().ok_or("no token")?;
    let port = b.mqtt_port.unwrap();
    let (mqtt_client, el) = rt.block_on(mqtt(port, &format!("bench-dev-{i}"), token))?;
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(watch_close(el, tx));
    let res = c
        .delete(format!("{}/identity/{id}", a.base()))
        .bearer_auth(admin)
        .send()
        .map_err(|_| "DELETE transport error".to_owned())?;
    let ack = Instant::now();
    if !res.status().is_success() {
        return Err(format!("DELETE /identity HTTP {}", res.status().as_u16()));
    }
    let closed = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "MQTT session not cut within 10 s".to_owned());
    drop(mqtt_client);
    let closed = closed?;
    Ok(match closed.checked_duration_since(ack) {
        Some(d) => (d, false),
        None => (Duration::ZERO, true),
    })
}

struct Propagation {
    lat: Vec<Duration>,
    early: usize,
    errors: BTreeMap<String, u64>,
}

fn propagation(dir: &Path, n: usize) -> Propagation {
    eprintln!("[store bench] revocation propagation, nats R3 (sync always), {n} times ...");
    let store = nats_r3(dir, true);
    let admin = bootstrap(&dir.join("a"), &store.flags);
    let a = start(&dir.join("a"), &store.flags, false);
    let b = start(&dir.join("b"), &store.flags, true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut p = Propagation {
        lat: vec![],
        early: 0,
        errors: BTreeMap::new(),
    };
    for i in 0..n {
        match revoke_once(&rt, (&a, &b), &admin, i) {
            Ok((d, early)) => {
                p.lat.push(d);
                p.early += usize::from(early);
            }
            Err(e) => *p.errors.entry(e).or_default() += 1,
        }
    }
    p
}

fn notes(what: &str, p: &Phase) {
    if p.hung {
        println!(
            "- {what}: ⚠ the sidecar stopped answering {:.1} s into the phase (requests \
             timed out; it was restarted for the next phase); the figures cover what it served \
             before",
            p.answered_for.as_secs_f64()
        );
    }
    errors_line(what, &p.errors);
}

fn errors_line(what: &str, errors: &BTreeMap<String, u64>) {
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!("- errors, {what}: {}", list.join(", "));
    }
}

/// `rate | p99` cells; ⚠ where the sidecar stopped answering during the phase.
fn cells(p: &Phase) -> String {
    let mark = if p.hung { " ⚠" } else { "" };
    format!("{:.0}{mark} | {:.2}{mark}", p.rate, p.p99_ms())
}

fn report(rows: &[Row], prop: &Propagation, opts: Opts, took: Duration) {
    println!("\n| store | logins/s | login p99 ms | rotations/s | rotation p99 ms |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} |",
            r.name,
            cells(&r.login),
            cells(&r.rotate)
        );
    }
    let max = prop
        .lat
        .iter()
        .max()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!(
        "\nRevocation propagation (nats R3, sync always; DELETE /identity at A → MQTT session at B \
         closed): p50 {:.1} ms, p99 {:.1} ms (target < 1000 ms), max {max:.1} ms, n = {} of {} \
         ({} closed before A's acknowledgement arrived, counted as 0)",
        pct(&prop.lat, 0.5),
        pct(&prop.lat, 0.99),
        prop.lat.len(),
        opts.revocations,
        prop.early
    );
    println!();
    for r in rows {
        notes(&format!("{} logins", r.name), &r.login);
        notes(&format!("{} rotations", r.name), &r.rotate);
    }
    errors_line("propagation", &prop.errors);
    println!("- whole run: {:.1} s", took.as_secs_f64());
}

/// Starts the nats-servers a store needs (none for sled) in a scratch directory.
type MakeStore = fn(&Path) -> Store;

fn header(opts: Opts) {
    let pin = if PIN.load(Ordering::Relaxed) {
        "sidecars pinned to CPU 0, load generator to CPU 1 (taskset)"
    } else {
        "no CPU pinning (taskset or a second CPU missing)"
    };
    println!(
        "store benchmark: {} client threads (reqwest blocking, closed loop: p99 includes \
         queueing), {} s per phase, {IDENTITIES} Ed25519 identities per store; {pin}; \
         nats-servers unpinned; --rate-limit 100000000/60; requests time out after {} s",
        opts.threads,
        opts.secs,
        TIMEOUT.as_secs()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` (and `cargo test --benches`) only probe
    }
    let t0 = Instant::now();
    let opts = opts();
    pin_self();
    header(opts);
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let cases: [(&str, MakeStore); 5] = [
        ("sled", |_| sled()),
        ("r1", |d| nats_r1(d, false)),
        ("r1-always", |d| nats_r1(d, true)),
        ("r3", |d| nats_r3(d, false)),
        ("r3-always", |d| nats_r3(d, true)),
    ];
    for (dir, make) in cases {
        let dir = tmp.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        rows.push(bench_store(make(&dir), &dir, opts));
    }
    let dir = tmp.path().join("propagation");
    std::fs::create_dir_all(&dir).unwrap();
    let prop = propagation(&dir, opts.revocations);
    report(&rows, &prop, opts, t0.elapsed());
}
