//! A bounded input queue that sheds the oldest audio under overload.
//!
//! A session reads its user audio at the pace of its slowest stage (the VAD, which shares the
//! machine's cores with every other session). When the process is overloaded that stage falls
//! behind real time; an unbounded queue in front of it then grows without limit (memory) and
//! every decision is made on audio seconds old. [`bounded_audio_input`] puts a queue of at most
//! `max_buffered` of audio between the source and the session: the source is always read at
//! its own pace, and when the queue is full the *oldest* frames are dropped, counted in
//! [`OverloadStats`] and reported by one warning per overload episode. When the session catches
//! up the queue drains and shedding stops by itself (an info log says so).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::AudioInput;
use crate::audio::AudioFrame;

/// The default bound of [`bounded_audio_input`]: 5 s of audio.
pub const DEFAULT_MAX_BUFFERED_INPUT: Duration = Duration::from_secs(5);

/// Counters of a [`bounded_audio_input`] queue (a cheap, cloneable handle).
#[derive(Clone, Debug, Default)]
pub struct OverloadStats {
    inner: Arc<Mutex<StatsInner>>,
}

#[derive(Debug, Default)]
struct StatsInner {
    dropped_frames: u64,
    dropped_audio: Duration,
    episodes: u64,
    max_buffered: Duration,
    shedding: bool,
}

impl OverloadStats {
    /// Frames dropped so far.
    pub fn dropped_frames(&self) -> u64 {
        self.inner.lock().dropped_frames
    }

    /// Audio dropped so far.
    pub fn dropped_audio(&self) -> Duration {
        self.inner.lock().dropped_audio
    }

    /// Overload episodes so far (each began with a warning and ended when the queue drained).
    pub fn episodes(&self) -> u64 {
        self.inner.lock().episodes
    }

    /// The most audio the queue ever held.
    pub fn max_buffered(&self) -> Duration {
        self.inner.lock().max_buffered
    }

    /// Whether the queue is shedding now (an episode that has not ended).
    pub fn is_shedding(&self) -> bool {
        self.inner.lock().shedding
    }
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<AudioFrame>,
    buffered: Duration,
    ended: bool,
}

/// Wraps `input` in a queue holding at most `max_buffered` of audio (see the module docs).
/// Spawns the reading task, so it must be called inside a tokio runtime; the task ends with the
/// source or when the returned input is dropped.
pub fn bounded_audio_input(
    input: AudioInput,
    max_buffered: Duration,
) -> (AudioInput, OverloadStats) {
    let label = input.label().to_owned();
    let stats = OverloadStats::default();
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        ready: Notify::new(),
    });
    let reader = {
        let shared = shared.clone();
        let stats = stats.clone();
        let label = label.clone();
        let mut source = input.into_stream();
        tokio::spawn(async move {
            while let Some(frame) = source.next().await {
                if Arc::strong_count(&shared) == 1 {
                    return; // the session dropped its input
                }
                push(&shared, &stats, &label, frame, max_buffered);
            }
            shared.queue.lock().ended = true;
            shared.ready.notify_one();
        })
    };
    let guard = Arc::new(AbortOnDrop(reader));
    let stream = futures::stream::unfold(
        (shared, stats.clone(), guard),
        |(shared, stats, guard)| async move {
            loop {
                let popped = {
                    let mut q = shared.queue.lock();
                    match q.frames.pop_front() {
                        Some(frame) => {
                            q.buffered = q.buffered.saturating_sub(frame.duration());
                            Some((Some(frame), q.frames.is_empty()))
                        }
                        None if q.ended => Some((None, true)),
                        None => None,
                    }
                };
                match popped {
                    Some((Some(frame), drained)) => {
                        if drained {
                            let mut s = stats.inner.lock();
                            if s.shedding {
                                s.shedding = false;
                                tracing::info!("audio input caught up; no longer dropping audio");
                            }
                        }
                        return Some((frame, (shared, stats, guard)));
                    }
                    Some((None, _)) => return None,
                    None => shared.ready.notified().await,
                }
            }
        },
    );
    (AudioInput::from_stream(label, stream), stats)
}

fn push(shared: &Shared, stats: &OverloadStats, label: &str, frame: AudioFrame, max: Duration) {
    {
        let mut q = shared.queue.lock();
        q.buffered = q.buffered.saturating_add(frame.duration());
        q.frames.push_back(frame);
        let mut dropped = 0u64;
        let mut dropped_audio = Duration::ZERO;
        // Keep at least the newest frame.
        while q.buffered > max && q.frames.len() > 1 {
            if let Some(old) = q.frames.pop_front() {
                let d = old.duration();
                q.buffered = q.buffered.saturating_sub(d);
                dropped += 1;
                dropped_audio = dropped_audio.saturating_add(d);
            }
        }
        let mut s = stats.inner.lock();
        s.max_buffered = s.max_buffered.max(q.buffered);
        if dropped > 0 {
            s.dropped_frames += dropped;
            s.dropped_audio = s.dropped_audio.saturating_add(dropped_audio);
            if !s.shedding {
                s.shedding = true;
                s.episodes += 1;
                tracing::warn!(
                    input = label,
                    max_buffered = ?max,
                    "session falls behind its audio input (overload); dropping the oldest audio"
                );
            }
        }
    }
    shared.ready.notify_one();
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::memory::audio_input_channel;
    use tokio::time::sleep;

    fn frame_10ms() -> AudioFrame {
        AudioFrame::silence(16_000, 1, 160)
    }

    /// Issue 15 item 8: a consumer slower than real time (a VAD taking 30 ms per 10 ms frame)
    /// on the paused clock: the queue stays bounded, the oldest audio is dropped and counted,
    /// and once the input slows down the consumer catches up and shedding stops by itself.
    #[tokio::test(start_paused = true)]
    async fn a_slow_consumer_sheds_the_oldest_audio_and_recovers() {
        let (tx, input) = audio_input_channel();
        let max = Duration::from_millis(500);
        let (input, stats) = bounded_audio_input(input, max);
        let consumed = Arc::new(Mutex::new(0usize));
        let consumer = {
            let consumed = consumed.clone();
            tokio::spawn(async move {
                let mut frames = input.into_stream();
                while frames.next().await.is_some() {
                    *consumed.lock() += 1;
                    sleep(Duration::from_millis(30)).await; // slower than real time
                }
            })
        };
        // 10 s of real-time audio.
        for _ in 0..1_000 {
            assert!(tx.send(frame_10ms()));
            sleep(Duration::from_millis(10)).await;
        }
        assert!(stats.is_shedding());
        assert_eq!(stats.episodes(), 1);
        assert!(stats.dropped_frames() > 500, "{}", stats.dropped_frames());
        assert!(stats.max_buffered() <= max, "{:?}", stats.max_buffered());
        assert_eq!(
            stats.dropped_audio(),
            Duration::from_millis(10) * stats.dropped_frames() as u32
        );
        // Input slower than the consumer: the queue drains and shedding ends by itself (the
        // full queue drains within 3 s; after that nothing more is dropped).
        for _ in 0..60 {
            assert!(tx.send(frame_10ms()));
            sleep(Duration::from_millis(50)).await;
        }
        let dropped = stats.dropped_frames();
        for _ in 0..40 {
            assert!(tx.send(frame_10ms()));
            sleep(Duration::from_millis(50)).await;
        }
        assert!(!stats.is_shedding());
        assert_eq!(stats.dropped_frames(), dropped);
        assert_eq!(stats.episodes(), 1);
        drop(tx);
        consumer.await.unwrap();
        assert_eq!(
            *consumed.lock() as u64 + stats.dropped_frames(),
            1_100,
            "every frame was either consumed or counted as dropped"
        );
    }
}
