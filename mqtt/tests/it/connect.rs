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

/// A v3.1.1 CONNECT written by hand: clean session, keep-alive 30, `client_id`, and the
/// optional user name and password with their flags as given (`flags` is added to 0x02).
fn raw_v311_connect(client_id: &str, flags: u8, username: Option<&str>, password: &str) -> Vec<u8> {
    use test_support::mqtt_raw::{packet, string};
    let mut body = string("MQTT");
    body.extend_from_slice(&[4, 0x02 | flags, 0, 30]);
    body.extend(string(client_id));
    if let Some(u) = username {
        body.extend(string(u));
    }
    body.extend(string(password));
    packet(0x10, &body)
}

/// The CONNACK return code the broker answers `packet` with (None: it closed without one).
async fn connack_code(port: u16, packet: &[u8]) -> Option<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(packet).await.unwrap();
    let mut ack = [0u8; 4];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut ack))
        .await
        .expect("an answer or a close within 5 s");
    read.ok().filter(|_| ack[0] == 0x20).map(|_| ack[3])
}

#[tokio::test]
async fn a_v311_password_without_the_user_name_flag_is_refused_however_good_the_token() {
    let w = World::start().await;
    let good = w.device_token();
    // The control: the same token with both flags is admitted (return code 0).
    let both = raw_v311_connect("c-raw-ok", 0xC0, Some("device"), &good);
    assert_eq!(connack_code(w.port, &both).await, Some(0));
    // Password flag (0x40) alone: MQTT-3.1.2-22 — never admitted.
    let password_only = raw_v311_connect("c-raw-pw", 0x40, None, &good);
    let code = connack_code(w.port, &password_only).await;
    assert!(code.is_none_or(|c| c != 0), "admitted: {code:?}");
    let refusals = w.broker.stats().refusals();
    assert!(
        refusals
            .iter()
            .any(|(r, n)| *r == "password_without_username" && *n == 1),
        "{refusals:?}"
    );
}

/// A v3.1.1 QoS 1 PUBLISH written by hand (the topic is taken as given, NUL included).
fn raw_v311_publish(topic: &[u8], packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic);
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.extend_from_slice(payload);
    assert!(body.len() < 128, "one length byte");
    let mut packet = vec![0x32, body.len() as u8];
    packet.extend(body);
    packet
}

#[tokio::test]
async fn a_publish_topic_with_nul_closes_the_connection_instead_of_being_acknowledged() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = World::start().await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", w.port))
        .await
        .unwrap();
    let connect = raw_v311_connect("c-nul", 0xC0, Some("device"), &w.device_token());
    s.write_all(&connect).await.unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK accepted");
    // The control: a well-formed topic of its own is acknowledged (PUBACK for packet 1).
    let own = format!("devices/{DEV}/telemetry");
    s.write_all(&raw_v311_publish(own.as_bytes(), 1, b"ok"))
        .await
        .unwrap();
    let mut puback = [0u8; 4];
    s.read_exact(&mut puback).await.unwrap();
    assert_eq!(puback, [0x40, 2, 0, 1], "PUBACK for the good publish");
    // The same level with U+0000 in it: no PUBACK, the connection is closed.
    let nul = format!("devices/{DEV}/tele\0metry");
    s.write_all(&raw_v311_publish(nul.as_bytes(), 2, b"x"))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed within 5 s");
    assert!(read.is_ok() || rest.is_empty(), "{read:?}");
    assert!(
        !rest.starts_with(&[0x40]),
        "the NUL topic was acknowledged: {rest:?}"
    );
}
