//! Test doubles used by `dev` mode, the integration tests and the load tests.
//!
//! Everything here speaks real HTTP (HTTP/1.1, and h2 / h2c via ALPN or
//! prior knowledge) over real loopback sockets, so the proxy under test
//! exercises exactly the code paths it uses in production:
//!
//! * [`TestKey`] generates or loads signing keys, publishes them as JWKs and
//!   signs compact JWS tokens, including deliberately malformed ones.
//! * [`KubeTokenSpec`] / [`kube_claims`] build claims shaped exactly like a
//!   kube-apiserver bound projected service-account token.
//! * [`MockIssuer`] serves OIDC discovery and a JWKS, with fault knobs.
//! * [`EchoUpstream`] is the protected backend: it records every request
//!   and echoes it back, streams large downloads and fakes errors/latency.
//!
//! Servers run on the tokio runtime that started them. They stop accepting,
//! and drop their open connections, once the last clone of their handle is
//! dropped, so keep the handle alive for as long as the server is needed.

//!
//! `keys` holds the signing side (keys, JWKs, tokens); `issuer` the mock OIDC issuer, `echo`
//! the echo upstream, and `serve` the HTTP server plumbing both are built on.

mod echo;
mod issuer;
mod keys;
mod serve;

pub use echo::*;
pub use issuer::*;
pub use keys::*;
