//! In-memory ports for tests and embedding: an [`AudioInput`] fed through a channel, a
//! real-time paced [`AudioOutput`] that records what it played, and a [`TextOutput`] that records
//! text.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::{AudioInput, AudioOutput, PacedAudioOutput, PlaybackEvent, TextOutput};
use crate::audio::AudioFrame;

/// Pushes frames into a [`AudioInput`] made by [`audio_input_channel`].
#[derive(Clone, Debug)]
pub struct AudioInputSender {
    tx: mpsc::UnboundedSender<AudioFrame>,
}

impl AudioInputSender {
    /// Sends a frame; `false` once the session stopped reading.
    pub fn send(&self, frame: AudioFrame) -> bool {
        self.tx.send(frame).is_ok()
    }
}

/// An [`AudioInput`] fed by the returned sender. The input ends when every sender is dropped.
pub fn audio_input_channel() -> (AudioInputSender, AudioInput) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    (
        AudioInputSender { tx },
        AudioInput::from_stream("memory", stream),
    )
}

/// A frame that played, with the tokio time it started playing.
#[derive(Debug, Clone)]
pub struct PlayedFrame {
    /// The frame.
    pub frame: AudioFrame,
    /// When it started playing.
    pub at: Instant,
}

/// How much of the latest played audio a [`MemoryAudioOutput`] keeps by default (2 minutes):
/// a long test must not keep every frame it played.
pub const MEMORY_OUTPUT_RETENTION: Duration = Duration::from_secs(120);

/// A real-time paced [`AudioOutput`] recording the frames it played: the latest
/// [`MEMORY_OUTPUT_RETENTION`] of audio by default ([`MemoryAudioOutput::with_retention`]),
/// while [`MemoryAudioOutput::played_duration`] counts everything.
#[derive(Clone, Debug)]
pub struct MemoryAudioOutput {
    inner: Arc<PacedAudioOutput>,
    played: Arc<Mutex<Played>>,
}

#[derive(Debug)]
struct Played {
    frames: std::collections::VecDeque<PlayedFrame>,
    /// Duration of `frames`.
    kept: Duration,
    /// Duration of everything played.
    total: Duration,
    retention: Duration,
}

impl Played {
    fn new() -> Self {
        Self {
            frames: Default::default(),
            kept: Duration::ZERO,
            total: Duration::ZERO,
            retention: MEMORY_OUTPUT_RETENTION,
        }
    }

    fn push(&mut self, frame: PlayedFrame) {
        let d = frame.frame.duration();
        self.total = self.total.saturating_add(d);
        self.kept = self.kept.saturating_add(d);
        self.frames.push_back(frame);
        self.trim();
    }

    fn trim(&mut self) {
        while self.kept > self.retention {
            match self.frames.pop_front() {
                Some(f) => self.kept = self.kept.saturating_sub(f.frame.duration()),
                None => break,
            }
        }
    }
}

impl MemoryAudioOutput {
    /// An output that accepts any sample rate. Must be created inside a tokio runtime.
    pub fn new() -> Self {
        Self::with_sample_rate(None)
    }

    /// An output that wants `sample_rate` (the pipeline resamples to it).
    pub fn with_sample_rate(sample_rate: Option<u32>) -> Self {
        let played = Arc::new(Mutex::new(Played::new()));
        let record = played.clone();
        let inner = PacedAudioOutput::new("memory", sample_rate, move |frame: &AudioFrame| {
            record.lock().push(PlayedFrame {
                frame: frame.clone(),
                at: Instant::now(),
            });
        });
        Self {
            inner: Arc::new(inner),
            played,
        }
    }

    /// An output with a bounded queue ([`PacedAudioOutput::bounded`]): `capture_frame` waits
    /// while `limit` of audio is queued and while the output is paused, as a room track does.
    pub fn bounded(limit: Duration) -> Self {
        let played = Arc::new(Mutex::new(Played::new()));
        let record = played.clone();
        let inner = PacedAudioOutput::bounded("memory", None, limit, move |frame: &AudioFrame| {
            record.lock().push(PlayedFrame {
                frame: frame.clone(),
                at: Instant::now(),
            });
        });
        Self {
            inner: Arc::new(inner),
            played,
        }
    }

    /// Keep the latest `retention` of played audio instead of [`MEMORY_OUTPUT_RETENTION`]
    /// (`Duration::MAX` keeps everything, `Duration::ZERO` nothing).
    pub fn with_retention(self, retention: Duration) -> Self {
        {
            let mut p = self.played.lock();
            p.retention = retention;
            p.trim();
        }
        self
    }

    /// The latest frames played, oldest first (at most the retention).
    pub fn played(&self) -> Vec<PlayedFrame> {
        self.played.lock().frames.iter().cloned().collect()
    }

    /// Total duration of the audio played so far (whole frames, including those no longer
    /// kept).
    pub fn played_duration(&self) -> Duration {
        self.played.lock().total
    }
}

impl Default for MemoryAudioOutput {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl AudioOutput for MemoryAudioOutput {
    fn label(&self) -> String {
        "memory".into()
    }
    fn sample_rate(&self) -> Option<u32> {
        self.inner.sample_rate()
    }
    fn can_pause(&self) -> bool {
        true
    }
    async fn capture_frame(&self, frame: AudioFrame) {
        self.inner.capture_frame(frame).await
    }
    fn flush(&self) {
        self.inner.flush()
    }
    fn clear_buffer(&self) {
        self.inner.clear_buffer()
    }
    fn pause(&self) {
        self.inner.pause()
    }
    fn resume(&self) {
        self.inner.resume()
    }
    fn subscribe(&self) -> broadcast::Receiver<PlaybackEvent> {
        self.inner.subscribe()
    }
}

/// A [`TextOutput`] recording text per segment.
#[derive(Clone, Debug, Default)]
pub struct MemoryTextOutput {
    segments: Arc<Mutex<Vec<String>>>,
    open: Arc<Mutex<Option<String>>>,
    unsynchronized: bool,
}

impl MemoryTextOutput {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder that asks for text as soon as it is written rather than paced to playout
    /// (see [`TextOutput::synchronized`]).
    pub fn unsynchronized() -> Self {
        Self {
            unsynchronized: true,
            ..Self::default()
        }
    }

    /// Finished segments followed by the current one (if any text was captured since the last
    /// flush).
    pub fn segments(&self) -> Vec<String> {
        let mut out = self.segments.lock().clone();
        if let Some(open) = self.open.lock().clone() {
            out.push(open);
        }
        out
    }
}

#[async_trait]
impl TextOutput for MemoryTextOutput {
    fn label(&self) -> String {
        "memory".into()
    }
    async fn capture_text(&self, text: &str) {
        self.open
            .lock()
            .get_or_insert_with(String::new)
            .push_str(text);
    }
    fn flush(&self) {
        if let Some(seg) = self.open.lock().take() {
            self.segments.lock().push(seg);
        }
    }
    fn synchronized(&self) -> bool {
        !self.unsynchronized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 12: a long test does not keep every played frame.
    #[tokio::test(start_paused = true)]
    async fn memory_output_keeps_only_the_latest_audio() {
        let out = MemoryAudioOutput::new().with_retention(Duration::from_secs(1));
        let mut events = out.subscribe();
        for _ in 0..300 {
            out.capture_frame(AudioFrame::silence(24_000, 1, 240)).await; // 10 ms
        }
        out.flush();
        let finished = super::super::wait_for_finished(&mut events).await;
        assert!(finished.is_some());
        assert_eq!(out.played_duration(), Duration::from_secs(3));
        let kept = out.played();
        assert_eq!(kept.len(), 100);
        let kept_audio: Duration = kept.iter().map(|p| p.frame.duration()).sum();
        assert_eq!(kept_audio, Duration::from_secs(1));
        // The default keeps a bounded amount too.
        assert_eq!(
            MemoryAudioOutput::new().played.lock().retention,
            MEMORY_OUTPUT_RETENTION
        );
    }
}
