//! A request as the upstream gets it (SPEC sections 6 and 14), in HTTP/1.1 or HTTP/2 form.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, FORWARDED, HOST, TE};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderMap, Request, Version};

use super::error::UpstreamError;
use super::headers::{self, append_grouped};
use crate::config::IdentityMode;
use crate::identity::{grpc_header_name, TokenHeaderNames, TokenHeaderValues};
use crate::request_body::RequestBody;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What rewriting needs of `[upstream]`, built once per worker.
pub(super) struct Rewrite {
    pub(super) scheme: Scheme,
    pub(super) authority: Authority,
    /// The upstream URL's path without trailing slash ("" when none).
    pub(super) base_path: String,
    pub(super) host: HeaderValue,
    pub(super) mode: IdentityMode,
    pub(super) forward_token: bool,
    pub(super) proxy_token: Arc<ArcSwapOption<HeaderValue>>,
    /// Names of the per-token identity headers (pod name and uid, credential id) in `mode`.
    pub(super) token_header_names: TokenHeaderNames,
    /// The same, spelled for gRPC requests.
    pub(super) grpc_token_header_names: TokenHeaderNames,
}

/// The hop the request arrived on: the client's address, TLS or not, and whether it is a
/// trusted proxy (then its forwarding headers were kept).
#[derive(Clone, Copy)]
pub(super) struct Hop<'a> {
    pub(super) ip: &'a HeaderValue,
    pub(super) tls: bool,
    pub(super) trusted: bool,
}

impl Rewrite {
    /// The request as the upstream gets it: hop-by-hop headers gone, the token kept or dropped
    /// per mode, `Host` and `X-Forwarded-*` set, identity headers appended (spelled for gRPC
    /// on a gRPC request), the path prefixed with the upstream URL's. HTTP/1.1 (`h2` false):
    /// origin form ("/path?query": every connection it is sent on is already open to the
    /// upstream). HTTP/2: absolute form (`:scheme`, `:authority`), no `Host`, and `TE:
    /// trailers` kept if the client sent it.
    pub(super) fn rewrite(
        &self,
        req: Request<RequestBody>,
        identity_headers: &[(HeaderName, HeaderValue)],
        token_headers: TokenHeaderValues,
        conn: Hop<'_>,
        h2: bool,
    ) -> Result<Request<RequestBody>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        let original_host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let headers = &mut parts.headers;
        // One pass over the names finds the hop-by-hop headers and a `Content-Type`: only a
        // request with one is looked at as gRPC (no look-up otherwise).
        let scan = headers::scan(headers);
        let grpc = scan.content_type && headers::is_grpc(headers);
        let trailers = h2 && headers::te_trailers(headers, &scan);
        headers::strip_scanned(headers, &scan);
        // Room for what is appended below, so the map grows (and rehashes) at most once.
        headers.reserve(identity_headers.len() + 8);
        match self.mode {
            IdentityMode::Impersonate => {
                headers.remove(AUTHORIZATION);
                if let Some(t) = &*self.proxy_token.load() {
                    headers.insert(AUTHORIZATION, (**t).clone());
                }
            }
            _ if !self.forward_token => {
                headers.remove(AUTHORIZATION);
            }
            _ => {}
        }
        if h2 {
            headers.remove(HOST);
        } else {
            headers.insert(HOST, self.host.clone());
        }
        // From a peer outside `server.trusted_proxies` the normalize stage removed these, so
        // appending is setting.
        headers.append(X_FORWARDED_FOR.clone(), conn.ip.clone());
        headers.append(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
        if conn.trusted && headers.contains_key(FORWARDED) {
            // A trusted proxy's `Forwarded` list gets this hop's element too (else the
            // normalize stage removed it, and none is sent: `X-Forwarded-*` say the same).
            if let Some(e) = headers::forwarded_element(conn.ip, conn.tls, original_host.as_ref()) {
                headers.append(FORWARDED, e);
            }
        }
        if let Some(h) = original_host {
            headers.append(X_FORWARDED_HOST.clone(), h);
        }
        if grpc {
            append_grpc(headers, identity_headers);
            token_headers.append_to(&self.grpc_token_header_names, headers);
        } else {
            append_grouped(headers, identity_headers);
            token_headers.append_to(&self.token_header_names, headers);
        }
        if trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }

        let path = parts.uri.path_and_query().cloned();
        let path = if self.base_path.is_empty() {
            path.unwrap_or_else(|| PathAndQuery::from_static("/"))
        } else {
            let pq = path.as_ref().map_or("/", |p| p.as_str());
            PathAndQuery::try_from(format!("{}{}", self.base_path, pq))
                .map_err(|_| UpstreamError::Failed)?
        };
        if h2 {
            parts.uri = self.absolute(path)?;
            parts.version = Version::HTTP_2;
        } else {
            parts.uri = Uri::from(path);
            parts.version = Version::HTTP_11;
        }
        Ok(Request::from_parts(parts, body))
    }

    /// A request rewritten in HTTP/1.1 form, in HTTP/2 form instead (the upstream chose
    /// HTTP/2 by ALPN when the connection was opened). `TE: trailers` is what gRPC needs.
    pub(super) fn to_h2(&self, req: Request<RequestBody>) -> Request<RequestBody> {
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(HOST);
        if headers::is_grpc(&parts.headers) {
            parts
                .headers
                .insert(TE, HeaderValue::from_static("trailers"));
        }
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if let Ok(uri) = self.absolute(path) {
            parts.uri = uri;
        }
        parts.version = Version::HTTP_2;
        Request::from_parts(parts, body)
    }

    /// A request rewritten in HTTP/2 form, in HTTP/1.1 form instead (the upstream chose
    /// HTTP/1.1 by ALPN on a new connection).
    pub(super) fn to_h1(&self, req: Request<RequestBody>) -> Request<RequestBody> {
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(TE);
        parts.headers.insert(HOST, self.host.clone());
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
        parts.version = Version::HTTP_11;
        Request::from_parts(parts, body)
    }

    pub(super) fn absolute(&self, path: PathAndQuery) -> Result<Uri, UpstreamError> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path);
        Uri::from_parts(uri).map_err(|_| UpstreamError::Failed)
    }
}

/// The identity headers with extra names in gRPC's spelling (SPEC section 14).
fn append_grpc(headers: &mut HeaderMap, pairs: &[(HeaderName, HeaderValue)]) {
    for (name, value) in pairs {
        match grpc_header_name(name) {
            Some(n) => headers.append(n, value.clone()),
            None => headers.append(name.clone(), value.clone()),
        };
    }
}
