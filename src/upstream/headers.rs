//! Header hygiene towards the upstream (SPEC section 6): hop-by-hop headers out, including
//! those a `Connection` option names, and the identity headers appended in runs.

use http::header::{Entry, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, TE};
use http::HeaderMap;

/// Hop-by-hop headers (RFC 9110 7.6.1), plus `Upgrade` (an upgrade the proxy forwards puts
/// its own back: `upgrade.rs`). Strings, not a `const` array of `HeaderName`s: such a constant is built (and
/// dropped) again at every use.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    // By length first: most names are told apart by one comparison (this runs for every
    // request and response header).
    let s = name.as_str();
    match s.len() {
        2 => s == "te",
        7 => s == "trailer" || s == "upgrade",
        10 => s == "connection" || s == "keep-alive",
        16 => s == "proxy-connection",
        17 => s == "transfer-encoding",
        18 => s == "proxy-authenticate",
        19 => s == "proxy-authorization",
        _ => false,
    }
}

/// What one pass over a head's names found: hop-by-hop headers to remove, and whether a
/// `Content-Type` is there (only then is a request looked at as gRPC).
#[derive(Clone, Copy, Default)]
pub struct Scan {
    connection: bool,
    /// A hop-by-hop header other than `Connection`.
    others: bool,
    pub content_type: bool,
}

/// One pass over the names.
pub fn scan(headers: &HeaderMap) -> Scan {
    let mut s = Scan::default();
    for name in headers.keys() {
        if name == CONNECTION {
            s.connection = true;
        } else if name == CONTENT_TYPE {
            s.content_type = true;
        } else if is_hop_by_hop(name) {
            s.others = true;
        }
    }
    s
}

/// Is this a gRPC request (`content-type: application/grpc*`, SPEC section 14)?
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
    })
}

/// Does the request say `TE: trailers` (which HTTP/2 keeps: gRPC servers require it)?
pub fn te_trailers(headers: &HeaderMap, scan: &Scan) -> bool {
    scan.others
        && headers.get_all(TE).iter().any(|v| {
            v.as_bytes()
                .split(|&c| c == b',')
                .any(|o| o.trim_ascii().eq_ignore_ascii_case(b"trailers"))
        })
}

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let s = scan(headers);
    strip_scanned(headers, &s);
}

/// [`strip_hop_by_hop`], with the names already scanned.
pub fn strip_scanned(headers: &mut HeaderMap, s: &Scan) {
    // Requests mostly carry none; responses mostly carry only `Connection: keep-alive`. So one
    // pass over the names, then hashed removals only for what is there, and no allocation
    // unless a `Connection` option names a header that is present.
    let Scan {
        connection, others, ..
    } = *s;
    if connection {
        // Never let `Connection: authorization` smuggle a header past our own rules: every
        // header a `Connection` option names is dropped. One hashed look-up takes the values
        // out; the usual ones (`keep-alive`, `close`) name nothing and skip the parse.
        let mut listed: Vec<HeaderName> = Vec::new();
        if let Entry::Occupied(e) = headers.entry(CONNECTION) {
            for v in e.remove_entry_mult().1 {
                let b = v.as_bytes();
                if b.eq_ignore_ascii_case(b"keep-alive") || b.eq_ignore_ascii_case(b"close") {
                    continue;
                }
                // Bytes, not `to_str`: a value with obs-text elsewhere still names its options
                // (found by the `headers` fuzz target).
                listed.extend(
                    b.split(|&c| c == b',')
                        .map(<[u8]>::trim_ascii)
                        .filter(|o| {
                            !o.is_empty()
                                && !HOP_BY_HOP
                                    .iter()
                                    .any(|h| h.as_bytes().eq_ignore_ascii_case(o))
                        })
                        .filter_map(|o| HeaderName::from_bytes(o).ok()),
                );
            }
        }
        for name in listed {
            headers.remove(name);
        }
    }
    if others {
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// Append `(name, value)` pairs; a run of values under one name (the groups) costs one hashed
/// look-up of the name instead of one per value.
pub fn append_grouped(headers: &mut HeaderMap, pairs: &[(HeaderName, HeaderValue)]) {
    let mut rest = pairs;
    while let Some(((name, value), tail)) = rest.split_first() {
        let run = tail.iter().take_while(|(n, _)| n == name).count();
        if run == 0 {
            headers.append(name.clone(), value.clone());
        } else {
            let values = std::iter::once(value).chain(tail[..run].iter().map(|(_, v)| v));
            match headers.entry(name.clone()) {
                Entry::Occupied(mut e) => values.for_each(|v| e.append(v.clone())),
                Entry::Vacant(e) => {
                    let mut values = values;
                    if let Some(first) = values.next() {
                        let mut e = e.insert_entry(first.clone());
                        values.for_each(|v| e.append(v.clone()));
                    }
                }
            }
        }
        rest = &tail[run..];
    }
}

/// This hop's `Forwarded` element (RFC 7239): `for=` the client, `proto=`, `host=` the `Host`
/// it asked for. Values that are not tokens are quoted (an IPv6 address also bracketed).
pub fn forwarded_element(
    ip: &HeaderValue,
    tls: bool,
    host: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    let ip = ip.to_str().ok()?;
    let mut e = if ip.contains(':') {
        format!("for=\"[{ip}]\"")
    } else {
        format!("for={ip}")
    };
    e.push_str(if tls { ";proto=https" } else { ";proto=http" });
    if let Some(h) = host.and_then(|h| h.to_str().ok()) {
        let token = !h.is_empty()
            && h.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        if token {
            e.push_str(";host=");
            e.push_str(h);
        } else if !h.contains(['"', '\\']) {
            e.push_str(";host=\"");
            e.push_str(h);
            e.push('"');
        }
    }
    HeaderValue::from_str(&e).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn forwarded_elements_quote_what_is_not_a_token() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        let e = |ip, tls, host: Option<&HeaderValue>| {
            forwarded_element(&v(ip), tls, host)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(e("10.1.2.3", false, None), "for=10.1.2.3;proto=http");
        assert_eq!(
            e("::1", true, Some(&v("api.example"))),
            "for=\"[::1]\";proto=https;host=api.example"
        );
        assert_eq!(
            e("10.1.2.3", false, Some(&v("api.example:8443"))),
            "for=10.1.2.3;proto=http;host=\"api.example:8443\""
        );
    }

    use super::*;
    use http::header::{self, AUTHORIZATION};

    #[test]
    fn hop_by_hop_names_are_lowercase_header_names() {
        for n in HOP_BY_HOP {
            assert_eq!(HeaderName::from_static(n).as_str(), n);
            assert!(is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
        // Same lengths as hop-by-hop names, and every standard name: none is one, unless
        // listed.
        for n in [
            "tx",
            "trailed",
            "upgrades",
            "connectio",
            "keep-alivf",
            "proxy-connectiom",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
        for n in [
            header::ACCEPT,
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::DATE,
            header::SERVER,
            header::HOST,
            header::USER_AGENT,
            header::PROXY_AUTHENTICATE,
        ] {
            assert_eq!(is_hop_by_hop(&n), HOP_BY_HOP.contains(&n.as_str()), "{n}");
        }
        assert!(is_hop_by_hop(&header::TRANSFER_ENCODING));
        assert!(is_hop_by_hop(&header::UPGRADE));
        assert!(!is_hop_by_hop(&header::AUTHORIZATION));
    }

    #[test]
    fn grouped_appends_keep_every_value_in_order() {
        let n = |s: &'static str| HeaderName::from_static(s);
        let v = |s: &'static str| HeaderValue::from_static(s);
        let pairs = [
            (n("x-remote-user"), v("u")),
            (n("x-remote-group"), v("g1")),
            (n("x-remote-group"), v("g2")),
            (n("x-remote-group"), v("g3")),
            (n("x-remote-extra-a"), v("a1")),
            (n("x-remote-extra-a"), v("a2")),
            (n("x-remote-extra-b"), v("b")),
        ];
        let mut h = HeaderMap::new();
        h.insert("x-remote-extra-a", v("a0"));
        append_grouped(&mut h, &pairs);
        let all = |name: &str| h.get_all(name).iter().cloned().collect::<Vec<_>>();
        assert_eq!(all("x-remote-user"), [v("u")]);
        assert_eq!(all("x-remote-group"), [v("g1"), v("g2"), v("g3")]);
        assert_eq!(all("x-remote-extra-a"), [v("a0"), v("a1"), v("a2")]);
        assert_eq!(all("x-remote-extra-b"), [v("b")]);
        assert_eq!(h.len(), 8);
        append_grouped(&mut h, &[]);
        assert_eq!(h.len(), 8);
    }

    #[test]
    fn hop_by_hop_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));

        // Several Connection headers, any case, other options alongside.
        let mut h = HeaderMap::new();
        h.append(CONNECTION, "close".parse().unwrap());
        h.append(CONNECTION, " X-Secret , ,Authorization".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(AUTHORIZATION, "Bearer x".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);

        // The usual response values, any case, and a listed header in a second value.
        let mut h = HeaderMap::new();
        h.append(CONNECTION, "Keep-Alive".parse().unwrap());
        h.append(CONNECTION, "x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "close".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);

        // A value with obs-text (legal in HTTP/1.1) still names its options.
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"keep-alive, X-Secret, caf\xc3\xa9").unwrap(),
        );
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);

        // Nothing hop-by-hop: untouched.
        let mut h = HeaderMap::new();
        h.insert("x-keep", "1".parse().unwrap());
        h.insert(AUTHORIZATION, "Bearer x".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }
}
