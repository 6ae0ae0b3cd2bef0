//! Stage 1, normalize: runs first, on every request the main listener receives, before
//! anything reads the request. It bounds each header line (431 over
//! `server.max_header_bytes`) and, for requests to proxy, removes every identity header a
//! client could send to claim an identity (SPEC section 6), whatever its token and the mode.
//! From a peer outside `server.trusted_proxies` it also removes every forwarding header
//! (`Forwarded`, `X-Forwarded-*`, any spelling: SPEC section 14). It may remove headers; it
//! never adds any. `CONNECT` ends here (405, never forwarded: SPEC section 14). It normalizes
//! the path (SPEC section 11, `crate::path`): the request's URI is rewritten to the normalized
//! path, query unchanged, so routing and the upstream see the same path; a path that cannot be
//! normalized safely ends here (400).

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Method, Request, Uri};

use crate::metrics::RequestMetrics;
use crate::path::{self, PathError};
use crate::response::{self, Body};

/// Is this a gRPC request (`content-type: application/grpc*`), whose refusals must be gRPC
/// statuses (SPEC section 7)? gRPC runs over HTTP/2 (gRPC-Web also over HTTP/1.1, with a
/// body): an HTTP/1.1 request without a body (the common `GET`) is not looked up.
#[inline]
pub fn is_grpc<B: hyper::body::Body>(req: &http::Request<B>) -> bool {
    (req.version() == http::Version::HTTP_2 || !req.body().is_end_stream())
        && crate::upstream::is_grpc(req.headers())
}

/// `CONNECT` asks for a tunnel to another host, which this proxy never opens: 405.
pub fn is_connect(method: &Method) -> bool {
    method == Method::CONNECT
}

/// Normalize the request's path in place. An already-normal path (the common case) is
/// scanned and left alone, without allocating.
pub fn path<B>(req: &mut Request<B>) -> Result<(), PathError> {
    let uri = req.uri();
    // An origin-form request always has a path; only `OPTIONS *` or an absolute-form target
    // without one lacks it.
    let normalized = match path::normalize(uri.path()) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(p)) => p,
        Err(e) => return Err(e),
    };
    rewrite(req, normalized)
}

#[cold]
#[inline(never)]
fn rewrite<B>(req: &mut Request<B>, normalized: String) -> Result<(), PathError> {
    let pq = match req.uri().query() {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).map_err(|_| PathError::BadEscape)?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| PathError::BadEscape)?;
    Ok(())
}

/// The answer to a request whose path cannot be normalized safely.
#[cold]
#[inline(never)]
pub fn refused(e: PathError, m: &RequestMetrics) -> http::Response<Body> {
    m.rejected.increment(1);
    response::bad_path(e)
}

/// Does any header line (name, `: `, value) exceed `max` bytes? hyper bounds the whole head
/// (at least 8 KiB); SPEC bounds each header line.
pub fn oversized_header(headers: &HeaderMap, max: usize) -> bool {
    headers
        .iter()
        .any(|(n, v)| n.as_str().len() + 2 + v.len() > max)
}

/// Is this a header a client could use to claim an identity? Matches `X-Remote-User`,
/// `X-Remote-Uid`, `X-Remote-Group`, `X-Remote-Extra-*`, `Impersonate-User`,
/// `Impersonate-Uid`, `Impersonate-Group`, `Impersonate-Extra-*`, in any case and with `-`,
/// `_` or `.` as separators. `name` is lowercase (as `http` stores it).
pub fn is_spoofable(name: &str) -> bool {
    let b = name.as_bytes();
    // Fast exit for the common case: neither prefix can match.
    match b.first() {
        Some(b'x') | Some(b'i') => {}
        _ => return false,
    }
    const EXACT: [&[u8]; 6] = [
        b"x-remote-user",
        b"x-remote-uid",
        b"x-remote-group",
        b"impersonate-user",
        b"impersonate-uid",
        b"impersonate-group",
    ];
    const PREFIX: [&[u8]; 2] = [b"x-remote-extra-", b"impersonate-extra-"];
    let eq = |x: u8, pattern: u8| {
        if pattern == b'-' {
            matches!(x, b'-' | b'_' | b'.')
        } else {
            x == pattern
        }
    };
    let matches_prefix = |p: &[u8]| b.len() >= p.len() && b.iter().zip(p).all(|(&x, &y)| eq(x, y));
    EXACT
        .iter()
        .any(|p| b.len() == p.len() && matches_prefix(p))
        || PREFIX.iter().any(|p| matches_prefix(p))
}

/// Is this a header that says where a request came from: `Forwarded`, or any `X-Forwarded-*`
/// (`-For`, `-Proto`, `-Host`, and the others upstreams read: `-Port`, `-Prefix`,
/// `-Client-Cert`), in any case and with `-`, `_` or `.` as separators? Only a trusted proxy
/// may send these (SPEC section 14). `name` is lowercase.
pub fn is_forwarding(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(b'x') => {
            const P: &[u8] = b"x-forwarded-";
            b.len() > P.len()
                && b.iter()
                    .zip(P)
                    .all(|(&x, &p)| x == p || (p == b'-' && matches!(x, b'_' | b'.')))
        }
        Some(b'f') => b == b"forwarded",
        _ => false,
    }
}

/// Remove every spoofable identity header and, from a peer that is not a trusted proxy
/// (`untrusted_peer`), every forwarding header ([`is_forwarding`]): the forward stage then
/// sets them from its own view of the connection.
pub fn strip_spoofable(headers: &mut HeaderMap, untrusted_peer: bool) {
    let doomed = |k: &HeaderName| {
        let k = k.as_str();
        is_spoofable(k) || (untrusted_peer && is_forwarding(k))
    };
    // Rare in practice: scan first, allocate only when there is something to remove.
    if !headers.keys().any(doomed) {
        return;
    }
    let doomed: Vec<HeaderName> = headers.keys().filter(|k| doomed(k)).cloned().collect();
    for name in doomed {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofable_spellings() {
        for n in [
            "x-remote-user",
            "x_remote_user",
            "x.remote.user",
            "x-remote_uid",
            "x-remote-group",
            "x-remote-extra-scopes",
            "x_remote_extra_anything",
            "impersonate-user",
            "impersonate_group",
            "impersonate.uid",
            "impersonate-extra-foo",
            "impersonate_extra_",
        ] {
            assert!(is_spoofable(n), "{n}");
        }
        for n in [
            "x-remote-users",
            "x-remote",
            "x-request-id",
            "authorization",
            "impersonated-user",
            "x-forwarded-for",
            "x-remote-extr",
        ] {
            assert!(!is_spoofable(n), "{n}");
        }
    }

    #[test]
    fn the_uri_carries_the_normalized_path_and_the_same_query() {
        let mut req = Request::get("/a/./b/%7Ec/../d?x=/../%2F&y")
            .body(())
            .unwrap();
        path(&mut req).unwrap();
        assert_eq!(req.uri(), "/a/b/d?x=/../%2F&y");
        let mut req = Request::get("http://h.test:8/a/../b?q").body(()).unwrap();
        path(&mut req).unwrap();
        assert_eq!(req.uri(), "http://h.test:8/b?q");
        let mut req = Request::get("/a%2fb?q").body(()).unwrap();
        assert_eq!(path(&mut req), Err(PathError::EncodedSeparator));
    }

    #[test]
    fn strip_removes_all_values() {
        let mut h = HeaderMap::new();
        h.append("x-remote-group", "system:masters".parse().unwrap());
        h.append("x-remote-group", "other".parse().unwrap());
        h.append(
            "X_Remote_User"
                .to_ascii_lowercase()
                .parse::<HeaderName>()
                .unwrap(),
            "root".parse().unwrap(),
        );
        h.append("accept", "*/*".parse().unwrap());
        strip_spoofable(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn forwarding_spellings() {
        for n in [
            "forwarded",
            "x-forwarded-for",
            "x_forwarded_for",
            "x.forwarded.for",
            "x-forwarded_proto",
            "x.forwarded-host",
            "x-forwarded-port",
            "x_forwarded_client_cert",
        ] {
            assert!(is_forwarding(n), "{n}");
        }
        for n in [
            "x-forwarded-",
            "x-forwarded",
            "forwarded-for",
            "xforwarded-for",
            "x-real-ip",
            "accept",
        ] {
            assert!(!is_forwarding(n), "{n}");
        }
    }

    #[test]
    fn forwarding_headers_go_only_for_untrusted_peers() {
        let sent = || {
            let mut h = HeaderMap::new();
            for n in [
                "x-forwarded-for",
                "x_forwarded_for",
                "forwarded",
                "x.forwarded.host",
            ] {
                h.append(HeaderName::from_static(n), "203.0.113.7".parse().unwrap());
            }
            h.append("x-remote-user", "root".parse().unwrap());
            h.append("accept", "*/*".parse().unwrap());
            h
        };
        let mut h = sent();
        strip_spoofable(&mut h, true);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
        let mut h = sent();
        strip_spoofable(&mut h, false);
        assert_eq!(
            h.len(),
            5,
            "a trusted proxy's forwarding headers stay: {h:?}"
        );
        assert!(!h.contains_key("x-remote-user"));
    }
}
