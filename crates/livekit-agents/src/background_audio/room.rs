//! The background audio track in a LiveKit room (feature `room`): a 48 kHz mono
//! `background_audio` track fed from the player's mixer, as the reference publishes.

use std::borrow::Cow;
use std::sync::Arc;

use livekit::options::TrackPublishOptions;
use livekit::prelude::*;
use livekit::webrtc::audio_frame::AudioFrame as RtcAudioFrame;
use livekit::webrtc::audio_source::native::NativeAudioSource;
use livekit::webrtc::audio_source::{AudioSourceOptions, RtcAudioSource};
use tokio_util::task::AbortOnDropHandle;

use super::{BackgroundAudioError, BACKGROUND_SAMPLE_RATE, BACKGROUND_TRACK_NAME};
use crate::audio::AudioMixer;

/// WebRTC's queue for the track: small (400 ms, as the reference), because a stopped sound
/// leaves the mix at once but what is queued still plays.
const QUEUE_MS: u32 = 400;
/// The mixer is pulled in 10 ms blocks.
const BLOCK: usize = (BACKGROUND_SAMPLE_RATE / 100) as usize;

/// A published background track: unpublished by [`PublishedTrack::unpublish`].
pub(super) struct PublishedTrack {
    room: Arc<Room>,
    name: String,
    _pump: AbortOnDropHandle<()>,
}

/// Publishes the track and starts feeding it from `mixer` (silence when nothing plays, so the
/// track stays continuous; WebRTC's source paces the feed).
pub(super) async fn publish(
    room: Arc<Room>,
    mixer: AudioMixer,
) -> Result<PublishedTrack, BackgroundAudioError> {
    let source = NativeAudioSource::new(
        AudioSourceOptions::default(),
        BACKGROUND_SAMPLE_RATE,
        1,
        QUEUE_MS,
    );
    let track = LocalAudioTrack::create_audio_track(
        BACKGROUND_TRACK_NAME,
        RtcAudioSource::Native(source.clone()),
    );
    room.local_participant()
        .publish_track(LocalTrack::Audio(track), TrackPublishOptions::default())
        .await
        .map_err(|e| BackgroundAudioError::Publish {
            reason: e.to_string(),
        })?;
    let pump = tokio::spawn(async move {
        loop {
            let data = match mixer.next_block(BLOCK) {
                Some(frame) => frame.data,
                None => vec![0; BLOCK],
            };
            let frame = RtcAudioFrame {
                data: Cow::Owned(data),
                sample_rate: BACKGROUND_SAMPLE_RATE,
                num_channels: 1,
                samples_per_channel: BLOCK as u32,
            };
            if let Err(e) = source.capture_frame(&frame).await {
                tracing::warn!(error = %e, "could not capture background audio");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    });
    Ok(PublishedTrack {
        room,
        name: BACKGROUND_TRACK_NAME.to_owned(),
        _pump: AbortOnDropHandle::new(pump),
    })
}

impl PublishedTrack {
    /// Stops feeding and unpublishes the track (found by name: after a full reconnect the SDK
    /// may have republished it under a new sid, as the reference notes).
    pub(super) async fn unpublish(self) {
        let local = self.room.local_participant();
        let sid = local
            .track_publications()
            .values()
            .find(|p| p.name() == self.name)
            .map(|p| p.sid());
        if let Some(sid) = sid {
            if let Err(e) = local.unpublish_track(&sid).await {
                tracing::debug!(error = %e, "could not unpublish the background audio track");
            }
        }
    }
}
