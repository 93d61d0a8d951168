//! [`RealtimeModel`] and its session over the Realtime API WebSocket
//! (`wss://api.openai.com/v1/realtime?model=…`, GA event names).
//!
//! One I/O task owns the socket: client calls queue events for it, and it turns server events
//! into [`RealtimeEvent`]s and per-response streams. Per-response streams are fed through
//! unbounded forwarders, so a consumer that reads one stream slowly (or not at all) never
//! stalls the socket or the other streams.
//!
//! Item ids are the server's: user turns are reported with the server item id
//! ([`RealtimeEvent::InputAudioTranscriptionCompleted::item_id`]), assistant messages with
//! [`MessageGeneration::message_id`], and tool calls with [`FunctionCall::id`]. A session layer
//! that keeps those ids in its chat context lets [`update_chat_ctx`] send only real changes.
//!
//! [`update_chat_ctx`]: livekit_agents::llm::realtime::RealtimeSession::update_chat_ctx

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use livekit_agents::audio::AudioFrame;
use livekit_agents::llm::realtime::{
    self as core_rt, GenerationCreated, MessageGeneration, RealtimeCapabilities, RealtimeEvent,
};
use livekit_agents::llm::{
    ChatContent, ChatContext, ChatItem, ChatRole, FunctionCall, ToolChoice, ToolDefinition,
};
use livekit_agents::types::ApiError;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::config::{pcm_format, InputTranscription, NoiseReduction, TurnDetection};
use crate::audio_util::{
    base64_to_samples, samples_to_base64, RealtimeAudioInput, REALTIME_SAMPLE_RATE,
};
use crate::chat_format::image_url;
use crate::client::{parse_base_url, redacted, ConfigError, Endpoint};
use crate::ws::{self, event_type, str_field, Incoming, WsStream};

/// Default realtime model: `gpt-realtime-2.1`, the successor of `gpt-realtime` (which shuts
/// down on 2027-01-20; see `docs/providers.md`).
pub const DEFAULT_REALTIME_MODEL: &str = "gpt-realtime-2.1";
/// Default voice (the LiveKit Realtime docs).
pub const DEFAULT_REALTIME_VOICE: &str = "alloy";
/// How long one connection is used before it is refreshed.
pub const DEFAULT_MAX_SESSION_DURATION: Duration = Duration::from_secs(20 * 60);
/// Default input transcription model: `gpt-transcribe`, which OpenAI documents for committed
/// Realtime turns (what server turn detection produces). It replaces the reference's
/// `gpt-4o-mini-transcribe`, which shuts down on 2027-02-26 (see `docs/providers.md`). A
/// language is sent to it as the plural `languages`.
pub const DEFAULT_INPUT_TRANSCRIPTION_MODEL: &str = "gpt-transcribe";

/// How many pushed video frames a session keeps in the server's conversation by default
/// (the oldest is deleted when a newer one arrives), so the images the model reads, and pays
/// tokens for, stay bounded.
pub const DEFAULT_MAX_VIDEO_FRAMES: usize = 8;
/// Id prefix of the conversation items holding pushed video frames (they belong to the
/// session, not to the chat context, which never deletes them).
const VIDEO_ITEM_PREFIX: &str = "lk_video_";

/// What the model answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Modality {
    /// Audio with its transcript (the reference's `["text", "audio"]`).
    #[default]
    Audio,
    /// Text only (pair with a TTS for a "half-cascade" pipeline).
    Text,
}

/// Options of a [`RealtimeModel`]. `Default` gives the documented defaults.
///
/// The GA Realtime API has no `temperature` session field (it was removed from the beta), so
/// there is no temperature option.
#[derive(Clone, PartialEq)]
pub struct RealtimeOptions {
    /// Model. Default `gpt-realtime-2.1` ([`DEFAULT_REALTIME_MODEL`]).
    pub model: String,
    /// Output voice. Default `alloy`. Fixed once the model has spoken.
    pub voice: String,
    /// Output modality. Default audio (with transcript).
    pub modality: Modality,
    /// Session instructions at connect time (the agent usually sets them through
    /// `update_instructions`).
    pub instructions: Option<String>,
    /// Turn detection; `None` lets the client decide turns (commit audio and ask for replies
    /// itself). Default server VAD (threshold 0.5, 300 ms prefix padding, 500 ms silence,
    /// replies and interruptions by the server).
    pub turn_detection: Option<TurnDetection>,
    /// How user audio is transcribed; `None` disables user transcripts. Default
    /// `gpt-transcribe` ([`DEFAULT_INPUT_TRANSCRIPTION_MODEL`]).
    pub input_audio_transcription: Option<InputTranscription>,
    /// Input noise reduction. Default none.
    pub input_audio_noise_reduction: Option<NoiseReduction>,
    /// Output speech speed (0.25 to 1.5).
    pub speed: Option<f32>,
    /// Default tool choice. Default `auto`.
    pub tool_choice: ToolChoice,
    /// Maximum output tokens per response (`None`: the server's `inf`).
    pub max_response_output_tokens: Option<u32>,
    /// Live video: how many of the frames pushed with `push_video` stay in the server's
    /// conversation (older ones are deleted). `0` ignores video. Default
    /// [`DEFAULT_MAX_VIDEO_FRAMES`].
    pub max_video_frames: usize,
    /// Replace the connection with a fresh one after this long, at a moment no response is in
    /// progress (the server limits session length; the reference refreshes after 20 minutes).
    /// `None` keeps one connection.
    pub max_session_duration: Option<Duration>,
    /// API key; `None` reads `OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// API root; `None` reads `OPENAI_BASE_URL`, else `https://api.openai.com/v1`.
    pub base_url: Option<String>,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        Self {
            model: DEFAULT_REALTIME_MODEL.to_string(),
            voice: DEFAULT_REALTIME_VOICE.to_string(),
            modality: Modality::Audio,
            instructions: None,
            turn_detection: Some(TurnDetection::ServerVad {
                threshold: Some(0.5),
                prefix_padding_ms: Some(300),
                silence_duration_ms: Some(500),
                create_response: Some(true),
                interrupt_response: Some(true),
                idle_timeout_ms: None,
            }),
            input_audio_transcription: Some(InputTranscription::new(
                DEFAULT_INPUT_TRANSCRIPTION_MODEL,
            )),
            input_audio_noise_reduction: None,
            speed: None,
            tool_choice: ToolChoice::Auto,
            max_response_output_tokens: None,
            max_video_frames: DEFAULT_MAX_VIDEO_FRAMES,
            max_session_duration: Some(DEFAULT_MAX_SESSION_DURATION),
            api_key: None,
            base_url: None,
        }
    }
}

impl std::fmt::Debug for RealtimeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeOptions")
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("modality", &self.modality)
            .field("turn_detection", &self.turn_detection)
            .field("input_audio_transcription", &self.input_audio_transcription)
            .field(
                "input_audio_noise_reduction",
                &self.input_audio_noise_reduction,
            )
            .field("speed", &self.speed)
            .field("tool_choice", &self.tool_choice)
            .field("max_video_frames", &self.max_video_frames)
            .field("max_session_duration", &self.max_session_duration)
            .field("api_key", &redacted(&self.api_key))
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The OpenAI Realtime model (speech to speech).
///
/// ```no_run
/// use livekit_plugins_openai::realtime::{RealtimeModel, RealtimeOptions};
///
/// let model = RealtimeModel::new(RealtimeOptions { voice: "coral".into(), ..Default::default() })?;
/// # Ok::<(), livekit_plugins_openai::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RealtimeModel {
    opts: RealtimeOptions,
    endpoint: Endpoint,
    connect_timeout: Duration,
}

impl std::fmt::Debug for RealtimeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeModel")
            .field("base_url", &self.endpoint.base_url.as_str())
            .field("options", &self.opts)
            .finish()
    }
}

impl RealtimeModel {
    /// A Realtime model (key from the options or `OPENAI_API_KEY`).
    pub fn new(options: RealtimeOptions) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::openai(
            options.api_key.as_deref(),
            options.base_url.as_deref(),
            "OpenAI Realtime",
        )?;
        Ok(Self {
            opts: RealtimeOptions {
                api_key: None,
                ..options
            },
            endpoint,
            connect_timeout: Duration::from_secs(10),
        })
    }

    /// Connects to another API root.
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.endpoint.base_url = parse_base_url(base_url)?;
        Ok(self)
    }

    /// Bounds the WebSocket handshake and request acknowledgements (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The options (without the API key).
    pub fn options(&self) -> &RealtimeOptions {
        &self.opts
    }

    /// The `session.update` sent on connect.
    fn session_update(&self) -> Value {
        let o = &self.opts;
        let mut input = json!({
            "format": pcm_format(),
            "turn_detection": o.turn_detection.as_ref().map_or(Value::Null, TurnDetection::to_json),
            "transcription": o.input_audio_transcription.as_ref().map_or(Value::Null, InputTranscription::to_json),
        });
        if let Some(nr) = o.input_audio_noise_reduction {
            input["noise_reduction"] = nr.to_json();
        }
        let mut output = json!({"format": pcm_format(), "voice": o.voice});
        if let Some(speed) = o.speed {
            output["speed"] = json!(speed);
        }
        let mut session = json!({
            "type": "realtime",
            "model": o.model,
            "output_modalities": [match o.modality { Modality::Audio => "audio", Modality::Text => "text" }],
            "audio": {"input": input, "output": output},
            "tool_choice": tool_choice_json(&o.tool_choice),
        });
        if let Some(instructions) = &o.instructions {
            session["instructions"] = json!(instructions);
        }
        if let Some(max) = o.max_response_output_tokens {
            session["max_output_tokens"] = json!(max);
        }
        json!({"type": "session.update", "session": session})
    }
}

/// The Realtime form of a tool choice (`{"type": "function", "name": …}` for a named tool).
fn tool_choice_json(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::None => json!("none"),
        ToolChoice::Function(name) => json!({"type": "function", "name": name}),
    }
}

fn tools_json(tools: &[ToolDefinition]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                })
            })
            .collect(),
    )
}

#[async_trait]
impl core_rt::RealtimeModel for RealtimeModel {
    fn label(&self) -> String {
        "openai.realtime.RealtimeModel".to_string()
    }

    fn model(&self) -> String {
        self.opts.model.clone()
    }

    fn provider(&self) -> String {
        "openai".to_string()
    }

    fn capabilities(&self) -> RealtimeCapabilities {
        RealtimeCapabilities {
            message_truncation: true,
            turn_detection: self.opts.turn_detection.is_some(),
            user_transcription: self.opts.input_audio_transcription.is_some(),
            auto_tool_reply_generation: false,
            audio_output: self.opts.modality == Modality::Audio,
        }
    }

    async fn session(&self) -> Result<Box<dyn core_rt::RealtimeSession>, ApiError> {
        let session = RealtimeSession::connect(self).await?;
        Ok(Box::new(session))
    }
}

/// Input audio is appended in 100 ms chunks (the reference's size).
const APPEND_CHUNK_MS: u32 = 100;
/// Prefix of the client event ids of item creations and deletions (the rest is the item id),
/// so an `error` answering one fails the matching `update_chat_ctx` at once.
const ACK_EVENT_PREFIX: &str = "lk_item_";
/// Buffer of each per-response stream towards its consumer (the forwarder holds the rest).
const STREAM_BUFFER: usize = 64;

enum Outgoing {
    Event(Value),
    /// An `input_audio_buffer.append` of this much audio: the one kind of message that is
    /// dropped (oldest first) when the socket falls more than
    /// [`MAX_QUEUED_AUDIO`](livekit_agents::model_input::MAX_QUEUED_AUDIO) behind.
    Audio(Value, Duration),
    Close,
}

impl livekit_agents::model_input::ModelInput for Outgoing {
    fn audio_duration(&self) -> Option<Duration> {
        match self {
            Outgoing::Audio(_, d) => Some(*d),
            Outgoing::Event(_) | Outgoing::Close => None,
        }
    }
}

type Ack = oneshot::Sender<Result<(), ApiError>>;
type ReplyWaiter = oneshot::Sender<Result<GenerationCreated, ApiError>>;

/// What an item says, to recognize a server item in a chat context that gave it another id
/// (e.g. a user message committed from the transcript of the server's audio item).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signature {
    Message { role: String, text: String },
    Call { call_id: String },
    Output { call_id: String },
    Other,
}

impl Signature {
    /// The signature of a conversation item in the API's JSON form.
    fn of(item: &Value) -> Self {
        match str_field(item, "type") {
            "message" => {
                let text = item
                    .get("content")
                    .and_then(Value::as_array)
                    .map(|parts| {
                        parts
                            .iter()
                            .filter_map(|p| {
                                p.get("text")
                                    .or_else(|| p.get("transcript"))
                                    .and_then(Value::as_str)
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                Signature::Message {
                    role: str_field(item, "role").to_string(),
                    text: text.trim().to_string(),
                }
            }
            "function_call" => Signature::Call {
                call_id: str_field(item, "call_id").to_string(),
            },
            "function_call_output" => Signature::Output {
                call_id: str_field(item, "call_id").to_string(),
            },
            _ => Signature::Other,
        }
    }

    /// Whether two items say the same thing (messages must have text to be compared;
    /// surrounding whitespace is ignored, as transcripts are streamed in pieces).
    fn same(&self, other: &Signature) -> bool {
        match (self, other) {
            (
                Signature::Message { role: ra, text: a },
                Signature::Message { role: rb, text: b },
            ) => {
                let (a, b) = (a.trim(), b.trim());
                !a.is_empty() && ra == rb && a == b
            }
            (Signature::Other, _) | (_, Signature::Other) => false,
            _ => self == other,
        }
    }
}

/// A conversation item held by the server.
#[derive(Debug, Clone)]
struct RemoteItem {
    id: String,
    signature: Signature,
    /// Still being produced (a user turn awaiting its transcript, an assistant message being
    /// generated): never deleted by a context update, which could not know about it yet.
    in_progress: bool,
    /// The item as the API describes it (used to re-create tool calls and outputs after a
    /// reconnection).
    item: Value,
}

impl RemoteItem {
    /// The item to re-create on a new connection (text only: audio is not kept), or `None`
    /// for items with nothing to replay.
    fn replay(&self) -> Option<Value> {
        match &self.signature {
            Signature::Message { role, text } if !text.is_empty() => {
                let part = if role == "assistant" {
                    "output_text"
                } else {
                    "input_text"
                };
                Some(json!({
                    "id": self.id, "type": "message", "role": role,
                    "content": [{"type": part, "text": text}],
                }))
            }
            Signature::Call { .. } | Signature::Output { .. } => {
                let mut item = serde_json::Map::new();
                for key in ["id", "type", "call_id", "name", "arguments", "output"] {
                    if let Some(v) = self.item.get(key).filter(|v| !v.is_null()) {
                        item.insert(key.to_string(), v.clone());
                    }
                }
                Some(Value::Object(item))
            }
            _ => None,
        }
    }

    fn append_text(&mut self, delta: &str) {
        if let Signature::Message { text, .. } = &mut self.signature {
            text.push_str(delta);
        }
    }

    fn set_text(&mut self, new_text: &str) {
        if let Signature::Message { text, .. } = &mut self.signature {
            *text = new_text.trim().to_string();
        }
    }
}

impl Shared {
    fn item_mut(&mut self, id: &str) -> Option<&mut RemoteItem> {
        self.remote.iter_mut().find(|r| r.id == id)
    }
}

#[derive(Default)]
struct Shared {
    /// The conversation items the server holds, in order.
    remote: Vec<RemoteItem>,
    /// `generate_reply` calls waiting for their `response.created`, by client event id.
    replies: HashMap<String, ReplyWaiter>,
    /// Item creations and deletions waiting for the server's acknowledgement, by item id.
    acks: HashMap<String, Ack>,
    /// Ids of the video frame items sent, oldest first (at most `max_video_frames`).
    video: std::collections::VecDeque<String>,
    /// The I/O task ended.
    closed: bool,
}

/// A live Realtime API session (see [`RealtimeModel`]).
pub struct RealtimeSession {
    events: Option<mpsc::Receiver<RealtimeEvent>>,
    max_video_frames: usize,
    out: livekit_agents::model_input::InputSender<Outgoing>,
    shared: Arc<Mutex<Shared>>,
    audio_in: Mutex<RealtimeAudioInput>,
    timeout: Duration,
    io: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RealtimeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeSession").finish_non_exhaustive()
    }
}

impl Drop for RealtimeSession {
    fn drop(&mut self) {
        self.io.abort();
    }
}

/// An unbounded-in, bounded-out channel: the producer never waits; a task moves items to the
/// consumer as it reads them. Dropping the sender ends the receiver after the backlog.
fn forwarder<T: Send + 'static>() -> (mpsc::UnboundedSender<T>, mpsc::Receiver<T>) {
    let (utx, mut urx) = mpsc::unbounded_channel::<T>();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        while let Some(item) = urx.recv().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    (utx, rx)
}

impl RealtimeSession {
    async fn connect(model: &RealtimeModel) -> Result<Self, ApiError> {
        let mut url = model.endpoint.url("realtime", true);
        url.query_pairs_mut()
            .append_pair("model", &model.opts.model);
        let mut socket = ws::connect(&model.endpoint, &url, model.connect_timeout).await?;
        ws::send_json(&mut socket, &model.session_update()).await?;

        let (events_tx, events_rx) = forwarder();
        let (out_tx, out_rx) = livekit_agents::model_input::channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let io = IoTask {
            socket,
            reconnect: Reconnect {
                endpoint: model.endpoint.clone(),
                url: url.clone(),
                timeout: model.connect_timeout,
                attempts: RECONNECT_ATTEMPTS,
                max_duration: model.opts.max_session_duration,
            },
            config: model.session_update()["session"].clone(),
            unstable: 0,
            out: out_rx,
            events: events_tx,
            shared: shared.clone(),
            transcription: model.opts.input_audio_transcription.is_some(),
            responses: HashMap::new(),
            input_partial: HashMap::new(),
            provider: model.endpoint.provider.clone(),
        };
        Ok(Self {
            events: Some(events_rx),
            max_video_frames: model.opts.max_video_frames,
            out: out_tx,
            shared,
            audio_in: Mutex::new(RealtimeAudioInput::new(APPEND_CHUNK_MS)),
            timeout: model.connect_timeout,
            io: tokio::spawn(io.run()),
        })
    }

    fn send(&self, event: Value) -> Result<(), ApiError> {
        self.out
            .send(Outgoing::Event(event))
            .map_err(|_| ApiError::connection("the realtime session is closed"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait_ack(
        &self,
        rx: oneshot::Receiver<Result<(), ApiError>>,
        what: &str,
    ) -> Result<(), ApiError> {
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => Err(ApiError::Timeout(self.timeout)),
            Ok(Err(_)) => Err(ApiError::connection(format!(
                "the realtime session closed before {what} was acknowledged"
            ))),
            Ok(Ok(result)) => result,
        }
    }
}

/// What a context update sends.
#[derive(Debug, Default, PartialEq)]
struct DiffPlan {
    /// Remote item ids to delete.
    delete: Vec<String>,
    /// Indexes into the wanted items to create, with the `previous_item_id` for each.
    create: Vec<(usize, String)>,
}

/// Matches the wanted items against the server's: by id first, then (for items the chat
/// context holds under another id) by content, in order. Unmatched server items are deleted
/// unless still in progress; unmatched wanted items are created after their predecessor.
fn diff_items(remote: &[RemoteItem], wanted: &[(&str, Value)]) -> DiffPlan {
    let mut remote_used = vec![false; remote.len()];
    let mut matched: Vec<Option<usize>> = wanted
        .iter()
        .map(|(id, _)| remote.iter().position(|r| r.id == *id))
        .collect();
    for m in matched.iter().flatten() {
        remote_used[*m] = true;
    }
    for (i, (_, item)) in wanted.iter().enumerate() {
        if matched[i].is_some() {
            continue;
        }
        let sig = Signature::of(item);
        if let Some(r) =
            (0..remote.len()).find(|&r| !remote_used[r] && remote[r].signature.same(&sig))
        {
            remote_used[r] = true;
            matched[i] = Some(r);
        }
    }
    let mut plan = DiffPlan::default();
    for (r, item) in remote.iter().enumerate() {
        // Video frames belong to the session (see `push_video`), not to the chat context.
        if !remote_used[r] && !item.in_progress && !item.id.starts_with(VIDEO_ITEM_PREFIX) {
            plan.delete.push(item.id.clone());
        }
    }
    let mut previous = "root".to_string();
    for (i, (id, _)) in wanted.iter().enumerate() {
        match matched[i] {
            Some(r) => previous = remote[r].id.clone(),
            None => {
                plan.create.push((i, previous.clone()));
                previous = id.to_string();
            }
        }
    }
    plan
}

/// The longest `call_id` the Realtime API accepts.
pub(crate) const MAX_CALL_ID_LEN: usize = 32;

/// A `call_id` the Realtime API accepts: ids up to [`MAX_CALL_ID_LEN`] characters pass
/// unchanged; a longer one (another provider's, or a Chat Completions id) becomes its first 16
/// characters followed by 16 hex digits of a hash of the whole id. The mapping is a pure
/// function of the id, so a call and its output (and every later update of the same context)
/// always get the same short id, and distinct long ids stay distinct.
pub(crate) fn realtime_call_id(call_id: &str) -> String {
    if call_id.len() <= MAX_CALL_ID_LEN && call_id.is_ascii() {
        return call_id.to_string();
    }
    // FNV-1a (64-bit): stable across builds and platforms.
    let hash = call_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let prefix: String = call_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(16)
        .collect();
    format!("{prefix}{hash:016x}")
}

/// A chat item as a Realtime conversation item, or `None` for kinds the API has no form for.
fn conversation_item(item: &ChatItem) -> Option<Value> {
    match item {
        ChatItem::Message(m) => {
            let role = match m.role {
                ChatRole::System | ChatRole::Developer => "system",
                ChatRole::User => "user",
                ChatRole::Assistant => "assistant",
            };
            let text_type = if m.role == ChatRole::Assistant {
                "output_text"
            } else {
                "input_text"
            };
            let content: Vec<Value> = m
                .content
                .iter()
                .filter_map(|c| match c {
                    ChatContent::Text { text } => Some(json!({"type": text_type, "text": text})),
                    ChatContent::Audio { transcript } => {
                        Some(json!({"type": text_type, "text": transcript}))
                    }
                    ChatContent::Image(img) if m.role == ChatRole::User => {
                        let url = image_url(img);
                        if url.starts_with("data:") {
                            Some(json!({"type": "input_image", "image_url": url}))
                        } else {
                            // The Realtime API takes images only as base64 data URIs; a
                            // plain URL would make the whole item (and update) fail. As the
                            // reference does, the image is left out.
                            tracing::warn!(
                                item = %m.id,
                                "the OpenAI Realtime API accepts images only as data URIs; skipping an image given as a URL (pass its bytes to send it)"
                            );
                            None
                        }
                    }
                    ChatContent::Image(_) => None,
                })
                .collect();
            if content.is_empty() {
                // Nothing the API can hold (e.g. an assistant message with only an image).
                return None;
            }
            Some(json!({"id": m.id, "type": "message", "role": role, "content": content}))
        }
        ChatItem::FunctionCall(c) => Some(json!({
            "id": c.id, "type": "function_call", "call_id": realtime_call_id(&c.call_id), "name": c.name, "arguments": c.arguments,
        })),
        ChatItem::FunctionCallOutput(o) => Some(json!({
            "id": o.id, "type": "function_call_output", "call_id": realtime_call_id(&o.call_id), "output": o.output,
        })),
        ChatItem::AgentHandoff(_) => None,
    }
}

#[async_trait]
impl core_rt::RealtimeSession for RealtimeSession {
    fn take_events(&mut self) -> Option<mpsc::Receiver<RealtimeEvent>> {
        self.events.take()
    }

    async fn update_instructions(&self, instructions: &str) -> Result<(), ApiError> {
        self.send(json!({"type": "session.update", "session": {"type": "realtime", "instructions": instructions}}))
    }

    async fn update_chat_ctx(&self, chat_ctx: &ChatContext) -> Result<(), ApiError> {
        let wanted: Vec<(&str, Value)> = chat_ctx
            .items()
            .iter()
            .filter_map(|it| conversation_item(it).map(|v| (it.id(), v)))
            .collect();
        let mut waits = Vec::new();
        {
            let mut shared = self.lock();
            if shared.closed {
                return Err(ApiError::connection("the realtime session is closed"));
            }
            let plan = diff_items(&shared.remote, &wanted);
            for id in plan.delete {
                let (tx, rx) = oneshot::channel();
                shared.acks.insert(id.clone(), tx);
                waits.push((rx, format!("deletion of {id}")));
                self.send(json!({
                    "type": "conversation.item.delete",
                    "event_id": format!("{ACK_EVENT_PREFIX}{id}"),
                    "item_id": id,
                }))?;
            }
            for (index, previous) in plan.create {
                let (id, item) = &wanted[index];
                let (tx, rx) = oneshot::channel();
                shared.acks.insert(id.to_string(), tx);
                waits.push((rx, format!("creation of {id}")));
                self.send(json!({
                    "type": "conversation.item.create",
                    "event_id": format!("{ACK_EVENT_PREFIX}{id}"),
                    "previous_item_id": previous,
                    "item": item,
                }))?;
            }
        }
        for (rx, what) in waits {
            self.wait_ack(rx, &what).await?;
        }
        Ok(())
    }

    async fn update_tools(&self, tools: &[ToolDefinition]) -> Result<(), ApiError> {
        self.send(json!({"type": "session.update", "session": {"type": "realtime", "tools": tools_json(tools)}}))
    }

    async fn update_tool_choice(&self, tool_choice: ToolChoice) -> Result<(), ApiError> {
        self.send(json!({"type": "session.update", "session": {"type": "realtime", "tool_choice": tool_choice_json(&tool_choice)}}))
    }

    fn push_audio(&self, frame: &AudioFrame) {
        let chunks = self
            .audio_in
            .lock()
            .map(|mut a| a.push(frame))
            .unwrap_or_default();
        for chunk in chunks {
            let duration =
                Duration::from_secs_f64(chunk.len() as f64 / f64::from(REALTIME_SAMPLE_RATE));
            let append =
                json!({"type": "input_audio_buffer.append", "audio": samples_to_base64(&chunk)});
            let _ = self.out.send(Outgoing::Audio(append, duration));
        }
    }

    /// Adds the frame to the conversation as a user message holding one `input_image` (a
    /// base64 data URI), as the reference does. The session keeps the newest
    /// `max_video_frames` frames there: pushing one more deletes the oldest. Chat context
    /// updates leave these items alone, and they are not restored after a reconnection. An
    /// image given as a URL is skipped with a warning (the API takes data URIs only).
    fn push_video(&self, image: &livekit_agents::llm::ImageContent) {
        if self.max_video_frames == 0 {
            return;
        }
        let url = image_url(image);
        if !url.starts_with("data:") {
            tracing::warn!("the OpenAI Realtime API accepts images only as data URIs; skipping a video frame given as a URL");
            return;
        }
        // Item ids are at most 32 characters.
        let id = format!(
            "{VIDEO_ITEM_PREFIX}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..20]
        );
        let evicted: Vec<String> = {
            let mut shared = self.lock();
            if shared.closed {
                return;
            }
            shared.video.push_back(id.clone());
            let excess = shared.video.len().saturating_sub(self.max_video_frames);
            shared.video.drain(..excess).collect()
        };
        let _ = self.send(json!({
            "type": "conversation.item.create",
            "event_id": format!("video_{}", &id[VIDEO_ITEM_PREFIX.len()..]),
            "item": {
                "id": id,
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "image_url": url}],
            },
        }));
        for old in evicted {
            let _ = self.send(json!({"type": "conversation.item.delete", "item_id": old}));
        }
    }

    fn commit_audio(&self) {
        let rest = self.audio_in.lock().ok().and_then(|mut a| a.flush(false));
        if let Some(rest) = rest {
            let _ = self.send(
                json!({"type": "input_audio_buffer.append", "audio": samples_to_base64(&rest)}),
            );
        }
        let _ = self.send(json!({"type": "input_audio_buffer.commit"}));
    }

    fn clear_audio(&self) {
        if let Ok(mut a) = self.audio_in.lock() {
            a.clear();
        }
        let _ = self.send(json!({"type": "input_audio_buffer.clear"}));
    }

    async fn generate_reply(
        &self,
        instructions: Option<&str>,
    ) -> Result<GenerationCreated, ApiError> {
        let event_id = format!(
            "response_create_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let (tx, rx) = oneshot::channel();
        self.lock().replies.insert(event_id.clone(), tx);
        let mut response = json!({"metadata": {"client_event_id": event_id}});
        if let Some(instr) = instructions {
            response["instructions"] = json!(instr);
        }
        if let Err(e) = self
            .send(json!({"type": "response.create", "event_id": event_id, "response": response}))
        {
            self.lock().replies.remove(&event_id);
            return Err(e);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => {
                self.lock().replies.remove(&event_id);
                Err(ApiError::Timeout(self.timeout))
            }
            Ok(Err(_)) => Err(ApiError::connection(
                "the realtime session closed before the reply started",
            )),
            Ok(Ok(result)) => result,
        }
    }

    fn interrupt(&self) {
        let _ = self.send(json!({"type": "response.cancel"}));
    }

    async fn truncate(
        &self,
        message_id: &str,
        audio_end_ms: u64,
        audio_transcript: Option<&str>,
    ) -> Result<(), ApiError> {
        if let Some(heard) = audio_transcript {
            // The chat context will hold what the user heard; remember it to recognize it.
            if let Some(item) = self.lock().item_mut(message_id) {
                item.set_text(heard);
            }
        }
        self.send(json!({
            "type": "conversation.item.truncate",
            "item_id": message_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms,
        }))
    }

    async fn close(&self) {
        let _ = self.out.send(Outgoing::Close);
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Streams of one message being generated.
struct MessageSinks {
    text: mpsc::UnboundedSender<String>,
    audio: mpsc::UnboundedSender<AudioFrame>,
}

/// Streams of one response.
struct ResponseSinks {
    messages: mpsc::UnboundedSender<MessageGeneration>,
    functions: mpsc::UnboundedSender<FunctionCall>,
    open: HashMap<String, MessageSinks>,
}

/// Error codes that only mean a request found nothing to do (cancelling when no response is
/// active, committing an empty buffer): logged, not reported.
const BENIGN_ERROR_CODES: &[&str] = &[
    "response_cancel_not_active",
    "input_audio_buffer_commit_empty",
];

/// How a dropped connection is re-established.
#[derive(Clone)]
struct Reconnect {
    endpoint: Endpoint,
    url: url::Url,
    timeout: Duration,
    /// Attempts before the session gives up.
    attempts: u32,
    /// Refresh the connection after this long (when idle).
    max_duration: Option<Duration>,
}

/// Reconnection attempts after a dropped connection (waiting 0.1 s, then 2 s between them, as
/// the core's connect options do).
const RECONNECT_ATTEMPTS: u32 = 3;

struct IoTask {
    socket: WsStream,
    reconnect: Reconnect,
    /// The session configuration as last sent (connect-time settings plus updates), replayed
    /// on a new connection.
    config: Value,
    /// Connections lost since the server last sent anything (a server that accepts and drops
    /// every connection must not be retried forever).
    unstable: u32,
    out: livekit_agents::model_input::InputReceiver<Outgoing>,
    events: mpsc::UnboundedSender<RealtimeEvent>,
    shared: Arc<Mutex<Shared>>,
    transcription: bool,
    responses: HashMap<String, ResponseSinks>,
    input_partial: HashMap<String, String>,
    provider: String,
}

impl IoTask {
    async fn run(mut self) {
        let mut connected_at = tokio::time::Instant::now();
        let end = loop {
            let refresh_at = self.reconnect.max_duration.map(|d| connected_at + d);
            let lost = tokio::select! {
                _ = sleep_until_opt(refresh_at), if self.responses.is_empty() => {
                    tracing::debug!("refreshing the realtime connection");
                    let _ = self.socket.close(None).await;
                    if let Err(e) = self.reconnect().await {
                        break Some(e);
                    }
                    connected_at = tokio::time::Instant::now();
                    continue;
                }
                outgoing = self.out.recv() => match outgoing {
                    Some(Outgoing::Event(ev) | Outgoing::Audio(ev, _)) => {
                        if event_type(&ev) == "session.update" {
                            self.remember_config(&ev);
                        }
                        ws::send_json(&mut self.socket, &ev).await.err()
                    }
                    Some(Outgoing::Close) | None => {
                        let _ = self.socket.close(None).await;
                        break None;
                    }
                },
                incoming = ws::next_event(&mut self.socket) => match incoming {
                    Ok(Incoming::Event(ev)) => {
                        self.unstable = 0;
                        self.on_event(ev);
                        None
                    }
                    Ok(Incoming::Closed(reason)) => Some(ApiError::connection(format!(
                        "{} closed the session{}",
                        self.provider,
                        reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    ))),
                    Err(e) => Some(e),
                },
            };
            let Some(error) = lost else { continue };
            self.unstable += 1;
            if matches!(error, ApiError::Protocol { .. }) || self.unstable > self.reconnect.attempts
            {
                break Some(error);
            }
            tracing::warn!(%error, "realtime connection lost, reconnecting");
            match self.reconnect().await {
                Ok(()) => {
                    connected_at = tokio::time::Instant::now();
                    self.emit(RealtimeEvent::Error {
                        error: ApiError::connection(format!(
                            "{error}; reconnected (responses in progress were lost)"
                        )),
                        recoverable: true,
                    })
                }
                Err(e) => break Some(e),
            }
        };
        {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.closed = true;
            // Dropping the waiters tells callers the session ended.
            shared.replies.clear();
            shared.acks.clear();
        }
        self.responses.clear();
        if let Some(error) = end {
            tracing::warn!(%error, "realtime session ended");
            let _ = self.events.send(RealtimeEvent::Error {
                error,
                recoverable: false,
            });
        }
    }

    /// Merges the fields of an outgoing `session.update` into the remembered configuration.
    fn remember_config(&mut self, ev: &Value) {
        if let (Some(config), Some(update)) = (
            self.config.as_object_mut(),
            ev.get("session").and_then(Value::as_object),
        ) {
            for (k, v) in update {
                config.insert(k.clone(), v.clone());
            }
        }
    }

    /// Opens a new connection and restores the session on it: configuration, then the
    /// conversation (as text). Responses in progress end; waiting calls fail.
    async fn reconnect(&mut self) -> Result<(), ApiError> {
        let r = self.reconnect.clone();
        let mut last = ApiError::connection("no reconnection attempt");
        for attempt in 0..r.attempts {
            let wait = if attempt == 0 {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(2)
            };
            tokio::time::sleep(wait).await;
            match ws::connect(&r.endpoint, &r.url, r.timeout).await {
                Ok(socket) => {
                    self.socket = socket;
                    self.responses.clear();
                    self.input_partial.clear();
                    let items: Vec<Value> = {
                        let mut shared = self.lock();
                        shared.replies.clear();
                        shared.acks.clear();
                        // Frames are not replayed (the next ones arrive within seconds).
                        shared.video.clear();
                        std::mem::take(&mut shared.remote)
                            .iter()
                            .filter(|i| !i.in_progress)
                            .filter_map(RemoteItem::replay)
                            .collect()
                    };
                    let update = json!({"type": "session.update", "session": self.config});
                    ws::send_json(&mut self.socket, &update).await?;
                    let mut previous = "root".to_string();
                    for item in items {
                        let id = str_field(&item, "id").to_string();
                        ws::send_json(
                            &mut self.socket,
                            &json!({"type": "conversation.item.create", "previous_item_id": previous, "item": item}),
                        )
                        .await?;
                        previous = id;
                    }
                    return Ok(());
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, attempt = attempt + 1, "realtime reconnection failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, ev: RealtimeEvent) {
        let _ = self.events.send(ev);
    }

    fn on_event(&mut self, ev: Value) {
        let kind = event_type(&ev).to_string();
        match kind.as_str() {
            "session.created" | "session.updated" => {
                tracing::debug!(event = %kind, "realtime session configured")
            }
            "input_audio_buffer.speech_started" => self.emit(RealtimeEvent::InputSpeechStarted),
            "input_audio_buffer.speech_stopped" => self.emit(RealtimeEvent::InputSpeechStopped {
                user_transcription_enabled: self.transcription,
            }),
            "conversation.item.added" | "conversation.item.created" | "conversation.item.done" => {
                let Some(item) = ev.get("item") else { return };
                let id = str_field(item, "id").to_string();
                let previous = ev
                    .get("previous_item_id")
                    .and_then(|p| p.as_str())
                    .map(str::to_string);
                let signature = Signature::of(item);
                let transcription = self.transcription;
                let mut shared = self.lock();
                match shared.item_mut(&id) {
                    Some(existing) => {
                        // `done` carries the final content (e.g. the assistant's transcript).
                        if kind == "conversation.item.done" && signature != Signature::Other {
                            if let Signature::Message { text, .. } = &signature {
                                if !text.is_empty() {
                                    existing.signature = signature.clone();
                                }
                            } else {
                                existing.signature = signature.clone();
                            }
                        }
                    }
                    None => {
                        let awaiting_transcript = transcription
                            && str_field(item, "role") == "user"
                            && item
                                .get("content")
                                .and_then(Value::as_array)
                                .is_some_and(|c| {
                                    c.iter().any(|p| str_field(p, "type") == "input_audio")
                                })
                            && matches!(&signature, Signature::Message { text, .. } if text.is_empty());
                        let at = match previous.as_deref() {
                            Some("root") => 0,
                            Some(p) => shared
                                .remote
                                .iter()
                                .position(|x| x.id == p)
                                .map_or(shared.remote.len(), |i| i + 1),
                            None => shared.remote.len(),
                        };
                        shared.remote.insert(
                            at,
                            RemoteItem {
                                id: id.clone(),
                                signature,
                                in_progress: awaiting_transcript,
                                item: item.clone(),
                            },
                        );
                    }
                }
                if let Some(ack) = shared.acks.remove(&id) {
                    let _ = ack.send(Ok(()));
                }
            }
            "conversation.item.deleted" => {
                let id = str_field(&ev, "item_id").to_string();
                let mut shared = self.lock();
                shared.remote.retain(|x| x.id != id);
                if let Some(ack) = shared.acks.remove(&id) {
                    let _ = ack.send(Ok(()));
                }
            }
            "conversation.item.input_audio_transcription.delta" => {
                let item_id = str_field(&ev, "item_id").to_string();
                let text = self.input_partial.entry(item_id.clone()).or_default();
                text.push_str(str_field(&ev, "delta"));
                let transcript = text.clone();
                self.emit(RealtimeEvent::InputAudioTranscriptionCompleted {
                    item_id,
                    transcript,
                    is_final: false,
                });
            }
            "conversation.item.input_audio_transcription.completed" => {
                let item_id = str_field(&ev, "item_id").to_string();
                self.input_partial.remove(&item_id);
                let transcript = str_field(&ev, "transcript").to_string();
                if let Some(item) = self.lock().item_mut(&item_id) {
                    item.set_text(&transcript);
                    item.in_progress = false;
                }
                self.emit(RealtimeEvent::InputAudioTranscriptionCompleted {
                    item_id,
                    transcript,
                    is_final: true,
                });
            }
            "conversation.item.input_audio_transcription.failed" => {
                let item_id = str_field(&ev, "item_id").to_string();
                self.input_partial.remove(&item_id);
                if let Some(item) = self.lock().item_mut(&item_id) {
                    item.in_progress = false;
                }
                self.emit(RealtimeEvent::Error {
                    error: ws::server_error(&self.provider, &ev),
                    recoverable: true,
                });
            }
            "response.created" => self.on_response_created(&ev),
            "response.output_item.added" => {
                let response_id = str_field(&ev, "response_id").to_string();
                let Some(item) = ev.get("item") else { return };
                if str_field(item, "type") == "message" {
                    let message_id = str_field(item, "id").to_string();
                    {
                        let mut shared = self.lock();
                        match shared.item_mut(&message_id) {
                            Some(existing) => existing.in_progress = true,
                            None => shared.remote.push(RemoteItem {
                                id: message_id.clone(),
                                signature: Signature::Message {
                                    role: "assistant".into(),
                                    text: String::new(),
                                },
                                in_progress: true,
                                item: Value::Null,
                            }),
                        }
                    }
                    if let Some(resp) = self.responses.get_mut(&response_id) {
                        let (text_tx, text_rx) = forwarder();
                        let (audio_tx, audio_rx) = forwarder();
                        resp.open.insert(
                            message_id.clone(),
                            MessageSinks {
                                text: text_tx,
                                audio: audio_tx,
                            },
                        );
                        let _ = resp.messages.send(MessageGeneration {
                            message_id,
                            text_stream: text_rx,
                            audio_stream: audio_rx,
                        });
                    }
                }
            }
            "response.output_audio.delta" | "response.audio.delta" => {
                let Some(sinks) = self.message(&ev) else {
                    return;
                };
                match base64_to_samples(str_field(&ev, "delta")) {
                    Ok(samples) if !samples.is_empty() => {
                        if let Ok(frame) = AudioFrame::new(samples, REALTIME_SAMPLE_RATE, 1) {
                            let _ = sinks.audio.send(frame);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "undecodable audio delta dropped"),
                }
            }
            "response.output_audio_transcript.delta"
            | "response.audio_transcript.delta"
            | "response.output_text.delta"
            | "response.text.delta" => {
                let delta = str_field(&ev, "delta");
                if let Some(item) = self.lock().item_mut(str_field(&ev, "item_id")) {
                    item.append_text(delta);
                }
                if let Some(sinks) = self.message(&ev) {
                    let _ = sinks.text.send(delta.to_string());
                }
            }
            "response.output_item.done" => {
                let response_id = str_field(&ev, "response_id").to_string();
                let Some(item) = ev.get("item") else { return };
                let Some(resp) = self.responses.get_mut(&response_id) else {
                    return;
                };
                match str_field(item, "type") {
                    "function_call" => {
                        let call = FunctionCall::new(
                            str_field(item, "call_id"),
                            str_field(item, "name"),
                            str_field(item, "arguments"),
                        );
                        let call = FunctionCall {
                            id: str_field(item, "id").to_string(),
                            ..call
                        };
                        let _ = resp.functions.send(call);
                    }
                    "message" => {
                        let id = str_field(item, "id");
                        resp.open.remove(id);
                        let signature = Signature::of(item);
                        let mut shared = self.lock();
                        if let Some(remote) = shared.item_mut(id) {
                            remote.in_progress = false;
                            if matches!(&signature, Signature::Message { text, .. } if !text.is_empty())
                            {
                                remote.signature = signature;
                            }
                        }
                    }
                    _ => {}
                }
            }
            "response.done" => {
                let Some(response) = ev.get("response") else {
                    return;
                };
                let id = str_field(response, "id");
                self.responses.remove(id);
                if str_field(response, "status") == "failed" {
                    let detail = response.get("status_details").cloned().unwrap_or_default();
                    self.emit(RealtimeEvent::Error {
                        error: ApiError::other(format!(
                            "{} response failed: {detail}",
                            self.provider
                        )),
                        recoverable: true,
                    });
                }
                if let Some(usage) = response.get("usage").filter(|u| !u.is_null()) {
                    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0) as u32;
                    self.emit(RealtimeEvent::Usage {
                        input_tokens: n(usage.get("input_tokens")),
                        output_tokens: n(usage.get("output_tokens")),
                        cached_tokens: n(usage
                            .get("input_token_details")
                            .and_then(|d| d.get("cached_tokens"))),
                    });
                }
            }
            "error" => {
                let code = ev
                    .get("error")
                    .map(|e| str_field(e, "code"))
                    .unwrap_or_default();
                if BENIGN_ERROR_CODES.contains(&code) {
                    // E.g. a cancel racing the server's own interruption: nothing went wrong.
                    tracing::debug!(code, "realtime request had nothing to act on");
                    return;
                }
                let error = ws::server_error(&self.provider, &ev);
                let event_id = ev
                    .get("error")
                    .map(|e| str_field(e, "event_id"))
                    .unwrap_or_default()
                    .to_string();
                let (waiter, ack) = {
                    let mut shared = self.lock();
                    let ack = event_id
                        .strip_prefix(ACK_EVENT_PREFIX)
                        .and_then(|item| shared.acks.remove(item));
                    (shared.replies.remove(&event_id), ack)
                };
                match (waiter, ack) {
                    (Some(w), _) => {
                        let _ = w.send(Err(error));
                    }
                    (None, Some(ack)) => {
                        let _ = ack.send(Err(error));
                    }
                    (None, None) => {
                        tracing::warn!(%error, "realtime server error");
                        self.emit(RealtimeEvent::Error {
                            error,
                            recoverable: true,
                        });
                    }
                }
            }
            "rate_limits.updated" => {
                tracing::debug!(rate_limits = %ev.get("rate_limits").cloned().unwrap_or_default(), "realtime rate limits");
            }
            _ => tracing::trace!(event = %kind, "realtime event"),
        }
    }

    fn message(&self, ev: &Value) -> Option<&MessageSinks> {
        self.responses
            .get(str_field(ev, "response_id"))?
            .open
            .get(str_field(ev, "item_id"))
    }

    fn on_response_created(&mut self, ev: &Value) {
        let Some(response) = ev.get("response") else {
            return;
        };
        let response_id = str_field(response, "id").to_string();
        let (messages_tx, messages_rx) = forwarder();
        let (functions_tx, functions_rx) = forwarder();
        self.responses.insert(
            response_id.clone(),
            ResponseSinks {
                messages: messages_tx,
                functions: functions_tx,
                open: HashMap::new(),
            },
        );
        let client_event_id = response
            .get("metadata")
            .map(|m| str_field(m, "client_event_id"))
            .unwrap_or_default()
            .to_string();
        let waiter = self.lock().replies.remove(&client_event_id);
        let generation = GenerationCreated {
            message_stream: messages_rx,
            function_stream: functions_rx,
            user_initiated: waiter.is_some(),
            response_id,
        };
        match waiter {
            // The caller of `generate_reply` gets the streams directly.
            Some(w) => {
                if let Err(Ok(unclaimed)) = w.send(Ok(generation)) {
                    // The caller gave up waiting: still deliver the response as an event.
                    self.emit(RealtimeEvent::GenerationCreated(unclaimed));
                }
            }
            None => self.emit(RealtimeEvent::GenerationCreated(generation)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_agents::llm::realtime::RealtimeModel as _;

    #[test]
    fn defaults_and_session_update() {
        let m = RealtimeModel::new(RealtimeOptions {
            api_key: Some("sk-rt".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{m:?}").contains("sk-rt"));
        let caps = m.capabilities();
        assert!(
            caps.message_truncation
                && caps.turn_detection
                && caps.user_transcription
                && caps.audio_output
        );
        assert!(!caps.auto_tool_reply_generation);
        let u = m.session_update();
        assert_eq!(u["session"]["model"], "gpt-realtime-2.1");
        assert_eq!(u["session"]["output_modalities"], json!(["audio"]));
        assert_eq!(
            u["session"]["audio"]["output"],
            json!({"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"})
        );
        assert_eq!(
            u["session"]["audio"]["input"]["turn_detection"],
            json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500, "create_response": true, "interrupt_response": true})
        );
        assert_eq!(
            u["session"]["audio"]["input"]["transcription"],
            json!({"model": "gpt-transcribe"})
        );
        assert!(u["session"].get("temperature").is_none());
        assert_eq!(
            tool_choice_json(&ToolChoice::Function("f".into())),
            json!({"type": "function", "name": "f"})
        );
    }

    fn remote(id: &str, role: &str, text: &str, in_progress: bool) -> RemoteItem {
        RemoteItem {
            item: Value::Null,
            id: id.into(),
            signature: Signature::Message {
                role: role.into(),
                text: text.into(),
            },
            in_progress,
        }
    }

    #[test]
    fn diff_matches_by_id_then_by_content() {
        let server = vec![
            remote("srv_user", "user", "What time is it?", false),
            remote("srv_asst", "assistant", " It is noon ", false),
            remote("srv_stale", "user", "old", false),
            remote("srv_pending", "user", "", true),
        ];
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::User, "What time is it?");
        ctx.add_message(ChatRole::Assistant, "It is noon");
        ctx.add_message(ChatRole::User, "Thanks");
        let wanted: Vec<(&str, Value)> = ctx
            .items()
            .iter()
            .filter_map(|it| conversation_item(it).map(|v| (it.id(), v)))
            .collect();
        let plan = diff_items(&server, &wanted);
        assert_eq!(
            plan.delete,
            vec!["srv_stale".to_string()],
            "in-progress items are kept"
        );
        assert_eq!(plan.create, vec![(2, "srv_asst".to_string())]);

        // Same ids: nothing to do.
        let same: Vec<RemoteItem> = wanted
            .iter()
            .map(|(id, item)| RemoteItem {
                item: item.clone(),
                id: id.to_string(),
                signature: Signature::of(item),
                in_progress: false,
            })
            .collect();
        assert_eq!(diff_items(&same, &wanted), DiffPlan::default());
    }

    #[test]
    fn chat_items_map_to_conversation_items() {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::Developer, "rules");
        ctx.add_message(ChatRole::Assistant, "hi");
        let call = FunctionCall::new("c1", "f", "{}");
        ctx.push(call.clone());
        ctx.push(livekit_agents::llm::FunctionCallOutput::for_call(
            &call, "ok", false,
        ));
        ctx.push(livekit_agents::llm::AgentHandoff::new(None, "b"));
        let items: Vec<Value> = ctx.items().iter().filter_map(conversation_item).collect();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0]["role"], "system");
        assert_eq!(items[0]["content"][0]["type"], "input_text");
        assert_eq!(
            items[1]["content"][0],
            json!({"type": "output_text", "text": "hi"})
        );
        assert_eq!(items[2]["type"], "function_call");
        assert_eq!(
            items[3],
            json!({"id": ctx.items()[3].id(), "type": "function_call_output", "call_id": "c1", "output": "ok"})
        );
    }

    #[test]
    fn long_call_ids_are_shortened_deterministically() {
        assert_eq!(realtime_call_id("call_abc"), "call_abc");
        let long = format!("call_{}", "x".repeat(40));
        let short = realtime_call_id(&long);
        assert_eq!(short.len(), MAX_CALL_ID_LEN);
        assert_eq!(short, realtime_call_id(&long), "deterministic");
        assert!(short.starts_with("call_xxxxxxxxxxx"));
        let other = format!("call_{}y", "x".repeat(40));
        assert_ne!(
            realtime_call_id(&other),
            short,
            "distinct ids stay distinct"
        );
        let toolu = "toolu_01A09q90qw90lq917835lq9_extra_long";
        assert_eq!(realtime_call_id(toolu).len(), MAX_CALL_ID_LEN);
        // A call and its output keep matching ids.
        let call = FunctionCall::new(long.as_str(), "f", "{}");
        let out = livekit_agents::llm::FunctionCallOutput::for_call(&call, "ok", false);
        let (c, o) = (
            conversation_item(&ChatItem::FunctionCall(call.clone())).unwrap(),
            conversation_item(&ChatItem::FunctionCallOutput(out)).unwrap(),
        );
        assert_eq!(c["call_id"], o["call_id"]);
        assert_eq!(c["call_id"], json!(short));
    }

    #[test]
    fn images_go_as_data_uris_and_urls_are_skipped() {
        use livekit_agents::llm::{ChatContent, ChatMessage, ImageContent, ImageSource};
        let mut msg = ChatMessage::new(ChatRole::User, "look");
        msg.content.push(ChatContent::Image(ImageContent {
            image: ImageSource::Url {
                url: "https://example.com/cat.png".into(),
            },
            id: "img1".into(),
            inference_detail: String::new(),
        }));
        msg.content.push(ChatContent::Image(ImageContent {
            image: ImageSource::Bytes {
                data: vec![1, 2, 3],
                mime_type: "image/png".into(),
            },
            id: "img2".into(),
            inference_detail: String::new(),
        }));
        let item = conversation_item(&ChatItem::Message(msg)).unwrap();
        let content = item["content"].as_array().unwrap();
        assert_eq!(content.len(), 2, "{item}");
        assert_eq!(content[0]["type"], "input_text");
        assert_eq!(content[1]["image_url"], "data:image/png;base64,AQID");
    }

    #[test]
    fn text_modality_is_a_half_cascade_model_without_audio_output() {
        use livekit_agents::llm::realtime::RealtimeModel as _;
        let model = RealtimeModel::new(RealtimeOptions {
            api_key: Some("sk".into()),
            modality: Modality::Text,
            ..Default::default()
        })
        .unwrap();
        assert!(
            !model.capabilities().audio_output,
            "the session voices it with its TTS"
        );
        assert_eq!(
            model.session_update()["session"]["output_modalities"],
            json!(["text"])
        );
    }
}
