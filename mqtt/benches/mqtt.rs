//! The embedded MQTT broker with our ACL vs the same broker without it vs Debian's mosquitto 2.0
//! with its dynamic-security plugin holding equivalent ACLs — all in one run. (One file over 600
//! lines: the three brokers' set-ups, the load generator and the report belong to one run.)
//!
//! ```sh
//! cargo bench -p broker-auth-mqtt --bench mqtt                 # ~5 minutes
//! cargo bench -p broker-auth-mqtt --bench mqtt -- --secs 10    # longer windows
//! cargo bench -p broker-auth-mqtt --bench mqtt -- --only acl,noacl --pairs 1 --qos 0   # a subset
//! ```
//!
//! Each broker runs in its own process pinned to CPU 1 (`taskset`), the load generator (rumqttc)
//! to CPU 0, so "broker CPU per message" is the broker's own utime+stime from /proc. For every
//! broker: 1 and 8 publisher→subscriber pairs at QoS0 and QoS1 with 64-byte payloads (msg/s
//! delivered to subscribers in a fixed window), a 1,000-client connect storm (each client its
//! own identity and token), and resident memory per connected client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand_core::OsRng;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const PAYLOAD: usize = 64;
const STORM: usize = 1000;
/// The reconnect storm: STORM clients with random client ids over this many device tokens.
const STORM_IDENTITIES: usize = 100;
const PAIRS: [usize; 2] = [1, 8];

fn device(i: usize) -> String {
    format!("dev-BENCH{i:08}")
}

// ---------------------------------------------------------------- broker processes (children)

/// Child mode: `--serve KIND PORT` runs a broker and prints one JSON line of credentials.
fn serve(kind: &str, port: u16) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let stats = Arc::new(broker_auth_mqtt::MqttStats::default());
        let (creds, live) = match kind {
            "acl" => {
                let (c, l) = serve_acl(port, stats.clone()).await;
                (c, Some(l))
            }
            "noacl" => (serve_bare(port).await, None),
            _ => panic!("unknown broker kind {kind}"),
        };
        println!("{}", serde_json::to_string(&creds).unwrap());
        // Serve until the parent closes stdin; a `stats` line asks for the hooks' own timing.
        tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            while std::io::stdin().read_line(&mut s).is_ok_and(|n| n > 0) {
                if s.trim() == "stats" {
                    let l = &stats.acl_latency;
                    let n: u64 = l.counts().iter().sum();
                    let c = &stats.connect_latency;
                    let cn: u64 = c.counts().iter().sum();
                    let (hits, misses) = live.as_ref().map_or((0, 0), |l| l.policy().cache_stats());
                    println!(
                        "{}",
                        serde_json::json!({
                            "acl_mean_ns": l.sum_seconds() * 1e9 / n.max(1) as f64,
                            "acl_sampled_calls": n,
                            "connect_mean_us": c.sum_seconds() * 1e6 / cn.max(1) as f64,
                            "grants_cache_hits": hits,
                            "grants_cache_misses": misses,
                        })
                    );
                }
                s.clear();
            }
        })
        .await
        .unwrap();
    });
}

async fn serve_acl(
    port: u16,
    stats: Arc<broker_auth_mqtt::MqttStats>,
) -> (Vec<String>, broker_auth_runtime::LiveAuth) {
    use broker_auth::token::{Claims, KeySet, TokenAlg, TokenConfig, TokenKey, TokenUse, Verifier};
    use broker_auth_mqtt::{EmbeddedBroker, MqttConfig};
    use broker_auth_runtime::{LiveAuth, Runtime};

    let cfg = TokenConfig::new("bench", "broker-auth");
    let keys = KeySet::new(vec![Arc::new(
        TokenKey::generate(TokenAlg::EdDSA, &mut OsRng).unwrap(),
    )]);
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let now = test_support::unix_now();
    // One token per storm client, then STORM_IDENTITIES more for the reconnect storm.
    let tokens = (0..STORM.max(8) + STORM_IDENTITIES)
        .map(|i| {
            keys.sign(&Claims::new(
                &cfg,
                &device(i),
                now,
                3600,
                TokenUse::Access,
                &mut OsRng,
            ))
            .unwrap()
        })
        .collect();
    let auth = LiveAuth::new(
        keys,
        Verifier::new(cfg),
        Default::default(),
        broker_auth_runtime::policy_dir::load_dir(&dir).unwrap(),
        100_000,
    );
    // What `sidecar serve` runs: the broker on a runtime whose enforcement task is running.
    let runtime = Runtime::new(auth.clone(), Arc::new(broker_auth_runtime::SystemClock));
    std::mem::forget(runtime.spawn_enforcement());
    let config = MqttConfig {
        tcp: Some(([127, 0, 0, 1], port).into()),
        ..Default::default()
    };
    let broker = EmbeddedBroker::start(&config, runtime, stats)
        .await
        .unwrap();
    std::mem::forget(broker);
    (tokens, auth)
}

/// The same rmqtt, same listener limits, no hooks at all (anonymous clients, no ACL).
async fn serve_bare(port: u16) -> Vec<String> {
    use rmqtt::context::ServerContext;
    use rmqtt::net::Builder;
    use rmqtt::server::MqttServer;
    let d = broker_auth_mqtt::MqttConfig::default();
    let scx = ServerContext::new().busy_check_enable(false).build().await;
    let l = Builder::new()
        .name("bare")
        .laddr(([127, 0, 0, 1], port).into())
        .allow_anonymous(true)
        .max_inflight(std::num::NonZeroU16::new(d.max_inflight).unwrap())
        .max_mqueue_len(d.max_queue)
        .max_connections(d.max_connections)
        .nodelay(true)
        .bind()
        .unwrap()
        .tcp()
        .unwrap();
    tokio::spawn(MqttServer::new(scx).listener(l).build().run());
    vec![String::new(); STORM.max(8)]
}

struct Broker {
    name: &'static str,
    child: Child,
    port: u16,
    /// (username, password) per client index: the device and its token, or a mosquitto login;
    /// an empty username connects anonymously.
    creds: Vec<(String, String)>,
    /// The embedded brokers' stdout, for `stats` answers.
    out: Option<BufReader<std::process::ChildStdout>>,
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// The ACL hooks' own mean time per call, as the broker measured it.
    fn hook_stats(&mut self) -> Option<serde_json::Value> {
        use std::io::Write;
        let out = self.out.as_mut()?;
        let stdin = self.child.stdin.as_mut()?;
        stdin.write_all(b"stats\n").ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        out.read_line(&mut line).ok()?;
        serde_json::from_str(&line).ok()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned(cpu: &str, program: &std::path::Path) -> Command {
    match which("taskset") {
        Some(t) => {
            let mut c = Command::new(t);
            c.args(["-c", cpu]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

fn start_embedded(name: &'static str, kind: &str) -> Broker {
    let port = test_support::free_port();
    let exe = std::env::current_exe().unwrap();
    let mut child = pinned("1", &exe)
        .args(["--serve", kind, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    let tokens: Vec<String> = serde_json::from_str(&line).unwrap();
    let creds = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                (String::new(), t)
            } else {
                (device(i), t)
            }
        })
        .collect();
    wait_port(port);
    Broker {
        name,
        child,
        port,
        creds,
        out: Some(out),
        _dir: None,
    }
}

fn wait_port(port: u16) {
    assert!(
        test_support::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "broker on {port} did not come up"
    );
}

/// mosquitto 2.0 with dynamic security: one client and one role per device, with the ACLs the
/// shipped policy gives a device (publish `devices/<id>/#`, subscribe `devices/<id>/cmd/#`).
fn start_mosquitto() -> Option<Broker> {
    let mosquitto = which("mosquitto").or_else(|| {
        let p = std::path::PathBuf::from("/usr/sbin/mosquitto");
        p.is_file().then_some(p)
    })?;
    let ctrl = which("mosquitto_ctrl")?;
    let plugin = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join("mosquitto_dynamic_security.so"))
    .find(|p| p.is_file())?;
    let dir = tempfile::tempdir().unwrap();
    let dynsec = dir.path().join("dynsec.json");
    let ok = Command::new(&ctrl)
        .args(["dynsec", "init"])
        .arg(&dynsec)
        .args(["admin", "admin-pw"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "mosquitto_ctrl dynsec init failed");
    let port = test_support::free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n\
             max_queued_messages 200000\nmax_inflight_messages 256\n\
             plugin {}\nplugin_opt_config_file {}\n",
            plugin.display(),
            dynsec.display()
        ),
    )
    .unwrap();
    let child = pinned("1", &mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port);
    // Provision through the plugin's own control topic, as an operator would. One batch per
    // mosquitto_ctrl call would be faster; clarity wins for a set-up step.
    let p = port.to_string();
    let run = |args: &[&str]| {
        let ok = Command::new(&ctrl)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &p,
                "-u",
                "admin",
                "-P",
                "admin-pw",
                "dynsec",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mosquitto_ctrl {args:?}");
    };
    // dynsec 2.0 has no %u substitution: one client and one role per device of the pairs. The
    // storm's connections share one login (mosquitto checks its password hash on every connect
    // all the same).
    run(&["createClient", "storm", "-p", "storm-pw"]);
    let mut creds = Vec::new();
    for i in 0..STORM.max(8) {
        if i >= 8 {
            creds.push(("storm".to_owned(), "storm-pw".to_owned()));
            continue;
        }
        let d = device(i);
        let pw = format!("pw-{i}");
        run(&["createClient", &d, "-p", &pw]);
        creds.push((d.clone(), pw));
        run(&["createRole", &d]);
        run(&[
            "addRoleACL",
            &d,
            "publishClientSend",
            &format!("devices/{d}/#"),
            "allow",
        ]);
        run(&[
            "addRoleACL",
            &d,
            "subscribePattern",
            &format!("devices/{d}/cmd/#"),
            "allow",
        ]);
        run(&[
            "addRoleACL",
            &d,
            "publishClientReceive",
            &format!("devices/{d}/cmd/#"),
            "allow",
        ]);
        run(&["addClientRole", &d, &d]);
    }
    Some(Broker {
        name: "mosquitto 2.0 + dynsec",
        child,
        port,
        creds,
        out: None,
        _dir: Some(dir),
    })
}

// ---------------------------------------------------------------- measurements (parent)

/// utime + stime of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The process that actually runs the broker (taskset execs it, so the pid is the same).
fn pid(b: &Broker) -> u32 {
    b.child.id()
}

fn options(b: &Broker, id: String, i: usize) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", b.port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(100);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (user, pw) = &b.creds[i];
    if !user.is_empty() {
        o.set_credentials(user.clone(), pw.clone());
    }
    o
}

async fn connected(o: MqttOptions) -> (AsyncClient, rumqttc::EventLoop) {
    let (c, mut el) = AsyncClient::new(o, 1000);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(a))) => {
                assert_eq!(a.code, rumqttc::ConnectReturnCode::Success);
                return (c, el);
            }
            Ok(_) => {}
            Err(e) => panic!("connect: {e}"),
        }
    }
}

/// msg/s delivered to subscribers and broker CPU µs per delivered message.
async fn throughput(b: &Broker, pairs: usize, qos: QoS, secs: f64) -> (f64, f64) {
    let delivered = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut publishers = Vec::new();
    for i in 0..pairs {
        let (sc, mut sel) = connected(options(b, format!("sub-{i}"), i)).await;
        sc.subscribe(format!("devices/{}/cmd/#", device(i)), qos)
            .await
            .unwrap();
        loop {
            if let Event::Incoming(Packet::SubAck(a)) = sel.poll().await.unwrap() {
                assert!(
                    matches!(a.return_codes[0], rumqttc::SubscribeReasonCode::Success(_)),
                    "{}: subscribe refused",
                    b.name
                );
                break;
            }
        }
        let (d, counting2, stop2) = (delivered.clone(), counting.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let _keep = sc;
            while !stop2.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), sel.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::Publish(_))))
                        if counting2.load(Ordering::Relaxed) =>
                    {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => panic!("subscriber: {e}"),
                    _ => {}
                }
            }
        }));
        let (pc, mut pel) = connected(options(b, format!("pub-{i}"), i)).await;
        let stop3 = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop3.load(Ordering::Relaxed) {
                if let Ok(Err(e)) =
                    tokio::time::timeout(Duration::from_millis(200), pel.poll()).await
                {
                    panic!("publisher: {e}");
                }
            }
        }));
        let (stop4, topic) = (stop.clone(), format!("devices/{}/cmd/bench", device(i)));
        publishers.push(tokio::spawn(async move {
            let payload = vec![0x5a_u8; PAYLOAD];
            while !stop4.load(Ordering::Relaxed) {
                if pc
                    .publish(topic.clone(), qos, false, payload.clone())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    // Warm up, then count over the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_seconds(pid(b));
    counting.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid(b)) - cpu0;
    stop.store(true, Ordering::Relaxed);
    for t in publishers.into_iter().chain(tasks) {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let n = delivered.load(Ordering::Relaxed) as f64;
    (n / elapsed, if n > 0.0 { cpu / n * 1e6 } else { f64::NAN })
}

/// Connects/s for STORM distinct clients (64 at a time), how many were accepted, and the
/// broker's resident memory per connected client. `cred` picks each client's credentials and
/// `id` its client id.
async fn storm(
    b: &Broker,
    cred: impl Fn(usize) -> usize,
    id: impl Fn(usize) -> String,
) -> (f64, usize, f64) {
    let rss0 = rss_kib(pid(b));
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut handles = Vec::new();
    for i in 0..STORM {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let o = options(b, id(i), cred(i));
        handles.push(tokio::spawn(async move {
            let (c, mut el) = AsyncClient::new(o, 10);
            let ok = loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        break a.code == rumqttc::ConnectReturnCode::Success;
                    }
                    Ok(_) => {}
                    Err(_) => break false,
                }
            };
            drop(permit);
            // Keep the connection open (and its keepalive answered) until the end.
            let keep = tokio::spawn(async move { while el.poll().await.is_ok() {} });
            (ok, c, keep)
        }));
    }
    let mut clients = Vec::new();
    for h in handles {
        clients.push(h.await.unwrap());
    }
    let rate = STORM as f64 / t0.elapsed().as_secs_f64();
    let accepted = clients.iter().filter(|c| c.0).count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_client = (rss_kib(pid(b)).saturating_sub(rss0)) as f64 / STORM as f64;
    for (_, c, keep) in clients {
        let _ = c.disconnect().await;
        keep.abort();
    }
    (rate, accepted, per_client)
}

struct Row {
    broker: &'static str,
    case: String,
    rate: f64,
    cpu_us: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1], args[i + 2].parse().unwrap());
        return;
    }
    let secs: f64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let reps: usize = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let list = |flag: &str| -> Option<Vec<String>> {
        let i = args.iter().position(|a| a == flag)?;
        Some(args.get(i + 1)?.split(',').map(str::to_owned).collect())
    };
    let only = list("--only");
    let wanted = |k: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == k));
    let pairs_list: Vec<usize> = list("--pairs")
        .map(|v| v.iter().filter_map(|s| s.parse().ok()).collect())
        .unwrap_or(PAIRS.to_vec());
    let qos_list: Vec<QoS> = list("--qos")
        .map(|v| {
            v.iter()
                .map(|q| {
                    if q == "1" {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    }
                })
                .collect()
        })
        .unwrap_or(vec![QoS::AtMostOnce, QoS::AtLeastOnce]);
    let with_storm = !args.iter().any(|a| a == "--no-storm");
    // The load generator on CPU 0, brokers on CPU 1.
    if let Some(t) = which("taskset") {
        let _ = Command::new(t)
            .args(["-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let mut storms = Vec::new();
    let mut reconnect = None;
    type Start = Box<dyn Fn() -> Option<Broker>>;
    let starts: [(&str, Start); 3] = [
        (
            "acl",
            Box::new(|| Some(start_embedded("embedded + ACL", "acl"))),
        ),
        (
            "noacl",
            Box::new(|| Some(start_embedded("embedded, no ACL", "noacl"))),
        ),
        ("mosquitto", Box::new(start_mosquitto)),
    ];
    let mut brokers = Vec::new();
    for (kind, start) in &starts {
        if !wanted(kind) {
            continue;
        }
        match start() {
            Some(b) => brokers.push(b),
            None => eprintln!(
                "mosquitto with the dynamic-security plugin is not installed \
                 (apt-get install mosquitto mosquitto-clients); leaving it out"
            ),
        }
    }
    // Every case runs each broker `reps` times in alternation (A B C A B C ...) and keeps the
    // median: the machine's drift then hits every broker alike instead of whichever ran last.
    rt.block_on(async {
        for &pairs in &pairs_list {
            for &qos in &qos_list {
                let case = format!("{pairs} pair(s), QoS{}", qos as u8);
                let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); brokers.len()];
                for _ in 0..reps {
                    for (k, b) in brokers.iter().enumerate() {
                        samples[k].push(throughput(b, pairs, qos, secs).await);
                    }
                }
                for (k, b) in brokers.iter().enumerate() {
                    let v = &mut samples[k];
                    v.sort_by(|x, y| x.0.total_cmp(&y.0));
                    let (rate, cpu_us) = v[v.len() / 2];
                    eprintln!("{case} {}: {rate:.0} msg/s", b.name);
                    rows.push(Row {
                        broker: b.name,
                        case: case.clone(),
                        rate,
                        cpu_us,
                    });
                }
            }
        }
        if with_storm {
            for b in &brokers {
                let s = storm(b, |i| i, |i| format!("storm-{i}")).await;
                storms.push((b.name, s));
            }
            // The connect path of a fleet: many clients, random client ids, few identities.
            if let Some(b) = brokers.iter_mut().find(|b| b.name == "embedded + ACL") {
                let before = b.hook_stats();
                let random_id = |_| {
                    format!(
                        "r-{:016x}",
                        rand_core::RngCore::next_u64(&mut rand_core::OsRng)
                    )
                };
                let s = storm(b, |i| STORM + i % STORM_IDENTITIES, random_id).await;
                let after = b.hook_stats();
                reconnect = Some((s, cache_delta(before, after)));
            }
        }
    });
    let hooks: Vec<_> = brokers
        .iter_mut()
        .filter_map(|b| Some((b.name, b.hook_stats()?)))
        .filter(|(_, v)| v["acl_sampled_calls"].as_u64() > Some(0))
        .collect();
    println!("\n| case | broker | msg/s delivered | broker CPU µs/msg |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.2} |",
            r.case, r.broker, r.rate, r.cpu_us
        );
    }
    println!(
        "\n| case | ACL / no ACL (msg/s) | ACL / mosquitto+dynsec (msg/s) | CPU/msg ACL vs no ACL |"
    );
    println!("|---|---|---|---|");
    let find = |broker: &str, case: &str| {
        rows.iter()
            .find(|r| r.broker == broker && r.case == case)
            .map(|r| (r.rate, r.cpu_us))
    };
    for r in rows.iter().filter(|r| r.broker == "embedded + ACL") {
        let bare = find("embedded, no ACL", &r.case);
        let mosq = find("mosquitto 2.0 + dynsec", &r.case);
        println!(
            "| {} | {} | {} | {} |",
            r.case,
            bare.map_or("—".into(), |b| format!("{:.2}", r.rate / b.0)),
            mosq.map_or("—".into(), |m| format!("{:.2}", r.rate / m.0)),
            bare.map_or("—".into(), |b| format!("{:+.2} µs", r.cpu_us - b.1)),
        );
    }
    for (name, v) in hooks {
        println!(
            "\n{name}: time inside the ACL hook {:.0} ns per call (mean of {} sampled calls); \
             CONNECT hook {:.1} µs per connect",
            v["acl_mean_ns"].as_f64().unwrap_or(f64::NAN),
            v["acl_sampled_calls"],
            v["connect_mean_us"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!(
        "\n| broker | connect storm ({STORM} clients) | accepted | RSS per connected client |"
    );
    println!("|---|---|---|---|");
    for (name, (rate, accepted, kib)) in storms {
        println!("| {name} | {rate:.0} connects/s | {accepted}/{STORM} | {kib:.1} KiB |");
    }
    if let Some(((rate, accepted, _), (hits, misses))) = reconnect {
        println!(
            "\nembedded + ACL, {STORM} clients with random client ids over {STORM_IDENTITIES} device \
             tokens: {rate:.0} connects/s, {accepted}/{STORM} accepted; grants cache {hits} hits, \
             {misses} misses"
        );
    }
}

/// Grants-cache (hits, misses) between two `stats` answers.
fn cache_delta(before: Option<serde_json::Value>, after: Option<serde_json::Value>) -> (u64, u64) {
    let get = |v: &Option<serde_json::Value>, k: &str| {
        v.as_ref().and_then(|v| v[k].as_u64()).unwrap_or(0)
    };
    (
        get(&after, "grants_cache_hits") - get(&before, "grants_cache_hits"),
        get(&after, "grants_cache_misses") - get(&before, "grants_cache_misses"),
    )
}
