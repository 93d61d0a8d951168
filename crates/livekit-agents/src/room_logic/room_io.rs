//! `RoomIo`: a room ([`RoomBackend`]) as the session's ports, the reference's `RoomIO`.
//!
//! - Audio in: the linked participant's microphone track at 24 kHz mono in 50 ms frames, with
//!   the pre-connect audio buffer (`lk.agent.pre-connect-audio-buffer`) replayed first. The
//!   buffer is decoded from 16-bit PCM (native SDKs) or, with the default `pre-connect-opus`
//!   feature, from the Opus WebM/Ogg recordings browsers send (see
//!   [`PreConnectEncoding`](super::PreConnectEncoding)).
//! - Audio out: a published track (`roomio_audio`) fed at real-time pace, with pause, resume,
//!   clear and playback events ([`PacedAudioOutput`] over the room's track). Nothing is played
//!   before someone subscribed to the track ([`RoomEvent::LocalTrackSubscribed`]), so the start
//!   of the first reply is not lost; see [`AudioSubscriptionGate`] and
//!   [`RoomOptions::audio_subscription_timeout`].
//! - Text in: `lk.chat` text streams from the linked participant, as
//!   [`RoomInputEvent::UserText`].
//! - Text out: agent transcriptions as `lk.transcription` text streams (one per segment, delta
//!   mode, with `lk.segment_id`, `lk.transcribed_track_id`, `lk.transcription_final`); user
//!   transcripts via [`RoomIo::publish_user_transcript`], sent on behalf of the user.
//! - Agent state in the `lk.agent.state` attribute via [`RoomIo::set_agent_state`].
//!
//! [`RoomIo::start_for_session`] also wires it to an [`AgentSession`] as the reference does:
//! chat text interrupts and becomes a user turn, agent states and user transcripts go to the
//! room, the linked participant leaving for good closes the session
//! ([`CloseReason::ParticipantDisconnected`]), and closing the session deletes the room with
//! `delete_room_on_close`.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::{
    IncomingStream, LocalAudioTrack, ParticipantInfo, RoomBackend, RoomError, RoomEvent,
    RoomEvents, TextStreamOptions, TextStreamWriter, TrackInfo, VideoFrames,
};
use super::video::VideoFrame;
use super::{
    AgentStateAttribute, AudioSubscriptionGate, AudioSubscriptionState, DepartureAction,
    LeaveReason, LinkSelector, PreConnectBuffer, PreConnectEncoding, PreConnectHeader,
    PreConnectStore, RoomOptions, StreamRoute, SubscriptionGatedOutput, TranscriptionSegmenter,
    TranscriptionStep, UserTranscriptSegments, ATTR_PUBLISH_ON_BEHALF, TOPIC_TRANSCRIPTION,
};
use crate::audio::filter::FilterParams;
use crate::audio::AudioFrame;
use crate::io::{AudioInput, AudioOutput, PacedAudioOutput, PlaybackEvent, TextOutput};
use crate::voice::{AgentSession, CloseReason, ReplyOptions, SessionEvent, SessionIo};

/// Name of the agent's published audio track (the reference's default).
pub const AGENT_TRACK_NAME: &str = "roomio_audio";

/// Agent audio queued ahead of playback in the room output (the reference's 200 ms).
const ROOM_OUTPUT_QUEUE: Duration = Duration::from_millis(200);

/// Frames between the paced room output and the room's track (about 1 s of 10-20 ms frames).
const ROOM_OUTPUT_PUMP_FRAMES: usize = 64;

/// The most chat text taken from one `lk.chat` stream (64 KiB); the rest is dropped.
pub const CHAT_TEXT_MAX_BYTES: usize = 64 * 1024;

/// How long deleting the room on close may take (the reference's API timeout, 10 s).
const DELETE_ROOM_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of room I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomIoError {
    /// Publishing the agent's audio track failed.
    #[error("could not publish the agent audio track: {0}")]
    Publish(RoomError),
    /// Setting participant attributes failed.
    #[error("could not set participant attributes: {0}")]
    Attributes(RoomError),
    /// Sending a text stream failed.
    #[error("could not send a text stream: {0}")]
    Stream(RoomError),
}

/// What happens in the room that the session must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomInputEvent {
    /// The linked participant sent chat text (`lk.chat`).
    UserText {
        /// The text.
        text: String,
        /// Sender identity.
        participant_identity: String,
    },
    /// The linked participant changed (`None`: nobody linked).
    LinkedParticipantChanged(Option<String>),
    /// Attributes of the linked participant changed (e.g. `sip.callStatus`).
    LinkedParticipantAttributesChanged {
        /// The changed attributes with their new values.
        changed: std::collections::HashMap<String, String>,
    },
    /// A SIP participant pressed a key (the room's `sip_dtmf_received`).
    SipDtmf {
        /// RFC 4733 event code.
        code: u32,
        /// The key as text (may be empty).
        digit: String,
        /// Who pressed it, if known.
        participant_identity: Option<String>,
    },
    /// The session should close: the linked participant left for good (`close_on_disconnect`
    /// and a reason among client initiated, room deleted, user rejected). Sent once.
    CloseRequested {
        /// Why.
        reason: String,
    },
    /// The local participant left the room (the last event).
    RoomDisconnected {
        /// Why, as the room reported it.
        reason: String,
    },
}

/// The room's events for the session (see [`RoomInputEvent`]).
pub struct RoomInputEvents {
    rx: mpsc::UnboundedReceiver<RoomInputEvent>,
}

impl std::fmt::Debug for RoomInputEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomInputEvents").finish_non_exhaustive()
    }
}

impl RoomInputEvents {
    /// The next event; `None` once RoomIO stopped.
    pub async fn recv(&mut self) -> Option<RoomInputEvent> {
        self.rx.recv().await
    }
}

impl Stream for RoomInputEvents {
    type Item = RoomInputEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RoomInputEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// The ports RoomIO gives the session, plus its event stream.
pub struct RoomPorts {
    /// User audio (if `audio_input`).
    pub audio_input: Option<AudioInput>,
    /// Agent audio (if `audio_output`).
    pub audio_output: Option<Arc<dyn AudioOutput>>,
    /// Agent transcriptions (if `text_output`).
    pub text_output: Option<Arc<dyn TextOutput>>,
    /// Frames of the linked participant's latest camera or screen-share track (if
    /// `video_input`); give them to the session with
    /// [`AgentSession::forward_video`](crate::voice::AgentSession::forward_video).
    pub video_input: Option<VideoFrames>,
    /// Room events for the session.
    pub events: RoomInputEvents,
}

impl std::fmt::Debug for RoomPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomPorts")
            .field("audio_input", &self.audio_input.is_some())
            .field("audio_output", &self.audio_output.is_some())
            .field("text_output", &self.text_output.is_some())
            .field("video_input", &self.video_input.is_some())
            .finish()
    }
}

/// A remote track being forwarded into the session.
struct Forwarded {
    participant: String,
    sid: String,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarded {
    fn is(&self, participant: &str, sid: &str) -> bool {
        self.participant == participant && self.sid == sid
    }
}

struct Shared {
    room: Arc<dyn RoomBackend>,
    options: RoomOptions,
    selector: Mutex<LinkSelector>,
    /// Sender of the session's audio input; frames from the linked track go here.
    audio_tx: Option<mpsc::UnboundedSender<AudioFrame>>,
    /// The linked participant, as the session input's filter factory sees it.
    participant: watch::Sender<FilterParams>,
    /// The linked participant's microphone being forwarded.
    audio: Mutex<Option<Forwarded>>,
    /// Sender of the session's video input (if `video_input`).
    video_tx: Option<mpsc::Sender<VideoFrame>>,
    /// The linked participant's video track being forwarded.
    video: Mutex<Option<Forwarded>>,
    /// Pre-connect audio by track id, with when its stream opened.
    pre_connect: PreConnectStore,
    /// (participant, track) pairs whose pre-connect audio was already waited for: a track
    /// linked again does not wait a second time (the reference's rule).
    pre_connect_done: Mutex<HashSet<(String, String)>>,
    events: mpsc::UnboundedSender<RoomInputEvent>,
    close_requested: AtomicBool,
    state_attr: tokio::sync::Mutex<AgentStateAttribute>,
    user_segments: Mutex<UserTranscriptSegments>,
    /// Holds the agent's audio until its track has a subscriber.
    audio_gate: AudioSubscriptionGate,
    /// The transcription output, told the new track id when the agent track is republished.
    text_output: Mutex<Option<Arc<RoomTextOutput>>>,
    /// Stops forwarding and event handling.
    close: CancellationToken,
    /// Cancelled when closing is complete (see [`RoomIo::wait_closed`]).
    finished: CancellationToken,
    /// Whether a session's closing drives `finished`.
    attached: AtomicBool,
}

/// Room I/O for one session. Dropping it does not stop it: call [`RoomIo::close`].
#[derive(Clone)]
pub struct RoomIo {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RoomIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomIo")
            .field("room", &self.shared.room.name())
            .field("linked", &self.linked_participant())
            .finish()
    }
}

impl RoomIo {
    /// Starts room I/O on a connected room: publishes the agent track, links a participant,
    /// and routes room events. Returns the ports for the session.
    pub async fn start(
        room: Arc<dyn RoomBackend>,
        options: RoomOptions,
    ) -> Result<(RoomIo, RoomPorts), RoomIoError> {
        // Subscribe before publishing and before looking at who is present, so neither the
        // first subscription to the agent track nor a join is missed in between.
        let room_events = room.subscribe();

        // Unbounded: low-rate control events (joins, leaves, chat, DTMF), as the `livekit`
        // crate's own event channel; the session's event task drains it.
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        // Who the input's audio comes from, for per-participant filters (`audio::filter`).
        let (participant_tx, participant_rx) = watch::channel(FilterParams::default());
        let (audio_tx, audio_input) = if options.audio_input {
            // Unbounded here, bounded downstream: the session wraps this input in
            // `io::bounded` (sheds the oldest audio), whose reader or sweeper drains it.
            let (tx, rx) = mpsc::unbounded_channel::<AudioFrame>();
            let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
            (
                Some(tx),
                Some(
                    AudioInput::from_stream("room", stream)
                        .with_participant_updates(participant_rx),
                ),
            )
        } else {
            (None, None)
        };
        let (video_tx, video_input) = if options.video_input {
            let (tx, rx) = mpsc::channel(1);
            let frames: VideoFrames = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
            (Some(tx), Some(frames))
        } else {
            (None, None)
        };
        let selector = LinkSelector::new(
            options.participant_identity.clone(),
            options.participant_kinds.clone(),
        )
        .with_local_identity(room.local_identity());
        let shared = Arc::new(Shared {
            selector: Mutex::new(selector),
            room: room.clone(),
            audio_tx,
            participant: participant_tx,
            audio: Mutex::new(None),
            video_tx,
            video: Mutex::new(None),
            pre_connect: PreConnectStore::new(),
            pre_connect_done: Mutex::new(HashSet::new()),
            events: events_tx,
            close_requested: AtomicBool::new(false),
            state_attr: tokio::sync::Mutex::new(AgentStateAttribute::default()),
            user_segments: Mutex::new(UserTranscriptSegments::default()),
            audio_gate: if options.audio_output {
                AudioSubscriptionGate::new(options.audio_subscription_timeout)
            } else {
                AudioSubscriptionGate::open()
            },
            text_output: Mutex::new(None),
            close: CancellationToken::new(),
            finished: CancellationToken::new(),
            attached: AtomicBool::new(false),
            options,
        });
        let io = RoomIo { shared };
        let options = &io.shared.options;

        let audio_output = if options.audio_output {
            Some(io.publish_audio_output().await?)
        } else {
            None
        };
        let text_output: Option<Arc<dyn TextOutput>> = if options.text_output {
            let track_id = audio_output.as_ref().map(|(_, sid)| sid.clone());
            let output = Arc::new(RoomTextOutput::new(
                room.clone(),
                track_id,
                options.sync_transcription,
            ));
            *io.shared.text_output.lock() = Some(output.clone());
            Some(output)
        } else {
            None
        };

        for p in room.remote_participants() {
            io.on_participant(&p);
        }
        tokio::spawn(io.clone().event_loop(room_events));

        let ports = RoomPorts {
            audio_input,
            audio_output: audio_output.map(|(o, _)| o),
            text_output,
            video_input,
            events: RoomInputEvents { rx: events_rx },
        };
        Ok((io, ports))
    }

    /// Starts room I/O for `session` (the reference's `RoomIO(session, room).start()`) and
    /// returns the ports to start the session with. Besides [`start`](Self::start):
    /// - `lk.chat` text interrupts the agent and is answered as a user turn;
    /// - `sip_dtmf_received` becomes [`SessionEvent::SipDtmfReceived`];
    /// - the agent state goes to `lk.agent.state`, user transcripts to `lk.transcription`;
    /// - the linked participant leaving for good closes the session with
    ///   [`CloseReason::ParticipantDisconnected`], the room disconnecting closes it too;
    /// - the user-away timer waits for the agent track's first subscriber;
    /// - video frames (`video_input`) go to the session's sampler;
    /// - when the session closes, RoomIO stops and, with `delete_room_on_close`, deletes the
    ///   room ([`wait_closed`](Self::wait_closed) resolves after that).
    pub async fn start_for_session(
        room: Arc<dyn RoomBackend>,
        options: RoomOptions,
        session: &AgentSession,
    ) -> Result<(RoomIo, SessionIo), RoomIoError> {
        // Subscribed before anything can happen, so no state change is missed.
        let session_events = session.subscribe();
        let (io, ports) = Self::start(room, options).await?;
        io.shared.attached.store(true, Ordering::SeqCst);

        // As the reference: the user cannot be "away" before they can hear the agent.
        let gate = io.clone();
        session.hold_user_away_timer_until(async move {
            gate.wait_for_audio_subscription().await;
        });
        if let Some(video) = ports.video_input {
            session.forward_video(video);
        }
        tokio::spawn(io.clone().room_to_session(ports.events, session.clone()));
        tokio::spawn(io.clone().session_to_room(session_events));
        Ok((
            io,
            SessionIo {
                audio_input: ports.audio_input,
                audio_output: ports.audio_output,
                text_output: ports.text_output,
            },
        ))
    }

    /// The linked participant's identity.
    pub fn linked_participant(&self) -> Option<String> {
        self.shared.selector.lock().linked().map(str::to_owned)
    }

    /// The linked participant as the room sees it now: kind, attributes (a phone caller's
    /// `sip.*`, see `telephony::SipParticipantInfo::from_attributes`), tracks.
    pub fn linked_participant_info(&self) -> Option<ParticipantInfo> {
        let identity = self.linked_participant()?;
        self.shared
            .room
            .remote_participants()
            .into_iter()
            .find(|p| p.identity == identity)
    }

    /// Links `identity` from now on: at once if present, else when it joins, whatever its
    /// kind. `None` unlinks; the next suitable participant to join is linked.
    pub fn set_participant(&self, identity: Option<String>) {
        if identity.is_some() && self.linked_participant() == identity {
            return;
        }
        let present = identity.as_ref().and_then(|id| {
            self.shared
                .room
                .remote_participants()
                .into_iter()
                .find(|p| &p.identity == id)
        });
        let previous = self
            .shared
            .selector
            .lock()
            .set_participant(identity.clone(), present.is_some());
        self.unlink_audio();
        self.unlink_video(None);
        let now = present.as_ref().map(|p| p.identity.clone());
        tracing::info!(participant = ?identity, "RoomIO linked to participant");
        if previous != now {
            let _ = self
                .shared
                .events
                .send(RoomInputEvent::LinkedParticipantChanged(now));
        }
        if let Some(p) = present {
            self.link_existing_tracks(&p);
        }
    }

    /// Whether the agent's audio may flow yet (see [`RoomOptions::audio_subscription_timeout`]).
    pub fn audio_subscription(&self) -> AudioSubscriptionState {
        self.shared.audio_gate.state()
    }

    /// Resolves once the agent's audio track has a subscriber (or the subscription timeout
    /// passed, or audio output is off).
    pub async fn wait_for_audio_subscription(&self) -> AudioSubscriptionState {
        self.shared.audio_gate.wait().await
    }

    /// Publishes the agent state in the `lk.agent.state` attribute (no-op when unchanged).
    pub async fn set_agent_state(&self, state: &str) -> Result<(), RoomIoError> {
        let mut attr = self.shared.state_attr.lock().await;
        if let Some(attrs) = attr.update(state) {
            if let Err(e) = self.shared.room.set_attributes(attrs).await {
                // Let the next identical state try again.
                *attr = AgentStateAttribute::default();
                return Err(RoomIoError::Attributes(e));
            }
        }
        Ok(())
    }

    /// Publishes a user transcript (interim or final) on `lk.transcription`, sent on behalf of
    /// the linked participant and naming its microphone track; nothing when nobody is linked.
    pub async fn publish_user_transcript(
        &self,
        text: &str,
        is_final: bool,
    ) -> Result<(), RoomIoError> {
        let Some(identity) = self.linked_participant() else {
            return Ok(());
        };
        let forwarded = self
            .shared
            .audio
            .lock()
            .as_ref()
            .filter(|f| f.participant == identity)
            .map(|f| f.sid.clone());
        let track = forwarded.or_else(|| {
            self.shared
                .room
                .remote_participants()
                .into_iter()
                .find(|p| p.identity == identity)
                .and_then(|p| p.microphone().map(|t| t.sid.clone()))
        });
        let attrs = self
            .shared
            .user_segments
            .lock()
            .update(track.as_deref(), is_final);
        let options = TextStreamOptions::new(TOPIC_TRANSCRIPTION, attrs).sender(identity);
        self.shared
            .room
            .send_text(text, options)
            .await
            .map_err(RoomIoError::Stream)
    }

    /// Stops forwarding and event handling. Deletes nothing and leaves nothing in the room.
    pub fn close(&self) {
        self.shared.close.cancel();
        self.unlink_audio();
        self.unlink_video(None);
        if !self.shared.attached.load(Ordering::SeqCst) {
            self.shared.finished.cancel();
        }
    }

    /// Resolves once RoomIO is closed: after [`close`](Self::close), or, when started with
    /// [`start_for_session`](Self::start_for_session), once the session closed and the room
    /// was deleted (with `delete_room_on_close`).
    pub async fn wait_closed(&self) {
        self.shared.finished.cancelled().await
    }

    async fn publish_audio_output(&self) -> Result<(Arc<dyn AudioOutput>, String), RoomIoError> {
        let opts = &self.shared.options;
        let track = self
            .shared
            .room
            .publish_audio(
                AGENT_TRACK_NAME,
                opts.output_sample_rate,
                opts.output_num_channels,
            )
            .await
            .map_err(RoomIoError::Publish)?;
        let sid = track.sid();
        self.shared.audio_gate.published(&sid);

        // The paced output decides when each frame plays; a pump hands frames to the room.
        // Bounded: the paced output hands over one frame as it starts playing, so this holds
        // more than a frame or two only while the room's capture stalls; past 1 s the frames
        // are dropped (they would play late anyway).
        let (tx, mut rx) = mpsc::channel::<AudioFrame>(ROOM_OUTPUT_PUMP_FRAMES);
        let pump_track = track.clone();
        let close = self.shared.close.clone();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = close.cancelled() => break,
                    f = rx.recv() => match f { Some(f) => f, None => break },
                };
                if let Err(e) = pump_track.capture_frame(&frame).await {
                    tracing::warn!(error = %e, "could not capture agent audio");
                }
            }
        });
        // The reference's room output queues 200 ms ahead of playback: the writer (the TTS)
        // waits when it is full, and while the output is paused.
        let paced = PacedAudioOutput::bounded(
            "room",
            Some(opts.output_sample_rate),
            ROOM_OUTPUT_QUEUE,
            move |frame: &AudioFrame| {
                if tx.try_send(frame.clone()).is_err() {
                    tracing::debug!("room audio capture is behind; dropping a frame");
                }
            },
        );
        let output = SubscriptionGatedOutput::new(
            RoomAudioOutput { paced, track },
            self.shared.audio_gate.clone(),
        );
        Ok((Arc::new(output), sid))
    }

    async fn event_loop(self, mut events: RoomEvents) {
        loop {
            let ev = tokio::select! {
                _ = self.shared.close.cancelled() => return,
                ev = events.recv() => match ev { Some(ev) => ev, None => return },
            };
            match ev {
                RoomEvent::ParticipantConnected(p) => self.on_participant(&p),
                RoomEvent::ParticipantDisconnected {
                    participant,
                    reason,
                } => self.on_departure(&participant, reason),
                RoomEvent::TrackPublished { participant, track } => {
                    self.on_track_published(&participant, &track)
                }
                RoomEvent::TrackSubscribed { participant, track } => {
                    self.on_track_subscribed(&participant, &track)
                }
                RoomEvent::TrackUnsubscribed { participant, track }
                | RoomEvent::TrackUnpublished { participant, track } => {
                    self.on_track_gone(&participant, &track)
                }
                RoomEvent::LocalTrackSubscribed { track_sid } => {
                    self.shared.audio_gate.local_track_subscribed(&track_sid);
                }
                RoomEvent::LocalTrackRepublished {
                    previous_sid,
                    track_sid,
                } => {
                    if self.shared.audio_gate.state() != AudioSubscriptionState::Unpublished {
                        self.shared
                            .audio_gate
                            .republished(&previous_sid, &track_sid);
                    }
                    if let Some(text) = self.shared.text_output.lock().as_ref() {
                        text.republished(&previous_sid, &track_sid);
                    }
                }
                RoomEvent::ParticipantAttributesChanged {
                    participant,
                    changed,
                } => {
                    if self.shared.selector.lock().is_linked(&participant) {
                        let _ = self
                            .shared
                            .events
                            .send(RoomInputEvent::LinkedParticipantAttributesChanged { changed });
                    }
                }
                RoomEvent::TextStreamReceived(stream) => self.on_text_stream(stream),
                RoomEvent::ByteStreamReceived(stream) => self.on_byte_stream(stream),
                RoomEvent::SipDtmfReceived {
                    code,
                    digit,
                    participant,
                } => {
                    let _ = self.shared.events.send(RoomInputEvent::SipDtmf {
                        code,
                        digit,
                        participant_identity: participant,
                    });
                }
                RoomEvent::Disconnected { reason } => {
                    self.unlink_audio();
                    self.unlink_video(None);
                    let _ = self
                        .shared
                        .events
                        .send(RoomInputEvent::RoomDisconnected { reason });
                    return;
                }
            }
        }
    }

    fn on_participant(&self, p: &ParticipantInfo) {
        let on_behalf = p.attributes.get(ATTR_PUBLISH_ON_BEHALF).map(String::as_str);
        let linked = self
            .shared
            .selector
            .lock()
            .offer(&p.identity, p.kind, on_behalf);
        if let Some(identity) = linked {
            tracing::info!(participant = identity, "linked participant");
            let _ = self
                .shared
                .events
                .send(RoomInputEvent::LinkedParticipantChanged(Some(identity)));
            self.link_existing_tracks(p);
        }
    }

    fn on_departure(&self, p: &ParticipantInfo, reason: LeaveReason) {
        let action = self.shared.selector.lock().on_departure(
            &p.identity,
            reason,
            self.shared.options.close_on_disconnect,
        );
        if action == DepartureAction::Ignore {
            return;
        }
        self.unlink_audio();
        self.unlink_video(None);
        let _ = self
            .shared
            .events
            .send(RoomInputEvent::LinkedParticipantChanged(None));
        if action == DepartureAction::CloseSession
            && !self.shared.close_requested.swap(true, Ordering::SeqCst)
        {
            tracing::info!(
                participant = p.identity,
                ?reason,
                "closing the agent session: the linked participant disconnected \
                 (disable with RoomOptions::close_on_disconnect = false)"
            );
            let _ = self.shared.events.send(RoomInputEvent::CloseRequested {
                reason: format!("participant {} disconnected ({reason:?})", p.identity),
            });
        }
    }

    /// Whether RoomIO takes this track of the linked participant.
    fn wanted(&self, track: &TrackInfo) -> bool {
        (self.shared.audio_tx.is_some() && track.is_microphone())
            || (self.shared.video_tx.is_some() && track.is_video_input())
    }

    fn on_track_published(&self, participant: &str, track: &TrackInfo) {
        if !track.subscribed
            && self.wanted(track)
            && self.shared.selector.lock().is_linked(participant)
        {
            self.subscribe_to(participant, track);
        }
    }

    /// Asks the room to subscribe (a room that subscribes automatically already has).
    fn subscribe_to(&self, participant: &str, track: &TrackInfo) {
        let room = self.shared.room.clone();
        let (participant, sid) = (participant.to_owned(), track.sid.clone());
        tokio::spawn(async move {
            if let Err(e) = room.set_subscribed(&participant, &sid, true).await {
                tracing::warn!(participant, track = sid, error = %e, "could not subscribe");
            }
        });
    }

    fn on_track_subscribed(&self, participant: &str, track: &TrackInfo) {
        if !self.shared.selector.lock().is_linked(participant) {
            return;
        }
        if track.is_microphone() {
            self.link_audio(participant, track);
        } else if track.is_video_input() {
            // The most recently subscribed camera or screen share wins.
            self.link_video(participant, track);
        }
    }

    /// A track was unsubscribed or unpublished: if it was forwarded, take another one of the
    /// same participant (the reference's `_on_track_unsubscribed`).
    fn on_track_gone(&self, participant: &str, track: &TrackInfo) {
        let audio = self
            .shared
            .audio
            .lock()
            .as_ref()
            .is_some_and(|f| f.is(participant, &track.sid));
        let video = self
            .shared
            .video
            .lock()
            .as_ref()
            .is_some_and(|f| f.is(participant, &track.sid));
        if !audio && !video {
            return;
        }
        if audio {
            self.unlink_audio();
        }
        if video {
            self.unlink_video(Some(&track.sid));
        }
        let current = self
            .shared
            .room
            .remote_participants()
            .into_iter()
            .find(|p| p.identity == participant);
        let Some(p) = current else { return };
        let others = p
            .tracks
            .iter()
            .filter(|t| t.sid != track.sid && t.subscribed);
        for t in others {
            if audio && t.is_microphone() {
                self.link_audio(participant, t);
                break;
            }
            if video && t.is_video_input() {
                self.link_video(participant, t);
                break;
            }
        }
    }

    fn link_existing_tracks(&self, p: &ParticipantInfo) {
        if self.shared.video_tx.is_some() {
            let latest = p
                .tracks
                .iter()
                .rev()
                .find(|t| t.is_video_input() && t.subscribed);
            if let Some(t) = latest {
                self.link_video(&p.identity, t);
            }
        }
        if self.shared.audio_tx.is_some() {
            if let Some(t) = p.tracks.iter().find(|t| t.is_microphone() && t.subscribed) {
                self.link_audio(&p.identity, t);
            }
        }
        for t in p.tracks.iter().filter(|t| !t.subscribed && self.wanted(t)) {
            self.subscribe_to(&p.identity, t);
        }
    }

    /// Forwards `track`'s frames as the session's video input (replacing the previous video
    /// track). A frame is taken from the room only once the session can take it, so frames
    /// arriving meanwhile are the room's to drop (it keeps at most one or two).
    fn link_video(&self, participant: &str, track: &TrackInfo) {
        let Some(tx) = self.shared.video_tx.clone() else {
            return;
        };
        if self
            .shared
            .video
            .lock()
            .as_ref()
            .is_some_and(|f| f.is(participant, &track.sid))
        {
            return;
        }
        self.unlink_video(None);
        let mut frames = match self.shared.room.video_frames(participant, &track.sid) {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the video track");
                return;
            }
        };
        tracing::debug!(track = track.sid, "linked video track");
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = tx.reserve().await else {
                    return;
                };
                let Some(frame) = frames.next().await else {
                    return;
                };
                permit.send(frame);
            }
        });
        *self.shared.video.lock() = Some(Forwarded {
            participant: participant.to_owned(),
            sid: track.sid.clone(),
            task,
        });
    }

    /// Stops the video forwarder (only if it forwards `sid`, when given).
    fn unlink_video(&self, sid: Option<&str>) {
        let mut current = self.shared.video.lock();
        if sid.is_none() || current.as_ref().map(|f| f.sid.as_str()) == sid {
            if let Some(f) = current.take() {
                f.task.abort();
            }
        }
    }

    fn unlink_audio(&self) {
        if let Some(f) = self.shared.audio.lock().take() {
            f.task.abort();
        }
    }

    /// Forwards `track` into the session input; if it announces a pre-connect buffer (and that
    /// was not waited for already), that recording goes first (see
    /// [`forward_track_audio`](super::forward_track_audio)).
    fn link_audio(&self, participant: &str, track: &TrackInfo) {
        let Some(tx) = self.shared.audio_tx.clone() else {
            return;
        };
        if self
            .shared
            .audio
            .lock()
            .as_ref()
            .is_some_and(|f| f.is(participant, &track.sid))
        {
            return;
        }
        self.unlink_audio();
        let opts = &self.shared.options;
        let (rate, channels) = (opts.input_sample_rate, opts.input_num_channels);
        let live = match self
            .shared
            .room
            .audio_frames(participant, &track.sid, rate, channels)
        {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the microphone track");
                return;
            }
        };
        let (kind, attributes) = self
            .shared
            .room
            .remote_participants()
            .into_iter()
            .find(|p| p.identity == participant)
            .map(|p| (p.kind, p.attributes))
            .unzip();
        self.shared.participant.send_replace(FilterParams {
            participant_identity: Some(participant.to_owned()),
            participant_kind: kind,
            participant_attributes: attributes.unwrap_or_default(),
        });
        let first_time = self
            .shared
            .pre_connect_done
            .lock()
            .insert((participant.to_owned(), track.sid.clone()));
        let pre_connect =
            (opts.pre_connect_audio && track.pre_connect_buffer && first_time).then(|| {
                (
                    self.shared.pre_connect.clone(),
                    track.sid.clone(),
                    opts.pre_connect_audio_timeout,
                )
            });
        tracing::debug!(participant, track = track.sid, "linked microphone track");
        let task = tokio::spawn(super::forward_track_audio(
            live,
            pre_connect,
            tx,
            rate,
            channels,
            super::INPUT_FRAME_MS,
        ));
        *self.shared.audio.lock() = Some(Forwarded {
            participant: participant.to_owned(),
            sid: track.sid.clone(),
            task,
        });
    }

    fn on_text_stream(&self, stream: IncomingStream<String>) {
        if !self.shared.options.text_input {
            return;
        }
        let sender = stream.sender_identity().to_owned();
        let expected = self.shared.selector.lock().expected().map(str::to_owned);
        if super::route_text_stream(stream.topic(), &sender, expected.as_deref())
            != StreamRoute::ChatInput
        {
            return;
        }
        let present = self
            .shared
            .room
            .remote_participants()
            .iter()
            .any(|p| p.identity == sender);
        if !present {
            tracing::warn!(
                participant = sender,
                "participant not found, ignoring text input"
            );
            return;
        }
        let events = self.shared.events.clone();
        tokio::spawn(async move {
            match stream.read_text(CHAT_TEXT_MAX_BYTES).await {
                Some(Ok(text)) => {
                    let _ = events.send(RoomInputEvent::UserText {
                        text,
                        participant_identity: sender,
                    });
                }
                Some(Err(e)) => tracing::warn!(error = %e, "could not read chat text"),
                None => {}
            }
        });
    }

    fn on_byte_stream(&self, stream: IncomingStream<Vec<u8>>) {
        let opts = &self.shared.options;
        if super::route_byte_stream(stream.topic()) != StreamRoute::PreConnectAudio
            || !opts.pre_connect_audio
            || !opts.audio_input
        {
            return;
        }
        tokio::spawn(self.clone().read_pre_connect(stream));
    }

    /// Reads a pre-connect recording into the store. As the reference, a recording not
    /// received completely within `pre_connect_audio_timeout` of its stream opening is
    /// dropped, and its age counts from the opening.
    async fn read_pre_connect(self, stream: IncomingStream<Vec<u8>>) {
        let opened_at = Instant::now();
        let Some((info, mut chunks)) = stream.take() else {
            return;
        };
        let header = match PreConnectHeader::parse(&info.attributes, &info.mime_type) {
            Ok(h) if h.track_id.is_empty() => {
                tracing::warn!(
                    participant = info.sender_identity,
                    "pre-connect audio received but no trackId"
                );
                return;
            }
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring pre-connect audio");
                return;
            }
        };
        let track_id = header.track_id.clone();
        let mut buffer = PreConnectBuffer::new(header);
        let timeout = self.shared.options.pre_connect_audio_timeout;
        let read = tokio::time::timeout(timeout, async {
            while let Some(chunk) = chunks.next().await {
                buffer.push(&chunk?);
            }
            Ok::<_, RoomError>(())
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(track_id, error = %e, "pre-connect audio stream failed");
                // Stop the track's wait; its live audio goes on.
                self.shared.pre_connect.insert(&track_id, Vec::new());
                return;
            }
            Err(_) => {
                tracing::warn!(
                    track_id,
                    participant = info.sender_identity,
                    "pre-connect audio received but not completed in time"
                );
                self.shared.pre_connect.insert(&track_id, Vec::new());
                return;
            }
        }
        let bytes = buffer.received_bytes();
        let decoded = if buffer.header().encoding == PreConnectEncoding::Pcm16 {
            buffer.into_frames()
        } else {
            // Decoding Opus is CPU work: keep it off the async workers.
            match tokio::task::spawn_blocking(move || buffer.into_frames()).await {
                Ok(result) => result,
                Err(e) => {
                    tracing::warn!(track_id, error = %e, "pre-connect audio decoding failed");
                    Ok(Vec::new())
                }
            }
        };
        let frames = decoded.unwrap_or_else(|e| {
            tracing::warn!(track_id, error = %e, "ignoring pre-connect audio");
            Vec::new()
        });
        let duration: Duration = frames.iter().map(AudioFrame::duration).sum();
        tracing::debug!(track_id, bytes, ?duration, "pre-connect audio received");
        self.shared
            .pre_connect
            .insert_at(&track_id, frames, opened_at);
    }

    /// Room → session (the session side of [`start_for_session`](Self::start_for_session)).
    async fn room_to_session(self, mut events: RoomInputEvents, session: AgentSession) {
        loop {
            let ev = tokio::select! {
                _ = self.shared.close.cancelled() => return,
                ev = events.recv() => match ev { Some(ev) => ev, None => return },
            };
            match ev {
                RoomInputEvent::UserText { text, .. } => {
                    session.interrupt();
                    let reply = ReplyOptions {
                        user_input: Some(text),
                        ..Default::default()
                    };
                    if let Err(e) = session.generate_reply(reply) {
                        tracing::warn!(error = %e, "cannot answer chat text");
                    }
                }
                RoomInputEvent::SipDtmf {
                    code,
                    digit,
                    participant_identity,
                } => session.push_sip_dtmf(code, digit, participant_identity),
                RoomInputEvent::LinkedParticipantChanged(p) => {
                    tracing::debug!(participant = ?p, "linked participant changed");
                }
                RoomInputEvent::LinkedParticipantAttributesChanged { .. } => {}
                RoomInputEvent::CloseRequested { reason } => {
                    tracing::info!(reason, "closing the session");
                    session
                        .close_with(CloseReason::ParticipantDisconnected, None)
                        .await;
                    return;
                }
                RoomInputEvent::RoomDisconnected { reason } => {
                    tracing::info!(reason, "room disconnected; closing the session");
                    session.close().await;
                    return;
                }
            }
        }
    }

    /// Session → room (the room side of [`start_for_session`](Self::start_for_session)).
    async fn session_to_room(self, mut events: broadcast::Receiver<SessionEvent>) {
        use broadcast::error::RecvError;
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "room I/O fell behind the session's events");
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            match ev {
                SessionEvent::AgentStateChanged { new_state, .. } => {
                    if let Err(e) = self.set_agent_state(new_state.as_str()).await {
                        tracing::warn!(error = %e, "cannot publish the agent state");
                    }
                }
                SessionEvent::UserInputTranscribed {
                    transcript,
                    is_final,
                    ..
                } => {
                    if let Err(e) = self.publish_user_transcript(&transcript, is_final).await {
                        tracing::debug!(error = %e, "cannot publish a user transcript");
                    }
                }
                SessionEvent::Close { .. } => break,
                _ => {}
            }
        }
        self.close();
        if self.shared.options.delete_room_on_close {
            let room = self.shared.room.name();
            tracing::info!(
                room,
                "deleting the room on session close (disable with \
                 RoomOptions::delete_room_on_close = false)"
            );
            match tokio::time::timeout(DELETE_ROOM_TIMEOUT, self.shared.room.delete_room()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(room, error = %e, "cannot delete the room"),
                Err(_) => tracing::warn!(room, "deleting the room timed out"),
            }
        }
        self.shared.finished.cancel();
    }
}

/// The agent's published audio: paced playout plus the room track's own queue, which is
/// cleared too.
struct RoomAudioOutput {
    paced: PacedAudioOutput,
    track: Arc<dyn LocalAudioTrack>,
}

#[async_trait]
impl AudioOutput for RoomAudioOutput {
    fn label(&self) -> String {
        "room".to_owned()
    }
    fn sample_rate(&self) -> Option<u32> {
        self.paced.sample_rate()
    }
    fn can_pause(&self) -> bool {
        true
    }
    async fn capture_frame(&self, frame: AudioFrame) {
        self.paced.capture_frame(frame).await
    }
    fn flush(&self) {
        self.paced.flush()
    }
    fn clear_buffer(&self) {
        self.paced.clear_buffer();
        self.track.clear_queue();
    }
    fn pause(&self) {
        self.paced.pause();
        // What the room already queued (up to 200 ms) still plays.
    }
    fn resume(&self) {
        self.paced.resume()
    }
    fn subscribe(&self) -> broadcast::Receiver<PlaybackEvent> {
        self.paced.subscribe()
    }
}

/// Agent transcriptions as `lk.transcription` text streams; operations run in order on a task.
struct RoomTextOutput {
    segmenter: Mutex<TranscriptionSegmenter>,
    steps: mpsc::UnboundedSender<TranscriptionStep>,
    synchronized: bool,
}

impl RoomTextOutput {
    /// The transcribed agent track got a new id (republished after a reconnect).
    fn republished(&self, previous: &str, track_id: &str) {
        let mut segmenter = self.segmenter.lock();
        if segmenter.track_id() == Some(previous) {
            segmenter.set_track_id(Some(track_id.to_owned()));
        }
    }

    fn new(room: Arc<dyn RoomBackend>, track_id: Option<String>, synchronized: bool) -> Self {
        // Unbounded: the transcription steps of one reply's text (bounded by the reply).
        let (tx, mut rx) = mpsc::unbounded_channel::<TranscriptionStep>();
        tokio::spawn(async move {
            let mut writer: Option<Box<dyn TextStreamWriter>> = None;
            while let Some(step) = rx.recv().await {
                match step {
                    TranscriptionStep::Open { attributes } => {
                        let options = TextStreamOptions::new(TOPIC_TRANSCRIPTION, attributes);
                        match room.stream_text(options).await {
                            Ok(w) => writer = Some(w),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not open a transcription stream")
                            }
                        }
                    }
                    TranscriptionStep::Write(text) => {
                        if let Some(w) = writer.as_mut() {
                            if let Err(e) = w.write(&text).await {
                                tracing::warn!(error = %e, "could not write a transcription");
                            }
                        }
                    }
                    TranscriptionStep::Close { attributes } => {
                        if let Some(w) = writer.take() {
                            if let Err(e) = w.close(attributes).await {
                                tracing::debug!(error = %e, "could not close a transcription stream");
                            }
                        }
                    }
                }
            }
        });
        Self {
            segmenter: Mutex::new(TranscriptionSegmenter::new(track_id)),
            steps: tx,
            synchronized,
        }
    }
}

#[async_trait]
impl TextOutput for RoomTextOutput {
    fn label(&self) -> String {
        "room".to_owned()
    }
    async fn capture_text(&self, text: &str) {
        let steps = self.segmenter.lock().capture(text);
        for s in steps {
            let _ = self.steps.send(s);
        }
    }
    fn flush(&self) {
        let steps = self.segmenter.lock().flush();
        for s in steps {
            let _ = self.steps.send(s);
        }
    }
    fn synchronized(&self) -> bool {
        self.synchronized
    }
}
