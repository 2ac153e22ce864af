//! In-process harness: the real routes and state over a temp sled store, a manual clock, and
//! warp's test client (no sockets).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};
use sidecar::clock::ManualClock;
use sidecar::state::State;
use sidecar::store::{SledStore, Store};
use warp::http::{HeaderMap, StatusCode};

pub const T0: i64 = 1_800_000_000;

pub fn policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

pub struct Harness {
    pub state: State,
    pub clock: Arc<ManualClock>,
    pub admin: String,
    pub dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
    /// The body as sent (HTML pages, text).
    pub raw: Vec<u8>,
}

impl Reply {
    /// The error envelope's `error` field.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

pub fn harness(extra: &[&str]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    harness_in(dir, extra)
}

/// A harness whose manual clock starts at the wall clock's now (for tests with real peers that
/// check times themselves, such as nats-server).
pub fn harness_now(extra: &[&str]) -> Harness {
    harness_at(
        tempfile::tempdir().unwrap(),
        extra,
        test_support::unix_now(),
    )
}

pub fn harness_in(dir: tempfile::TempDir, extra: &[&str]) -> Harness {
    harness_at(dir, extra, T0)
}

fn harness_at(dir: tempfile::TempDir, extra: &[&str], t0: i64) -> Harness {
    let data = dir.path().to_str().unwrap().to_owned();
    let pol = policies();
    let mut args = vec![
        "serve",
        "--data-dir",
        &data,
        "--policies",
        pol.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let config = sidecar::cli::serve_args_from(args).unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let clock = Arc::new(ManualClock::at(t0));
    let state = sidecar::serve::build_state(config, store.clone(), clock.clone()).unwrap();
    let key = sidecar::apikeys::generate("test admin", vec!["admin".into()], vec![], None, 30, t0);
    store.put_api_key(&key.record).unwrap();
    Harness {
        state,
        clock,
        admin: key.key,
        dir,
    }
}

impl Harness {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Reply {
        self.call_from(
            "198.51.100.1:5000",
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
            bearer,
            &[],
        )
        .await
    }

    pub async fn call_from(
        &self,
        peer: &str,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = warp::test::request()
            .method(method)
            .path(path)
            .remote_addr(peer.parse::<SocketAddr>().unwrap());
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req = req.header("content-type", "application/json");
            }
            req = req
                .header("content-length", body.len().to_string())
                .body(body);
        }
        let res = req.reply(&sidecar::api::routes(self.state.clone())).await;
        let status = res.status();
        let headers = res.headers().clone();
        let body = serde_json::from_slice(res.body()).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            headers,
            raw: res.body().to_vec(),
        }
    }

    /// Register an identity with the admin key.
    pub async fn register(&self, kind: &str, public_key: &str, extra: Value) -> Reply {
        let mut body = json!({"public_key": public_key, "type": kind});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.call("POST", "/identity/register", Some(body), Some(&self.admin))
            .await
    }

    /// Challenge + verify; returns the verify reply.
    pub async fn login(&self, key: &TestKey) -> Reply {
        let ch = self
            .call(
                "POST",
                "/auth/challenge",
                Some(json!({"public_key": key.public()})),
                None,
            )
            .await;
        assert_eq!(ch.status, 200, "{:?}", ch.body);
        let challenge = ch.body["challenge"].as_str().unwrap().to_owned();
        self.call(
            "POST",
            "/auth/verify",
            Some(json!({"public_key": key.public(), "signature": key.sign(challenge.as_bytes()), "challenge": challenge})),
            None,
        )
        .await
    }

    /// Announce a device key at the harness clock.
    pub async fn announce(&self, key: &TestKey) -> Reply {
        let ts = self.clock_now();
        let sig = key.sign(format!("announce:{}:{ts}", key.public()).as_bytes());
        self.call(
            "POST",
            "/v1/announce",
            Some(json!({"public_key": key.public(), "timestamp": ts, "signature": sig})),
            None,
        )
        .await
    }

    pub fn clock_now(&self) -> i64 {
        use sidecar::clock::Clock;
        self.clock.now()
    }
}

/// A client key pair.
pub enum TestKey {
    Ed(ed25519_dalek::SigningKey),
    P(p256::ecdsa::SigningKey),
}

impl TestKey {
    pub fn ed() -> TestKey {
        TestKey::Ed(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }
    pub fn p256() -> TestKey {
        TestKey::P(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }
    pub fn public(&self) -> String {
        STANDARD.encode(self.public_raw())
    }
    pub fn public_raw(&self) -> Vec<u8> {
        match self {
            TestKey::Ed(k) => k.verifying_key().to_bytes().to_vec(),
            TestKey::P(k) => k.verifying_key().to_encoded_point(true).as_bytes().to_vec(),
        }
    }
    pub fn sign_raw(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            TestKey::Ed(k) => k.sign(msg).to_bytes().to_vec(),
            TestKey::P(k) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.normalize_s().unwrap_or(s).to_bytes().to_vec()
            }
        }
    }
    pub fn sign(&self, msg: &[u8]) -> String {
        STANDARD.encode(self.sign_raw(msg))
    }
}
