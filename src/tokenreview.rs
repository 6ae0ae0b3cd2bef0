//! The Kubernetes TokenReview API (SPEC section 8): `authentication.k8s.io/v1` and `v1beta1`,
//! answered from the same verification cache as proxy traffic.
//!
//! Responses never echo `spec.token`. A token we reject is `200` with
//! `status.authenticated: false` and `status.error` = the reason code; a body that is not a
//! TokenReview is `400` with a Kubernetes `Status`; "no usable keys" is `503` with a `Status`
//! and `Retry-After` (the review could not be decided, which is not the same as "invalid"); a
//! body whose bytes stop coming for `server.request_body_timeout` is `408` with a `Status`.

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
    let review: ReviewRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "body is not a TokenReview object",
            )
        }
    };
    if review.kind.as_deref().is_some_and(|k| k != "TokenReview") {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "kind must be TokenReview",
        );
    }
    if review
        .api_version
        .as_deref()
        .is_some_and(|v| v != api_version)
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("apiVersion must be {api_version} on this path"),
        );
    }
    let Some(spec) = review.spec else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "spec is required");
    };
    if spec.token.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "token is required for TokenReview in authentication",
        );
    }
    let requested = spec.audiences.unwrap_or_default();
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
    let metadata = match review.metadata {
        None => json!({}),
        Some(m @ Value::Object(_)) => m,
        Some(_) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "metadata must be an object",
            )
        }
    };
    let status_obj = match auth.authenticate(&spec.token, audiences).await {
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
            json!({"authenticated": false, "user": {}, "error": r.reason.as_str()})
        }
        Err(AuthError::Unavailable { .. }) => {
            return response::status_unavailable("no usable keys for the token's issuer yet");
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
    }
}
