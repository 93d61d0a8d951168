//! The `livekit` crate (WebRTC) as a [`RoomBackend`]: [`LiveKitRoom`].
//!
//! This is a mapping and nothing else: every decision (who is linked, when to close,
//! transcription segments, pre-connect audio, the subscription gate, ...) is
//! [`RoomIo`]'s, which is written against [`RoomBackend`] and tested on
//! [`crate::testing::MemoryRoom`]. This module converts `livekit` types and events into the
//! trait's plain types, in the order the `livekit` crate emits them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use livekit_agents::room::LiveKitRoom;
//! use livekit_agents::room_logic::{RoomIo, RoomOptions};
//!
//! # async fn demo(room: Arc<livekit::Room>) -> anyhow::Result<()> {
//! let (io, ports) = RoomIo::start(Arc::new(LiveKitRoom::new(room)), RoomOptions::default()).await?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::StreamExt;
use livekit::data_stream::api::{
    SendTextOptions, StreamReader, StreamTextOptions, StreamWriter, TextStreamWriter as LkWriter,
};
use livekit::options::TrackPublishOptions;
use livekit::prelude::{
    AudioTrackFeature, LocalAudioTrack as LkLocalAudioTrack, LocalTrack, ParticipantIdentity,
    RemoteParticipant, RemoteTrack, RemoteTrackPublication, Room, TrackKind as LkTrackKind,
    TrackSource as LkTrackSource,
};
use livekit::webrtc::audio_frame::AudioFrame as RtcAudioFrame;
use livekit::webrtc::audio_source::native::NativeAudioSource;
use livekit::webrtc::audio_source::{AudioSourceOptions, RtcAudioSource};
use livekit::webrtc::audio_stream::native::{NativeAudioStream, NativeAudioStreamOptions};

use crate::audio::AudioFrame;
use crate::room_logic::{
    AudioFrames, IncomingStream, LeaveReason, LocalAudioTrack, ParticipantInfo, ParticipantKind,
    RoomBackend, RoomError, RoomEvent, RoomEvents, StreamChunks, StreamInfo, TextStreamOptions,
    TextStreamWriter, TrackInfo, TrackKind, TrackSource, VideoFrames,
};

// The names RoomIO had here before it moved to `room_logic` (it needs no WebRTC).
pub use crate::room_logic::{RoomInputEvent, RoomIo, RoomIoError, RoomOptions, RoomPorts};

mod video;

type DeleteRoom = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// A connected `livekit::Room` as a [`RoomBackend`] (cheap to clone).
///
/// Deleting the room is a server API call, not something the room connection can do: give
/// it with [`with_room_deletion`](Self::with_room_deletion) (`JobContext::session_io` uses
/// `JobContext::delete_room`); without it, [`RoomBackend::delete_room`] fails with
/// [`RoomError::Unsupported`].
#[derive(Clone)]
pub struct LiveKitRoom {
    room: Arc<Room>,
    delete: Option<Arc<DeleteRoom>>,
}

impl std::fmt::Debug for LiveKitRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKitRoom")
            .field("room", &self.room.name())
            .field("can_delete", &self.delete.is_some())
            .finish()
    }
}

impl LiveKitRoom {
    /// The backend of a connected room.
    pub fn new(room: Arc<Room>) -> Self {
        Self { room, delete: None }
    }

    /// Deletes the room with `delete` (a server API call) when asked to.
    pub fn with_room_deletion<F, Fut>(mut self, delete: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.delete = Some(Arc::new(move || Box::pin(delete())));
        self
    }

    /// The `livekit` room.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    fn remote(&self, identity: &str) -> Option<RemoteParticipant> {
        self.room
            .remote_participants()
            .get(&ParticipantIdentity::from(identity.to_owned()))
            .cloned()
    }

    fn publication(&self, identity: &str, sid: &str) -> Result<RemoteTrackPublication, RoomError> {
        self.remote(identity)
            .and_then(|p| {
                p.track_publications()
                    .into_values()
                    .find(|t| t.sid().as_str() == sid)
            })
            .ok_or_else(|| RoomError::UnknownTrack {
                participant: identity.to_owned(),
                track_sid: sid.to_owned(),
            })
    }
}

fn failed(operation: &'static str) -> impl Fn(livekit::RoomError) -> RoomError {
    move |e| RoomError::Operation {
        operation,
        message: e.to_string(),
    }
}

fn stream_failed(
    operation: &'static str,
) -> impl Fn(livekit::data_stream::api::StreamError) -> RoomError {
    move |e| RoomError::Operation {
        operation,
        message: e.to_string(),
    }
}

pub(crate) fn kind_of(kind: livekit::ParticipantKind) -> ParticipantKind {
    match kind {
        livekit::ParticipantKind::Standard => ParticipantKind::Standard,
        livekit::ParticipantKind::Ingress => ParticipantKind::Ingress,
        livekit::ParticipantKind::Egress => ParticipantKind::Egress,
        livekit::ParticipantKind::Sip => ParticipantKind::Sip,
        livekit::ParticipantKind::Agent => ParticipantKind::Agent,
        livekit::ParticipantKind::Connector => ParticipantKind::Connector,
        livekit::ParticipantKind::Bridge => ParticipantKind::Bridge,
    }
}

fn leave_reason(reason: livekit::participant::DisconnectReason) -> LeaveReason {
    use livekit::participant::DisconnectReason as R;
    match reason {
        R::ClientInitiated => LeaveReason::ClientInitiated,
        R::RoomDeleted => LeaveReason::RoomDeleted,
        R::UserRejected => LeaveReason::UserRejected,
        _ => LeaveReason::Other,
    }
}

fn track_info(publication: &RemoteTrackPublication, subscribed: bool) -> TrackInfo {
    TrackInfo {
        sid: publication.sid().to_string(),
        name: publication.name(),
        kind: match publication.kind() {
            LkTrackKind::Audio => TrackKind::Audio,
            LkTrackKind::Video => TrackKind::Video,
        },
        source: match publication.source() {
            LkTrackSource::Microphone => TrackSource::Microphone,
            LkTrackSource::Camera => TrackSource::Camera,
            LkTrackSource::Screenshare => TrackSource::ScreenShare,
            LkTrackSource::ScreenshareAudio => TrackSource::ScreenShareAudio,
            LkTrackSource::Unknown => TrackSource::Unknown,
        },
        subscribed,
        pre_connect_buffer: publication
            .audio_features()
            .contains(&AudioTrackFeature::TfPreconnectBuffer),
    }
}

fn participant_info(p: &RemoteParticipant) -> ParticipantInfo {
    let mut tracks: Vec<_> = p.track_publications().into_values().collect();
    tracks.sort_by_key(|t| t.sid().to_string());
    ParticipantInfo {
        identity: p.identity().to_string(),
        sid: p.sid().to_string(),
        name: p.name(),
        kind: kind_of(p.kind()),
        attributes: p.attributes(),
        tracks: tracks
            .iter()
            .map(|t| track_info(t, t.track().is_some()))
            .collect(),
    }
}

/// A `livekit` event as the trait's, `None` for those RoomIO does not use.
fn map_event(ev: livekit::RoomEvent) -> Option<RoomEvent> {
    use livekit::RoomEvent as E;
    Some(match ev {
        E::ParticipantConnected(p) => RoomEvent::ParticipantConnected(participant_info(&p)),
        E::ParticipantDisconnected(p) => RoomEvent::ParticipantDisconnected {
            reason: leave_reason(p.disconnect_reason()),
            participant: participant_info(&p),
        },
        E::TrackPublished {
            publication,
            participant,
        } => RoomEvent::TrackPublished {
            participant: participant.identity().to_string(),
            track: track_info(&publication, false),
        },
        E::TrackUnpublished {
            publication,
            participant,
        } => RoomEvent::TrackUnpublished {
            participant: participant.identity().to_string(),
            track: track_info(&publication, false),
        },
        E::TrackSubscribed {
            publication,
            participant,
            ..
        } => RoomEvent::TrackSubscribed {
            participant: participant.identity().to_string(),
            track: track_info(&publication, true),
        },
        E::TrackUnsubscribed {
            publication,
            participant,
            ..
        } => RoomEvent::TrackUnsubscribed {
            participant: participant.identity().to_string(),
            track: track_info(&publication, false),
        },
        E::LocalTrackSubscribed { track } => RoomEvent::LocalTrackSubscribed {
            track_sid: track.sid().to_string(),
        },
        E::LocalTrackRepublished {
            previous_sid,
            publication,
            ..
        } => RoomEvent::LocalTrackRepublished {
            previous_sid: previous_sid.to_string(),
            track_sid: publication.sid().to_string(),
        },
        E::ParticipantAttributesChanged {
            participant,
            changed_attributes,
        } => RoomEvent::ParticipantAttributesChanged {
            participant: participant.identity().to_string(),
            changed: changed_attributes,
        },
        E::TextStreamOpened {
            reader,
            topic,
            participant_identity,
        } => RoomEvent::TextStreamReceived(IncomingStream::lazy(
            topic,
            participant_identity.to_string(),
            move || {
                let reader = reader.take()?;
                let info = reader.info();
                let info = StreamInfo {
                    id: info.id.clone(),
                    topic: info.topic.clone(),
                    sender_identity: participant_identity.to_string(),
                    mime_type: info.mime_type.clone(),
                    attributes: info.attributes(),
                    total_length: info.total_length,
                };
                let chunks: StreamChunks<String> =
                    Box::pin(reader.map(|c| c.map_err(stream_failed("read_text_stream"))));
                Some((info, chunks))
            },
        )),
        E::ByteStreamOpened {
            reader,
            topic,
            participant_identity,
        } => RoomEvent::ByteStreamReceived(IncomingStream::lazy(
            topic,
            participant_identity.to_string(),
            move || {
                let reader = reader.take()?;
                let info = reader.info();
                let info = StreamInfo {
                    id: info.id.clone(),
                    topic: info.topic.clone(),
                    sender_identity: participant_identity.to_string(),
                    mime_type: info.mime_type.clone(),
                    attributes: info.attributes(),
                    total_length: info.total_length,
                };
                let chunks: StreamChunks<Vec<u8>> = Box::pin(reader.map(|c| {
                    c.map(|b| b.to_vec())
                        .map_err(stream_failed("read_byte_stream"))
                }));
                Some((info, chunks))
            },
        )),
        E::SipDTMFReceived {
            code,
            digit,
            participant,
        } => RoomEvent::SipDtmfReceived {
            code,
            digit: digit.unwrap_or_default(),
            participant: participant.map(|p| p.identity().to_string()),
        },
        E::Disconnected { reason } => RoomEvent::Disconnected {
            reason: format!("{reason:?}"),
        },
        _ => return None,
    })
}

fn to_rtc(frame: &AudioFrame) -> RtcAudioFrame<'static> {
    RtcAudioFrame {
        data: Cow::Owned(frame.data.clone()),
        sample_rate: frame.sample_rate,
        num_channels: frame.num_channels as u32,
        samples_per_channel: frame.samples_per_channel as u32,
    }
}

/// The agent's published track: a WebRTC audio source with a 200 ms queue.
struct PublishedAudio {
    sid: String,
    source: NativeAudioSource,
}

#[async_trait]
impl LocalAudioTrack for PublishedAudio {
    fn sid(&self) -> String {
        self.sid.clone()
    }
    async fn capture_frame(&self, frame: &AudioFrame) -> Result<(), RoomError> {
        self.source
            .capture_frame(&to_rtc(frame))
            .await
            .map_err(|e| RoomError::Operation {
                operation: "capture_frame",
                message: e.to_string(),
            })
    }
    fn clear_queue(&self) {
        self.source.clear_buffer();
    }
}

struct Writer(LkWriter);

#[async_trait]
impl TextStreamWriter for Writer {
    async fn write(&mut self, text: &str) -> Result<(), RoomError> {
        self.0
            .write(text)
            .await
            .map_err(stream_failed("write_text_stream"))
    }
    async fn close(self: Box<Self>, attributes: HashMap<String, String>) -> Result<(), RoomError> {
        self.0
            .close_with_options(None, Some(attributes))
            .await
            .map_err(stream_failed("close_text_stream"))
    }
}

#[async_trait]
impl RoomBackend for LiveKitRoom {
    fn name(&self) -> String {
        self.room.name()
    }

    fn local_identity(&self) -> String {
        self.room.local_participant().identity().to_string()
    }

    fn remote_participants(&self) -> Vec<ParticipantInfo> {
        let mut present: Vec<_> = self.room.remote_participants().into_values().collect();
        present.sort_by_key(|p| (p.joined_at(), p.identity().to_string()));
        present.iter().map(participant_info).collect()
    }

    fn subscribe(&self) -> RoomEvents {
        let events = tokio_stream::wrappers::UnboundedReceiverStream::new(self.room.subscribe());
        RoomEvents::new(events.filter_map(|ev| futures::future::ready(map_event(ev))))
    }

    async fn set_subscribed(
        &self,
        participant: &str,
        track_sid: &str,
        subscribed: bool,
    ) -> Result<(), RoomError> {
        self.publication(participant, track_sid)?
            .set_subscribed(subscribed);
        Ok(())
    }

    fn audio_frames(
        &self,
        participant: &str,
        track_sid: &str,
        sample_rate: u32,
        num_channels: u16,
    ) -> Result<AudioFrames, RoomError> {
        let unknown = || RoomError::UnknownTrack {
            participant: participant.to_owned(),
            track_sid: track_sid.to_owned(),
        };
        let Some(RemoteTrack::Audio(track)) = self.publication(participant, track_sid)?.track()
        else {
            return Err(unknown());
        };
        // WebRTC delivers 10 ms frames in the requested format, keeping at most 1 s unread
        // (the oldest go first); RoomIO reads at once, the session's input is bounded by age.
        let stream = NativeAudioStream::with_options(
            track.rtc_track(),
            sample_rate as i32,
            num_channels as i32,
            NativeAudioStreamOptions {
                queue_size_frames: Some(100),
            },
        );
        Ok(Box::pin(stream.filter_map(move |f| {
            futures::future::ready(
                AudioFrame::new(f.data.into_owned(), sample_rate, num_channels).ok(),
            )
        })))
    }

    fn video_frames(&self, participant: &str, track_sid: &str) -> Result<VideoFrames, RoomError> {
        match self.publication(participant, track_sid)?.track() {
            Some(RemoteTrack::Video(track)) => Ok(video::frames(track)),
            _ => Err(RoomError::UnknownTrack {
                participant: participant.to_owned(),
                track_sid: track_sid.to_owned(),
            }),
        }
    }

    async fn publish_audio(
        &self,
        name: &str,
        sample_rate: u32,
        num_channels: u16,
    ) -> Result<Arc<dyn LocalAudioTrack>, RoomError> {
        // WebRTC's own queue: 200 ms, as the reference's.
        let source = NativeAudioSource::new(
            AudioSourceOptions::default(),
            sample_rate,
            num_channels as u32,
            200,
        );
        let track =
            LkLocalAudioTrack::create_audio_track(name, RtcAudioSource::Native(source.clone()));
        let publication = self
            .room
            .local_participant()
            .publish_track(
                LocalTrack::Audio(track),
                TrackPublishOptions {
                    source: LkTrackSource::Microphone,
                    ..Default::default()
                },
            )
            .await
            .map_err(failed("publish_audio"))?;
        Ok(Arc::new(PublishedAudio {
            sid: publication.sid().to_string(),
            source,
        }))
    }

    async fn set_attributes(&self, attributes: HashMap<String, String>) -> Result<(), RoomError> {
        self.room
            .local_participant()
            .set_attributes(attributes)
            .await
            .map_err(failed("set_attributes"))
    }

    async fn send_text(&self, text: &str, options: TextStreamOptions) -> Result<(), RoomError> {
        let mut lk = SendTextOptions::new_with_topic(options.topic);
        lk.attributes = options.attributes;
        lk.sender_identity = options.sender_identity.map(ParticipantIdentity::from);
        self.room
            .local_participant()
            .send_text(text, lk)
            .await
            .map(|_| ())
            .map_err(stream_failed("send_text"))
    }

    async fn stream_text(
        &self,
        options: TextStreamOptions,
    ) -> Result<Box<dyn TextStreamWriter>, RoomError> {
        let mut lk = StreamTextOptions::new_with_topic(options.topic);
        lk.attributes = options.attributes;
        lk.sender_identity = options.sender_identity.map(ParticipantIdentity::from);
        let writer = self
            .room
            .local_participant()
            .stream_text(lk)
            .await
            .map_err(stream_failed("stream_text"))?;
        Ok(Box::new(Writer(writer)))
    }

    async fn delete_room(&self) -> Result<(), RoomError> {
        let delete = self
            .delete
            .as_ref()
            .ok_or(RoomError::Unsupported("deleting the room"))?;
        delete().await.map_err(|message| RoomError::Operation {
            operation: "delete_room",
            message,
        })
    }

    async fn disconnect(&self) -> Result<(), RoomError> {
        self.room.close().await.map_err(failed("disconnect"))
    }
}
