//! Cartesia text-to-speech: streaming over `wss://api.cartesia.ai/tts/websocket` (with word
//! timestamps) and one-shot synthesis over `POST /tts/bytes`.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use livekit_agents::tokenize::{BasicSentenceTokenizer, SentenceStream, TokenStream};
use livekit_agents::tts::{
    self as core_tts, AudioEmitter, ChunkedStream, ChunkedTtsTask, SynthesizeStream,
    TtsCapabilities, TtsInput, TtsInputReceiver, TtsStreamTask,
};
use livekit_agents::types::{ApiConnectOptions, ApiError, TimedString};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use url::Url;

use crate::common::{
    endpoint, parse_base_url, redacted, request_headers, resolve_api_key, resolve_base_url, ApiKey,
    ConfigError, Dialer, Incoming, WsPool, WsStream, API_VERSION, CARTESIA,
};

/// Idle sockets are reused for this long (the reference's `max_session_duration`).
const POOL_MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// The reference plugin's default voice ("Katie - Friendly Fixer"). The LiveKit docs' examples
/// show `794f9389-aac1-45b6-b726-9d9369183238`; the plugin code, which this crate follows,
/// defaults to this one.
pub const DEFAULT_VOICE_ID: &str = "f786b574-daa5-4673-aa0c-cbe3e8534c02";

/// A Cartesia voice.
///
/// Only voice ids remain: Cartesia stopped accepting voice embeddings
/// (`{"mode": "embedding"}`) on every API version on 2026-06-01 (and API version 2026-03-01,
/// the one this plugin sends, refuses them), so the former `Voice::Embedding` is gone. Voices
/// made from embeddings can be migrated to ids in Cartesia's playground.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Voice {
    /// A voice id from the Cartesia library or a cloned voice.
    Id(String),
}

impl Voice {
    fn to_json(&self) -> Value {
        match self {
            Voice::Id(id) => json!({"mode": "id", "id": id}),
        }
    }
}

/// Options of the Cartesia [`Tts`]. Defaults match the reference plugin.
///
/// ```
/// use livekit_plugins_cartesia::{TtsOptions, Voice};
///
/// let opts = TtsOptions {
///     speed: Some(1.1),
///     emotion: Some("Excited".into()),
///     ..Default::default()
/// };
/// assert_eq!(opts.model, "sonic-3.5");
/// assert_eq!(opts.sample_rate, 24_000);
/// assert!(matches!(opts.voice, Voice::Id(_)));
/// ```
#[derive(Clone, PartialEq)]
pub struct TtsOptions {
    /// Model (`sonic-3.5` by default, Cartesia's recommended model since the 2026-06-01
    /// retirements; the reference used `sonic-3`, which is still served).
    pub model: String,
    /// Voice (default [`DEFAULT_VOICE_ID`]).
    pub voice: Voice,
    /// Language, ISO-639-1 (`en` by default).
    pub language: Option<String>,
    /// Speech speed (sonic-3: 0.6 to 2.0, 1.0 is normal). Unset by default.
    pub speed: Option<f32>,
    /// Volume (sonic-3: 0.5 to 2.0). Unset by default.
    pub volume: Option<f32>,
    /// Emotion (sonic-3 emotion control, e.g. `Excited`, `Calm`). Unset by default.
    pub emotion: Option<String>,
    /// Output sample rate (24 000 by default); audio is `pcm_s16le` mono.
    pub sample_rate: u32,
    /// Ask for word timestamps, which become aligned transcripts (default `true`).
    pub word_timestamps: bool,
    /// A pronunciation dictionary to apply.
    pub pronunciation_dict_id: Option<String>,
    /// The `Cartesia-Version` header ([`API_VERSION`] by default).
    pub api_version: String,
    /// API key; `CARTESIA_API_KEY` when unset. Never printed by `Debug`.
    pub api_key: Option<String>,
}

impl Default for TtsOptions {
    fn default() -> Self {
        Self {
            model: "sonic-3.5".into(),
            voice: Voice::Id(DEFAULT_VOICE_ID.into()),
            language: Some("en".into()),
            speed: None,
            volume: None,
            emotion: None,
            sample_rate: 24_000,
            word_timestamps: true,
            pronunciation_dict_id: None,
            api_version: API_VERSION.into(),
            api_key: None,
        }
    }
}

impl std::fmt::Debug for TtsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtsOptions")
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("language", &self.language)
            .field("speed", &self.speed)
            .field("volume", &self.volume)
            .field("emotion", &self.emotion)
            .field("sample_rate", &self.sample_rate)
            .field("word_timestamps", &self.word_timestamps)
            .field("pronunciation_dict_id", &self.pronunciation_dict_id)
            .field("api_version", &self.api_version)
            .field("api_key", &redacted(&self.api_key))
            .finish()
    }
}

impl TtsOptions {
    /// The generation request fields shared by the WebSocket and bytes endpoints.
    fn request_base(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("model_id".into(), json!(self.model));
        m.insert("voice".into(), self.voice.to_json());
        m.insert(
            "output_format".into(),
            json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": self.sample_rate}),
        );
        if let Some(lang) = &self.language {
            m.insert("language".into(), json!(lang));
        }
        if let Some(dict) = &self.pronunciation_dict_id {
            m.insert("pronunciation_dict_id".into(), json!(dict));
        }
        let mut generation = serde_json::Map::new();
        if let Some(speed) = self.speed {
            generation.insert("speed".into(), json!(speed));
        }
        if let Some(volume) = self.volume {
            generation.insert("volume".into(), json!(volume));
        }
        if let Some(emotion) = &self.emotion {
            generation.insert("emotion".into(), json!(emotion));
        }
        if !generation.is_empty() {
            m.insert("generation_config".into(), Value::Object(generation));
        }
        m
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.sample_rate == 0 {
            return Err(ConfigError::InvalidOption(
                "sample_rate must be positive".into(),
            ));
        }
        let has_controls = self.speed.is_some() || self.volume.is_some() || self.emotion.is_some();
        if has_controls && !self.model.starts_with("sonic-3") {
            tracing::warn!(model = %self.model, "speed, volume and emotion controls are documented for sonic-3 models");
        }
        Ok(())
    }
}

/// Cartesia text-to-speech, the counterpart of the reference's `cartesia.TTS`.
///
/// Streaming sends text sentence by sentence on one Cartesia context per segment (normally one
/// per stream) with `continue: true`, closes it with `continue: false`, and turns Cartesia's
/// word timestamps into aligned transcripts.
///
/// ```no_run
/// use livekit_plugins_cartesia::{Tts, TtsOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tts = Tts::new(TtsOptions::default())?; // reads CARTESIA_API_KEY
/// # Ok(()) }
/// ```
pub struct Tts {
    opts: TtsOptions,
    api_key: ApiKey,
    base_url: Url,
    http: reqwest::Client,
    dialer: Dialer,
    pool: Arc<WsPool>,
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
    /// Creates the client. The API key comes from `options.api_key` or `CARTESIA_API_KEY`, the
    /// base URL from `CARTESIA_BASE_URL` or `https://api.cartesia.ai`.
    pub fn new(options: TtsOptions) -> Result<Self, ConfigError> {
        options.check()?;
        Ok(Self {
            api_key: resolve_api_key(options.api_key.as_deref())?,
            base_url: resolve_base_url(None)?,
            opts: options,
            http: reqwest::Client::new(),
            dialer: Dialer::Tcp,
            pool: Arc::new(WsPool::new(POOL_MAX_IDLE)),
        })
    }

    /// Uses another API root (`https://…`, `http://…`; `/tts/websocket` and `/tts/bytes` are
    /// appended to it).
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

    fn websocket_url(&self) -> Url {
        let mut url = endpoint(&self.base_url, "/tts/websocket", true);
        url.query_pairs_mut()
            .append_pair("cartesia_version", &self.opts.api_version);
        url
    }
}

#[async_trait]
impl core_tts::Tts for Tts {
    fn label(&self) -> String {
        "cartesia.TTS".into()
    }

    fn model(&self) -> String {
        self.opts.model.clone()
    }

    fn provider(&self) -> String {
        "cartesia".into()
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            aligned_transcript: self.opts.word_timestamps,
        }
    }

    fn sample_rate(&self) -> u32 {
        self.opts.sample_rate
    }

    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        let task = BytesTask {
            http: self.http.clone(),
            url: endpoint(&self.base_url, "/tts/bytes", false),
            api_key: self.api_key.clone(),
            opts: self.opts.clone(),
            text: text.to_string(),
            conn,
        };
        ChunkedStream::spawn("cartesia.TTS", conn, self.opts.sample_rate, 1, task)
    }

    /// Opens a WebSocket ahead of the first stream and keeps it in the pool.
    async fn prewarm(&self) {
        let headers = match request_headers(&self.api_key, &self.opts.api_version) {
            Ok(h) => h,
            Err(_) => return,
        };
        let timeout = ApiConnectOptions::default().timeout;
        match CARTESIA
            .connect_ws(&self.dialer, &self.websocket_url(), headers, timeout)
            .await
        {
            Ok((ws, _)) => self.pool.put(ws),
            Err(e) => tracing::debug!(error = %e, "Cartesia prewarm failed"),
        }
    }

    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        let task = WebSocketTask {
            url: self.websocket_url(),
            api_key: self.api_key.clone(),
            opts: self.opts.clone(),
            dialer: self.dialer.clone(),
            pool: self.pool.clone(),
            conn,
        };
        Ok(SynthesizeStream::spawn(
            "cartesia.TTS",
            conn,
            self.opts.sample_rate,
            1,
            task,
        ))
    }
}

/// One `POST /tts/bytes`: the body is raw `pcm_s16le`, pushed as it arrives.
struct BytesTask {
    http: reqwest::Client,
    url: Url,
    api_key: ApiKey,
    opts: TtsOptions,
    text: String,
    conn: ApiConnectOptions,
}

#[async_trait]
impl ChunkedTtsTask for BytesTask {
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
        let mut body = self.opts.request_base();
        body.insert("transcript".into(), json!(self.text));
        let mut request = self.http.post(self.url.clone()).json(&Value::Object(body));
        for (name, value) in request_headers(&self.api_key, &self.opts.api_version)? {
            request = request.header(name, value);
        }
        let response = CARTESIA.send_http(request, self.conn.timeout).await?;
        let response = CARTESIA.check_status(response).await?;
        if let Some(id) = CARTESIA.request_id(response.headers()) {
            emitter.set_request_id(id);
        }
        CARTESIA
            .stream_pcm_body(response, self.conn.timeout, emitter)
            .await
    }
}

/// A Cartesia context: the text of one segment, synthesized as one continuous utterance.
struct Context {
    id: String,
    /// Text given but not sent yet (the tokenizer holds unfinished sentences).
    sentences: SentenceStream,
    /// Everything sent, to align the word timestamps with the original text.
    sent: String,
    /// How far `sent` is aligned with received word timestamps.
    aligned: usize,
    /// Alignment gave up (Cartesia's words did not match the text): words are emitted as sent.
    unaligned: bool,
    /// `continue: false` was sent; Cartesia will answer `done`.
    closed: bool,
    /// Some text was sent (an empty context is never opened at Cartesia).
    opened: bool,
}

/// One WebSocket attempt of a [`SynthesizeStream`].
struct WebSocketTask {
    url: Url,
    api_key: ApiKey,
    opts: TtsOptions,
    dialer: Dialer,
    pool: Arc<WsPool>,
    conn: ApiConnectOptions,
}

#[async_trait]
impl TtsStreamTask for WebSocketTask {
    async fn run(
        &mut self,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError> {
        let mut ws = match self.pool.take() {
            Some(ws) => ws,
            None => {
                let headers = request_headers(&self.api_key, &self.opts.api_version)?;
                let (ws, request_id) = CARTESIA
                    .connect_ws(&self.dialer, &self.url, headers, self.conn.timeout)
                    .await?;
                if let Some(id) = request_id {
                    emitter.set_request_id(id);
                }
                ws
            }
        };
        match self.session(&mut ws, input, emitter).await {
            Ok(true) => {
                // Every context finished: the socket is clean for the next stream.
                self.pool.put(ws);
                Ok(())
            }
            Ok(false) => {
                let _ = ws.close(None).await;
                Ok(())
            }
            Err(e) => {
                let _ = ws.close(None).await;
                Err(e)
            }
        }
    }
}

/// What the session loop should do after a server message.
enum Step {
    Continue,
    /// The context finished (Cartesia sent `done`).
    ContextDone,
    /// The consumer dropped the stream.
    Stop,
}

impl WebSocketTask {
    async fn session(
        &mut self,
        ws: &mut WsStream,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<bool, ApiError> {
        let mut context: Option<Context> = None;
        let mut input_ended = false;
        // While a closed context finishes, later text waits in the input channel: contexts run
        // one at a time so their audio never interleaves.
        let mut idle_deadline: Option<Instant> = None;
        loop {
            if input_ended && context.is_none() {
                return Ok(true);
            }
            let waiting_for_audio = context.as_ref().is_some_and(|c| c.opened);
            let can_read_input = !input_ended && context.as_ref().is_none_or(|c| !c.closed);
            tokio::select! {
                incoming = CARTESIA.next_incoming(ws), if waiting_for_audio => {
                    let step = match incoming? {
                        Incoming::Text(text) => self.handle_message(&text, context.as_mut(), emitter).await?,
                        Incoming::Binary(data) => {
                            tracing::debug!(len = data.len(), "ignoring unexpected binary frame from Cartesia");
                            Step::Continue
                        }
                        Incoming::Closed(reason) => {
                            let detail = reason.map(|(c, r)| format!(" (code {c}: {r})")).unwrap_or_default();
                            return Err(ApiError::connection(format!("Cartesia closed the connection before the audio was complete{detail}")));
                        }
                    };
                    // The timeout measures the provider's silence, not time spent waiting
                    // for a slow consumer: restart it after handling each message.
                    idle_deadline = context
                        .as_ref()
                        .filter(|c| c.closed)
                        .map(|_| Instant::now() + self.conn.timeout);
                    match step {
                        Step::Continue => {}
                        Step::ContextDone => {
                            context = None;
                            idle_deadline = None;
                            emitter.end_segment().await;
                        }
                        Step::Stop => {
                            if let Some(c) = &context {
                                let _ = CARTESIA.send_json(ws, &json!({"context_id": c.id, "cancel": true})).await;
                            }
                            return Ok(false);
                        }
                    }
                }
                item = input.recv(), if can_read_input => {
                    match item {
                        Some(TtsInput::Text(text)) => {
                            let ctx = context.get_or_insert_with(new_context);
                            let sentences = ctx.sentences.push_text(&text);
                            self.send_sentences(ws, ctx, emitter, sentences, false).await?;
                        }
                        Some(TtsInput::Flush) | None => {
                            if item.is_none() {
                                input_ended = true;
                            }
                            if let Some(ctx) = context.as_mut() {
                                let rest = ctx.sentences.flush();
                                self.send_sentences(ws, ctx, emitter, rest, true).await?;
                                if ctx.opened {
                                    idle_deadline = Some(Instant::now() + self.conn.timeout);
                                } else {
                                    // Only whitespace was pushed: nothing to synthesize.
                                    context = None;
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

    /// Sends sentences on the context (`close`: the last ones, with `continue: false`).
    async fn send_sentences(
        &self,
        ws: &mut WsStream,
        ctx: &mut Context,
        emitter: &AudioEmitter,
        sentences: Vec<String>,
        close: bool,
    ) -> Result<(), ApiError> {
        for sentence in sentences {
            if sentence.trim().is_empty() {
                continue;
            }
            if !ctx.opened {
                ctx.opened = true;
                emitter.start_segment(ctx.id.clone());
            }
            let transcript = format!("{sentence} ");
            self.send_request(ws, ctx, &transcript, true).await?;
            ctx.sent.push_str(&transcript);
        }
        if close && ctx.opened {
            // An empty transcript with `continue: false` ends the context.
            self.send_request(ws, ctx, " ", false).await?;
            ctx.sent.push(' ');
            ctx.closed = true;
        }
        Ok(())
    }

    async fn send_request(
        &self,
        ws: &mut WsStream,
        ctx: &Context,
        transcript: &str,
        more: bool,
    ) -> Result<(), ApiError> {
        let mut request = self.opts.request_base();
        request.insert("context_id".into(), json!(ctx.id));
        request.insert("transcript".into(), json!(transcript));
        request.insert("continue".into(), json!(more));
        request.insert("add_timestamps".into(), json!(self.opts.word_timestamps));
        // Whole sentences are sent: let Cartesia start generating at once.
        request.insert("max_buffer_delay_ms".into(), json!(0));
        CARTESIA.send_json(ws, &Value::Object(request)).await
    }

    async fn handle_message(
        &self,
        text: &str,
        context: Option<&mut Context>,
        emitter: &AudioEmitter,
    ) -> Result<Step, ApiError> {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "skipping malformed Cartesia message");
                return Ok(Step::Continue);
            }
        };
        let Some(ctx) = context else {
            return Ok(Step::Continue);
        };
        // A reused socket may still deliver the tail of an earlier (cancelled) context.
        if message.context_id.as_deref().is_some_and(|id| id != ctx.id) {
            tracing::debug!("ignoring a message of another Cartesia context");
            return Ok(Step::Continue);
        }
        if message.kind.as_deref() == Some("error") || message.error.is_some() {
            return Err(message.to_error());
        }
        if let Some(data) = message.data.as_deref().filter(|d| !d.is_empty()) {
            let pcm = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| {
                    ApiError::protocol(format!("Cartesia sent invalid base64 audio: {e}"))
                })?;
            if !emitter.push_pcm_bytes(&pcm).await {
                return Ok(Step::Stop);
            }
        }
        if let Some(ts) = &message.word_timestamps {
            emitter.push_timed_transcript(align_words(ctx, ts));
        }
        if message.done == Some(true) || message.kind.as_deref() == Some("done") {
            if !ctx.closed {
                // Text sent after this would be lost.
                return Err(ApiError::protocol(
                    "Cartesia ended the context before all text was sent",
                ));
            }
            return Ok(Step::ContextDone);
        }
        Ok(Step::Continue)
    }
}

fn new_context() -> Context {
    Context {
        id: uuid::Uuid::new_v4().to_string(),
        sentences: BasicSentenceTokenizer::default().sentence_stream(),
        sent: String::new(),
        aligned: 0,
        unaligned: false,
        closed: false,
        opened: false,
    }
}

/// Maps Cartesia's words back onto the text that was sent, so the aligned transcript keeps the
/// original punctuation and spacing: each word carries the text since the previous word.
fn align_words(ctx: &mut Context, ts: &WordTimestamps) -> Vec<TimedString> {
    let mut out = Vec::with_capacity(ts.words.len());
    for (i, word) in ts.words.iter().enumerate() {
        let start = ts.start.get(i).copied().unwrap_or(0.0);
        let end = ts.end.get(i).copied().unwrap_or(start);
        let rest = &ctx.sent[ctx.aligned..];
        let text = match (ctx.unaligned, rest.find(word.as_str())) {
            (false, Some(idx)) if !word.is_empty() => {
                let upto = idx + word.len();
                let piece = rest[..upto].to_string();
                ctx.aligned += upto;
                piece
            }
            _ => {
                if !ctx.unaligned {
                    tracing::debug!(
                        "Cartesia word timestamps do not match the sent text; using its words"
                    );
                }
                ctx.unaligned = true;
                format!("{word} ")
            }
        };
        out.push(TimedString::new(text, start, end));
    }
    out
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A message of the TTS WebSocket (`chunk`, `timestamps`, `done`, `flush_done`, `error`).
#[derive(Debug, Deserialize)]
struct ServerMessage {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    word_timestamps: Option<WordTimestamps>,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
}

impl ServerMessage {
    fn to_error(&self) -> ApiError {
        let text = self
            .message
            .clone()
            .or_else(|| self.error.clone())
            .or_else(|| self.title.clone())
            .unwrap_or_else(|| "unknown error".into());
        let text = match &self.error_code {
            Some(code) => format!("Cartesia error: {text} ({code})"),
            None => format!("Cartesia error: {text}"),
        };
        match self.status_code {
            Some(status) if status >= 400 => ApiError::status(status, text),
            _ => ApiError::Connection {
                message: text,
                retryable: true,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct WordTimestamps {
    #[serde(default)]
    words: Vec<String>,
    #[serde(default)]
    start: Vec<f64>,
    #[serde(default)]
    end: Vec<f64>,
}

#[cfg(test)]
#[path = "tts_stream_tests.rs"]
mod stream_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_reference_fields() {
        let opts = TtsOptions {
            speed: Some(1.2),
            emotion: Some("Calm".into()),
            volume: Some(0.8),
            ..Default::default()
        };
        let v = Value::Object(opts.request_base());
        assert_eq!(v["model_id"], "sonic-3.5");
        assert_eq!(v["voice"], json!({"mode": "id", "id": DEFAULT_VOICE_ID}));
        assert_eq!(
            v["output_format"],
            json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000})
        );
        assert_eq!(v["language"], "en");
        assert_eq!(v["generation_config"]["emotion"], "Calm");
        assert!((v["generation_config"]["speed"].as_f64().unwrap() - 1.2).abs() < 1e-6);
        let plain = TtsOptions {
            voice: Voice::Id("v".into()),
            ..Default::default()
        };
        let v = Value::Object(plain.request_base());
        assert_eq!(v["voice"], json!({"mode": "id", "id": "v"}));
        assert!(v.get("generation_config").is_none());
    }

    #[test]
    fn default_model_version_and_stt_model_are_in_the_documented_lists() {
        use livekit_plugin_test_support::models::accepts;
        assert!(accepts("cartesia", "tts", &TtsOptions::default().model));
        assert!(accepts("cartesia", "api_versions", crate::API_VERSION));
        assert!(accepts(
            "cartesia",
            "stt",
            &crate::stt::SttOptions::default().model
        ));
    }

    #[test]
    fn alignment_keeps_original_punctuation() {
        let mut ctx = new_context();
        ctx.sent = "Hello, world! How are you? ".into();
        let ts = WordTimestamps {
            words: vec!["Hello".into(), "world".into(), "How".into()],
            start: vec![0.0, 0.5, 1.0],
            end: vec![0.4, 0.9, 1.2],
        };
        let words = align_words(&mut ctx, &ts);
        let texts: Vec<_> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["Hello", ", world", "! How"]);
        assert_eq!((words[1].start_time, words[1].end_time), (0.5, 0.9));
        let ts = WordTimestamps {
            words: vec!["unknown".into(), "you?".into()],
            start: vec![1.3, 1.5],
            end: vec![1.4, 1.6],
        };
        let words = align_words(&mut ctx, &ts);
        assert_eq!(words[0].text, "unknown ");
        assert_eq!(words[1].text, "you? ");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let opts = TtsOptions {
            api_key: Some("sk_car_secret".into()),
            ..Default::default()
        };
        let tts = Tts::new(opts.clone()).unwrap();
        assert!(!format!("{opts:?}").contains("secret"));
        assert!(!format!("{tts:?}").contains("secret"));
    }
}
