//! Operator mode: every account is a JWT built with `broker_auth::nats_jwt`; clients reach the
//! callout account with a shared sentinel credential plus their token, and the responder issues
//! their user JWT with the target account's key (listed in the callout account's
//! `allowed_accounts`).

use std::time::Duration;

use async_nats::ConnectOptions;
use broker_auth::nats_jwt::creds::format_user_creds;
use broker_auth::nats_jwt::{self, Account, ExternalAuthorization, NatsClaims, Operator, User};
use broker_auth::secret::SecretString;
use callout::Responder;
use callout::service::{ServiceOptions, Stats, subscribe};
use futures_util::StreamExt;
use nkeys::KeyPair;
use test_support::NatsServer;
use tokio::sync::oneshot;

use super::config_mode::World;

const CURVE_SEED: &str = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn account(operator: &KeyPair, kp: &KeyPair, name: &str, f: impl FnOnce(&mut Account)) -> String {
    let mut c = NatsClaims::<Account>::new(kp.public_key());
    c.name = name.into();
    f(&mut c.nats);
    nats_jwt::encode(&mut c, operator, now()).unwrap()
}

fn creds(account: &KeyPair, user: &KeyPair, f: impl FnOnce(&mut User)) -> String {
    let mut c = NatsClaims::<User>::new(user.public_key());
    f(&mut c.nats);
    let jwt = nats_jwt::encode(&mut c, account, now()).unwrap();
    format_user_creds(&jwt, &SecretString::new(user.seed().unwrap())).unwrap()
}

#[tokio::test]
async fn operator_mode_with_sentinel_and_target_account_signing() {
    let operator = KeyPair::new_operator();
    let (sys, auth, app) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let responder_user = KeyPair::new_user();
    let curve_pub = nkeys::XKey::from_seed(CURVE_SEED).unwrap().public_key();

    let mut op = NatsClaims::<Operator>::new(operator.public_key());
    op.name = "broker-auth".into();
    op.nats.system_account = Some(sys.public_key());
    let op_jwt = nats_jwt::encode(&mut op, &operator, now()).unwrap();
    let sys_jwt = account(&operator, &sys, "SYS", |_| {});
    let app_jwt = account(&operator, &app, "APP", |_| {});
    let auth_jwt = account(&operator, &auth, "AUTH", |a| {
        a.authorization = ExternalAuthorization {
            auth_users: vec![responder_user.public_key()],
            allowed_accounts: vec![app.public_key()],
            xkey: Some(curve_pub.clone()),
        };
    });
    let server = NatsServer::start(&format!(
        "operator: {op_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {sys_jwt}\n  {}: {auth_jwt}\n  {}: {app_jwt}\n}}\n",
        sys.public_key(),
        sys.public_key(),
        auth.public_key(),
        app.public_key()
    ));

    // The responder: its own user in AUTH; responses signed by AUTH, users issued by APP.
    let world = World::new();
    let responder = Responder::operator(
        &auth.seed().unwrap(),
        Some(CURVE_SEED),
        KeyPair::from_seed(&app.seed().unwrap()).unwrap(),
    )
    .unwrap();
    let client = ConnectOptions::with_credentials(&creds(&auth, &responder_user, |_| {}))
        .unwrap()
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let stats = std::sync::Arc::new(Stats::default());
    let svc = subscribe(
        client,
        None,
        std::sync::Arc::new(responder),
        world.runtime.clone(),
        ServiceOptions::default(),
        stats.clone(),
    )
    .await
    .unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(svc.run(async {
        let _ = rx.await;
    }));

    // The sentinel: one shared bearer credential of the callout account, allowed nothing itself.
    let sentinel = creds(&auth, &KeyPair::new_user(), |u| {
        u.bearer_token = true;
        u.permissions.publish.deny = vec![">".into()];
        u.permissions.subscribe.deny = vec![">".into()];
    });
    let connect = |token: String| {
        let sentinel = sentinel.clone();
        let url = server.url();
        async move {
            ConnectOptions::with_credentials(&sentinel)
                .unwrap()
                .token(token)
                .max_reconnects(Some(0))
                .connect(url)
                .await
        }
    };
    let admin = connect(world.token("usr-ADMINADMINADMIN", 600, |c| {
        c.groups = vec!["admin".into()]
    }))
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let mut seen = admin.subscribe("devices.>").await.unwrap();
    callout::service::round_trip(&admin).await.unwrap();
    let device = "dev-AAAAAAAAAAAAAAAA";
    let dev = connect(world.token(device, 600, |_| {})).await.unwrap();
    dev.publish("devices.dev-BBBBBBBBBBBBBBBB.telemetry", "forged".into())
        .await
        .unwrap();
    dev.publish(format!("devices.{device}.telemetry"), "ok".into())
        .await
        .unwrap();
    dev.flush().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), seen.next())
        .await
        .unwrap_or_else(|_| panic!("nothing delivered:\n{}", server.log()))
        .unwrap();
    assert_eq!(msg.subject.as_str(), format!("devices.{device}.telemetry"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), seen.next())
            .await
            .is_err(),
        "forged publish delivered"
    );
    // A bad token with the sentinel is refused; the sentinel alone gets nowhere either.
    assert!(connect("garbage".into()).await.is_err());
    assert!(
        ConnectOptions::with_credentials(&sentinel)
            .unwrap()
            .connect(server.url())
            .await
            .is_err()
    );
    assert_eq!(stats.accepted.load(std::sync::atomic::Ordering::Relaxed), 2);
    let _ = stop.send(());
    let _ = task.await;
}
