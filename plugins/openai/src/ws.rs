//! WebSocket plumbing shared by the realtime transcription stream and the Realtime model:
//! the handshake (with authentication headers and a timeout; HTTP refusals become status
//! errors), JSON sends, and reading the next JSON event.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use livekit_agents::types::ApiError;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::client::{request_id, status_error, Endpoint};

/// A connected socket.
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `url` with the endpoint's authentication within `timeout`.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    url: &Url,
    timeout: Duration,
) -> Result<WsStream, ApiError> {
    let provider = endpoint.provider.as_str();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ApiError::other(format!("invalid {provider} URL: {e}")))?;
    for (name, value) in endpoint.headers()? {
        request.headers_mut().insert(name, value);
    }
    match tokio::time::timeout(timeout, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Err(ApiError::Timeout(timeout)),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(status_error(
                provider,
                status,
                &body,
                request_id(response.headers()),
            ))
        }
        Ok(Err(e)) => Err(ApiError::connection(format!(
            "{provider} WebSocket connection failed: {e}"
        ))),
    }
}

/// Sends one JSON event.
pub(crate) async fn send_json(
    ws: &mut WsStream,
    value: &serde_json::Value,
) -> Result<(), ApiError> {
    ws.send(Message::text(value.to_string()))
        .await
        .map_err(|e| ApiError::connection(format!("connection lost while sending: {e}")))
}

/// What arrived on the socket.
pub(crate) enum Incoming {
    /// A JSON event.
    Event(serde_json::Value),
    /// The server closed the connection (close frame or end of stream).
    Closed(Option<String>),
}

/// Reads the next JSON event (pings are answered by tungstenite; binary frames are ignored).
/// A text frame that is not JSON is a protocol error.
pub(crate) async fn next_event(ws: &mut WsStream) -> Result<Incoming, ApiError> {
    loop {
        match ws.next().await {
            None => return Ok(Incoming::Closed(None)),
            Some(Err(e)) => {
                return Err(ApiError::connection(format!("connection dropped: {e}")));
            }
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .map(Incoming::Event)
                    .map_err(|e| {
                        ApiError::protocol(format!(
                            "malformed server event ({e}): {}",
                            crate::client::truncate(text.as_str(), 200)
                        ))
                    });
            }
            Some(Ok(Message::Close(frame))) => {
                return Ok(Incoming::Closed(
                    frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)),
                ))
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// The `type` of a server event.
pub(crate) fn event_type(ev: &serde_json::Value) -> &str {
    ev.get("type").and_then(|t| t.as_str()).unwrap_or("")
}

/// A string field of a server event.
pub(crate) fn str_field<'a>(ev: &'a serde_json::Value, key: &str) -> &'a str {
    ev.get(key).and_then(|t| t.as_str()).unwrap_or("")
}

/// The `error` of an `error` event as an [`ApiError`]: server errors are retryable, request
/// errors are not.
pub(crate) fn server_error(provider: &str, ev: &serde_json::Value) -> ApiError {
    let err = ev.get("error").unwrap_or(ev);
    let message = str_field(err, "message");
    let kind = str_field(err, "type");
    let code = str_field(err, "code");
    let text = format!(
        "{provider} error ({kind}{}{code}): {message}",
        if code.is_empty() { "" } else { "/" }
    );
    if kind == "server_error" {
        ApiError::connection(text)
    } else {
        ApiError::other(text)
    }
}
