//! What the broker keeps beyond one message: shared subscriptions deliver each message to exactly
//! one member of the group, and retained messages reach a late subscriber only through a granted
//! subscription. rumqttc v3.1.1 and v5 clients against the real broker.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::Packet as P5;
use rumqttc::{Event, Packet, QoS, SubscribeReasonCode};

use super::{DEV, OTHER, WAIT, World, v3, v3_until, v5, v5_until};

const GROUP_FILTER: &str = "$share/workers/devices/dev-AAAAAAAAAAAAAAAA/cmd/#";
const JOB_TOPIC: &str = "devices/dev-AAAAAAAAAAAAAAAA/cmd/job";

/// Subscribe `filter` at QoS 1 and return whether the SUBACK granted it.
async fn v3_subscribe(c: &rumqttc::AsyncClient, el: &mut rumqttc::EventLoop, filter: &str) -> bool {
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let codes = v3_until(el, |e| match e {
        Event::Incoming(Packet::SubAck(a)) => Some(a.return_codes),
        _ => None,
    })
    .await;
    codes == [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
}

/// Publish `n` QoS 1 messages `job-<i>` to `topic` and wait for every PUBACK.
async fn v3_publish_all(
    c: &rumqttc::AsyncClient,
    el: &mut rumqttc::EventLoop,
    topic: &str,
    n: usize,
) {
    for i in 0..n {
        c.publish(topic, QoS::AtLeastOnce, false, format!("job-{i}"))
            .await
            .unwrap();
    }
    let mut acked = 0;
    v3_until(el, |e| {
        if let Event::Incoming(Packet::PubAck(_)) = e {
            acked += 1;
        }
        (acked == n).then_some(())
    })
    .await;
}

/// Drain what a v3 member received for `quiet` after the last message (the group's total is
/// known, so the caller asserts on counts; a member receiving a duplicate shows up there).
async fn v3_drain(el: &mut rumqttc::EventLoop, quiet: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(ev) = tokio::time::timeout(quiet, el.poll()).await {
        if let Event::Incoming(Packet::Publish(p)) = ev.expect("connection alive") {
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    got
}

/// Every message reached exactly one member, and both members took part (round-robin).
fn assert_exactly_once(members: &[Vec<String>], n: usize) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for m in members {
        for p in m {
            *seen.entry(p.as_str()).or_default() += 1;
        }
    }
    let want: BTreeMap<String, usize> = (0..n).map(|i| (format!("job-{i}"), 1)).collect();
    let seen: BTreeMap<String, usize> = seen.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(seen, want, "each message once, none lost: {members:?}");
    assert!(
        members.iter().all(|m| !m.is_empty()),
        "the group's members share the load: {members:?}"
    );
}

#[tokio::test]
async fn v3_shared_group_of_two_receives_every_message_exactly_once() {
    let w = World::start().await;
    let mut members = Vec::new();
    for id in ["c-worker-1", "c-worker-2"] {
        let (c, mut el) = v3::connect(v3::options(id, w.port, Some(&w.device_token())))
            .await
            .unwrap();
        assert!(
            v3_subscribe(&c, &mut el, GROUP_FILTER).await,
            "{id} granted"
        );
        members.push((c, el));
    }
    let (p, mut pel) = v3::connect(v3::options("c-boss", w.port, Some(&w.admin_token())))
        .await
        .unwrap();
    v3_publish_all(&p, &mut pel, JOB_TOPIC, 10).await;
    let mut got = Vec::new();
    for (_, el) in &mut members {
        got.push(v3_drain(el, Duration::from_millis(500)).await);
    }
    assert_exactly_once(&got, 10);
}

#[tokio::test]
async fn v5_shared_group_of_two_receives_every_message_exactly_once() {
    let w = World::start().await;
    let mut members = Vec::new();
    for id in ["c-worker5-1", "c-worker5-2"] {
        let (c, mut el) = v5::connect(v5::options(id, w.port, Some(&w.device_token())))
            .await
            .unwrap();
        c.subscribe(GROUP_FILTER, Q5::AtLeastOnce).await.unwrap();
        let codes = v5_until(&mut el, |e| match e {
            rumqttc::v5::Event::Incoming(P5::SubAck(a)) => Some(a.return_codes),
            _ => None,
        })
        .await;
        use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
        assert_eq!(codes, [R::Success(Q5::AtLeastOnce)], "{id}");
        members.push((c, el));
    }
    let (p, mut pel) = v3::connect(v3::options("c-boss5", w.port, Some(&w.admin_token())))
        .await
        .unwrap();
    v3_publish_all(&p, &mut pel, JOB_TOPIC, 10).await;
    let mut got = Vec::new();
    for (_, el) in &mut members {
        let mut mine = Vec::new();
        while let Ok(ev) = tokio::time::timeout(Duration::from_millis(500), el.poll()).await {
            if let rumqttc::v5::Event::Incoming(P5::Publish(m)) = ev.expect("connection alive") {
                mine.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
        }
        got.push(mine);
    }
    assert_exactly_once(&got, 10);
}

/// Subscribe and collect what arrives: everything until the retained marker `marker_topic`, and
/// whatever follows it within a short quiet period (a broker sends a filter's retained messages
/// in no particular order, so the marker alone does not end them).
async fn retained_for(
    w: &World,
    (id, token): (&str, &str),
    filters: &[(&str, bool)],
    marker_topic: &str,
) -> Vec<(String, String, bool)> {
    let (c, mut el) = v3::connect(v3::options(id, w.port, Some(token)))
        .await
        .unwrap();
    let el = &mut el;
    for (f, granted) in filters {
        assert_eq!(v3_subscribe(&c, el, f).await, *granted, "{f}");
    }
    let mut got = Vec::new();
    let mut marker = false;
    loop {
        let quiet = if marker {
            Duration::from_millis(300)
        } else {
            WAIT
        };
        let Ok(ev) = tokio::time::timeout(quiet, el.poll()).await else {
            assert!(marker, "the marker {marker_topic} in time");
            got.sort();
            return got;
        };
        if let Event::Incoming(Packet::Publish(p)) = ev.expect("connection alive") {
            if p.topic == marker_topic {
                marker = true;
                continue;
            }
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            got.push((p.topic, payload, p.retain));
        }
    }
}

/// A retained message as `id` with `token` (waits for its PUBACK).
async fn retain(w: &World, id: &str, token: &str, topic: &str, payload: &str) {
    let (c, mut el) = v3::connect(v3::options(id, w.port, Some(token)))
        .await
        .unwrap();
    c.publish(topic, QoS::AtLeastOnce, true, payload.to_owned())
        .await
        .unwrap();
    v3_until(&mut el, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
    c.disconnect().await.unwrap();
}

#[tokio::test]
async fn retained_messages_reach_late_subscribers_only_through_their_grants() {
    let w = World::start().await;
    let config = format!("devices/{DEV}/cmd/config");
    let dev_marker = format!("devices/{DEV}/cmd/zz-marker");
    let other_marker = format!("devices/{OTHER}/cmd/zz-marker");
    let dev = w.device_token();
    let other = w.token(OTHER, |_| {});
    retain(&w, "c-dev-pub", &dev, &config, "interval=60").await;
    // Refused at the PUBLISH hook: another device's topic is not stored, so nobody gets it.
    retain(
        &w,
        "c-dev-pub2",
        &dev,
        &format!("devices/{OTHER}/cmd/config"),
        "hijack",
    )
    .await;
    retain(&w, "c-dev-mark", &dev, &dev_marker, "-").await;
    retain(&w, "c-other-mark", &other, &other_marker, "-").await;

    let own = format!("devices/{DEV}/cmd/#");
    let got = retained_for(&w, ("c-dev-late", &dev), &[(&own, true)], &dev_marker).await;
    assert_eq!(got, [(config.clone(), "interval=60".to_owned(), true)]);

    // The other device: no SUBACK success for DEV's commands, hence none of DEV's retained
    // messages; its own filter gets its own marker and nothing else (not the refused hijack).
    let filters = [
        (format!("devices/{DEV}/cmd/#"), false),
        (format!("devices/{OTHER}/cmd/#"), true),
    ];
    let filters: Vec<(&str, bool)> = filters.iter().map(|(f, g)| (f.as_str(), *g)).collect();
    let got = retained_for(&w, ("c-other-late", &other), &filters, &other_marker).await;
    assert_eq!(got, [], "nothing of DEV's, and no stored hijack");

    // An empty retained payload clears the topic.
    retain(&w, "c-dev-clear", &dev, &config, "").await;
    let got = retained_for(&w, ("c-dev-later", &dev), &[(&own, true)], &dev_marker).await;
    assert_eq!(got, [], "cleared");
}
