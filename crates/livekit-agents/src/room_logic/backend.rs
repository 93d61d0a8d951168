//! The room as RoomIO sees it: [`RoomBackend`], a small trait over a connected LiveKit room,
//! and the [`RoomEvent`]s it reports.
//!
//! RoomIO ([`super::RoomIo`]) is written against this trait only. The `room` feature maps it
//! onto the `livekit` crate (`room::LiveKitRoom`); [`crate::testing::MemoryRoom`] is an
//! in-memory room that follows the same event order, so everything RoomIO decides and does
//! runs in tests without WebRTC.
//!
//! The trait names no type of another crate: participants, tracks and streams are described by
//! the plain types of this module, audio is [`AudioFrame`] and video [`VideoFrame`].

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use parking_lot::Mutex;

use super::video::VideoFrame;
use super::{LeaveReason, ParticipantKind};
use crate::audio::AudioFrame;

/// A connected room, from the local participant's (the agent's) side: the operations RoomIO
/// needs and nothing more.
///
/// Invariants an implementation keeps (RoomIO relies on them):
/// - [`subscribe`](Self::subscribe) delivers every event that happens after the call, in the
///   order of [`RoomEvent`]'s documentation, to every subscriber.
/// - [`remote_participants`](Self::remote_participants) lists the participants in the order
///   they joined; a participant is listed from its `ParticipantConnected` to its
///   `ParticipantDisconnected`.
/// - Identities are unique among the participants present.
/// - Methods never panic on what remote participants send; a failed operation is a
///   [`RoomError`].
#[async_trait]
pub trait RoomBackend: Send + Sync + 'static {
    /// The room's name.
    fn name(&self) -> String;

    /// The local participant's identity.
    fn local_identity(&self) -> String;

    /// The remote participants present now, in join order, with their published tracks.
    fn remote_participants(&self) -> Vec<ParticipantInfo>;

    /// Events from now on, in order (see [`RoomEvent`]).
    fn subscribe(&self) -> RoomEvents;

    /// Subscribes to (`true`) or unsubscribes from (`false`) a remote participant's track. A
    /// subscription is confirmed by [`RoomEvent::TrackSubscribed`].
    async fn set_subscribed(
        &self,
        participant: &str,
        track_sid: &str,
        subscribed: bool,
    ) -> Result<(), RoomError>;

    /// The audio of a subscribed remote track at `sample_rate` and `num_channels`, in frames of
    /// any length. The stream ends when the track is unsubscribed or unpublished.
    fn audio_frames(
        &self,
        participant: &str,
        track_sid: &str,
        sample_rate: u32,
        num_channels: u16,
    ) -> Result<AudioFrames, RoomError>;

    /// The frames of a subscribed remote video track. An implementation keeps at most a frame
    /// or two while the reader is busy (older frames are dropped, never queued without bound).
    fn video_frames(&self, participant: &str, track_sid: &str) -> Result<VideoFrames, RoomError>;

    /// Publishes a local audio track named `name` as the microphone source, fed with frames of
    /// `sample_rate` and `num_channels`.
    async fn publish_audio(
        &self,
        name: &str,
        sample_rate: u32,
        num_channels: u16,
    ) -> Result<Arc<dyn LocalAudioTrack>, RoomError>;

    /// Sets (adds or replaces) attributes of the local participant.
    async fn set_attributes(&self, attributes: HashMap<String, String>) -> Result<(), RoomError>;

    /// Sends `text` as one complete text stream.
    async fn send_text(&self, text: &str, options: TextStreamOptions) -> Result<(), RoomError>;

    /// Opens a text stream written piece by piece.
    async fn stream_text(
        &self,
        options: TextStreamOptions,
    ) -> Result<Box<dyn TextStreamWriter>, RoomError>;

    /// Deletes the room on the server: every participant is removed.
    async fn delete_room(&self) -> Result<(), RoomError>;

    /// Leaves the room.
    async fn disconnect(&self) -> Result<(), RoomError>;
}

/// A failed room operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The room refused or failed an operation.
    #[error("room operation {operation} failed: {message}")]
    Operation {
        /// The operation (`publish_audio`, `set_attributes`, `stream_text`, ...).
        operation: &'static str,
        /// What the room said.
        message: String,
    },
    /// No such (subscribed) track.
    #[error("no subscribed track {track_sid} of participant {participant}")]
    UnknownTrack {
        /// The participant's identity.
        participant: String,
        /// The track's sid.
        track_sid: String,
    },
    /// The room is disconnected.
    #[error("the room is disconnected")]
    Disconnected,
    /// This room cannot do that (e.g. deleting the room without server credentials).
    #[error("{0} is not available for this room")]
    Unsupported(&'static str),
}

/// A remote participant as RoomIO sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Identity (unique among the participants present).
    pub identity: String,
    /// Server-assigned id of this participant session.
    pub sid: String,
    /// Display name.
    pub name: String,
    /// Kind (standard, SIP, agent, ...).
    pub kind: ParticipantKind,
    /// Attributes (e.g. `sip.*` for phone callers, `lk.publish_on_behalf` for avatars).
    pub attributes: HashMap<String, String>,
    /// Published tracks, in publication order.
    pub tracks: Vec<TrackInfo>,
}

impl ParticipantInfo {
    /// A participant with no attributes and no tracks; its sid is `PA_` + identity.
    pub fn new(identity: impl Into<String>, kind: ParticipantKind) -> Self {
        let identity = identity.into();
        Self {
            sid: format!("PA_{identity}"),
            name: identity.clone(),
            identity,
            kind,
            attributes: HashMap::new(),
            tracks: Vec::new(),
        }
    }

    /// The first published microphone track.
    pub fn microphone(&self) -> Option<&TrackInfo> {
        self.tracks
            .iter()
            .find(|t| t.kind == TrackKind::Audio && t.source == TrackSource::Microphone)
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrackSource {
    /// Not said.
    Unknown,
    /// A microphone.
    Microphone,
    /// A camera.
    Camera,
    /// A screen share.
    ScreenShare,
    /// A screen share's audio.
    ScreenShareAudio,
}

/// A remote participant's published track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Server-assigned id (`TR_...`).
    pub sid: String,
    /// Name given by the publisher.
    pub name: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// What it carries.
    pub source: TrackSource,
    /// Whether the local participant is subscribed to it.
    pub subscribed: bool,
    /// The publisher recorded audio before the agent joined and sends it on
    /// `lk.agent.pre-connect-audio-buffer` (the track feature `TF_PRECONNECT_BUFFER`).
    pub pre_connect_buffer: bool,
}

impl TrackInfo {
    /// A microphone track, not subscribed, without pre-connect audio.
    pub fn microphone(sid: impl Into<String>) -> Self {
        Self {
            sid: sid.into(),
            name: "microphone".into(),
            kind: TrackKind::Audio,
            source: TrackSource::Microphone,
            subscribed: false,
            pre_connect_buffer: false,
        }
    }

    /// A camera track, not subscribed.
    pub fn camera(sid: impl Into<String>) -> Self {
        Self {
            sid: sid.into(),
            name: "camera".into(),
            kind: TrackKind::Video,
            source: TrackSource::Camera,
            subscribed: false,
            pre_connect_buffer: false,
        }
    }

    /// The same track, marked as announcing pre-connect audio.
    pub fn with_pre_connect_buffer(mut self) -> Self {
        self.pre_connect_buffer = true;
        self
    }

    /// Whether this is video input for the session (a camera or a screen share).
    pub fn is_video_input(&self) -> bool {
        self.kind == TrackKind::Video
            && matches!(self.source, TrackSource::Camera | TrackSource::ScreenShare)
    }

    /// Whether this is the participant's microphone.
    pub fn is_microphone(&self) -> bool {
        self.kind == TrackKind::Audio && self.source == TrackSource::Microphone
    }
}

/// What happens in a room, in the order the `livekit` crate reports it:
///
/// - a participant joining: `ParticipantConnected`, then for each of its tracks
///   `TrackPublished`, then `TrackSubscribed` once the local participant is subscribed;
/// - a participant leaving: for each of its subscribed tracks `TrackUnsubscribed`, then
///   `TrackUnpublished` for every track, then `ParticipantDisconnected`;
/// - a track unpublished while the participant stays: `TrackUnsubscribed` (if subscribed),
///   then `TrackUnpublished`;
/// - the room closing: `Disconnected`, the last event.
///
/// Incoming text and byte streams are events too; their content is read once, by whoever
/// takes it first ([`IncomingStream::take`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RoomEvent {
    /// A remote participant joined (its tracks follow as `TrackPublished`).
    ParticipantConnected(ParticipantInfo),
    /// A remote participant left (after its tracks' events).
    ParticipantDisconnected {
        /// The participant as it was.
        participant: ParticipantInfo,
        /// Why it left.
        reason: LeaveReason,
    },
    /// A remote participant published a track.
    TrackPublished {
        /// Publisher identity.
        participant: String,
        /// The track.
        track: TrackInfo,
    },
    /// A remote participant unpublished a track.
    TrackUnpublished {
        /// Publisher identity.
        participant: String,
        /// The track.
        track: TrackInfo,
    },
    /// The local participant is subscribed to a remote track: its media can be read.
    TrackSubscribed {
        /// Publisher identity.
        participant: String,
        /// The track.
        track: TrackInfo,
    },
    /// The local participant is no longer subscribed to a remote track.
    TrackUnsubscribed {
        /// Publisher identity.
        participant: String,
        /// The track.
        track: TrackInfo,
    },
    /// A remote participant subscribed to one of the local participant's tracks.
    LocalTrackSubscribed {
        /// The local track's sid.
        track_sid: String,
    },
    /// After a reconnection the room republished a local track under a new sid.
    LocalTrackRepublished {
        /// The sid before.
        previous_sid: String,
        /// The sid now.
        track_sid: String,
    },
    /// Attributes of a participant (remote or local) changed.
    ParticipantAttributesChanged {
        /// The participant's identity.
        participant: String,
        /// The changed attributes with their new values (empty value: removed).
        changed: HashMap<String, String>,
    },
    /// A remote participant opened a text stream.
    TextStreamReceived(IncomingStream<String>),
    /// A remote participant opened a byte stream.
    ByteStreamReceived(IncomingStream<Vec<u8>>),
    /// A SIP participant pressed a key.
    SipDtmfReceived {
        /// RFC 4733 event code.
        code: u32,
        /// The key as text (may be empty).
        digit: String,
        /// Who pressed it, if known.
        participant: Option<String>,
    },
    /// The local participant left the room (the last event).
    Disconnected {
        /// Why, as the room reported it.
        reason: String,
    },
}

/// The header of an incoming text or byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamInfo {
    /// Stream id.
    pub id: String,
    /// Topic (`lk.chat`, `lk.agent.pre-connect-audio-buffer`, ...).
    pub topic: String,
    /// Sender identity.
    pub sender_identity: String,
    /// Mime type (byte streams; empty when not given).
    pub mime_type: String,
    /// Attributes set by the sender.
    pub attributes: HashMap<String, String>,
    /// Announced total length in bytes, if any.
    pub total_length: Option<u64>,
}

/// The content of an incoming stream, chunk by chunk.
pub type StreamChunks<T> = Pin<Box<dyn Stream<Item = Result<T, RoomError>> + Send>>;

type Opener<T> = Box<dyn FnOnce() -> Option<(StreamInfo, StreamChunks<T>)> + Send>;

/// An incoming stream. Its topic and sender are known at once; its header and content are
/// for whoever takes them first (every subscriber sees the event, one reads the stream; a
/// stream nobody takes is left to other readers of the room).
pub struct IncomingStream<T> {
    topic: Arc<str>,
    sender_identity: Arc<str>,
    open: Arc<Mutex<Option<Opener<T>>>>,
}

impl<T> Clone for IncomingStream<T> {
    fn clone(&self) -> Self {
        Self {
            topic: self.topic.clone(),
            sender_identity: self.sender_identity.clone(),
            open: self.open.clone(),
        }
    }
}

impl<T> fmt::Debug for IncomingStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingStream")
            .field("topic", &self.topic)
            .field("sender_identity", &self.sender_identity)
            .field("taken", &self.open.lock().is_none())
            .finish()
    }
}

impl<T: Send + 'static> IncomingStream<T> {
    /// A stream with header `info` whose content arrives as `chunks`.
    pub fn new(
        info: StreamInfo,
        chunks: impl Stream<Item = Result<T, RoomError>> + Send + 'static,
    ) -> Self {
        let chunks: StreamChunks<T> = Box::pin(chunks);
        let (topic, sender) = (info.topic.clone(), info.sender_identity.clone());
        Self::lazy(topic, sender, move || Some((info, chunks)))
    }

    /// A stream on `topic` from `sender_identity` whose header and content `open` gives when
    /// taken (`None`: someone else took it).
    pub fn lazy(
        topic: impl Into<String>,
        sender_identity: impl Into<String>,
        open: impl FnOnce() -> Option<(StreamInfo, StreamChunks<T>)> + Send + 'static,
    ) -> Self {
        Self {
            topic: topic.into().into(),
            sender_identity: sender_identity.into().into(),
            open: Arc::new(Mutex::new(Some(Box::new(open)))),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The sender's identity.
    pub fn sender_identity(&self) -> &str {
        &self.sender_identity
    }

    /// The header and the chunks, for the first caller; `None` afterwards.
    pub fn take(&self) -> Option<(StreamInfo, StreamChunks<T>)> {
        let open = self.open.lock().take()?;
        open()
    }
}

impl IncomingStream<String> {
    /// Reads the whole text, keeping at most `max_bytes` (the rest is dropped); `None` when
    /// already taken.
    pub async fn read_text(&self, max_bytes: usize) -> Option<Result<String, RoomError>> {
        use futures::StreamExt;
        let (_, mut chunks) = self.take()?;
        let mut text = String::new();
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => {
                    let room = max_bytes.saturating_sub(text.len());
                    let mut end = chunk.len().min(room);
                    while !chunk.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.push_str(&chunk[..end]);
                }
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(text))
    }
}

/// Options of an outgoing text stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextStreamOptions {
    /// Topic.
    pub topic: String,
    /// Attributes in the stream header.
    pub attributes: HashMap<String, String>,
    /// Send on behalf of this identity (user transcripts name the user); `None`: the local
    /// participant.
    pub sender_identity: Option<String>,
}

impl TextStreamOptions {
    /// A stream on `topic` with `attributes`, sent as the local participant.
    pub fn new(topic: impl Into<String>, attributes: HashMap<String, String>) -> Self {
        Self {
            topic: topic.into(),
            attributes,
            sender_identity: None,
        }
    }

    /// Sent on behalf of `identity`.
    pub fn sender(mut self, identity: impl Into<String>) -> Self {
        self.sender_identity = Some(identity.into());
        self
    }
}

/// An outgoing text stream being written.
#[async_trait]
pub trait TextStreamWriter: Send + Sync {
    /// Appends `text`.
    async fn write(&mut self, text: &str) -> Result<(), RoomError>;
    /// Ends the stream; `attributes` go in its trailer.
    async fn close(self: Box<Self>, attributes: HashMap<String, String>) -> Result<(), RoomError>;
}

/// A published local audio track.
#[async_trait]
pub trait LocalAudioTrack: Send + Sync {
    /// The sid it was published under (a republished track's new sid comes with
    /// [`RoomEvent::LocalTrackRepublished`]).
    fn sid(&self) -> String;
    /// Hands a frame to the room; waits while the room's own queue is full.
    async fn capture_frame(&self, frame: &AudioFrame) -> Result<(), RoomError>;
    /// Drops what the room queued but did not send yet.
    fn clear_queue(&self);
}

/// Audio frames of a remote track.
pub type AudioFrames = Pin<Box<dyn Stream<Item = AudioFrame> + Send>>;
/// Video frames of a remote track.
pub type VideoFrames = Pin<Box<dyn Stream<Item = VideoFrame> + Send>>;

/// The event stream of [`RoomBackend::subscribe`].
pub struct RoomEvents {
    inner: Pin<Box<dyn Stream<Item = RoomEvent> + Send>>,
}

impl fmt::Debug for RoomEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomEvents").finish_non_exhaustive()
    }
}

impl RoomEvents {
    /// Events from `stream` (it ends when the room is gone).
    pub fn new(stream: impl Stream<Item = RoomEvent> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
        }
    }

    /// The next event; `None` once the room is gone.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        use futures::StreamExt;
        self.inner.next().await
    }
}

impl Stream for RoomEvents {
    type Item = RoomEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RoomEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}
