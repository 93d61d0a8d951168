//! Forwarding the linked participant's microphone into the session, pre-connect audio first.
//!
//! A client that recorded audio before the agent joined marks its microphone track with the
//! `TF_PRECONNECT_BUFFER` feature and sends the recording on `lk.agent.pre-connect-audio-buffer`
//! with the track's id. The reference (`_ParticipantAudioInputStream._forward_task` and
//! `PreConnectAudioHandler.wait_for_data`) then, before forwarding the live track:
//!
//! - uses a recording that already arrived if it is at most 1 s old (older: dropped, the user
//!   has been speaking live since);
//! - otherwise waits up to `pre_connect_audio_timeout` (3 s) for it;
//! - forwards it, then the live audio; when the live track ends, pushes 0.5 s of silence so the
//!   STT finalizes what it heard.
//!
//! Live audio that arrives while waiting is held (not dropped) and forwarded right after the
//! recording, so the session hears everything once and in order. [`PreConnectStore`] keeps the
//! recordings by track id; [`forward_track_audio`] does the forwarding over any frame stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::audio::AudioFrame;

/// How old an already received recording may be when its track is linked (1 s, the
/// reference's `max_delta_s`).
pub const PRE_CONNECT_MAX_AGE: Duration = Duration::from_secs(1);
/// Silence pushed after the live track ends, so the STT finalizes its transcript (0.5 s).
pub const END_OF_TRACK_SILENCE: Duration = Duration::from_millis(500);

/// Pre-connect recordings by track id, waiting for their tracks. Cheap to clone.
#[derive(Clone, Default)]
pub struct PreConnectStore {
    inner: Arc<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
    recordings: Mutex<HashMap<String, (Instant, Vec<AudioFrame>)>>,
    arrived: Notify,
}

impl std::fmt::Debug for PreConnectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreConnectStore")
            .field(
                "tracks",
                &self.inner.recordings.lock().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PreConnectStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recording for `track_id` was received completely (an empty one when it could not be
    /// read, so a waiter stops waiting). A newer recording replaces an older one.
    pub fn insert(&self, track_id: &str, frames: Vec<AudioFrame>) {
        self.insert_at(track_id, frames, Instant::now());
    }

    /// Like [`insert`](Self::insert), dated `received_at` (the reference dates a recording by
    /// when its stream opened; its age is measured from then).
    pub fn insert_at(&self, track_id: &str, frames: Vec<AudioFrame>, received_at: Instant) {
        self.inner
            .recordings
            .lock()
            .insert(track_id.to_owned(), (received_at, frames));
        self.inner.arrived.notify_waiters();
    }

    /// The recording for `track_id`, taken out of the store: at once if it arrived at most
    /// [`PRE_CONNECT_MAX_AGE`] ago (an older one is dropped), else when it arrives, for at most
    /// `timeout` (then empty).
    pub async fn take(&self, track_id: &str, timeout: Duration) -> Vec<AudioFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            // Register before looking, so an insert in between is not missed.
            let arrived = self.inner.arrived.notified();
            if let Some((at, frames)) = self.inner.recordings.lock().remove(track_id) {
                let age = at.elapsed();
                if age > PRE_CONNECT_MAX_AGE {
                    tracing::warn!(track_id, ?age, "pre-connect audio buffer is too old");
                    return Vec::new();
                }
                return frames;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                tracing::warn!(track_id, ?timeout, "timeout waiting for pre-connect audio");
                return Vec::new();
            }
        }
    }
}

/// Forwards a live track into `sink` as `frame_ms` frames at `sample_rate`/`num_channels` (the
/// live frames must have that format): first, with `pre_connect = Some((store, track_id,
/// timeout))`, the track's pre-connect recording ([`PreConnectStore::take`]) while live frames
/// are held; then the live audio; then, when the live stream ends, [`END_OF_TRACK_SILENCE`].
/// Returns when the stream ends or the sink is closed.
pub async fn forward_track_audio<S>(
    live: S,
    pre_connect: Option<(PreConnectStore, String, Duration)>,
    sink: mpsc::UnboundedSender<AudioFrame>,
    sample_rate: u32,
    num_channels: u16,
    frame_ms: u32,
) where
    S: Stream<Item = AudioFrame> + Send,
{
    futures::pin_mut!(live);
    let mut held: Vec<AudioFrame> = Vec::new();
    let mut live_ended = false;
    if let Some((store, track_id, timeout)) = pre_connect {
        let take = store.take(&track_id, timeout);
        futures::pin_mut!(take);
        let frames = loop {
            tokio::select! {
                frames = &mut take => break frames,
                frame = live.next(), if !live_ended => match frame {
                    Some(f) => held.push(f),
                    None => live_ended = true,
                },
            }
        };
        if !frames.is_empty() {
            let duration: Duration = frames.iter().map(AudioFrame::duration).sum();
            tracing::debug!(track_id, ?duration, "replaying pre-connect audio");
        }
        for f in to_session_format(frames, sample_rate, num_channels) {
            if sink.send(f).is_err() {
                return;
            }
        }
    }

    let per_frame = (sample_rate / 1000 * frame_ms) as usize * num_channels as usize;
    let mut pending: Vec<i16> = Vec::with_capacity(per_frame * 2);
    let push = |frame: AudioFrame, pending: &mut Vec<i16>| -> bool {
        pending.extend_from_slice(&frame.data);
        while pending.len() >= per_frame.max(1) {
            let chunk: Vec<i16> = pending.drain(..per_frame.max(1)).collect();
            if let Ok(f) = AudioFrame::new(chunk, sample_rate, num_channels) {
                if sink.send(f).is_err() {
                    return false;
                }
            }
        }
        true
    };
    for f in held {
        if !push(f, &mut pending) {
            return;
        }
    }
    if !live_ended {
        while let Some(f) = live.next().await {
            if !push(f, &mut pending) {
                return;
            }
        }
    }
    let silent = (sample_rate as u64 * END_OF_TRACK_SILENCE.as_millis() as u64 / 1000) as usize
        * num_channels as usize;
    if let Ok(f) = AudioFrame::new(vec![0; silent], sample_rate, num_channels) {
        let _ = sink.send(f);
    }
}

/// The recording converted to the live track's format (the session's input rate and channel
/// count), as the reference resamples it: the recording is at the rate the client declared,
/// and a session stage that locked onto that rate (the VAD) would drop the live audio after
/// it. Channels are downmixed to mono, then duplicated if the session wants more. A recording
/// that cannot be converted is dropped with a warning.
fn to_session_format(
    frames: Vec<AudioFrame>,
    sample_rate: u32,
    num_channels: u16,
) -> Vec<AudioFrame> {
    let Some(first) = frames.first() else {
        return frames;
    };
    let rate = first.sample_rate;
    let mut resampler =
        match crate::audio::resample::Resampler::new(rate, sample_rate, num_channels) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "pre-connect audio cannot be converted; dropped");
                return Vec::new();
            }
        };
    let mut out = Vec::with_capacity(frames.len());
    for frame in frames {
        if frame.sample_rate != rate {
            tracing::warn!("pre-connect audio changes rate mid-recording; the rest is dropped");
            break;
        }
        let frame = if frame.num_channels == num_channels {
            frame
        } else {
            let mono = frame.downmix_to_mono();
            let data: Vec<i16> = mono
                .data
                .iter()
                .flat_map(|&s| std::iter::repeat_n(s, num_channels as usize))
                .collect();
            match AudioFrame::new(data, rate, num_channels) {
                Ok(f) => f,
                Err(_) => continue,
            }
        };
        match resampler.push(&frame) {
            Ok(frames) => out.extend(frames),
            Err(e) => {
                tracing::warn!(error = %e, "pre-connect audio cannot be converted; the rest is dropped");
                break;
            }
        }
    }
    out.extend(resampler.flush());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    /// A 10 ms frame at 24 kHz whose samples all equal `value`.
    fn live(value: i16) -> AudioFrame {
        AudioFrame::new(vec![value; 240], 24_000, 1).unwrap()
    }

    fn recording(value: i16, frames: usize) -> Vec<AudioFrame> {
        (0..frames)
            .map(|_| AudioFrame::new(vec![value; 1200], 24_000, 1).unwrap())
            .collect()
    }

    /// Runs the forwarder; returns the live sender and the output receiver.
    fn start(
        pre_connect: Option<(PreConnectStore, String, Duration)>,
    ) -> (
        mpsc::UnboundedSender<AudioFrame>,
        mpsc::UnboundedReceiver<AudioFrame>,
        tokio::task::JoinHandle<()>,
    ) {
        let (live_tx, live_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(forward_track_audio(
            UnboundedReceiverStream::new(live_rx),
            pre_connect,
            out_tx,
            24_000,
            1,
            50,
        ));
        (live_tx, out_rx, task)
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<AudioFrame>) -> Vec<(i16, usize)> {
        let mut got = Vec::new();
        while let Ok(f) = rx.try_recv() {
            got.push((f.data[0], f.samples_per_channel));
        }
        got
    }

    /// Issue 15 item 1: a recording at the rate the client declared (48 kHz stereo) reaches the
    /// session at the live track's format (24 kHz mono), so nothing downstream locks onto 48 kHz.
    #[tokio::test(start_paused = true)]
    async fn recording_is_converted_to_the_session_format() {
        let store = PreConnectStore::new();
        let second: Vec<AudioFrame> = (0..20)
            .map(|_| AudioFrame::sine(440.0, 0.5, 48_000, 2, 2_400))
            .collect();
        store.insert("TR_mic", second);
        let (live_tx, mut out, task) = start(Some((
            store.clone(),
            "TR_mic".into(),
            Duration::from_secs(3),
        )));
        live_tx.send(live(7)).unwrap();
        drop(live_tx);
        task.await.unwrap();
        let mut frames = Vec::new();
        while let Ok(f) = out.try_recv() {
            frames.push(f);
        }
        assert!(frames
            .iter()
            .all(|f| f.sample_rate == 24_000 && f.num_channels == 1));
        // The recording, then the end-of-track silence (the 10 ms of live audio stays below
        // one 50 ms frame).
        let (silence, recording) = frames.split_last().unwrap();
        assert_eq!(silence.samples_per_channel, 12_000);
        let recorded: usize = recording.iter().map(|f| f.samples_per_channel).sum();
        assert_eq!(recorded, 24_000, "one second at 24 kHz");
    }

    #[tokio::test(start_paused = true)]
    async fn recording_arriving_late_plays_first_and_live_audio_is_held_not_lost() {
        let store = PreConnectStore::new();
        let (live_tx, mut out, _task) = start(Some((
            store.clone(),
            "TR_mic".into(),
            Duration::from_secs(3),
        )));
        // 500 ms of live audio while the recording is still on its way.
        for _ in 0..50 {
            live_tx.send(live(7)).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            drain(&mut out).is_empty(),
            "live audio waits for the recording"
        );
        store.insert("TR_other", recording(9, 2));
        store.insert("TR_mic", recording(1, 3));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let got = drain(&mut out);
        assert_eq!(&got[..3], &[(1, 1200); 3], "the recording first");
        assert_eq!(
            &got[3..],
            &[(7, 1200); 10],
            "then every held live frame, in 50 ms frames"
        );

        live_tx.send(live(8)).unwrap();
        for _ in 0..4 {
            live_tx.send(live(8)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(drain(&mut out), vec![(8, 1200)]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_recording_within_the_timeout_releases_the_live_audio() {
        let store = PreConnectStore::new();
        let (live_tx, mut out, task) = start(Some((
            store.clone(),
            "TR_mic".into(),
            Duration::from_secs(3),
        )));
        for _ in 0..10 {
            live_tx.send(live(5)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2_999)).await;
        assert!(drain(&mut out).is_empty());
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(drain(&mut out), vec![(5, 1200), (5, 1200)]);

        // A recording arriving after the timeout is not replayed in the middle of live audio.
        store.insert("TR_mic", recording(1, 3));
        drop(live_tx);
        task.await.unwrap();
        assert_eq!(
            drain(&mut out),
            vec![(0, 12_000)],
            "0.5 s of silence at the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_recent_recording_is_used_and_a_stale_one_dropped() {
        let store = PreConnectStore::new();
        store.insert("TR_a", recording(1, 1));
        store.insert("TR_b", recording(2, 1));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(store.take("TR_a", Duration::from_secs(3)).await.len(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(store.take("TR_b", Duration::from_secs(3)).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn without_pre_connect_live_audio_flows_at_once() {
        let (live_tx, mut out, _task) = start(None);
        for _ in 0..5 {
            live_tx.send(live(3)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(drain(&mut out), vec![(3, 1200)]);
    }
}
