//! Upstream OpenID login against a real provider: npm `oidc-provider` (sidecar/tests/node),
//! started by the test on a port it picks, and the real sidecar binary. The "browser" is a
//! reqwest client with a cookie jar that follows redirects by hand, so each hop can be checked
//! or tampered with.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use test_support::{free_port, http_get, require_tool, wait_until};

use super::server::{Server, bootstrap};

/// The provider process; killed and reaped on drop.
struct Oidc {
    child: Child,
    port: u16,
}

impl Oidc {
    fn start(redirect_uri: &str) -> Oidc {
        let node = require_tool("node", "apt-get install nodejs (Node.js 20 or later)");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed. Run: npm ci --prefix sidecar/tests/node"
        );
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&node)
                .arg("provider.mjs")
                .current_dir(&dir)
                .env("PORT", port.to_string())
                .env("REDIRECT_URIS", redirect_uri)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut exited = false;
            let ready = wait_until(Duration::from_secs(20), || {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    return true;
                }
                matches!(
                    http_get(port, "/.well-known/openid-configuration"),
                    Some((200, _))
                )
            });
            if ready && !exited {
                return Oidc { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("oidc-provider did not start (see sidecar/tests/node/provider.mjs)");
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn mode(&self, query: &str) {
        let r = reqwest::blocking::get(format!("{}/__test/mode?{query}", self.issuer())).unwrap();
        assert!(r.status().is_success());
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct World {
    oidc: Oidc,
    sidecar: Server,
    admin: String,
    app_id: String,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let port = free_port();
    let oidc = Oidc::start(&format!("http://127.0.0.1:{port}/oauth/test/callback"));
    let upstream = format!("test,{},sidecar,sidecar-secret", oidc.issuer());
    let sidecar = Server::start_on(&data, port, &["--upstream-oidc", &upstream]);
    let app = Client::new()
        .post(sidecar.url("/apps"))
        .bearer_auth(&admin)
        .json(&json!({"name": "tronexus"}))
        .send()
        .unwrap();
    let app_id = app.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    World {
        oidc,
        sidecar,
        admin,
        app_id,
        _dir: dir,
    }
}

fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &Response) -> String {
    let loc = r
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no redirect from {}: {}", r.url(), r.status()))
        .to_str()
        .unwrap();
    r.url().join(loc).unwrap().to_string()
}

impl World {
    /// Start a login and follow the provider's redirects until they point back at the sidecar;
    /// `tamper` may rewrite the first hop to the provider. Returns the callback URL.
    fn until_callback(&self, b: &Client, tamper: impl Fn(String) -> String) -> String {
        let url = self
            .sidecar
            .url(&format!("/oauth/test?app_id={}", self.app_id));
        self.until_callback_from(b, &url, tamper)
    }

    fn until_callback_from(
        &self,
        b: &Client,
        url: &str,
        tamper: impl Fn(String) -> String,
    ) -> String {
        let start = b.get(url).send().unwrap();
        assert_eq!(start.status(), 302, "{}", self.sidecar.log());
        let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let first = location(&start);
        assert!(first.contains("code_challenge_method=S256"), "{first}");
        assert!(
            first.contains("nonce=") && first.contains("state="),
            "{first}"
        );
        let mut next = tamper(first);
        for _ in 0..10 {
            if next.starts_with(&self.sidecar.url("/")) {
                return next;
            }
            let r = b.get(&next).send().unwrap();
            assert!(r.status().is_redirection(), "{next}: {}", r.status());
            next = location(&r);
        }
        panic!("the provider never sent the browser back");
    }

    fn finish(&self, b: &Client, callback: &str) -> (u16, Value) {
        let r = b.get(callback).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// The callback is refused (401 UPSTREAM_LOGIN_FAILED) for the reason `why` names.
    fn expect_refused(&self, b: &Client, callback: &str, why: &str) {
        let (status, body) = self.finish(b, callback);
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "UPSTREAM_LOGIN_FAILED", "{body}");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }

    fn identity(&self, id: &str) -> Value {
        Client::new()
            .get(self.sidecar.url(&format!("/identity/{id}")))
            .bearer_auth(&self.admin)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let (base, q) = url.split_once('?').unwrap();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| {
            if k == name {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    format!("{base}?{}", serde_urlencoded::to_string(pairs).unwrap())
}

fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn upstream_login_creates_the_person_once_and_issues_app_tokens() {
    let w = world();
    let b = browser();
    let cb = w.until_callback(&b, |u| u);
    let (status, body) = w.finish(&b, &cb);
    assert_eq!(status, 200, "{body}\n{}", w.sidecar.log());
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["app_id"], w.app_id.as_str());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    let me: Value = Client::new()
        .get(w.sidecar.url("/auth/me"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = c["sub"].as_str().unwrap().to_owned();
    let ident = w.identity(&id);
    assert_eq!(ident["upstream"]["sub"], "alice", "{ident} {me}");
    assert_eq!(ident["upstream"]["email_verified"], true);
    assert_eq!(ident["tenant"], w.app_id.as_str());
    // The refresh token rotates like any session's.
    let r = Client::new()
        .post(w.sidecar.url("/auth/refresh"))
        .json(&json!({"refresh_token": body["refresh_token"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Alice again (new browser): the same person, found by (iss, sub).
    let b2 = browser();
    let cb2 = w.until_callback(&b2, |u| u);
    let (_, again) = w.finish(&b2, &cb2);
    assert_eq!(
        claims(again["access_token"].as_str().unwrap())["sub"],
        id.as_str()
    );
    // Mallory claims Alice's address, unverified: another person, and the address is not
    // trusted.
    w.oidc.mode("account=mallory");
    let b3 = browser();
    let cb3 = w.until_callback(&b3, |u| u);
    let (status, m) = w.finish(&b3, &cb3);
    assert_eq!(status, 200);
    let mid = claims(m["access_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(mid, id);
    assert_eq!(w.identity(&mid)["upstream"]["email_verified"], false);
}

#[test]
fn a_wrong_or_foreign_state_is_refused() {
    let w = world();
    let b = browser();
    let cb = w.until_callback(&b, |u| u);
    // An attacker's state, or the right callback in another browser (no binding cookie).
    let forged = replace_param(&cb, "state", "forged-state");
    let (status, body) = w.finish(&b, &forged);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "UPSTREAM_LOGIN_FAILED");
    w.expect_refused(&browser(), &cb, "another browser");
    // The cookieless attempt named the real state, and a state is taken at first sight: the
    // real browser's callback is refused now too. A stolen callback URL is worth nothing.
    let (status, _) = w.finish(&b, &cb);
    assert_eq!(status, 401);
}

#[test]
fn a_replayed_code_is_refused() {
    let w = world();
    let b = browser();
    let cb = w.until_callback(&b, |u| u);
    let (status, _) = w.finish(&b, &cb);
    assert_eq!(status, 200);
    // The same callback again: the state is spent.
    let (status, body) = w.finish(&b, &cb);
    assert_eq!(status, 401, "{body}");
    // The old code under a fresh, valid state of this browser: the provider refuses it.
    let fresh = w.until_callback(&b, |u| u);
    let old_code = cb.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let replay = replace_param(&fresh, "code", old_code);
    w.expect_refused(&b, &replay, "refused the code");
}

#[test]
fn an_id_token_with_another_nonce_is_refused() {
    let w = world();
    let b = browser();
    // The provider is asked for a nonce other than the one the sidecar bound to this login.
    let cb = w.until_callback(&b, |u| replace_param(&u, "nonce", "an-attackers-nonce"));
    w.expect_refused(&b, &cb, "ID token refused");
}

#[test]
fn an_id_token_for_another_audience_is_refused() {
    let w = world();
    w.oidc.mode("foreign_audience=true");
    let b = browser();
    let cb = w.until_callback(&b, |u| u);
    w.expect_refused(&b, &cb, "ID token refused");
    // Control: the same provider with an honest audience works.
    w.oidc.mode("foreign_audience=false");
    let b = browser();
    let cb = w.until_callback(&b, |u| u);
    assert_eq!(w.finish(&b, &cb).0, 200);
}

#[test]
fn the_authorization_page_offers_the_upstream_login_and_ends_at_the_client() {
    let w = world();
    let c = Client::new();
    let redirect = "http://127.0.0.1:1/login/generic_oauth";
    let client: Value = c
        .post(w.sidecar.url("/oauth/clients"))
        .bearer_auth(&w.admin)
        .json(&json!({"name": "Grafana", "redirect_uris": [redirect], "app_id": w.app_id}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let client_id = client["client_id"].as_str().unwrap();
    let verifier = "v".repeat(64);
    let challenge = super::oauth_server::s256(&verifier);
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("state", "grafana-state"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("scope", "openid email profile"),
    ])
    .unwrap();
    let b = browser();
    let page = b
        .get(w.sidecar.url(&format!("/oauth/authorize?{q}")))
        .send()
        .unwrap();
    let page_url = page.url().clone();
    let html = page.text().unwrap();
    let href = html
        .split("class=\"up\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no upstream link in:\n{html}"))
        .replace("&amp;", "&");
    let start = page_url.join(&href).unwrap().to_string();
    let cb = w.until_callback_from(&b, &start, |u| u);
    let back = b.get(&cb).send().unwrap();
    assert_eq!(back.status(), 302, "{}", w.sidecar.log());
    let loc = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(redirect), "{loc}");
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(loc.split_once('?').unwrap().1).unwrap();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("state").as_deref(), Some("grafana-state"));
    let token: Value = super::oauth_authlib::exchange_code(
        &c,
        &w.sidecar,
        &client,
        &get("code").unwrap(),
        redirect,
        &verifier,
    )
    .json()
    .unwrap();
    let info: Value = c
        .get(w.sidecar.url("/oauth/userinfo"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    // Alice lands in the client's app, with the address her provider verified.
    assert_eq!(info["email"], "alice@example.com", "{info}");
    assert_eq!(info["name"], "Alice Example");
    assert_eq!(info["app_id"], w.app_id.as_str());
}

#[test]
fn a_provider_key_rotation_is_followed() {
    let w = world();
    // The first login caches the provider's metadata and JWKS.
    let b = browser();
    let cb = w.until_callback(&b, |u| u);
    assert_eq!(w.finish(&b, &cb).0, 200);
    // The provider rotates: its JWKS gains a key, and ID tokens are signed with it.
    w.oidc.mode("rotated=true");
    let b = browser();
    let cb = w.until_callback(&b, |u| u);
    let (status, body) = w.finish(&b, &cb);
    assert_eq!(status, 200, "{body}\n{}", w.sidecar.log());
}
