//! WebSocket connections to a provider and the mapping of their failures to [`ApiError`]s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::types::ApiError;

/// A byte stream a WebSocket runs over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A WebSocket connection to a provider.
pub type WsStream = WebSocketStream<MaybeTlsStream<Box<dyn Io>>>;

/// How connections are opened: TCP (and TLS for `wss://`) in production; tests substitute an
/// in-memory pipe so timing can be checked on tokio's paused clock without real sockets.
#[derive(Clone, Default)]
pub enum Dialer {
    /// A TCP connection to the URL's host (with `TCP_NODELAY`: audio chunks are small and
    /// latency matters more than packet count).
    #[default]
    Tcp,
    /// An in-memory stream from a test server: each call opens one connection.
    Memory(Arc<dyn Fn() -> DuplexStream + Send + Sync>),
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dialer::Tcp => f.write_str("Tcp"),
            Dialer::Memory(_) => f.write_str("Memory"),
        }
    }
}

impl Dialer {
    async fn dial(&self, provider: &str, url: &Url) -> Result<Box<dyn Io>, ApiError> {
        match self {
            Dialer::Tcp => {
                let host = url
                    .host_str()
                    .ok_or_else(|| ApiError::other(format!("{provider} URL has no host")))?;
                let port = url.port_or_known_default().unwrap_or(443);
                let tcp = TcpStream::connect((host, port)).await.map_err(|e| {
                    ApiError::connection(format!(
                        "failed to connect to {provider} at {host}:{port}: {e}"
                    ))
                })?;
                let _ = tcp.set_nodelay(true);
                Ok(Box::new(tcp))
            }
            Dialer::Memory(connect) => Ok(Box::new(connect())),
        }
    }
}

/// A provider as its errors describe it: the name error messages use and the response headers
/// carrying its request id and (for some providers) the reason for a refusal.
///
/// The WebSocket helpers are methods so every error they return names the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider {
    name: &'static str,
    request_id_header: &'static str,
    error_header: Option<&'static str>,
}

impl Provider {
    /// A provider named `name` (e.g. `"Deepgram"`) returning its request id in the response
    /// header `request_id_header` (lower case, e.g. `"x-request-id"`).
    pub const fn new(name: &'static str, request_id_header: &'static str) -> Self {
        Self {
            name,
            request_id_header,
            error_header: None,
        }
    }

    /// Reads the reason for a refused handshake from this response header when present (e.g.
    /// Deepgram's `dg-error`), before falling back to the response body.
    pub const fn with_error_header(mut self, header: &'static str) -> Self {
        self.error_header = Some(header);
        self
    }

    /// The provider's name, as error messages use it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The request id of a response, when present.
    pub fn request_id(&self, headers: &http::HeaderMap) -> Option<String> {
        header_str(headers, self.request_id_header)
    }

    /// An error for an HTTP error status with the provider's explanation (`detail`, may be
    /// empty) and request id. Retryability follows [`ApiError::status`]: 408, 409, 429 and 5xx
    /// are retried; other statuses (401, 403, 400, ...) are not.
    pub fn status_error(&self, status: u16, detail: &str, request_id: Option<String>) -> ApiError {
        let name = self.name;
        let message = if detail.is_empty() {
            format!("{name} refused the request (HTTP {status})")
        } else {
            format!("{name} refused the request (HTTP {status}): {detail}")
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

    /// Opens a WebSocket to `url` with extra `headers` (authentication, versions), dialled by
    /// `dialer`, within `timeout`. Returns the socket and the request id of the handshake
    /// response.
    ///
    /// A refused handshake becomes [`ApiError::Status`] with the reason from the provider's
    /// error header or its (summarized) body; an expired `timeout` becomes
    /// [`ApiError::Timeout`]; any other failure a retryable connection error.
    pub async fn connect_ws(
        &self,
        dialer: &Dialer,
        url: &Url,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
    ) -> Result<(WsStream, Option<String>), ApiError> {
        let name = self.name;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ApiError::other(format!("invalid {name} URL: {e}")))?;
        for (header, value) in headers {
            request.headers_mut().insert(header, value);
        }
        let handshake = async {
            let io = dialer.dial(name, url).await?;
            Ok::<_, ApiError>(tokio_tungstenite::client_async_tls(request, io).await)
        };
        match tokio::time::timeout(timeout, handshake).await {
            Err(_) => Err(ApiError::Timeout(timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Ok((ws, response)))) => Ok((ws, self.request_id(response.headers()))),
            Ok(Ok(Err(tungstenite::Error::Http(response)))) => {
                let status = response.status().as_u16();
                let request_id = self.request_id(response.headers());
                let detail = self
                    .error_header
                    .and_then(|h| header_str(response.headers(), h))
                    .or_else(|| {
                        response
                            .body()
                            .as_deref()
                            .map(|b| summarize_body(&String::from_utf8_lossy(b)))
                    })
                    .unwrap_or_default();
                Err(self.status_error(status, &detail, request_id))
            }
            Ok(Ok(Err(e))) => Err(ApiError::connection(format!(
                "failed to connect to {name}: {e}"
            ))),
        }
    }

    /// Sends a JSON message as a text frame.
    pub async fn send_json(
        &self,
        ws: &mut WsStream,
        value: &serde_json::Value,
    ) -> Result<(), ApiError> {
        ws.send(Message::text(value.to_string()))
            .await
            .map_err(|e| {
                ApiError::connection(format!("{} connection lost while sending: {e}", self.name))
            })
    }

    /// Sends binary audio.
    pub async fn send_binary(&self, ws: &mut WsStream, data: Bytes) -> Result<(), ApiError> {
        ws.send(Message::Binary(data)).await.map_err(|e| {
            ApiError::connection(format!(
                "{} connection lost while sending audio: {e}",
                self.name
            ))
        })
    }

    /// Reads the next text, binary or close frame (pings are answered by tungstenite itself).
    pub async fn next_incoming(&self, ws: &mut WsStream) -> Result<Incoming, ApiError> {
        loop {
            match ws.next().await {
                None => return Ok(Incoming::Closed(None)),
                Some(Err(e)) => {
                    return Err(ApiError::connection(format!(
                        "{} connection dropped: {e}",
                        self.name
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
}

/// What arrived on a socket, reduced to what clients act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
    /// The server closed the connection (close frame or end of stream), with its code and
    /// reason.
    Closed(Option<(u16, String)>),
}

/// A header's value as a string, when present and readable.
pub fn header_str(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A provider's error body shortened for an error message: the first of `err_msg`, `message`,
/// `description`, `error`, `reason` that is a string in a JSON body, else the body itself, at
/// most 300 bytes.
pub fn summarize_body(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["err_msg", "message", "description", "error", "reason"] {
            if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                return truncate(s, 300);
            }
        }
    }
    truncate(body.trim(), 300)
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // tungstenite's handshake callback returns its large ErrorResponse
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

    const ACME: Provider = Provider::new("Acme", "x-request-id").with_error_header("x-error");

    /// An in-memory server answering each handshake with `reply` after recording its headers.
    fn memory_server(
        reply: fn(Response) -> Result<Response, ErrorResponse>,
    ) -> (
        Dialer,
        tokio::sync::mpsc::UnboundedReceiver<(http::HeaderMap, WebSocketStream<DuplexStream>)>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let dialer = Dialer::Memory(Arc::new(move || {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let tx = tx.clone();
            tokio::spawn(async move {
                let seen = Arc::new(std::sync::Mutex::new(http::HeaderMap::new()));
                let seen_cb = seen.clone();
                let callback = move |req: &Request, resp: Response| {
                    *seen_cb.lock().unwrap() = req.headers().clone();
                    reply(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(server, callback).await {
                    let headers = seen.lock().unwrap().clone();
                    let _ = tx.send((headers, ws));
                }
            });
            client
        }));
        (dialer, rx)
    }

    fn refuse(status: u16, body: &str, headers: &[(&'static str, &'static str)]) -> ErrorResponse {
        let mut err = ErrorResponse::new(Some(body.to_string()));
        *err.status_mut() = http::StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            err.headers_mut()
                .insert(*name, HeaderValue::from_static(value));
        }
        err
    }

    #[tokio::test(start_paused = true)]
    async fn connects_with_headers_and_exchanges_frames() {
        let (dialer, mut conns) = memory_server(|mut resp| {
            resp.headers_mut()
                .insert("x-request-id", HeaderValue::from_static("req-7"));
            Ok(resp)
        });
        let url = Url::parse("ws://127.0.0.1:9/listen").unwrap();
        let key = super::super::ApiKey::new("secret");
        let headers = vec![(
            http::header::AUTHORIZATION,
            key.header_value("Token ", "Acme API key").unwrap(),
        )];
        let (mut ws, request_id) = ACME
            .connect_ws(&dialer, &url, headers, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(request_id.as_deref(), Some("req-7"));
        let (seen, mut server) = conns.recv().await.unwrap();
        assert_eq!(seen.get("authorization").unwrap(), "Token secret");

        ACME.send_json(&mut ws, &serde_json::json!({"type": "Hi"}))
            .await
            .unwrap();
        ACME.send_binary(&mut ws, Bytes::from_static(&[1, 2]))
            .await
            .unwrap();
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::text(r#"{"type":"Hi"}"#)
        );
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::binary(vec![1, 2])
        );
        server.send(Message::text("ok")).await.unwrap();
        server.send(Message::Ping(Bytes::new())).await.unwrap();
        server.send(Message::binary(vec![3])).await.unwrap();
        server.close(None).await.unwrap();
        assert_eq!(
            ACME.next_incoming(&mut ws).await.unwrap(),
            Incoming::Text("ok".into())
        );
        assert_eq!(
            ACME.next_incoming(&mut ws).await.unwrap(),
            Incoming::Binary(Bytes::from_static(&[3]))
        );
        assert!(matches!(
            ACME.next_incoming(&mut ws).await.unwrap(),
            Incoming::Closed(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_map_to_status_errors() {
        let url = Url::parse("ws://127.0.0.1:9/listen").unwrap();
        let timeout = Duration::from_secs(5);

        let (dialer, _conns) = memory_server(|_| {
            Err(refuse(
                401,
                r#"{"err_msg":"Invalid credentials."}"#,
                &[("x-request-id", "req-1")],
            ))
        });
        let err = ACME
            .connect_ws(&dialer, &url, Vec::new(), timeout)
            .await
            .err()
            .expect("an error");
        match &err {
            ApiError::Status {
                status,
                message,
                request_id,
                retryable,
            } => {
                assert_eq!(*status, 401);
                assert_eq!(
                    message,
                    "Acme refused the request (HTTP 401): Invalid credentials."
                );
                assert_eq!(request_id.as_deref(), Some("req-1"));
                assert!(!retryable);
            }
            other => panic!("expected a status error, got {other:?}"),
        }

        // The provider's error header wins over the body; 5xx is retried.
        let (dialer, _conns) =
            memory_server(|_| Err(refuse(503, "busy body", &[("x-error", "overloaded")])));
        let err = ACME
            .connect_ws(&dialer, &url, Vec::new(), timeout)
            .await
            .err()
            .expect("an error");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("(HTTP 503): overloaded"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_times_out() {
        // The pipe is never answered: the handshake waits until the timeout.
        let keep = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = keep.clone();
        let dialer = Dialer::Memory(Arc::new(move || {
            let (client, server) = tokio::io::duplex(1024);
            held.lock().unwrap().push(server);
            client
        }));
        let url = Url::parse("ws://127.0.0.1:9/listen").unwrap();
        let err = ACME
            .connect_ws(&dialer, &url, Vec::new(), Duration::from_secs(3))
            .await
            .err()
            .expect("an error");
        assert!(matches!(err, ApiError::Timeout(d) if d == Duration::from_secs(3)));
        assert_eq!(keep.lock().unwrap().len(), 1);
    }

    #[test]
    fn bodies_are_summarized_and_truncated_on_char_boundaries() {
        assert_eq!(summarize_body(r#"{"message":"nope"}"#), "nope");
        assert_eq!(summarize_body("  plain text \n"), "plain text");
        let long = "é".repeat(200);
        let cut = truncate(&long, 301);
        assert!(cut.ends_with('…'));
        assert_eq!(cut.len(), 300 + '…'.len_utf8());
        assert_eq!(truncate("short", 10), "short");
        assert!(ACME.status_error(429, "", None).is_retryable());
        assert_eq!(
            ACME.status_error(400, "", None).to_string(),
            "Acme refused the request (HTTP 400) (status 400)"
        );
    }
}
