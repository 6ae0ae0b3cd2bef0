//! A fake kube-apiserver for SubjectAccessReview tests: plain HTTP/1.1 on loopback, answering
//! `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` as the real one does (the review
//! echoed back with `status.allowed`). It records every review body and bearer, allows the
//! users it is told to, and can be made slow or to fail with 500.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Default)]
struct State {
    allowed_users: Vec<String>,
    delay: Duration,
    failing: bool,
    reviews: Vec<Value>,
    bearers: Vec<String>,
}

#[derive(Clone)]
pub struct FakeApiserver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl FakeApiserver {
    pub async fn start() -> FakeApiserver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        FakeApiserver {
            addr,
            state,
            task: Arc::new(task),
        }
    }

    pub fn allow(&self, user: &str) {
        self.state
            .lock()
            .unwrap()
            .allowed_users
            .push(user.to_string());
    }

    pub fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    pub fn set_failing(&self, failing: bool) {
        self.state.lock().unwrap().failing = failing;
    }

    /// Every review body received, oldest first.
    pub fn reviews(&self) -> Vec<Value> {
        self.state.lock().unwrap().reviews.clone()
    }

    pub fn bearers(&self) -> Vec<String> {
        self.state.lock().unwrap().bearers.clone()
    }

    /// A kubeconfig naming this server, with `token` as the proxy's credential.
    pub fn kubeconfig(&self, dir: &std::path::Path, token: &str) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let post = req.method() == http::Method::POST;
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let respond = |status: StatusCode, v: Value| {
        let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
        *r.status_mut() = status;
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(r)
    };
    if !post || path != "/apis/authorization.k8s.io/v1/subjectaccessreviews" {
        return respond(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "code": 404}),
        );
    }
    let mut review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (delay, failing, allowed) = {
        let mut s = state.lock().unwrap();
        s.reviews.push(review.clone());
        s.bearers.push(bearer);
        let user = review["spec"]["user"].as_str().unwrap_or("");
        (
            s.delay,
            s.failing,
            s.allowed_users.iter().any(|u| u == user),
        )
    };
    tokio::time::sleep(delay).await;
    if failing {
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "etcd is sad"}),
        );
    }
    review["status"] = json!({"allowed": allowed});
    respond(StatusCode::CREATED, review)
}
