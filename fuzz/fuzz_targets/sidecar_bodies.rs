//! The sidecar's JSON request bodies through its real warp routes (`sidecar::api::routes`), on
//! one state built as `sidecar serve` builds it (a temporary sled store, the shipped policies,
//! a manual clock at [`NOW`]), with warp's in-process test client: no socket.
//!
//! Input: a first line `METHOD PATH [admin] [device] [text]`, then the body (the rest, as bytes).
//! The routes fuzzed are those the OpenAPI document gives a request body; a first line that
//! names none of them picks one by its bytes, with `fuzz` for each path parameter. `admin` sends
//! the admin API key as the bearer, `device` the access token of a device announced at start-up,
//! `text` a `text/plain` content type instead of JSON. In the first line and the body these
//! placeholders are replaced: `{{admin}}` (the admin key), `{{device}}` (that device's address),
//! `{{access}}`, `{{refresh}}` (its tokens), `{{refresh_sig}}` (the refresh token signed by the
//! device key, as `/v1/auth/refresh` wants it).
//!
//! Properties: no panic; never a 5xx; an error is the JSON envelope `{"error", "message",
//! "code"}` with an error name, code and status of `api::error::ERROR_CODES` (OAuth routes may
//! answer RFC 6749's `{"error", "error_description"}` instead); a JSON success is valid JSON.
//!
//! The state lives for the whole run, as a server's does: what one input registers or deploys,
//! later inputs see. A crash that does not reproduce from its artifact alone depended on that
//! history (rerun the corpus in order to find it).
#![no_main]
// A broken invariant must abort the run: a panic is how a fuzz target reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use broker_auth_fuzz::NOW;
use ed25519_dalek::Signer as _;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use sidecar::api::error::ERROR_CODES;
use sidecar::clock::ManualClock;
use sidecar::state::State;
use sidecar::store::{SledStore, Store};

/// The address every request comes from.
const PEER: &str = "198.51.100.1:5000";
/// The key of the device the fixture announces (the seeds announce another one).
const FIXTURE_DEVICE: [u8; 32] = [0x43; 32];

struct Fixture {
    rt: tokio::runtime::Runtime,
    state: State,
    /// `(METHOD, template)` of every route with a request body, sorted.
    routes: Vec<(String, String)>,
    /// Placeholder → value.
    subs: Vec<(&'static str, String)>,
    admin: String,
    access: String,
    _dir: tempfile::TempDir,
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().to_str().expect("utf-8 temp dir").to_owned();
        let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let args = [
            "serve",
            "--data-dir",
            &data,
            "--policies",
            policies.to_str().expect("utf-8 path"),
            // No input may be refused for the ones before it.
            "--rate-limit",
            "4000000000/1",
        ];
        let config = sidecar::cli::serve_args_from(args).expect("serve arguments");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("sled"));
        let clock = Arc::new(ManualClock::at(NOW));
        let state = rt
            .block_on(async { sidecar::serve::build_state(config, store.clone(), clock) })
            .expect("state");
        let key = sidecar::apikeys::generate("fuzz admin", vec!["admin".into()], vec![], None, 30, NOW);
        store.put_api_key(&key.record).expect("admin key");

        let mut routes: Vec<(String, String)> = sidecar::openapi::document()["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, op)| op.get("requestBody").is_some())
                    .map(|(m, _)| (m.to_uppercase(), path.clone()))
            })
            .collect();
        routes.sort();
        assert!(!routes.is_empty(), "no route takes a body");

        // A device, announced through the routes, whose tokens the inputs may use.
        let device = ed25519_dalek::SigningKey::from_bytes(&FIXTURE_DEVICE);
        let public = b64(device.verifying_key().as_bytes());
        let msg = format!("announce:{public}:{NOW}");
        let body = json!({"public_key": public, "timestamp": NOW, "signature": b64(&device.sign(msg.as_bytes()).to_bytes())});
        let (status, reply) = rt.block_on(call(&state, "POST", "/v1/announce", None, body.to_string().into_bytes(), "application/json"));
        assert_eq!(status, 200, "fixture announce: {reply}");
        let field = |k: &str| reply[k].as_str().unwrap_or_default().to_owned();
        let (address, access, refresh) = (field("device_address"), field("access_token"), field("refresh_token"));
        let refresh_sig = b64(&device.sign(refresh.as_bytes()).to_bytes());
        let subs = vec![
            ("{{admin}}", key.key.clone()),
            ("{{device}}", address),
            ("{{access}}", access.clone()),
            ("{{refresh}}", refresh),
            ("{{refresh_sig}}", refresh_sig),
        ];
        Fixture {
            rt,
            state,
            routes,
            subs,
            admin: key.key,
            access,
            _dir: dir,
        }
    })
}

async fn call(
    state: &State,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Vec<u8>,
    content_type: &str,
) -> (u16, Value) {
    let (status, _, raw) = call_raw(state, method, path, bearer, body, content_type).await;
    (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

async fn call_raw(
    state: &State,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Vec<u8>,
    content_type: &str,
) -> (u16, Option<String>, Vec<u8>) {
    let mut req = warp::test::request()
        .method(method)
        .path(path)
        .remote_addr(PEER.parse::<SocketAddr>().expect("peer"))
        .header("content-type", content_type)
        .header("content-length", body.len().to_string());
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let res = req
        .body(body)
        .reply(&sidecar::api::routes(state.clone()))
        .await;
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (res.status().as_u16(), ctype, res.body().to_vec())
}

fn substitute(f: &Fixture, text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    for (k, v) in &f.subs {
        let (k, v) = (k.as_bytes(), v.as_bytes());
        let mut i = 0;
        while let Some(pos) = out[i..].windows(k.len()).position(|w| w == k) {
            let at = i + pos;
            out.splice(at..at + k.len(), v.iter().copied());
            i = at + v.len();
        }
    }
    out
}

/// Does a concrete `path` fit the route `template` (`{x}` one non-empty segment)?
fn fits(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// The route the first line names, or one picked by its bytes.
fn route(f: &Fixture, line: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let method = method.to_uppercase();
    let named = f
        .routes
        .iter()
        .any(|(m, t)| *m == method && fits(t, path))
        // warp's test client panics on a path that is no URI path (a client cannot send one).
        && path.parse::<warp::http::uri::PathAndQuery>().is_ok();
    if named {
        return (method, path.to_owned());
    }
    let pick = line.iter().fold(0usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let (m, t) = &f.routes[pick % f.routes.len()];
    let path = t
        .split('/')
        .map(|s| if s.starts_with('{') { "fuzz" } else { s })
        .collect::<Vec<_>>()
        .join("/");
    (m.clone(), path)
}

fn check_error(path: &str, status: u16, body: &[u8]) {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{status} from {path} is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    // The broker routes answer a refusal as a decision, in the shape the broker reads:
    // mosquitto-go-auth's `{"ok": false, "reason", "error"}`, and `{"allow": false, "reason"}`
    // on the internal pair. Only a 403 is a decision; anything else is an error like any other.
    let decision_key = match path {
        "/user" | "/acl" | "/superuser" => Some("ok"),
        p if p.starts_with("/internal/mqtt/") => Some("allow"),
        _ => None,
    };
    if let Some(key) = decision_key
        && status == 403
        && v.get(key).is_some()
    {
        assert_eq!(v[key], false, "a 403 decision that allows: {v}");
        assert!(v["reason"].is_string(), "a decision without a reason: {v}");
        return;
    }
    let name = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{status} from {path}: no error name: {v}"));
    if path.starts_with("/oauth/") && v.get("error_description").is_some() {
        assert!(v["error_description"].is_string(), "{v}");
        return;
    }
    let (_, code, want_status, _) = ERROR_CODES
        .iter()
        .find(|(n, ..)| *n == name)
        .unwrap_or_else(|| panic!("{status} from {path}: unknown error name {name:?}: {v}"));
    assert_eq!(status, *want_status, "{name} with the wrong status: {v}");
    assert_eq!(
        v["code"].as_u64(),
        Some(u64::from(*code)),
        "{name} with the wrong code: {v}"
    );
    assert!(v["message"].is_string(), "{name} without a message: {v}");
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let data = substitute(f, data);
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..], &b""[..]),
    };
    let (method, path) = route(f, line);
    let flags = String::from_utf8_lossy(line);
    let flags: Vec<&str> = flags.split(' ').skip(2).collect();
    let bearer = if flags.contains(&"admin") {
        Some(f.admin.as_str())
    } else if flags.contains(&"device") {
        Some(f.access.as_str())
    } else {
        None
    };
    let ctype = if flags.contains(&"text") {
        "text/plain"
    } else {
        "application/json"
    };
    let (status, res_type, raw) = f.rt.block_on(call_raw(
        &f.state,
        &method,
        &path,
        bearer,
        body.to_vec(),
        ctype,
    ));
    assert!(
        status < 500,
        "{method} {path} answered {status}: {:?}\nbody sent: {:?}",
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(body)
    );
    if status >= 400 {
        check_error(&path, status, &raw);
    } else if res_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/json"))
    {
        assert!(
            serde_json::from_slice::<Value>(&raw).is_ok(),
            "{method} {path} answered {status} with invalid JSON"
        );
    }
});
