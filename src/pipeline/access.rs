//! The access log (`[log] access = true`): one line per request on the main listener, at
//! `info` with target `access`, once its response head is ready: method, path (never the
//! query), status, duration, the caller's username or `-`, the rejection reason or `-`, and
//! the upstream's status or `-`. Nothing is captured while it is off.

use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;

use super::forward::Caller;
use crate::response::Body;
use crate::verify::Reject;

/// What the line needs of the request, taken before the request moves on.
pub struct Entry {
    method: Method,
    path: String,
}

pub fn begin(req: &Request<Incoming>) -> Entry {
    Entry {
        method: req.method().clone(),
        path: req.uri().path().to_string(),
    }
}

/// Write the line for `resp`.
pub fn end(entry: Entry, resp: &Response<Body>, took: Duration) {
    let user = resp
        .extensions()
        .get::<Caller>()
        .map_or("-", |c| c.0.identity.username.as_str());
    let reason = resp
        .extensions()
        .get::<Reject>()
        .map_or("-", |r| r.as_str());
    let upstream_status = match resp.body() {
        Either::Left(_) => resp.status().as_str().to_string(),
        Either::Right(_) => "-".to_string(),
    };
    tracing::info!(
        target: "access",
        method = %entry.method,
        path = %entry.path,
        status = resp.status().as_u16(),
        duration_ms = took.as_secs_f64() * 1000.0,
        user,
        reason,
        upstream_status = %upstream_status,
    );
}
