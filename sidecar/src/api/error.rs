//! The one place errors become HTTP: status, the `{"error", "message", "code"}` envelope, and
//! `Retry-After` for rate limits. Unknown rejections and 5xx causes are logged, never shown.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use crate::error::SidecarError;

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a str,
    message: String,
    code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    /// POLICY_INVALID: where the bundle is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<&'a [broker_auth::policy::bundle::Problem]>,
    /// POLICY_INVALID: the tests that ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    tests: Option<Vec<TestResult>>,
}

/// One `test_*` rule's outcome, as the policy routes report it (in a 422 and in a 200 of
/// `POST /policies/validate`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestResult {
    /// `data.<package>.test_<name>`.
    pub name: String,
    /// `file:line`.
    pub location: String,
    pub passed: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&broker_auth::policy::TestOutcome> for TestResult {
    fn from(o: &broker_auth::policy::TestOutcome) -> Self {
        TestResult {
            name: o.rule.clone(),
            location: o.location.clone(),
            passed: o.passed,
            error: o.error.clone(),
        }
    }
}

/// Every error code the API answers with (also published in the OpenAPI document).
pub const ERROR_CODES: &[(&str, u16, u16, &str)] = &[
    (
        "VALIDATION_ERROR",
        4000,
        400,
        "malformed, wrong-type, non-UTF-8 or invalid input",
    ),
    ("INVALID_SIGNATURE", 4001, 401, "a signature did not verify"),
    ("INVALID_TOKEN", 4002, 401, "the bearer token was refused"),
    ("UNAUTHORIZED", 4003, 401, "credentials are required"),
    (
        "RATE_LIMIT_EXCEEDED",
        4004,
        429,
        "too many requests; see retry_after",
    ),
    (
        "CHALLENGE_INVALID",
        4005,
        401,
        "challenge unknown, used, expired or bound to another key",
    ),
    (
        "REPLAYED",
        4006,
        401,
        "a one-time proof was presented again",
    ),
    (
        "INVALID_REFRESH_TOKEN",
        4008,
        401,
        "refresh token invalid, expired or ended",
    ),
    (
        "REFRESH_TOKEN_REUSED",
        4009,
        401,
        "a used refresh token was presented again; its whole session is revoked",
    ),
    (
        "UPSTREAM_LOGIN_FAILED",
        4010,
        401,
        "the upstream OpenID login failed (state, provider answer or ID token refused)",
    ),
    (
        "OAUTH_ERROR",
        4011,
        400,
        "OAuth2 routes answer in RFC 6749's format instead: {\"error\", \"error_description\"}",
    ),
    ("FORBIDDEN", 4030, 403, "authenticated but not allowed"),
    ("BANNED", 4031, 403, "this client IP is banned"),
    ("NOT_FOUND", 4040, 404, "no such resource"),
    (
        "UNKNOWN_IDENTITY",
        4041,
        404,
        "no identity is registered with this public key",
    ),
    ("METHOD_NOT_ALLOWED", 4050, 405, "method not allowed"),
    (
        "REQUEST_TIMEOUT",
        4080,
        408,
        "the request body did not arrive within HTTP_BODY_TIMEOUT",
    ),
    (
        "CONFLICT",
        4090,
        409,
        "already exists, or changed since you read it",
    ),
    (
        "PAYLOAD_TOO_LARGE",
        4130,
        413,
        "request body over 64 KiB (2 MiB on the policy routes)",
    ),
    (
        "POLICY_INVALID",
        4220,
        422,
        "the deploy gate refused the bundle; see problems (file, line, col) and tests",
    ),
    ("UNSUPPORTED_MEDIA_TYPE", 4150, 415, "send application/json"),
    (
        "LOCKED_OUT",
        4290,
        429,
        "locked out after repeated rate-limit violations",
    ),
    (
        "UNAVAILABLE",
        5030,
        503,
        "a dependency (nats-server) is not reachable; the write was kept, retry to propagate it",
    ),
    (
        "STORE_UNAVAILABLE",
        5031,
        503,
        "the store (NATS JetStream) did not confirm in time; the write was not acknowledged, retry it",
    ),
    (
        "INTERNAL",
        5000,
        500,
        "server error (details are in the server log)",
    ),
];

fn code_of(name: &str) -> (u16, StatusCode) {
    ERROR_CODES
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, code, status, _)| {
            (
                *code,
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
        })
        .unwrap_or((5000, StatusCode::INTERNAL_SERVER_ERROR))
}

/// The envelope name for an error.
pub fn name_of(e: &SidecarError) -> &'static str {
    match e {
        SidecarError::Validation(_) | SidecarError::Malformed(_) | SidecarError::Config { .. } => {
            "VALIDATION_ERROR"
        }
        SidecarError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
        SidecarError::RequestTimeout => "REQUEST_TIMEOUT",
        SidecarError::InvalidSignature => "INVALID_SIGNATURE",
        SidecarError::Replayed => "REPLAYED",
        SidecarError::RateLimited { .. } => "RATE_LIMIT_EXCEEDED",
        SidecarError::LockedOut { .. } => "LOCKED_OUT",
        SidecarError::Banned => "BANNED",
        SidecarError::InvalidRefreshToken => "INVALID_REFRESH_TOKEN",
        SidecarError::RefreshTokenReused => "REFRESH_TOKEN_REUSED",
        SidecarError::InvalidToken(_) => "INVALID_TOKEN",
        SidecarError::Unauthorized => "UNAUTHORIZED",
        SidecarError::Forbidden(_) => "FORBIDDEN",
        SidecarError::ChallengeInvalid => "CHALLENGE_INVALID",
        SidecarError::UnknownIdentity => "UNKNOWN_IDENTITY",
        SidecarError::NotFound(_) => "NOT_FOUND",
        SidecarError::Conflict(_) => "CONFLICT",
        SidecarError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
        SidecarError::UpstreamLogin { .. } => "UPSTREAM_LOGIN_FAILED",
        SidecarError::OAuth { .. } => "OAUTH_ERROR",
        SidecarError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
        SidecarError::PolicyInvalid(_) => "POLICY_INVALID",
        SidecarError::Store(crate::store::StoreError::Conflict(_)) => "CONFLICT",
        SidecarError::Store(crate::store::StoreError::Unavailable(_)) => "STORE_UNAVAILABLE",
        SidecarError::Unavailable { .. } => "UNAVAILABLE",
        SidecarError::Store(_) | SidecarError::Policy { .. } | SidecarError::Internal { .. } => {
            "INTERNAL"
        }
    }
}

/// RFC 6749 §5.2: `invalid_client` is 401 (with a Basic challenge), everything else 400.
fn oauth_reply(error: &str, description: &str) -> warp::reply::Response {
    let status = if error == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = warp::reply::json(&serde_json::json!({
        "error": error,
        "error_description": description,
    }));
    let mut res = warp::reply::with_status(body, status).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            "www-authenticate",
            warp::http::HeaderValue::from_static("Basic realm=\"broker-auth\""),
        );
    }
    res
}

/// The HTTP response for an error.
pub fn reply_for(e: &SidecarError) -> warp::reply::Response {
    if let SidecarError::OAuth { error, description } = e {
        return oauth_reply(error, description);
    }
    let name = name_of(e);
    let (code, status) = code_of(name);
    let message = if status.is_server_error() {
        tracing::error!(error = %e, cause = ?std::error::Error::source(e), "request failed");
        "internal server error".to_owned()
    } else {
        e.to_string()
    };
    let retry_after = match e {
        SidecarError::RateLimited { retry_after } | SidecarError::LockedOut { retry_after } => {
            Some(*retry_after)
        }
        _ => None,
    };
    let refusal = match e {
        SidecarError::PolicyInvalid(r) => Some(r),
        _ => None,
    };
    let body = warp::reply::json(&Envelope {
        error: name,
        message,
        code,
        retry_after,
        problems: refusal.map(|r| r.problems.as_slice()),
        tests: refusal.map(|r| r.tests.iter().map(TestResult::from).collect()),
    });
    let mut res = warp::reply::with_status(body, status).into_response();
    if let Some(v) = retry_after.and_then(|secs| secs.to_string().parse().ok()) {
        res.headers_mut().insert("retry-after", v);
    }
    res
}

/// warp's `recover`: our errors and warp's own rejections, all in the envelope.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    // warp lends its own rejections (`find` gives a reference): their text is all we can keep.
    let e = if let Some(e) = rejection.find::<SidecarError>() {
        return Ok(reply_for(e));
    } else if rejection.is_not_found() {
        SidecarError::NotFound("route")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        SidecarError::PayloadTooLarge(super::extract::BODY_LIMIT)
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        SidecarError::MethodNotAllowed
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        SidecarError::UnsupportedMediaType
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        SidecarError::Validation(format!("bad query string: {e}"))
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        SidecarError::Validation(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        SidecarError::Validation(e.to_string())
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        SidecarError::Validation("Content-Length required".into())
    } else {
        SidecarError::internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(reply_for(&e))
}
