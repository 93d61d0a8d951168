//! A scripted OpenAI-like HTTP server on 127.0.0.1 for the plugin's tests: it records every
//! request (headers and body) and answers each with the next scripted reply.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::{mpsc, Mutex, Notify};

/// One scripted answer.
pub enum Reply {
    /// An error status with a JSON body.
    Status(u16, String),
    /// A complete streamed body sent in these parts, with a pause between parts.
    Stream {
        content_type: &'static str,
        parts: Vec<Vec<u8>>,
        pause: Duration,
        end: StreamEnd,
    },
    /// A complete JSON body.
    Json(String),
}

/// How a streamed body ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Cleanly (the body is complete).
    Close,
    /// The connection is cut (the body stream fails, so the response is incomplete).
    Cut,
    /// The body stays open until the client goes away.
    Hang,
}

impl Reply {
    /// Server-sent events: each string is one `data:` payload.
    pub fn sse(events: &[&str]) -> Self {
        Reply::Stream {
            content_type: "text/event-stream",
            parts: events
                .iter()
                .map(|e| format!("data: {e}\n\n").into_bytes())
                .collect(),
            pause: Duration::ZERO,
            end: StreamEnd::Close,
        }
    }

    /// Sets how the stream ends.
    pub fn ending(mut self, how: StreamEnd) -> Self {
        if let Reply::Stream { end, .. } = &mut self {
            *end = how;
        }
        self
    }

    /// Sets a pause between parts.
    pub fn paced(mut self, every: Duration) -> Self {
        if let Reply::Stream { pause, .. } = &mut self {
            *pause = every;
        }
        self
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[derive(Default)]
pub struct Inner {
    pub replies: Mutex<VecDeque<Reply>>,
    pub requests: Mutex<Vec<Recorded>>,
    /// Notified when a hanging stream sees its client go away.
    pub client_gone: Notify,
    /// Number of bytes-parts delivered across all streams.
    pub delivered: std::sync::atomic::AtomicUsize,
}

/// The running server.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<Inner>,
}

impl Server {
    pub async fn start(replies: Vec<Reply>) -> Self {
        let state = Arc::new(Inner::default());
        state.replies.lock().await.extend(replies);
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub async fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().await.clone()
    }
}

async fn handle(
    State(state): State<Arc<Inner>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.lock().await.push(Recorded {
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: body.to_vec(),
    });
    let reply = state.replies.lock().await.pop_front();
    match reply {
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no scripted reply").into_response(),
        Some(Reply::Status(code, body)) => Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .header("x-request-id", "req_test")
            .body(Body::from(body))
            .unwrap(),
        Some(Reply::Json(body)) => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap(),
        Some(Reply::Stream {
            content_type,
            parts,
            pause,
            end,
        }) => {
            let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
            let st = state.clone();
            tokio::spawn(async move {
                for part in parts {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    if tx.send(Ok(Bytes::from(part))).await.is_err() {
                        st.client_gone.notify_one();
                        return;
                    }
                    st.delivered
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                match end {
                    StreamEnd::Close => {}
                    StreamEnd::Cut => {
                        let _ = tx
                            .send(Err(std::io::Error::other("connection cut by test")))
                            .await;
                    }
                    StreamEnd::Hang => {
                        tx.closed().await;
                        st.client_gone.notify_one();
                    }
                }
            });
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Response::builder()
                .status(200)
                .header("content-type", content_type)
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

/// A WebSocket server: every upgrade request is recorded (path, query, headers) and the
/// socket handed to `session`.
pub struct WsServer {
    pub addr: SocketAddr,
    pub handshakes: Arc<Mutex<Vec<Recorded>>>,
}

type SessionFn = Arc<
    dyn Fn(axum::extract::ws::WebSocket) -> futures::future::BoxFuture<'static, ()> + Send + Sync,
>;

impl WsServer {
    /// Serves WebSocket upgrades; `reject` answers the handshake with an HTTP status instead.
    pub async fn start<F, Fut>(reject: Option<u16>, session: F) -> Self
    where
        F: Fn(axum::extract::ws::WebSocket) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let session: SessionFn = Arc::new(move |ws| Box::pin(session(ws)));
        let handshakes: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let hs = handshakes.clone();
        let app = Router::new().fallback(
            move |uri: axum::http::Uri,
                  headers: HeaderMap,
                  upgrade: axum::extract::ws::WebSocketUpgrade| {
                let session = session.clone();
                let hs = hs.clone();
                async move {
                    hs.lock().await.push(Recorded {
                        path: uri.path().to_string(),
                        query: uri.query().map(str::to_string),
                        headers,
                        body: Vec::new(),
                    });
                    if let Some(code) = reject {
                        return Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Body::from(
                                r#"{"error":{"message":"Incorrect API key provided"}}"#,
                            ))
                            .unwrap();
                    }
                    upgrade.on_upgrade(move |ws| session(ws))
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        WsServer { addr, handshakes }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// Reads the next JSON text message from a test socket (`None` when it closed).
pub async fn recv_json(ws: &mut axum::extract::ws::WebSocket) -> Option<serde_json::Value> {
    loop {
        match ws.recv().await? {
            Ok(axum::extract::ws::Message::Text(t)) => {
                return Some(serde_json::from_str(t.as_str()).unwrap())
            }
            Ok(axum::extract::ws::Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Sends a JSON event on a test socket.
pub async fn send_json(ws: &mut axum::extract::ws::WebSocket, v: serde_json::Value) {
    let _ = ws
        .send(axum::extract::ws::Message::Text(v.to_string().into()))
        .await;
}
