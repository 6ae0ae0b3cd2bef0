//! Stage 1, normalize: runs first, on every request the main listener receives, before
//! anything reads the request. It bounds each header line (431 over
//! `server.max_header_bytes`) and, for requests to proxy, removes every identity header a
//! client could send to claim an identity (SPEC section 6), whatever its token and the mode.
//! It may remove headers; it never adds any. `CONNECT` ends here (405, never forwarded: SPEC
//! section 14). It normalizes the path (SPEC section 11, `crate::path`): the request's URI is
//! rewritten to the normalized path, query unchanged, so routing and the upstream see the same
//! path; a path that cannot be normalized safely ends here (400).

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Method, Request, Uri};

use crate::metrics::RequestMetrics;
use crate::path::{self, PathError};
use crate::response::{self, Body};

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

/// Remove every spoofable identity header.
pub fn strip_spoofable(headers: &mut HeaderMap) {
    // Rare in practice: scan first, allocate only when there is something to remove.
    if !headers.keys().any(|k| is_spoofable(k.as_str())) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_spoofable(k.as_str()))
        .cloned()
        .collect();
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
        strip_spoofable(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }
}
