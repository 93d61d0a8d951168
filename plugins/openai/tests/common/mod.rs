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
use livekit_plugin_test_support::models;
use livekit_plugin_test_support::tls::TlsListener;
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
    /// Whose model list the server enforces (`openai` when empty), from
    /// `crates/plugin-test-support/provider-models.json`.
    pub provider: std::sync::Mutex<String>,
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

    /// The same server behind TLS: `https://127.0.0.1:port/v1`, with a self-signed
    /// certificate the clients of this test process trust (see
    /// `livekit_plugin_test_support::tls`).
    pub async fn start_tls(replies: Vec<Reply>) -> TlsServer {
        let state = Arc::new(Inner::default());
        state.replies.lock().await.extend(replies);
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = TlsAxumListener(TlsListener::bind().await);
        let addr = listener.0.addr;
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TlsServer(Server { addr, state })
    }

    /// Enforces `provider`'s model list (e.g. `groq`) instead of OpenAI's; `local` accepts
    /// every model, as a local OpenAI-compatible server does.
    pub fn set_provider(&self, provider: &str) {
        *self.state.provider.lock().unwrap() = provider.to_string();
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
    let provider = state.provider.lock().unwrap().clone();
    if let Some((status, body)) = refusal(&provider, uri.path(), &body) {
        return Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("x-request-id", "req_refused")
            .body(Body::from(body))
            .unwrap();
    }
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

/// A [`Server`] behind TLS.
pub struct TlsServer(pub Server);

impl TlsServer {
    /// `https://127.0.0.1:port/v1`.
    pub fn base_url(&self) -> String {
        format!("https://{}/v1", self.0.addr)
    }
}

/// Serves axum over the test support's TLS listener.
struct TlsAxumListener(TlsListener);

impl axum::serve::Listener for TlsAxumListener {
    type Io = livekit_plugin_test_support::tls::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.0.addr)
    }
}

/// The value of a text field of a `multipart/form-data` body.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let marker = format!("name=\"{name}\"\r\n\r\n");
    let start = text.find(&marker)? + marker.len();
    let end = text[start..].find("\r\n")? + start;
    Some(text[start..end].to_string())
}

/// How the real API refuses this request, if it does: an unknown model (404
/// `model_not_found`), an unknown voice, or a language that is not an ISO-639-1 code (400).
fn refusal(provider: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    if provider == "local" {
        // A local OpenAI-compatible server (Ollama, Speaches, Kokoro-FastAPI) serves its own
        // model names: nothing is refused.
        return None;
    }
    let provider = if provider.is_empty() {
        "openai"
    } else {
        provider
    };
    let json = || serde_json::from_slice::<serde_json::Value>(body).ok();
    let field =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|m| m.as_str()).map(str::to_string);
    if path.ends_with("/chat/completions") {
        let model = json().and_then(|v| field(&v, "model")).unwrap_or_default();
        if !models::accepts(provider, "chat", &model) {
            return Some((404, models::openai_model_not_found(&model)));
        }
    } else if path.ends_with("/audio/speech") {
        let v = json().unwrap_or_default();
        let model = field(&v, "model").unwrap_or_default();
        if !models::accepts("openai", "speech", &model) {
            return Some((404, models::openai_model_not_found(&model)));
        }
        let voice = field(&v, "voice").unwrap_or_default();
        if !models::accepts("openai", "speech_voices", &voice) {
            return Some((
                400,
                models::openai_invalid_value(
                    "voice",
                    &format!("Invalid value for 'voice': '{voice}'."),
                ),
            ));
        }
    } else if path.ends_with("/audio/transcriptions") {
        let model = form_field(body, "model").unwrap_or_default();
        if !models::accepts("openai", "transcription", &model) {
            return Some((404, models::openai_model_not_found(&model)));
        }
        if let Some(lang) = form_field(body, "language") {
            if lang.len() != 2 || !lang.bytes().all(|b| b.is_ascii_lowercase()) {
                return Some((
                    400,
                    models::openai_invalid_value(
                        "language",
                        &format!("Invalid language '{lang}'. Language parameter must be specified in ISO-639-1 format."),
                    ),
                ));
            }
            if model == "gpt-transcribe" || model == "gpt-live-transcribe" {
                return Some((
                    400,
                    models::openai_invalid_value(
                        "language",
                        &format!("'language' is not supported with {model}; use 'languages'."),
                    ),
                ));
            }
        }
    }
    None
}

/// How the Realtime API refuses a transcription `session.update`: an `error` event for a
/// transcription model it does not serve, for `language` sent to `gpt-transcribe` /
/// `gpt-live-transcribe` (which take `languages`), and for server turn detection with
/// `gpt-live-transcribe` (which supports neither `server_vad` nor `semantic_vad`).
pub fn transcription_session_refusal(update: &serde_json::Value) -> Option<serde_json::Value> {
    let input = &update["session"]["audio"]["input"];
    let model = input["transcription"]["model"].as_str().unwrap_or_default();
    let error = |code: &str, param: &str, message: String| {
        Some(serde_json::json!({"type": "error", "error": {
            "type": "invalid_request_error", "code": code, "param": param, "message": message,
        }}))
    };
    if !models::accepts("openai", "transcription", model) {
        return error(
            "model_not_found",
            "session.audio.input.transcription.model",
            format!("The model `{model}` does not exist or you do not have access to it."),
        );
    }
    let new_model = model == "gpt-transcribe" || model == "gpt-live-transcribe";
    if new_model && input["transcription"].get("language").is_some() {
        return error(
            "unknown_parameter",
            "session.audio.input.transcription.language",
            format!("Unknown parameter 'language' for {model}; use 'languages'."),
        );
    }
    if model == "gpt-live-transcribe" && !input["turn_detection"].is_null() {
        return error(
            "invalid_value",
            "session.audio.input.turn_detection",
            "gpt-live-transcribe does not support turn detection; set it to null.".into(),
        );
    }
    None
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
                    // A conversation session names its model in the URL; one OpenAI does
                    // not serve is refused.
                    let model = uri.query().and_then(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "model")
                            .map(|(_, v)| v.into_owned())
                    });
                    if let Some(model) = model.filter(|m| !models::accepts("openai", "realtime", m))
                    {
                        return Response::builder()
                            .status(404)
                            .header("content-type", "application/json")
                            .body(Body::from(models::openai_model_not_found(&model)))
                            .unwrap();
                    }
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
