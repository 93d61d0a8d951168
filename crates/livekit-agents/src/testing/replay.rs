//! Deterministic replay of a recorded session: a [`TapeRecorder`] wraps the session's models
//! and audio input and keeps what the providers answered, with its timing (STT events, LLM
//! chunks, TTS audio, the user's audio); [`replay`] runs the same agent code again on tokio's
//! clock with models that give back exactly those answers at the same moments, so the session
//! reproduces its history and events. A bad call becomes a regression test.
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
//! let again = replay(&recorded, make_agent(), ReplaySetup::new(Some(vad), std::time::Duration::from_secs(60))).await;
//! # }
//! ```
//!
//! Local models (VAD, turn detector) are not recorded: they run again on the same audio and
//! text. The tape is kept in memory (this is a testing tool) and is not serialisable yet.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
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

/// Items with their offset from the start of their request.
type Timed<T> = Vec<(Duration, T)>;

/// What the providers answered in one session, with timing.
#[derive(Debug, Clone, Default)]
pub struct SessionTape {
    /// The user's audio frames, offsets from the recorder's creation.
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
}

/// A recorded model's identity.
#[derive(Debug, Clone, Default)]
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

/// Records a session's provider answers; see the [module docs](self).
#[derive(Clone)]
pub struct TapeRecorder {
    tape: Arc<Mutex<SessionTape>>,
    origin: Instant,
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
    /// A recorder whose timeline starts now (create it right before the session starts).
    pub fn new() -> Self {
        Self {
            tape: Arc::default(),
            origin: Instant::now(),
        }
    }

    /// What was recorded so far.
    pub fn tape(&self) -> SessionTape {
        self.tape.lock().clone()
    }

    /// Records the user's audio as the session reads it.
    pub fn wrap_input(&self, input: AudioInput) -> AudioInput {
        let updates = input.participant_updates();
        let label = input.label().to_string();
        let (tape, origin) = (self.tape.clone(), self.origin);
        let stream = input.into_stream().map(move |frame| {
            tape.lock()
                .user_audio
                .push((origin.elapsed(), frame.clone()));
            frame
        });
        AudioInput::from_stream(label, stream).with_participant_updates(updates)
    }

    /// Records `stt`'s streams.
    pub fn stt(&self, stt: Arc<dyn Stt>) -> Arc<dyn Stt> {
        self.tape.lock().stt_info = Some(ModelInfo {
            label: stt.label(),
            model: stt.model(),
            provider: stt.provider(),
            extra: stt.capabilities(),
        });
        Arc::new(RecordingStt {
            inner: stt,
            tape: self.tape.clone(),
        })
    }

    /// Records `llm`'s completions.
    pub fn llm(&self, llm: Arc<dyn Llm>) -> Arc<dyn Llm> {
        self.tape.lock().llm_info = Some(ModelInfo {
            label: llm.label(),
            model: llm.model(),
            provider: llm.provider(),
            extra: (),
        });
        Arc::new(RecordingLlm {
            inner: llm,
            tape: self.tape.clone(),
        })
    }

    /// Records `tts`'s audio.
    pub fn tts(&self, tts: Arc<dyn Tts>) -> Arc<dyn Tts> {
        self.tape.lock().tts_info = Some(ModelInfo {
            label: tts.label(),
            model: tts.model(),
            provider: tts.provider(),
            extra: (tts.capabilities(), tts.sample_rate(), tts.num_channels()),
        });
        Arc::new(RecordingTts {
            inner: tts,
            tape: self.tape.clone(),
        })
    }
}

struct RecordingStt {
    inner: Arc<dyn Stt>,
    tape: Arc<Mutex<SessionTape>>,
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
        let mut inner = self.inner.stream(language, conn)?;
        let opened = Instant::now();
        let index = {
            let mut t = self.tape.lock();
            t.stt.push(Vec::new());
            t.stt.len() - 1
        };
        let tape = self.tape.clone();
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
            while let Some(ev) = inner.next_event().await {
                if let Some(take) = tape.lock().stt.get_mut(index) {
                    take.push((opened.elapsed(), ev.clone()));
                }
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
            forward.abort();
        });
        Ok(SpeechStream::from_channels(in_tx, rx, Some(task)))
    }
}

struct RecordingLlm {
    inner: Arc<dyn Llm>,
    tape: Arc<Mutex<SessionTape>>,
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
        let mut inner = self.inner.chat(request);
        let started = Instant::now();
        let index = {
            let mut t = self.tape.lock();
            t.llm.push(Vec::new());
            t.llm.len() - 1
        };
        let tape = self.tape.clone();
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            while let Some(item) = inner.next().await {
                if let Some(take) = tape.lock().llm.get_mut(index) {
                    take.push((started.elapsed(), item.clone()));
                }
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        LlmStream::from_channel(rx, Some(task))
    }
}

struct RecordingTts {
    inner: Arc<dyn Tts>,
    tape: Arc<Mutex<SessionTape>>,
}

impl RecordingTts {
    fn new_take(&self) -> usize {
        let mut t = self.tape.lock();
        t.tts.push(Vec::new());
        t.tts.len() - 1
    }
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
        let mut inner = self.inner.synthesize(text, conn);
        let started = Instant::now();
        let index = self.new_take();
        let tape = self.tape.clone();
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(async move {
            while let Some(item) = inner.next().await {
                if let Some(take) = tape.lock().tts.get_mut(index) {
                    take.push((started.elapsed(), item.clone()));
                }
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        ChunkedStream::from_channel(rx, Some(task))
    }
    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        let mut inner = self.inner.stream(conn)?;
        let index = self.new_take();
        let tape = self.tape.clone();
        let first_text: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (in_tx, mut in_rx) = crate::model_input::channel::<TtsInput>();
        let (tx, rx) = mpsc::channel(4096);
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
                        let since = first_text.lock().map(|t| t.elapsed()).unwrap_or_default();
                        if let Some(take) = tape.lock().tts.get_mut(index) {
                            take.push((since, item.clone()));
                        }
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

/// Serves the tape's takes in order.
struct Takes<T> {
    takes: Mutex<std::collections::VecDeque<Timed<T>>>,
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
            for (at, ev) in take {
                tokio::time::sleep_until(opened + at).await;
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
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
            for (at, item) in take {
                tokio::time::sleep_until(started + at).await;
                if tx.send(item).await.is_err() {
                    break;
                }
            }
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
            for (at, item) in take {
                tokio::time::sleep_until(started + at).await;
                if tx.send(item).await.is_err() {
                    break;
                }
            }
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
            for (at, item) in take {
                tokio::time::sleep_until(started + at).await;
                if tx.send(item).await.is_err() {
                    break;
                }
            }
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
    let mut builder = AgentSession::builder().options(setup.options.clone());
    if let Some(vad) = setup.vad.clone() {
        builder = builder.vad(vad);
    }
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
