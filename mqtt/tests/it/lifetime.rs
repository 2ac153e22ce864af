//! Sessions end when their token does: at `exp`, and within a second of a revocation. And the
//! broker keeps every acknowledged QoS1 message of a burst.

use std::time::{Duration, Instant};

use broker_auth_mqtt::MqttStats;
use rumqttc::v5::mqttbytes::v5::Packet as P5;
use rumqttc::{Event, Packet, QoS};

use super::{DEV, World, v3, v3_until, v3_until_closed, v5, v5_until, v5_until_closed};

fn v3_suback(e: Event) -> Option<()> {
    matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
}

#[tokio::test]
async fn the_session_is_closed_when_the_token_expires() {
    let w = World::start().await;
    let t = w.token(DEV, |c| c.exp = c.iat + 60);
    let (c, mut el) = v3::connect(v3::options("c-exp", w.port, Some(&t)))
        .await
        .unwrap();
    // Served while the token is valid.
    c.subscribe(format!("devices/{DEV}/cmd/#"), QoS::AtMostOnce)
        .await
        .unwrap();
    v3_until(&mut el, v3_suback).await;
    assert_eq!(w.broker.sessions(), 1);
    // Past `exp` and past the verifier's clock-skew leeway.
    w.clock.advance(120);
    let took = v3_until_closed(&mut el).await;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert_eq!(MqttStats::get(&w.broker.stats().closed_expired), 1);
    // And the same token cannot come back.
    assert!(
        v3::connect(v3::options("c-exp", w.port, Some(&t)))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn revoking_the_session_or_the_identity_cuts_live_connections_within_a_second() {
    let w = World::start().await;
    let by_sid = w.token(DEV, |c| c.sid = Some("s-1".into()));
    let other = w.token(DEV, |c| c.sid = Some("s-2".into()));
    let (_a, mut a) = v3::connect(v3::options("c-a", w.port, Some(&by_sid)))
        .await
        .unwrap();
    let (b, mut bl) = v5::connect(v5::options("c-b", w.port, Some(&other)))
        .await
        .unwrap();
    let (c, mut cl) = v3::connect(v3::options("c-c", w.port, Some(&w.admin_token())))
        .await
        .unwrap();

    w.auth.revoke_session("s-1", w.now() + 3600);
    let took = v3_until_closed(&mut a).await;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // The other session of the same device is untouched...
    b.subscribe(
        format!("devices/{DEV}/cmd/#"),
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
    )
    .await
    .unwrap();
    v5_until(&mut bl, |e| {
        matches!(e, rumqttc::v5::Event::Incoming(P5::SubAck(_))).then_some(())
    })
    .await;
    // ...until the whole identity is revoked.
    w.auth.revoke_subject(DEV, w.now(), w.now() + 3600);
    let took = v5_until_closed(&mut bl).await;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert_eq!(MqttStats::get(&w.broker.stats().closed_revoked), 2);
    // The admin was never revoked.
    c.subscribe("#", QoS::AtMostOnce).await.unwrap();
    v3_until(&mut cl, v3_suback).await;
}

const BURST: u32 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_qos1_message_is_lost_in_a_100k_burst() {
    let w = World::start().await;
    let t = w.device_token();
    let mut so = v3::options("c-burst-sub", w.port, Some(&t));
    so.set_inflight(1000);
    let (sc, mut sel) = v3::connect(so).await.unwrap();
    sc.subscribe(format!("devices/{DEV}/cmd/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    v3_until(&mut sel, v3_suback).await;
    let mut po = v3::options("c-burst-pub", w.port, Some(&t));
    po.set_inflight(1000);
    let (pc, mut pel) = v3::connect(po).await.unwrap();
    let producer = tokio::spawn(async move {
        for i in 0..BURST {
            let topic = format!("devices/{DEV}/cmd/burst");
            pc.publish(topic, QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
                .await
                .unwrap();
        }
        pc
    });
    let acker = tokio::spawn(async move {
        let mut acked = 0u32;
        while acked < BURST {
            if let Event::Incoming(Packet::PubAck(_)) = pel.poll().await.unwrap() {
                acked += 1;
            }
        }
        (acked, pel)
    });
    let mut seen = vec![false; BURST as usize];
    let mut unique = 0u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    while unique < BURST {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(ev) = tokio::time::timeout(left, sel.poll()).await else {
            panic!("only {unique} of {BURST} delivered");
        };
        if let Event::Incoming(Packet::Publish(p)) = ev.unwrap() {
            let i = u32::from_be_bytes(p.payload[..4].try_into().unwrap()) as usize;
            if !seen[i] {
                seen[i] = true;
                unique += 1;
            }
        }
    }
    let _pc = producer.await.unwrap();
    let (acked, _pel) = acker.await.unwrap();
    assert_eq!(acked, BURST);
    assert_eq!(unique, BURST);
}

#[tokio::test]
async fn a_policy_reload_closes_exactly_the_sessions_whose_grants_narrowed() {
    let w = World::start().await;
    let (_d, mut dl) = v3::connect(v3::options("c-dev", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    let (a, mut al) = v3::connect(v3::options("c-admin", w.port, Some(&w.admin_token())))
        .await
        .unwrap();
    // Devices may now publish telemetry only; superusers are unchanged.
    let dir = super::shipped_dir();
    let mut sources = broker_auth_runtime::policy_dir::read_dir(&dir).unwrap();
    let edited = sources
        .iter_mut()
        .find(|s| s.text.contains("\"devices/%s/#\""))
        .expect("the shipped device publish pattern");
    edited.text = edited
        .text
        .replace("\"devices/%s/#\"", "\"devices/%s/telemetry\"");
    sources.retain(|s| !s.is_test());
    w.auth.reload_policy(sources).unwrap();
    let took = v3_until_closed(&mut dl).await;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert_eq!(MqttStats::get(&w.broker.stats().closed_policy), 1);
    // The superuser's session is untouched.
    a.subscribe("#", QoS::AtMostOnce).await.unwrap();
    v3_until(&mut al, v3_suback).await;
    // A reconnecting device gets the new grants.
    let (d, mut dl) = v3::connect(v3::options("c-dev", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    d.publish(
        format!("devices/{DEV}/status"),
        QoS::AtLeastOnce,
        false,
        "x",
    )
    .await
    .unwrap();
    v3_until(&mut dl, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
    assert_eq!(MqttStats::get(&w.broker.stats().publish_denied), 1);
}
