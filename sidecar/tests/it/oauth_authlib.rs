//! A real OAuth2 client library (Python authlib) completes the authorization-code flow with
//! PKCE against the sidecar binary, refreshes, and reads userinfo with every field Grafana's
//! `generic_oauth` uses — once with `client_secret_basic`, once with `client_secret_post`.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::harness::TestKey;
use super::server::{Server, bootstrap};

fn python_with_authlib() -> PathBuf {
    let py = test_support::require_tool("python3", "apt-get install python3 python3-pip");
    let ok = Command::new(&py)
        .args(["-c", "import authlib, requests, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "authlib is missing: pip install authlib requests cryptography"
    );
    py
}

/// POST JSON with the admin key; the reply's body (asserting success).
pub fn post(c: &Client, s: &Server, admin: &str, path: &str, body: Value) -> Value {
    let r = c
        .post(s.url(path))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().unwrap()
}

#[test]
fn authlib_completes_the_code_flow_refreshes_and_reads_userinfo() {
    let py = python_with_authlib();
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrap(dir.path());
    let server = Server::start(dir.path(), &[]);
    let c = Client::new();
    let app = post(
        &c,
        &server,
        &admin,
        "/apps",
        json!({"name": "observability"}),
    );
    let app_id = app["id"].as_str().unwrap();
    let role = post(
        &c,
        &server,
        &admin,
        &format!("/apps/{app_id}/roles"),
        json!({"name": "Editor"}),
    );
    let key = TestKey::ed();
    let reg = post(
        &c,
        &server,
        &admin,
        "/identity/register",
        json!({"public_key": key.public(), "type": "user", "name": "Grace", "tenant": app_id,
               "groups": ["sre"], "metadata": {"email": "grace@example.com"}}),
    );
    let id = reg["identity_id"].as_str().unwrap().to_owned();
    post(
        &c,
        &server,
        &admin,
        &format!("/apps/{app_id}/users/{id}/roles"),
        json!({"role_id": role["id"]}),
    );
    let redirect = "http://127.0.0.1:1/login/generic_oauth";
    let client = post(
        &c,
        &server,
        &admin,
        "/oauth/clients",
        json!({"name": "Grafana", "redirect_uris": [redirect]}),
    );
    let TestKey::Ed(sk) = &key else {
        unreachable!()
    };
    let seed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk.to_bytes());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/oauth_authlib.py");
    for method in ["client_secret_basic", "client_secret_post"] {
        let out = Command::new(&py)
            .arg(&script)
            .args([
                &server.url(""),
                client["client_id"].as_str().unwrap(),
                client["client_secret"].as_str().unwrap(),
                redirect,
                &seed,
                method,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{method}:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        for info in [&r["userinfo"], &r["refreshed_userinfo"]] {
            assert_eq!(info["sub"], id.as_str(), "{method}: {info}");
            assert_eq!(info["login"], id.as_str());
            assert_eq!(info["name"], "Grace");
            assert_eq!(info["email"], "grace@example.com");
            assert_eq!(info["groups"], json!(["sre"]));
            assert_eq!(info["roles"], json!(["Editor"]));
        }
        assert_eq!(r["token_type"], "Bearer");
        assert_eq!(r["refresh_rotated"], true);
        let fields = r["token_fields"].to_string();
        for f in [
            "access_token",
            "refresh_token",
            "id_token",
            "expires_in",
            "scope",
        ] {
            assert!(fields.contains(f), "{method}: {fields}");
        }
        // The refresh token authlib rotated away is spent: presenting it is refused.
        let replay = c
            .post(server.url("/oauth/token"))
            .basic_auth(
                client["client_id"].as_str().unwrap(),
                client["client_secret"].as_str(),
            )
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", r["first_refresh"].as_str().unwrap()),
            ])
            .send()
            .unwrap();
        assert_eq!(replay.status(), 400);
        assert_eq!(replay.json::<Value>().unwrap()["error"], "invalid_grant");
        // No secret of the flow reached the log (the replay above logged a warning).
        let log = server.log();
        assert!(log.contains("refresh token reuse"), "{log}");
        let first = r["first_refresh"].as_str().unwrap();
        for secret in [
            client["client_secret"].as_str().unwrap(),
            first.split('.').nth(1).unwrap(),
        ] {
            assert!(!log.contains(secret), "a secret is in the log");
        }
    }
}

/// Exchange a code at the token endpoint with `client_secret_basic`; the raw reply.
pub fn exchange_code(
    c: &Client,
    s: &Server,
    client: &Value,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> reqwest::blocking::Response {
    c.post(s.url("/oauth/token"))
        .basic_auth(
            client["client_id"].as_str().unwrap(),
            client["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .unwrap()
}
