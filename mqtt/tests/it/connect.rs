//! CONNECT: the token is the password; CONNACK codes say why a client was refused.

use rumqttc::ConnectReturnCode as V3;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5;

use super::{DEV, World, v3, v5};

#[tokio::test]
async fn v3_connack_codes_for_good_bad_expired_revoked_anonymous_and_grantless() {
    let w = World::start().await;
    let good = w.device_token();
    assert!(
        v3::connect(v3::options("c-good", w.port, Some(&good)))
            .await
            .is_ok()
    );

    // Flip one character in the middle of the signature.
    let mut bad = good.clone().into_bytes();
    let i = bad.len() - 10;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let expired = w.token(DEV, |c| {
        c.iat -= 7200;
        c.nbf -= 7200;
        c.exp = c.iat + 60;
    });
    let revoked = w.token(DEV, |c| c.sid = Some("s-revoked".into()));
    w.auth.revoke_session("s-revoked", w.now() + 3600);
    // A user of no tenant and no role: a valid token the policy grants nothing.
    let grantless = w.token("usr-NOBODY", |_| {});
    let cases: [(&str, Option<&str>, V3); 6] = [
        ("bad signature", Some(&bad), V3::BadUserNamePassword),
        ("expired", Some(&expired), V3::BadUserNamePassword),
        ("revoked", Some(&revoked), V3::BadUserNamePassword),
        ("not a JWT", Some("hunter2"), V3::BadUserNamePassword),
        ("anonymous", None, V3::BadUserNamePassword),
        ("grantless", Some(&grantless), V3::NotAuthorized),
    ];
    for (what, pw, want) in cases {
        let got = v3::connect(v3::options("c-x", w.port, pw)).await.err();
        assert_eq!(got, Some(want), "{what}");
    }
    let refused: u64 = w.broker.stats().refusals().iter().map(|r| r.1).sum();
    assert_eq!(refused, 6);
}

#[tokio::test]
async fn v5_connack_codes_for_good_bad_and_grantless() {
    let w = World::start().await;
    let good = w.device_token();
    assert!(
        v5::connect(v5::options("c-good", w.port, Some(&good)))
            .await
            .is_ok()
    );
    let grantless = w.token("usr-NOBODY", |_| {});
    let cases: [(&str, Option<&str>, V5); 4] = [
        ("garbage", Some("x.y.z"), V5::BadUserNamePassword),
        ("anonymous", None, V5::BadUserNamePassword),
        ("refresh token", None, V5::BadUserNamePassword),
        ("grantless", Some(&grantless), V5::NotAuthorized),
    ];
    let refresh = w.token(DEV, |c| c.token_use = broker_auth::token::TokenUse::Refresh);
    for (what, pw, want) in cases {
        let pw = if what == "refresh token" {
            Some(refresh.as_str())
        } else {
            pw
        };
        let got = v5::connect(v5::options("c-x", w.port, pw)).await.err();
        assert_eq!(got, Some(want), "{what}");
    }
}

#[tokio::test]
async fn will_topic_is_checked_against_publish_grants() {
    let w = World::start().await;
    let t = w.device_token();
    let mut ok = v3::options("c-will-ok", w.port, Some(&t));
    ok.set_last_will(rumqttc::LastWill::new(
        format!("devices/{DEV}/status"),
        "offline",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    assert!(v3::connect(ok).await.is_ok());

    let mut foreign = v3::options("c-will-bad", w.port, Some(&t));
    foreign.set_last_will(rumqttc::LastWill::new(
        "devices/dev-BBBBBBBBBBBBBBBB/status",
        "offline",
        rumqttc::QoS::AtMostOnce,
        false,
    ));
    assert_eq!(v3::connect(foreign).await.err(), Some(V3::NotAuthorized));

    let mut v5o = v5::options("c-will-bad5", w.port, Some(&t));
    v5o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        "alarms/all",
        "offline",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        false,
        None,
    ));
    assert_eq!(v5::connect(v5o).await.err(), Some(V5::NotAuthorized));
    assert!(
        w.broker
            .stats()
            .refusals()
            .contains(&("will_not_granted", 2))
    );
}
