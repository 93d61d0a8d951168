//! The session's ports: where user audio comes from ([`AudioInput`]) and where agent audio and
//! text go ([`AudioOutput`], [`TextOutput`]).
//!
//! The voice pipeline only talks to these types, so the same session runs against a LiveKit room
//! (`room` feature), a microphone and speaker (console), WAV files ([`wav`]) or memory
//! ([`memory`], for tests).
//!
//! An [`AudioOutput`] plays segments: the pipeline captures frames, then calls
//! [`AudioOutput::flush`] at the end of a segment; the output reports
//! [`PlaybackEvent::Started`] when the first frame of a segment starts playing and
//! [`PlaybackEvent::Finished`] when the segment played out or was cleared
//! ([`AudioOutput::clear_buffer`]), with the position reached. The pipeline uses that position to
//! keep only the text the user heard.

pub mod bounded;
pub mod memory;
pub(crate) mod paced;
pub mod wav;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use tokio::sync::broadcast;

use crate::audio::AudioFrame;

pub use paced::DEFAULT_OUTPUT_QUEUE;
pub use paced::{FrameSink, PacedAudioOutput};

/// A source of user audio: a stream of frames (any sample rate; the stages convert).
pub struct AudioInput {
    label: String,
    stream: Pin<Box<dyn Stream<Item = AudioFrame> + Send>>,
    /// Who the audio comes from (for per-participant filters, see `audio::filter`).
    participant: tokio::sync::watch::Receiver<crate::audio::filter::FilterParams>,
    /// Set once the input went through [`bounded::bounded_audio_input`].
    overload: Option<bounded::OverloadStats>,
}

impl std::fmt::Debug for AudioInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioInput")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl AudioInput {
    /// Wraps any stream of frames (a microphone, a room track, a file reader).
    pub fn from_stream(
        label: impl Into<String>,
        stream: impl Stream<Item = AudioFrame> + Send + 'static,
    ) -> Self {
        Self {
            label: label.into(),
            stream: Box::pin(stream),
            participant: tokio::sync::watch::channel(Default::default()).1,
            overload: None,
        }
    }

    /// This input behind a queue of at most `max_buffered` of audio that sheds the oldest
    /// frames under overload ([`bounded::bounded_audio_input`]); an input that is already
    /// bounded is returned as it is. [`AgentSession::start`](crate::voice::AgentSession::start)
    /// bounds every input with [`bounded::DEFAULT_MAX_BUFFERED_INPUT`] (5 s). Must be called
    /// inside a tokio runtime.
    pub fn bounded(self, max_buffered: Duration) -> Self {
        bounded::bounded_audio_input(self, max_buffered).0
    }

    /// The overload counters of a bounded input (see [`bounded`](Self::bounded)), `None` for
    /// an input that is not bounded.
    pub fn overload_stats(&self) -> Option<bounded::OverloadStats> {
        self.overload.clone()
    }

    /// Records who the audio comes from (used to choose its filter, see
    /// [`AudioFilterFactory`](crate::audio::AudioFilterFactory)).
    pub fn with_participant(self, participant: crate::audio::filter::FilterParams) -> Self {
        self.with_participant_updates(tokio::sync::watch::channel(participant).1)
    }

    /// Records who the audio comes from, as it changes (a room's input follows its linked
    /// participant).
    pub fn with_participant_updates(
        mut self,
        participant: tokio::sync::watch::Receiver<crate::audio::filter::FilterParams>,
    ) -> Self {
        self.participant = participant;
        self
    }

    /// Who the audio comes from now (empty when unknown).
    pub fn participant(&self) -> crate::audio::filter::FilterParams {
        self.participant.borrow().clone()
    }

    /// Who the audio comes from, as it changes.
    pub fn participant_updates(
        &self,
    ) -> tokio::sync::watch::Receiver<crate::audio::filter::FilterParams> {
        self.participant.clone()
    }

    /// A short name for logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The frames.
    pub fn into_stream(self) -> Pin<Box<dyn Stream<Item = AudioFrame> + Send>> {
        self.stream
    }
}

/// How far a segment played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaybackFinished {
    /// Audio played from the segment's start.
    pub playback_position: Duration,
    /// The segment was cleared before it played out.
    pub interrupted: bool,
}

/// What an [`AudioOutput`] reports about playback.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum PlaybackEvent {
    /// The first frame of a segment started playing.
    Started,
    /// A segment ended (played out, or cleared).
    Finished(PlaybackFinished),
}

/// Where the agent's audio goes.
///
/// Segment contract: frames captured after the previous `Finished` belong to one segment;
/// [`flush`](Self::flush) marks its end. Exactly one [`PlaybackEvent::Finished`] is sent per
/// segment that captured a frame or was flushed: when its audio played out, or at once with
/// `interrupted: true` on [`clear_buffer`](Self::clear_buffer).
#[async_trait]
pub trait AudioOutput: Send + Sync + 'static {
    /// A short name for logs.
    fn label(&self) -> String;
    /// The sample rate the output wants (`None`: it accepts any rate).
    fn sample_rate(&self) -> Option<u32> {
        None
    }
    /// Whether [`pause`](Self::pause) is supported (needed to resume after false interruptions).
    fn can_pause(&self) -> bool;
    /// Queues a frame for playback (may wait while the output's buffer is full or while it is
    /// paused).
    ///
    /// Must be cancel-safe: the pipeline drops a waiting capture when the speech is interrupted
    /// (then calls [`clear_buffer`](Self::clear_buffer) and [`resume`](Self::resume)); a dropped
    /// capture queues the whole frame or nothing.
    async fn capture_frame(&self, frame: AudioFrame);
    /// Ends the current segment.
    fn flush(&self);
    /// Drops queued audio now; the current segment finishes as interrupted.
    fn clear_buffer(&self);
    /// Pauses playback (the playback clock stops).
    fn pause(&self);
    /// Resumes playback.
    fn resume(&self);
    /// Playback events from now on.
    fn subscribe(&self) -> broadcast::Receiver<PlaybackEvent>;
}

/// Where the agent's text (its transcript) goes.
#[async_trait]
pub trait TextOutput: Send + Sync + 'static {
    /// A short name for logs.
    fn label(&self) -> String;
    /// Appends text to the current segment.
    async fn capture_text(&self, text: &str);
    /// Ends the current segment.
    fn flush(&self);
    /// Whether the agent's text should be paced to audio playout (default `true`: words appear
    /// as they are heard, and an interrupted reply shows only what was heard). `false` shows
    /// the text as soon as the LLM writes it (the reference's `sync_transcription=False`).
    fn synchronized(&self) -> bool {
        true
    }
}

/// Waits for the next [`PlaybackEvent::Finished`] on `events`, or `None` if the output closed.
pub async fn wait_for_finished(
    events: &mut broadcast::Receiver<PlaybackEvent>,
) -> Option<PlaybackFinished> {
    loop {
        match events.recv().await {
            Ok(PlaybackEvent::Finished(f)) => return Some(f),
            Ok(PlaybackEvent::Started) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
