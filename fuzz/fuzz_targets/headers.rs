//! Header hygiene on an arbitrary header map: `normalize::strip_spoofable` (stage 1) then
//! `upstream::strip_hop_by_hop` (before forwarding), checked against their contract. Input:
//! a first byte whose low bit says whether the peer is a trusted proxy (else forwarding
//! headers go too), then `name: value` lines; lines that are not a valid header are skipped.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use libfuzzer_sys::fuzz_target;
use tokenreview_proxy::pipeline::normalize::{
    is_forwarding, is_spoofable, oversized_header, strip_spoofable,
};
use tokenreview_proxy::upstream::strip_hop_by_hop;

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

fn header_map(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    headers
}

/// The header names the `Connection` values list as options (RFC 9110 7.6.1), `close` aside:
/// that option is not a header, and RFC 9110 16.3.2.2 reserves the name.
fn connection_options(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|o| HeaderName::from_bytes(o.trim_ascii()).ok())
        .filter(|n| n != "close")
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let untrusted = flags & 1 == 1;
    let original = header_map(data);
    let mut headers = original.clone();
    let _ = oversized_header(&headers, 8192);
    strip_spoofable(&mut headers, untrusted);
    strip_hop_by_hop(&mut headers);

    let listed = connection_options(&original);
    let must_go = |n: &HeaderName| {
        is_spoofable(n.as_str())
            || (untrusted && is_forwarding(n.as_str()))
            || HOP_BY_HOP.contains(&n.as_str())
            || listed.contains(n)
    };
    for name in original.keys() {
        if must_go(name) {
            assert!(!headers.contains_key(name), "{name} was forwarded");
        } else if name != "close" {
            let before: Vec<_> = original.get_all(name).iter().collect();
            let after: Vec<_> = headers.get_all(name).iter().collect();
            assert_eq!(before, after, "{name} was changed");
        }
    }
    assert!(headers.keys().all(|n| original.contains_key(n)));
});
