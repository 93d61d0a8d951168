//! Pieces shared by the Cartesia TTS and STT clients: the API key, configuration errors, URLs,
//! headers, the WebSocket handshake, and the audio bookkeeping that lets a reconnecting
//! recognition resend exactly the audio Cartesia has not finalized yet.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use livekit_agents::types::ApiError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

/// Environment variable holding the API key.
pub const API_KEY_ENV: &str = "CARTESIA_API_KEY";
/// Environment variable overriding the API base URL (e.g. a proxy or a local test server).
pub const BASE_URL_ENV: &str = "CARTESIA_BASE_URL";
/// The public API root.
pub const DEFAULT_BASE_URL: &str = "https://api.cartesia.ai";
/// The API version sent in the `Cartesia-Version` header (the reference plugin's).
pub const API_VERSION: &str = "2025-04-16";
/// User agent of requests.
pub(crate) const USER_AGENT: &str = concat!(
    "livekit-agents-rs Cartesia plugin/",
    env!("CARGO_PKG_VERSION")
);

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

/// An API key whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(String);

impl ApiKey {
    /// The key from `explicit`, else from [`API_KEY_ENV`].
    pub(crate) fn resolve(explicit: Option<&str>) -> Result<Self, ConfigError> {
        let key = match explicit {
            Some(k) => Some(k.to_string()),
            None => std::env::var(API_KEY_ENV).ok(),
        };
        match key {
            Some(k) if !k.trim().is_empty() => Ok(Self(k.trim().to_string())),
            _ => Err(ConfigError::MissingApiKey),
        }
    }

    /// The headers of every request: `X-API-Key` (marked sensitive so HTTP stacks never log
    /// it), `Cartesia-Version` and `User-Agent`.
    pub(crate) fn headers(
        &self,
        api_version: &str,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
        let mut key = HeaderValue::from_str(&self.0).map_err(|_| {
            ApiError::Other("the Cartesia API key contains invalid characters".into())
        })?;
        key.set_sensitive(true);
        let version = HeaderValue::from_str(api_version).map_err(|_| {
            ApiError::Other(format!("invalid Cartesia API version {api_version:?}"))
        })?;
        Ok(vec![
            (HeaderName::from_static("x-api-key"), key),
            (HeaderName::from_static("cartesia-version"), version),
            (
                http::header::USER_AGENT,
                HeaderValue::from_static(USER_AGENT),
            ),
        ])
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Formats an optional secret for `Debug` output without revealing it.
pub(crate) fn redacted(secret: &Option<String>) -> &'static str {
    if secret.is_some() {
        "Some(<redacted>)"
    } else {
        "None"
    }
}

/// Parses a base URL (`http(s)://` or `ws(s)://`), from `explicit`, else [`BASE_URL_ENV`], else
/// [`DEFAULT_BASE_URL`].
pub(crate) fn resolve_base_url(explicit: Option<&str>) -> Result<Url, ConfigError> {
    let raw = match explicit {
        Some(u) => u.to_string(),
        None => std::env::var(BASE_URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
    };
    parse_base_url(&raw)
}

/// Parses and checks a base URL.
pub(crate) fn parse_base_url(raw: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidBaseUrl {
        url: raw.to_string(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" | "https" | "ws" | "wss" => Ok(url),
        other => Err(invalid(format!("unsupported scheme {other:?}"))),
    }
}

/// Joins `path` (e.g. `/v1/listen`) onto the base URL and switches the scheme to WebSocket
/// (`websocket = true`) or HTTP.
pub(crate) fn endpoint(base: &Url, path: &str, websocket: bool) -> Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    let scheme = match (url.scheme(), websocket) {
        ("https" | "wss", true) => "wss",
        ("http" | "ws", true) => "ws",
        ("https" | "wss", false) => "https",
        _ => "http",
    };
    // Switching between the special schemes http(s) and ws(s) is always allowed.
    let _ = url.set_scheme(scheme);
    url
}

/// A byte stream a WebSocket runs over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A WebSocket connection to the provider.
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<Box<dyn Io>>>;

/// How connections are opened: TCP (and TLS for `wss://`) in production; tests substitute an
/// in-memory pipe so timing can be checked on tokio's paused clock without real sockets.
#[derive(Clone, Default)]
pub(crate) enum Dialer {
    /// A TCP connection to the URL's host.
    #[default]
    Tcp,
    /// An in-memory stream from a test server.
    #[cfg(test)]
    Memory(std::sync::Arc<dyn Fn() -> tokio::io::DuplexStream + Send + Sync>),
}

impl Dialer {
    async fn dial(&self, url: &Url) -> Result<Box<dyn Io>, ApiError> {
        match self {
            Dialer::Tcp => {
                let host = url
                    .host_str()
                    .ok_or_else(|| ApiError::Other("Cartesia URL has no host".into()))?;
                let port = url.port_or_known_default().unwrap_or(443);
                let tcp = TcpStream::connect((host, port)).await.map_err(|e| {
                    ApiError::connection(format!(
                        "failed to connect to Cartesia at {host}:{port}: {e}"
                    ))
                })?;
                // Audio chunks are small and latency matters more than packet count.
                let _ = tcp.set_nodelay(true);
                Ok(Box::new(tcp))
            }
            #[cfg(test)]
            Dialer::Memory(connect) => Ok(Box::new(connect())),
        }
    }
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

/// Opens a WebSocket with extra headers, within `timeout`. HTTP refusals become
/// [`ApiError::Status`] (401/403/400 are not retried, 429/5xx are).
pub(crate) async fn connect_ws(
    dialer: &Dialer,
    url: &Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
) -> Result<(WsStream, Option<String>), ApiError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ApiError::Other(format!("invalid Cartesia URL: {e}")))?;
    for (name, value) in headers {
        request.headers_mut().insert(name, value);
    }
    let handshake = async {
        let io = dialer.dial(url).await?;
        Ok::<_, ApiError>(tokio_tungstenite::client_async_tls(request, io).await)
    };
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(ApiError::Timeout(timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Ok((ws, response)))) => {
            let request_id = header_str(response.headers(), "x-request-id");
            Ok((ws, request_id))
        }
        Ok(Ok(Err(tungstenite::Error::Http(response)))) => {
            let status = response.status().as_u16();
            let request_id = header_str(response.headers(), "x-request-id");
            let detail = response
                .body()
                .as_deref()
                .map(|b| summarize_body(&String::from_utf8_lossy(b)))
                .unwrap_or_default();
            Err(status_error(status, &detail, request_id))
        }
        Ok(Ok(Err(e))) => Err(ApiError::connection(format!(
            "failed to connect to Cartesia: {e}"
        ))),
    }
}

/// An error for an HTTP status, with the provider's explanation and request id.
pub(crate) fn status_error(status: u16, detail: &str, request_id: Option<String>) -> ApiError {
    let message = if detail.is_empty() {
        format!("Cartesia refused the request (HTTP {status})")
    } else {
        format!("Cartesia refused the request (HTTP {status}): {detail}")
    };
    match ApiError::status(status, message) {
        ApiError::Status {
            status,
            message,
            retryable,
            ..
        } => ApiError::Status {
            status,
            message,
            request_id,
            retryable,
        },
        other => other,
    }
}

/// A header's value as a string, when present and readable.
pub(crate) fn header_str(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The provider's error body, shortened for an error message (`err_msg`/`message` of a JSON
/// body when there is one).
pub(crate) fn summarize_body(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["err_msg", "message", "description", "error", "reason"] {
            if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                return truncate(s, 300);
            }
        }
    }
    truncate(body.trim(), 300)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Sends a JSON control message (`{"type": ...}`) on the socket.
pub(crate) async fn send_json(
    ws: &mut WsStream,
    value: &serde_json::Value,
) -> Result<(), ApiError> {
    ws.send(Message::text(value.to_string()))
        .await
        .map_err(|e| ApiError::connection(format!("Cartesia connection lost while sending: {e}")))
}

/// Sends binary audio on the socket.
pub(crate) async fn send_binary(ws: &mut WsStream, data: Bytes) -> Result<(), ApiError> {
    ws.send(Message::Binary(data)).await.map_err(|e| {
        ApiError::connection(format!("Cartesia connection lost while sending audio: {e}"))
    })
}

/// What arrived on a socket, reduced to what the clients act on.
pub(crate) enum Incoming {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
    /// The server closed the connection (close frame or end of stream), with its reason.
    Closed(Option<(u16, String)>),
}

/// Reads the next meaningful frame (pings are answered by tungstenite itself).
pub(crate) async fn next_incoming(ws: &mut WsStream) -> Result<Incoming, ApiError> {
    loop {
        match ws.next().await {
            None => return Ok(Incoming::Closed(None)),
            Some(Err(e)) => {
                return Err(ApiError::connection(format!(
                    "Cartesia connection dropped: {e}"
                )))
            }
            Some(Ok(Message::Text(t))) => return Ok(Incoming::Text(t.to_string())),
            Some(Ok(Message::Binary(b))) => return Ok(Incoming::Binary(b)),
            Some(Ok(Message::Close(frame))) => {
                return Ok(Incoming::Closed(
                    frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                ))
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Re-chunks interleaved samples into fixed-size chunks (Cartesia recommends ~100 ms).
#[derive(Debug)]
pub(crate) struct Chunker {
    pending: Vec<i16>,
    chunk_len: usize,
}

impl Chunker {
    /// Chunks of `chunk_ms` at `sample_rate` with `channels` interleaved channels.
    pub(crate) fn new(sample_rate: u32, channels: u16, chunk_ms: u32) -> Self {
        let per_channel = (sample_rate as usize * chunk_ms as usize / 1000).max(1);
        Self {
            pending: Vec::new(),
            chunk_len: per_channel * channels.max(1) as usize,
        }
    }

    pub(crate) fn push(&mut self, samples: &[i16]) {
        self.pending.extend_from_slice(samples);
    }

    /// The next full chunk, if any.
    pub(crate) fn next_full(&mut self) -> Option<Vec<i16>> {
        if self.pending.len() >= self.chunk_len {
            Some(self.pending.drain(..self.chunk_len).collect())
        } else {
            None
        }
    }

    /// Whatever is left (a partial chunk), on flush.
    pub(crate) fn take_rest(&mut self) -> Option<Vec<i16>> {
        if self.pending.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pending))
        }
    }
}

/// Little-endian bytes of samples (`linear16`).
pub(crate) fn to_le_bytes(samples: &[i16]) -> Bytes {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    Bytes::from(out)
}

/// The audio a streaming recognizer has sent but the provider has not finalized yet, with the
/// stream positions needed to keep timestamps monotonic across connections.
///
/// Positions are in samples per channel from the start of the stream. Each connection starts
/// by resending the unfinalized audio, so its time zero is [`ReplayBuffer::start_pos`] at
/// connect time; provider timestamps are shifted by that amount.
#[derive(Debug)]
pub(crate) struct ReplayBuffer {
    sample_rate: u32,
    channels: u16,
    samples: VecDeque<i16>,
    start_pos: u64,
    max_samples: u64,
}

impl ReplayBuffer {
    /// A buffer keeping at most `max_secs` of audio (older audio is dropped first, so memory
    /// stays bounded even if the provider never finalizes).
    pub(crate) fn new(sample_rate: u32, channels: u16, max_secs: f64) -> Self {
        Self {
            sample_rate: sample_rate.max(1),
            channels: channels.max(1),
            samples: VecDeque::new(),
            start_pos: 0,
            max_samples: (max_secs * sample_rate as f64) as u64,
        }
    }

    pub(crate) fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Stream position of the oldest unfinalized sample.
    pub(crate) fn start_pos(&self) -> u64 {
        self.start_pos
    }

    /// Stream position just after the last sample sent.
    pub(crate) fn end_pos(&self) -> u64 {
        self.start_pos + (self.samples.len() / self.channels as usize) as u64
    }

    /// Records audio just sent.
    pub(crate) fn push(&mut self, samples: &[i16]) {
        self.samples.extend(samples.iter().copied());
        let held = (self.samples.len() / self.channels as usize) as u64;
        if held > self.max_samples {
            let excess = held - self.max_samples;
            tracing::debug!(
                dropped_secs = excess as f64 / self.sample_rate as f64,
                "replay buffer full, dropping oldest unfinalized audio"
            );
            self.drop_before(self.start_pos + excess);
        }
    }

    /// Forgets audio before stream position `pos` (the provider finalized it).
    pub(crate) fn drop_before(&mut self, pos: u64) {
        if pos <= self.start_pos {
            return;
        }
        let n = (pos.min(self.end_pos()) - self.start_pos) as usize;
        self.samples.drain(..n * self.channels as usize);
        self.start_pos += n as u64;
    }

    /// The unfinalized audio, in chunks of at most `chunk_len` interleaved samples.
    pub(crate) fn chunks(&self, chunk_len: usize) -> Vec<Vec<i16>> {
        let all: Vec<i16> = self.samples.iter().copied().collect();
        all.chunks(chunk_len.max(1)).map(<[i16]>::to_vec).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_switches_scheme_and_keeps_prefix() {
        let base = parse_base_url("https://api.cartesia.ai").unwrap();
        assert_eq!(
            endpoint(&base, "/tts/websocket", true).as_str(),
            "wss://api.cartesia.ai/tts/websocket"
        );
        let base = parse_base_url("http://127.0.0.1:9/proxy/").unwrap();
        assert_eq!(
            endpoint(&base, "/v1/speak", true).as_str(),
            "ws://127.0.0.1:9/proxy/v1/speak"
        );
        assert_eq!(
            endpoint(&base, "/v1/speak", false).as_str(),
            "http://127.0.0.1:9/proxy/v1/speak"
        );
        assert!(parse_base_url("ftp://x").is_err());
    }

    #[test]
    fn api_key_is_redacted() {
        let key = ApiKey::resolve(Some("secret-123")).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        let headers = key.headers(API_VERSION).unwrap();
        assert!(headers[0].1.is_sensitive());
        assert_eq!(headers[1].1, "2025-04-16");
        assert_eq!(ApiKey::resolve(Some("  ")), Err(ConfigError::MissingApiKey));
        assert!(ConfigError::MissingApiKey
            .to_string()
            .contains("CARTESIA_API_KEY"));
    }

    #[test]
    fn chunker_splits_and_flushes() {
        let mut c = Chunker::new(1000, 1, 50);
        c.push(&[1; 120]);
        assert_eq!(c.next_full().unwrap().len(), 50);
        assert_eq!(c.next_full().unwrap().len(), 50);
        assert!(c.next_full().is_none());
        assert_eq!(c.take_rest().unwrap().len(), 20);
        assert!(c.take_rest().is_none());
    }

    #[test]
    fn replay_buffer_tracks_positions_and_is_bounded() {
        let mut r = ReplayBuffer::new(100, 1, 1.0);
        r.push(&(0..80).collect::<Vec<i16>>());
        assert_eq!((r.start_pos(), r.end_pos()), (0, 80));
        r.drop_before(50);
        assert_eq!(r.start_pos(), 50);
        assert_eq!(r.chunks(100), vec![(50..80).collect::<Vec<i16>>()]);
        r.push(&(80..200).collect::<Vec<i16>>());
        // Bounded at one second (100 samples).
        assert_eq!((r.start_pos(), r.end_pos()), (100, 200));
        r.drop_before(125);
        assert_eq!(r.start_pos(), 125);
    }
}
