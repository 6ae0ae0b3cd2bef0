//! # tokenreview-proxy
//!
//! An authenticating reverse proxy and Kubernetes TokenReview server for service-account tokens
//! and OIDC JWTs. It answers one question per request, fast: *who is calling?*
//!
//! ```text
//! accept (TCP or rustls) ─► hyper-util auto (HTTP/1.1 + HTTP/2)           [listener]
//!    └► router: /apis/authentication.k8s.io/*/tokenreviews ─► TokenReview ─┐ [proxy, tokenreview]
//!       └► everything else ─► strip spoofable identity headers ─► bearer    │ [forward, token]
//!             └► authenticate(token, audiences) ◄──────────────────────────┘ [auth]
//!                  ├► cache: keyed hash of (token, audience set) ─► hit       [cache]
//!                  └► miss: parse JWS ─► issuer by iss ─► claim checks        [verify]
//!                       ─► KeySet (arc-swap) ─► signature ─► identity ─► insert [keys, identity]
//!             └► forward: identity headers (pre-built) ─► upstream ─► stream back [forward]
//! per issuer: refresher task: discovery ─► JWKS ─► validated KeySet swap      [jwks]
//! admin listener: /healthz /readyz /metrics                                   [admin, metrics]
//! ```
//!
//! `main.rs` only parses the command line and calls into this library, so integration tests
//! run exactly the code the binary runs.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dev;
pub mod forward;
pub mod identity;
pub mod jwks;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod tls;
pub mod token;
pub mod tokenreview;
pub mod verify;

/// Box a rarely awaited future behind dynamic dispatch: neither its state nor its code becomes
/// part of the future that awaits it. A `Box::pin` of the concrete type keeps the state out
/// but lets the compiler inline the poll, and with it the code, into the caller's; every cached
/// request runs through the caller's code, so the cold code spread its hot path over more
/// instruction-cache lines.
pub(crate) fn out_of_line<'a, T>(
    f: impl std::future::Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>> {
    Box::pin(f)
}
