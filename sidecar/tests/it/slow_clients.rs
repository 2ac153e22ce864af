//! What the real binary does at the socket: slow clients on the REST listener and on the MQTT
//! listeners are closed within their deadlines, one address cannot take more than its share of
//! connections, client errors do not reach the log at ERROR, and an address guessing tokens on
//! MQTT is slowed, then refused at the socket and banned (persisted, shared with HTTP), while
//! valid clients from other addresses connect as before.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::harness::TestKey;
use super::mqtt_e2e::register_and_login;
use super::server::{Server, bootstrap};

/// A TCP connection to `port` on 127.0.0.1 from the source address `from` (any of 127/8).
fn connect_from(from: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(from, 0))?;
        let stream = s.connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        stream.into_std()
    })
    .and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

/// Whether the peer closes `s` before `deadline` (EOF or reset); anything it sends is read.
fn closed_before(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// How many of `sockets` are still open at `deadline`.
fn still_open(sockets: &mut [TcpStream], deadline: Instant) -> usize {
    let mut open = 0;
    for s in sockets.iter_mut() {
        if !closed_before(s, deadline) {
            open += 1;
        }
    }
    open
}

fn open_many(port: u16, n: usize, send: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            if !send.is_empty() {
                s.write_all(send).unwrap();
            }
            s
        })
        .collect()
}

#[test]
fn slow_http_clients_are_closed_within_the_header_and_body_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--mqtt-listen",
            "off",
            "--http-header-timeout",
            "2",
            "--http-body-timeout",
            "2",
            "--max-connections-per-ip",
            "1000",
            "--rate-limit",
            "100000/60",
        ],
    );
    let t0 = Instant::now();
    let mut nothing = open_many(server.port, 200, b"");
    let mut half_head = open_many(
        server.port,
        200,
        b"POST /auth/challenge HTTP/1.1\r\nHost: x\r\n",
    );
    let mut half_body = open_many(
        server.port,
        200,
        b"POST /auth/challenge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"public_",
    );
    // Meanwhile the service answers others.
    assert!(matches!(
        test_support::http_get(server.port, "/health"),
        Some((200, _))
    ));
    let deadline = t0 + Duration::from_secs(8);
    assert_eq!(still_open(&mut nothing, deadline), 0, "silent sockets");
    assert_eq!(
        still_open(&mut half_head, deadline),
        0,
        "half a request head"
    );
    // A half body is answered 408 with the envelope, then closed.
    let mut s = half_body.pop().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"REQUEST_TIMEOUT\""), "{answer}");
    assert_eq!(still_open(&mut half_body, deadline), 0, "half a body");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
}

#[test]
fn one_address_cannot_take_more_than_its_share_of_http_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--mqtt-listen", "off", "--max-connections-per-ip", "5"],
    );
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let mut held: Vec<TcpStream> = (0..5)
        .map(|_| connect_from(ip("127.0.0.2"), server.port).unwrap())
        .collect();
    // Give the server the time to have accepted them: a request on one answers.
    held[0]
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 12];
    held[0].read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut sixth = connect_from(ip("127.0.0.2"), server.port).unwrap();
    assert!(
        closed_before(&mut sixth, Instant::now() + Duration::from_secs(3)),
        "the sixth connection from one address is closed at accept"
    );
    // Another address is not affected.
    let mut other = connect_from(ip("127.0.0.3"), server.port).unwrap();
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A slot comes back when a connection ends.
    drop(held.pop());
    assert!(test_support::wait_until(Duration::from_secs(5), || {
        let Ok(mut s) = connect_from(ip("127.0.0.2"), server.port) else {
            return false;
        };
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .is_ok()
            && {
                let mut a = String::new();
                let _ = s.read_to_string(&mut a);
                a.starts_with("HTTP/1.1 200")
            }
    }));
}

#[test]
fn malformed_requests_are_not_logged_at_error_and_their_lines_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--mqtt-listen", "off"]);
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.write_all(b"NOT HTTP AT ALL\r\n\x00\x01\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
    }
    assert!(matches!(
        test_support::http_get(server.port, "/health"),
        Some((200, _))
    ));
    let log = server.log();
    assert!(
        !log.contains("ERROR"),
        "client errors logged at ERROR:\n{log}"
    );
    let lines = log.lines().filter(|l| l.contains("client error")).count();
    assert!(
        (1..=2).contains(&lines),
        "expected one throttled line for 100 bad requests, got {lines}:\n{log}"
    );
}

/// An MQTT 3.1.1 CONNECT with `password` (the token) and a user name.
fn connect_packet(client_id: &str, password: &str) -> Vec<u8> {
    use test_support::mqtt_raw::{packet, string};
    let mut body = string("MQTT");
    body.extend_from_slice(&[4, 0b1100_0010, 0, 60]);
    for field in [client_id, "user", password] {
        body.extend(string(field));
    }
    packet(0x10, &body)
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// CONNACK with this return code, after this long.
    Connack(u8, Duration),
    /// Closed without a CONNACK.
    Shut,
}

fn mqtt_connect(from: IpAddr, port: u16, client_id: &str, token: &str) -> Outcome {
    let t0 = Instant::now();
    let Ok(mut s) = connect_from(from, port) else {
        return Outcome::Shut;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(&connect_packet(client_id, token)).is_err() {
        return Outcome::Shut;
    }
    let mut ack = [0u8; 4];
    match s.read_exact(&mut ack) {
        Ok(()) => {
            assert_eq!(ack[..2], [0x20, 0x02], "not a CONNACK");
            Outcome::Connack(ack[3], t0.elapsed())
        }
        Err(e) => {
            assert_ne!(
                e.kind(),
                std::io::ErrorKind::WouldBlock,
                "no answer in 10 s"
            );
            Outcome::Shut
        }
    }
}

#[test]
fn slow_mqtt_clients_are_closed_within_the_handshake_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let ws_port = test_support::free_port();
    let ws = format!("127.0.0.1:{ws_port}");
    let server = Server::start(
        &dir.path().join("data"),
        &["--mqtt-handshake-timeout", "2", "--mqtt-ws-listen", &ws],
    );
    let port = server.mqtt_port.unwrap();
    let t0 = Instant::now();
    let mut nothing = open_many(port, 200, b"");
    let half = connect_packet("slow", "x");
    let mut half_connect = open_many(port, 200, &half[..half.len() / 2]);
    let mut ws_nothing = open_many(ws_port, 50, b"");
    let mut ws_half = open_many(ws_port, 50, b"GET /mqtt HTTP/1.1\r\nHost: x\r\n");
    let deadline = t0 + Duration::from_secs(8);
    assert_eq!(still_open(&mut nothing, deadline), 0, "silent sockets");
    assert_eq!(still_open(&mut half_connect, deadline), 0, "half a CONNECT");
    assert_eq!(
        still_open(&mut ws_nothing, deadline),
        0,
        "silent WebSocket sockets"
    );
    assert_eq!(
        still_open(&mut ws_half, deadline),
        0,
        "half a WebSocket upgrade"
    );
    let metrics = test_support::http_get(server.port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("mqtt_connections_shut{reason=\"handshake_timeout\"} 500"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("shut"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn bad_tokens_on_mqtt_are_slowed_then_refused_at_the_socket_and_banned_for_http_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let flags = [
        "--rate-limit",
        "3/60",
        "--ban-after-lockouts",
        "1",
        "--mqtt-failed-connect-delay-ms",
        "200",
    ];
    let mut server = Server::start(&data, &flags);
    let c = Client::new();
    let key = TestKey::ed();
    let (_, token) = register_and_login(&c, &server, &admin, &key, json!({"type": "device"}));
    let port = server.mqtt_port.unwrap();
    let attacker: IpAddr = "127.0.0.7".parse().unwrap();
    let honest: IpAddr = "127.0.0.1".parse().unwrap();

    let mut outcomes = Vec::new();
    for i in 0..1000 {
        outcomes.push(mqtt_connect(
            attacker,
            port,
            &format!("guess-{i}"),
            "not.a.token",
        ));
        if i == 20 {
            // A valid client from another address connects normally in the middle of it.
            assert!(matches!(
                mqtt_connect(honest, port, "dev-1", &token),
                Outcome::Connack(0, _)
            ));
        }
    }
    let fast = outcomes
        .iter()
        .take_while(|o| matches!(o, Outcome::Connack(4, d) if *d < Duration::from_millis(150)))
        .count();
    assert_eq!(
        fast,
        3,
        "the allowance (3 per window) is answered at once: {:?}",
        &outcomes[..20]
    );
    let held = outcomes[3..]
        .iter()
        .take_while(|o| matches!(o, Outcome::Connack(4, d) if *d >= Duration::from_millis(200)))
        .count();
    assert_eq!(
        held,
        10,
        "ten violations are held, then the lockout: {:?}",
        &outcomes[..20]
    );
    assert!(
        outcomes[13..].iter().all(|o| *o == Outcome::Shut),
        "after the lockout, every connection is closed at the socket: {:?}",
        &outcomes[..20]
    );

    // The ban is the HTTP side's too, listed for admins, and survives a restart.
    let from_attacker = Client::builder().local_address(attacker).build().unwrap();
    let r = from_attacker
        .post(server.url("/auth/challenge"))
        .json(&json!({"public_key": key.public()}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["error"], "BANNED");
    let bans: Value = c
        .get(server.url("/admin/bans"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(bans.to_string().contains("127.0.0.7"), "{bans}");
    let metrics = test_support::http_get(server.port, "/metrics").unwrap().1;
    assert!(metrics.contains("mqtt_connects_held 10"), "{metrics}");

    server.terminate();
    let server = Server::start(&data, &flags);
    let port = server.mqtt_port.unwrap();
    assert_eq!(
        mqtt_connect(attacker, port, "again", &token),
        Outcome::Shut,
        "banned after restart"
    );
    assert!(matches!(
        mqtt_connect(honest, port, "dev-1", &token),
        Outcome::Connack(0, _)
    ));
}
