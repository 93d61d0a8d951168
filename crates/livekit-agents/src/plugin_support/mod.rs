//! The toolkit for plugin authors: the provider-neutral plumbing every cloud STT/TTS/LLM client
//! needs, written once so each plugin keeps only its wire protocol.
//!
//! - [`ApiKey`] and [`redacted`]: a secret read from the options or an environment variable,
//!   never shown in `Debug` output, and turned into a header value marked sensitive.
//! - [`resolve_base_url`], [`parse_base_url`], [`endpoint`], [`QueryParams`]: the API root from
//!   the options, an environment variable or a default, and endpoint URLs built on it (HTTP or
//!   WebSocket scheme, query parameters in the order they were added).
//! - [`Provider`] and [`Dialer`]: opening a WebSocket with headers within a timeout, where HTTP
//!   refusals become [`ApiError::Status`](crate::types::ApiError::Status) (401/403/400 are not retried, 408/409/429/5xx are)
//!   carrying the provider's explanation and request id, and transport failures become
//!   retryable [`ApiError::Connection`](crate::types::ApiError::Connection)s; sending JSON and binary frames and reading the next
//!   frame with the same error mapping; one-shot HTTP requests ([`Provider::send_http`],
//!   [`Provider::check_status`], [`Provider::stream_pcm_body`]) with the same conventions.
//! - [`Chunker`], [`ReplayBuffer`], [`KeepAlive`], [`UsageMeter`], [`to_le_bytes`]: the audio
//!   bookkeeping of a streaming recognizer (fixed-size chunks, resending unfinalized audio
//!   after a reconnect, keepalive deadlines, usage reports).
//!
//! Plugins keep their own `ConfigError` (its messages name the provider's variables); convert
//! [`InvalidBaseUrl`] into it with a `From` impl so `?` works.
//!
//! ```
//! use livekit_agents::plugin_support::{endpoint, resolve_base_url, ApiKey, Provider, QueryParams};
//!
//! const ACME: Provider = Provider::new("Acme", "x-request-id");
//!
//! let key = ApiKey::resolve(Some("sk-123"), "ACME_API_KEY").expect("a key");
//! assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
//! let auth = key.header_value("Bearer ", "Acme API key").unwrap();
//! assert!(auth.is_sensitive());
//!
//! let base = resolve_base_url(None, Some("ACME_BASE_URL"), "https://api.acme.dev/v2")?;
//! let mut url = endpoint(&base, "/listen", true);
//! QueryParams::default().push("model", "fast").push("interim", true).apply(&mut url);
//! assert_eq!(url.as_str(), "wss://api.acme.dev/v2/listen?model=fast&interim=true");
//!
//! let err = ACME.status_error(401, "bad key", Some("req-1".into()));
//! assert!(!err.is_retryable());
//! assert_eq!(err.to_string(), "Acme refused the request (HTTP 401): bad key (status 401, request req-1)");
//! # Ok::<(), livekit_agents::plugin_support::InvalidBaseUrl>(())
//! ```
//!
//! A streaming client then opens its socket with
//! `ACME.connect_ws(&Dialer::Tcp, &url, headers, timeout).await?` and reads frames with
//! [`Provider::next_incoming`]; tests pass [`Dialer::Memory`] to reach an in-memory server on
//! tokio's paused clock.

mod audio;
mod rest;
mod secret;
mod url;
mod usage;
mod ws;

pub use self::audio::{to_le_bytes, Chunker, KeepAlive, ReplayBuffer};
pub use self::rest::{
    read_body_limited, read_body_prefix, ERROR_BODY_TIMEOUT, MAX_ERROR_BODY_BYTES,
};
pub use self::secret::{redacted, ApiKey};
pub use self::url::{
    endpoint, join_path, parse_base_url, resolve_base_url, switch_scheme, InvalidBaseUrl,
    QueryParams,
};
pub use self::usage::UsageMeter;
pub use self::ws::{
    header_str, summarize_body, truncate, Dialer, Incoming, Io, Provider, WsStream,
};
