//! Everything the config drives, built by one function: [`build`] turns a [`Config`] into a
//! [`Runtime`] (issuers with their key stores, the authenticator and its cache, the
//! authorization policy, the upstream settings). The running proxy holds it in [`Shared`]
//! behind arc-swap, so a new one can replace it while requests in flight finish on the old
//! one; what lives as long as the process (the shutdown flag, request metrics, the proxy's own
//! upstream credential) stays in `Shared`; the bound-object watches live in the reloader,
//! which hands them to each runtime.
//!
//! Issuers are keyed by their configured name wherever a result refers to them
//! (`auth::Principal` holds its issuer, not a position), so a later runtime may add, remove
//! or reorder them.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;

use crate::auth::Authenticator;
use crate::authz::Authorizer;
use crate::bound::BoundObjects;
use crate::config::Config;
use crate::jwks::Issuer;
use crate::metrics::RequestMetrics;
use crate::tls::TlsError;
use crate::upstream::UpstreamSettings;

/// One generation of config-driven state.
pub struct Runtime {
    pub config: Config,
    pub auth: Authenticator,
    pub authz: Authorizer,
    /// `None`: no `[upstream]`, nothing is proxied (TokenReview only).
    pub upstream: Option<UpstreamSettings>,
}

impl Runtime {
    /// The issuers' key sources, for the refreshers and readiness.
    pub fn key_sources(&self) -> Vec<Arc<Issuer>> {
        self.auth.issuers.key_sources()
    }
}

/// Build a runtime from a validated config. `proxy_token` is the proxy's own bearer for
/// impersonate mode (process state, kept fresh by its file watch). Fails only on what
/// validation cannot see: TLS material that does not load. `bound`: the watched cluster
/// state, when some issuer has `bound_objects`.
pub fn build(
    config: Config,
    proxy_token: Arc<ArcSwapOption<HeaderValue>>,
    bound: Option<Arc<BoundObjects>>,
) -> Result<Runtime, TlsError> {
    let issuers = config
        .issuers
        .iter()
        .cloned()
        .map(|c| Arc::new(Issuer::new(c)))
        .collect();
    let auth = Authenticator::new(&config, issuers).with_bound_objects(bound);
    assemble(config, auth, proxy_token)
}

/// The runtime of a new config, carrying on from `previous` what it does not change
/// (`Authenticator::next`: unchanged issuers with their keys and cached results).
pub fn next(
    config: Config,
    proxy_token: Arc<ArcSwapOption<HeaderValue>>,
    previous: &Runtime,
    bound: Option<Arc<BoundObjects>>,
) -> Result<Runtime, TlsError> {
    let auth = Authenticator::next(&config, &previous.auth).with_bound_objects(bound);
    assemble(config, auth, proxy_token)
}

fn assemble(
    config: Config,
    auth: Authenticator,
    proxy_token: Arc<ArcSwapOption<HeaderValue>>,
) -> Result<Runtime, TlsError> {
    let authz = Authorizer::new(&config);
    let upstream = match &config.upstream {
        Some(u) => Some(UpstreamSettings::new(u, proxy_token)?),
        None => None,
    };
    Ok(Runtime {
        config,
        auth,
        authz,
        upstream,
    })
}

/// What every thread shares for the life of the process.
pub struct Shared {
    /// The current runtime.
    pub runtime: ArcSwap<Runtime>,
    pub shutting_down: AtomicBool,
    /// The proxy's own bearer for impersonate mode, re-read when `upstream.token_file` changes.
    pub proxy_token: Arc<ArcSwapOption<HeaderValue>>,
    pub metrics: RequestMetrics,
}
