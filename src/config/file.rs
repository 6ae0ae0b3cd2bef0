//! What every section's validation shares: the file being validated, whose errors name it
//! and the key, and the duration syntax.

use std::net::SocketAddr;
use std::time::Duration;

use super::types::ConfigError;

/// Parse a duration like "90s", "5m", "24h", "1h30m", "250ms".
///
/// ```
/// use std::time::Duration;
/// use tokenreview_proxy::config::parse_duration;
/// assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. \"90s\", \"5m\", \"24h\""))
}

/// The file being validated: every error names it.
#[derive(Clone, Copy)]
pub(super) struct File<'a>(pub(super) &'a str);

impl File<'_> {
    pub(super) fn err(self, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.0.to_string(),
            key: key.to_string(),
            message,
        }
    }

    pub(super) fn dur(
        self,
        key: &str,
        v: &Option<String>,
        default: &str,
    ) -> Result<Duration, ConfigError> {
        parse_duration(v.as_deref().unwrap_or(default)).map_err(|m| self.err(key, m))
    }

    pub(super) fn addr(self, key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
        v.parse::<SocketAddr>().map_err(|e| {
            self.err(
                key,
                format!(
                    "invalid address {v:?} ({e}); use HOST:PORT with an IP, e.g. \"0.0.0.0:8080\""
                ),
            )
        })
    }
}
