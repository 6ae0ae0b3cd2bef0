//! Request path normalization (SPEC section 11): the one function that decides what path a
//! request has, so routing and forwarding see the same one. Percent-encoded unreserved
//! characters (RFC 3986 2.3: `ALPHA DIGIT - . _ ~`) are decoded, every other escape is kept as
//! written, `.` and `..` segments are resolved as RFC 3986 5.2.4 does, and repeated `/` are
//! kept. What cannot be normalized safely is refused: an encoded `/` or `\` (`%2F`, `%5C`,
//! any case), a raw `\`, a `..` that would climb above `/`, a broken escape.
//!
//! An already-normal path (the common case) is scanned once and borrowed: no allocation.

use std::borrow::Cow;

/// Why a path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%2F` or `%5C`: a separator the upstream may decode after routing.
    EncodedSeparator,
    /// A raw `\`, which some servers treat as `/`.
    Backslash,
    /// A `..` that would climb above `/`.
    AboveRoot,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// Not an absolute path (`*`, or empty).
    NotAbsolute,
}

impl PathError {
    /// The reason given in the 400 body.
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::EncodedSeparator => "encoded '/' or '\\' in path",
            PathError::Backslash => "'\\' in path",
            PathError::AboveRoot => "'..' climbs above the root",
            PathError::BadEscape => "malformed percent-encoding in path",
            PathError::NotAbsolute => "path must start with '/'",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// The byte a `%XY` at `i` stands for.
fn escaped(b: &[u8], i: usize) -> Result<u8, PathError> {
    match (
        b.get(i + 1).copied().and_then(hex),
        b.get(i + 2).copied().and_then(hex),
    ) {
        (Some(h), Some(l)) => Ok(h << 4 | l),
        _ => Err(PathError::BadEscape),
    }
}

/// Is the segment starting at `i` (just after a `/`) `.` or `..`?
fn dot_segment(b: &[u8], i: usize) -> bool {
    let end = |j: usize| j == b.len() || b[j] == b'/';
    b[i] == b'.' && (end(i + 1) || (b.get(i + 1) == Some(&b'.') && end(i + 2)))
}

/// The normalized form of `path` (without its query), or why it has none.
///
/// ```
/// use tokenreview_proxy::path::{normalize, PathError};
/// assert_eq!(normalize("/api/orders/7").unwrap(), "/api/orders/7");
/// assert_eq!(normalize("/api/%6Frders/./7/../8").unwrap(), "/api/orders/8");
/// assert_eq!(normalize("/a//b").unwrap(), "/a//b");
/// assert_eq!(normalize("/a%2Fb"), Err(PathError::EncodedSeparator));
/// assert_eq!(normalize("/../etc"), Err(PathError::AboveRoot));
/// ```
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Scan: refuse what must be refused, and note whether anything needs rewriting.
    let mut decode = false;
    let mut dots = false;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let e = escaped(b, i)?;
                if e == b'/' || e == b'\\' {
                    return Err(PathError::EncodedSeparator);
                }
                decode |= unreserved(e);
            }
            b'/' if i + 1 < b.len() => dots |= dot_segment(b, i + 1),
            _ => {}
        }
    }
    if !decode && !dots {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = if decode {
        Cow::Owned(decode_unreserved(b))
    } else {
        Cow::Borrowed(path)
    };
    // Decoding may have made new dot segments (`%2e%2e`): resolve on the decoded form.
    remove_dot_segments(&decoded).map(Cow::Owned)
}

/// `b` with every escape of an unreserved character decoded (escapes checked by the scan).
fn decode_unreserved(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Ok(e) = escaped(b, i) {
                if unreserved(e) {
                    out.push(e as char);
                    i += 3;
                    continue;
                }
            }
        }
        // Copy up to the next '%' as it is (whole UTF-8 sequences: '%' is ASCII).
        let next = b[i + 1..]
            .iter()
            .position(|&c| c == b'%')
            .map_or(b.len(), |p| i + 1 + p);
        out.push_str(&String::from_utf8_lossy(&b[i..next]));
        i = next;
    }
    out
}

/// RFC 3986 5.2.4 on an absolute path, segment by segment, refusing a climb above `/`.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut out: Vec<&str> = Vec::new();
    let mut segments = path[1..].split('/').peekable();
    while let Some(s) = segments.next() {
        let last = segments.peek().is_none();
        match s {
            "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => {
                out.push(s);
                continue;
            }
        }
        // A path ending in `.` or `..` names a directory: keep its trailing slash.
        if last {
            out.push("");
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/.well-known/x",
            "/a..b/c.",
            "/a/%20b",
            "//x//",
        ] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(q)) if q == p),
                "{p}"
            );
        }
    }

    #[test]
    fn dot_segments_resolve_as_rfc_3986() {
        let cases = [
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/.", "/"),
            ("/a/..", "/"),
            ("/a//../b", "/a/b"),
            ("/a//..", "/a/"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a/.%2e/b", "/b"),
            ("/%7Euser/%41%5a%30-_", "/~user/AZ0-_"),
            ("/a/%3a%3A%20", "/a/%3a%3A%20"),
            ("/ü/%41", "/ü/A"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let cases = [
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::Backslash),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc", PathError::AboveRoot),
            ("/a%", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), Err(want), "{input}");
        }
    }
}
