//! Deepgram Aura text-to-speech: streaming over `wss://…/v1/speak` and one-shot synthesis over
//! `POST …/v1/speak`.

use std::collections::VecDeque;

use async_trait::async_trait;
use livekit_agents::tokenize::{BasicWordTokenizer, TokenStream, WordStream};
use livekit_agents::tts::{
    self as core_tts, AudioEmitter, ChunkedStream, ChunkedTtsTask, SynthesizeStream,
    TtsCapabilities, TtsInput, TtsInputReceiver, TtsStreamTask,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use url::Url;

use crate::common::{
    authorization, endpoint, parse_base_url, redacted, resolve_api_key, resolve_base_url, ApiKey,
    ConfigError, Dialer, Incoming, Query, WsStream, DEEPGRAM,
};
use crate::stt::ErrorMessage;

/// Options of the Deepgram [`Tts`]. Defaults match the reference plugin (the LiveKit docs show
/// the older `aura-asteria-en`; the plugin defaults to Aura-2).
///
/// ```
/// let opts = livekit_plugins_deepgram::TtsOptions::default();
/// assert_eq!(opts.model, "aura-2-andromeda-en");
/// assert_eq!(opts.sample_rate, 24_000);
/// ```
#[derive(Clone, PartialEq)]
pub struct TtsOptions {
    /// Model and voice, e.g. `aura-2-andromeda-en` (default), `aura-2-thalia-en`.
    pub model: String,
    /// Output sample rate (24 000 by default); audio is `linear16` mono.
    pub sample_rate: u32,
    /// Opt out of the Deepgram model improvement program (default `false`).
    pub mip_opt_out: bool,
    /// API key; `DEEPGRAM_API_KEY` when unset. Never printed by `Debug`.
    pub api_key: Option<String>,
}

impl Default for TtsOptions {
    fn default() -> Self {
        Self {
            model: "aura-2-andromeda-en".into(),
            sample_rate: 24_000,
            mip_opt_out: false,
            api_key: None,
        }
    }
}

impl std::fmt::Debug for TtsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtsOptions")
            .field("model", &self.model)
            .field("sample_rate", &self.sample_rate)
            .field("mip_opt_out", &self.mip_opt_out)
            .field("api_key", &redacted(&self.api_key))
            .finish()
    }
}

impl TtsOptions {
    fn url(&self, base: &Url, websocket: bool) -> Url {
        let mut q = Query::default();
        q.push("model", &self.model)
            .push("encoding", "linear16")
            .push("sample_rate", self.sample_rate)
            .push("mip_opt_out", self.mip_opt_out);
        if !websocket {
            // Raw samples rather than a WAV file.
            q.push("container", "none");
        }
        let mut url = endpoint(base, "/v1/speak", websocket);
        q.apply(&mut url);
        url
    }
}

/// Deepgram Aura text-to-speech, the counterpart of the reference's `deepgram.TTS`.
///
/// ```no_run
/// use livekit_plugins_deepgram::{Tts, TtsOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tts = Tts::new(TtsOptions::default())?; // reads DEEPGRAM_API_KEY
/// # Ok(()) }
/// ```
pub struct Tts {
    opts: TtsOptions,
    api_key: ApiKey,
    base_url: Url,
    http: reqwest::Client,
    dialer: Dialer,
}

impl std::fmt::Debug for Tts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tts")
            .field("options", &self.opts)
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Tts {
    /// Creates the client (API key from the options or `DEEPGRAM_API_KEY`, base URL from
    /// `DEEPGRAM_BASE_URL` or `https://api.deepgram.com`).
    pub fn new(options: TtsOptions) -> Result<Self, ConfigError> {
        if options.sample_rate == 0 {
            return Err(ConfigError::InvalidOption(
                "sample_rate must be positive".into(),
            ));
        }
        Ok(Self {
            api_key: resolve_api_key(options.api_key.as_deref())?,
            base_url: resolve_base_url(None)?,
            opts: options,
            http: reqwest::Client::new(),
            dialer: Dialer::Tcp,
        })
    }

    /// Uses another API root (`/v1/speak` is appended to it).
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.base_url = parse_base_url(base_url)?;
        Ok(self)
    }

    /// The options.
    pub fn options(&self) -> &TtsOptions {
        &self.opts
    }

    /// Routes connections through an in-memory pipe (tests on the paused clock).
    #[cfg(test)]
    pub(crate) fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }
}

#[async_trait]
impl core_tts::Tts for Tts {
    fn label(&self) -> String {
        "deepgram.TTS".into()
    }

    fn model(&self) -> String {
        self.opts.model.clone()
    }

    fn provider(&self) -> String {
        "deepgram".into()
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            aligned_transcript: false,
        }
    }

    fn sample_rate(&self) -> u32 {
        self.opts.sample_rate
    }

    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        let task = SpeakRestTask {
            http: self.http.clone(),
            url: self.opts.url(&self.base_url, false),
            api_key: self.api_key.clone(),
            text: text.to_string(),
            conn,
        };
        ChunkedStream::spawn("deepgram.TTS", conn, self.opts.sample_rate, 1, task)
    }

    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        let task = SpeakSocketTask {
            url: self.opts.url(&self.base_url, true),
            api_key: self.api_key.clone(),
            dialer: self.dialer.clone(),
            conn,
        };
        Ok(SynthesizeStream::spawn(
            "deepgram.TTS",
            conn,
            self.opts.sample_rate,
            1,
            task,
        ))
    }
}

/// One `POST /v1/speak`; the raw `linear16` body is pushed as it arrives.
struct SpeakRestTask {
    http: reqwest::Client,
    url: Url,
    api_key: ApiKey,
    text: String,
    conn: ApiConnectOptions,
}

#[async_trait]
impl ChunkedTtsTask for SpeakRestTask {
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
        let request = self
            .http
            .post(self.url.clone())
            .header(http::header::AUTHORIZATION, authorization(&self.api_key)?)
            .json(&json!({ "text": self.text }));
        let response = DEEPGRAM.send_http(request, self.conn.timeout).await?;
        let response = DEEPGRAM.check_status(response).await?;
        if let Some(id) = DEEPGRAM.request_id(response.headers()) {
            emitter.set_request_id(id);
        }
        DEEPGRAM
            .stream_pcm_body(response, self.conn.timeout, emitter)
            .await
    }
}

/// One WebSocket attempt of a [`SynthesizeStream`]: words go out as `Speak` messages, each
/// segment ends with `Flush`, and Deepgram's `Flushed` marks the end of that segment's audio.
struct SpeakSocketTask {
    url: Url,
    api_key: ApiKey,
    dialer: Dialer,
    conn: ApiConnectOptions,
}

/// The segment whose text is being sent.
struct OpenSegment {
    id: String,
    words: WordStream,
    has_text: bool,
}

#[async_trait]
impl TtsStreamTask for SpeakSocketTask {
    async fn run(
        &mut self,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError> {
        let headers = vec![(http::header::AUTHORIZATION, authorization(&self.api_key)?)];
        let (mut ws, request_id) = DEEPGRAM
            .connect_ws(&self.dialer, &self.url, headers, self.conn.timeout)
            .await?;
        if let Some(id) = request_id {
            emitter.set_request_id(id);
        }
        let result = self.session(&mut ws, input, emitter).await;
        let _ = ws.close(None).await;
        result
    }
}

impl SpeakSocketTask {
    async fn session(
        &mut self,
        ws: &mut WsStream,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError> {
        let mut open: Option<OpenSegment> = None;
        // Segments flushed to Deepgram whose audio is not complete yet, oldest first.
        let mut flushed: VecDeque<String> = VecDeque::new();
        // Whether the emitter has started the oldest pending segment.
        let mut emitting = false;
        let mut input_ended = false;
        let mut idle_deadline: Option<Instant> = None;
        loop {
            if input_ended && open.is_none() && flushed.is_empty() {
                let _ = DEEPGRAM.send_json(ws, &json!({"type": "Close"})).await;
                return Ok(());
            }
            tokio::select! {
                incoming = DEEPGRAM.next_incoming(ws) => {
                    match incoming? {
                        Incoming::Binary(pcm) => {
                            if !emitting {
                                let Some(id) = flushed.front().or(open.as_ref().map(|s| &s.id)) else {
                                    tracing::debug!("ignoring Deepgram audio outside a segment");
                                    continue;
                                };
                                emitter.start_segment(id.clone());
                                emitting = true;
                            }
                            if !emitter.push_pcm_bytes(&pcm).await {
                                // Nobody listens any more: stop generating.
                                let _ = DEEPGRAM.send_json(ws, &json!({"type": "Clear"})).await;
                                let _ = DEEPGRAM.send_json(ws, &json!({"type": "Close"})).await;
                                return Ok(());
                            }
                        }
                        Incoming::Text(text) => match serde_json::from_str::<SpeakMessage>(&text) {
                            Ok(SpeakMessage::Flushed {}) => {
                                if let Some(id) = flushed.pop_front() {
                                    if !emitting {
                                        emitter.start_segment(id);
                                    }
                                    emitting = false;
                                    emitter.end_segment().await;
                                }
                            }
                            Ok(SpeakMessage::Metadata { request_id }) => {
                                if let Some(id) = request_id {
                                    emitter.set_request_id(id);
                                }
                            }
                            Ok(SpeakMessage::Warning { description }) => {
                                tracing::warn!(warning = description.as_deref().unwrap_or(""), "Deepgram TTS warning");
                            }
                            Ok(SpeakMessage::Cleared {}) | Ok(SpeakMessage::Unknown) => {}
                            Ok(SpeakMessage::Error(err)) => {
                                return Err(ApiError::Connection {
                                    message: format!("Deepgram TTS error: {}", err.describe()),
                                    retryable: true,
                                });
                            }
                            Err(e) => tracing::warn!(error = %e, "skipping malformed Deepgram TTS message"),
                        },
                        Incoming::Closed(reason) => {
                            let detail = reason.map(|(c, r)| format!(" (code {c}: {r})")).unwrap_or_default();
                            return Err(ApiError::connection(format!("Deepgram closed the connection before the audio was complete{detail}")));
                        }
                    }
                    // Restarted after each message: a slow consumer does not count as silence.
                    idle_deadline = (!flushed.is_empty()).then(|| Instant::now() + self.conn.timeout);
                }
                item = input.recv(), if !input_ended => {
                    match item {
                        Some(TtsInput::Text(text)) => {
                            let segment = open.get_or_insert_with(|| OpenSegment {
                                id: uuid::Uuid::new_v4().simple().to_string(),
                                words: BasicWordTokenizer::new(false).word_stream(),
                                has_text: false,
                            });
                            let words = segment.words.push_text(&text);
                            segment.has_text |= !words.is_empty();
                            send_words(ws, words).await?;
                        }
                        Some(TtsInput::Flush) | None => {
                            input_ended |= item.is_none();
                            if let Some(mut segment) = open.take() {
                                let words = segment.words.flush();
                                segment.has_text |= !words.is_empty();
                                send_words(ws, words).await?;
                                if segment.has_text {
                                    DEEPGRAM.send_json(ws, &json!({"type": "Flush"})).await?;
                                    flushed.push_back(segment.id);
                                    idle_deadline = Some(Instant::now() + self.conn.timeout);
                                }
                            }
                        }
                    }
                }
                _ = sleep_until_opt(idle_deadline), if idle_deadline.is_some() => {
                    return Err(ApiError::Timeout(self.conn.timeout));
                }
            }
        }
    }
}

async fn send_words(ws: &mut WsStream, words: Vec<String>) -> Result<(), ApiError> {
    for word in words {
        DEEPGRAM
            .send_json(ws, &json!({"type": "Speak", "text": format!("{word} ")}))
            .await?;
    }
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Text messages of the speak socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum SpeakMessage {
    Flushed {},
    Cleared {},
    Metadata {
        #[serde(default)]
        request_id: Option<String>,
    },
    Warning {
        #[serde(default)]
        description: Option<String>,
    },
    Error(ErrorMessage),
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod stream_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::*;
    use livekit_agents::tts::Tts as _;
    use serde_json::Value;

    fn client(server: &FakeServer) -> Tts {
        Tts::new(TtsOptions {
            api_key: Some("test-key".into()),
            ..Default::default()
        })
        .unwrap()
        .with_base_url("ws://127.0.0.1:9")
        .unwrap()
        .with_dialer(Dialer::Memory(server.connector()))
    }

    async fn next_json(conn: &mut FakeConn) -> Value {
        match conn.recv().await {
            ClientMsg::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected JSON, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn speaks_words_flushes_segments_and_closes() {
        let mut server = FakeServer::start_memory()
            .refusing(livekit_plugin_test_support::models::deepgram_handshake);
        let tts = client(&server);
        let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
        stream.push_text("Hello the");
        stream.push_text("re, world.");
        stream.flush();
        stream.push_text("Bye now.");
        stream.end_input();

        let mut conn = server.next_conn().await;
        assert_eq!(conn.path, "/v1/speak");
        assert_eq!(conn.param("model"), Some("aura-2-andromeda-en"));
        assert_eq!(conn.param("encoding"), Some("linear16"));
        assert_eq!(conn.param("sample_rate"), Some("24000"));
        assert_eq!(conn.headers["authorization"], "Token test-key");
        let mut speak = Vec::new();
        loop {
            let v = next_json(&mut conn).await;
            if v["type"] == "Flush" {
                break;
            }
            assert_eq!(v["type"], "Speak");
            speak.push(v["text"].as_str().unwrap().to_string());
        }
        assert_eq!(speak, ["Hello ", "there, ", "world. "]);
        conn.send_json(
            json!({"type": "Metadata", "request_id": "tts-1", "model_name": "aura-2-andromeda-en"}),
        )
        .await;
        conn.send_binary([1i16; 1_800].iter().flat_map(|s| s.to_le_bytes()).collect())
            .await;
        conn.send_json(json!({"type": "Flushed", "sequence_id": 0}))
            .await;
        let mut second = Vec::new();
        loop {
            let v = next_json(&mut conn).await;
            if v["type"] == "Flush" {
                break;
            }
            second.push(v["text"].as_str().unwrap().to_string());
        }
        assert_eq!(second, ["Bye ", "now. "]);
        conn.send_binary([2i16; 600].iter().flat_map(|s| s.to_le_bytes()).collect())
            .await;
        conn.send_json(json!({"type": "Flushed", "sequence_id": 1}))
            .await;
        assert_eq!(next_json(&mut conn).await, json!({"type": "Close"}));

        let mut frames = Vec::new();
        while let Some(audio) = stream.next_audio().await {
            frames.push(audio.unwrap());
        }
        assert!(frames.iter().all(|f| f.request_id == "tts-1"));
        let finals: Vec<_> = frames.iter().filter(|f| f.is_final).collect();
        assert_eq!(finals.len(), 2, "one final frame per segment");
        assert_ne!(finals[0].segment_id, finals[1].segment_id);
        let first: Vec<i16> = frames
            .iter()
            .filter(|f| f.segment_id == finals[0].segment_id)
            .flat_map(|f| f.frame.data.iter().copied())
            .collect();
        assert_eq!(first, vec![1; 1_800]);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_after_flush_times_out() {
        let mut server = FakeServer::start_memory()
            .refusing(livekit_plugin_test_support::models::deepgram_handshake);
        let tts = client(&server);
        let conn_opts = ApiConnectOptions::default().with_max_retry(0);
        let mut stream = tts.stream(conn_opts).unwrap();
        stream.push_text("Anyone?");
        stream.end_input();
        let mut conn = server.next_conn().await;
        assert_eq!(next_json(&mut conn).await["type"], "Speak");
        assert_eq!(next_json(&mut conn).await["type"], "Flush");
        let err = stream.next_audio().await.unwrap().unwrap_err();
        assert!(matches!(err, ApiError::Timeout(_)), "{err:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_encoding_and_rate() {
        let base = Url::parse("https://api.deepgram.com").unwrap();
        let opts = TtsOptions::default();
        assert_eq!(
            opts.url(&base, true).as_str(),
            "wss://api.deepgram.com/v1/speak?model=aura-2-andromeda-en&encoding=linear16&sample_rate=24000&mip_opt_out=false"
        );
        assert!(opts.url(&base, false).as_str().ends_with("&container=none"));
        let with_key = TtsOptions {
            api_key: Some("dg-secret".into()),
            ..Default::default()
        };
        assert!(!format!("{with_key:?}").contains("dg-secret"));
    }
}
