//! Voice activity detection: the [`Vad`] trait, its [`VadStream`] and [`VadEvent`]s.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use crate::audio::AudioFrame;
use crate::model_input::InputSender;

/// What a VAD can do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadCapabilities {
    /// Seconds between inferences (0.032 for Silero at 16 kHz).
    pub update_interval: f64,
}

/// The kind of a [`VadEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VadEventType {
    /// Speech started.
    StartOfSpeech,
    /// One inference finished.
    InferenceDone,
    /// Speech ended.
    EndOfSpeech,
}

/// An event from a [`VadStream`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VadEvent {
    /// What happened.
    pub kind: VadEventType,
    /// Index of the first sample after the event, counted in input samples per channel.
    pub samples_index: u64,
    /// Position in the input of the event, seconds.
    pub timestamp: f64,
    /// Seconds of speech in the current utterance.
    pub speech_duration: f64,
    /// Seconds of silence since speech ended (or since the start).
    pub silence_duration: f64,
    /// Audio: start of speech carries the buffered speech with prefix padding; inference done
    /// carries the window's input; end of speech carries the whole utterance.
    pub frames: Vec<AudioFrame>,
    /// Speech probability (smoothed) of the last window.
    pub probability: f32,
    /// Time the last inference took, seconds.
    pub inference_duration: f64,
    /// Whether the user is speaking after this event.
    pub speaking: bool,
    /// Silence accumulated before thresholds, seconds.
    pub raw_accumulated_silence: f64,
    /// Speech accumulated before thresholds, seconds.
    pub raw_accumulated_speech: f64,
}

impl VadEvent {
    /// An event of `kind` with every other field zero.
    pub fn new(kind: VadEventType) -> Self {
        Self {
            kind,
            samples_index: 0,
            timestamp: 0.0,
            speech_duration: 0.0,
            silence_duration: 0.0,
            frames: Vec::new(),
            probability: 0.0,
            inference_duration: 0.0,
            speaking: false,
            raw_accumulated_silence: 0.0,
            raw_accumulated_speech: 0.0,
        }
    }
}

/// A voice activity detector. One instance (one loaded model) serves any number of streams.
pub trait Vad: Send + Sync + 'static {
    /// A short name for logs, e.g. `silero.VAD`.
    fn label(&self) -> String;
    /// What it can do.
    fn capabilities(&self) -> VadCapabilities;
    /// Opens a stream with its own state.
    fn stream(&self) -> VadStream;
}

/// Input pushed into a [`VadStream`].
#[derive(Debug, Clone)]
pub enum VadInput {
    /// Audio.
    Frame(AudioFrame),
    /// Reset the detector state (a hard segment boundary).
    Flush,
}

impl crate::model_input::ModelInput for VadInput {
    fn audio_duration(&self) -> Option<std::time::Duration> {
        match self {
            VadInput::Frame(frame) => Some(crate::model_input::frame_duration(frame)),
            VadInput::Flush => None,
        }
    }
}

/// A stream of VAD events for one audio input.
pub struct VadStream {
    input: InputSender<VadInput>,
    events: mpsc::Receiver<VadEvent>,
    task: crate::types::ProducerTask,
    failure: Option<crate::types::ApiError>,
}

impl VadStream {
    /// Builds a stream from raw channels whose producer the caller runs (the VAD plugin's task).
    pub fn from_channels(
        input: InputSender<VadInput>,
        events: mpsc::Receiver<VadEvent>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            input,
            events,
            task: crate::types::ProducerTask::new(task),
            failure: None,
        }
    }

    /// Pushes audio (any size, any rate: the VAD converts). While the detector is more than
    /// [`MAX_QUEUED_AUDIO`](crate::model_input::MAX_QUEUED_AUDIO) behind, the oldest queued
    /// audio is dropped (counted and logged; see [`model_input`](crate::model_input)).
    pub fn push_frame(&self, frame: AudioFrame) {
        let _ = self.input.send(VadInput::Frame(frame));
    }

    /// Resets the detector state.
    pub fn flush(&self) {
        let _ = self.input.send(VadInput::Flush);
    }

    /// Ends the input; the stream ends after the remaining audio is processed.
    pub fn end_input(&mut self) {
        self.input = InputSender::closed();
    }

    /// A cloneable handle pushing audio from another task.
    pub fn input_handle(&self) -> InputSender<VadInput> {
        self.input.clone()
    }

    /// The next event, `None` at the end (see [`failure`](Self::failure) for why it ended).
    pub async fn next_event(&mut self) -> Option<VadEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Why the stream ended, once it has: `Some(ApiError::TaskPanicked)` when the detector's
    /// task panicked (also logged as an error), `None` for a normal end. VAD events carry no
    /// error, so a consumer that must tell the two apart checks this after `None`.
    pub fn failure(&self) -> Option<&crate::types::ApiError> {
        self.failure.as_ref()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<VadEvent>> {
        match self.events.poll_recv(cx) {
            Poll::Ready(None) => match self.task.poll_panic(cx) {
                Poll::Ready(Some(error)) => {
                    self.failure = Some(error);
                    Poll::Ready(None)
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl Stream for VadStream {
    type Item = VadEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_event(cx)
    }
}

/// Makes a default VAD (see [`register_default_vad`]).
pub type DefaultVadFactory = Arc<dyn Fn() -> Result<Arc<dyn Vad>, String> + Send + Sync>;

static DEFAULT_VAD: std::sync::RwLock<Option<DefaultVadFactory>> = std::sync::RwLock::new(None);

/// Registers the VAD a session gets when it is built without one (the reference gives every
/// session the bundled Silero VAD unless `vad=None`). VAD plugins provide the call, e.g.
/// `livekit_plugins_silero::register_default_vad()`; a later registration replaces an earlier
/// one. [`AgentSessionBuilder::no_vad`](crate::voice::AgentSessionBuilder::no_vad) opts a
/// session out.
///
/// Why a registration and not a cargo feature of the core: the core cannot depend on the
/// Silero plugin (the plugin depends on the core), and Rust runs no code when a crate is merely
/// linked, so the plugin cannot register itself; an explicit call, as the plugins'
/// `register_files()`, keeps it visible in `main`.
pub fn register_default_vad(
    factory: impl Fn() -> Result<Arc<dyn Vad>, String> + Send + Sync + 'static,
) {
    let mut slot = DEFAULT_VAD
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = Some(Arc::new(factory));
}

/// Removes the registered default VAD (sessions built afterwards get none unless given one).
pub fn clear_default_vad() {
    let mut slot = DEFAULT_VAD
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = None;
}

/// A VAD from the registered default factory: `None` when none is registered, else the
/// factory's result.
pub fn default_vad() -> Option<Result<Arc<dyn Vad>, String>> {
    let factory = DEFAULT_VAD
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()?;
    Some(factory())
}
