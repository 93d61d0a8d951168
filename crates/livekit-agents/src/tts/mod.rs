//! Text-to-speech: the [`Tts`] trait, one-shot [`ChunkedStream`]s, streaming
//! [`SynthesizeStream`]s, and the [`AudioEmitter`] plugins push audio through.
//!
//! A plugin implements [`ChunkedTtsTask`] (one HTTP request) and, if the provider streams text
//! in, [`TtsStreamTask`] (one WebSocket connection). The core runs them with the shared retry
//! policy: an attempt is retried only while it has not produced audio, so a user never hears the
//! same words twice. Non-streaming providers get streaming through [`StreamAdapter`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::audio::AudioFrame;
use crate::model_input::{InputReceiver, InputSender};
use crate::stt::EVENT_BUFFER;
use crate::types::{ApiConnectOptions, ApiError, TimedString};

pub(crate) mod adapter;
pub(crate) mod cache;
pub(crate) mod fallback;
pub use adapter::StreamAdapter;
pub use cache::{CachedTts, TtsCacheOptions, TtsCacheStats};
pub use fallback::FallbackAdapter;
pub use fallback::{TtsFallbackError, TtsFallbackOptions};

/// What a TTS provider can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TtsCapabilities {
    /// [`Tts::stream`] accepts text incrementally.
    pub streaming: bool,
    /// Audio carries word timings ([`SynthesizedAudio::timed_words`]).
    pub aligned_transcript: bool,
}

/// A frame of synthesized audio.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthesizedAudio {
    /// The audio (may be empty on the final frame of a segment).
    pub frame: AudioFrame,
    /// Id of the request (one per attempt).
    pub request_id: String,
    /// Id of the segment (text between two flushes).
    pub segment_id: String,
    /// Last frame of the segment.
    pub is_final: bool,
    /// Text that this frame starts speaking, when the provider says.
    pub delta_text: String,
    /// Words with timings relative to the start of the segment, when the provider aligns.
    pub timed_words: Vec<TimedString>,
}

/// A text-to-speech provider.
#[async_trait]
pub trait Tts: Send + Sync + 'static {
    /// A short name for logs and metrics, e.g. `cartesia.TTS`.
    fn label(&self) -> String;
    /// The model name.
    fn model(&self) -> String {
        String::new()
    }
    /// The provider name.
    fn provider(&self) -> String {
        String::new()
    }
    /// What the provider can do.
    fn capabilities(&self) -> TtsCapabilities;
    /// Output sample rate.
    fn sample_rate(&self) -> u32;
    /// Output channel count.
    fn num_channels(&self) -> u16 {
        1
    }

    /// Synthesizes a whole text in one request.
    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream;

    /// Opens a streaming synthesis. The default reports that streaming is unsupported; wrap the
    /// provider in [`StreamAdapter`] instead.
    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        let _ = conn;
        Err(ApiError::other(format!(
            "{} does not support streaming; wrap it in tts::StreamAdapter",
            self.label()
        )))
    }

    /// Starts connection setup early.
    async fn prewarm(&self) {}
}

/// Default size of emitted frames.
pub const DEFAULT_FRAME_MS: u32 = 50;

struct EmitterState {
    request_id: String,
    segment_id: String,
    pending: Vec<i16>,
    odd_byte: Option<u8>,
    delta_text: String,
    words: Vec<TimedString>,
    pushed_samples: u64,
    segment_open: bool,
}

/// Where a TTS plugin pushes audio: raw PCM bytes or samples in, evenly sized
/// [`SynthesizedAudio`] frames out.
#[derive(Clone)]
pub struct AudioEmitter {
    tx: mpsc::Sender<Result<SynthesizedAudio, ApiError>>,
    sample_rate: u32,
    num_channels: u16,
    frame_samples: usize,
    state: Arc<Mutex<EmitterState>>,
}

impl AudioEmitter {
    /// An emitter sending frames of `frame_ms` to `tx` (used by the core and by tests).
    pub fn new(
        tx: mpsc::Sender<Result<SynthesizedAudio, ApiError>>,
        sample_rate: u32,
        num_channels: u16,
        frame_ms: u32,
    ) -> Self {
        let frame_samples = ((sample_rate as u64 * frame_ms as u64) / 1000).max(1) as usize;
        Self {
            tx,
            sample_rate,
            num_channels: num_channels.max(1),
            frame_samples,
            state: Arc::new(Mutex::new(EmitterState {
                request_id: uuid::Uuid::new_v4().simple().to_string(),
                segment_id: String::new(),
                pending: Vec::new(),
                odd_byte: None,
                delta_text: String::new(),
                words: Vec::new(),
                pushed_samples: 0,
                segment_open: false,
            })),
        }
    }

    /// Output sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Sets the request id carried by the frames (e.g. the provider's id).
    pub fn set_request_id(&self, request_id: impl Into<String>) {
        self.state.lock().request_id = request_id.into();
    }

    /// Starts a segment; frames pushed afterwards carry `segment_id`.
    pub fn start_segment(&self, segment_id: impl Into<String>) {
        let mut st = self.state.lock();
        st.segment_id = segment_id.into();
        st.segment_open = true;
    }

    /// Attaches text to the next emitted frame.
    pub fn push_text(&self, delta: &str) {
        self.state.lock().delta_text.push_str(delta);
    }

    /// Attaches word timings (relative to the segment start) to the next emitted frame.
    pub fn push_timed_transcript(&self, words: impl IntoIterator<Item = TimedString>) {
        self.state.lock().words.extend(words);
    }

    /// Pushes little-endian 16-bit PCM bytes (any length: an odd trailing byte is kept for the
    /// next call).
    pub async fn push_pcm_bytes(&self, bytes: &[u8]) -> bool {
        let samples = {
            let mut st = self.state.lock();
            let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
            let mut rest = bytes;
            if let Some(b0) = st.odd_byte.take() {
                if let Some((&b1, tail)) = rest.split_first() {
                    samples.push(i16::from_le_bytes([b0, b1]));
                    rest = tail;
                } else {
                    st.odd_byte = Some(b0);
                }
            }
            let mut chunks = rest.chunks_exact(2);
            for c in &mut chunks {
                samples.push(i16::from_le_bytes([c[0], c[1]]));
            }
            if let [last] = chunks.remainder() {
                st.odd_byte = Some(*last);
            }
            samples
        };
        self.push_samples(&samples).await
    }

    /// Pushes interleaved samples. Returns `false` once the consumer is gone.
    pub async fn push_samples(&self, samples: &[i16]) -> bool {
        let frames = {
            let mut st = self.state.lock();
            st.pending.extend_from_slice(samples);
            st.pushed_samples += (samples.len() / self.num_channels as usize) as u64;
            let chunk = self.frame_samples * self.num_channels as usize;
            let mut frames = Vec::new();
            while st.pending.len() >= chunk {
                let data: Vec<i16> = st.pending.drain(..chunk).collect();
                frames.push(self.make_frame(&mut st, data, false));
            }
            frames
        };
        for f in frames {
            if self.tx.send(Ok(f)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Ends the current segment: emits the remaining audio (possibly an empty frame) marked
    /// `is_final`.
    pub async fn end_segment(&self) -> bool {
        let frame = {
            let mut st = self.state.lock();
            st.odd_byte = None;
            let data = std::mem::take(&mut st.pending);
            st.segment_open = false;
            self.make_frame(&mut st, data, true)
        };
        self.tx.send(Ok(frame)).await.is_ok()
    }

    /// Seconds of audio pushed so far.
    pub fn pushed_duration(&self) -> f64 {
        self.state.lock().pushed_samples as f64 / self.sample_rate.max(1) as f64
    }

    /// Whether any audio was pushed.
    pub fn has_pushed_audio(&self) -> bool {
        self.state.lock().pushed_samples > 0
    }

    /// Whether the consumer dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn make_frame(
        &self,
        st: &mut EmitterState,
        data: Vec<i16>,
        is_final: bool,
    ) -> SynthesizedAudio {
        let samples_per_channel = data.len() / self.num_channels as usize;
        SynthesizedAudio {
            frame: AudioFrame {
                data,
                sample_rate: self.sample_rate,
                num_channels: self.num_channels,
                samples_per_channel,
            },
            request_id: st.request_id.clone(),
            segment_id: st.segment_id.clone(),
            is_final,
            delta_text: std::mem::take(&mut st.delta_text),
            timed_words: std::mem::take(&mut st.words),
        }
    }

    async fn send_error(&self, error: ApiError) {
        let _ = self.tx.send(Err(error)).await;
    }
}

/// One attempt of a one-shot synthesis (typically one HTTP request).
#[async_trait]
pub trait ChunkedTtsTask: Send + 'static {
    /// Pushes the audio of the whole text into `emitter`. The core opens and closes the segment.
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError>;
}

/// The audio of one text, as a stream of frames.
pub struct ChunkedStream {
    events: mpsc::Receiver<Result<SynthesizedAudio, ApiError>>,
    task: crate::types::ProducerTask,
}

impl ChunkedStream {
    /// Runs `task`, retrying retryable errors per `conn` while no audio was pushed yet.
    pub fn spawn(
        label: impl Into<String>,
        conn: ApiConnectOptions,
        sample_rate: u32,
        num_channels: u16,
        mut task: impl ChunkedTtsTask,
    ) -> Self {
        let label = label.into();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let handle = tokio::spawn(async move {
            let mut retries = 0;
            loop {
                let emitter =
                    AudioEmitter::new(tx.clone(), sample_rate, num_channels, DEFAULT_FRAME_MS);
                emitter.start_segment(uuid::Uuid::new_v4().simple().to_string());
                match crate::types::catch_attempt(task.run(&emitter)).await {
                    Ok(()) => {
                        if !emitter.has_pushed_audio() {
                            tracing::warn!(tts = %label, "synthesis produced no audio");
                        }
                        emitter.end_segment().await;
                        break;
                    }
                    Err(error) => {
                        if error.is_retryable()
                            && !emitter.has_pushed_audio()
                            && retries < conn.max_retry
                            && !emitter.is_closed()
                        {
                            tracing::warn!(tts = %label, %error, retry = retries + 1, "synthesis failed, retrying");
                            tokio::time::sleep(conn.interval_for_retry(retries)).await;
                            retries += 1;
                            continue;
                        }
                        tracing::error!(tts = %label, %error, "synthesis failed");
                        emitter.send_error(error).await;
                        break;
                    }
                }
            }
        });
        Self {
            events: rx,
            task: crate::types::ProducerTask::new(Some(handle)),
        }
    }

    /// Builds a stream from a channel whose producer the caller runs.
    pub fn from_channel(
        events: mpsc::Receiver<Result<SynthesizedAudio, ApiError>>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            events,
            task: crate::types::ProducerTask::new(task),
        }
    }

    /// Waits for the whole synthesis and returns it as one frame.
    pub async fn collect(mut self) -> Result<AudioFrame, ApiError> {
        let mut out: Option<AudioFrame> = None;
        while let Some(item) =
            std::future::poll_fn(|cx| self.task.poll_recv(&mut self.events, cx)).await
        {
            let audio = item?;
            match &mut out {
                None => out = Some(audio.frame),
                Some(acc) => {
                    acc.data.extend_from_slice(&audio.frame.data);
                    acc.samples_per_channel += audio.frame.samples_per_channel;
                }
            }
        }
        out.ok_or_else(|| ApiError::other("synthesis ended without audio"))
    }
}

impl Stream for ChunkedStream {
    type Item = Result<SynthesizedAudio, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.task.poll_recv(&mut this.events, cx)
    }
}

/// Text pushed into a [`SynthesizeStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum TtsInput {
    /// Text to speak (any chunking).
    Text(String),
    /// End of a segment: synthesize what was pushed so far.
    Flush,
}

impl crate::model_input::ModelInput for TtsInput {
    fn audio_duration(&self) -> Option<std::time::Duration> {
        None
    }
    fn text_len(&self) -> usize {
        match self {
            TtsInput::Text(text) => text.len(),
            TtsInput::Flush => 0,
        }
    }
}

/// The receiving end of a [`SynthesizeStream`]'s text, handed to [`TtsStreamTask::run`].
///
/// Everything received is recorded, so a retried attempt sees the same text again from the
/// start.
pub struct TtsInputReceiver {
    rx: InputReceiver<TtsInput>,
    history: Vec<TtsInput>,
    replay: VecDeque<TtsInput>,
}

impl TtsInputReceiver {
    /// Wraps a channel receiver.
    pub fn new(rx: InputReceiver<TtsInput>) -> Self {
        Self {
            rx,
            history: Vec::new(),
            replay: VecDeque::new(),
        }
    }

    /// The next input (replayed input first after a retry), or `None` once input ended.
    pub async fn recv(&mut self) -> Option<TtsInput> {
        if let Some(item) = self.replay.pop_front() {
            return Some(item);
        }
        let item = self.rx.recv().await?;
        self.history.push(item.clone());
        Some(item)
    }

    fn rewind(&mut self) {
        self.replay = self.history.iter().cloned().collect();
    }
}

/// One connection attempt of a streaming TTS provider.
#[async_trait]
pub trait TtsStreamTask: Send + 'static {
    /// Reads text from `input` and pushes audio to `emitter` until input ends and all audio was
    /// delivered. The task opens and ends segments itself ([`AudioEmitter::start_segment`] on
    /// the first text after a flush, [`AudioEmitter::end_segment`] when the provider finished
    /// it).
    async fn run(
        &mut self,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError>;
}

/// A streaming synthesis: push text in, read audio out.
pub struct SynthesizeStream {
    input: InputSender<TtsInput>,
    events: mpsc::Receiver<Result<SynthesizedAudio, ApiError>>,
    task: crate::types::ProducerTask,
    /// Set when a text push was refused: the stream then ends with an error, never cleanly.
    overflow: crate::model_input::OverflowFlag,
    overflow_reported: bool,
}

impl SynthesizeStream {
    /// Runs `task`, retrying retryable errors per `conn` while no audio was pushed yet (the new
    /// attempt replays the text pushed so far).
    pub fn spawn(
        label: impl Into<String>,
        conn: ApiConnectOptions,
        sample_rate: u32,
        num_channels: u16,
        mut task: impl TtsStreamTask,
    ) -> Self {
        let label = label.into();
        let (in_tx, in_rx) = crate::model_input::channel();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let handle = tokio::spawn(async move {
            let mut input = TtsInputReceiver::new(in_rx);
            let mut retries = 0;
            loop {
                let emitter =
                    AudioEmitter::new(tx.clone(), sample_rate, num_channels, DEFAULT_FRAME_MS);
                match crate::types::catch_attempt(task.run(&mut input, &emitter)).await {
                    Ok(()) => break,
                    Err(error) => {
                        if error.is_retryable()
                            && !emitter.has_pushed_audio()
                            && retries < conn.max_retry
                            && !emitter.is_closed()
                        {
                            tracing::warn!(tts = %label, %error, retry = retries + 1, "synthesis stream failed, retrying");
                            tokio::time::sleep(conn.interval_for_retry(retries)).await;
                            retries += 1;
                            input.rewind();
                            continue;
                        }
                        tracing::error!(tts = %label, %error, "synthesis stream failed");
                        emitter.send_error(error).await;
                        break;
                    }
                }
            }
        });
        Self::from_channels(in_tx, rx, Some(handle))
    }

    /// Builds a stream from raw channels whose producer the caller runs (adapters, fakes).
    pub fn from_channels(
        input: InputSender<TtsInput>,
        events: mpsc::Receiver<Result<SynthesizedAudio, ApiError>>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            overflow: input.overflow_flag(),
            input,
            events,
            task: crate::types::ProducerTask::new(task),
            overflow_reported: false,
        }
    }

    /// Pushes text (any chunking, e.g. LLM tokens). Text is never dropped: if the provider
    /// has [`MAX_QUEUED_TEXT`](crate::model_input::MAX_QUEUED_TEXT) unread, the push is
    /// refused and the stream ends with an error item (see
    /// [`try_push_text`](Self::try_push_text) to learn it at once).
    pub fn push_text(&self, text: impl Into<String>) {
        let _ = self.try_push_text(text);
    }

    /// Pushes text, or says why it was refused: the provider is too far behind (the stream
    /// then ends with an error) or the input ended.
    pub fn try_push_text(
        &self,
        text: impl Into<String>,
    ) -> Result<(), crate::model_input::InputError> {
        self.input.send(TtsInput::Text(text.into()))
    }

    /// Marks the end of a segment.
    pub fn flush(&self) {
        let _ = self.input.send(TtsInput::Flush);
    }

    /// Ends the input (implies a flush of pending text).
    pub fn end_input(&mut self) {
        let _ = self.input.send(TtsInput::Flush);
        self.input = InputSender::closed();
    }

    /// The next audio frame, `None` at the end.
    pub async fn next_audio(&mut self) -> Option<Result<SynthesizedAudio, ApiError>> {
        futures::StreamExt::next(self).await
    }
}

impl Stream for SynthesizeStream {
    type Item = Result<SynthesizedAudio, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match std::task::ready!(this.task.poll_recv(&mut this.events, cx)) {
            None if this.overflow.get() && !this.overflow_reported => {
                this.overflow_reported = true;
                Poll::Ready(Some(Err(ApiError::other(format!(
                    "the TTS did not read its text input ({} bytes queued at most)",
                    crate::model_input::MAX_QUEUED_TEXT
                )))))
            }
            item => Poll::Ready(item),
        }
    }
}
