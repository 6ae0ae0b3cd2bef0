//! The request path's one performance device, in one place.
//!
//! Invariant: the future of a request answered from its connection's token memo (the common
//! case) holds only the wait for the upstream's response. Every rarer branch (a verification,
//! a new upstream connection, an HTTP/2 client's pooled request, TokenReview) is a future of
//! its own behind [`out_of_line`], and every response the proxy makes itself is a `#[cold]`
//! function in `response`. The request future lives in its connection's memory, which a
//! keep-alive client comes back to cold; BENCHMARKS.md has the measurements, and
//! `pipeline`'s unit test bounds the future's size.

use std::future::Future;
use std::pin::Pin;

/// Box a rarely awaited future behind dynamic dispatch: neither its state nor its code becomes
/// part of the future that awaits it (a `Box::pin` of the concrete type would still let the
/// compiler inline its poll into the caller's).
pub fn out_of_line<'a, T>(
    f: impl Future<Output = T> + Send + 'a,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(f)
}
