//! The admin listener (plain HTTP, its own port): `/healthz`, `/readyz`, `/metrics`.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::runtime::Shared;

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Readiness: every issuer has a usable key set, and we are not shutting down.
pub fn readiness(shared: &Shared) -> (bool, String) {
    if shared.shutting_down.load(Ordering::Acquire) {
        return (false, "shutting down\n".into());
    }
    let mut ok = true;
    let mut body = String::new();
    let runtime = shared.runtime.load();
    for i in runtime.auth.issuers.iter() {
        let store = &i.keys.store;
        let ready = store.is_ready();
        ok &= ready;
        let state = if ready {
            "ready"
        } else if store.current().is_empty() {
            "no keys yet"
        } else {
            "keys stale (issuer unreachable past max_stale)"
        };
        body.push_str(&format!("issuer {}: {state}\n", i.name()));
    }
    // Only when some issuer has bound_objects: the initial lists, and watches not broken past
    // kubernetes.max_stale.
    if runtime.auth.issuers.iter().any(|i| i.cfg().bound_objects) {
        match runtime.auth.bound_objects() {
            Some(b) => {
                let (ready, text) = b.readiness();
                ok &= ready;
                body.push_str(&text);
            }
            None => {
                ok = false;
                body.push_str("bound objects: no watches\n");
            }
        }
    }
    (ok, body)
}

async fn route(
    shared: Arc<Shared>,
    metrics: PrometheusHandle,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    Ok(match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            let (ok, body) = readiness(&shared);
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(status, TEXT, body)
        }
        "/metrics" => {
            let runtime = shared.runtime.load_full();
            runtime.auth.run_cache_maintenance().await;
            crate::metrics::collect_process_metrics();
            metrics::gauge!(crate::metrics::VERIFY_CACHE_ENTRIES)
                .set(runtime.auth.cache_entries() as f64);
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.render(),
            )
        }
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    })
}

/// Serve the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    metrics: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let shared = shared.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| route(shared.clone(), metrics.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
