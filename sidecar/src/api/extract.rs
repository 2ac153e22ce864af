//! Request extraction shared by every route: bounded JSON bodies with clear errors, the client IP
//! (X-Forwarded-For only from trusted proxies), bearer credentials, and the rate-limit gate.

use std::net::{IpAddr, SocketAddr};

use bytes::Buf;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection};

use crate::error::SidecarError;
use crate::ratelimit::Refusal;
use crate::state::State;

/// Largest request body accepted (http-api.md: > 64 KiB → 413).
pub const BODY_LIMIT: u64 = 64 * 1024;

fn reject(e: SidecarError) -> Rejection {
    warp::reject::custom(e)
}

/// Parse JSON into `T` with messages that say what is wrong, never a 500.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, SidecarError> {
    if std::str::from_utf8(body).is_err() {
        return Err(SidecarError::Validation("request body is not UTF-8".into()));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SidecarError::Validation(
            "request body is empty; send a JSON object".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let mut msg = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                format!("malformed JSON at line {} column {}", e.line(), e.column())
            }
            Category::Data => format!("invalid request: {e}"),
        };
        msg.truncate(300);
        SidecarError::Validation(msg)
    })
}

async fn read_limited<S, B>(body: S, limit: u64) -> Result<Vec<u8>, SidecarError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| body_error(&e))?;
        if buf.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(SidecarError::PayloadTooLarge(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf)
}

/// Why a body could not be read: its deadline passed (our listener's `DeadlineBody`), or the
/// client broke off or sent a malformed chunk.
fn body_error(e: &warp::Error) -> SidecarError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<crate::http_server::BodyTimeout>() {
            return SidecarError::RequestTimeout;
        }
        cause = c.source();
    }
    SidecarError::Validation("could not read the body".into())
}

/// The raw body, at most `limit` bytes (form-encoded routes parse it themselves). Read like
/// [`json_body`]: incrementally, with a timed-out body a 408 rather than warp's bare rejection.
pub fn raw_body(limit: u64) -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    warp::body::stream().and_then(move |body| async move {
        read_limited(body, limit)
            .await
            .map(bytes::Bytes::from)
            .map_err(reject)
    })
}

/// A JSON body of at most [`BODY_LIMIT`] bytes, read incrementally (a chunked upload without
/// Content-Length cannot exceed the limit either).
pub fn json_body<T: DeserializeOwned + Send + 'static>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    json_body_up_to(BODY_LIMIT)
}

/// Policy bundles (up to 1 MiB of Rego) in JSON: the one body larger than [`BODY_LIMIT`].
pub const POLICY_BODY_LIMIT: u64 = 2 * 1024 * 1024;

/// [`json_body`] with another limit.
pub fn json_body_up_to<T: DeserializeOwned + Send + 'static>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::header::optional::<String>("content-length"))
        .and_then(move |ct: Option<String>, len: Option<String>| async move {
            if ct.is_some_and(|ct| !ct.to_ascii_lowercase().starts_with("application/json")) {
                return Err(reject(SidecarError::UnsupportedMediaType));
            }
            if len
                .as_deref()
                .and_then(|l| l.trim().parse::<u64>().ok())
                .is_some_and(|l| l > limit)
            {
                return Err(reject(SidecarError::PayloadTooLarge(limit)));
            }
            Ok(())
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |body| async move {
            let bytes = read_limited(body, limit).await.map_err(reject)?;
            parse_json::<T>(&bytes).map_err(reject)
        })
}

/// A body that is JSON or `application/x-www-form-urlencoded` (brokers' HTTP auth plugins send
/// either), at most [`BODY_LIMIT`] bytes. An empty body is an empty object.
pub fn json_or_form_body<T: DeserializeOwned + Send + 'static>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::body::stream())
        .and_then(|ct: Option<String>, body| async move {
            let ct = ct.unwrap_or_default().to_ascii_lowercase();
            let bytes = read_limited(body, BODY_LIMIT).await.map_err(reject)?;
            if ct.starts_with("application/x-www-form-urlencoded") {
                serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
                    let mut msg = format!("invalid form body: {e}");
                    msg.truncate(300);
                    reject(SidecarError::Validation(msg))
                })
            } else if ct.is_empty() || ct.starts_with("application/json") {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    parse_json::<T>(b"{}").map_err(reject)
                } else {
                    parse_json::<T>(&bytes).map_err(reject)
                }
            } else {
                Err(reject(SidecarError::UnsupportedMediaType))
            }
        })
}

/// Constant-time check of a presented shared secret against the configured one. Digests are
/// compared, so neither length nor content leaks through timing; no configured secret means no
/// caller is let in.
pub fn secret_matches(
    expected: Option<&broker_auth::secret::SecretString>,
    given: Option<&str>,
) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (Some(expected), Some(given)) = (expected, given) else {
        return false;
    };
    let a = Sha256::digest(expected.expose().as_bytes());
    let b = Sha256::digest(given.as_bytes());
    a.ct_eq(&b).into()
}

/// Where a gate finds the secret it expects in the configuration.
type Expected = fn(&crate::state::AppState) -> Option<&broker_auth::secret::SecretString>;

/// A shared-secret gate: the first of `headers` present must match `expected(state)`; else 401.
/// Unset, nobody passes.
pub fn shared_secret(
    state: State,
    headers: &'static [&'static str],
    expected: Expected,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    secret_gate(state, headers, expected, false)
}

/// A secret the operator may set: with none configured every caller passes (the route is open,
/// and the start-up log says so); with one, the first of `headers` must carry it, else 401.
pub fn optional_secret(
    state: State,
    headers: &'static [&'static str],
    expected: Expected,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    secret_gate(state, headers, expected, true)
}

/// Compared in constant time; an `Authorization: Bearer X` header gives `X`.
fn secret_gate(
    state: State,
    headers: &'static [&'static str],
    expected: Expected,
    open_when_unset: bool,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(move |h: warp::http::HeaderMap| {
            let expected = expected(&state);
            let given = headers
                .iter()
                .find_map(|name| h.get(*name))
                .and_then(|v| v.to_str().ok())
                .map(|v| strip_bearer(v).unwrap_or(v));
            let ok = (open_when_unset && expected.is_none()) || secret_matches(expected, given);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(reject(SidecarError::Unauthorized))
                }
            }
        })
        .untuple_one()
}

/// `Bearer <credential>` → the credential (any case of the scheme).
fn strip_bearer(v: &str) -> Option<&str> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The client IP: the socket peer, or — only when the peer is a trusted proxy — the right-most
/// X-Forwarded-For address that is not itself a trusted proxy.
pub fn resolve_ip(peer: Option<SocketAddr>, xff: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer_ip = peer.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let Some(xff) = xff else { return peer_ip };
    xff.rsplit(',')
        .map(|s| s.trim().parse::<IpAddr>())
        .take_while(Result::is_ok)
        .filter_map(Result::ok)
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer_ip)
}

pub fn client_ip(state: State) -> impl Filter<Extract = (IpAddr,), Error = Rejection> + Clone {
    // Our listener puts the peer in the request (`http_server::PeerAddr`); warp's own
    // `remote()` is what its test harness sets.
    warp::ext::optional::<crate::http_server::PeerAddr>()
        .and(warp::addr::remote())
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .map(
            move |ours: Option<crate::http_server::PeerAddr>,
                  warps: Option<SocketAddr>,
                  xff: Option<String>| {
                let peer = ours.map(|p| p.0).or(warps);
                resolve_ip(peer, xff.as_deref(), &state.config.trusted_proxies)
            },
        )
}

/// The rate-limit gate of one route. A new ban is persisted before the refusal is answered.
pub fn limited(
    state: State,
    route: &'static str,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    client_ip(state.clone())
        .and_then(move |ip: IpAddr| {
            let state = state.clone();
            async move {
                match state.limiter.check(ip, route, state.clock.now_millis()) {
                    Ok(()) => Ok(()),
                    Err(refusal) => {
                        state.metrics.rate_limited.inc();
                        Err(reject(match refusal {
                            Refusal::RateLimited { retry_after } => {
                                SidecarError::RateLimited { retry_after }
                            }
                            Refusal::LockedOut { retry_after } => {
                                SidecarError::LockedOut { retry_after }
                            }
                            Refusal::Banned { new } => {
                                if new {
                                    crate::domain::ops::record_ban(&state, ip)
                                        .await
                                        .map_err(reject)?;
                                }
                                SidecarError::Banned
                            }
                        }))
                    }
                }
            }
        })
        .untuple_one()
}

/// GET, or HEAD on the same route: hyper answers a HEAD with the GET's status and headers and
/// no body, so every readable route answers both (probes and caches use HEAD).
pub fn get() -> warp::filters::BoxedFilter<()> {
    warp::get().or(warp::head()).unify().boxed()
}

/// `Authorization: Bearer <credential>`, if present.
pub fn bearer() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .map(|h: Option<String>| h.and_then(|h| strip_bearer(&h).map(str::to_owned)))
}

pub fn with_state(
    state: State,
) -> impl Filter<Extract = (State,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = |s: &str| Some(SocketAddr::new(s.parse().unwrap(), 1234));
        // Untrusted peer: its X-Forwarded-For is ignored.
        assert_eq!(
            resolve_ip(peer("203.0.113.9"), Some("1.2.3.4"), &trusted).to_string(),
            "203.0.113.9"
        );
        // Trusted proxy: right-most untrusted address wins (the client can prepend anything).
        assert_eq!(
            resolve_ip(
                peer("10.0.0.2"),
                Some("6.6.6.6, 198.51.100.7, 10.0.0.5"),
                &trusted
            )
            .to_string(),
            "198.51.100.7"
        );
        assert_eq!(
            resolve_ip(peer("10.0.0.2"), None, &trusted).to_string(),
            "10.0.0.2"
        );
        assert_eq!(
            resolve_ip(peer("10.0.0.2"), Some("garbage"), &trusted).to_string(),
            "10.0.0.2"
        );
    }

    #[test]
    fn json_errors_are_clear() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: String,
        }
        let e = parse_json::<T>(b"{\"a\": ").unwrap_err().to_string();
        assert!(e.contains("malformed JSON"), "{e}");
        let e = parse_json::<T>(b"{\"a\": 5}").unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = parse_json::<T>(&[0xff, 0xfe]).unwrap_err().to_string();
        assert!(e.contains("UTF-8"), "{e}");
        assert!(parse_json::<T>(b"  ").is_err());
    }
}
