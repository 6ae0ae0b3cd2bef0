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
