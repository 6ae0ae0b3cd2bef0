//! What authorization sees of a request.

use http::{HeaderMap, Method};

/// What authorization sees of a request: the method, the normalized path that is forwarded,
/// and the headers (for the host, read only by expressions that use it).
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The request target's authority (absolute-form and HTTP/2 requests).
    pub authority: Option<&'a str>,
}

impl RequestFacts<'_> {
    /// The host the client asked for: `Host`, else the target's authority.
    pub fn host(&self) -> &str {
        self.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(self.authority)
            .unwrap_or("")
    }
}
