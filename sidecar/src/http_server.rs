//! The REST listener: warp's routes served by hyper's HTTP/1 connection, with the limits
//! `warp::serve` does not offer.
//!
//! - **Slow clients**: a request's head must arrive within `header_timeout` (hyper's header read
//!   timeout, which also closes a connection that sends nothing), its body within
//!   `body_timeout` of the head (a deadline on the whole body, not per chunk, so a trickle of one
//!   byte a second cannot hold a socket). The handler itself is never cut short: a write either
//!   runs to its end or does not start.
//! - **Per-address cap**: at most `per_address` open connections from one peer address; more are
//!   closed at accept. Trusted proxies (`TRUSTED_PROXIES`) are exempt, since all their clients
//!   share their address. Lockouts and bans stay answers here (429/403 with the envelope and
//!   `Retry-After`), which tell a client more than a closed socket; the MQTT listeners, where
//!   CONNACK carries no such thing, close at accept instead.
//! - **Client errors are not the server's**: a malformed request or a timed-out client is logged
//!   at DEBUG, with one throttled INFO line per period counting them; warp logged each at ERROR,
//!   so anyone could flood the log.
//! - HTTP/1 only: no TLS is served here (put a proxy in front), and browsers speak HTTP/2 only
//!   over TLS. hyper-util's HTTP/1-or-2 detection reads the first bytes with no deadline.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use broker_auth_runtime::door::{PerAddress, Slot, Throttle};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tower_service::Service;

/// The peer address of a request's connection, in its extensions (read by `api::extract`).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// What a connection and a request may take.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// From accept (or the previous response) to the end of a request's head.
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// Open connections per peer address (0 = no cap).
    pub per_address: u32,
    /// How long graceful shutdown waits for requests in flight.
    pub drain: Duration,
}

/// Who is let in at accept.
pub struct Door {
    /// Open connections per address.
    pub per_address: Arc<PerAddress>,
    /// Peers exempt from the per-address cap.
    pub trusted: Vec<ipnet::IpNet>,
}

impl Door {
    fn exempt(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }
}

/// Serve `routes` on `listener` until `shutdown` resolves, then drain for `limits.drain`.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    routes: F,
    limits: HttpLimits,
    door: Door,
    shutdown: impl Future<Output = ()>,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
    F::Future: Send,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let quiet = Arc::new(Throttle::new(Duration::from_secs(10)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = admit(&door, peer.ip()) else {
            drop(stream);
            continue;
        };
        let svc = RequestService {
            inner: warp::service(routes.clone()),
            peer: PeerAddr(peer),
            body_timeout: limits.body_timeout,
        };
        // No upgrades: no route speaks WebSocket (MQTT over WS is the broker's own listener).
        let conn = http.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        let quiet = quiet.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                client_error(&quiet, peer, &e);
            }
        });
    }
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(drain = ?limits.drain, "http connections still open at shutdown; dropped");
    }
}

/// `None` when the connection is closed at accept; else its slot (none for a trusted proxy).
fn admit(door: &Door, ip: IpAddr) -> Option<Option<Slot>> {
    if door.exempt(ip) {
        return Some(None);
    }
    match door.per_address.enter(ip) {
        Some(slot) => Some(Some(slot)),
        None => {
            tracing::debug!(%ip, "http connection closed at accept: too many from this address");
            None
        }
    }
}

fn client_error(quiet: &Throttle, peer: SocketAddr, e: &hyper::Error) {
    tracing::debug!(%peer, error = %e, "http connection ended with an error");
    if let Some(swallowed) = quiet.admit() {
        tracing::info!(%peer, error = %e, more_since_last_line = swallowed,
            "http connection ended with a client error (further ones this period at DEBUG)");
    }
}

/// warp's service with the peer address inserted and the body under its deadline.
#[derive(Clone)]
struct RequestService<S> {
    inner: S,
    peer: PeerAddr,
    body_timeout: Duration,
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for RequestService<S>
where
    S: Service<hyper::Request<DeadlineBody>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let mut req = req.map(|b| DeadlineBody::new(b, self.body_timeout));
        req.extensions_mut().insert(self.peer);
        // warp's service is always ready (its `poll_ready` returns `Ready(Ok)`).
        self.inner.clone().call(req)
    }
}

/// A request body that fails once its deadline has passed.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, within: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyTimeout;

impl Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(r.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
