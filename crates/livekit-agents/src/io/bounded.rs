//! A bounded input queue that sheds the oldest audio under overload.
//!
//! A session reads its user audio at the pace of its slowest stage (the VAD, which shares the
//! machine's cores with every other session). When the process is overloaded that stage falls
//! behind real time; an unbounded queue in front of it then grows without limit (memory) and
//! every decision is made on audio seconds old. [`bounded_audio_input`] puts a queue between
//! the source and the session: the session reads the source itself whenever it asks for audio
//! (no extra task hop per frame), a sweeper reads it while the session is busy, and a frame
//! that waited `max_buffered` (5 s by default) without being consumed is dropped, oldest
//! first, counted in
//! [`OverloadStats`] (and the process-wide [`overload_totals`], which the agent server exports
//! on `/metrics`) and reported by one warning per overload episode. When the session catches
//! up the queue drains and shedding stops by itself (an info log says so).
//!
//! Shedding goes by how long audio waited, not by how much is queued, so a source faster than
//! real time (a file, a test pushing a whole utterance at once) loses nothing while the
//! session keeps up; such a source is held back instead (backpressure) once
//! [`MAX_QUEUED_INPUT`] of audio is queued, so memory stays bounded whatever the source.
//! [`AgentSession::start`](crate::voice::AgentSession::start) bounds every input (room,
//! console, WAV, user-built) with [`AudioInput::bounded`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::Stream;
use parking_lot::Mutex;

use super::AudioInput;
use crate::audio::AudioFrame;

/// The default bound of [`bounded_audio_input`]: audio that waited 5 s is dropped.
pub const DEFAULT_MAX_BUFFERED_INPUT: Duration = Duration::from_secs(5);

/// The most audio a bounded input queues (at least its `max_buffered`): past it the source is
/// not read until the session consumes (only a source faster than real time gets there).
pub const MAX_QUEUED_INPUT: Duration = Duration::from_secs(60);

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

impl Drop for StatsInner {
    fn drop(&mut self) {
        if self.shedding {
            TOTALS.shedding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The process-wide sums of every bounded input's counters (what the agent server's
/// `/metrics` exports), from [`overload_totals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OverloadTotals {
    /// Frames dropped by all bounded inputs since the process started.
    pub dropped_frames: u64,
    /// Audio dropped by all bounded inputs since the process started.
    pub dropped_audio: Duration,
    /// Overload episodes of all bounded inputs since the process started.
    pub episodes: u64,
    /// Bounded inputs shedding audio now.
    pub shedding_inputs: u64,
}

struct Totals {
    dropped_frames: AtomicU64,
    dropped_audio_us: AtomicU64,
    episodes: AtomicU64,
    shedding: AtomicU64,
}

static TOTALS: Totals = Totals {
    dropped_frames: AtomicU64::new(0),
    dropped_audio_us: AtomicU64::new(0),
    episodes: AtomicU64::new(0),
    shedding: AtomicU64::new(0),
};

/// Adds audio that a model stream's input queue dropped (`crate::model_input`) to the
/// process totals; `new_episode` when that queue started shedding.
pub(crate) fn record_model_input_drop(frames: u64, audio: Duration, new_episode: bool) {
    TOTALS.dropped_frames.fetch_add(frames, Ordering::Relaxed);
    TOTALS.dropped_audio_us.fetch_add(
        u64::try_from(audio.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    if new_episode {
        TOTALS.episodes.fetch_add(1, Ordering::Relaxed);
    }
}

/// The sums of every bounded input's [`OverloadStats`] in this process.
pub fn overload_totals() -> OverloadTotals {
    OverloadTotals {
        dropped_frames: TOTALS.dropped_frames.load(Ordering::Relaxed),
        dropped_audio: Duration::from_micros(TOTALS.dropped_audio_us.load(Ordering::Relaxed)),
        episodes: TOTALS.episodes.load(Ordering::Relaxed),
        shedding_inputs: TOTALS.shedding.load(Ordering::Relaxed),
    }
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

/// The source, the queue and the consumer's waker, behind one lock.
struct Shared {
    state: Mutex<State>,
}

struct State {
    /// `None` once the source ended.
    source: Option<Pin<Box<dyn Stream<Item = AudioFrame> + Send>>>,
    /// Frames with the instant they are taken to have arrived.
    frames: VecDeque<(tokio::time::Instant, AudioFrame)>,
    buffered: Duration,
    /// When the source was last read until it had nothing more (frames read later arrived
    /// after it).
    last_drained: tokio::time::Instant,
    /// Whether the consumer read the source since the sweeper last looked.
    consumer_looked: bool,
    /// The consumer's waker (the sweeper reads the source with it, so a frame arriving later
    /// wakes the consumer, not the sweeper).
    waker: Option<Waker>,
    /// Copies of the counters' `max_buffered` and `shedding` (kept under this lock, so the
    /// counters' own lock is taken only when they change).
    max_seen: Duration,
    shedding: bool,
}

/// Wraps `input` in a queue holding at most `max_buffered` of audio (see the module docs).
/// Spawns a small sweeper task, so it must be called inside a tokio runtime; the task ends
/// when the returned input is dropped.
///
/// An input that is already bounded is returned as it is, with its counters (so wrapping twice,
/// by the room I/O and by `AgentSession::start`, adds no second queue). Who the audio comes
/// from ([`AudioInput::participant_updates`]) is kept.
///
/// The consumer reads the source itself whenever it asks for a frame, so a frame costs no
/// extra task hop on its way to the session (the session's task is woken by the source
/// directly). Frames read in one go are stamped with their arrival as well as it can be
/// known: not before the previous read that emptied the source, and, counting back from now,
/// not later than the audio that followed them allows. While the consumer does not ask (it
/// is busy), a sweeper reads the source every `max_buffered / 4` (at most 1 s), so audio that
/// waits too long is shed even then and memory stays bounded.
pub fn bounded_audio_input(
    input: AudioInput,
    max_buffered: Duration,
) -> (AudioInput, OverloadStats) {
    if let Some(stats) = input.overload_stats() {
        return (input, stats);
    }
    let label: Arc<str> = input.label().into();
    let participant = input.participant_updates();
    let stats = OverloadStats::default();
    let cap = max_buffered.max(MAX_QUEUED_INPUT);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            source: Some(input.into_stream()),
            frames: VecDeque::new(),
            buffered: Duration::ZERO,
            last_drained: tokio::time::Instant::now(),
            consumer_looked: false,
            waker: None,
            max_seen: Duration::ZERO,
            shedding: false,
        }),
    });
    let period = (max_buffered / 4).clamp(Duration::from_millis(1), Duration::from_secs(1));
    let sweeper = {
        let weak = Arc::downgrade(&shared);
        let stats = stats.clone();
        let label = label.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                if !first {
                    tokio::time::sleep(period).await;
                }
                let Some(shared) = weak.upgrade() else {
                    return; // the session dropped its input
                };
                let mut st = shared.state.lock();
                if st.source.is_none() {
                    return;
                }
                if std::mem::take(&mut st.consumer_looked) && !first {
                    continue; // the consumer is reading: nothing to do
                }
                first = false;
                let waker = st.waker.clone().unwrap_or_else(futures::task::noop_waker);
                let woke = drain(
                    &mut st,
                    &mut Context::from_waker(&waker),
                    &stats,
                    &label,
                    max_buffered,
                    cap,
                );
                drop(st);
                if woke {
                    waker.wake();
                }
            }
        })
    };
    let reader = Reader {
        shared,
        stats: stats.clone(),
        label: label.clone(),
        max_buffered,
        cap,
        _sweeper: AbortOnDrop(sweeper),
    };
    let mut bounded =
        AudioInput::from_stream(label.to_string(), reader).with_participant_updates(participant);
    bounded.overload = Some(stats.clone());
    (bounded, stats)
}

/// The consumer's end: a stream over the queue that reads the source when asked.
struct Reader {
    shared: Arc<Shared>,
    stats: OverloadStats,
    label: Arc<str>,
    max_buffered: Duration,
    cap: Duration,
    _sweeper: AbortOnDrop,
}

impl Stream for Reader {
    type Item = AudioFrame;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AudioFrame>> {
        let this = self.get_mut();
        let mut st = this.shared.state.lock();
        st.consumer_looked = true;
        drain(
            &mut st,
            cx,
            &this.stats,
            &this.label,
            this.max_buffered,
            this.cap,
        );
        if let Some((_, frame)) = st.frames.pop_front() {
            st.buffered = st.buffered.saturating_sub(frame.duration());
            if st.frames.is_empty() && st.shedding {
                st.shedding = false;
                let mut s = this.stats.inner.lock();
                if s.shedding {
                    s.shedding = false;
                    TOTALS.shedding.fetch_sub(1, Ordering::Relaxed);
                    tracing::info!("audio input caught up; no longer dropping audio");
                }
            }
            return Poll::Ready(Some(frame));
        }
        if st.source.is_none() {
            return Poll::Ready(None);
        }
        // The source is pending with this waker registered; the sweeper uses it too.
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Reads what the source has (up to the `cap` of queued audio), stamps it, and drops what
/// waited `max` or longer (keeping at least the newest frame). Returns whether frames were
/// queued or the source ended (the consumer has something to look at).
fn drain(
    st: &mut State,
    cx: &mut Context<'_>,
    stats: &OverloadStats,
    label: &str,
    max: Duration,
    cap: Duration,
) -> bool {
    let now = tokio::time::Instant::now();
    let first_new = st.frames.len();
    let mut emptied = false;
    while st.buffered < cap {
        let Some(source) = st.source.as_mut() else {
            emptied = true;
            break;
        };
        match source.as_mut().poll_next(cx) {
            Poll::Ready(Some(frame)) => {
                st.buffered = st.buffered.saturating_add(frame.duration());
                st.frames.push_back((now, frame));
            }
            Poll::Ready(None) => {
                st.source = None;
                emptied = true;
                break;
            }
            Poll::Pending => {
                emptied = true;
                break;
            }
        }
    }
    let added = st.frames.len() - first_new;
    if added > 1 {
        // Read in one go: frame i arrived no later than `now` minus the audio after it, and
        // not before the previous read that emptied the source.
        let mut after = Duration::ZERO;
        let floor = st.last_drained;
        for (at, frame) in st.frames.range_mut(first_new..).rev() {
            *at = now.checked_sub(after).unwrap_or(floor).max(floor);
            after = after.saturating_add(frame.duration());
        }
    }
    if emptied {
        st.last_drained = now;
    }
    if added == 0 {
        return st.source.is_none();
    }
    let mut dropped = 0u64;
    let mut dropped_audio = Duration::ZERO;
    while st.frames.len() > 1
        && st
            .frames
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= max)
    {
        if let Some((_, old)) = st.frames.pop_front() {
            let d = old.duration();
            st.buffered = st.buffered.saturating_sub(d);
            dropped += 1;
            dropped_audio = dropped_audio.saturating_add(d);
        }
    }
    if st.buffered <= st.max_seen && dropped == 0 {
        return true;
    }
    st.max_seen = st.max_seen.max(st.buffered);
    let mut s = stats.inner.lock();
    s.max_buffered = s.max_buffered.max(st.buffered);
    if dropped > 0 {
        s.dropped_frames += dropped;
        s.dropped_audio = s.dropped_audio.saturating_add(dropped_audio);
        TOTALS.dropped_frames.fetch_add(dropped, Ordering::Relaxed);
        TOTALS.dropped_audio_us.fetch_add(
            u64::try_from(dropped_audio.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        st.shedding = true;
        if !s.shedding {
            s.shedding = true;
            s.episodes += 1;
            TOTALS.episodes.fetch_add(1, Ordering::Relaxed);
            TOTALS.shedding.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                input = label,
                max_buffered = ?max,
                "session falls behind its audio input (overload); dropping the oldest audio"
            );
        }
    }
    true
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
    use futures::StreamExt;
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

    /// A source faster than real time (a whole utterance pushed at once) loses nothing while
    /// the session keeps up: shedding goes by how long audio waited, not by how much is queued.
    #[tokio::test(start_paused = true)]
    async fn a_fast_source_is_not_shed() {
        let (tx, input) = audio_input_channel();
        let input = input.bounded(Duration::from_millis(500));
        let stats = input.overload_stats().expect("bounded");
        for _ in 0..2_000 {
            assert!(tx.send(frame_10ms())); // 20 s at once
        }
        drop(tx);
        let frames: Vec<_> = input.into_stream().collect().await;
        assert_eq!(frames.len(), 2_000);
        assert_eq!(stats.dropped_frames(), 0);
    }

    /// Past [`MAX_QUEUED_INPUT`] a fast source is held back (backpressure), not read ahead.
    #[tokio::test(start_paused = true)]
    async fn a_fast_source_is_held_back_at_the_cap() {
        let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = produced.clone();
        let source = futures::stream::iter(0..20_000).map(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
            frame_10ms()
        });
        let input = AudioInput::from_stream("fast", source).bounded(Duration::from_secs(5));
        let mut frames = input.into_stream();
        // Let the reader run as far as it can.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let cap_frames = (MAX_QUEUED_INPUT.as_millis() / 10) as usize;
        assert_eq!(produced.load(Ordering::SeqCst), cap_frames);
        let mut n = 0;
        while frames.next().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 20_000, "nothing was dropped");
    }

    /// Wrapping twice adds no second queue; who the audio comes from is kept; the process-wide
    /// totals count what every bounded input dropped.
    #[tokio::test(start_paused = true)]
    async fn bounding_is_idempotent_keeps_the_participant_and_feeds_the_totals() {
        let before = overload_totals();
        let (tx, input) = audio_input_channel();
        let params = crate::audio::filter::FilterParams {
            participant_identity: Some("alice".into()),
            ..Default::default()
        };
        let input = input.with_participant(params);
        let (input, stats) = bounded_audio_input(input, Duration::from_millis(100));
        let (input, again) = bounded_audio_input(input, Duration::from_secs(5));
        assert!(Arc::ptr_eq(&stats.inner, &again.inner), "no second queue");
        assert_eq!(
            input.participant().participant_identity.as_deref(),
            Some("alice")
        );
        // Nobody consumes: 1 s of real-time audio sheds about 0.9 s.
        for _ in 0..100 {
            assert!(tx.send(frame_10ms()));
            sleep(Duration::from_millis(10)).await;
        }
        assert!(stats.is_shedding());
        let after = overload_totals();
        // Other tests of this binary may add to the totals concurrently: at least ours.
        assert!(after.dropped_frames >= before.dropped_frames + stats.dropped_frames());
        assert!(after.episodes > before.episodes);
        assert!(after.shedding_inputs >= 1);
        assert!(after.dropped_audio >= before.dropped_audio + stats.dropped_audio());
        drop(input);
    }
}
