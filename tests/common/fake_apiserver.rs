//! A fake kube-apiserver for the core/v1 kinds the bound-object watches read (serviceaccounts,
//! pods, secrets, nodes), over a real socket, speaking the real list/watch protocol:
//!
//! - list (`GET /api/v1/pods`, or `/api/v1/namespaces/NS/pods`) with the list's
//!   `resourceVersion`; full objects (`PodList`), or `PartialObjectMetadataList` when the
//!   `Accept` header asks for it (`as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`);
//! - watch (`?watch=1|true`): a chunked stream of JSON events, one a line (`ADDED`,
//!   `MODIFIED`, `DELETED`; `BOOKMARK` with `allowWatchBookmarks=true`), from the requested
//!   `resourceVersion` (none or `0`: every current object as `ADDED` first); a version older
//!   than the last [`FakeApiserver::compact`] gets an `ERROR` event with a `Status` of code 410
//!   (as a real apiserver answers an expired version); `timeoutSeconds` ends the stream;
//! - `GET` of one object (`/api/v1/namespaces/NS/pods/NAME`, `/api/v1/nodes/NAME`), 404
//!   `Status` when absent.
//!
//! Tests change objects, cut watch connections, expire versions, and stop and restart the
//! server on the same port; every request is recorded (method, URI, `Accept`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};

pub const KINDS: [&str; 4] = ["serviceaccounts", "pods", "secrets", "nodes"];

fn type_name(kind: &str) -> &'static str {
    match kind {
        "serviceaccounts" => "ServiceAccount",
        "pods" => "Pod",
        "secrets" => "Secret",
        _ => "Node",
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub accept: String,
}

struct Event {
    rv: u64,
    kind: &'static str,
    kind_type: &'static str,
    /// ADDED / MODIFIED / DELETED
    what: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// Versions at or below this are expired: resumed watches get 410.
    compacted: u64,
    /// kind → key (ns/name or name) → full object
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    log: Vec<Arc<Event>>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
    seen: Mutex<Vec<Seen>>,
    /// Bumped to end every open connection (cut watches, or the server going down).
    cut: watch::Sender<u64>,
    /// Bumped to stop the accept loop.
    down: watch::Sender<u64>,
    /// Set while stopped: a connection accepted in the race is dropped.
    is_down: std::sync::atomic::AtomicBool,
}

pub struct FakeApiserver {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

impl FakeApiserver {
    pub async fn start() -> FakeApiserver {
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                rv: 100,
                ..State::default()
            }),
            events,
            seen: Mutex::new(Vec::new()),
            cut: watch::channel(0).0,
            down: watch::channel(0).0,
            is_down: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let down = inner.down.subscribe();
        tokio::spawn(serve(inner.clone(), listener, down));
        FakeApiserver { inner, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server (plain HTTP, a bearer token) in `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: proxy\n  user:\n    token: fake-apiserver-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: proxy\ncurrent-context: fake\n",
                self.url()
            ),
        )
        .expect("write kubeconfig");
        path
    }

    /// Create or replace an object (`ns`: `None` for nodes). `deleting`: an RFC 3339
    /// `deletionTimestamp`. Returns its resourceVersion.
    pub fn put(
        &self,
        kind: &'static str,
        ns: Option<&str>,
        name: &str,
        uid: &str,
        deleting: Option<&str>,
        labels: &[(&str, &str)],
    ) -> u64 {
        let mut st = self.inner.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let mut meta = json!({
            "name": name,
            "uid": uid,
            "resourceVersion": rv.to_string(),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "fake", "operation": "Update", "apiVersion": "v1"}],
            "annotations": {"fake/annotation": "x".repeat(200)},
        });
        if let Some(ns) = ns {
            meta["namespace"] = json!(ns);
        }
        if let Some(d) = deleting {
            meta["deletionTimestamp"] = json!(d);
        }
        if !labels.is_empty() {
            let l: serde_json::Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            meta["labels"] = Value::Object(l);
        }
        let mut object = json!({"apiVersion": "v1", "kind": type_name(kind), "metadata": meta});
        match kind {
            "pods" => {
                object["spec"] = json!({"containers": [{"name": "c", "image": "example/app"}]})
            }
            "secrets" => {
                object["type"] = json!("Opaque");
                object["data"] = json!({"token": "c2VjcmV0LWRhdGEtbmV2ZXItcmVhZA=="});
            }
            _ => {}
        }
        let key = key(ns, name);
        let map = st.objects.entry(kind).or_default();
        let what = if map.insert(key, object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(&mut st, kind, what, object, rv);
        rv
    }

    /// The service account `default/default` of `spec`'s tokens, with their uid.
    pub fn put_token_service_account(&self, spec: &tokenreview_proxy::dev::KubeTokenSpec) {
        self.put(
            "serviceaccounts",
            Some("default"),
            "default",
            &spec.service_account_uid,
            None,
            &[],
        );
    }

    /// Delete an object (a `DELETED` event); false if it was not there.
    pub fn delete(&self, kind: &'static str, ns: Option<&str>, name: &str) -> bool {
        let mut st = self.inner.state.lock().unwrap();
        let Some(mut object) = st.objects.entry(kind).or_default().remove(&key(ns, name)) else {
            return false;
        };
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(&mut st, kind, "DELETED", object, rv);
        true
    }

    fn record(
        &self,
        st: &mut State,
        kind: &'static str,
        what: &'static str,
        object: Value,
        rv: u64,
    ) {
        let e = Arc::new(Event {
            rv,
            kind,
            kind_type: type_name(kind),
            what,
            object,
        });
        st.log.push(e.clone());
        // A stopped server delivers nothing, even on a watch whose cut is still under way.
        if !self.inner.is_down.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = self.inner.events.send(e);
        }
    }

    /// End every open connection (watches see their stream cut).
    pub fn cut_watches(&self) {
        self.inner.cut.send_modify(|g| *g += 1);
    }

    /// Expire every resourceVersion handed out so far: a watch resumed from one gets 410.
    pub fn compact(&self) {
        let mut st = self.inner.state.lock().unwrap();
        st.compacted = st.rv;
        st.log.clear();
    }

    /// Stop listening and end every connection: clients see connection refused.
    pub fn stop(&self) {
        self.inner
            .is_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.down.send_modify(|g| *g += 1);
        self.cut_watches();
    }

    /// Listen again on the same port.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        let down = self.inner.down.subscribe();
        self.inner
            .is_down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(serve(self.inner.clone(), listener, down));
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// Requests whose path names `kind` (e.g. "secrets").
    pub fn requests_for(&self, kind: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| {
                s.uri
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .split('/')
                    .any(|p| p == kind)
            })
            .collect()
    }
}

fn key(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

async fn serve(
    inner: Arc<Inner>,
    listener: tokio::net::TcpListener,
    mut down: watch::Receiver<u64>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = down.changed() => return,
        };
        let inner = inner.clone();
        let mut cut = inner.cut.subscribe();
        if inner.is_down.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(inner.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = cut.changed() => {}
            }
        });
    }
}

/// A streamed body fed by a channel.
struct Chunks(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

type Body = http_body_util::Either<http_body_util::Full<Bytes>, Chunks>;

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(http_body_util::Either::Left(http_body_util::Full::new(
        Bytes::from(serde_json::to_vec(body).unwrap()),
    )));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// The object as the client asked for it: metadata only, or whole.
fn shaped(object: &Value, meta_only: bool) -> Value {
    if meta_only {
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
               "metadata": object["metadata"]})
    } else {
        object.clone()
    }
}

async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    inner.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        accept: accept.clone(),
    });
    let meta_only = accept.contains("as=PartialObjectMetadata");
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    // /api/v1/KIND[/NAME] or /api/v1/namespaces/NS/KIND[/NAME]
    let (ns, kind, name) = match parts.as_slice() {
        ["api", "v1", kind] => (None, *kind, None),
        ["api", "v1", kind, name] if *kind == "nodes" => (None, *kind, Some(*name)),
        ["api", "v1", "namespaces", ns, kind] => (Some(*ns), *kind, None),
        ["api", "v1", "namespaces", ns, kind, name] => (Some(*ns), *kind, Some(*name)),
        _ => {
            return Ok(reply(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", "no such path"),
            ))
        }
    };
    let Some(kind) = KINDS.iter().copied().find(|k| *k == kind) else {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            &status(404, "NotFound", "no such resource"),
        ));
    };
    if req.method() != http::Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &status(405, "MethodNotAllowed", "read-only fake"),
        ));
    }
    if let Some(name) = name {
        let st = inner.state.lock().unwrap();
        let key = key(if kind == "nodes" { None } else { ns }, name);
        return Ok(match st.objects.get(kind).and_then(|m| m.get(&key)) {
            Some(o) => reply(StatusCode::OK, &shaped(o, meta_only)),
            None => reply(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", &format!("{kind} \"{name}\" not found")),
            ),
        });
    }
    let in_ns = |o: &Value| ns.is_none_or(|ns| o["metadata"]["namespace"] == ns);
    let watching = matches!(
        query.get("watch").map(String::as_str),
        Some("1" | "true" | "True")
    );
    if !watching {
        let st = inner.state.lock().unwrap();
        let items: Vec<Value> = st
            .objects
            .get(kind)
            .map(|m| {
                m.values()
                    .filter(|o| in_ns(o))
                    .map(|o| shaped(o, meta_only))
                    .collect()
            })
            .unwrap_or_default();
        let (list_kind, api_version) = if meta_only {
            ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1")
        } else {
            (format!("{}List", type_name(kind)), "v1")
        };
        return Ok(reply(
            StatusCode::OK,
            &json!({"kind": list_kind, "apiVersion": api_version,
                    "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
        ));
    }
    // A watch.
    let from: Option<u64> = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v != 0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (tx, rx) = mpsc::channel(1024);
    let mut live = inner.events.subscribe();
    let line = |what: &str, object: Value| {
        let mut b = serde_json::to_vec(&json!({"type": what, "object": object})).unwrap();
        b.push(b'\n');
        Bytes::from(b)
    };
    let (backlog, start_rv, gone): (Vec<Bytes>, u64, bool) = {
        let st = inner.state.lock().unwrap();
        match from {
            Some(rv) if rv <= st.compacted => (Vec::new(), rv, true),
            Some(rv) => (
                st.log
                    .iter()
                    .filter(|e| e.kind == kind && e.rv > rv && in_ns(&e.object))
                    .map(|e| line(e.what, shaped(&e.object, meta_only)))
                    .collect(),
                rv.max(
                    st.log
                        .iter()
                        .filter(|e| e.kind == kind)
                        .map(|e| e.rv)
                        .max()
                        .unwrap_or(0),
                ),
                false,
            ),
            None => (
                st.objects
                    .get(kind)
                    .map(|m| {
                        m.values()
                            .filter(|o| in_ns(o))
                            .map(|o| line("ADDED", shaped(o, meta_only)))
                            .collect()
                    })
                    .unwrap_or_default(),
                st.rv,
                false,
            ),
        }
    };
    let ns = ns.map(str::to_string);
    tokio::spawn(async move {
        if gone {
            let _ = tx
                .send(line(
                    "ERROR",
                    status(410, "Expired", "too old resource version"),
                ))
                .await;
            return;
        }
        for b in backlog {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let mut sent = start_rv;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let ended = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                e = live.recv() => match e {
                    Ok(e) => {
                        let in_ns = ns.as_deref().is_none_or(|ns| e.object["metadata"]["namespace"] == ns);
                        if e.kind == kind && e.rv > sent && in_ns {
                            sent = e.rv;
                            if tx.send(line(e.what, shaped(&e.object, meta_only))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let object = if meta_only {
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": {"resourceVersion": sent.to_string()}})
                    } else {
                        json!({"kind": type_name(kind), "apiVersion": "v1",
                               "metadata": {"resourceVersion": sent.to_string()}})
                    };
                    if tx.send(line("BOOKMARK", object)).await.is_err() {
                        return;
                    }
                }
                _ = ended => return,
            }
        }
    });
    let mut r = Response::new(http_body_util::Either::Right(Chunks(rx)));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(r)
}
