//! The OAuth2 server's code flow and userinfo per second, through the real routes in process
//! (warp's test client, the sled store with its fsyncs, no sockets): `cargo bench -p sidecar
//! --bench oauth`.
//!
//! One flow = `GET /oauth/authorize` (page, pending request stored) + `POST
//! /oauth/authorize/complete` (Ed25519 proof verified, code stored and flushed) + `POST
//! /oauth/token` (client secret, PKCE, code compare-and-swap, session, access + ID token, flush).
//! The client side's signing is excluded from the timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};
use sidecar::clock::ManualClock;
use sidecar::store::{SledStore, Store};

const REDIRECT: &str = "https://grafana.example/login/generic_oauth";
const VERIFIER: &str = "bench-verifier-bench-verifier-bench-verifier-0123456789";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

struct Call {
    status: u16,
    body: Vec<u8>,
    location: Option<String>,
}

async fn call(
    routes: &(
         impl warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
         + Clone
         + Send
         + Sync
         + 'static
     ),
    method: &str,
    path: &str,
    body: Option<(&str, String)>,
    headers: &[(&str, &str)],
) -> Call {
    let mut req = warp::test::request()
        .method(method)
        .path(path)
        .remote_addr("198.51.100.9:1000".parse().unwrap());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some((ct, b)) = body {
        req = req
            .header("content-type", ct)
            .header("content-length", b.len().to_string())
            .body(b);
    }
    let res = req.reply(routes).await;
    Call {
        status: res.status().as_u16(),
        location: res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: res.body().to_vec(),
    }
}

fn field(html: &str, name: &str) -> String {
    let rest = &html[html.find(&format!("name=\"{name}\"")).unwrap()..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_owned()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
    let config = sidecar::cli::serve_args_from([
        "serve",
        "--data-dir",
        &data,
        "--policies",
        policies,
        "--rate-limit",
        "1000000/60",
        "--mqtt-listen",
        "off",
    ])
    .unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let clock = Arc::new(ManualClock::at(1_800_000_000));
    let state = sidecar::serve::build_state(config, store.clone(), clock).unwrap();
    let admin = sidecar::apikeys::generate(
        "bench",
        vec!["admin".into()],
        vec![],
        None,
        30,
        1_800_000_000,
    );
    store.put_api_key(&admin.record).unwrap();
    let routes = sidecar::api::routes(state);
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let public = b64(sk.verifying_key().as_bytes());
    let bearer = format!("Bearer {}", admin.key);
    let json_ct = "application/json";
    let form_ct = "application/x-www-form-urlencoded";
    let (client_id, secret) = rt.block_on(async {
        let r = call(
            &routes,
            "POST",
            "/identity/register",
            Some((
                json_ct,
                json!({"public_key": public, "type": "user"}).to_string(),
            )),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, 201);
        let r = call(
            &routes,
            "POST",
            "/oauth/clients",
            Some((
                json_ct,
                json!({"name": "g", "redirect_uris": [REDIRECT]}).to_string(),
            )),
            &[("authorization", &bearer)],
        )
        .await;
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        )
    });
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    );
    let challenge = b64(&<sha2::Sha256 as sha2::Digest>::digest(VERIFIER.as_bytes()));
    let authorize = format!(
        "/oauth/authorize?{}",
        serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("scope", "openid profile email"),
        ])
        .unwrap()
    );
    let n = 1_000;
    let mut flows = Vec::with_capacity(n);
    let mut access = String::new();
    rt.block_on(async {
        for _ in 0..n {
            let t0 = Instant::now();
            let page = call(&routes, "GET", &authorize, None, &[]).await;
            let html = String::from_utf8(page.body).unwrap();
            let ch = field(&html, "challenge");
            let signing = Instant::now();
            let sig = b64(&sk.sign(ch.as_bytes()).to_bytes());
            let client_side = signing.elapsed();
            let form = serde_urlencoded::to_string([
                ("request_id", field(&html, "request_id")),
                ("challenge", ch),
                ("public_key", public.clone()),
                ("signature", sig),
            ])
            .unwrap();
            let done = call(
                &routes,
                "POST",
                "/oauth/authorize/complete",
                Some((form_ct, form)),
                &[],
            )
            .await;
            let loc = done.location.unwrap();
            let code = loc
                .split("code=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            let body = serde_urlencoded::to_string([
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .unwrap();
            let t = call(
                &routes,
                "POST",
                "/oauth/token",
                Some((form_ct, body)),
                &[("authorization", &basic)],
            )
            .await;
            assert_eq!(t.status, 200);
            flows.push(t0.elapsed() - client_side);
            let v: Value = serde_json::from_slice(&t.body).unwrap();
            access = v["access_token"].as_str().unwrap().to_owned();
        }
    });
    let flow_rate = n as f64 / flows.iter().sum::<Duration>().as_secs_f64();
    flows.sort();
    let m = 20_000;
    let userinfo_bearer = format!("Bearer {access}");
    let mut infos = Vec::with_capacity(m);
    rt.block_on(async {
        for _ in 0..m {
            let t0 = Instant::now();
            let r = call(
                &routes,
                "GET",
                "/oauth/userinfo",
                None,
                &[("authorization", &userinfo_bearer)],
            )
            .await;
            assert_eq!(r.status, 200);
            infos.push(t0.elapsed());
        }
    });
    let info_rate = m as f64 / infos.iter().sum::<Duration>().as_secs_f64();
    infos.sort();
    println!("| operation (sequential, in process) | per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!(
        "| code flow: authorize page + signed complete + token exchange (3 requests, 2 fsyncs) | {flow_rate:.0} | {:.2} | {:.2} |",
        pct(&flows, 0.5),
        pct(&flows, 0.99)
    );
    println!(
        "| userinfo (token verify, identity and roles lookup) | {info_rate:.0} | {:.3} | {:.3} |",
        pct(&infos, 0.5),
        pct(&infos, 0.99)
    );
}
