//! `nats_jwt` against a real nats-server 2.15: operator-mode user JWTs and `.creds` are accepted
//! and their permissions enforced; authorization requests the server sends decode and verify, and
//! responses we encode let clients in (config mode, with and without xkey).

use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerError};
use broker_auth::nats_jwt::creds::format_user_creds;
use broker_auth::nats_jwt::{
    self, Account, AuthorizationRequest, AuthorizationResponse, NatsClaims, Operator, User,
};
use broker_auth::secret::SecretString;
use futures_util::StreamExt;
use test_support::NatsServer;
use tokio::sync::mpsc;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Connect options that report server errors (permission violations) on a channel.
fn with_errors(opts: ConnectOptions) -> (ConnectOptions, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let opts = opts.event_callback(move |ev| {
        let tx = tx.clone();
        async move {
            if let Event::ServerError(e) = ev {
                let _ = tx.send(match e {
                    ServerError::Other(s) => s,
                    other => other.to_string(),
                });
            }
        }
    });
    (opts, rx)
}

async fn expect_violation(rx: &mut mpsc::UnboundedReceiver<String>, subject: &str) {
    let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no permissions violation reported")
        .unwrap();
    assert!(
        msg.to_lowercase().contains("permissions violation") && msg.contains(subject),
        "{msg}"
    );
}

#[tokio::test]
async fn operator_mode_accepts_our_user_jwt_and_creds() {
    let t = now();
    let operator = nkeys::KeyPair::new_operator();
    let sys = nkeys::KeyPair::new_account();
    let app = nkeys::KeyPair::new_account();

    let mut op = NatsClaims::<Operator>::new(operator.public_key());
    op.name = "broker-auth-test".into();
    op.nats.system_account = Some(sys.public_key());
    let op_jwt = nats_jwt::encode(&mut op, &operator, t).unwrap();
    let mut sys_claims = NatsClaims::<Account>::new(sys.public_key());
    sys_claims.name = "SYS".into();
    let sys_jwt = nats_jwt::encode(&mut sys_claims, &operator, t).unwrap();
    let mut app_claims = NatsClaims::<Account>::new(app.public_key());
    app_claims.name = "APP".into();
    let app_jwt = nats_jwt::encode(&mut app_claims, &operator, t).unwrap();

    let user = nkeys::KeyPair::new_user();
    let mut uc = NatsClaims::<User>::new(user.public_key());
    uc.name = "dev-1".into();
    uc.exp = t + 600;
    uc.nats.permissions.publish.allow = vec!["allowed.>".into()];
    uc.nats.permissions.subscribe.allow = vec!["allowed.>".into(), "_INBOX.>".into()];
    let user_jwt = nats_jwt::encode(&mut uc, &app, t).unwrap();
    let creds = format_user_creds(&user_jwt, &SecretString::new(user.seed().unwrap())).unwrap();

    let config = format!(
        "operator: {op_jwt}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {sys}: {sys_jwt}\n  {app_pub}: {app_jwt}\n}}\n",
        sys = sys.public_key(),
        app_pub = app.public_key(),
    );
    let server = NatsServer::start(&config);
    let creds_path = server.dir().join("dev-1.creds");
    std::fs::write(&creds_path, &creds).unwrap();

    let (opts, mut errors) = with_errors(
        ConnectOptions::with_credentials_file(&creds_path)
            .await
            .unwrap(),
    );
    let client = opts
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let mut sub = client.subscribe("allowed.x").await.unwrap();
    client.publish("allowed.x", "hi".into()).await.unwrap();
    client.flush().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"hi");
    client.publish("denied.x", "no".into()).await.unwrap();
    client.flush().await.unwrap();
    expect_violation(&mut errors, "denied.x").await;

    // The same creds with the JWT re-signed by an account the server does not know: refused.
    let stranger = nkeys::KeyPair::new_account();
    let foreign = nats_jwt::encode(&mut uc.clone(), &stranger, t).unwrap();
    let bad = format_user_creds(&foreign, &SecretString::new(user.seed().unwrap())).unwrap();
    let r = ConnectOptions::with_credentials(&bad)
        .unwrap()
        .connect(server.url())
        .await;
    assert!(r.is_err(), "a user of an unknown account must be refused");
}

const ISSUER_SEED: &str = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI";
const CURVE_SEED: &str = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4";

/// A minimal responder built only from `nats_jwt`: admits the token "let-me-in".
async fn responder(
    url: String,
    xkey: bool,
    recorded: mpsc::UnboundedSender<String>,
) -> async_nats::Client {
    let client = ConnectOptions::with_user_and_password("auth".into(), "auth-pw".into())
        .connect(url)
        .await
        .unwrap();
    let mut sub = client
        .queue_subscribe("$SYS.REQ.USER.AUTH", "callout".into())
        .await
        .unwrap();
    // `flush` only empties the client's buffer: a request nobody answers returns "no responders"
    // once the server has processed the subscription before it.
    let _ = client.request("_PROBE.callout-ready", "".into()).await;
    let c = client.clone();
    tokio::spawn(async move {
        let issuer = nkeys::KeyPair::from_seed(ISSUER_SEED).unwrap();
        let curve = nkeys::XKey::from_seed(CURVE_SEED).unwrap();
        while let Some(msg) = sub.next().await {
            let server_xkey = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Server-Xkey"))
                .map(|v| v.as_str().to_owned());
            assert_eq!(
                server_xkey.is_some(),
                xkey,
                "sealed exactly when xkey is configured"
            );
            let body = match &server_xkey {
                Some(k) => curve
                    .open(&msg.payload, &nkeys::XKey::from_public_key(k).unwrap())
                    .unwrap(),
                None => msg.payload.to_vec(),
            };
            let request_jwt = String::from_utf8(body).unwrap();
            let req: NatsClaims<AuthorizationRequest> =
                nats_jwt::decode(&request_jwt, now()).unwrap();
            let _ = recorded.send(request_jwt);

            let mut resp = NatsClaims::<AuthorizationResponse>::new(req.nats.user_nkey.clone());
            resp.aud = req.nats.server_id.id.clone();
            if req.nats.connect_opts.auth_token.as_deref() == Some("let-me-in") {
                let mut user = NatsClaims::<User>::new(req.nats.user_nkey.clone());
                user.aud = "APP".into();
                user.name = "dev-1".into();
                user.exp = now() + 600;
                user.nats.permissions.publish.allow = vec!["allowed.>".into()];
                user.nats.permissions.subscribe.allow = vec!["allowed.>".into()];
                resp.nats.jwt = Some(nats_jwt::encode(&mut user, &issuer, now()).unwrap());
            } else {
                resp.nats.error = Some("bad_token".into());
            }
            let out = nats_jwt::encode(&mut resp, &issuer, now())
                .unwrap()
                .into_bytes();
            let out = match &server_xkey {
                Some(k) => curve
                    .seal(&out, &nkeys::XKey::from_public_key(k).unwrap())
                    .unwrap(),
                None => out,
            };
            if let Some(reply) = msg.reply {
                c.publish(reply, out.into()).await.unwrap();
            }
        }
    });
    client
}

async fn callout_round_trip(xkey: bool) {
    let issuer_pub = nkeys::KeyPair::from_seed(ISSUER_SEED).unwrap().public_key();
    let curve_pub = nkeys::XKey::from_seed(CURVE_SEED).unwrap().public_key();
    let xkey_line = if xkey {
        format!("xkey: {curve_pub}")
    } else {
        String::new()
    };
    let server = NatsServer::start(&format!(
        "accounts {{\n  AUTH {{ users: [ {{ user: auth, password: auth-pw }} ] }}\n  APP {{}}\n  SYS {{}}\n}}\n\
         system_account: SYS\n\
         authorization {{\n  auth_callout {{\n    issuer: {issuer_pub}\n    auth_users: [ auth ]\n    account: AUTH\n    {xkey_line}\n  }}\n}}\n"
    ));
    let (tx, mut recorded) = mpsc::unbounded_channel();
    let _responder = responder(server.url(), xkey, tx).await;

    let client = ConnectOptions::with_token("let-me-in".into())
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let mut sub = client.subscribe("allowed.y").await.unwrap();
    client.publish("allowed.y", "ok".into()).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"ok");

    // The recorded request: issued and signed by the server's own key, naming the connection.
    let raw = recorded.recv().await.unwrap();
    if let (Some(path), false) = (std::env::var_os("RECORD_AUTH_REQUEST"), xkey) {
        std::fs::write(path, &raw).unwrap();
    }
    assert!(
        raw.starts_with("eyJ"),
        "a request JWT is plain base64url JSON once opened"
    );
    let req: NatsClaims<AuthorizationRequest> = nats_jwt::decode(&raw, now()).unwrap();
    assert!(req.iss.starts_with('N'));
    assert_eq!(req.iss, req.nats.server_id.id);
    assert!(req.nats.user_nkey.starts_with('U'));
    assert!(req.nats.client_info.id.is_some());
    assert_eq!(req.nats.server_id.xkey.is_some(), xkey);
    // Flip one payload byte: the signature no longer verifies.
    let mut parts: Vec<String> = raw.split('.').map(str::to_owned).collect();
    let mut payload = broker_auth::b64::url_decode_strict("p", &parts[1]).unwrap();
    let i = payload.iter().position(|b| *b == b'U').unwrap();
    payload[i] = b'V';
    parts[1] = broker_auth::b64::url_encode(&payload);
    assert!(nats_jwt::decode::<AuthorizationRequest>(&parts.join("."), now()).is_err());

    // A refused token: the server turns our error response into an authorization violation.
    let r = ConnectOptions::with_token("wrong".into())
        .connect(server.url())
        .await;
    assert!(r.is_err());
    tokio::time::timeout(Duration::from_secs(5), async {
        while !server.log().contains("bad_token") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("server did not log our reason:\n{}", server.log()));
}

#[tokio::test]
async fn config_mode_callout_round_trip_plain() {
    callout_round_trip(false).await;
}

#[tokio::test]
async fn config_mode_callout_round_trip_with_xkey() {
    callout_round_trip(true).await;
}

#[test]
fn recorded_request_fixture_decodes_and_verifies() {
    // Recorded from nats-server 2.15.1 by the test above (plain mode); see tests/fixtures/README.md.
    let raw = include_str!("../fixtures/auth_request_2.15.1.jwt").trim();
    let iat = serde_json::from_slice::<serde_json::Value>(
        &broker_auth::b64::url_decode_strict("p", raw.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap()["iat"]
        .as_i64()
        .unwrap();
    let req: NatsClaims<AuthorizationRequest> = nats_jwt::decode(raw, iat).unwrap();
    assert_eq!(req.iss, req.nats.server_id.id);
    assert_eq!(req.nats.server_id.version.as_deref(), Some("2.15.1"));
    assert_eq!(
        req.nats.connect_opts.auth_token.as_deref(),
        Some("let-me-in")
    );
    assert_eq!(
        req.jti,
        nats_jwt::jti_of(&NatsClaims {
            jti: String::new(),
            ..req.clone()
        })
        .unwrap(),
        "Go's jti rule"
    );
}
