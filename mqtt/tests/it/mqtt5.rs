//! MQTT 5 features a v5 client relies on: client topic aliases (advertised, honoured, and checked
//! by the topic they stand for), subscribe options (no-local, retain-as-published, retain
//! handling), and the client's receive maximum.
//!
//! Not here: reason strings. rmqtt 0.24 writes a refused CONNACK with its reason code only, and
//! closes a session's socket before writing the server DISCONNECT it builds (with the reason
//! string), so a v5 client cut by us gets no DISCONNECT at all; see the README ("What the broker
//! keeps") and issue 16.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, RetainForwardRule};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use test_support::mqtt_raw::{packet, string};

use super::{DEV, OTHER, WAIT, World, v5, v5_until};

/// The window in which a message that must not arrive would show.
const QUIET: Duration = Duration::from_millis(400);

async fn subscribe(c: &AsyncClient, el: &mut EventLoop, filter: Filter) {
    c.subscribe_many([filter]).await.unwrap();
    v5_until(el, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
}

/// The next PUBLISH within [`WAIT`].
async fn next_publish(el: &mut EventLoop) -> rumqttc::v5::mqttbytes::v5::Publish {
    v5_until(el, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p),
        _ => None,
    })
    .await
}

/// Payloads of the PUBLISHes that arrive within [`QUIET`] of each other.
async fn drain(el: &mut EventLoop) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(ev) = tokio::time::timeout(QUIET, el.poll()).await {
        if let Event::Incoming(Packet::Publish(p)) = ev.expect("connection alive") {
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    got
}

/// Publish at QoS 1 and wait for the PUBACK.
async fn publish(c: &AsyncClient, el: &mut EventLoop, topic: &str, retain: bool, body: &str) {
    c.publish(topic, QoS::AtLeastOnce, retain, body.to_owned())
        .await
        .unwrap();
    v5_until(el, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
}

/// A v5 CONNECT written by hand (clean start, keep-alive 30, no properties), with the token as
/// the password.
fn raw_v5_connect(client_id: &str, token: &str) -> Vec<u8> {
    let mut body = string("MQTT");
    body.extend_from_slice(&[5, 0xC2, 0, 30, 0]);
    body.extend(string(client_id));
    body.extend(string("device"));
    body.extend(string(token));
    packet(0x10, &body)
}

/// Read one packet: (first byte, body).
async fn read_packet(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let first = s.read_u8().await.ok()?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = s.read_u8().await.ok()?;
            len |= usize::from(b & 0x7F) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.ok()?;
        Some((first, body))
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a packet or a close in time")
}

/// The value of property `id` in a v5 CONNACK body.
fn connack_property(body: &[u8], id: u8) -> Option<Vec<u8>> {
    let mut i = 3; // flags, reason code, one-byte property length (our CONNACKs are short)
    let end = 3 + usize::from(body[2]);
    while i < end {
        let (pid, rest) = (body[i], &body[i + 1..]);
        let (len, skip) = match pid {
            0x1F | 0x12 | 0x1A | 0x1C => (usize::from(u16::from_be_bytes([rest[0], rest[1]])), 2),
            0x21 | 0x22 | 0x13 => (2, 0),
            0x11 | 0x27 => (4, 0),
            _ => (1, 0),
        };
        if pid == id {
            return Some(rest[skip..skip + len].to_vec());
        }
        i += 1 + skip + len;
    }
    None
}

/// A v5 QoS 1 PUBLISH written by hand, with a Topic Alias property.
fn raw_v5_publish(topic: &str, alias: u16, packet_id: u16, payload: &str) -> Vec<u8> {
    let mut body = string(topic);
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.extend_from_slice(&[3, 0x23]);
    body.extend_from_slice(&alias.to_be_bytes());
    body.extend_from_slice(payload.as_bytes());
    packet(0x32, &body)
}

#[tokio::test]
async fn client_topic_aliases_are_advertised_honoured_and_checked_by_their_topic() {
    let w = World::start().await;
    let (watch, mut wel) =
        v5::connect(v5::options("c-watch-alias", w.port, Some(&w.admin_token())))
            .await
            .unwrap();
    subscribe(&watch, &mut wel, Filter::new("devices/#", QoS::AtLeastOnce)).await;

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", w.port))
        .await
        .unwrap();
    s.write_all(&raw_v5_connect("c-alias", &w.device_token()))
        .await
        .unwrap();
    let (_, body) = read_packet(&mut s).await.expect("a CONNACK");
    assert_eq!(body[1], 0, "admitted: {body:?}");
    let max = connack_property(&body, 0x22).expect("a Topic Alias Maximum");
    assert!(u16::from_be_bytes([max[0], max[1]]) >= 2, "{max:?}");

    let own = format!("devices/{DEV}/telemetry");
    let theirs = format!("devices/{OTHER}/telemetry");
    let puback = async |s: &mut tokio::net::TcpStream, p: Vec<u8>| {
        s.write_all(&p).await.unwrap();
        let (first, body) = read_packet(s).await.expect("a PUBACK");
        assert_eq!(first, 0x40, "{body:?}");
        body.get(2).copied().unwrap_or(0)
    };
    assert_eq!(puback(&mut s, raw_v5_publish(&own, 1, 1, "set")).await, 0);
    assert_eq!(
        puback(&mut s, raw_v5_publish("", 1, 2, "by-alias")).await,
        0
    );
    // An alias for a topic outside the grants is refused when set and when used.
    assert_eq!(
        puback(&mut s, raw_v5_publish(&theirs, 2, 3, "x")).await,
        0x87
    );
    assert_eq!(puback(&mut s, raw_v5_publish("", 2, 4, "y")).await, 0x87);
    assert_eq!(puback(&mut s, raw_v5_publish("", 1, 5, "marker")).await, 0);
    let mut got = Vec::new();
    while !got.iter().any(|(_, b)| b == "marker") {
        let p = next_publish(&mut wel).await;
        got.push((
            String::from_utf8_lossy(&p.topic).into_owned(),
            String::from_utf8_lossy(&p.payload).into_owned(),
        ));
    }
    let want: Vec<(String, String)> = ["set", "by-alias", "marker"]
        .iter()
        .map(|b| (own.clone(), (*b).to_owned()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn subscribe_options_no_local_retain_as_published_and_retain_handling() {
    let w = World::start().await;
    let own = format!("devices/{DEV}/cmd/#");
    let (c, mut el) = v5::connect(v5::options("c-opts", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    let (admin, mut ael) = v5::connect(v5::options("c-opts-admin", w.port, Some(&w.admin_token())))
        .await
        .unwrap();
    // No local: its own publishes do not come back, the admin's do.
    let mut f = Filter::new(own.clone(), QoS::AtLeastOnce);
    f.nolocal = true;
    subscribe(&c, &mut el, f).await;
    publish(
        &c,
        &mut el,
        &format!("devices/{DEV}/cmd/mine"),
        false,
        "mine",
    )
    .await;
    publish(
        &admin,
        &mut ael,
        &format!("devices/{DEV}/cmd/a"),
        false,
        "admin's",
    )
    .await;
    assert_eq!(drain(&mut el).await, ["admin's"]);

    // Retain as published: a live retained message keeps its flag only with the option.
    let topic = format!("devices/{DEV}/cmd/cfg");
    let (c2, mut el2) = v5::connect(v5::options("c-opts-2", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    let mut f = Filter::new(own.clone(), QoS::AtLeastOnce);
    f.preserve_retain = true;
    subscribe(&c2, &mut el2, f).await;
    publish(&admin, &mut ael, &topic, true, "v1").await;
    assert!(next_publish(&mut el2).await.retain, "retain as published");
    assert!(
        !next_publish(&mut el).await.retain,
        "the flag is cleared without it"
    );

    // Retain handling: 2 (never) sends no retained message; 1 (new subscriptions only) sends it
    // once, not again when the same subscription is repeated; 0 sends it every time.
    let (c3, mut el3) = v5::connect(v5::options("c-opts-3", w.port, Some(&w.device_token())))
        .await
        .unwrap();
    let mut never = Filter::new(topic.clone(), QoS::AtLeastOnce);
    never.retain_forward_rule = RetainForwardRule::Never;
    subscribe(&c3, &mut el3, never).await;
    assert_eq!(drain(&mut el3).await, Vec::<String>::new(), "never");
    let mut on_new = Filter::new(format!("devices/{DEV}/cmd/+"), QoS::AtLeastOnce);
    on_new.retain_forward_rule = RetainForwardRule::OnNewSubscribe;
    subscribe(&c3, &mut el3, on_new.clone()).await;
    assert_eq!(drain(&mut el3).await, ["v1"], "on a new subscription");
    subscribe(&c3, &mut el3, on_new).await;
    assert_eq!(
        drain(&mut el3).await,
        Vec::<String>::new(),
        "not on a repeated one"
    );
    let every = Filter::new(format!("devices/{DEV}/cmd/+"), QoS::AtLeastOnce);
    subscribe(&c3, &mut el3, every).await;
    assert_eq!(drain(&mut el3).await, ["v1"], "on every subscribe");
}

#[tokio::test]
async fn the_clients_receive_maximum_bounds_unacknowledged_deliveries() {
    let w = World::start().await;
    let mut o = v5::options("c-recvmax", w.port, Some(&w.device_token()));
    o.set_receive_maximum(Some(2));
    o.set_manual_acks(true);
    let (c, mut el) = v5::connect(o).await.unwrap();
    subscribe(
        &c,
        &mut el,
        Filter::new(format!("devices/{DEV}/cmd/#"), QoS::AtLeastOnce),
    )
    .await;
    let (admin, mut ael) = v5::connect(v5::options(
        "c-recvmax-admin",
        w.port,
        Some(&w.admin_token()),
    ))
    .await
    .unwrap();
    for i in 0..5 {
        publish(
            &admin,
            &mut ael,
            &format!("devices/{DEV}/cmd/{i}"),
            false,
            &format!("m{i}"),
        )
        .await;
    }
    let mut held = Vec::new();
    while let Ok(ev) = tokio::time::timeout(QUIET, el.poll()).await {
        if let Event::Incoming(Packet::Publish(p)) = ev.expect("connection alive") {
            held.push(p);
        }
    }
    assert_eq!(held.len(), 2, "two in flight, no more");
    for p in &held {
        c.ack(p).await.unwrap();
    }
    let rest = drain(&mut el).await;
    assert_eq!(
        rest.len(),
        2,
        "acknowledging two lets two more through: {rest:?}"
    );
}
