//! [`MemoryRoom`]: a room in memory, for testing what an agent does in a room without WebRTC.
//!
//! It implements [`RoomBackend`], so [`RoomIo`](crate::room_logic::RoomIo) runs on it exactly
//! as on a LiveKit room, and it reports events in the `livekit` crate's order (see
//! [`RoomEvent`]). The test plays the remote participants (joining, publishing tracks, pushing
//! microphone audio, sending chat text and pre-connect audio, pressing keys, leaving) and reads
//! back what the agent did (attributes, text streams, published audio with its play times,
//! room deletion).
//!
//! ```
//! use std::sync::Arc;
//! use livekit_agents::room_logic::{ParticipantInfo, ParticipantKind, RoomIo, RoomOptions, TrackInfo};
//! use livekit_agents::testing::MemoryRoom;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let room = MemoryRoom::new("test-room", "agent");
//! let mut alice = ParticipantInfo::new("alice", ParticipantKind::Standard);
//! alice.tracks.push(TrackInfo::microphone("TR_alice"));
//! room.join(alice);
//! let (io, _ports) = RoomIo::start(Arc::new(room.clone()), RoomOptions::default()).await.unwrap();
//! assert_eq!(io.linked_participant().as_deref(), Some("alice"));
//! assert_eq!(room.local_tracks()[0].name, "roomio_audio");
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::audio::AudioFrame;
use crate::room_logic::video::VideoFrame;
use crate::room_logic::{
    AudioFrames, IncomingStream, LeaveReason, LocalAudioTrack, ParticipantInfo, RoomBackend,
    RoomError, RoomEvent, RoomEvents, StreamInfo, TextStreamOptions, TextStreamWriter, TrackInfo,
    TrackKind, VideoFrames,
};

/// A room in memory (cheap to clone: clones share the room).
#[derive(Clone)]
pub struct MemoryRoom {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    local_identity: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    connected: bool,
    deleted: bool,
    auto_subscribe: bool,
    subscribers: Vec<mpsc::UnboundedSender<RoomEvent>>,
    participants: Vec<Remote>,
    local_attributes: HashMap<String, String>,
    attribute_updates: Vec<HashMap<String, String>>,
    local_tracks: Vec<Arc<LocalTrackState>>,
    text_streams: Vec<SentTextStream>,
    subscription_requests: Vec<(String, String, bool)>,
    next_id: u64,
}

struct Remote {
    info: ParticipantInfo,
    /// Subscribes to the agent's tracks (as a client with auto-subscribe does).
    listens: bool,
    audio_readers: HashMap<String, Vec<mpsc::UnboundedSender<AudioFrame>>>,
    video_readers: HashMap<String, Vec<mpsc::Sender<VideoFrame>>>,
}

impl State {
    fn emit(&mut self, ev: RoomEvent) {
        self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
    }

    fn remote(&mut self, identity: &str) -> Option<&mut Remote> {
        self.participants
            .iter_mut()
            .find(|p| p.info.identity == identity)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Unsubscribes (if subscribed) and unpublishes a track, in the `livekit` crate's order.
    fn unpublish(&mut self, identity: &str, sid: &str) -> bool {
        let Some(remote) = self.remote(identity) else {
            return false;
        };
        let Some(pos) = remote.info.tracks.iter().position(|t| t.sid == sid) else {
            return false;
        };
        let mut track = remote.info.tracks.remove(pos);
        remote.audio_readers.remove(sid);
        remote.video_readers.remove(sid);
        if track.subscribed {
            track.subscribed = false;
            self.emit(RoomEvent::TrackUnsubscribed {
                participant: identity.to_owned(),
                track: track.clone(),
            });
        }
        self.emit(RoomEvent::TrackUnpublished {
            participant: identity.to_owned(),
            track,
        });
        true
    }

    /// Publishes a track, then subscribes to it with auto-subscribe.
    fn publish(&mut self, identity: &str, mut track: TrackInfo) {
        track.subscribed = false;
        let auto = self.auto_subscribe;
        let Some(remote) = self.remote(identity) else {
            return;
        };
        remote.info.tracks.push(track.clone());
        self.emit(RoomEvent::TrackPublished {
            participant: identity.to_owned(),
            track: track.clone(),
        });
        if auto {
            self.set_subscribed(identity, &track.sid, true);
        }
    }

    fn set_subscribed(&mut self, identity: &str, sid: &str, subscribed: bool) -> bool {
        let Some(remote) = self.remote(identity) else {
            return false;
        };
        let Some(track) = remote.info.tracks.iter_mut().find(|t| t.sid == sid) else {
            return false;
        };
        if track.subscribed == subscribed {
            return true;
        }
        track.subscribed = subscribed;
        let track = track.clone();
        if !subscribed {
            remote.audio_readers.remove(sid);
            remote.video_readers.remove(sid);
        }
        let participant = identity.to_owned();
        self.emit(if subscribed {
            RoomEvent::TrackSubscribed { participant, track }
        } else {
            RoomEvent::TrackUnsubscribed { participant, track }
        });
        true
    }

    /// A remote participant subscribes to the local tracks it has not subscribed to yet.
    fn listen(&mut self, identity: &str) {
        let tracks: Vec<_> = self.local_tracks.clone();
        for t in tracks {
            if t.subscribers.lock().insert_if_absent(identity) {
                let sid = t.sid.lock().clone();
                self.emit(RoomEvent::LocalTrackSubscribed { track_sid: sid });
            }
        }
    }

    fn leave(&mut self, identity: &str, reason: LeaveReason) -> bool {
        let Some(remote) = self.remote(identity) else {
            return false;
        };
        let sids: Vec<String> = remote.info.tracks.iter().map(|t| t.sid.clone()).collect();
        // Subscribed tracks first, then every unpublication, as `livekit` does.
        for sid in &sids {
            if let Some(r) = self.remote(identity) {
                let Some(t) = r.info.tracks.iter_mut().find(|t| &t.sid == sid) else {
                    continue;
                };
                if t.subscribed {
                    t.subscribed = false;
                    let track = t.clone();
                    r.audio_readers.remove(sid);
                    r.video_readers.remove(sid);
                    self.emit(RoomEvent::TrackUnsubscribed {
                        participant: identity.to_owned(),
                        track,
                    });
                }
            }
        }
        for sid in &sids {
            self.unpublish(identity, sid);
        }
        let Some(pos) = self
            .participants
            .iter()
            .position(|p| p.info.identity == identity)
        else {
            return false;
        };
        let remote = self.participants.remove(pos);
        for t in &self.local_tracks {
            t.subscribers.lock().remove(identity);
        }
        self.emit(RoomEvent::ParticipantDisconnected {
            participant: remote.info,
            reason,
        });
        true
    }
}

/// Identities subscribed to a local track.
#[derive(Default)]
struct Subscribers(Vec<String>);

impl Subscribers {
    fn insert_if_absent(&mut self, identity: &str) -> bool {
        if self.0.iter().any(|i| i == identity) {
            return false;
        }
        self.0.push(identity.to_owned());
        true
    }
    fn remove(&mut self, identity: &str) {
        self.0.retain(|i| i != identity);
    }
}

struct LocalTrackState {
    /// The sid now (changes when republished), and the earlier ones.
    sid: Mutex<String>,
    previous_sids: Mutex<Vec<String>>,
    name: String,
    sample_rate: u32,
    num_channels: u16,
    frames: Mutex<Vec<(Instant, AudioFrame)>>,
    clears: Mutex<usize>,
    subscribers: Mutex<Subscribers>,
}

impl LocalTrackState {
    fn has_sid(&self, sid: &str) -> bool {
        *self.sid.lock() == sid || self.previous_sids.lock().iter().any(|s| s == sid)
    }
}

/// A local track the agent published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTrack {
    /// Its sid now.
    pub sid: String,
    /// Its name (`roomio_audio` for RoomIO's).
    pub name: String,
    /// The rate it was published with.
    pub sample_rate: u32,
    /// The channels it was published with.
    pub num_channels: u16,
}

/// A text stream the agent sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTextStream {
    /// Topic.
    pub topic: String,
    /// Sent as (the local identity unless sent on behalf of someone).
    pub sender_identity: String,
    /// Header attributes.
    pub attributes: HashMap<String, String>,
    /// The text written so far.
    pub text: String,
    /// Whether the stream was closed.
    pub closed: bool,
    /// Trailer attributes given when closing.
    pub trailer: HashMap<String, String>,
}

impl std::fmt::Debug for MemoryRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("MemoryRoom")
            .field("name", &self.inner.name)
            .field("local_identity", &self.inner.local_identity)
            .field(
                "participants",
                &st.participants
                    .iter()
                    .map(|p| p.info.identity.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("connected", &st.connected)
            .finish()
    }
}

impl MemoryRoom {
    /// A connected room named `name`, joined by the agent as `local_identity`. Remote tracks
    /// are subscribed automatically (as `JobContext::connect` does).
    pub fn new(name: impl Into<String>, local_identity: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                local_identity: local_identity.into(),
                state: Mutex::new(State {
                    connected: true,
                    auto_subscribe: true,
                    ..Default::default()
                }),
            }),
        }
    }

    /// Turns automatic subscription to remote tracks off: a track is subscribed only when
    /// asked through [`RoomBackend::set_subscribed`].
    pub fn without_auto_subscribe(self) -> Self {
        self.inner.state.lock().auto_subscribe = false;
        self
    }

    /// `participant` joins with its tracks: `ParticipantConnected`, then for each track
    /// `TrackPublished` and (auto-subscribe) `TrackSubscribed`; then it subscribes to the
    /// agent's tracks (`LocalTrackSubscribed`), as a client does.
    pub fn join(&self, participant: ParticipantInfo) {
        self.join_with(participant, true);
    }

    /// Like [`join`](Self::join), but the participant does not subscribe to the agent's
    /// tracks until [`listen`](Self::listen).
    pub fn join_without_listening(&self, participant: ParticipantInfo) {
        self.join_with(participant, false);
    }

    fn join_with(&self, mut participant: ParticipantInfo, listens: bool) {
        let mut st = self.inner.state.lock();
        let identity = participant.identity.clone();
        if st.remote(&identity).is_some() {
            tracing::warn!(identity, "MemoryRoom: participant already present");
            return;
        }
        let tracks = std::mem::take(&mut participant.tracks);
        st.participants.push(Remote {
            info: participant.clone(),
            listens,
            audio_readers: HashMap::new(),
            video_readers: HashMap::new(),
        });
        st.emit(RoomEvent::ParticipantConnected(participant));
        for t in tracks {
            st.publish(&identity, t);
        }
        if listens {
            st.listen(&identity);
        }
    }

    /// A present participant subscribes to the agent's tracks (`LocalTrackSubscribed` for each
    /// track it had not subscribed to).
    pub fn listen(&self, identity: &str) {
        let mut st = self.inner.state.lock();
        if let Some(r) = st.remote(identity) {
            r.listens = true;
            st.listen(identity);
        }
    }

    /// `identity` leaves: `TrackUnsubscribed` for its subscribed tracks, `TrackUnpublished`
    /// for each, then `ParticipantDisconnected` with `reason`. Its audio streams end.
    pub fn leave(&self, identity: &str, reason: LeaveReason) -> bool {
        self.inner.state.lock().leave(identity, reason)
    }

    /// `identity` publishes `track` (`TrackPublished`, then `TrackSubscribed` with
    /// auto-subscribe).
    pub fn publish_track(&self, identity: &str, track: TrackInfo) {
        self.inner.state.lock().publish(identity, track);
    }

    /// `identity` unpublishes a track (`TrackUnsubscribed` if subscribed, then
    /// `TrackUnpublished`); its readers' streams end.
    pub fn unpublish_track(&self, identity: &str, sid: &str) -> bool {
        self.inner.state.lock().unpublish(identity, sid)
    }

    /// Audio on `identity`'s track `sid`, to every reader of it (frames must be in the format
    /// the reader asked for; RoomIO asks for its input format, 24 kHz mono by default).
    /// Returns how many readers got it.
    pub fn push_audio(&self, identity: &str, sid: &str, frame: AudioFrame) -> usize {
        let mut st = self.inner.state.lock();
        let Some(r) = st.remote(identity) else {
            return 0;
        };
        let Some(readers) = r.audio_readers.get_mut(sid) else {
            return 0;
        };
        readers.retain(|tx| tx.send(frame.clone()).is_ok());
        readers.len()
    }

    /// A video frame on `identity`'s track `sid`; a reader still busy with the previous frame
    /// misses it (as WebRTC drops frames). Returns how many readers got it.
    pub fn push_video(&self, identity: &str, sid: &str, frame: VideoFrame) -> usize {
        let mut st = self.inner.state.lock();
        let Some(r) = st.remote(identity) else {
            return 0;
        };
        let Some(readers) = r.video_readers.get_mut(sid) else {
            return 0;
        };
        readers.retain(|tx| !tx.is_closed());
        readers
            .iter()
            .filter(|tx| tx.try_send(frame.clone()).is_ok())
            .count()
    }

    /// Attributes of `identity` change (`ParticipantAttributesChanged`).
    pub fn set_participant_attributes(&self, identity: &str, changed: HashMap<String, String>) {
        let mut st = self.inner.state.lock();
        let Some(r) = st.remote(identity) else {
            return;
        };
        for (k, v) in &changed {
            if v.is_empty() {
                r.info.attributes.remove(k);
            } else {
                r.info.attributes.insert(k.clone(), v.clone());
            }
        }
        st.emit(RoomEvent::ParticipantAttributesChanged {
            participant: identity.to_owned(),
            changed,
        });
    }

    /// `identity` sends `text` as a text stream on `topic` (e.g. `lk.chat`).
    pub fn send_text_from(&self, identity: &str, topic: &str, text: &str) {
        let info = StreamInfo {
            id: format!("ST_{}", self.inner.state.lock().next_id()),
            topic: topic.to_owned(),
            sender_identity: identity.to_owned(),
            mime_type: "text/plain".into(),
            attributes: HashMap::new(),
            total_length: Some(text.len() as u64),
        };
        let chunks = futures::stream::iter([Ok(text.to_owned())]);
        self.inner
            .state
            .lock()
            .emit(RoomEvent::TextStreamReceived(IncomingStream::new(
                info, chunks,
            )));
    }

    /// `identity` opens a byte stream on `topic` (`ByteStreamReceived` now); the returned
    /// sender writes its chunks and ends it (dropping it ends the stream too).
    pub fn open_byte_stream_from(
        &self,
        identity: &str,
        topic: &str,
        mime_type: &str,
        attributes: HashMap<String, String>,
    ) -> ByteStreamSender {
        let (tx, rx) = mpsc::unbounded_channel::<Result<Vec<u8>, RoomError>>();
        let info = StreamInfo {
            id: format!("ST_{}", self.inner.state.lock().next_id()),
            topic: topic.to_owned(),
            sender_identity: identity.to_owned(),
            mime_type: mime_type.to_owned(),
            attributes,
            total_length: None,
        };
        let chunks = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        self.inner
            .state
            .lock()
            .emit(RoomEvent::ByteStreamReceived(IncomingStream::new(
                info, chunks,
            )));
        ByteStreamSender { tx: Some(tx) }
    }

    /// A SIP participant presses a key (`SipDtmfReceived`).
    pub fn dtmf_from(&self, identity: &str, code: u32, digit: &str) {
        self.inner.state.lock().emit(RoomEvent::SipDtmfReceived {
            code,
            digit: digit.to_owned(),
            participant: Some(identity.to_owned()),
        });
    }

    /// The room republishes the agent's track `sid` under a new sid after a reconnection
    /// (`LocalTrackRepublished`). Returns the new sid.
    pub fn republish_local_track(&self, sid: &str) -> Option<String> {
        let mut st = self.inner.state.lock();
        let track = st.local_tracks.iter().find(|t| t.has_sid(sid))?.clone();
        let new_sid = format!("TR_{}_{}", self.inner.local_identity, st.next_id());
        let previous = std::mem::replace(&mut *track.sid.lock(), new_sid.clone());
        track.previous_sids.lock().push(previous.clone());
        st.emit(RoomEvent::LocalTrackRepublished {
            previous_sid: previous,
            track_sid: new_sid.clone(),
        });
        Some(new_sid)
    }

    /// The connection is lost (`Disconnected`, the last event).
    pub fn drop_connection(&self, reason: &str) {
        let mut st = self.inner.state.lock();
        if std::mem::replace(&mut st.connected, false) {
            st.emit(RoomEvent::Disconnected {
                reason: reason.to_owned(),
            });
        }
    }

    /// The agent's attributes now.
    pub fn local_attributes(&self) -> HashMap<String, String> {
        self.inner.state.lock().local_attributes.clone()
    }

    /// Every attribute update the agent made, in order.
    pub fn attribute_updates(&self) -> Vec<HashMap<String, String>> {
        self.inner.state.lock().attribute_updates.clone()
    }

    /// The values the agent gave attribute `key`, in order.
    pub fn attribute_history(&self, key: &str) -> Vec<String> {
        self.inner
            .state
            .lock()
            .attribute_updates
            .iter()
            .filter_map(|u| u.get(key).cloned())
            .collect()
    }

    /// The tracks the agent published.
    pub fn local_tracks(&self) -> Vec<PublishedTrack> {
        self.inner
            .state
            .lock()
            .local_tracks
            .iter()
            .map(|t| PublishedTrack {
                sid: t.sid.lock().clone(),
                name: t.name.clone(),
                sample_rate: t.sample_rate,
                num_channels: t.num_channels,
            })
            .collect()
    }

    /// The audio the agent played on its track `sid` (current or earlier sid), each frame with
    /// the time it was handed to the room.
    pub fn captured_audio(&self, sid: &str) -> Vec<(Instant, AudioFrame)> {
        let st = self.inner.state.lock();
        st.local_tracks
            .iter()
            .find(|t| t.has_sid(sid))
            .map(|t| t.frames.lock().clone())
            .unwrap_or_default()
    }

    /// How often the agent cleared its track's queue (interruptions).
    pub fn queue_clears(&self, sid: &str) -> usize {
        let st = self.inner.state.lock();
        st.local_tracks
            .iter()
            .find(|t| t.has_sid(sid))
            .map(|t| *t.clears.lock())
            .unwrap_or_default()
    }

    /// The text streams the agent sent, in the order they were opened.
    pub fn text_streams(&self) -> Vec<SentTextStream> {
        self.inner.state.lock().text_streams.clone()
    }

    /// The text streams the agent sent on `topic`.
    pub fn text_streams_on(&self, topic: &str) -> Vec<SentTextStream> {
        self.text_streams()
            .into_iter()
            .filter(|s| s.topic == topic)
            .collect()
    }

    /// `(participant, track, subscribe)` requests the agent made.
    pub fn subscription_requests(&self) -> Vec<(String, String, bool)> {
        self.inner.state.lock().subscription_requests.clone()
    }

    /// Whether the agent deleted the room.
    pub fn is_deleted(&self) -> bool {
        self.inner.state.lock().deleted
    }

    /// Whether the agent is still connected.
    pub fn is_connected(&self) -> bool {
        self.inner.state.lock().connected
    }
}

/// Writes the chunks of a byte stream opened with [`MemoryRoom::open_byte_stream_from`].
#[derive(Debug)]
pub struct ByteStreamSender {
    tx: Option<mpsc::UnboundedSender<Result<Vec<u8>, RoomError>>>,
}

impl ByteStreamSender {
    /// Sends a chunk.
    pub fn write(&self, chunk: &[u8]) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Ok(chunk.to_vec()));
        }
    }

    /// The stream fails (the sender left, for example).
    pub fn fail(mut self, message: &str) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(RoomError::Operation {
                operation: "read_stream",
                message: message.to_owned(),
            }));
        }
    }

    /// Ends the stream.
    pub fn close(mut self) {
        self.tx = None;
    }
}

struct MemoryLocalTrack {
    track: Arc<LocalTrackState>,
}

#[async_trait]
impl LocalAudioTrack for MemoryLocalTrack {
    fn sid(&self) -> String {
        self.track.sid.lock().clone()
    }
    async fn capture_frame(&self, frame: &AudioFrame) -> Result<(), RoomError> {
        self.track
            .frames
            .lock()
            .push((Instant::now(), frame.clone()));
        Ok(())
    }
    fn clear_queue(&self) {
        *self.track.clears.lock() += 1;
    }
}

struct MemoryTextWriter {
    inner: Arc<Inner>,
    index: usize,
}

#[async_trait]
impl TextStreamWriter for MemoryTextWriter {
    async fn write(&mut self, text: &str) -> Result<(), RoomError> {
        let mut st = self.inner.state.lock();
        if !st.connected {
            return Err(RoomError::Disconnected);
        }
        match st.text_streams.get_mut(self.index) {
            Some(s) if !s.closed => {
                s.text.push_str(text);
                Ok(())
            }
            _ => Err(RoomError::Operation {
                operation: "write",
                message: "the stream is closed".into(),
            }),
        }
    }

    async fn close(self: Box<Self>, attributes: HashMap<String, String>) -> Result<(), RoomError> {
        let mut st = self.inner.state.lock();
        if let Some(s) = st.text_streams.get_mut(self.index) {
            s.closed = true;
            s.trailer = attributes;
        }
        Ok(())
    }
}

impl MemoryRoom {
    fn connected(&self) -> Result<parking_lot::MutexGuard<'_, State>, RoomError> {
        let st = self.inner.state.lock();
        if st.connected {
            Ok(st)
        } else {
            Err(RoomError::Disconnected)
        }
    }

    fn sent(
        &self,
        text: &str,
        options: TextStreamOptions,
        closed: bool,
    ) -> Result<usize, RoomError> {
        let mut st = self.connected()?;
        st.text_streams.push(SentTextStream {
            topic: options.topic,
            sender_identity: options
                .sender_identity
                .unwrap_or_else(|| self.inner.local_identity.clone()),
            attributes: options.attributes,
            text: text.to_owned(),
            closed,
            trailer: HashMap::new(),
        });
        Ok(st.text_streams.len() - 1)
    }
}

#[async_trait]
impl RoomBackend for MemoryRoom {
    fn name(&self) -> String {
        self.inner.name.clone()
    }

    fn local_identity(&self) -> String {
        self.inner.local_identity.clone()
    }

    fn remote_participants(&self) -> Vec<ParticipantInfo> {
        self.inner
            .state
            .lock()
            .participants
            .iter()
            .map(|p| p.info.clone())
            .collect()
    }

    fn subscribe(&self) -> RoomEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.inner.state.lock();
        if st.connected {
            st.subscribers.push(tx);
        }
        RoomEvents::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    }

    async fn set_subscribed(
        &self,
        participant: &str,
        track_sid: &str,
        subscribed: bool,
    ) -> Result<(), RoomError> {
        let mut st = self.connected()?;
        st.subscription_requests
            .push((participant.to_owned(), track_sid.to_owned(), subscribed));
        if st.set_subscribed(participant, track_sid, subscribed) {
            Ok(())
        } else {
            Err(RoomError::UnknownTrack {
                participant: participant.to_owned(),
                track_sid: track_sid.to_owned(),
            })
        }
    }

    fn audio_frames(
        &self,
        participant: &str,
        track_sid: &str,
        _sample_rate: u32,
        _num_channels: u16,
    ) -> Result<AudioFrames, RoomError> {
        let unknown = || RoomError::UnknownTrack {
            participant: participant.to_owned(),
            track_sid: track_sid.to_owned(),
        };
        let mut st = self.connected()?;
        let r = st.remote(participant).ok_or_else(unknown)?;
        let subscribed = r
            .info
            .tracks
            .iter()
            .any(|t| t.sid == track_sid && t.subscribed && t.kind == TrackKind::Audio);
        if !subscribed {
            return Err(unknown());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        r.audio_readers
            .entry(track_sid.to_owned())
            .or_default()
            .push(tx);
        Ok(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ))
    }

    fn video_frames(&self, participant: &str, track_sid: &str) -> Result<VideoFrames, RoomError> {
        let unknown = || RoomError::UnknownTrack {
            participant: participant.to_owned(),
            track_sid: track_sid.to_owned(),
        };
        let mut st = self.connected()?;
        let r = st.remote(participant).ok_or_else(unknown)?;
        let subscribed = r
            .info
            .tracks
            .iter()
            .any(|t| t.sid == track_sid && t.subscribed && t.kind == TrackKind::Video);
        if !subscribed {
            return Err(unknown());
        }
        let (tx, rx) = mpsc::channel(1);
        r.video_readers
            .entry(track_sid.to_owned())
            .or_default()
            .push(tx);
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn publish_audio(
        &self,
        name: &str,
        sample_rate: u32,
        num_channels: u16,
    ) -> Result<Arc<dyn LocalAudioTrack>, RoomError> {
        let mut st = self.connected()?;
        let sid = format!("TR_{}_{}", self.inner.local_identity, st.next_id());
        let track = Arc::new(LocalTrackState {
            sid: Mutex::new(sid),
            previous_sids: Mutex::new(Vec::new()),
            name: name.to_owned(),
            sample_rate,
            num_channels,
            frames: Mutex::new(Vec::new()),
            clears: Mutex::new(0),
            subscribers: Mutex::new(Subscribers::default()),
        });
        st.local_tracks.push(track.clone());
        // Participants present subscribe to the new track.
        let listeners: Vec<String> = st
            .participants
            .iter()
            .filter(|p| p.listens)
            .map(|p| p.info.identity.clone())
            .collect();
        for identity in listeners {
            st.listen(&identity);
        }
        Ok(Arc::new(MemoryLocalTrack { track }))
    }

    async fn set_attributes(&self, attributes: HashMap<String, String>) -> Result<(), RoomError> {
        let mut st = self.connected()?;
        st.local_attributes.extend(attributes.clone());
        st.attribute_updates.push(attributes.clone());
        let local = self.inner.local_identity.clone();
        st.emit(RoomEvent::ParticipantAttributesChanged {
            participant: local,
            changed: attributes,
        });
        Ok(())
    }

    async fn send_text(&self, text: &str, options: TextStreamOptions) -> Result<(), RoomError> {
        self.sent(text, options, true).map(|_| ())
    }

    async fn stream_text(
        &self,
        options: TextStreamOptions,
    ) -> Result<Box<dyn TextStreamWriter>, RoomError> {
        let index = self.sent("", options, false)?;
        Ok(Box::new(MemoryTextWriter {
            inner: self.inner.clone(),
            index,
        }))
    }

    async fn delete_room(&self) -> Result<(), RoomError> {
        let mut st = self.inner.state.lock();
        if st.deleted {
            return Ok(());
        }
        st.deleted = true;
        // The server removes everyone.
        let identities: Vec<String> = st
            .participants
            .iter()
            .map(|p| p.info.identity.clone())
            .collect();
        for identity in identities {
            st.leave(&identity, LeaveReason::RoomDeleted);
        }
        if std::mem::replace(&mut st.connected, false) {
            st.emit(RoomEvent::Disconnected {
                reason: "room deleted".into(),
            });
        }
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), RoomError> {
        let mut st = self.inner.state.lock();
        if std::mem::replace(&mut st.connected, false) {
            st.emit(RoomEvent::Disconnected {
                reason: "client initiated".into(),
            });
        }
        Ok(())
    }
}
