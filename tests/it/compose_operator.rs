//! The compose file's `operator` profile run without an engine: `operator-init` makes the NATS
//! operator and writes nats-server's block to a volume of its own, the sidecar serves as account
//! resolver and provisioner, and nats-server (which fetched its system account from the sidecar
//! before it started) admits the `.creds` the sidecar mints, with the policy's permissions.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use broker_auth_journeys::compose::Deployment;
use broker_auth_journeys::repo;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use test_support::nats_client::expect_event;

const SECRET: &str = "a-compose-backend-secret";

fn provision(c: &Client, url: &str, path: &str, body: Value) -> Value {
    let r = c
        .post(format!("{url}{path}"))
        .header("x-backend-shared-secret", SECRET)
        .json(&body)
        .send()
        .unwrap();
    let status = r.status();
    let body: Value = r.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

async fn connect(
    url: &str,
    creds: &Value,
) -> (async_nats::Client, test_support::nats_client::Events) {
    test_support::nats_client::creds_client(url, creds.as_str().unwrap())
        .await
        .unwrap_or_else(|e| panic!("connect with .creds: {e}"))
}

#[test]
fn the_operator_profile_resolves_accounts_from_the_sidecar_and_admits_minted_creds() {
    let vars: BTreeMap<String, String> = [
        (
            "ACCOUNT_SEED_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
        ("BACKEND_SHARED_SECRET", SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let d = Deployment::up(&repo().join("docker/compose.yaml"), Some("operator"), &vars);

    // The seed is private and stays on the sidecar's volume; nats-server's volume holds only
    // the block, with the operator JWT inline and the resolver at the sidecar.
    let seed = d.volume("operator-data").join("operator.seed");
    let mode = std::fs::metadata(&seed).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "operator.seed is readable by others");
    let conf_dir = d.volume("operator-conf");
    let names: Vec<String> = std::fs::read_dir(&conf_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["operator.conf"], "only the block is shared");
    let block = std::fs::read_to_string(conf_dir.join("operator.conf")).unwrap();
    assert!(block.contains("operator: \"eyJ"), "{block}");
    let resolver = format!(
        "127.0.0.1:{}/jwt/v1/accounts/",
        d.port("sidecar-operator", 8080)
    );
    assert!(block.contains(&resolver), "{block}");

    let url = format!("http://127.0.0.1:{}", d.port("sidecar-operator", 8080));
    let c = Client::new();
    provision(
        &c,
        &url,
        "/accounts",
        json!({"tenantId": "t1", "name": "Tenant one"}),
    );
    let sensor = provision(
        &c,
        &url,
        "/users",
        json!({"tenantId": "t1", "sensorId": "s1"}),
    );
    let backend = provision(&c, &url, "/backend-user", json!({}));

    // Nothing in the file waits on nats-server (it has no dependants): wait for its port here.
    let nats_port = d.port("nats-operator", 4222);
    let listening = test_support::wait_until(Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_ok()
    });
    assert!(listening, "nats-operator never listened:\n{}", d.logs());
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The backend (CONTROL) sees a sensor's status through the tenant's export.
        let (b, _) = connect(&nats_url, &backend["creds"]).await;
        let mut status = b.subscribe("rxc.*.*.status").await.unwrap();
        b.flush().await.unwrap();
        let (s, mut events) = connect(&nats_url, &sensor["creds"]).await;
        // The tenant's export reaches CONTROL once nats-server has the accounts: retry until it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut delivered = false;
        while !delivered && tokio::time::Instant::now() < deadline {
            s.publish("rxc.t1.s1.status", "up".into()).await.unwrap();
            s.flush().await.unwrap();
            let next = futures_util::StreamExt::next(&mut status);
            delivered = tokio::time::timeout(Duration::from_millis(300), next)
                .await
                .is_ok_and(|m| m.is_some_and(|m| m.subject.as_str() == "rxc.t1.s1.status"));
        }
        assert!(
            delivered,
            "the backend never saw s1's status:\n{}",
            d.logs()
        );
        // Another sensor's subject is outside the minted permissions.
        s.publish("rxc.t1.s2.status", "spoof".into()).await.unwrap();
        s.flush().await.unwrap();
        expect_event(&mut events, "permissions violation", Duration::from_secs(5)).await;
    });
}
