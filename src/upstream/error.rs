//! Why an upstream exchange gave no response.

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable")]
    Unreachable,
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream request failed")]
    Failed,
}
