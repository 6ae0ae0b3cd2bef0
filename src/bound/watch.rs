//! The watches: one kube-rs `watcher` per kind over `Api<PartialObjectMeta<K>>` (metadata-only
//! list and watch, cluster-wide; resumed from the last `resourceVersion`, relisted on
//! `410 Gone`, with bookmarks), feeding the index; and a ticker driving the epoch.
//!
//! A watch that kube-rs resumes after a failure says nothing until its next event, so each
//! watch has its own client whose requests are observed (a small tower layer): a successful
//! response after the last failure means the watch is back.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::utils::{Backoff, StreamBackoff};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;
use tokio::sync::watch as signal;

use super::check::Binding;
use super::index::{key, KindMap, ObjectState, Uid};
use super::kind::Kind;
use super::state::{mono_ms, BoundObjects, TICK};
use crate::config::KubernetesConfig;
use crate::kubernetes;

/// legacy.go's `InvalidSinceLabelKey`.
const LEGACY_INVALID_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";

/// Server-side watch timeout: the apiserver ends each watch after this long and kube-rs resumes
/// it, so a silently dead connection is noticed within about this long (plus 5 s).
const WATCH_TIMEOUT_SECS: u32 = 60;

/// The running watches of one [`BoundObjects`]. Dropping it stops them.
pub struct BoundWatch {
    pub objects: Arc<BoundObjects>,
    kubeconfig: Option<PathBuf>,
    stop: signal::Sender<bool>,
}

impl BoundWatch {
    /// Start the watches and the ticker on `handle` (they connect in the background: until
    /// every kind is listed, [`BoundObjects::usable`] is false).
    pub fn start(cfg: &KubernetesConfig, handle: &Handle) -> BoundWatch {
        let objects = Arc::new(BoundObjects::new(cfg.max_stale));
        let (stop, rx) = signal::channel(false);
        handle.spawn(run(cfg.clone(), objects.clone(), rx));
        BoundWatch {
            objects,
            kubeconfig: cfg.kubeconfig.clone(),
            stop,
        }
    }

    /// Whether these watches serve `cfg` (same apiserver settings); `max_stale` is taken over.
    pub fn serves(&self, cfg: &KubernetesConfig) -> bool {
        if self.kubeconfig != cfg.kubeconfig {
            return false;
        }
        self.objects.set_max_stale(cfg.max_stale);
        true
    }
}

impl Drop for BoundWatch {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn run(cfg: KubernetesConfig, objects: Arc<BoundObjects>, stop: signal::Receiver<bool>) {
    tokio::spawn(tick(objects.clone(), stop.clone()));
    let config = match kubernetes::config(&cfg).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "bound objects: no kube-apiserver connection; tokens of bound_objects issuers get 503");
            return;
        }
    };
    tokio::spawn(watch_kind::<ServiceAccount>(
        config.clone(),
        Kind::ServiceAccounts,
        objects.clone(),
        stop.clone(),
    ));
    tokio::spawn(watch_kind::<Pod>(
        config.clone(),
        Kind::Pods,
        objects.clone(),
        stop.clone(),
    ));
    tokio::spawn(watch_kind::<Secret>(
        config.clone(),
        Kind::Secrets,
        objects.clone(),
        stop.clone(),
    ));
    tokio::spawn(watch_kind::<Node>(config, Kind::Nodes, objects, stop));
}

async fn tick(objects: Arc<BoundObjects>, mut stop: signal::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => objects.tick(),
            _ = stop.changed() => return,
        }
    }
}

/// The compact state of one listed or watched object: its index key and what the checks need.
pub fn state_of<K>(kind: Kind, o: &PartialObjectMeta<K>) -> Option<(Box<str>, ObjectState)> {
    let m = &o.metadata;
    let name = m.name.as_deref()?;
    let ns = match kind {
        Kind::Nodes => None,
        _ => Some(m.namespace.as_deref().unwrap_or_default()),
    };
    let state = ObjectState {
        uid: Uid::of(m.uid.as_deref().unwrap_or_default()),
        deleted_at: m
            .deletion_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second().clamp(1, i64::from(u32::MAX)) as u32),
        legacy_invalid: kind == Kind::Secrets
            && m.labels
                .as_ref()
                .and_then(|l| l.get(LEGACY_INVALID_LABEL))
                .is_some_and(|v| !v.is_empty()),
    };
    Some((key(ns, name), state))
}

async fn watch_kind<K>(
    config: kube::Config,
    kind: Kind,
    objects: Arc<BoundObjects>,
    mut stop: signal::Receiver<bool>,
) where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let builder = match kube::client::ClientBuilder::try_from(config) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(kind = kind.as_str(), error = %e, "bound objects: cannot build a kube client");
            return;
        }
    };
    let client = builder
        .with_layer(&ObserveLayer(objects.success_clock(kind)))
        .build();
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let wc = watcher::Config::default()
        .any_semantic()
        .timeout(WATCH_TIMEOUT_SECS);
    let mut events = pin!(StreamBackoff::new(
        watcher::watcher(api, wc),
        Doubling::default()
    ));
    let index = objects.index();
    let mut listing: Option<KindMap> = None;
    let mut warned: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = stop.changed() => return,
        };
        let event = match event {
            None => return,
            Some(Err(e)) => {
                objects.watch_failed(kind);
                if warned.is_none_or(|w| w.elapsed() > Duration::from_secs(30)) {
                    warned = Some(Instant::now());
                    tracing::warn!(kind = kind.as_str(), error = %e, "bound objects: watch failed; retrying");
                }
                continue;
            }
            Some(Ok(e)) => e,
        };
        match event {
            // Emitted before the list request: says nothing about the apiserver yet.
            Event::Init => listing = Some(KindMap::new()),
            Event::InitApply(o) => {
                objects.watch_working(kind);
                if let Some((k, s)) = state_of(kind, &o) {
                    if s.deleted_at != 0 {
                        objects.deleting(s.deleted_at);
                    }
                    listing.get_or_insert_with(KindMap::new).insert(k, s);
                }
            }
            Event::InitDone => {
                index.replace(kind, listing.take().unwrap_or_default());
                objects.listed(kind);
                // Whatever the new list lacks is gone.
                objects.changed();
                tracing::info!(
                    kind = kind.as_str(),
                    objects = index.len(kind),
                    "bound objects: listed"
                );
            }
            Event::Apply(o) => {
                objects.watch_working(kind);
                if let Some((k, s)) = state_of(kind, &o) {
                    let old = index.apply(kind, k, s);
                    if old.is_some_and(|old| old.weakened_by(&s)) {
                        objects.changed();
                    }
                    if s.deleted_at != 0 && old.map(|o| o.deleted_at) != Some(s.deleted_at) {
                        objects.deleting(s.deleted_at);
                    }
                }
            }
            Event::Delete(o) => {
                objects.watch_working(kind);
                if let Some((k, _)) = state_of(kind, &o) {
                    if index.remove(kind, &k) {
                        objects.changed();
                    }
                }
            }
        }
    }
}

/// The pause after a failed list or watch: 250 ms doubling to 5 s (with up to a quarter of
/// jitter), back to 250 ms after any success. Shorter than client-go's 800 ms to 30 s: a
/// security check that fails closed after `max_stale` should recover soon after the apiserver.
#[derive(Default)]
struct Doubling(u32);

impl Iterator for Doubling {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let base = (250u64 << self.0.min(5)).min(5000);
        self.0 = self.0.saturating_add(1);
        let jitter = u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        ) % (base / 4 + 1);
        Some(Duration::from_millis(base + jitter))
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Stamps a clock with every successful (2xx) response.
struct ObserveLayer(Arc<AtomicI64>);

impl<S> tower_layer::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            clock: self.0.clone(),
        }
    }
}

struct Observe<S> {
    inner: S,
    clock: Arc<AtomicI64>,
}

type ObservedFuture<B, E> = Pin<Box<dyn Future<Output = Result<http::Response<B>, E>> + Send>>;

impl<S, B> tower_service::Service<http::Request<kube::client::Body>> for Observe<S>
where
    S: tower_service::Service<http::Request<kube::client::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = ObservedFuture<B, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let response = self.inner.call(req);
        let clock = self.clock.clone();
        Box::pin(async move {
            let r = response.await;
            if r.as_ref().is_ok_and(|r| r.status().is_success()) {
                clock.store(mono_ms(), Ordering::Release);
            }
            r
        })
    }
}

/// The objects `b` names, fetched once (metadata-only GETs), for `inspect`: kind, namespace,
/// name, and the state (`None` when not found).
pub async fn fetch_binding_objects(
    cfg: &KubernetesConfig,
    b: &Binding,
) -> Result<Vec<(Kind, String, String, Option<ObjectState>)>, String> {
    let client = kubernetes::client(cfg).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (kind, ns, name) in b.objects() {
        let c = client.clone();
        let found = match kind {
            Kind::ServiceAccounts => {
                get::<ServiceAccount>(Api::namespaced(c, ns), kind, name).await
            }
            Kind::Pods => get::<Pod>(Api::namespaced(c, ns), kind, name).await,
            Kind::Secrets => get::<Secret>(Api::namespaced(c, ns), kind, name).await,
            Kind::Nodes => get::<Node>(Api::all(c), kind, name).await,
        }?;
        out.push((kind, ns.to_string(), name.to_string(), found));
    }
    Ok(out)
}

async fn get<K>(api: Api<K>, kind: Kind, name: &str) -> Result<Option<ObjectState>, String>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    if name.is_empty() {
        return Ok(None);
    }
    let meta = api
        .get_metadata_opt(name)
        .await
        .map_err(|e| format!("{} {name}: {e}", kind.singular()))?;
    Ok(meta.and_then(|m| state_of(kind, &m)).map(|(_, s)| s))
}
