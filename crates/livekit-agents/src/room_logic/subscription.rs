//! Holding the agent's audio until someone listens.
//!
//! A LiveKit server forwards a published track only to participants subscribed to it. Audio
//! captured before the first subscription is played into nobody: the start of the agent's first
//! reply (typically the greeting) would be clipped. The reference (`_ParticipantAudioOutput`)
//! therefore makes `capture_frame` wait until the publication reports its first subscriber
//! (`LocalTrackPublication.wait_for_subscription()`), with no timeout, and never re-arms the
//! wait afterwards (later subscribers, or a track republished after a reconnect, do not hold
//! the audio again).
//!
//! [`AudioSubscription`] is that decision as a plain state machine; [`AudioSubscriptionGate`]
//! makes it awaitable (on tokio's clock, so it is testable with a paused clock); and
//! [`SubscriptionGatedOutput`] is an [`AudioOutput`] whose `capture_frame` waits at the gate.
//! The `room` feature feeds the gate from the `livekit` crate's `LocalTrackSubscribed` event.
//!
//! Unlike the reference, an optional timeout can open the gate without a subscriber
//! ([`crate::room_logic::RoomOptions::audio_subscription_timeout`], off by default), for
//! deployments where some clients never subscribe and the session must not stall.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::audio::AudioFrame;
use crate::io::{AudioOutput, PlaybackEvent};

/// Where the agent's published audio track stands with respect to its first subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioSubscriptionState {
    /// The track is not published yet: audio waits.
    Unpublished,
    /// The track is published and nobody subscribed yet: audio waits.
    WaitingForSubscriber,
    /// A participant subscribed: audio flows from now on.
    Subscribed,
    /// The subscription timeout passed without a subscriber: audio flows anyway.
    TimedOut,
}

impl AudioSubscriptionState {
    /// Whether audio may flow.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Subscribed | Self::TimedOut)
    }
}

/// The subscription decision for the agent's audio track, fed with room events.
///
/// Subscription events are matched by track id. One that arrives before the publication's id
/// is known (the server can answer before `publish_track` returns) is remembered and applied
/// when the id is learnt.
///
/// ```
/// use livekit_agents::room_logic::{AudioSubscription, AudioSubscriptionState};
///
/// let mut sub = AudioSubscription::new();
/// assert!(!sub.on_published("TR_agent"));
/// assert!(!sub.on_local_track_subscribed("TR_other")); // someone else's track
/// assert!(sub.on_local_track_subscribed("TR_agent"));
/// assert_eq!(sub.state(), AudioSubscriptionState::Subscribed);
/// ```
#[derive(Debug, Clone)]
pub struct AudioSubscription {
    track_id: Option<String>,
    /// Subscriptions seen before the publication's id was known.
    early: HashSet<String>,
    state: AudioSubscriptionState,
}

impl Default for AudioSubscription {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioSubscription {
    /// Nothing published yet.
    pub fn new() -> Self {
        Self {
            track_id: None,
            early: HashSet::new(),
            state: AudioSubscriptionState::Unpublished,
        }
    }

    /// The current state.
    pub fn state(&self) -> AudioSubscriptionState {
        self.state
    }

    /// The published track's id, once known.
    pub fn track_id(&self) -> Option<&str> {
        self.track_id.as_deref()
    }

    /// The agent's track was published as `track_id`. Returns true if audio may flow now
    /// because its subscription was already seen.
    pub fn on_published(&mut self, track_id: &str) -> bool {
        self.track_id = Some(track_id.to_owned());
        if self.state == AudioSubscriptionState::Unpublished {
            self.state = if self.early.remove(track_id) {
                AudioSubscriptionState::Subscribed
            } else {
                AudioSubscriptionState::WaitingForSubscriber
            };
        }
        self.early.clear();
        self.state == AudioSubscriptionState::Subscribed
    }

    /// The server reports the first subscriber of the local track `track_id`. Returns true if
    /// this opened the gate.
    pub fn on_local_track_subscribed(&mut self, track_id: &str) -> bool {
        match (&self.track_id, self.state) {
            (None, _) => {
                self.early.insert(track_id.to_owned());
                false
            }
            (Some(ours), AudioSubscriptionState::WaitingForSubscriber) if ours == track_id => {
                self.state = AudioSubscriptionState::Subscribed;
                true
            }
            _ => false,
        }
    }

    /// The track was republished after a reconnect with a new id. The state is kept: once
    /// audio flowed it keeps flowing (as in the reference).
    pub fn on_republished(&mut self, previous_track_id: &str, track_id: &str) {
        if self.track_id.as_deref() == Some(previous_track_id) {
            self.track_id = Some(track_id.to_owned());
        }
    }

    /// The subscription timeout passed. Returns true if this opened the gate.
    pub fn on_timeout(&mut self) -> bool {
        if self.state == AudioSubscriptionState::WaitingForSubscriber {
            self.state = AudioSubscriptionState::TimedOut;
            true
        } else {
            false
        }
    }
}

struct GateShared {
    logic: Mutex<AudioSubscription>,
    /// When the track was published (the timeout counts from there).
    published_at: Mutex<Option<Instant>>,
    timeout: Option<Duration>,
    state: watch::Sender<AudioSubscriptionState>,
}

/// An awaitable [`AudioSubscription`], shared between the room's event loop (which feeds it)
/// and the audio output (which waits at it). Cheap to clone.
#[derive(Clone)]
pub struct AudioSubscriptionGate {
    shared: Arc<GateShared>,
}

impl std::fmt::Debug for AudioSubscriptionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioSubscriptionGate")
            .field("state", &self.state())
            .field("timeout", &self.shared.timeout)
            .finish()
    }
}

impl AudioSubscriptionGate {
    /// A closed gate. With `timeout`, it opens by itself that long after the publication if
    /// nobody subscribed; with `None` it waits for a subscriber however long it takes.
    pub fn new(timeout: Option<Duration>) -> Self {
        let (state, _) = watch::channel(AudioSubscriptionState::Unpublished);
        Self {
            shared: Arc::new(GateShared {
                logic: Mutex::new(AudioSubscription::new()),
                published_at: Mutex::new(None),
                timeout,
                state,
            }),
        }
    }

    /// A gate that is open from the start (no subscription to wait for).
    pub fn open() -> Self {
        let gate = Self::new(None);
        gate.shared
            .state
            .send_replace(AudioSubscriptionState::Subscribed);
        gate
    }

    /// The current state.
    pub fn state(&self) -> AudioSubscriptionState {
        *self.shared.state.borrow()
    }

    fn update(&self, f: impl FnOnce(&mut AudioSubscription)) {
        let mut logic = self.shared.logic.lock();
        f(&mut logic);
        let state = logic.state();
        // Never close an open gate (e.g. `open()` with an untouched logic).
        self.shared.state.send_if_modified(|s| {
            if s.is_open() || *s == state {
                false
            } else {
                *s = state;
                true
            }
        });
    }

    /// See [`AudioSubscription::on_published`].
    pub fn published(&self, track_id: &str) {
        *self.shared.published_at.lock() = Some(Instant::now());
        self.update(|l| {
            l.on_published(track_id);
        });
    }

    /// See [`AudioSubscription::on_local_track_subscribed`].
    pub fn local_track_subscribed(&self, track_id: &str) {
        self.update(|l| {
            if l.on_local_track_subscribed(track_id) {
                tracing::debug!(track_id, "agent audio track has a subscriber");
            }
        });
    }

    /// See [`AudioSubscription::on_republished`].
    pub fn republished(&self, previous_track_id: &str, track_id: &str) {
        self.update(|l| l.on_republished(previous_track_id, track_id));
    }

    /// Waits until audio may flow; returns the open state ([`AudioSubscriptionState::Subscribed`]
    /// or [`AudioSubscriptionState::TimedOut`]).
    pub async fn wait(&self) -> AudioSubscriptionState {
        let mut rx = self.shared.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            if state.is_open() {
                return state;
            }
            let deadline = match (self.shared.timeout, *self.shared.published_at.lock()) {
                (Some(timeout), Some(at)) => Some(at + timeout),
                _ => None,
            };
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return self.state();
                            }
                        }
                        _ = tokio::time::sleep_until(deadline) => {
                            self.update(|l| {
                                if l.on_timeout() {
                                    tracing::warn!(
                                        timeout = ?self.shared.timeout,
                                        "nobody subscribed to the agent audio track; playing anyway"
                                    );
                                }
                            });
                        }
                    }
                }
                None => {
                    // The sender lives in `self`, so this only fails if it was dropped.
                    if rx.changed().await.is_err() {
                        return self.state();
                    }
                }
            }
        }
    }
}

/// An [`AudioOutput`] that holds frames at an [`AudioSubscriptionGate`]: `capture_frame` waits
/// until the gate is open, everything else goes straight to the inner output.
pub struct SubscriptionGatedOutput<O> {
    inner: O,
    gate: AudioSubscriptionGate,
}

impl<O> std::fmt::Debug for SubscriptionGatedOutput<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionGatedOutput")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl<O: AudioOutput> SubscriptionGatedOutput<O> {
    /// `inner` behind `gate`.
    pub fn new(inner: O, gate: AudioSubscriptionGate) -> Self {
        Self { inner, gate }
    }

    /// The gate.
    pub fn gate(&self) -> &AudioSubscriptionGate {
        &self.gate
    }

    /// The wrapped output.
    pub fn inner(&self) -> &O {
        &self.inner
    }
}

#[async_trait]
impl<O: AudioOutput> AudioOutput for SubscriptionGatedOutput<O> {
    fn label(&self) -> String {
        self.inner.label()
    }
    fn sample_rate(&self) -> Option<u32> {
        self.inner.sample_rate()
    }
    fn can_pause(&self) -> bool {
        self.inner.can_pause()
    }
    async fn capture_frame(&self, frame: AudioFrame) {
        self.gate.wait().await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::memory::MemoryAudioOutput;

    fn frame() -> AudioFrame {
        AudioFrame::new(vec![1; 1200], 24_000, 1).unwrap()
    }

    #[test]
    fn early_subscription_applies_once_the_track_id_is_known() {
        let mut sub = AudioSubscription::new();
        assert!(!sub.on_local_track_subscribed("TR_a"));
        assert_eq!(sub.state(), AudioSubscriptionState::Unpublished);
        assert!(sub.on_published("TR_a"));
        assert_eq!(sub.state(), AudioSubscriptionState::Subscribed);

        let mut sub = AudioSubscription::new();
        sub.on_local_track_subscribed("TR_other");
        assert!(!sub.on_published("TR_a"));
        assert_eq!(sub.state(), AudioSubscriptionState::WaitingForSubscriber);
    }

    #[test]
    fn republish_keeps_the_state_and_follows_the_new_id() {
        let mut sub = AudioSubscription::new();
        sub.on_published("TR_a");
        sub.on_republished("TR_a", "TR_b");
        assert_eq!(sub.track_id(), Some("TR_b"));
        assert!(!sub.on_local_track_subscribed("TR_a"));
        assert!(sub.on_local_track_subscribed("TR_b"));
        sub.on_republished("TR_b", "TR_c");
        assert_eq!(sub.state(), AudioSubscriptionState::Subscribed);
        assert!(!sub.on_timeout());
    }

    #[tokio::test(start_paused = true)]
    async fn frames_wait_for_the_first_subscriber() {
        let gate = AudioSubscriptionGate::new(None);
        let out = Arc::new(SubscriptionGatedOutput::new(
            MemoryAudioOutput::new(),
            gate.clone(),
        ));
        let capture = tokio::spawn({
            let out = out.clone();
            async move { out.capture_frame(frame()).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        gate.published("TR_agent");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!capture.is_finished());
        assert!(out.inner().played().is_empty());

        gate.local_track_subscribed("TR_agent");
        let subscribed_at = Instant::now();
        capture.await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let played = out.inner().played();
        assert_eq!(played.len(), 1);
        assert!(played[0].at >= subscribed_at);

        // Open for good: later frames do not wait.
        out.capture_frame(frame()).await;
        assert_eq!(gate.state(), AudioSubscriptionState::Subscribed);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_counts_from_the_publication() {
        let gate = AudioSubscriptionGate::new(Some(Duration::from_secs(5)));
        let start = Instant::now();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait().await }
        });
        // Not published: no deadline yet.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!waiter.is_finished());
        gate.published("TR_agent");
        assert_eq!(waiter.await.unwrap(), AudioSubscriptionState::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(15));
        // A late subscriber changes nothing.
        gate.local_track_subscribed("TR_agent");
        assert_eq!(gate.state(), AudioSubscriptionState::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn subscriber_before_the_timeout_wins() {
        let gate = AudioSubscriptionGate::new(Some(Duration::from_secs(5)));
        gate.published("TR_agent");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait().await }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        gate.local_track_subscribed("TR_agent");
        assert_eq!(waiter.await.unwrap(), AudioSubscriptionState::Subscribed);
    }

    #[tokio::test(start_paused = true)]
    async fn open_gate_never_waits() {
        let gate = AudioSubscriptionGate::open();
        assert_eq!(gate.wait().await, AudioSubscriptionState::Subscribed);
        gate.published("TR_x");
        assert!(gate.state().is_open());
    }
}
