//! The Kubernetes TokenReview API (SPEC section 8): `authentication.k8s.io/v1` and `v1beta1`,
//! answered from the same verification cache as proxy traffic.
//!
//! Responses never echo `spec.token`. A token we reject is `200` with
//! `status.authenticated: false` and `status.error` = the reason code; a body that is not a
//! TokenReview is `400` with a Kubernetes `Status`; "no usable keys" is `503` with a `Status`
//! and `Retry-After` (the review could not be decided, which is not the same as "invalid"); a
//! body whose bytes stop coming for `server.request_body_timeout` is `408` with a `Status`.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use metrics::{counter, Counter};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::{Audiences, AuthError, Authenticator};
use crate::config::TokenReviewConfig;
use crate::request_body::{BodyFailure, Watched};
use crate::response::{self, json as json_response, status, Body};
use crate::token::{self, Bearer};

pub const PATH_V1: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
pub const PATH_V1BETA1: &str = "/apis/authentication.k8s.io/v1beta1/tokenreviews";
/// Largest TokenReview request body accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;

pub fn is_tokenreview_path(path: &str) -> bool {
    path == PATH_V1 || path == PATH_V1BETA1
}

/// Is this request for the TokenReview API (enabled, `POST`, one of its paths)?
pub fn serves(cfg: &TokenReviewConfig, req: &Request<Incoming>) -> bool {
    cfg.enabled && req.method() == Method::POST && is_tokenreview_path(req.uri().path())
}

struct ReviewMetrics {
    v1: [Counter; 2],
    v1beta1: [Counter; 2],
}

static METRICS: LazyLock<ReviewMetrics> = LazyLock::new(|| {
    let c = |v: &'static str, a: &'static str| counter!(crate::metrics::TOKENREVIEWS_TOTAL, "version" => v, "authenticated" => a);
    ReviewMetrics {
        v1: [c("v1", "false"), c("v1", "true")],
        v1beta1: [c("v1beta1", "false"), c("v1beta1", "true")],
    }
});

#[derive(Deserialize)]
struct ReviewRequest {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    /// Echoed back; must be an object (`null` counts as absent).
    #[serde(default)]
    metadata: Option<Value>,
    spec: Option<ReviewSpec>,
}

#[derive(Deserialize)]
struct ReviewSpec {
    #[serde(default)]
    token: String,
    #[serde(default)]
    audiences: Option<Vec<String>>,
}

/// A TokenReview request body, checked: the token to review, the audiences asked for (empty:
/// the issuer's configured ones) and the `metadata` to echo.
#[derive(Debug)]
pub struct ReviewBody {
    pub token: String,
    pub audiences: Vec<String>,
    pub metadata: Option<Value>,
}

/// Parse and check a request body for the path of `api_version`
/// (`authentication.k8s.io/v1` or `…/v1beta1`). `Err` is the message of the `400` answer.
pub fn parse_review(body: &[u8], api_version: &str) -> Result<ReviewBody, Cow<'static, str>> {
    let review: ReviewRequest =
        serde_json::from_slice(body).map_err(|_| "body is not a TokenReview object")?;
    if review.kind.as_deref().is_some_and(|k| k != "TokenReview") {
        return Err("kind must be TokenReview".into());
    }
    if review
        .api_version
        .as_deref()
        .is_some_and(|v| v != api_version)
    {
        return Err(format!("apiVersion must be {api_version} on this path").into());
    }
    let spec = review.spec.ok_or("spec is required")?;
    if spec.token.is_empty() {
        return Err("token is required for TokenReview in authentication".into());
    }
    let metadata = match review.metadata {
        None => None,
        Some(m @ Value::Object(_)) => Some(m),
        Some(_) => return Err("metadata must be an object".into()),
    };
    Ok(ReviewBody {
        token: spec.token,
        audiences: spec.audiences.unwrap_or_default(),
        metadata,
    })
}

/// Handle a `POST` to one of the TokenReview paths. `body_timeout`:
/// `server.request_body_timeout`.
pub async fn handle(
    auth: &Authenticator,
    cfg: &TokenReviewConfig,
    req: Request<Incoming>,
    body_timeout: Duration,
) -> Response<Body> {
    let (version, api_version) = if req.uri().path() == PATH_V1 {
        ("v1", "authentication.k8s.io/v1")
    } else {
        ("v1beta1", "authentication.k8s.io/v1beta1")
    };

    if let Some(resp) = check_caller(auth, cfg, &req).await {
        return resp;
    }

    let (body, outcome) = Watched::new(req.into_body(), body_timeout);
    let body: Bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) if outcome.failure() == Some(BodyFailure::Stalled) => {
            return status(
                StatusCode::REQUEST_TIMEOUT,
                "Timeout",
                "request body not received within server.request_body_timeout",
            )
        }
        Err(_) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "request body unreadable or over 1 MiB",
            )
        }
    };
    let ReviewBody {
        token,
        audiences: requested,
        metadata,
    } = match parse_review(&body, api_version) {
        Ok(r) => r,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    let audiences = if requested.is_empty() {
        Audiences::Configured
    } else {
        Audiences::Explicit(&requested)
    };

    let metrics = if version == "v1" {
        &METRICS.v1
    } else {
        &METRICS.v1beta1
    };
    // Generated clients require `spec.token` in the response: the official Python client 37.x
    // (OpenAPI release-1.37) fails to parse a TokenReview without it. kube-apiserver echoes
    // the token; we never do (SPEC 7), so it is present and empty.
    let mut spec_out = Map::new();
    spec_out.insert("token".into(), json!(""));
    if !requested.is_empty() {
        spec_out.insert("audiences".into(), json!(requested));
    }
    let metadata = metadata.unwrap_or_else(|| json!({}));
    let status_obj = match auth.authenticate(&token, audiences).await {
        Ok(v) => {
            metrics[1].increment(1);
            let id = v.identity();
            let extra: Map<String, Value> = id
                .extra
                .iter()
                .map(|(k, vals)| (k.clone(), json!(vals)))
                .collect();
            let mut user = Map::new();
            user.insert("username".into(), json!(id.username));
            if !id.uid.is_empty() {
                user.insert("uid".into(), json!(id.uid));
            }
            user.insert("groups".into(), json!(id.groups));
            if !extra.is_empty() {
                user.insert("extra".into(), Value::Object(extra));
            }
            json!({
                "authenticated": true,
                "user": user,
                "audiences": v.audiences(),
            })
        }
        Err(AuthError::Rejected(r)) => {
            metrics[0].increment(1);
            // A failed claim rule adds its message: `invalid_claims: <message>`.
            let error = match &r.message {
                Some(m) => format!("{}: {m}", r.reason.as_str()),
                None => r.reason.as_str().to_string(),
            };
            json!({"authenticated": false, "user": {}, "error": error})
        }
        Err(AuthError::Unavailable { .. }) => {
            return response::status_unavailable("no usable keys for the token's issuer yet");
        }
        Err(AuthError::BoundObjectsStale { .. }) => {
            return response::status_unavailable(
                "bound_objects_stale: cluster state for the token's bound objects is not in sync",
            );
        }
    };
    let body = json!({
        "apiVersion": api_version,
        "kind": "TokenReview",
        "metadata": metadata,
        "spec": spec_out,
        "status": status_obj,
    });
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// `tokenreview.allowed_callers`: when set, the caller's own bearer must authenticate (same
/// machinery, configured audiences) to a listed username or group. `None` = allowed.
async fn check_caller(
    auth: &Authenticator,
    cfg: &TokenReviewConfig,
    req: &Request<Incoming>,
) -> Option<Response<Body>> {
    let allowed = &cfg.allowed_callers;
    if allowed.is_empty() {
        return None;
    }
    let token = match token::extract(req.headers()) {
        Bearer::Token(t) => t,
        Bearer::Ambiguous => {
            return Some(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "more than one Authorization header",
            ));
        }
        Bearer::Missing => {
            return Some(response::status_unauthorized(
                "a bearer token is required to call TokenReview",
                HeaderValue::from_static(response::REALM),
            ));
        }
    };
    match auth.authenticate(token, Audiences::Configured).await {
        Ok(v) => {
            let id = &v.principal.identity;
            let ok = allowed
                .iter()
                .any(|a| *a == id.username || id.groups.iter().any(|g| g == a));
            if ok {
                None
            } else {
                Some(status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "caller is not in tokenreview.allowed_callers",
                ))
            }
        }
        Err(AuthError::Rejected(r)) => Some(response::status_unauthorized(
            "caller token rejected",
            response::invalid_token_challenge(r.reason),
        )),
        Err(AuthError::Unavailable { .. }) => Some(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "no usable keys to check the caller's token yet",
        )),
        Err(AuthError::BoundObjectsStale { .. }) => Some(response::status_unavailable(
            "bound_objects_stale: cannot check the caller's token against the cluster yet",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "authentication.k8s.io/v1";

    #[test]
    fn review_bodies_parse_or_say_why_not() {
        let ok = parse_review(
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","metadata":{"name":"r"},"spec":{"token":"t","audiences":["a"]}}"#,
            V1,
        )
        .unwrap();
        assert_eq!(
            (ok.token.as_str(), ok.audiences.as_slice()),
            ("t", &["a".to_string()][..])
        );
        assert_eq!(ok.metadata, Some(json!({"name": "r"})));
        let minimal = parse_review(br#"{"spec":{"token":"t","audiences":null}}"#, V1).unwrap();
        assert!(minimal.audiences.is_empty() && minimal.metadata.is_none());
        for (body, message) in [
            (&b"[1]"[..], "body is not a TokenReview object"),
            (
                br#"{"kind":"Status","spec":{"token":"t"}}"#,
                "kind must be TokenReview",
            ),
            (
                br#"{"apiVersion":"authentication.k8s.io/v1beta1","spec":{"token":"t"}}"#,
                "apiVersion must be authentication.k8s.io/v1 on this path",
            ),
            (br#"{"kind":"TokenReview"}"#, "spec is required"),
            (
                br#"{"spec":{"audiences":["a"]}}"#,
                "token is required for TokenReview in authentication",
            ),
        ] {
            assert_eq!(parse_review(body, V1).unwrap_err(), message);
        }
    }
}
