//! The front door of every MQTT listener: what rmqtt cannot be asked to do at the socket.
//!
//! rmqtt 0.24 accepts on its own sockets and offers no hook before a CONNECT has been read, and
//! it reads the first bytes (its protocol-version probe) with no deadline: a client that sends
//! nothing, or half a CONNECT, holds its socket for as long as it likes (measured: 200 such
//! sockets were all still open after 75 s with a 10 s handshake timeout). So each public listener
//! is ours: we accept, close at once what the process's [`Doorman`] refuses (a locked-out or
//! banned address) and what is over the per-address cap, and relay the rest to rmqtt's listener
//! on a loopback port, announcing the client's real address with a PROXY protocol v1 header
//! (rmqtt reads it, so hooks, logs and limits see the client, not us). Until the CONNECT hook has
//! seen the connection's CONNECT, the relay has `handshake_timeout` to live; after that it lives
//! as long as the session.
//!
//! The inner listener is reachable by local processes. A connection that did not come through a
//! front is refused at CONNECT (`not_via_front`): its address is not one a front admitted, so a
//! forged PROXY header cannot skip the caps. TLS and WebSocket pass through the relay as bytes;
//! rmqtt terminates them as before.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_auth_runtime::door::{Doorman, PerAddress, Shut, Slot, Throttle};
use proxy_protocol::ProxyHeader;
use proxy_protocol::version1::ProxyAddresses;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::stats::MqttStats;

/// Relay buffer per direction: MQTT packets are small; a large one just takes more reads.
const RELAY_BUF: usize = 4096;

/// Shared by the fronts of one broker and its CONNECT hook.
pub(crate) struct Door {
    pub(crate) doorman: Arc<dyn Doorman>,
    pub(crate) per_address: Arc<PerAddress>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) stats: Arc<MqttStats>,
    /// Client addresses a front let through whose CONNECT has not been seen yet.
    pending: Mutex<HashMap<SocketAddr, Arc<Notify>>>,
    quiet: Throttle,
}

impl Door {
    pub(crate) fn new(
        doorman: Arc<dyn Doorman>,
        per_address: u32,
        handshake_timeout: Duration,
        stats: Arc<MqttStats>,
    ) -> Arc<Self> {
        Arc::new(Door {
            doorman,
            per_address: PerAddress::new(per_address),
            handshake_timeout,
            stats,
            pending: Mutex::default(),
            quiet: Throttle::new(Duration::from_secs(10)),
        })
    }

    /// The CONNECT of the connection from `remote` arrived: it came through a front (else
    /// `false`), and its handshake deadline no longer applies.
    pub(crate) fn connect_seen(&self, remote: Option<SocketAddr>) -> bool {
        let Some(remote) = remote else { return false };
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        match pending.remove(&remote) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    fn expect(&self, remote: SocketAddr) -> Option<Arc<Notify>> {
        let n = Arc::new(Notify::new());
        self.pending.lock().ok()?.insert(remote, n.clone());
        Some(n)
    }

    fn forget(&self, remote: SocketAddr) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&remote);
        }
    }

    fn shut(&self, peer: SocketAddr, why: &'static str) {
        self.stats.shut(why);
        tracing::debug!(%peer, reason = why, "mqtt connection closed by the front");
        if let Some(swallowed) = self.quiet.admit() {
            tracing::info!(%peer, reason = why, more_since_last_line = swallowed,
                "mqtt connection closed at the socket (further ones this period at DEBUG)");
        }
    }

    /// Accept on `public` forever, relaying admitted connections to `inner`.
    pub(crate) async fn run(self: Arc<Self>, public: TcpListener, inner: SocketAddr) {
        loop {
            let (stream, peer) = match public.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "mqtt accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Some(shut) = self.doorman.standing(peer.ip()) {
                self.shut(peer, shut.as_str());
                continue;
            }
            let Some(slot) = self.per_address.enter(peer.ip()) else {
                self.shut(peer, Shut::TooManyConnections.as_str());
                continue;
            };
            tokio::spawn(self.clone().relay(stream, peer, inner, slot));
        }
    }

    async fn relay(
        self: Arc<Self>,
        down: TcpStream,
        peer: SocketAddr,
        inner: SocketAddr,
        _slot: Slot,
    ) {
        let Some(seen) = self.expect(peer) else {
            return;
        };
        if let Err(e) = self.carry(down, peer, inner, seen).await {
            tracing::debug!(%peer, error = %e, "mqtt relay ended with an error");
        }
        self.forget(peer);
    }

    async fn carry(
        &self,
        down: TcpStream,
        peer: SocketAddr,
        inner: SocketAddr,
        seen: Arc<Notify>,
    ) -> std::io::Result<()> {
        let _ = down.set_nodelay(true);
        let mut up = TcpStream::connect(inner).await?;
        up.set_nodelay(true)?;
        up.write_all(&proxy_header(peer, down.local_addr()?)?)
            .await?;
        let (dr, mut dw) = down.into_split();
        let (ur, mut uw) = up.into_split();
        let mut dr = BufReader::with_capacity(RELAY_BUF, dr);
        let mut ur = BufReader::with_capacity(RELAY_BUF, ur);
        // MQTT has no half-closed connections: when either side ends, both end, so a client
        // cannot keep a socket of ours open after rmqtt has closed its session.
        let relay = async {
            tokio::select! {
                r = tokio::io::copy_buf(&mut dr, &mut uw) => r.map(drop),
                r = tokio::io::copy_buf(&mut ur, &mut dw) => r.map(drop),
            }
        };
        tokio::pin!(relay);
        tokio::select! {
            r = &mut relay => return r,
            waited = tokio::time::timeout(self.handshake_timeout, seen.notified()) => {
                if waited.is_err() {
                    self.shut(peer, "handshake_timeout");
                    return Ok(());
                }
            }
        }
        relay.await
    }
}

/// PROXY protocol v1 header announcing `peer` as the client of `local`.
fn proxy_header(peer: SocketAddr, local: SocketAddr) -> std::io::Result<bytes::BytesMut> {
    let addresses = match (peer, local) {
        (SocketAddr::V4(source), SocketAddr::V4(destination)) => ProxyAddresses::Ipv4 {
            source,
            destination,
        },
        (SocketAddr::V6(source), SocketAddr::V6(destination)) => ProxyAddresses::Ipv6 {
            source,
            destination,
        },
        _ => return Err(std::io::Error::other("mixed address families")),
    };
    proxy_protocol::encode(ProxyHeader::Version1 { addresses }).map_err(std::io::Error::other)
}
