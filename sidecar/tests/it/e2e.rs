//! End to end against the real binary over HTTP: a login session, durability across `kill -9`,
//! graceful shutdown, and a store that refuses a second server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::harness::TestKey;
use super::server::{Server, bin, bootstrap};

fn post(c: &Client, url: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = c.post(url).json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().unwrap();
    let status = res.status().as_u16();
    (status, res.json().unwrap_or(Value::Null))
}

fn get(c: &Client, url: &str, bearer: &str) -> (u16, Value) {
    let res = c.get(url).bearer_auth(bearer).send().unwrap();
    let status = res.status().as_u16();
    (status, res.json().unwrap_or(Value::Null))
}

#[test]
fn bootstrap_register_login_and_read_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    assert!(admin.starts_with("ak_"), "{admin}");
    // Only the hash is stored: the key text appears nowhere in the data directory.
    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, admin.as_bytes()),
            "{} holds the admin key in clear",
            entry.display()
        );
    }
    let server = Server::start(&data, &[]);
    let c = Client::new();
    for key in [TestKey::ed(), TestKey::p256()] {
        let kind = if matches!(key, TestKey::Ed(_)) {
            "user"
        } else {
            "gateway"
        };
        let (s, reg) = post(
            &c,
            &server.url("/identity/register"),
            Some(&admin),
            &json!({"public_key": key.public(), "type": kind}),
        );
        assert_eq!(s, 201, "{reg}");
        let (_, ch) = post(
            &c,
            &server.url("/auth/challenge"),
            None,
            &json!({"public_key": key.public()}),
        );
        let challenge = ch["challenge"].as_str().unwrap();
        let (s, login) = post(
            &c,
            &server.url("/auth/verify"),
            None,
            &json!({"public_key": key.public(), "signature": key.sign(challenge.as_bytes()), "challenge": challenge}),
        );
        assert_eq!(s, 200, "{login}");
        let token = login["token"].as_str().unwrap();
        let id = reg["identity_id"].as_str().unwrap();
        let (s, me) = get(&c, &server.url(&format!("/identity/{id}")), token);
        assert_eq!((s, me["identity_id"].as_str()), (200, Some(id)));
    }
    // Security headers over the wire, too.
    let res = c.get(server.url("/health")).send().unwrap();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}

#[test]
fn every_acknowledged_registration_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let mut server = Server::start(&data, &["--rate-limit", "100000/60"]);
    let url = server.url("/identity/register");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (url, admin, stop) = (url.clone(), admin.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut acked = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"public_key": TestKey::ed().public(), "type": "user"});
                    match c.post(&url).bearer_auth(&admin).json(&body).send() {
                        Ok(res) if res.status().as_u16() == 201 => {
                            let v: Value = res.json().unwrap();
                            acked.push(v["identity_id"].as_str().unwrap().to_owned());
                        }
                        // The kill lands mid-request: no answer, no promise.
                        _ => {}
                    }
                }
                acked
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1500)); // let the write load run (this is load, not sync)
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.len() > 20,
        "only {} registrations in {:?}",
        acked.len(),
        started.elapsed()
    );

    // The store opens cleanly after the crash, and every 201 is there.
    let server = Server::start(&data, &["--rate-limit", "100000/60"]);
    let c = Client::new();
    let missing: Vec<(&String, u16)> = acked
        .iter()
        .map(|id| {
            (
                id,
                get(&c, &server.url(&format!("/identity/{id}")), &admin).0,
            )
        })
        .filter(|(_, status)| *status != 200)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged registrations lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn sigterm_drains_and_exits_cleanly_and_a_held_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    // A second server on the same data directory fails with a clear message.
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the store"), "{err}");
    let status = server.terminate().expect("sidecar did not exit on SIGTERM");
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(server.log().contains("store flushed"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_ban_earned_over_http_survives_a_restart_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let limits = ["--rate-limit", "1/60", "--ban-after-lockouts", "1"];
    let mut server = Server::start(&data, &limits);
    let c = Client::new();
    let hit = |server: &Server| {
        post(
            &c,
            &server.url("/auth/challenge"),
            None,
            &json!({"public_key": TestKey::ed().public()}),
        )
    };
    assert_eq!(
        hit(&server).0,
        404,
        "first request passes the limiter (unknown key)"
    );
    let mut last = (0, Value::Null);
    for _ in 0..10 {
        last = hit(&server);
    }
    assert_eq!(
        (last.0, last.1["error"].as_str()),
        (403, Some("BANNED")),
        "{}",
        last.1
    );
    let status = server.terminate().expect("clean stop");
    assert!(status.success());
    let server = Server::start(&data, &limits);
    let again = hit(&server);
    assert_eq!(
        (again.0, again.1["error"].as_str()),
        (403, Some("BANNED")),
        "the ban survived the restart"
    );
    // Health is exempt: a banned client still sees whether the service is up.
    let res = c.get(server.url("/health")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // The ban applies to every rate-limited route, the admin routes included.
    let (s, body) = get(&c, &server.url("/admin/bans"), &admin);
    assert_eq!((s, body["error"].as_str()), (403, Some("BANNED")));
}

#[test]
fn an_edited_policy_takes_effect_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for f in std::fs::read_dir(&shipped).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, policies.join(f.file_name().unwrap())).unwrap();
    }
    let admin = bootstrap(&dir.path().join("data"));
    let server = Server::start(
        &dir.path().join("data"),
        &["--policies", policies.to_str().unwrap()],
    );
    let c = Client::new();
    let live = || -> Value {
        c.get(server.url("/policies"))
            .bearer_auth(&admin)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    };
    assert_eq!(live()["version"], 1, "the directory seeded version 1");
    let packages = || -> Value {
        c.get(server.url("/health"))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["packages"]
            .clone()
    };
    assert_eq!(packages(), json!(["data.broker", "data.broker.mqtt.acl"]));
    // A valid new policy file is picked up without a restart.
    std::fs::write(
        policies.join("extra.rego"),
        "package broker.extra\nimport rego.v1\nanswer := 42\n",
    )
    .unwrap();
    let reloaded = test_support::wait_until(Duration::from_secs(10), || {
        packages().as_array().is_some_and(|a| a.len() == 3)
    });
    assert!(reloaded, "edit not picked up:\n{}", server.log());
    let v2 = live();
    assert_eq!(v2["version"], 2, "the edit is a new version: {v2}");
    assert_eq!(
        (v2["source"].as_str(), v2["author"].as_str()),
        (Some("dir"), Some("dir"))
    );
    // A broken edit is refused: the previous set keeps serving, and the log says where.
    std::fs::write(
        policies.join("extra.rego"),
        "package broker.extra\nimport rego.v1\nanswer := \n",
    )
    .unwrap();
    let refused = test_support::wait_until(Duration::from_secs(10), || {
        server.log().contains("policy change refused")
    });
    assert!(refused, "{}", server.log());
    assert!(
        server.log().contains("extra.rego:"),
        "the refusal names the file:\n{}",
        server.log()
    );
    assert_eq!(packages().as_array().unwrap().len(), 3);
    assert_eq!(live()["version"], 2, "a refused edit makes no version");
    assert!(
        !server.log().contains('\u{1b}'),
        "logs to a file are plain text, no colour codes"
    );
    let metrics = c
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(r#"broker_auth_policy_changes_total{source="dir",result="refused"} 1"#),
        "{metrics}"
    );
}

#[test]
fn head_answers_every_get_route_like_get_without_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let server = Server::start(
        &data,
        &["--mqtt-listen", "off", "--rate-limit", "100000/60"],
    );
    let c = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let doc: Value = c
        .get(server.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut paths: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, ops)| ops.get("get").is_some() && !p.contains('{'))
        .map(|(p, _)| p.clone())
        .collect();
    assert!(paths.len() >= 10, "{paths:?}");
    paths.extend(
        [
            "/openapi.json",
            "/docs",
            "/docs/",
            "/redoc",
            "/ui/policies",
            "/ui/assets/policies.js",
        ]
        .map(String::from),
    );
    for p in &paths {
        let get = c.get(server.url(p)).bearer_auth(&admin).send().unwrap();
        let head = c.head(server.url(p)).bearer_auth(&admin).send().unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {p}");
        assert_ne!(head.status().as_u16(), 405, "HEAD {p}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {p}"
        );
        assert!(head.bytes().unwrap().is_empty(), "HEAD {p} has no body");
    }
}
