//! The OAuth2 sign-in page in Debian's Chromium (driven by playwright-core): the page renders
//! with its own style under its CSP, the form a person fills in submits, and the browser lands at
//! the client's redirect URI with a code that exchanges.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use test_support::require_tool;

use super::harness::TestKey;
use super::oauth_authlib::{exchange_code, post};
use super::oauth_server::s256;
use super::server::{Server, bootstrap};

#[test]
fn a_person_signs_in_on_the_page_in_chromium() {
    let node = require_tool("node", "apt-get install nodejs (Node.js 20 or later)");
    require_tool("chromium", "apt-get update && apt-get install -y chromium");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed. Run: npm ci --prefix sidecar/tests/node"
    );
    let data = tempfile::tempdir().unwrap();
    let admin = bootstrap(data.path());
    let server = Server::start(data.path(), &[]);
    let c = Client::new();
    let key = TestKey::ed();
    post(
        &c,
        &server,
        &admin,
        "/identity/register",
        json!({"public_key": key.public(), "type": "user", "name": "Lin"}),
    );
    // The script stands in for the client on this port.
    let redirect = format!(
        "http://127.0.0.1:{}/login/generic_oauth",
        test_support::free_port()
    );
    let redirect = redirect.as_str();
    let client = post(
        &c,
        &server,
        &admin,
        "/oauth/clients",
        json!({"name": "Grafana <Ops>", "redirect_uris": [redirect]}),
    );
    let client_id = client["client_id"].as_str().unwrap();
    let verifier = "c".repeat(128);
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("state", "from-grafana"),
        ("code_challenge", &s256(&verifier)),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    let TestKey::Ed(sk) = &key else {
        unreachable!()
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let out = Command::new(node)
        .arg("signin.mjs")
        .current_dir(&dir)
        .env(
            "AUTHORIZE_URL",
            server.url(&format!("/oauth/authorize?{q}")),
        )
        .env("REDIRECT_URI", redirect)
        .env("SEED", b64(&sk.to_bytes()))
        .env("PUBLIC_KEY", b64(sk.verifying_key().as_bytes()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The client's name is shown as text, escaped; the page's style applied; no CSP complaint.
    assert_eq!(r["title"], "Sign in to Grafana <Ops>");
    assert_eq!(r["maxWidth"], "640px", "the page's style was blocked");
    assert_eq!(r["consoleErrors"], json!([]));
    let landed = r["landed"].as_str().unwrap();
    assert!(landed.contains("code="), "{landed}");
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(landed.split_once('?').unwrap().1).unwrap();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("state").as_deref(), Some("from-grafana"));
    let token = exchange_code(
        &c,
        &server,
        &client,
        &get("code").unwrap(),
        redirect,
        &verifier,
    );
    assert_eq!(token.status(), 200);
}
