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

/// How many finished segments a [`MemoryTextOutput`] keeps by default (the latest ones).
pub const MEMORY_TEXT_RETENTION: usize = 1_000;

/// The most text a [`MemoryTextOutput`] keeps of one segment (bytes); later text of that
/// segment is dropped.
pub const MEMORY_TEXT_SEGMENT_CAP: usize = 1 << 20;

/// A [`TextOutput`] recording text per segment.
///
/// Bounded, so long tests and soak runs do not grow without limit: the latest
/// [`MEMORY_TEXT_RETENTION`] finished segments are kept ([`with_retention`](Self::with_retention)),
/// each up to [`MEMORY_TEXT_SEGMENT_CAP`] bytes; [`segment_count`](Self::segment_count) counts
/// every segment.
#[derive(Clone, Debug)]
pub struct MemoryTextOutput {
    state: Arc<Mutex<TextState>>,
    retention: usize,
    unsynchronized: bool,
}

#[derive(Debug, Default)]
struct TextState {
    segments: std::collections::VecDeque<String>,
    open: Option<String>,
    flushed: u64,
}

impl Default for MemoryTextOutput {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            retention: MEMORY_TEXT_RETENTION,
            unsynchronized: false,
        }
    }
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

    /// Keep the latest `segments` finished segments instead of [`MEMORY_TEXT_RETENTION`]
    /// (at least one).
    pub fn with_retention(mut self, segments: usize) -> Self {
        self.retention = segments.max(1);
        self
    }

    /// The kept finished segments followed by the current one (if any text was captured since
    /// the last flush).
    pub fn segments(&self) -> Vec<String> {
        let st = self.state.lock();
        let mut out: Vec<String> = st.segments.iter().cloned().collect();
        if let Some(open) = st.open.clone() {
            out.push(open);
        }
        out
    }

    /// Every segment finished so far, including those no longer kept.
    pub fn segment_count(&self) -> u64 {
        self.state.lock().flushed
    }
}

#[async_trait]
impl TextOutput for MemoryTextOutput {
    fn label(&self) -> String {
        "memory".into()
    }
    async fn capture_text(&self, text: &str) {
        let mut st = self.state.lock();
        let open = st.open.get_or_insert_with(String::new);
        let room = MEMORY_TEXT_SEGMENT_CAP.saturating_sub(open.len());
        if text.len() <= room {
            open.push_str(text);
        } else {
            let mut cut = room;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            open.push_str(&text[..cut]);
        }
    }
    fn flush(&self) {
        let mut st = self.state.lock();
        if let Some(seg) = st.open.take() {
            st.segments.push_back(seg);
            st.flushed += 1;
            while st.segments.len() > self.retention {
                st.segments.pop_front();
            }
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

    /// Issue 15 item 12: the text recorder is bounded too.
    #[tokio::test]
    async fn memory_text_output_keeps_only_the_latest_segments() {
        let out = MemoryTextOutput::new().with_retention(3);
        for i in 0..10 {
            out.capture_text(&format!("segment {i}")).await;
            out.flush();
        }
        out.capture_text("open").await;
        assert_eq!(
            out.segments(),
            ["segment 7", "segment 8", "segment 9", "open"]
        );
        assert_eq!(out.segment_count(), 10);
        // One endless segment stops growing at the cap, on a character boundary.
        let out = MemoryTextOutput::new();
        let chunk = "é".repeat(1_000); // 2,000 bytes
        for _ in 0..600 {
            out.capture_text(&chunk).await;
        }
        let seg = &out.segments()[0];
        assert!(seg.len() <= MEMORY_TEXT_SEGMENT_CAP && seg.len() > MEMORY_TEXT_SEGMENT_CAP - 2);
        assert!(seg.chars().all(|c| c == 'é'));
    }
}
