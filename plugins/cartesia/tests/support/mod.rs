//! A scripted WebSocket server on 127.0.0.1: each accepted connection is handed to the test,
//! which reads what the client sent and answers like the real service would.
#![allow(dead_code, clippy::unwrap_used, clippy::result_large_err)]

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
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: http::HeaderMap,
    pub ws: WebSocketStream<Box<dyn ServerIo>>,
}

/// What the client sent, as the server sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    Text(String),
    Binary(Vec<u8>),
    Closed,
}

impl FakeConn {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn params(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

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

    pub async fn send_json(&mut self, value: serde_json::Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).await.unwrap();
    }

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

    /// Drops the TCP connection without a closing handshake.
    pub fn drop_abruptly(self) {
        drop(self.ws);
    }
}

/// The server: accepted connections arrive on [`FakeServer::next_conn`].
pub struct FakeServer {
    pub addr: SocketAddr,
    tx: mpsc::UnboundedSender<FakeConn>,
    conns: mpsc::UnboundedReceiver<FakeConn>,
    rejections: Arc<Mutex<VecDeque<u16>>>,
    pub accepted: Arc<Mutex<usize>>,
}

impl FakeServer {
    /// A server listening on 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Self::new(addr);
        let (tx, rej, acc) = (
            server.tx.clone(),
            server.rejections.clone(),
            server.accepted.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accept(Box::new(stream), tx.clone(), rej.clone(), acc.clone());
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
        let (tx, rej, acc) = (
            self.tx.clone(),
            self.rejections.clone(),
            self.accepted.clone(),
        );
        Arc::new(move || {
            let (client, server) = tokio::io::duplex(64 * 1024);
            accept(Box::new(server), tx.clone(), rej.clone(), acc.clone());
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
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next handshake is refused with `status`.
    pub fn reject_next(&self, status: u16) {
        self.rejections.lock().unwrap().push_back(status);
    }

    pub async fn next_conn(&mut self) -> FakeConn {
        self.conns.recv().await.expect("server stopped")
    }

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
) {
    *accepted.lock().unwrap() += 1;
    tokio::spawn(async move {
        let captured: Captured = Arc::default();
        let cap = captured.clone();
        let reject = rejections.lock().unwrap().pop_front();
        let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let uri = req.uri();
            let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            *cap.lock().unwrap() = Some((uri.path().to_string(), query, req.headers().clone()));
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
