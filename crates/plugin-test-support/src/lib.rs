//! The conformance kit for `livekit-agents` plugins: what this repository's own plugins use to
//! test themselves against their provider's real wire protocol without the network, published
//! so that third-party plugin authors can do the same (add it as a dev-dependency).
//!
//! [`FakeServer`] is a scripted WebSocket server standing in for a provider: each accepted
//! connection is handed to the test as a [`FakeConn`], which records the handshake (path,
//! query, headers), reads what the client sent and answers like the real service would. It
//! listens on 127.0.0.1 ([`FakeServer::start`]), behind TLS with a certificate made at test time
//! ([`FakeServer::start_tls`], see [`tls`]), or on in-memory pipes
//! ([`FakeServer::start_memory`] with [`FakeServer::connector`], to plug into
//! `livekit_agents::plugin_support::Dialer::Memory`), where tokio's paused clock advances only
//! when every task waits. A server can refuse handshakes the way the provider does
//! ([`FakeServer::refusing`], [`FakeServer::reject_next`]). [`ramp_frame`] and [`ramp_bytes`]
//! make audio whose samples encode their stream position, so a test can tell exactly which
//! audio the server received (after a reconnect, for example). [`models`] holds the models and
//! voices the bundled providers accept (`provider-models.json`) and their refusal bodies.
//! [`log_secrets::assert_secret_not_logged`] is the check that an API key never reaches the
//! logs at trace level.
//!
//! Protocol scripting (the provider's JSON messages) belongs in each plugin's tests. The
//! repository's `docs/guides/writing-a-plugin.md` walks through testing a streaming STT plugin
//! with this kit. Helpers panic on failure: they are for tests only.
#![allow(clippy::unwrap_used, clippy::result_large_err)]

pub mod log_secrets;
pub mod models;
pub mod tls;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A byte stream the server side runs over (TCP or an in-memory pipe).
pub trait ServerIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ServerIo for T {}

/// One accepted WebSocket connection and the handshake request the client sent.
pub struct FakeConn {
    /// Path of the handshake request.
    pub path: String,
    /// Query parameters of the handshake request, in order (repeated keys kept).
    pub query: Vec<(String, String)>,
    /// Headers of the handshake request.
    pub headers: http::HeaderMap,
    /// The server side of the socket.
    pub ws: WebSocketStream<Box<dyn ServerIo>>,
}

/// What the client sent, as the server sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// The client closed the socket or it dropped.
    Closed,
}

impl FakeConn {
    /// The first value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `key`, in order.
    pub fn params(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The next text or binary frame (pings skipped), or [`ClientMsg::Closed`].
    pub async fn recv(&mut self) -> ClientMsg {
        loop {
            match self.ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return ClientMsg::Closed,
                Some(Ok(Message::Text(t))) => return ClientMsg::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => return ClientMsg::Binary(b.to_vec()),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until a text message, returning the audio bytes received before it.
    pub async fn recv_until_text(&mut self) -> (Vec<u8>, Option<String>) {
        let mut audio = Vec::new();
        loop {
            match self.recv().await {
                ClientMsg::Binary(b) => audio.extend_from_slice(&b),
                ClientMsg::Text(t) => return (audio, Some(t)),
                ClientMsg::Closed => return (audio, None),
            }
        }
    }

    /// Reads exactly `n` bytes of audio (failing on any text message in between).
    pub async fn recv_audio(&mut self, n: usize) -> Vec<u8> {
        let mut audio = Vec::new();
        while audio.len() < n {
            match self.recv().await {
                ClientMsg::Binary(b) => audio.extend_from_slice(&b),
                other => panic!("expected audio, got {other:?} after {} bytes", audio.len()),
            }
        }
        assert_eq!(audio.len(), n, "received more audio than expected");
        audio
    }

    /// Sends `value` as a text frame.
    pub async fn send_json(&mut self, value: serde_json::Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .unwrap();
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).await.unwrap();
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws.send(Message::binary(data)).await.unwrap();
    }

    /// A clean close (code 1000).
    pub async fn close(mut self) {
        let _ = self
            .ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        // Wait for the client's close reply so the socket shuts down in order.
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// Closes the socket with a close frame of `code` and `reason` (how providers report
    /// errors on an open socket, e.g. Deepgram's `1002 DATA-0000`).
    pub async fn close_with(mut self, code: u16, reason: &str) {
        let _ = self
            .ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string().into(),
            })))
            .await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// Drops the TCP connection without a closing handshake.
    pub fn drop_abruptly(self) {
        drop(self.ws);
    }
}

/// The server: accepted connections arrive on [`FakeServer::next_conn`].
pub struct FakeServer {
    /// Where the server listens (a placeholder address for in-memory servers).
    pub addr: SocketAddr,
    tx: mpsc::UnboundedSender<FakeConn>,
    conns: mpsc::UnboundedReceiver<FakeConn>,
    rejections: Arc<Mutex<VecDeque<u16>>>,
    /// How many connections were accepted (handshakes attempted, refused ones included).
    pub accepted: Arc<Mutex<usize>>,
    tls: bool,
    validator: Validator,
}

/// Decides from a handshake (path, query, headers) whether the server refuses it, and with
/// which status and body.
pub type HandshakeCheck =
    dyn Fn(&str, &[(String, String)], &http::HeaderMap) -> Option<(u16, String)> + Send + Sync;
type Validator = Arc<Mutex<Option<Arc<HandshakeCheck>>>>;

impl FakeServer {
    /// A server listening on 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Self::new(addr);
        let (tx, rej, acc, val) = (
            server.tx.clone(),
            server.rejections.clone(),
            server.accepted.clone(),
            server.validator.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accept(
                    Box::new(stream),
                    tx.clone(),
                    rej.clone(),
                    acc.clone(),
                    val.clone(),
                );
            }
        });
        server
    }

    /// A server listening on 127.0.0.1 behind TLS, with a certificate the clients of this
    /// test process trust ([`tls::TestTls::shared`]); its [`base_url`](Self::base_url) is
    /// `https://127.0.0.1:port`, so the client takes its production TLS path.
    pub async fn start_tls() -> Self {
        let mut listener = tls::TlsListener::bind().await;
        let mut server = Self::new(listener.addr);
        server.tls = true;
        let (tx, rej, acc, val) = (
            server.tx.clone(),
            server.rejections.clone(),
            server.accepted.clone(),
            server.validator.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await;
                accept(
                    Box::new(stream),
                    tx.clone(),
                    rej.clone(),
                    acc.clone(),
                    val.clone(),
                );
            }
        });
        server
    }

    /// A server reached through in-memory pipes: `connector()` opens a connection. With no
    /// sockets involved, tokio's paused clock advances only when every task is blocked.
    pub fn start_memory() -> Self {
        Self::new(SocketAddr::from(([127, 0, 0, 1], 9)))
    }

    /// Opens an in-memory connection to this server (64 KiB of buffering each way).
    pub fn connector(&self) -> Arc<dyn Fn() -> DuplexStream + Send + Sync> {
        let (tx, rej, acc, val) = (
            self.tx.clone(),
            self.rejections.clone(),
            self.accepted.clone(),
            self.validator.clone(),
        );
        Arc::new(move || {
            let (client, server) = tokio::io::duplex(64 * 1024);
            accept(
                Box::new(server),
                tx.clone(),
                rej.clone(),
                acc.clone(),
                val.clone(),
            );
            client
        })
    }

    fn new(addr: SocketAddr) -> Self {
        let (tx, conns) = mpsc::unbounded_channel();
        Self {
            addr,
            tx,
            conns,
            rejections: Arc::default(),
            accepted: Arc::default(),
            tls: false,
            validator: Arc::default(),
        }
    }

    /// [`refuse_when`](Self::refuse_when) as a builder.
    pub fn refusing(
        self,
        check: impl Fn(&str, &[(String, String)], &http::HeaderMap) -> Option<(u16, String)>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.refuse_when(check);
        self
    }

    /// Refuses every handshake for which `check` returns a status and body (e.g. an unknown
    /// model, answered the way the real API answers it), from now on.
    pub fn refuse_when(
        &self,
        check: impl Fn(&str, &[(String, String)], &http::HeaderMap) -> Option<(u16, String)>
            + Send
            + Sync
            + 'static,
    ) {
        *self.validator.lock().unwrap() = Some(Arc::new(check));
    }

    /// `http://{addr}` (`https://` behind TLS), the base URL to configure the client with.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The next handshake is refused with `status`.
    pub fn reject_next(&self, status: u16) {
        self.rejections.lock().unwrap().push_back(status);
    }

    /// The next accepted connection.
    pub async fn next_conn(&mut self) -> FakeConn {
        self.conns.recv().await.expect("server stopped")
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

type Captured = Arc<Mutex<Option<(String, Vec<(String, String)>, http::HeaderMap)>>>;

/// Runs the server side of a WebSocket handshake and hands the connection to the test.
fn accept(
    stream: Box<dyn ServerIo>,
    tx: mpsc::UnboundedSender<FakeConn>,
    rejections: Arc<Mutex<VecDeque<u16>>>,
    accepted: Arc<Mutex<usize>>,
    validator: Validator,
) {
    *accepted.lock().unwrap() += 1;
    let check = validator.lock().unwrap().clone();
    tokio::spawn(async move {
        let captured: Captured = Arc::default();
        let cap = captured.clone();
        let reject = rejections.lock().unwrap().pop_front();
        let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let uri = req.uri();
            let query: Vec<(String, String)> =
                url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            let refusal = check
                .as_ref()
                .and_then(|check| check(uri.path(), &query, req.headers()));
            *cap.lock().unwrap() = Some((uri.path().to_string(), query, req.headers().clone()));
            if let Some((status, body)) = refusal {
                let mut err = ErrorResponse::new(Some(body));
                *err.status_mut() = http::StatusCode::from_u16(status).unwrap();
                return Err(err);
            }
            if let Some(status) = reject {
                let mut err =
                    ErrorResponse::new(Some(format!("{{\"err_msg\":\"rejected with {status}\"}}")));
                *err.status_mut() = http::StatusCode::from_u16(status).unwrap();
                return Err(err);
            }
            Ok(resp)
        };
        if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
            let (path, query, headers) = captured.lock().unwrap().take().unwrap();
            let _ = tx.send(FakeConn {
                path,
                query,
                headers,
                ws,
            });
        }
    });
}

/// A mono frame of `samples` whose values encode their stream position, so a test can tell
/// exactly which audio the server received.
pub fn ramp_frame(
    start: usize,
    samples: usize,
    sample_rate: u32,
) -> livekit_agents::audio::AudioFrame {
    let data: Vec<i16> = (start..start + samples)
        .map(|i| (i % 30_000) as i16)
        .collect();
    livekit_agents::audio::AudioFrame::new(data, sample_rate, 1).unwrap()
}

/// The little-endian bytes of the ramp between two positions.
pub fn ramp_bytes(start: usize, end: usize) -> Vec<u8> {
    (start..end)
        .flat_map(|i| ((i % 30_000) as i16).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    #[tokio::test(start_paused = true)]
    async fn memory_server_records_handshakes_and_scripts_replies() {
        let mut server = FakeServer::start_memory();
        let connect = server.connector();
        let mut request = "ws://127.0.0.1:9/v1/listen?model=a&keyterm=x&keyterm=y"
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", http::HeaderValue::from_static("Token k"));
        let client = tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::client_async(request, connect())
                .await
                .unwrap();
            ws.send(Message::binary(ramp_bytes(0, 4))).await.unwrap();
            ws.send(Message::text("{\"type\":\"Finalize\"}"))
                .await
                .unwrap();
            let reply = ws.next().await.unwrap().unwrap();
            assert_eq!(reply, Message::text("{\"ok\":true}"));
        });
        let mut conn = server.next_conn().await;
        assert_eq!(conn.path, "/v1/listen");
        assert_eq!(conn.param("model"), Some("a"));
        assert_eq!(conn.params("keyterm"), vec!["x", "y"]);
        assert_eq!(conn.headers.get("authorization").unwrap(), "Token k");
        let (audio, text) = conn.recv_until_text().await;
        assert_eq!(audio, ramp_bytes(0, 4));
        assert_eq!(text.as_deref(), Some("{\"type\":\"Finalize\"}"));
        conn.send_json(serde_json::json!({"ok": true})).await;
        client.await.unwrap();
        assert_eq!(server.accepted(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_handshakes_carry_the_status() {
        let server = FakeServer::start_memory();
        server.reject_next(401);
        let connect = server.connector();
        let request = "ws://127.0.0.1:9/x".into_client_request().unwrap();
        match tokio_tungstenite::client_async(request, connect()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401);
                let body = String::from_utf8(resp.body().clone().unwrap()).unwrap();
                assert!(body.contains("rejected with 401"));
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn ramps_encode_positions() {
        let frame = ramp_frame(30_001, 2, 16_000);
        assert_eq!(frame.data, vec![1, 2]);
        assert_eq!(ramp_bytes(1, 3), vec![1, 0, 2, 0]);
    }
}
