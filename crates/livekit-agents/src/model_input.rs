//! The input queue of a model stream: what the session pushes, synchronously, into a
//! [`SpeechStream`](crate::stt::SpeechStream), [`VadStream`](crate::vad::VadStream) or
//! [`SynthesizeStream`](crate::tts::SynthesizeStream), and the provider task reads.
//!
//! The pushes are synchronous (the session's audio path and the LLM's text path cannot wait on
//! a provider), so the queue cannot apply backpressure; it is bounded instead, with a policy per
//! kind of input:
//!
//! - **Audio** ([`SttInput::Frame`](crate::stt::SttInput::Frame),
//!   [`VadInput::Frame`](crate::vad::VadInput::Frame)): at most [`MAX_QUEUED_AUDIO`] (20 s) waits
//!   for the provider; a push past it drops the *oldest* queued audio, counts it in
//!   [`overload_totals`](crate::io::bounded::overload_totals) (the `/metrics` dropped-audio
//!   counters) and logs a warning once per episode. Why drop and not fail: the pusher is live
//!   audio, which cannot be paused or re-sent, and in a conversation the newest audio is the
//!   one worth recognizing; a queue this long only builds up while a provider stalls or
//!   reconnects, which its own deadlines end. Dropped audio still counts in
//!   [`SttInputReceiver::consumed_secs`](crate::stt::SttInputReceiver::consumed_secs), so
//!   provider timestamps stay on the session's timeline.
//! - **Text** ([`TtsInput::Text`](crate::tts::TtsInput::Text)) is never dropped: past
//!   [`MAX_QUEUED_TEXT`] (1 MiB not yet read by the provider) a push is refused
//!   ([`InputError::Full`] from `try_push_text`), the queue is marked overflowed, and the
//!   stream ends with an `ApiError` item instead of a clean end, so a reply cannot be cut short
//!   silently.
//! - **Markers** (`Flush`) are never dropped and cost nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::audio::AudioFrame;

/// Most audio a model stream's input queue holds before dropping the oldest (20 s).
pub const MAX_QUEUED_AUDIO: Duration = Duration::from_secs(20);

/// Most text (bytes) a model stream's input queue holds before refusing more (1 MiB).
pub const MAX_QUEUED_TEXT: usize = 1 << 20;

/// What a model stream's input queue carries: audio can be shed, text and markers cannot.
pub trait ModelInput: Send + 'static {
    /// How much audio this item carries, if it is audio (it may then be dropped when the
    /// queue is full); `None` for anything that must not be dropped.
    fn audio_duration(&self) -> Option<Duration>;
    /// Bytes of text carried (counted against [`MAX_QUEUED_TEXT`]).
    fn text_len(&self) -> usize {
        0
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The provider is this far behind: the item was not queued, and the stream will end with
    /// an error.
    #[error("the model stream's input is full ({queued_bytes} bytes of text not yet read)")]
    Full {
        /// Text bytes waiting.
        queued_bytes: usize,
    },
    /// The stream's input ended (or the stream was dropped).
    #[error("the model stream's input is closed")]
    Closed,
}

/// Why [`InputReceiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing is queued now.
    #[error("no input queued")]
    Empty,
    /// The input ended.
    #[error("the input ended")]
    Ended,
}

struct State<T> {
    items: VecDeque<T>,
    audio: Duration,
    text: usize,
    /// Samples (at their own rate, in seconds) dropped and not yet reported to the receiver.
    dropped_unreported: Duration,
    shedding: bool,
    receiver_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Notify,
    senders: AtomicUsize,
    overflowed: AtomicBool,
    max_audio: Duration,
    max_text: usize,
}

/// A bounded input queue for a model stream ([`MAX_QUEUED_AUDIO`], [`MAX_QUEUED_TEXT`]).
pub fn channel<T: ModelInput>() -> (InputSender<T>, InputReceiver<T>) {
    channel_with_limits(MAX_QUEUED_AUDIO, MAX_QUEUED_TEXT)
}

/// A bounded input queue with other limits (tests, or providers with a known backlog).
pub fn channel_with_limits<T: ModelInput>(
    max_audio: Duration,
    max_text: usize,
) -> (InputSender<T>, InputReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            audio: Duration::ZERO,
            text: 0,
            dropped_unreported: Duration::ZERO,
            shedding: false,
            receiver_gone: false,
        }),
        ready: Notify::new(),
        senders: AtomicUsize::new(1),
        overflowed: AtomicBool::new(false),
        max_audio,
        max_text,
    });
    (
        InputSender {
            shared: Some(shared.clone()),
        },
        InputReceiver { shared },
    )
}

/// The duration of `frame` (zero for a frame without a rate).
pub fn frame_duration(frame: &AudioFrame) -> Duration {
    if frame.sample_rate == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(frame.samples_per_channel as f64 / frame.sample_rate as f64)
}

/// The pushing end of a model stream's input (cloneable; the input ends when every sender is
/// gone).
pub struct InputSender<T> {
    shared: Option<Arc<Shared<T>>>,
}

impl<T> Clone for InputSender<T> {
    fn clone(&self) -> Self {
        if let Some(shared) = &self.shared {
            shared.senders.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for InputSender<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            if shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
                shared.ready.notify_one();
            }
        }
    }
}

impl<T> InputSender<T> {
    /// Whether the input ended or the receiver is gone.
    pub fn is_closed(&self) -> bool {
        match &self.shared {
            None => true,
            Some(shared) => shared.state.lock().receiver_gone,
        }
    }
}

impl<T> std::fmt::Debug for InputSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputSender")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<T: ModelInput> InputSender<T> {
    /// A sender whose input already ended (pushes are refused with [`InputError::Closed`]).
    pub fn closed() -> Self {
        Self { shared: None }
    }

    /// Queues `item` following the module's policy: old audio is dropped to make room, text
    /// past the limit is refused (and marks the stream failed).
    pub fn send(&self, item: T) -> Result<(), InputError> {
        let Some(shared) = &self.shared else {
            return Err(InputError::Closed);
        };
        let mut st = shared.state.lock();
        if st.receiver_gone {
            return Err(InputError::Closed);
        }
        let text = item.text_len();
        if text > 0 && st.text.saturating_add(text) > shared.max_text {
            shared.overflowed.store(true, Ordering::Release);
            let queued_bytes = st.text;
            drop(st);
            tracing::error!(
                queued_bytes,
                "model stream input full: the provider is not reading text; the stream fails"
            );
            shared.ready.notify_one();
            return Err(InputError::Full { queued_bytes });
        }
        st.text += text;
        if let Some(d) = item.audio_duration() {
            st.audio += d;
        }
        st.items.push_back(item);
        if st.audio > shared.max_audio {
            let (frames, dropped) = shed_oldest_audio(&mut st, shared.max_audio);
            if frames > 0 {
                st.dropped_unreported += dropped;
                crate::io::bounded::record_model_input_drop(frames, dropped, !st.shedding);
                if !st.shedding {
                    tracing::warn!(
                        dropped_frames = frames,
                        dropped_secs = dropped.as_secs_f64(),
                        "model stream input: the provider is {:?} behind; dropping the oldest audio",
                        shared.max_audio
                    );
                }
                st.shedding = true;
            }
        } else if st.audio <= shared.max_audio / 2 {
            st.shedding = false;
        }
        drop(st);
        shared.ready.notify_one();
        Ok(())
    }

    /// Shares the overflow flag with a stream that outlives this sender (`end_input`).
    pub(crate) fn overflow_flag(&self) -> OverflowFlag {
        OverflowFlag(self.shared.as_ref().map(|s| {
            let s: Arc<dyn Overflowed> = s.clone();
            s
        }))
    }
}

/// Whether a stream's text input overflowed, kept after its sender was dropped.
#[derive(Clone, Default)]
pub(crate) struct OverflowFlag(Option<Arc<dyn Overflowed>>);

impl OverflowFlag {
    pub(crate) fn get(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.overflowed())
    }
}

trait Overflowed: Send + Sync {
    fn overflowed(&self) -> bool;
}

impl<T: Send> Overflowed for Shared<T> {
    fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// Drops the oldest audio items until at most `max` is queued; markers and text stay.
fn shed_oldest_audio<T: ModelInput>(st: &mut State<T>, max: Duration) -> (u64, Duration) {
    let mut frames = 0;
    let mut dropped = Duration::ZERO;
    let mut kept = VecDeque::with_capacity(st.items.len());
    let mut excess = st.audio.saturating_sub(max);
    while let Some(item) = st.items.pop_front() {
        let d = item.audio_duration();
        match d {
            Some(d) if !excess.is_zero() => {
                excess = excess.saturating_sub(d);
                st.audio = st.audio.saturating_sub(d);
                dropped += d;
                frames += 1;
            }
            _ => kept.push_back(item),
        }
    }
    st.items = kept;
    (frames, dropped)
}

/// The reading end of a model stream's input.
pub struct InputReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for InputReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputReceiver").finish_non_exhaustive()
    }
}

impl<T> Drop for InputReceiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.receiver_gone = true;
        st.items.clear();
    }
}

impl<T: ModelInput> InputReceiver<T> {
    /// The next input, or `None` once every sender is gone and the queue is empty (or a text
    /// push overflowed it).
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            let notified = self.shared.ready.notified();
            if let Some(item) = self.try_recv_inner() {
                return item;
            }
            notified.await;
        }
    }

    /// The next input if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match self.try_recv_inner() {
            Some(Some(item)) => Ok(item),
            Some(None) => Err(TryRecvError::Ended),
            None => Err(TryRecvError::Empty),
        }
    }

    /// `Some(item)`, `Some(None)` at the end, `None` when nothing is queued yet.
    fn try_recv_inner(&self) -> Option<Option<T>> {
        if self.shared.overflowed.load(Ordering::Acquire) {
            return Some(None);
        }
        let mut st = self.shared.state.lock();
        if let Some(item) = st.items.pop_front() {
            st.text = st.text.saturating_sub(item.text_len());
            if let Some(d) = item.audio_duration() {
                st.audio = st.audio.saturating_sub(d);
            }
            return Some(Some(item));
        }
        if self.shared.senders.load(Ordering::Acquire) == 0 {
            return Some(None);
        }
        None
    }

    /// Audio dropped since the last call (the receiver adds it to its consumed time).
    pub(crate) fn take_dropped(&self) -> Duration {
        std::mem::take(&mut self.shared.state.lock().dropped_unreported)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stt::{SttInput, SttInputReceiver};
    use crate::tts::{SynthesizeStream, TtsInput, TtsInputReceiver};

    fn frame_100ms() -> AudioFrame {
        AudioFrame::silence(16_000, 1, 1600)
    }

    #[tokio::test]
    async fn full_audio_drops_the_oldest_keeps_markers_and_counts_the_time() {
        let (tx, rx) = channel_with_limits::<SttInput>(Duration::from_millis(500), 1024);
        let before = crate::io::bounded::overload_totals().dropped_frames;
        tx.send(SttInput::Flush).unwrap();
        for _ in 0..8 {
            tx.send(SttInput::Frame(frame_100ms())).unwrap();
        }
        drop(tx);
        // 800 ms pushed, 500 ms kept: the three oldest frames are gone, the marker stays.
        assert!(crate::io::bounded::overload_totals().dropped_frames >= before + 3);
        let mut rx = SttInputReceiver::new(rx);
        let mut items = Vec::new();
        while let Some(item) = rx.recv().await {
            items.push(item);
        }
        assert!(matches!(items[0], SttInput::Flush));
        assert_eq!(items.len(), 1 + 5);
        // Dropped audio still counts: provider timestamps stay on the session's timeline.
        assert!(
            (rx.consumed_secs() - 0.8).abs() < 1e-9,
            "{}",
            rx.consumed_secs()
        );
    }

    #[tokio::test]
    async fn text_is_refused_not_dropped_and_the_stream_ends_with_an_error() {
        let (tx, rx) = channel_with_limits::<TtsInput>(MAX_QUEUED_AUDIO, 8);
        let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(4);
        // A provider that reads nothing until input ends.
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = go_rx.await;
            let mut input = TtsInputReceiver::new(rx);
            while input.recv().await.is_some() {}
            drop(ev_tx);
        });
        let mut stream = SynthesizeStream::from_channels(tx, ev_rx, Some(task));
        stream.try_push_text("1234").unwrap();
        assert_eq!(
            stream.try_push_text("56789"),
            Err(InputError::Full { queued_bytes: 4 })
        );
        stream.end_input();
        let _ = go_tx.send(());
        let first = stream.next_audio().await;
        assert!(matches!(first, Some(Err(_))), "{first:?}");
        assert!(stream.next_audio().await.is_none());
    }

    #[tokio::test]
    async fn the_input_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = channel::<TtsInput>();
        let tx2 = tx.clone();
        tx.send(TtsInput::Text("a".into())).unwrap();
        drop(tx);
        tx2.send(TtsInput::Flush).unwrap();
        assert!(matches!(rx.recv().await, Some(TtsInput::Text(_))));
        assert!(matches!(rx.recv().await, Some(TtsInput::Flush)));
        drop(tx2);
        assert!(rx.recv().await.is_none());
        let closed = InputSender::<TtsInput>::closed();
        assert_eq!(closed.send(TtsInput::Flush), Err(InputError::Closed));
    }
}
