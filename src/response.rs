//! Every response the proxy makes itself (SPEC section 7): the 401s with their
//! `WWW-Authenticate` realm and reason, 400, 403, 404, 405, 408, 431, 502/504, 503 with
//! `Retry-After`, and the Kubernetes `Status` objects of the TokenReview API. The proxy stages
//! and TokenReview both answer from here, so a status and its wording are written once.
//!
//! Each builder is `#[cold]` and never inlined: they run only on failure paths, and their code
//! inside the request future would spread the cached path over more instruction-cache lines
//! (BENCHMARKS.md, "Tried and not kept" and the cold-path measurement).

use std::sync::LazyLock;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use serde_json::json;

use crate::path::PathError;
use crate::upstream::UpstreamBody;
use crate::verify::Reject;

/// Response body: the upstream's streamed body, or a small one of our own.
pub type Body = Either<UpstreamBody, Full<Bytes>>;

/// The challenge of a request that carries no bearer token.
pub const REALM: &str = "Bearer realm=\"tokenreview-proxy\"";

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "5";

/// `WWW-Authenticate` values per reason, built once.
static INVALID_TOKEN: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    Reject::ALL
        .iter()
        .map(|r| {
            HeaderValue::from_str(&format!(
                "{REALM}, error=\"invalid_token\", error_description=\"{}\"",
                r.as_str()
            ))
            .unwrap_or_else(|_| HeaderValue::from_static(REALM))
        })
        .collect()
});

/// The `WWW-Authenticate` value for a token rejected with `reason`.
pub fn invalid_token_challenge(reason: Reject) -> HeaderValue {
    INVALID_TOKEN[reason as usize].clone()
}

#[cold]
#[inline(never)]
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// 401: no bearer token.
#[cold]
#[inline(never)]
pub fn missing_token() -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, "missing bearer token\n");
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    r
}

/// 400: more than one `Authorization` header.
#[cold]
#[inline(never)]
pub fn ambiguous_token() -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        "more than one Authorization header\n",
    )
}

/// 431: a header line over `server.max_header_bytes`.
#[cold]
#[inline(never)]
pub fn header_too_large() -> Response<Body> {
    text(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request header fields too large\n",
    )
}

/// 401 with the reason, or 431 for a token over the header bound.
#[cold]
#[inline(never)]
pub fn rejected(reason: Reject) -> Response<Body> {
    if reason == Reject::TooLarge {
        return header_too_large();
    }
    let mut r = text(StatusCode::UNAUTHORIZED, reject_body(reason));
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, invalid_token_challenge(reason));
    // For the access log.
    r.extensions_mut().insert(reason);
    r
}

fn reject_body(reason: Reject) -> &'static str {
    match reason {
        Reject::Malformed => "invalid token: malformed\n",
        Reject::TooLarge => "invalid token: too_large\n",
        Reject::UnsupportedAlgorithm => "invalid token: unsupported_algorithm\n",
        Reject::ForbiddenHeader => "invalid token: forbidden_header\n",
        Reject::UnknownIssuer => "invalid token: unknown_issuer\n",
        Reject::UnknownKey => "invalid token: unknown_key\n",
        Reject::BadSignature => "invalid token: bad_signature\n",
        Reject::Expired => "invalid token: expired\n",
        Reject::NotYetValid => "invalid token: not_yet_valid\n",
        Reject::IssuedInFuture => "invalid token: issued_in_future\n",
        Reject::LifetimeExceeded => "invalid token: lifetime_exceeded\n",
        Reject::AudienceMismatch => "invalid token: audience_mismatch\n",
        Reject::InvalidClaims => "invalid token: invalid_claims\n",
        Reject::LegacyToken => "invalid token: legacy_token\n",
    }
}

/// 403: authenticated, but not allowed here. Never says who the caller is.
#[cold]
#[inline(never)]
pub fn forbidden() -> Response<Body> {
    text(StatusCode::FORBIDDEN, "forbidden\n")
}

/// 400: a path that cannot be normalized safely (SPEC section 11).
#[cold]
#[inline(never)]
pub fn bad_path(e: PathError) -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        match e {
            PathError::EncodedSeparator => "bad path: encoded '/' or '\\'\n",
            PathError::Backslash => "bad path: '\\'\n",
            PathError::AboveRoot => "bad path: '..' above the root\n",
            PathError::BadEscape => "bad path: malformed percent-encoding\n",
            PathError::NotAbsolute => "bad path: must start with '/'\n",
        },
    )
}

/// 404: nothing is served on this path (no upstream configured).
#[cold]
#[inline(never)]
pub fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// 405: `CONNECT`, never forwarded (SPEC section 14).
#[cold]
#[inline(never)]
pub fn connect_refused() -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n");
    r.headers_mut().insert(
        ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    r
}

/// 408: the request body's next bytes did not come within `server.request_body_timeout`.
#[cold]
#[inline(never)]
pub fn request_body_timeout() -> Response<Body> {
    text(StatusCode::REQUEST_TIMEOUT, "request body timed out\n")
}

/// 400: the request body could not be read (a malformed chunk, a body cut short).
#[cold]
#[inline(never)]
pub fn bad_request_body() -> Response<Body> {
    text(StatusCode::BAD_REQUEST, "malformed request body\n")
}

/// 503 with `Retry-After`: the token's issuer has no usable keys yet.
#[cold]
#[inline(never)]
pub fn unavailable() -> Response<Body> {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "no usable keys for this token's issuer yet\n",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    r
}

/// 503 with `Retry-After`: authorization needs the kube-apiserver, which did not answer.
#[cold]
#[inline(never)]
pub fn authorization_unavailable() -> Response<Body> {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "authorization is unavailable\n",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    r
}

/// 504: no upstream response head within `upstream.timeout`.
#[cold]
#[inline(never)]
pub fn upstream_timeout() -> Response<Body> {
    text(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
}

/// 502: no connection to the upstream.
#[cold]
#[inline(never)]
pub fn upstream_unreachable() -> Response<Body> {
    text(StatusCode::BAD_GATEWAY, "upstream unreachable\n")
}

/// 502: the upstream connection failed during the exchange.
#[cold]
#[inline(never)]
pub fn upstream_failed() -> Response<Body> {
    text(StatusCode::BAD_GATEWAY, "upstream request failed\n")
}

/// A Kubernetes `Status` failure object (TokenReview's errors).
#[cold]
#[inline(never)]
pub fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json(code, serde_json::to_vec(&body).unwrap_or_default())
}

/// A Kubernetes `Status` 503 with `Retry-After`.
#[cold]
#[inline(never)]
pub fn status_unavailable(message: &str) -> Response<Body> {
    let mut r = status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        message,
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    r
}

/// A Kubernetes `Status` 401 carrying a bearer challenge.
#[cold]
#[inline(never)]
pub fn status_unauthorized(message: &str, challenge: HeaderValue) -> Response<Body> {
    let mut r = status(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    r.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    r
}
