//! Every response the proxy makes itself (SPEC section 7): the 401s with their
//! `WWW-Authenticate` realm and reason, 400, 403, 404, 405, 408, 431, 502/504, 503 with
//! `Retry-After`, the Kubernetes `Status` objects of the TokenReview API, and each of them
//! reshaped for gRPC clients ([`grpc`]). The proxy stages
//! and TokenReview both answer from here, so a status and its wording are written once.
//!
//! Each builder is `#[cold]` and never inlined: they run only on failure paths, and their code
//! inside the request future would spread the cached path over more instruction-cache lines
//! (BENCHMARKS.md, "Tried and not kept" and the cold-path measurement).

use std::sync::LazyLock;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
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
        Reject::Invalidated => "invalid token: invalidated\n",
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

/// 503 with `Retry-After`: the token's issuer has `bound_objects`, and the watches are not
/// in sync (not listed yet, or broken past `kubernetes.max_stale`): fail closed.
#[cold]
#[inline(never)]
pub fn bound_objects_stale() -> Response<Body> {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "bound_objects_stale: cluster state for this token's bound objects is not in sync\n",
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

/// A response of the proxy's own, as a gRPC client must see it (SPEC section 7): HTTP 200,
/// `content-type: application/grpc`, no body, the status in `grpc-status` and the reason in
/// `grpc-message` (a trailers-only response). Other headers (`WWW-Authenticate`,
/// `Retry-After`) stay. The upstream's responses and successes pass unchanged.
#[cold]
#[inline(never)]
pub fn grpc(resp: Response<Body>) -> Response<Body> {
    if resp.status().is_success() || resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let full = match body {
        Either::Left(upstream) => return Response::from_parts(parts, Either::Left(upstream)),
        Either::Right(full) => full,
    };
    // Our own bodies are whole already: collecting one never waits.
    let text = full
        .collect()
        .now_or_never()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let code = grpc_status(parts.status);
    parts.status = StatusCode::OK;
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    parts.headers.insert(
        "grpc-status",
        HeaderValue::from_str(&code.to_string()).unwrap_or(HeaderValue::from_static("2")),
    );
    if let Ok(message) = HeaderValue::from_str(&grpc_message(text.trim_ascii())) {
        parts.headers.insert("grpc-message", message);
    }
    Response::from_parts(parts, Either::Right(Full::new(Bytes::new())))
}

/// gRPC's status for an HTTP status of ours, after gRPC's own HTTP mapping
/// (doc/http-grpc-status-mapping.md in the grpc repository), with 405 as UNIMPLEMENTED, 408
/// as DEADLINE_EXCEEDED and 431 as RESOURCE_EXHAUSTED.
pub fn grpc_status(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 | 405 => 12,             // UNIMPLEMENTED
        408 => 4,                    // DEADLINE_EXCEEDED
        431 => 8,                    // RESOURCE_EXHAUSTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, percent-encoded.
fn grpc_message(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &c in text {
        if (0x20..=0x7e).contains(&c) && c != b'%' {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_become_trailers_only_grpc_responses() {
        let r = grpc(rejected(Reject::Expired));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()["grpc-message"], "invalid token: expired");
        assert!(r.headers().contains_key(WWW_AUTHENTICATE));
        assert_eq!(r.extensions().get::<Reject>(), Some(&Reject::Expired));
        for (resp, code) in [
            (missing_token(), "16"),
            (forbidden(), "7"),
            (unavailable(), "14"),
            (upstream_timeout(), "14"),
            (upstream_unreachable(), "14"),
            (connect_refused(), "12"),
            (bad_request_body(), "13"),
        ] {
            let r = grpc(resp);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["grpc-status"], code);
        }
        assert_eq!(grpc_message(b"50% \xc3\xa9"), "50%25 %C3%A9");
        // A success is left alone.
        let ok = grpc(json(StatusCode::OK, b"{}".to_vec()));
        assert_eq!(ok.headers()["content-type"], "application/json");
    }
}
