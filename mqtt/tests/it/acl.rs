//! SUBSCRIBE and PUBLISH against the session's grants: per-filter SUBACK codes, and denied
//! messages at every QoS never reach anyone (a superuser watching `#` proves it).

use std::collections::BTreeSet;

use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::{Packet as P5, PubAckReason, PubRecReason};
use rumqttc::{Event, Packet, QoS, SubscribeFilter, SubscribeReasonCode};

use super::{DEV, OTHER, WAIT, World, v3, v3_until, v5, v5_until};

#[tokio::test]
async fn v3_suback_has_one_code_per_filter() {
    let w = World::start().await;
    let (c, mut el) = v3::connect(v3::options("c-sub", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    let filters = [
        (format!("devices/{DEV}/cmd/#"), true),
        (format!("devices/{OTHER}/cmd/#"), false),
        ("#".to_owned(), false),
        ("$SYS/#".to_owned(), false),
        (format!("devices/{DEV}/cmd/+"), true),
        (format!("$share/workers/devices/{DEV}/cmd/x"), true),
        (format!("$share/workers/devices/{OTHER}/cmd/x"), false),
        ("devices/+/cmd/#".to_owned(), false),
    ];
    c.subscribe_many(
        filters
            .iter()
            .map(|(f, _)| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
    )
    .await
    .unwrap();
    let codes = v3_until(&mut el, |e| match e {
        Event::Incoming(Packet::SubAck(a)) => Some(a.return_codes),
        _ => None,
    })
    .await;
    assert_eq!(codes.len(), filters.len());
    for ((f, allowed), code) in filters.iter().zip(codes) {
        let want = if *allowed {
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        } else {
            SubscribeReasonCode::Failure
        };
        assert_eq!(code, want, "{f}");
    }
    assert_eq!(
        broker_auth_mqtt::MqttStats::get(&w.broker.stats().subscribe_denied),
        5
    );
}

#[tokio::test]
async fn v5_suback_denies_with_0x87() {
    let w = World::start().await;
    let (c, mut el) = v5::connect(v5::options("c-sub5", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    c.subscribe_many([
        rumqttc::v5::mqttbytes::v5::Filter::new(format!("devices/{DEV}/cmd/#"), Q5::AtLeastOnce),
        rumqttc::v5::mqttbytes::v5::Filter::new("tenants/t1/#", Q5::AtLeastOnce),
    ])
    .await
    .unwrap();
    let codes = v5_until(&mut el, |e| match e {
        rumqttc::v5::Event::Incoming(P5::SubAck(a)) => Some(a.return_codes),
        _ => None,
    })
    .await;
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
    assert_eq!(codes, vec![R::Success(Q5::AtLeastOnce), R::NotAuthorized]);
}

/// Collect payloads the watcher receives until `marker` arrives.
async fn collect_until(el: &mut rumqttc::EventLoop, marker: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    loop {
        if let Event::Incoming(Packet::Publish(p)) = tokio::time::timeout(WAIT, el.poll())
            .await
            .unwrap()
            .unwrap()
        {
            let body = String::from_utf8(p.payload.to_vec()).unwrap();
            if body == marker {
                return seen;
            }
            seen.insert(format!("{} {}", p.topic, body));
        }
    }
}

async fn watcher(w: &World) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (c, mut el) = v3::connect(v3::options("c-watch", w.port, Some(&w.admin_token())))
        .await
        .unwrap();
    c.subscribe("#", QoS::ExactlyOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(a)) = tokio::time::timeout(WAIT, el.poll())
            .await
            .unwrap()
            .unwrap()
        {
            assert_eq!(
                a.return_codes,
                vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
            );
            return (c, el);
        }
    }
}

#[tokio::test]
async fn v3_denied_publishes_at_every_qos_are_never_delivered() {
    let w = World::start().await;
    let (_wc, mut wel) = watcher(&w).await;
    let (c, mut el) = v3::connect(v3::options("c-pub", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    let mine = format!("devices/{DEV}/telemetry");
    let theirs = format!("devices/{OTHER}/telemetry");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        c.publish(&theirs, qos, false, format!("denied-{qos:?}"))
            .await
            .unwrap();
        c.publish(&mine, qos, false, format!("allowed-{qos:?}"))
            .await
            .unwrap();
    }
    c.publish(&mine, QoS::AtLeastOnce, false, "end")
        .await
        .unwrap();
    // Drive the publisher until the marker is acknowledged (the denied QoS1/2 get plain acks
    // on v3.1.1: the protocol has no way to say no).
    let mut acks = 0;
    while acks < 3 {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Incoming(Packet::PubAck(_)) => acks += 1,
            Event::Incoming(Packet::PubComp(_)) => acks += 1,
            _ => {}
        }
    }
    // Two allowed acks + the marker's; the stream must still be alive after the denials.
    let seen = collect_until(&mut wel, "end").await;
    let want: BTreeSet<String> = ["AtMostOnce", "AtLeastOnce", "ExactlyOnce"]
        .iter()
        .map(|q| format!("{mine} allowed-{q}"))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(
        broker_auth_mqtt::MqttStats::get(&w.broker.stats().publish_denied),
        3
    );
}

#[tokio::test]
async fn v5_denied_publishes_get_0x87_and_are_never_delivered() {
    let w = World::start().await;
    let (_wc, mut wel) = watcher(&w).await;
    let (c, mut el) = v5::connect(v5::options("c-pub5", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    let mine = format!("devices/{DEV}/telemetry");
    c.publish("tenants/t1/x", Q5::AtMostOnce, false, "denied-0")
        .await
        .unwrap();
    c.publish("tenants/t1/x", Q5::AtLeastOnce, false, "denied-1")
        .await
        .unwrap();
    c.publish("tenants/t1/x", Q5::ExactlyOnce, false, "denied-2")
        .await
        .unwrap();
    c.publish(&mine, Q5::AtLeastOnce, false, "allowed-1")
        .await
        .unwrap();
    let (mut puback, mut pubrec, mut ok) = (None, None, 0);
    while puback.is_none() || pubrec.is_none() || ok < 1 {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .unwrap()
            .unwrap()
        {
            rumqttc::v5::Event::Incoming(P5::PubAck(a)) if a.reason == PubAckReason::Success => {
                ok += 1
            }
            rumqttc::v5::Event::Incoming(P5::PubAck(a)) => puback = Some(a.reason),
            rumqttc::v5::Event::Incoming(P5::PubRec(r)) => pubrec = Some(r.reason),
            _ => {}
        }
    }
    assert_eq!(puback, Some(PubAckReason::NotAuthorized));
    assert_eq!(pubrec, Some(PubRecReason::NotAuthorized));
    c.publish(&mine, Q5::AtLeastOnce, false, "end")
        .await
        .unwrap();
    let drive = tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                break;
            }
        }
    });
    let seen = collect_until(&mut wel, "end").await;
    assert_eq!(seen, BTreeSet::from([format!("{mine} allowed-1")]));
    drive.abort();
}
