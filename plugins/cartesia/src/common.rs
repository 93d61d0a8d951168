//! What the Cartesia TTS and STT clients share: the API key and request headers,
//! configuration errors, the provider's error conventions and the pool of idle sockets. The
//! provider-neutral plumbing (WebSocket handshake, URLs, replay buffer, chunking) lives in
//! [`livekit_agents::plugin_support`].

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use livekit_agents::plugin_support::{self, InvalidBaseUrl, Provider};
use livekit_agents::types::ApiError;
use url::Url;

pub(crate) use livekit_agents::plugin_support::{
    endpoint, redacted, to_le_bytes, ApiKey, Chunker, Dialer, Incoming, ReplayBuffer, WsStream,
};

/// Environment variable holding the API key.
pub const API_KEY_ENV: &str = "CARTESIA_API_KEY";
/// Environment variable overriding the API base URL (e.g. a proxy or a local test server).
pub const BASE_URL_ENV: &str = "CARTESIA_BASE_URL";
/// The public API root.
pub const DEFAULT_BASE_URL: &str = "https://api.cartesia.ai";
/// The API version sent in the `Cartesia-Version` header: `2026-03-01`, the current version
/// (structured JSON errors; voice embeddings refused). The reference plugin pinned
/// `2025-04-16`; see `docs/providers.md`.
pub const API_VERSION: &str = "2026-03-01";
/// User agent of requests.
pub(crate) const USER_AGENT: &str = concat!(
    "livekit-agents-rs Cartesia plugin/",
    env!("CARGO_PKG_VERSION")
);

/// Cartesia in errors: its request id travels in `x-request-id`; refusals explain themselves
/// in the body.
pub(crate) const CARTESIA: Provider = Provider::new("Cartesia", "x-request-id");

/// A Cartesia client could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No API key in the options nor in the environment.
    #[error("Cartesia API key missing: set CARTESIA_API_KEY or pass `api_key` in the options")]
    MissingApiKey,
    /// The base URL does not parse or has an unsupported scheme.
    #[error("invalid Cartesia base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An option value is out of range or inconsistent with another one.
    #[error("invalid Cartesia option: {0}")]
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

/// The headers of every request: `X-API-Key` (marked sensitive so HTTP stacks never log it),
/// `Cartesia-Version` and `User-Agent`.
pub(crate) fn request_headers(
    key: &ApiKey,
    api_version: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let key = key.header_value("", "Cartesia API key")?;
    let version = HeaderValue::from_str(api_version)
        .map_err(|_| ApiError::other(format!("invalid Cartesia API version {api_version:?}")))?;
    Ok(vec![
        (HeaderName::from_static("x-api-key"), key),
        (HeaderName::from_static("cartesia-version"), version),
        (
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        ),
    ])
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

/// Idle WebSockets kept for reuse. Cartesia multiplexes contexts on one socket, so a finished
/// stream hands its socket back and the next turn skips the TCP and TLS handshakes (the
/// reference pools the same way). A socket idle longer than `max_idle` is dropped.
pub(crate) struct WsPool {
    idle: std::sync::Mutex<Vec<(WsStream, tokio::time::Instant)>>,
    max_idle: Duration,
}

impl WsPool {
    pub(crate) fn new(max_idle: Duration) -> Self {
        Self {
            idle: std::sync::Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// The most recently returned socket that is still fresh.
    pub(crate) fn take(&self) -> Option<WsStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        idle.retain(|(_, since)| now.duration_since(*since) < self.max_idle);
        idle.pop().map(|(ws, _)| ws)
    }

    /// Returns a socket in a clean state (no context in progress).
    pub(crate) fn put(&self, ws: WsStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push((ws, tokio::time::Instant::now()));
    }

    /// How many sockets are idle.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_url_errors_name_cartesia() {
        let base = parse_base_url("https://api.cartesia.ai").unwrap();
        assert_eq!(
            endpoint(&base, "/tts/websocket", true).as_str(),
            "wss://api.cartesia.ai/tts/websocket"
        );
        let err = parse_base_url("ftp://x").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("invalid Cartesia base URL \"ftp://x\""));
    }

    #[test]
    fn api_key_is_redacted() {
        let key = resolve_api_key(Some("secret-123")).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        let headers = request_headers(&key, API_VERSION).unwrap();
        assert!(headers[0].1.is_sensitive());
        assert_eq!(headers[0].1, "secret-123");
        assert_eq!(headers[1].1, "2026-03-01");
        assert_eq!(resolve_api_key(Some("  ")), Err(ConfigError::MissingApiKey));
        assert!(ConfigError::MissingApiKey
            .to_string()
            .contains("CARTESIA_API_KEY"));
        let err = request_headers(&ApiKey::new("secret\n"), API_VERSION).unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
