//! What the Deepgram STT and TTS clients share: the API key, configuration errors and the
//! provider's error conventions. The provider-neutral plumbing (WebSocket handshake, URLs,
//! replay buffer, chunking, keepalives) lives in [`livekit_agents::plugin_support`].

use std::time::Duration;

use http::HeaderValue;
use livekit_agents::plugin_support::{self, InvalidBaseUrl, Provider};
use livekit_agents::types::ApiError;
use url::Url;

pub(crate) use livekit_agents::plugin_support::{
    endpoint, redacted, summarize_body, to_le_bytes, ApiKey, Chunker, Dialer, Incoming, KeepAlive,
    QueryParams as Query, ReplayBuffer, WsStream,
};

/// Environment variable holding the API key.
pub const API_KEY_ENV: &str = "DEEPGRAM_API_KEY";
/// Environment variable overriding the API base URL (e.g. a proxy or a local test server).
pub const BASE_URL_ENV: &str = "DEEPGRAM_BASE_URL";
/// The public API root.
pub const DEFAULT_BASE_URL: &str = "https://api.deepgram.com";

/// Deepgram in errors: its request id travels in `dg-request-id` and the reason for a refused
/// handshake in `dg-error`.
pub(crate) const DEEPGRAM: Provider =
    Provider::new("Deepgram", "dg-request-id").with_error_header("dg-error");

/// Deepgram closes a listen socket after 10 s without data; the reference keeps it open with a
/// `KeepAlive` every 5 s.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// A Deepgram client could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No API key in the options nor in the environment.
    #[error("Deepgram API key missing: set DEEPGRAM_API_KEY or pass `api_key` in the options")]
    MissingApiKey,
    /// The base URL does not parse or has an unsupported scheme.
    #[error("invalid Deepgram base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An option value is out of range or inconsistent with another one.
    #[error("invalid Deepgram option: {0}")]
    InvalidOption(String),
}

impl From<InvalidBaseUrl> for ConfigError {
    fn from(e: InvalidBaseUrl) -> Self {
        ConfigError::InvalidBaseUrl {
            url: e.url,
            reason: e.reason,
        }
    }
}

/// The key from `explicit`, else from [`API_KEY_ENV`].
pub(crate) fn resolve_api_key(explicit: Option<&str>) -> Result<ApiKey, ConfigError> {
    ApiKey::resolve(explicit, API_KEY_ENV).ok_or(ConfigError::MissingApiKey)
}

/// The `Authorization` header (`Token <key>`), marked sensitive so HTTP stacks never log it.
pub(crate) fn authorization(key: &ApiKey) -> Result<HeaderValue, ApiError> {
    key.header_value("Token ", "Deepgram API key")
}

/// The base URL from `explicit`, else [`BASE_URL_ENV`], else [`DEFAULT_BASE_URL`].
pub(crate) fn resolve_base_url(explicit: Option<&str>) -> Result<Url, ConfigError> {
    Ok(plugin_support::resolve_base_url(
        explicit,
        Some(BASE_URL_ENV),
        DEFAULT_BASE_URL,
    )?)
}

/// Parses and checks a base URL.
pub(crate) fn parse_base_url(raw: &str) -> Result<Url, ConfigError> {
    Ok(plugin_support::parse_base_url(raw)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_url_errors_name_deepgram() {
        let base = parse_base_url("https://api.deepgram.com").unwrap();
        assert_eq!(
            endpoint(&base, "/v1/listen", true).as_str(),
            "wss://api.deepgram.com/v1/listen"
        );
        let err = parse_base_url("ftp://x").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidBaseUrl { .. }));
        assert!(err
            .to_string()
            .starts_with("invalid Deepgram base URL \"ftp://x\""));
    }

    #[test]
    fn api_key_is_redacted() {
        let key = resolve_api_key(Some("secret-123")).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        let header = authorization(&key).unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header, "Token secret-123");
        assert_eq!(resolve_api_key(Some("  ")), Err(ConfigError::MissingApiKey));
        assert!(ConfigError::MissingApiKey
            .to_string()
            .contains("DEEPGRAM_API_KEY"));
        let err = authorization(&ApiKey::new("secret\n")).unwrap_err();
        assert!(!err.to_string().contains("secret"));
        assert!(err.to_string().contains("Deepgram API key"));
    }

    #[test]
    fn refusals_name_deepgram() {
        let err = DEEPGRAM.status_error(401, "bad key", Some("dg-1".into()));
        assert!(!err.is_retryable());
        assert!(err
            .to_string()
            .starts_with("Deepgram refused the request (HTTP 401): bad key"));
    }
}
