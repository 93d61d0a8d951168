//! Speech-to-text: the [`Stt`] trait, its streaming form [`SpeechStream`], and events.
//!
//! A provider plugin implements [`Stt`]. Streaming providers implement [`SttStreamTask`] (one
//! connection attempt) and return [`SpeechStream::spawn`] from [`Stt::stream`]; the core then
//! owns the retry loop, so every provider reconnects the same way (see
//! [`crate::types::ApiConnectOptions`]). Non-streaming providers are used in a session through
//! [`StreamAdapter`], which segments audio with a VAD and calls [`recognize`] per segment.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use tokio::sync::mpsc;

use crate::model_input::{InputReceiver, InputSender};

use crate::audio::AudioFrame;
use crate::types::{ApiConnectOptions, ApiError, TimedString};

pub(crate) mod adapter;
pub(crate) mod context;
pub(crate) mod fallback;
pub use adapter::StreamAdapter;
pub use fallback::FallbackAdapter;
pub use fallback::SttFallbackOptions;

/// How many events a stream buffers before its producer waits for the consumer.
pub(crate) const EVENT_BUFFER: usize = 128;

/// Whether and how a provider aligns transcripts with the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignedTranscript {
    /// Each word has its own timing.
    Word,
    /// Timings per chunk of text.
    Chunk,
}

/// What an STT provider can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SttCapabilities {
    /// [`Stt::stream`] is supported.
    pub streaming: bool,
    /// The stream emits interim transcripts.
    pub interim_results: bool,
    /// Results carry speaker ids.
    pub diarization: bool,
    /// Word or chunk timings, if any.
    pub aligned_transcript: Option<AlignedTranscript>,
    /// [`Stt::recognize_once`] is supported.
    pub offline_recognize: bool,
}

/// The kind of a [`SpeechEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpeechEventType {
    /// The provider detected the start of speech.
    StartOfSpeech,
    /// A transcript that may still change.
    InterimTranscript,
    /// A transcript the provider expects to be final soon (e.g. Deepgram Flux "eager end of
    /// turn"); used for preemptive generation.
    PreflightTranscript,
    /// A transcript that will not change.
    FinalTranscript,
    /// The provider detected the end of speech.
    EndOfSpeech,
    /// Usage report (audio duration billed).
    RecognitionUsage,
}

/// One recognition hypothesis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpeechData {
    /// Language code as the provider reports it (e.g. `en`, `en-US`).
    pub language: String,
    /// The transcript.
    pub text: String,
    /// Confidence in 0..=1.
    pub confidence: f32,
    /// Start time in seconds from the start of the stream.
    pub start_time: f64,
    /// End time in seconds from the start of the stream.
    pub end_time: f64,
    /// Words with timings, when the provider gives them.
    pub words: Vec<TimedString>,
    /// Speaker id, with diarization.
    pub speaker_id: Option<String>,
}

/// Usage reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RecognitionUsage {
    /// Seconds of audio processed.
    pub audio_duration: f64,
    /// Seconds the recognition request took, for a non-streaming recognition (the
    /// reference's `STTMetrics.duration`, reported as `stt_duration`); `None` for a stream.
    pub request_duration: Option<f64>,
}

/// An event from a [`SpeechStream`] or the result of [`recognize`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpeechEvent {
    /// What happened.
    pub kind: SpeechEventType,
    /// Provider request id, when known.
    pub request_id: String,
    /// Hypotheses, best first (empty for start/end of speech and usage).
    pub alternatives: Vec<SpeechData>,
    /// Set on [`SpeechEventType::RecognitionUsage`].
    pub recognition_usage: Option<RecognitionUsage>,
}

impl SpeechEvent {
    /// An event with no alternatives.
    pub fn new(kind: SpeechEventType) -> Self {
        Self {
            kind,
            request_id: String::new(),
            alternatives: Vec::new(),
            recognition_usage: None,
        }
    }

    /// A transcript event with one alternative.
    pub fn transcript(kind: SpeechEventType, data: SpeechData) -> Self {
        Self {
            kind,
            request_id: String::new(),
            alternatives: vec![data],
            recognition_usage: None,
        }
    }

    /// The best alternative's text, or `""`.
    pub fn text(&self) -> &str {
        self.alternatives
            .first()
            .map(|a| a.text.as_str())
            .unwrap_or("")
    }
}

/// A speech-to-text provider.
///
/// Implementations are cheap to share (`Arc<dyn Stt>`) and safe to use from many sessions at
/// once.
#[async_trait]
pub trait Stt: Send + Sync + 'static {
    /// A short name for logs and metrics, e.g. `deepgram.STT`.
    fn label(&self) -> String;
    /// The model name, e.g. `nova-3`.
    fn model(&self) -> String {
        String::new()
    }
    /// The provider name, e.g. `deepgram`.
    fn provider(&self) -> String {
        String::new()
    }
    /// What the provider can do.
    fn capabilities(&self) -> SttCapabilities;

    /// One recognition attempt over a buffer of audio (no retries: use [`recognize`] for the
    /// retrying form). The default reports that offline recognition is unsupported.
    async fn recognize_once(
        &self,
        frames: &[AudioFrame],
        language: Option<&str>,
        conn: &ApiConnectOptions,
    ) -> Result<SpeechEvent, ApiError> {
        let _ = (frames, language, conn);
        Err(ApiError::other(format!(
            "{} does not support non-streaming recognition",
            self.label()
        )))
    }

    /// Opens a streaming recognition. The default reports that streaming is unsupported; use
    /// [`StreamAdapter`] for such providers.
    fn stream(
        &self,
        language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        let _ = (language, conn);
        Err(ApiError::other(format!(
            "{} does not support streaming; wrap it in stt::StreamAdapter with a VAD",
            self.label()
        )))
    }

    /// Starts connection setup early (DNS, TLS) so the first request is faster.
    async fn prewarm(&self) {}

    /// Whether the provider accepts a list of terms to favour (the reference's
    /// `STTCapabilities.keyterms`): the session then gives it
    /// [`SttContextOptions::keyterms`] through
    /// [`update_session_keyterms`](Self::update_session_keyterms). Default false.
    fn supports_keyterms(&self) -> bool {
        false
    }

    /// Sets the keyterms the session manages, kept apart from (and merged with) the ones
    /// configured on the STT itself; live streams apply them without cutting speech off where
    /// the provider allows. Called only when [`supports_keyterms`](Self::supports_keyterms).
    /// Default: nothing.
    fn update_session_keyterms(&self, keyterms: &[String]) {
        let _ = keyterms;
    }

    /// Whether the provider consumes the conversation to bias recognition (the reference's
    /// `STTCapabilities.chat_context`): the session then forwards each conversation item with
    /// [`push_conversation_item`](Self::push_conversation_item) when
    /// [`SttContextOptions::forward_chat_context`] is on. Default false.
    fn supports_chat_context(&self) -> bool {
        false
    }

    /// A new conversation item (see [`supports_chat_context`](Self::supports_chat_context)).
    /// Default: nothing.
    fn push_conversation_item(&self, item: &crate::llm::ChatItem) {
        let _ = item;
    }
}

/// Conversation-aware context for the session's STT (the reference's `STTContextOptions`,
/// `AgentSession(stt_context_options=…)`), in [`SessionOptions`](crate::voice::SessionOptions).
/// Each option reaches only STTs that accept it; others ignore it with a warning.
///
/// (The reference's LLM-based `keyterm_detection` is not implemented: set the keyterms.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct SttContextOptions {
    /// Terms to favour, given to STTs that accept a term list (e.g. Deepgram nova-3 and Flux
    /// `keyterm`, OpenAI `gpt-transcribe` `keywords`). Default: none.
    pub keyterms: Vec<String>,
    /// Forward conversation items to STTs that consume context directly. Default true.
    pub forward_chat_context: bool,
}

impl Default for SttContextOptions {
    fn default() -> Self {
        Self {
            keyterms: Vec::new(),
            forward_chat_context: true,
        }
    }
}

/// Recognizes a buffer of audio, retrying retryable errors per `conn`.
pub async fn recognize(
    stt: &dyn Stt,
    frames: &[AudioFrame],
    language: Option<&str>,
    conn: ApiConnectOptions,
) -> Result<SpeechEvent, ApiError> {
    let mut retries = 0;
    loop {
        match stt.recognize_once(frames, language, &conn).await {
            Ok(ev) => return Ok(ev),
            Err(e) if e.is_retryable() && retries < conn.max_retry => {
                tracing::warn!(stt = %stt.label(), error = %e, retry = retries + 1, "recognize failed, retrying");
                tokio::time::sleep(conn.interval_for_retry(retries)).await;
                retries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Input pushed into a [`SpeechStream`].
#[derive(Debug, Clone)]
pub enum SttInput {
    /// Audio to recognize.
    Frame(AudioFrame),
    /// End of a segment: the provider should finalize what it has (e.g. Deepgram `Finalize`).
    Flush,
}

impl crate::model_input::ModelInput for SttInput {
    fn audio_duration(&self) -> Option<std::time::Duration> {
        match self {
            SttInput::Frame(frame) => Some(crate::model_input::frame_duration(frame)),
            SttInput::Flush => None,
        }
    }
}

/// The receiving end of a [`SpeechStream`]'s input, handed to [`SttStreamTask::run`].
///
/// It survives reconnection attempts: audio pushed while the provider reconnects is kept (up
/// to [`MAX_QUEUED_AUDIO`](crate::model_input::MAX_QUEUED_AUDIO); see
/// [`model_input`](crate::model_input)).
pub struct SttInputReceiver {
    rx: InputReceiver<SttInput>,
    consumed_samples: u64,
    sample_rate: Option<u32>,
    dropped: std::time::Duration,
}

impl SttInputReceiver {
    /// Wraps a channel receiver (used by adapters and tests).
    pub fn new(rx: InputReceiver<SttInput>) -> Self {
        Self {
            rx,
            consumed_samples: 0,
            sample_rate: None,
            dropped: std::time::Duration::ZERO,
        }
    }

    /// The next input, or `None` once the caller ended input (or dropped the stream).
    pub async fn recv(&mut self) -> Option<SttInput> {
        let item = self.rx.recv().await;
        self.dropped += self.rx.take_dropped();
        let item = item?;
        if let SttInput::Frame(frame) = &item {
            self.consumed_samples += frame.samples_per_channel as u64;
            if self.sample_rate.is_none() {
                self.sample_rate = Some(frame.sample_rate);
            }
        }
        Some(item)
    }

    /// Seconds of audio received so far over all attempts (audio the full input queue
    /// dropped included). A reconnecting plugin adds this to the provider's timestamps so they
    /// stay monotonic across connections.
    pub fn consumed_secs(&self) -> f64 {
        let received = match self.sample_rate {
            Some(rate) if rate > 0 => self.consumed_samples as f64 / rate as f64,
            _ => 0.0,
        };
        received + self.dropped.as_secs_f64()
    }

    /// The sample rate of the first frame received, if any.
    pub fn sample_rate(&self) -> Option<u32> {
        self.sample_rate
    }
}

/// The sending end of a [`SpeechStream`]'s events, handed to [`SttStreamTask::run`].
#[derive(Clone)]
pub struct SpeechEventSender {
    tx: mpsc::Sender<Result<SpeechEvent, ApiError>>,
    finals: Arc<AtomicUsize>,
    emitted: Arc<AtomicUsize>,
}

impl SpeechEventSender {
    /// Wraps a channel sender (used by adapters and tests).
    pub fn new(tx: mpsc::Sender<Result<SpeechEvent, ApiError>>) -> Self {
        Self {
            tx,
            finals: Arc::default(),
            emitted: Arc::default(),
        }
    }

    /// Sends an event, waiting while the consumer is behind. Returns `false` once the consumer
    /// dropped the stream (the task should then stop).
    pub async fn send(&self, event: SpeechEvent) -> bool {
        if event.kind == SpeechEventType::FinalTranscript {
            self.finals.fetch_add(1, Ordering::Relaxed);
        }
        self.emitted.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Ok(event)).await.is_ok()
    }

    /// Whether the consumer dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Number of final transcripts sent.
    pub fn finals(&self) -> usize {
        self.finals.load(Ordering::Relaxed)
    }

    /// Number of events sent.
    pub fn emitted(&self) -> usize {
        self.emitted.load(Ordering::Relaxed)
    }

    async fn send_error(&self, error: ApiError) {
        let _ = self.tx.send(Err(error)).await;
    }
}

/// One connection attempt of a streaming STT provider.
#[async_trait]
pub trait SttStreamTask: Send + 'static {
    /// Reads audio from `input` and sends events to `events` until input ends (return `Ok`) or
    /// the connection fails (return the error; the core decides whether to call `run` again).
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError>;
}

/// A streaming recognition: push audio in, read [`SpeechEvent`]s out.
///
/// Dropping the stream stops its task and closes the provider connection.
pub struct SpeechStream {
    input: InputSender<SttInput>,
    events: mpsc::Receiver<Result<SpeechEvent, ApiError>>,
    task: crate::types::ProducerTask,
}

impl SpeechStream {
    /// Runs `task` with the core's retry policy: a retryable error reconnects (calling `run`
    /// again with the same input) up to `conn.max_retry` times; the count resets after each
    /// final transcript. The last error is delivered as an `Err` item and ends the stream.
    pub fn spawn(
        label: impl Into<String>,
        conn: ApiConnectOptions,
        mut task: impl SttStreamTask,
    ) -> Self {
        let label = label.into();
        let (in_tx, in_rx) = crate::model_input::channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
        let handle = tokio::spawn(async move {
            let mut input = SttInputReceiver::new(in_rx);
            let events = SpeechEventSender::new(ev_tx);
            let mut retries = 0;
            loop {
                let finals_before = events.finals();
                match crate::types::catch_attempt(task.run(&mut input, &events)).await {
                    Ok(()) => break,
                    Err(error) => {
                        if events.finals() > finals_before {
                            retries = 0;
                        }
                        if error.is_retryable() && retries < conn.max_retry && !events.is_closed() {
                            tracing::warn!(stt = %label, %error, retry = retries + 1, "speech stream failed, reconnecting");
                            tokio::time::sleep(conn.interval_for_retry(retries)).await;
                            retries += 1;
                            continue;
                        }
                        tracing::error!(stt = %label, %error, "speech stream failed");
                        events.send_error(error).await;
                        break;
                    }
                }
            }
        });
        Self {
            input: in_tx,
            events: ev_rx,
            task: crate::types::ProducerTask::new(Some(handle)),
        }
    }

    /// Builds a stream from raw channels whose producer the caller runs (adapters, fakes).
    pub fn from_channels(
        input: InputSender<SttInput>,
        events: mpsc::Receiver<Result<SpeechEvent, ApiError>>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            input,
            events,
            task: crate::types::ProducerTask::new(task),
        }
    }

    /// Pushes audio. Ignored after [`end_input`](Self::end_input). While the provider is
    /// more than [`MAX_QUEUED_AUDIO`](crate::model_input::MAX_QUEUED_AUDIO) behind, the oldest
    /// queued audio is dropped (counted and logged; see [`model_input`](crate::model_input)).
    pub fn push_frame(&self, frame: AudioFrame) {
        let _ = self.input.send(SttInput::Frame(frame));
    }

    /// Marks a segment boundary: the provider finalizes what it heard so far.
    pub fn flush(&self) {
        let _ = self.input.send(SttInput::Flush);
    }

    /// Ends the input; the stream ends once the provider delivered its last results.
    pub fn end_input(&mut self) {
        self.input = InputSender::closed();
    }

    /// A handle that can push audio from another task.
    pub fn input_handle(&self) -> SttInputHandle {
        SttInputHandle(self.input.clone())
    }

    /// The next event, `None` at the end.
    pub async fn next_event(&mut self) -> Option<Result<SpeechEvent, ApiError>> {
        std::future::poll_fn(|cx| self.task.poll_recv(&mut self.events, cx)).await
    }
}

/// A cloneable handle pushing input into a [`SpeechStream`].
#[derive(Clone)]
pub struct SttInputHandle(InputSender<SttInput>);

impl SttInputHandle {
    /// Pushes audio.
    pub fn push_frame(&self, frame: AudioFrame) {
        let _ = self.0.send(SttInput::Frame(frame));
    }
    /// Marks a segment boundary.
    pub fn flush(&self) {
        let _ = self.0.send(SttInput::Flush);
    }
}

impl Stream for SpeechStream {
    type Item = Result<SpeechEvent, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.task.poll_recv(&mut this.events, cx)
    }
}
