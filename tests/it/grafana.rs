//! Grafana's sign-in with the README's example configuration: the set-up steps written at the
//! top of `examples/grafana/grafana.ini` (register the client with its redirect URI, give people
//! app roles), then `tests/py/grafana_generic_oauth.py` signs people in with every URL, scope and
//! attribute path that file gives Grafana, and evaluates its JMESPath role mapping.

use std::process::Command;

use base64::Engine as _;
use broker_auth_examples::DeviceKey;
use broker_auth_journeys::sidecar::Sidecar;
use reqwest::blocking::Client;
use serde_json::{Value, json};

fn python_with_jmespath() -> std::path::PathBuf {
    let py = test_support::require_tool("python3", "apt-get install -y python3 python3-pip");
    let ok = Command::new(&py)
        .args(["-c", "import jmespath, requests, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "missing: pip install jmespath requests cryptography");
    py
}

fn post(c: &Client, s: &Sidecar, path: &str, body: Value) -> Value {
    let r = c
        .post(s.url(path))
        .bearer_auth(s.admin_key())
        .json(&body)
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// A person of `app` with a key, an e-mail (Grafana needs one) and the given app roles.
fn person(c: &Client, s: &Sidecar, app: &str, name: &str, roles: &[&Value]) -> (String, String) {
    let key = DeviceKey::generate("ed25519").unwrap();
    let DeviceKey::Ed25519(sk) = &key else {
        unreachable!()
    };
    let seed = base64::engine::general_purpose::STANDARD.encode(sk.to_bytes());
    let email = format!("{}@example.com", name.to_lowercase());
    let reg = post(
        c,
        s,
        "/identity/register",
        json!({"public_key": key.public_b64(), "type": "user", "name": name, "tenant": app,
               "groups": ["ops"], "metadata": {"email": email}}),
    );
    let id = reg["identity_id"].as_str().unwrap().to_owned();
    for role in roles {
        post(
            c,
            s,
            &format!("/apps/{app}/users/{id}/roles"),
            json!({"role_id": role["id"]}),
        );
    }
    (id, seed)
}

/// `[server] root_url` of the example ini: the redirect URI is it + "login/generic_oauth".
fn root_url(ini: &str) -> String {
    ini.lines()
        .find_map(|l| l.strip_prefix("root_url = "))
        .expect("grafana.ini sets root_url")
        .trim()
        .to_owned()
}

#[test]
fn grafana_signs_people_in_with_the_example_ini_and_maps_app_roles() {
    let py = python_with_jmespath();
    let ini_path = broker_auth_journeys::repo().join("examples/grafana/grafana.ini");
    let ini = std::fs::read_to_string(&ini_path).unwrap();
    let s = Sidecar::start(&[]);
    let c = Client::new();
    let app = post(&c, &s, "/apps", json!({"name": "observability"}));
    let app = app["id"].as_str().unwrap();
    let admin_role = post(
        &c,
        &s,
        &format!("/apps/{app}/roles"),
        json!({"name": "grafana-admin"}),
    );
    let editor_role = post(
        &c,
        &s,
        &format!("/apps/{app}/roles"),
        json!({"name": "grafana-editor"}),
    );
    // Step 1 of the ini, with its body.
    let redirect = format!("{}login/generic_oauth", root_url(&ini));
    let client = post(
        &c,
        &s,
        "/oauth/clients",
        json!({"name": "Grafana", "redirect_uris": [redirect], "app_id": app}),
    );
    let people = [
        ("Ada", vec![&admin_role, &editor_role], "Admin"),
        ("Eve", vec![&editor_role], "Editor"),
        ("Bob", vec![], "Viewer"),
    ];
    for (name, roles, grafana_role) in people {
        let (id, seed) = person(&c, &s, app, name, &roles);
        let out = Command::new(&py)
            .arg(broker_auth_journeys::repo().join("tests/py/grafana_generic_oauth.py"))
            .arg(&ini_path)
            .args([
                &s.url(""),
                client["client_id"].as_str().unwrap(),
                client["client_secret"].as_str().unwrap(),
                &seed,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            s.log()
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let g = &r["grafana"];
        assert_eq!(
            g["login"],
            id.as_str(),
            "{name}: Grafana's login is the id: {r}"
        );
        assert_eq!(g["name"], name);
        assert_eq!(g["email"], format!("{}@example.com", name.to_lowercase()));
        assert_eq!(g["groups"], json!(["ops"]));
        assert_eq!(g["role"], grafana_role, "{name}: role_attribute_path: {r}");
        assert_eq!(r["userinfo"]["app_id"], app);
        assert_eq!(r["id_token"], true, "scope openid gives an ID token");
        assert_eq!(r["refresh_rotated"], true, "use_refresh_token: {r}");
        assert_eq!(r["spent_refresh"], json!([400, "invalid_grant"]), "{r}");
    }
    assert!(
        !s.log().contains(client["client_secret"].as_str().unwrap()),
        "the client secret is in the log"
    );
}
