//! [`PacedAudioOutput`]: an [`AudioOutput`] that plays frames at real-time pace on tokio's
//! clock and hands each frame to a [`FrameSink`] when it starts playing.
//!
//! It is the playout model behind the in-memory and WAV outputs: a frame of 50 ms occupies the
//! output for 50 ms of (possibly paused, in tests) tokio time, so playback positions,
//! interruptions and transcript synchronization behave as they would on a speaker.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::{AudioOutput, PlaybackEvent, PlaybackFinished};
use crate::audio::AudioFrame;

/// Receives frames as they start playing.
pub trait FrameSink: Send + 'static {
    /// `frame` starts playing now.
    fn play(&mut self, frame: &AudioFrame);
}

impl<F: FnMut(&AudioFrame) + Send + 'static> FrameSink for F {
    fn play(&mut self, frame: &AudioFrame) {
        self(frame)
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<AudioFrame>,
    paused: bool,
    /// A segment captured a frame or was flushed and has not finished yet.
    open: bool,
    flushed: bool,
    started: bool,
    /// Audio of the current segment fully played.
    position: Duration,
    /// The frame playing now: when it started and how long it is.
    playing: Option<(Instant, Duration)>,
    /// Bumped by `clear_buffer`, so the player drops the accounting of a cleared frame.
    epoch: u64,
    /// Audio in `queue` (not counting the frame playing).
    queued: Duration,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    /// Woken when queued audio left the queue (played, cleared) or playback resumed.
    space: Notify,
    events: broadcast::Sender<PlaybackEvent>,
    /// `capture_frame` waits while this much audio is queued (besides the frame playing).
    limit: Duration,
    /// `capture_frame` also waits while the output is paused (a device or a room track).
    wait_while_paused: bool,
}

/// The queue of [`PacedAudioOutput::new`]: audio captured ahead of playback beyond this waits
/// (backpressure to the TTS), so an output holds at most this much audio whatever the provider
/// delivers.
pub const DEFAULT_OUTPUT_QUEUE: Duration = Duration::from_secs(10);

/// A real-time paced [`AudioOutput`] over a [`FrameSink`].
///
/// Must be created inside a tokio runtime (it spawns its player task, stopped on drop).
pub struct PacedAudioOutput {
    label: String,
    sample_rate: Option<u32>,
    shared: Arc<Shared>,
    _player: AbortOnDropHandle<()>,
}

impl std::fmt::Debug for PacedAudioOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedAudioOutput")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl PacedAudioOutput {
    /// An output named `label` that wants `sample_rate` (or any rate with `None`) and plays into
    /// `sink`, queueing up to [`DEFAULT_OUTPUT_QUEUE`] of audio ahead of playback:
    /// [`capture_frame`](AudioOutput::capture_frame) waits while that much is queued (also
    /// while paused, once the queue is full). A capture waiting when
    /// [`clear_buffer`](AudioOutput::clear_buffer) is called returns without queueing its frame.
    pub fn new(label: impl Into<String>, sample_rate: Option<u32>, sink: impl FrameSink) -> Self {
        Self::build(
            label.into(),
            sample_rate,
            DEFAULT_OUTPUT_QUEUE,
            false,
            Box::new(sink),
        )
    }

    /// Like [`new`](Self::new), with a bounded queue, as a device or a room track has:
    /// [`capture_frame`](AudioOutput::capture_frame) waits while `limit` of audio is queued,
    /// and while the output is paused (the reference's room output queues 200 ms). A capture
    /// waiting when [`clear_buffer`](AudioOutput::clear_buffer) is called returns without
    /// queueing its frame (it belonged to the cleared segment).
    pub fn bounded(
        label: impl Into<String>,
        sample_rate: Option<u32>,
        limit: Duration,
        sink: impl FrameSink,
    ) -> Self {
        Self::build(label.into(), sample_rate, limit, true, Box::new(sink))
    }

    fn build(
        label: String,
        sample_rate: Option<u32>,
        limit: Duration,
        wait_while_paused: bool,
        sink: Box<dyn FrameSink>,
    ) -> Self {
        let (events, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            space: Notify::new(),
            events,
            limit,
            wait_while_paused,
        });
        let player = tokio::spawn(play_loop(shared.clone(), sink));
        Self {
            label,
            sample_rate,
            shared,
            _player: AbortOnDropHandle::new(player),
        }
    }

    /// Audio queued ahead of playback now (not counting the frame playing).
    pub fn queued(&self) -> Duration {
        self.shared.state.lock().queued
    }

    /// Whether audio is queued or playing.
    pub fn is_playing(&self) -> bool {
        let st = self.shared.state.lock();
        st.open
    }
}

enum Step {
    Wait,
    /// A frame, the epoch it belongs to, and when it starts on the playout clock.
    Play(AudioFrame, u64, Instant),
}

async fn play_loop(shared: Arc<Shared>, mut sink: Box<dyn FrameSink>) {
    // While playout is continuous, the next frame starts exactly when the previous one ends (not
    // when the timer woke us): a device plays back to back, and per-frame timer lateness must
    // not add up over a segment (it did: ~1 ms per frame, 100+ ms late after a few seconds
    // under load). `None` after waiting for audio.
    let mut clock: Option<Instant> = None;
    loop {
        let step = {
            let mut st = shared.state.lock();
            if st.paused {
                Step::Wait
            } else if let Some(frame) = st.queue.pop_front() {
                st.queued = st.queued.saturating_sub(frame.duration());
                shared.space.notify_waiters();
                if !st.started {
                    st.started = true;
                    let _ = shared.events.send(PlaybackEvent::Started);
                }
                let start = clock.unwrap_or_else(Instant::now);
                st.playing = Some((start, frame.duration()));
                Step::Play(frame, st.epoch, start)
            } else if st.open && st.flushed {
                let finished = PlaybackFinished {
                    playback_position: st.position,
                    interrupted: false,
                };
                reset_segment(&mut st);
                let _ = shared.events.send(PlaybackEvent::Finished(finished));
                continue;
            } else {
                Step::Wait
            }
        };
        match step {
            Step::Wait => {
                clock = None;
                shared.wake.notified().await
            }
            Step::Play(frame, epoch, start) => {
                sink.play(&frame);
                let duration = frame.duration();
                let end = start + duration;
                tokio::time::sleep_until(end).await;
                clock = Some(end);
                let mut st = shared.state.lock();
                if st.epoch == epoch {
                    st.position += duration;
                    st.playing = None;
                }
            }
        }
    }
}

fn reset_segment(st: &mut State) {
    st.queue.clear();
    st.queued = Duration::ZERO;
    st.open = false;
    st.flushed = false;
    st.started = false;
    st.position = Duration::ZERO;
    st.playing = None;
}

#[async_trait]
impl AudioOutput for PacedAudioOutput {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn sample_rate(&self) -> Option<u32> {
        self.sample_rate
    }

    fn can_pause(&self) -> bool {
        true
    }

    async fn capture_frame(&self, frame: AudioFrame) {
        let mut epoch = None;
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut st = self.shared.state.lock();
                if *epoch.get_or_insert(st.epoch) != st.epoch {
                    // Cleared while waiting: the frame belonged to the cleared segment.
                    return;
                }
                let full = (self.shared.wait_while_paused && st.paused)
                    || (!st.queue.is_empty() && st.queued >= self.shared.limit);
                if !full {
                    st.open = true;
                    st.queued += frame.duration();
                    st.queue.push_back(frame);
                    break;
                }
            }
            space.await;
        }
        self.shared.wake.notify_one();
    }

    fn flush(&self) {
        {
            let mut st = self.shared.state.lock();
            st.open = true;
            st.flushed = true;
        }
        self.shared.wake.notify_one();
    }

    fn clear_buffer(&self) {
        let finished = {
            let mut st = self.shared.state.lock();
            if !st.open {
                // Nothing to finish, but a capture waiting for space is released.
                st.epoch += 1;
                drop(st);
                self.shared.space.notify_waiters();
                return;
            }
            let mut position = st.position;
            if let Some((since, duration)) = st.playing {
                position += Instant::now()
                    .saturating_duration_since(since)
                    .min(duration);
            }
            reset_segment(&mut st);
            st.epoch += 1;
            self.shared.space.notify_waiters();
            PlaybackFinished {
                playback_position: position,
                interrupted: true,
            }
        };
        let _ = self.shared.events.send(PlaybackEvent::Finished(finished));
        self.shared.wake.notify_one();
    }

    fn pause(&self) {
        self.shared.state.lock().paused = true;
    }

    fn resume(&self) {
        self.shared.state.lock().paused = false;
        self.shared.wake.notify_one();
        self.shared.space.notify_waiters();
    }

    fn subscribe(&self) -> broadcast::Receiver<PlaybackEvent> {
        self.shared.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::wait_for_finished;

    fn frame(ms: u64) -> AudioFrame {
        AudioFrame::silence(16_000, 1, (16 * ms) as usize)
    }

    #[tokio::test(start_paused = true)]
    async fn a_segment_plays_in_real_time_and_reports_start_and_finish() {
        let out = PacedAudioOutput::new("test", None, |_: &AudioFrame| {});
        let mut events = out.subscribe();
        let start = Instant::now();
        for _ in 0..5 {
            out.capture_frame(frame(100)).await;
        }
        out.flush();
        assert_eq!(events.recv().await.unwrap(), PlaybackEvent::Started);
        let finished = wait_for_finished(&mut events).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert_eq!(finished.playback_position, Duration::from_millis(500));
        assert!(!finished.interrupted);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_stops_the_clock_and_resume_continues() {
        let out = PacedAudioOutput::new("test", None, |_: &AudioFrame| {});
        let mut events = out.subscribe();
        let start = Instant::now();
        for _ in 0..10 {
            out.capture_frame(frame(10)).await;
        }
        out.flush();
        tokio::time::sleep(Duration::from_millis(50)).await;
        out.pause();
        tokio::time::sleep(Duration::from_secs(1)).await;
        out.resume();
        let finished = wait_for_finished(&mut events).await.unwrap();
        assert_eq!(finished.playback_position, Duration::from_millis(100));
        assert_eq!(start.elapsed(), Duration::from_millis(1100));
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_flushed_segment_finishes_at_once_and_clear_without_audio_is_silent() {
        let out = PacedAudioOutput::new("test", None, |_: &AudioFrame| {});
        let mut events = out.subscribe();
        out.clear_buffer();
        out.flush();
        let finished = wait_for_finished(&mut events).await.unwrap();
        assert_eq!(finished.playback_position, Duration::ZERO);
        assert!(!finished.interrupted);
        assert!(events.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_output_makes_the_writer_wait_while_full_or_paused_and_clear_releases_it() {
        let out = Arc::new(PacedAudioOutput::bounded(
            "test",
            None,
            Duration::from_millis(200),
            |_: &AudioFrame| {},
        ));
        let start = Instant::now();
        // 1 s of audio through a 200 ms queue (plus the frame playing): the writer is done
        // when the last 300 ms remain.
        for _ in 0..10 {
            out.capture_frame(frame(100)).await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(700));
        // Paused: the writer waits even with room in the queue...
        out.pause();
        let writer = {
            let out = out.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    out.capture_frame(frame(100)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!writer.is_finished());
        // ...until a clear: the waiting frame is dropped (it belonged to the cleared segment).
        let mut events = out.subscribe();
        out.clear_buffer();
        let finished = wait_for_finished(&mut events).await.unwrap();
        assert!(finished.interrupted);
        tokio::time::sleep(Duration::from_millis(1)).await;
        out.resume();
        writer.await.unwrap();
    }

    /// Issue 19: the default output waits when its queue is full (it used to queue without
    /// limit): a writer far ahead of playback is held back, the queue never exceeds the limit,
    /// and a clear releases a waiting writer.
    #[tokio::test(start_paused = true)]
    async fn the_default_output_applies_backpressure() {
        let out = Arc::new(PacedAudioOutput::new("test", None, |_: &AudioFrame| {}));
        let start = Instant::now();
        let writer = {
            let out = out.clone();
            tokio::spawn(async move {
                // 30 s of audio as fast as it comes (a TTS faster than real time).
                for _ in 0..300 {
                    out.capture_frame(frame(100)).await;
                }
                start.elapsed()
            })
        };
        let mut peak = Duration::ZERO;
        while !writer.is_finished() {
            peak = peak.max(out.queued());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(peak <= DEFAULT_OUTPUT_QUEUE, "{peak:?}");
        assert!(
            peak >= DEFAULT_OUTPUT_QUEUE - Duration::from_millis(100),
            "{peak:?}"
        );
        // The last frame was queued when the last 10 s (plus the frame playing) remained.
        assert_eq!(writer.await.unwrap(), Duration::from_millis(19_900));
        // Paused, the writer may fill the queue, then waits; a clear releases it.
        let mut events = out.subscribe();
        out.pause();
        let writer = {
            let out = out.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    out.capture_frame(frame(100)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!writer.is_finished());
        assert!(out.queued() <= DEFAULT_OUTPUT_QUEUE);
        out.clear_buffer();
        out.resume();
        loop {
            match wait_for_finished(&mut events).await {
                Some(f) if f.interrupted => break,
                Some(_) => continue,
                None => panic!("output closed"),
            }
        }
        writer.abort();
    }
}
