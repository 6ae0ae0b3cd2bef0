//! Authorization on the request path: what routing adds to a cached request.
//!
//! What is measured, and why:
//! - `normalize/already_normal` and `normalize/rewrite`: `path::normalize` on a typical path
//!   (scanned, borrowed: the common case) and on one with escapes and dot segments (rewritten).
//!   Every proxied request pays the first.
//! - `authorize/no_routes`: `Authorizer::route` + `decide` with no `[[authorization.routes]]`:
//!   what every request pays when authorization is not configured (should be ~nothing).
//! - `authorize/20_routes_allow_list`: the request is decided by the 20th route, a
//!   service-account allow-list, after passing 19 others: the route scan plus the list check.
//! - `authorize/20_routes_cel`: the same with the 20th route a CEL expression over `user` and
//!   `request`: the cost of one evaluation (binding borrowed values, running the program).
//! - `cel/eval_only`: one CEL evaluation alone, variables bound as the route binds them.
//!
//! The same 20-route table is what `loadtest/instructions.sh` measures with `AUTHZ=routes` or
//! `AUTHZ=cel`.
//!
//! One run on the shared 2-core machine, other builds running (`cargo bench --bench authz`,
//! median): normalize/already_normal 53 ns, normalize/rewrite 378 ns; authorize/no_routes
//! 6.9 ns, authorize/20_routes_allow_list 69 ns, authorize/20_routes_cel 4.5 µs; cel/eval_only
//! 1.8 µs. So allow-lists cost tens of nanoseconds, and a CEL route a few microseconds: most of
//! it binding `user` (its `extra` map, the token's extras made as strings) and the `cel`
//! crate's evaluation; use an allow-list where one says the same.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use tokenreview_proxy::auth::{Audiences, Authenticator, Verified};
use tokenreview_proxy::authz::{Authorizer, Decision, RequestFacts};
use tokenreview_proxy::cel::{self, Expression, Vars};
use tokenreview_proxy::config::Config;
use tokenreview_proxy::dev::{self, KubeTokenSpec, TestKey};
use tokenreview_proxy::jwks::Issuer;
use tokenreview_proxy::keys::{parse_jwks, KeySet};
use tokenreview_proxy::path;

const ISS: &str = "https://kubernetes.default.svc.cluster.local";
const AUD: &str = "bench-aud";

/// The bench config with `routes` appended (the same table as lib.sh's `authz_routes`).
fn config(routes: &str) -> Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
[[issuers]]
name = "bench"
issuer = "{ISS}"
jwks_url = "http://127.0.0.1:1/unused"
audiences = ["{AUD}"]
{routes}
"#
    );
    Config::parse(&text, "(bench)").expect("bench config")
}

fn twenty_routes(last: &str) -> String {
    let mut s = String::from("[authorization]\ndefault = \"deny\"\n");
    for i in 1..=18 {
        s += &format!(
            "[[authorization.routes]]\nname = \"svc-{i}\"\npath_prefix = \"/api/svc-{i}\"\nmethods = [\"GET\", \"POST\"]\nservice_accounts = [\"team-{i}:*\"]\n"
        );
    }
    s += "[[authorization.routes]]\nname = \"reports\"\npath_prefix = \"/reports\"\nexpression = 'request.method == \"GET\" && \"system:serviceaccounts:ops\" in user.groups'\n";
    s += &format!("[[authorization.routes]]\nname = \"rest\"\npath_prefix = \"/\"\n{last}\n");
    s
}

/// A verified default:default token, as a cache hit returns it.
fn verified() -> Arc<Verified> {
    tokenreview_proxy::metrics::install();
    let key = TestKey::generate("RS256", "k").unwrap();
    let cfg = config("");
    let issuer = Arc::new(Issuer::new(cfg.issuers[0].clone()));
    let jwks = serde_json::to_vec(&dev::jwks(&[key.public_jwk()])).unwrap();
    let parsed = parse_jwks(&jwks, &cfg.issuers[0].algorithms, None).unwrap();
    issuer.store.install(KeySet::new(parsed.keys));
    let auth = Authenticator::new(&cfg, vec![issuer]);
    let token = key.sign(&dev::kube_claims(&KubeTokenSpec::new(ISS, AUD)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(auth.authenticate(&token, Audiences::Configured))
        .expect("token accepted")
}

fn bench_authz(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    g.bench_function("already_normal", |b| {
        b.iter(|| path::normalize(std::hint::black_box("/api/orders/7/items")).is_ok())
    });
    g.bench_function("rewrite", |b| {
        b.iter(|| path::normalize(std::hint::black_box("/api/%6Frders/./7/../8")).is_ok())
    });
    g.finish();

    let caller = verified();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("svc.example"));
    let method = Method::GET;
    let facts = || RequestFacts {
        method: &method,
        path: "/",
        headers: &headers,
        authority: None,
    };
    let mut g = c.benchmark_group("authorize");
    for (name, routes) in [
        ("no_routes", String::new()),
        (
            "20_routes_allow_list",
            twenty_routes("service_accounts = [\"default:*\"]"),
        ),
        (
            "20_routes_cel",
            twenty_routes("expression = 'request.method == \"GET\" && \"system:serviceaccounts:default\" in user.groups'"),
        ),
    ] {
        let authz = Authorizer::new(&config(&routes));
        assert!(matches!(
            authz.decide(authz.route(&method, "/"), &caller, facts()),
            Decision::Allow
        ));
        g.bench_function(name, |b| {
            b.iter(|| {
                let route = authz.route(std::hint::black_box(&method), "/");
                matches!(authz.decide(route, &caller, facts()), Decision::Allow)
            })
        });
    }
    g.finish();

    let e = Expression::compile(
        r#"request.method == "GET" && "system:serviceaccounts:default" in user.groups"#,
        &["user", "request"],
    )
    .unwrap();
    let id = caller.identity();
    c.bench_function("cel/eval_only", |b| {
        b.iter(|| {
            let mut vars = Vars::default();
            vars.bind(
                "user",
                cel::map([
                    ("username", cel::string(&id.username)),
                    (
                        "groups",
                        cel::string_list(id.groups.iter().map(String::as_str)),
                    ),
                ]),
            );
            vars.bind("request", cel::map([("method", cel::string("GET"))]));
            e.eval_bool(&vars).unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1))
        .sample_size(50);
    targets = bench_authz
}
criterion_main!(benches);
