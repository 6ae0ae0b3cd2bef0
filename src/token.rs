//! Bearer extraction from the `Authorization` header, borrowing (no allocation).

use http::header::AUTHORIZATION;
use http::HeaderMap;

/// What the `Authorization` header(s) of a request say.
#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// Exactly one header, scheme `Bearer` (any case), a non-empty token.
    Token(&'a str),
    /// No header, an empty token, or another scheme: 401 without `error=`.
    Missing,
    /// Two or more `Authorization` headers: 400, never forwarded.
    Ambiguous,
}

/// Extract the bearer token. Whitespace between scheme and token may be any run of spaces or
/// tabs; trailing whitespace is ignored. A non-UTF-8 or non-visible-ASCII value is `Missing`
/// for other schemes, and for `Bearer` it is returned as-is to be rejected as `malformed`.
pub fn extract(headers: &HeaderMap) -> Bearer<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Missing;
    };
    if values.next().is_some() {
        return Bearer::Ambiguous;
    }
    parse_authorization(value.as_bytes())
}

/// Parse one `Authorization` value.
pub fn parse_authorization(value: &[u8]) -> Bearer<'_> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() <= SCHEME.len()
        || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        || !matches!(value[SCHEME.len()], b' ' | b'\t')
    {
        return Bearer::Missing;
    }
    let rest = &value[SCHEME.len()..];
    let start = rest.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let Some(start) = start else {
        return Bearer::Missing;
    };
    let end = rest
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    match std::str::from_utf8(&rest[start..end]) {
        Ok(t) => Bearer::Token(t),
        // Still a bearer attempt: hand a marker that fails `malformed` rather than "missing".
        Err(_) => Bearer::Token("\u{FFFD}"),
    }
}

/// The short fingerprint the logs may carry instead of a token: the first 8 hex characters of
/// its SHA-256.
pub fn fingerprint(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_spacing() {
        assert_eq!(parse_authorization(b"Bearer abc"), Bearer::Token("abc"));
        assert_eq!(parse_authorization(b"bearer abc"), Bearer::Token("abc"));
        assert_eq!(
            parse_authorization(b"BEARER \t abc  "),
            Bearer::Token("abc")
        );
        assert_eq!(parse_authorization(b"Bearer"), Bearer::Missing);
        assert_eq!(parse_authorization(b"Bearer    "), Bearer::Missing);
        assert_eq!(parse_authorization(b"Bearerabc"), Bearer::Missing);
        assert_eq!(parse_authorization(b"Basic dXNlcjpwYXNz"), Bearer::Missing);
        assert_eq!(parse_authorization(b""), Bearer::Missing);
    }

    #[test]
    fn two_headers_are_ambiguous() {
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, "Bearer a".parse().unwrap());
        assert_eq!(extract(&h), Bearer::Token("a"));
        h.append(AUTHORIZATION, "Bearer b".parse().unwrap());
        assert_eq!(extract(&h), Bearer::Ambiguous);
        assert_eq!(extract(&HeaderMap::new()), Bearer::Missing);
    }

    #[test]
    fn fingerprint_is_short_hex() {
        let f = fingerprint("some.token.value");
        assert_eq!(f.len(), 8);
        assert!(f.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
