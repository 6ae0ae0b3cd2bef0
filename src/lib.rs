//! # tokenreview-proxy
//!
//! An authenticating reverse proxy and Kubernetes TokenReview server for service-account tokens
//! and OIDC JWTs. It answers one question per request, fast: *who is calling?*
//!
//! ```text
//! accept (TCP or rustls) ─► hyper-util auto (HTTP/1.1 + HTTP/2)            [listener]
//!    └► request path, as named stages:                                     [pipeline]
//!         normalize    bound header lines; refuse CONNECT; strip spoofable identity headers;
//!                      normalize the path (400 if unsafe)                   [path]
//!         route        first route covering method + path (anonymous: no token needed) [authz]
//!         TokenReview? ─► tokenreview handler ─► authenticate ─┐           [tokenreview]
//!         extract      the bearer token, borrowed                │           [token]
//!         authenticate connection memo, else authenticate(token, audiences) [auth]
//!              ├► cache: keyed hash of (token, audience set) ─► hit        [auth::cache]
//!              └► miss: parse JWS ─► issuer by iss ─► claim checks         [verify]
//!                   ─► keys (arc-swap) ─► signature ─► identity ─► insert  [keys, identity]
//!                   (OIDC: claim rules and CEL mappings after the signature) [claim_rules]
//!         authorize    route conditions, CEL, SubjectAccessReview (cached) [authz, cel]
//!         forward      identity headers (pre-built) ─► upstream ─► stream back [upstream]
//!                      (HTTP/1.1 or HTTP/2; upgrades become tunnels)
//!    request bodies: a stall past request_body_timeout ends them (408)     [request_body]
//!    every refusal is a response from one place                            [response]
//! config ─► runtime::build ─► Runtime (issuers, cache, policy, upstream), swappable [runtime]
//! per issuer: refresher task: discovery ─► JWKS ─► validated KeySet swap   [jwks]
//! admin listener: /healthz /readyz /metrics                                [admin, metrics]
//! bound objects: metadata watches ─► index; a deleted pod's token dies      [bound]
//! ```
//!
//! `main.rs` only parses the command line and calls into this library, so integration tests
//! run exactly the code the binary runs.
#![forbid(unsafe_code)]

// The request path: connections, stages, the responses it makes, where it forwards.
pub mod cold;
pub mod listener;
pub mod path;
pub mod pipeline;
pub mod request_body;
pub mod response;
pub mod token;
pub mod tokenreview;
pub mod upstream;

// Who is calling, and may they.
pub mod auth;
pub mod authz;
pub mod bound;
pub mod cel;
pub mod claim_rules;
pub mod identity;
pub mod jwks;
pub mod keys;
pub mod verify;

// The process: config, the runtime built from it, start and stop, admin, metrics, TLS.
pub mod admin;
pub mod app;
pub mod config;
pub mod kubernetes;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod runtime;
pub mod tls;

// The command line and the embedded issuer and upstream for `dev` and tests.
pub mod cli;
pub mod dev;
