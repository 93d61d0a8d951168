//! Deterministic replay of a recorded session: a [`TapeRecorder`] wraps the session's models
//! and audio input and keeps what the providers answered, with its timing (STT events, LLM
//! chunks, TTS audio, the user's audio); [`replay`] runs the same agent code again on tokio's
//! clock with models that give back exactly those answers at the same moments, so the session
//! reproduces its history and events. A bad call becomes a regression test.
//!
//! In a test, wrap the models yourself:
//!
//! ```no_run
//! # async fn demo(stt: std::sync::Arc<dyn livekit_agents::stt::Stt>,
//! #     llm: std::sync::Arc<dyn livekit_agents::llm::Llm>,
//! #     tts: std::sync::Arc<dyn livekit_agents::tts::Tts>,
//! #     vad: std::sync::Arc<dyn livekit_agents::vad::Vad>,
//! #     make_agent: fn() -> livekit_agents::voice::Agent) {
//! use livekit_agents::testing::replay::{replay, ReplaySetup, TapeRecorder};
//! use livekit_agents::voice::AgentSession;
//!
//! let tape = TapeRecorder::new();
//! let session = AgentSession::builder()
//!     .vad(vad.clone())
//!     .stt(tape.stt(stt))
//!     .llm(tape.llm(llm))
//!     .tts(tape.tts(tts))
//!     .build();
//! // ... start with `tape.wrap_input(input)` as the audio input, run the call, close ...
//! let recorded = tape.tape();
//! let again = replay(&recorded, make_agent(), ReplaySetup::for_tape(&recorded, Some(vad))).await;
//! # }
//! ```
//!
//! In production, let the session do it ([`AgentSessionBuilder::record_tape`]: models and
//! audio input are wrapped for you) and save the tape when the session ends; `console --tape
//! FILE` does the same for a console run:
//!
//! ```no_run
//! # fn demo(llm: std::sync::Arc<dyn livekit_agents::llm::Llm>) {
//! use livekit_agents::testing::replay::TapeRecorder;
//! use livekit_agents::voice::AgentSession;
//!
//! let tape = TapeRecorder::new();
//! let session = AgentSession::builder().llm(llm).record_tape(&tape).build();
//! session.on_session_end(move |_report| {
//!     if let Err(e) = tape.tape().save("call.lktape") {
//!         tracing::error!(error = %e, "cannot save the tape");
//!     }
//! });
//! # }
//! ```
//!
//! Later, anywhere: [`SessionTape::load`] and [`replay`]. The file format (one binary
//! container, versioned, read with bounded buffers) is described in [`SessionTape::write_to`]
//! and `docs/guides/observability.md`.
//!
//! Local models (VAD, turn detector) are not recorded: they run again on the same audio and
//! text. Models an [`Agent`] brings itself (agent-level overrides) are not recorded either: only
//! the session's. Typed user input (`generate_reply` with text) is not on the tape.
//!
//! [`AgentSessionBuilder::record_tape`]: crate::voice::AgentSessionBuilder::record_tape

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::audio::AudioFrame;
use crate::io::memory::MemoryAudioOutput;
use crate::io::AudioInput;
use crate::llm::{ChatChunk, ChatContext, ChatRequest, Llm, LlmStream};
use crate::stt::{SpeechEvent, SpeechStream, Stt, SttCapabilities, SttInput};
use crate::tts::{
    ChunkedStream, SynthesizeStream, SynthesizedAudio, Tts, TtsCapabilities, TtsInput,
};
use crate::types::{ApiConnectOptions, ApiError};
use crate::vad::Vad;
use crate::voice::{Agent, AgentSession, SessionIo, SessionOptions, TimedSessionEvent};

pub use super::replay_file::{TapeError, TapeLimits, TAPE_FORMAT_VERSION, TAPE_MAGIC};

/// Items with their offset from the start of their request.
pub type Timed<T> = Vec<(Duration, T)>;

/// What a recorder keeps by default: 256 MiB (about 45 minutes of 48 kHz mono user audio with
/// its replies). Past it the tape stops growing and is marked [`SessionTape::truncated`].
pub const DEFAULT_MAX_TAPE_BYTES: usize = 256 * 1024 * 1024;

/// What the providers answered in one session, with timing.
///
/// Two tapes are equal when every item is; errors compare by kind, message and retryability
/// (what a file keeps of them).
#[derive(Debug, Clone, Default)]
pub struct SessionTape {
    /// The user's audio frames, offsets from the moment the input was wrapped (the session's
    /// start).
    pub user_audio: Timed<AudioFrame>,
    /// STT: label, model, provider, capabilities.
    pub stt_info: Option<ModelInfo<SttCapabilities>>,
    /// One entry per STT stream opened: its events, offsets from the opening.
    pub stt: Vec<Timed<Result<SpeechEvent, ApiError>>>,
    /// LLM: label, model, provider.
    pub llm_info: Option<ModelInfo<()>>,
    /// One entry per LLM request: its chunks, offsets from the request.
    pub llm: Vec<Timed<Result<ChatChunk, ApiError>>>,
    /// TTS: label, model, provider, capabilities, sample rate, channels.
    pub tts_info: Option<ModelInfo<(TtsCapabilities, u32, u16)>>,
    /// One entry per TTS request (`synthesize` or `stream`): its audio, offsets from the first
    /// text it got.
    pub tts: Vec<Timed<Result<SynthesizedAudio, ApiError>>>,
    /// How long the recording ran (from the input's start to the snapshot): how long to replay.
    pub duration: Duration,
    /// The recorder hit its size limit: what came after is missing, and a replay diverges from
    /// that point.
    pub truncated: bool,
}

impl PartialEq for SessionTape {
    fn eq(&self, other: &Self) -> bool {
        fn same<T: PartialEq>(
            a: &[Timed<Result<T, ApiError>>],
            b: &[Timed<Result<T, ApiError>>],
        ) -> bool {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.len() == y.len()
                        && x.iter().zip(y).all(|((ta, a), (tb, b))| {
                            ta == tb
                                && match (a, b) {
                                    (Ok(a), Ok(b)) => a == b,
                                    (Err(a), Err(b)) => {
                                        a.to_string() == b.to_string()
                                            && a.is_retryable() == b.is_retryable()
                                    }
                                    _ => false,
                                }
                        })
                })
        }
        self.user_audio == other.user_audio
            && self.stt_info == other.stt_info
            && self.llm_info == other.llm_info
            && self.tts_info == other.tts_info
            && same(&self.stt, &other.stt)
            && same(&self.llm, &other.llm)
            && same(&self.tts, &other.tts)
            && self.duration == other.duration
            && self.truncated == other.truncated
    }
}

/// A recorded model's identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelInfo<C> {
    /// Its label.
    pub label: String,
    /// Its model name.
    pub model: String,
    /// Its provider.
    pub provider: String,
    /// What else it reported.
    pub extra: C,
}

/// A recorder's shared state.
struct RecorderState {
    tape: SessionTape,
    /// When the user's audio started (the timeline of `user_audio`).
    origin: Option<Instant>,
    /// When the session closed (the tape's duration ends there).
    finished: Option<Instant>,
    /// Approximate bytes kept so far, and the limit.
    bytes: usize,
    max_bytes: usize,
}

impl RecorderState {
    /// Takes `cost` bytes of the budget; false (and the tape marked truncated) past it.
    fn reserve(&mut self, cost: usize) -> bool {
        match self.bytes.checked_add(cost) {
            Some(total) if total <= self.max_bytes => {
                self.bytes = total;
                true
            }
            _ => {
                if !self.tape.truncated {
                    tracing::warn!(
                        limit = self.max_bytes,
                        "session tape full: the rest of the call is not recorded"
                    );
                }
                self.tape.truncated = true;
                false
            }
        }
    }
}

/// Roughly what an item costs in memory (and in the file).
trait TapeCost {
    fn cost(&self) -> usize;
}

impl TapeCost for AudioFrame {
    fn cost(&self) -> usize {
        self.data.len().saturating_mul(2).saturating_add(32)
    }
}

impl<T: TapeCost> TapeCost for Result<T, ApiError> {
    fn cost(&self) -> usize {
        match self {
            Ok(v) => v.cost(),
            Err(e) => e.to_string().len().saturating_add(32),
        }
    }
}

impl TapeCost for SpeechEvent {
    fn cost(&self) -> usize {
        self.alternatives
            .iter()
            .map(|a| {
                a.text
                    .len()
                    .saturating_add(a.words.len().saturating_mul(48))
            })
            .fold(64, usize::saturating_add)
    }
}

impl TapeCost for ChatChunk {
    fn cost(&self) -> usize {
        let delta = self.delta.as_ref().map_or(0, |d| {
            d.content.as_ref().map_or(0, String::len).saturating_add(
                d.tool_calls
                    .iter()
                    .map(|c| c.arguments.len().saturating_add(c.name.len()))
                    .fold(0, usize::saturating_add),
            )
        });
        delta.saturating_add(64)
    }
}

impl TapeCost for SynthesizedAudio {
    fn cost(&self) -> usize {
        self.frame
            .cost()
            .saturating_add(self.delta_text.len())
            .saturating_add(self.timed_words.len().saturating_mul(48))
    }
}

/// Where one stream's items go: take `index` of the list `pick` selects.
struct TakeSink<T> {
    state: Arc<Mutex<RecorderState>>,
    pick: fn(&mut SessionTape) -> &mut Vec<Timed<T>>,
    index: usize,
}

impl<T: Clone + TapeCost> TakeSink<T> {
    /// Opens a new take.
    fn open(
        state: &Arc<Mutex<RecorderState>>,
        pick: fn(&mut SessionTape) -> &mut Vec<Timed<T>>,
    ) -> Self {
        let index = {
            let mut st = state.lock();
            let takes = pick(&mut st.tape);
            takes.push(Vec::new());
            takes.len() - 1
        };
        Self {
            state: state.clone(),
            pick,
            index,
        }
    }

    fn push(&self, at: Duration, item: &T) {
        let mut st = self.state.lock();
        if !st.reserve(item.cost()) {
            return;
        }
        if let Some(take) = (self.pick)(&mut st.tape).get_mut(self.index) {
            take.push((at, item.clone()));
        }
    }

    /// Forwards `items` to `tx`, recording each with the time `since` gives.
    async fn forward<S>(self, mut items: S, since: impl Fn() -> Duration, tx: mpsc::Sender<T>)
    where
        S: Stream<Item = T> + Unpin,
    {
        while let Some(item) = items.next().await {
            self.push(since(), &item);
            if tx.send(item).await.is_err() {
                break;
            }
        }
    }
}

/// Records a session's provider answers; see the [module docs](self).
#[derive(Clone)]
pub struct TapeRecorder {
    state: Arc<Mutex<RecorderState>>,
}

impl std::fmt::Debug for TapeRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapeRecorder").finish_non_exhaustive()
    }
}

impl Default for TapeRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl TapeRecorder {
    /// A recorder keeping at most [`DEFAULT_MAX_TAPE_BYTES`].
    pub fn new() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_TAPE_BYTES)
    }

    /// A recorder keeping at most about `max_bytes` of audio and events (then the tape is
    /// [`truncated`](SessionTape::truncated)).
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(RecorderState {
                tape: SessionTape::default(),
                origin: None,
                finished: None,
                bytes: 0,
                max_bytes,
            })),
        }
    }

    /// What was recorded so far.
    pub fn tape(&self) -> SessionTape {
        let st = self.state.lock();
        let mut tape = st.tape.clone();
        let end = st.finished.unwrap_or_else(Instant::now);
        tape.duration = st
            .origin
            .map(|o| end.saturating_duration_since(o))
            .unwrap_or_default();
        tape
    }

    /// Marks the end of the call (the session does when it closes): the tape's
    /// [`duration`](SessionTape::duration) ends here.
    pub fn finish(&self) {
        self.state.lock().finished.get_or_insert_with(Instant::now);
    }

    /// Records the user's audio as the session reads it; its timeline starts now (wrap the
    /// input right before the session starts, as [`AgentSession::start`] does with
    /// [`record_tape`](crate::voice::AgentSessionBuilder::record_tape)).
    pub fn wrap_input(&self, input: AudioInput) -> AudioInput {
        let updates = input.participant_updates();
        let label = input.label().to_string();
        let origin = *self.state.lock().origin.get_or_insert_with(Instant::now);
        let state = self.state.clone();
        let stream = input.into_stream().map(move |frame| {
            let mut st = state.lock();
            if st.reserve(frame.cost()) {
                st.tape.user_audio.push((origin.elapsed(), frame.clone()));
            }
            frame
        });
        AudioInput::from_stream(label, stream).with_participant_updates(updates)
    }

    /// Records `stt`'s streams.
    pub fn stt(&self, stt: Arc<dyn Stt>) -> Arc<dyn Stt> {
        self.state.lock().tape.stt_info = Some(ModelInfo {
            label: stt.label(),
            model: stt.model(),
            provider: stt.provider(),
            extra: stt.capabilities(),
        });
        Arc::new(RecordingStt {
            inner: stt,
            state: self.state.clone(),
        })
    }

    /// Records `llm`'s completions.
    pub fn llm(&self, llm: Arc<dyn Llm>) -> Arc<dyn Llm> {
        self.state.lock().tape.llm_info = Some(ModelInfo {
            label: llm.label(),
            model: llm.model(),
            provider: llm.provider(),
            extra: (),
        });
        Arc::new(RecordingLlm {
            inner: llm,
            state: self.state.clone(),
        })
    }

    /// Records `tts`'s audio.
    pub fn tts(&self, tts: Arc<dyn Tts>) -> Arc<dyn Tts> {
        self.state.lock().tape.tts_info = Some(ModelInfo {
            label: tts.label(),
            model: tts.model(),
            provider: tts.provider(),
            extra: (tts.capabilities(), tts.sample_rate(), tts.num_channels()),
        });
        Arc::new(RecordingTts {
            inner: tts,
            state: self.state.clone(),
        })
    }
}

struct RecordingStt {
    inner: Arc<dyn Stt>,
    state: Arc<Mutex<RecorderState>>,
}

#[async_trait]
impl Stt for RecordingStt {
    fn label(&self) -> String {
        self.inner.label()
    }
    fn model(&self) -> String {
        self.inner.model()
    }
    fn provider(&self) -> String {
        self.inner.provider()
    }
    fn capabilities(&self) -> SttCapabilities {
        self.inner.capabilities()
    }
    fn stream(
        &self,
        language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        let inner = self.inner.stream(language, conn)?;
        let opened = Instant::now();
        let sink = TakeSink::open(&self.state, |t| &mut t.stt);
        let (in_tx, mut in_rx) = crate::model_input::channel::<SttInput>();
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let input = inner.input_handle();
            let forward = tokio::spawn(async move {
                while let Some(item) = in_rx.recv().await {
                    match item {
                        SttInput::Frame(f) => input.push_frame(f),
                        SttInput::Flush => input.flush(),
                    }
                }
            });
            sink.forward(inner, move || opened.elapsed(), tx).await;
            forward.abort();
        });
        Ok(SpeechStream::from_channels(in_tx, rx, Some(task)))
    }
}

struct RecordingLlm {
    inner: Arc<dyn Llm>,
    state: Arc<Mutex<RecorderState>>,
}

#[async_trait]
impl Llm for RecordingLlm {
    fn label(&self) -> String {
        self.inner.label()
    }
    fn model(&self) -> String {
        self.inner.model()
    }
    fn provider(&self) -> String {
        self.inner.provider()
    }
    fn chat(&self, request: ChatRequest) -> LlmStream {
        let inner = self.inner.chat(request);
        let started = Instant::now();
        let sink = TakeSink::open(&self.state, |t| &mut t.llm);
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(sink.forward(inner, move || started.elapsed(), tx));
        LlmStream::from_channel(rx, Some(task))
    }
}

struct RecordingTts {
    inner: Arc<dyn Tts>,
    state: Arc<Mutex<RecorderState>>,
}

#[async_trait]
impl Tts for RecordingTts {
    fn label(&self) -> String {
        self.inner.label()
    }
    fn model(&self) -> String {
        self.inner.model()
    }
    fn provider(&self) -> String {
        self.inner.provider()
    }
    fn capabilities(&self) -> TtsCapabilities {
        self.inner.capabilities()
    }
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }
    fn num_channels(&self) -> u16 {
        self.inner.num_channels()
    }
    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        let inner = self.inner.synthesize(text, conn);
        let started = Instant::now();
        let sink = TakeSink::open(&self.state, |t| &mut t.tts);
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(sink.forward(inner, move || started.elapsed(), tx));
        ChunkedStream::from_channel(rx, Some(task))
    }
    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        let mut inner = self.inner.stream(conn)?;
        let sink = TakeSink::open(&self.state, |t| &mut t.tts);
        let first_text: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (in_tx, mut in_rx) = crate::model_input::channel::<TtsInput>();
        let (tx, rx) = mpsc::channel(4096);
        // Audio is timed from the first text (what the TTS waits for), so a replay that gets
        // its text later plays the same audio at the same distance from it.
        let since = {
            let first_text = first_text.clone();
            move || first_text.lock().map(|t| t.elapsed()).unwrap_or_default()
        };
        let task = tokio::spawn(async move {
            let mut input_open = true;
            loop {
                tokio::select! {
                    input = in_rx.recv(), if input_open => match input {
                        Some(TtsInput::Text(t)) => {
                            first_text.lock().get_or_insert_with(Instant::now);
                            inner.push_text(t);
                        }
                        Some(TtsInput::Flush) => inner.flush(),
                        None => {
                            input_open = false;
                            inner.end_input();
                        }
                    },
                    item = inner.next_audio() => {
                        let Some(item) = item else { break };
                        sink.push(since(), &item);
                        if tx.send(item).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(SynthesizeStream::from_channels(in_tx, rx, Some(task)))
    }
}

// ---- replay ----

/// Serves the tape's takes in order (an empty take once they run out).
struct Takes<T> {
    takes: Mutex<VecDeque<Timed<T>>>,
}

impl<T: Clone> Takes<T> {
    fn new(takes: &[Timed<T>]) -> Self {
        Self {
            takes: Mutex::new(takes.iter().cloned().collect()),
        }
    }
    fn next(&self) -> Timed<T> {
        self.takes.lock().pop_front().unwrap_or_default()
    }
}

/// Sends a take's items at their recorded offsets from `start`; false if the receiver went.
async fn play_take<T>(take: Timed<T>, start: Instant, tx: &mpsc::Sender<T>) -> bool {
    for (at, item) in take {
        tokio::time::sleep_until(start + at).await;
        if tx.send(item).await.is_err() {
            return false;
        }
    }
    true
}

struct ReplayStt {
    info: ModelInfo<SttCapabilities>,
    takes: Takes<Result<SpeechEvent, ApiError>>,
}

#[async_trait]
impl Stt for ReplayStt {
    fn label(&self) -> String {
        self.info.label.clone()
    }
    fn model(&self) -> String {
        self.info.model.clone()
    }
    fn provider(&self) -> String {
        self.info.provider.clone()
    }
    fn capabilities(&self) -> SttCapabilities {
        self.info.extra
    }
    fn stream(&self, _: Option<String>, _: ApiConnectOptions) -> Result<SpeechStream, ApiError> {
        let take = self.takes.next();
        let opened = Instant::now();
        let (in_tx, mut in_rx) = crate::model_input::channel();
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let drain = tokio::spawn(async move { while in_rx.recv().await.is_some() {} });
            play_take(take, opened, &tx).await;
            // A recorded stream that ended stays open like a live one until the session
            // drops it.
            let _ = drain.await;
        });
        Ok(SpeechStream::from_channels(in_tx, rx, Some(task)))
    }
}

struct ReplayLlm {
    info: ModelInfo<()>,
    takes: Takes<Result<ChatChunk, ApiError>>,
}

#[async_trait]
impl Llm for ReplayLlm {
    fn label(&self) -> String {
        self.info.label.clone()
    }
    fn model(&self) -> String {
        self.info.model.clone()
    }
    fn provider(&self) -> String {
        self.info.provider.clone()
    }
    fn chat(&self, _request: ChatRequest) -> LlmStream {
        let take = self.takes.next();
        let started = Instant::now();
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            play_take(take, started, &tx).await;
        });
        LlmStream::from_channel(rx, Some(task))
    }
}

struct ReplayTts {
    info: ModelInfo<(TtsCapabilities, u32, u16)>,
    takes: Takes<Result<SynthesizedAudio, ApiError>>,
}

#[async_trait]
impl Tts for ReplayTts {
    fn label(&self) -> String {
        self.info.label.clone()
    }
    fn model(&self) -> String {
        self.info.model.clone()
    }
    fn provider(&self) -> String {
        self.info.provider.clone()
    }
    fn capabilities(&self) -> TtsCapabilities {
        self.info.extra.0
    }
    fn sample_rate(&self) -> u32 {
        self.info.extra.1
    }
    fn num_channels(&self) -> u16 {
        self.info.extra.2
    }
    fn synthesize(&self, _text: &str, _conn: ApiConnectOptions) -> ChunkedStream {
        let take = self.takes.next();
        let started = Instant::now();
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(async move {
            play_take(take, started, &tx).await;
        });
        ChunkedStream::from_channel(rx, Some(task))
    }
    fn stream(&self, _conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        let take = self.takes.next();
        let (in_tx, mut in_rx) = crate::model_input::channel::<TtsInput>();
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(async move {
            // Audio is timed from the first text, as it was recorded.
            let started = loop {
                match in_rx.recv().await {
                    Some(TtsInput::Text(_)) => break Instant::now(),
                    Some(TtsInput::Flush) => continue,
                    None => return,
                }
            };
            let drain = tokio::spawn(async move { while in_rx.recv().await.is_some() {} });
            play_take(take, started, &tx).await;
            drain.abort();
        });
        Ok(SynthesizeStream::from_channels(in_tx, rx, Some(task)))
    }
}

/// How to replay: the local models and options of the recorded session, and how long to run.
#[derive(Clone)]
pub struct ReplaySetup {
    /// The VAD the recorded session used (it runs again on the recorded audio).
    pub vad: Option<Arc<dyn Vad>>,
    /// The turn detector it used, if any.
    pub turn_detector: Option<Arc<dyn crate::turn_detector::TurnDetector>>,
    /// Its options.
    pub options: SessionOptions,
    /// How long to run before closing (the recorded call's length).
    pub duration: Duration,
}

impl std::fmt::Debug for ReplaySetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaySetup")
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl ReplaySetup {
    /// Default options, `vad`, running for `duration`.
    pub fn new(vad: Option<Arc<dyn Vad>>, duration: Duration) -> Self {
        Self {
            vad,
            turn_detector: None,
            options: SessionOptions::default(),
            duration,
        }
    }

    /// Default options, `vad`, running as long as `tape` was recorded.
    pub fn for_tape(tape: &SessionTape, vad: Option<Arc<dyn Vad>>) -> Self {
        Self::new(vad, tape.duration)
    }
}

/// What a replayed session did.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    /// The history at the end.
    pub history: ChatContext,
    /// Every event, in order, with its time.
    pub events: Vec<TimedSessionEvent>,
    /// When the replay started (event offsets are from here).
    pub origin: Instant,
    /// The audio the agent played.
    pub output: MemoryAudioOutput,
}

/// Runs `agent` again against `tape` (see the [module docs](self)); call on tokio's paused
/// clock for an exact reproduction.
pub async fn replay(tape: &SessionTape, agent: Agent, setup: ReplaySetup) -> ReplayOutcome {
    if tape.truncated {
        tracing::warn!("replaying a truncated tape: the replay diverges where the tape ends");
    }
    let mut builder = AgentSession::builder().options(setup.options.clone());
    builder = match setup.vad.clone() {
        Some(vad) => builder.vad(vad),
        None => builder.no_vad(),
    };
    if let Some(d) = setup.turn_detector.clone() {
        builder = builder.turn_detector(d);
    }
    if let Some(info) = tape.stt_info.clone() {
        builder = builder.stt(Arc::new(ReplayStt {
            info,
            takes: Takes::new(&tape.stt),
        }) as Arc<dyn Stt>);
    }
    if let Some(info) = tape.llm_info.clone() {
        builder = builder.llm(Arc::new(ReplayLlm {
            info,
            takes: Takes::new(&tape.llm),
        }) as Arc<dyn Llm>);
    }
    if let Some(info) = tape.tts_info.clone() {
        builder = builder.tts(Arc::new(ReplayTts {
            info,
            takes: Takes::new(&tape.tts),
        }) as Arc<dyn Tts>);
    }
    let session = builder.build();
    let events: Arc<Mutex<Vec<TimedSessionEvent>>> = Arc::default();
    let mut rx = session.subscribe_timed();
    let sink = events.clone();
    let collector = tokio::spawn(async move {
        while let Ok(ev) = rx.recv().await {
            sink.lock().push(ev);
        }
    });
    let origin = Instant::now();
    let (audio, input) = crate::io::memory::audio_input_channel();
    let frames = tape.user_audio.clone();
    let mic = tokio::spawn(async move {
        for (at, frame) in frames {
            tokio::time::sleep_until(origin + at).await;
            if !audio.send(frame) {
                break;
            }
        }
        std::future::pending::<()>().await;
    });
    let output = MemoryAudioOutput::new();
    let started = session
        .start(
            agent,
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(output.clone())),
                text_output: None,
            },
        )
        .await;
    if let Err(e) = started {
        tracing::error!(error = %e, "replay: the session did not start");
    }
    tokio::time::sleep_until(origin + setup.duration).await;
    session.close().await;
    mic.abort();
    // Let the collector take the last events.
    tokio::task::yield_now().await;
    collector.abort();
    let events = events.lock().clone();
    ReplayOutcome {
        history: session.history(),
        events,
        origin,
        output,
    }
}
