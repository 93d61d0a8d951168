//! `RoomIO`: a LiveKit room (the `livekit` crate, WebRTC) as the session's ports.
//!
//! - Audio in: the linked participant's microphone track at 24 kHz mono in 50 ms frames, with
//!   the pre-connect audio buffer (`lk.agent.pre-connect-audio-buffer`) replayed first. The
//!   buffer is decoded from 16-bit PCM (native SDKs) or, with the default `pre-connect-opus`
//!   feature, from the Opus WebM/Ogg recordings browsers send; Safari's `video/mp4` is not
//!   decoded (logged and skipped). See [`crate::room_logic::PreConnectEncoding`].
//! - Audio out: a published track (`roomio_audio`) fed at real-time pace, with pause, resume,
//!   clear and playback events ([`crate::io::PacedAudioOutput`] over a WebRTC audio source).
//!   Nothing is played before someone subscribed to the track (the `LocalTrackSubscribed`
//!   event), so the start of the first reply is not lost; see
//!   [`crate::room_logic::AudioSubscriptionGate`] and
//!   [`RoomOptions::audio_subscription_timeout`].
//! - Text in: `lk.chat` text streams from the linked participant, as [`RoomInputEvent::UserText`].
//! - Text out: agent transcriptions as `lk.transcription` text streams (one per segment, delta
//!   mode, with `lk.segment_id`, `lk.transcribed_track_id`, `lk.transcription_final`); the voice
//!   pipeline paces the text to playout. User transcripts via [`RoomIo::publish_user_transcript`].
//! - Agent state in the `lk.agent.state` attribute via [`RoomIo::set_agent_state`].
//!
//! The decisions (who is linked, when to close, segment ids, topic routing, pre-connect
//! parsing) live in [`crate::room_logic`], which is compiled and tested without WebRTC; this
//! module only carries them out on the room.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use livekit::data_stream::api::{
    ByteStreamReader, SendTextOptions, StreamReader, StreamTextOptions, StreamWriter,
    TextStreamWriter,
};
use livekit::options::TrackPublishOptions;
use livekit::prelude::*;
use livekit::webrtc::audio_frame::AudioFrame as RtcAudioFrame;
use livekit::webrtc::audio_source::native::NativeAudioSource;
use livekit::webrtc::audio_source::{AudioSourceOptions, RtcAudioSource};
use livekit::webrtc::audio_stream::native::NativeAudioStream;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::audio::AudioFrame;
use crate::io::{AudioInput, AudioOutput, PacedAudioOutput, PlaybackEvent, TextOutput};
use crate::room_logic::{
    self, AgentStateAttribute, AudioSubscriptionGate, AudioSubscriptionState, DepartureAction,
    LeaveReason, LinkSelector, ParticipantKind, PreConnectBuffer, PreConnectHeader,
    PreConnectStore, StreamRoute, SubscriptionGatedOutput, TranscriptionSegmenter,
    TranscriptionStep, UserTranscriptSegments,
};

pub use crate::room_logic::RoomOptions;

mod video;

/// Errors of room I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomIoError {
    /// Publishing the agent's audio track failed.
    #[error("could not publish the agent audio track: {0}")]
    Publish(String),
    /// Setting participant attributes failed.
    #[error("could not set participant attributes: {0}")]
    Attributes(String),
    /// Sending a text stream failed.
    #[error("could not send a text stream: {0}")]
    Stream(String),
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
    /// A SIP participant pressed a key (the room's `sip_dtmf_received`).
    SipDtmf {
        /// RFC 4733 event code.
        code: u32,
        /// The key as text (may be empty).
        digit: String,
        /// Who pressed it, if known.
        participant_identity: Option<String>,
    },
    /// The session should close (linked participant left for good, or the room disconnected).
    CloseRequested {
        /// Why.
        reason: String,
    },
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
    pub video_input: Option<mpsc::Receiver<crate::room_logic::video::VideoFrame>>,
    /// Room events for the session.
    pub events: mpsc::UnboundedReceiver<RoomInputEvent>,
}

impl std::fmt::Debug for RoomPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomPorts")
            .field("audio_input", &self.audio_input.is_some())
            .field("audio_output", &self.audio_output.is_some())
            .field("text_output", &self.text_output.is_some())
            .finish()
    }
}

struct Shared {
    room: Arc<Room>,
    options: RoomOptions,
    selector: Mutex<LinkSelector>,
    /// Sender of the session's audio input; frames from the linked track go here.
    audio_tx: Option<mpsc::UnboundedSender<AudioFrame>>,
    /// The linked participant, as the session input's filter factory sees it.
    participant: tokio::sync::watch::Sender<crate::audio::filter::FilterParams>,
    /// Forwarder of the linked participant's track.
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Pre-connect audio by track id, with its arrival time.
    pre_connect: PreConnectStore,
    events: mpsc::UnboundedSender<RoomInputEvent>,
    state_attr: tokio::sync::Mutex<AgentStateAttribute>,
    user_segments: Mutex<UserTranscriptSegments>,
    linked_track: Mutex<Option<String>>,
    /// Holds the agent's audio until its track has a subscriber.
    audio_gate: AudioSubscriptionGate,
    /// The transcription output, told the new track id when the agent track is republished.
    text_output: Mutex<Option<Arc<RoomTextOutput>>>,
    /// Sender of the session's video input (if `video_input`).
    video_tx: Option<mpsc::Sender<crate::room_logic::video::VideoFrame>>,
    /// The linked video track's sid and its forwarder.
    video: Mutex<Option<(String, tokio::task::JoinHandle<()>)>>,
    close: CancellationToken,
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

fn leave_reason(p: &RemoteParticipant) -> LeaveReason {
    use livekit::participant::DisconnectReason as R;
    match p.disconnect_reason() {
        R::ClientInitiated => LeaveReason::ClientInitiated,
        R::RoomDeleted => LeaveReason::RoomDeleted,
        R::UserRejected => LeaveReason::UserRejected,
        _ => LeaveReason::Other,
    }
}

fn to_rtc(frame: &AudioFrame) -> RtcAudioFrame<'static> {
    RtcAudioFrame {
        data: Cow::Owned(frame.data.clone()),
        sample_rate: frame.sample_rate,
        num_channels: frame.num_channels as u32,
        samples_per_channel: frame.samples_per_channel as u32,
    }
}

/// Agent audio queued ahead of playback in the room output (the reference's 200 ms).
const ROOM_OUTPUT_QUEUE: std::time::Duration = std::time::Duration::from_millis(200);

/// Frames between the paced room output and WebRTC's capture (about 1 s of 10-20 ms frames).
const ROOM_OUTPUT_PUMP_FRAMES: usize = 64;

impl RoomIo {
    /// Starts room I/O on a connected room: publishes the agent track, links a participant,
    /// and routes room events. Returns the ports for the session.
    pub async fn start(
        room: Arc<Room>,
        options: RoomOptions,
    ) -> Result<(RoomIo, RoomPorts), RoomIoError> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        // Who the input's audio comes from, for per-participant filters (`audio::filter`).
        let (participant_tx, participant_rx) = tokio::sync::watch::channel(Default::default());
        let (audio_tx, audio_input) = if options.audio_input {
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
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            selector: Mutex::new(LinkSelector::new(
                options.participant_identity.clone(),
                options.participant_kinds.clone(),
            )),
            room: room.clone(),
            options: options.clone(),
            audio_tx,
            participant: participant_tx,
            forwarder: Mutex::new(None),
            pre_connect: PreConnectStore::new(),
            events: events_tx,
            state_attr: tokio::sync::Mutex::new(AgentStateAttribute::default()),
            user_segments: Mutex::new(UserTranscriptSegments::default()),
            linked_track: Mutex::new(None),
            audio_gate: if options.audio_output {
                AudioSubscriptionGate::new(options.audio_subscription_timeout)
            } else {
                AudioSubscriptionGate::open()
            },
            text_output: Mutex::new(None),
            video_tx,
            video: Mutex::new(None),
            close: CancellationToken::new(),
        });
        let io = RoomIo { shared };

        // Subscribe before publishing and before looking at who is present, so neither the
        // first subscription to the agent track nor a join is missed in between.
        let room_events = room.subscribe();

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

        let present: Vec<RemoteParticipant> = room.remote_participants().into_values().collect();
        for p in present {
            io.on_participant(&p);
        }
        tokio::spawn(io.clone().event_loop(room_events));

        let ports = RoomPorts {
            audio_input,
            audio_output: audio_output.map(|(o, _)| o),
            text_output,
            video_input,
            events: events_rx,
        };
        Ok((io, ports))
    }

    /// The linked participant's identity.
    pub fn linked_participant(&self) -> Option<String> {
        self.shared.selector.lock().linked().map(str::to_owned)
    }

    /// Links `identity` (or, with `None`, the next suitable participant).
    pub fn set_participant(&self, identity: Option<String>) {
        self.unlink_audio();
        self.unlink_video(None);
        self.shared
            .selector
            .lock()
            .set_participant(identity.clone());
        let _ = self
            .shared
            .events
            .send(RoomInputEvent::LinkedParticipantChanged(identity.clone()));
        if let Some(id) = identity {
            let participant = self
                .shared
                .room
                .remote_participants()
                .into_values()
                .find(|p| p.identity().as_str() == id);
            if let Some(p) = participant {
                self.link_existing_tracks(&p);
            }
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
            self.shared
                .room
                .local_participant()
                .set_attributes(attrs)
                .await
                .map_err(|e| RoomIoError::Attributes(e.to_string()))?;
        }
        Ok(())
    }

    /// Publishes a user transcript (interim or final) on `lk.transcription`, attributed to the
    /// linked participant and its track.
    pub async fn publish_user_transcript(
        &self,
        text: &str,
        is_final: bool,
    ) -> Result<(), RoomIoError> {
        let Some(identity) = self.linked_participant() else {
            return Ok(());
        };
        let track = self.shared.linked_track.lock().clone();
        let attrs = self
            .shared
            .user_segments
            .lock()
            .update(track.as_deref(), is_final);
        let options = SendTextOptions::new_with_topic(room_logic::TOPIC_TRANSCRIPTION)
            .with_attributes(attrs)
            .with_sender_identity(identity);
        self.shared
            .room
            .local_participant()
            .send_text(text, options)
            .await
            .map(|_| ())
            .map_err(|e| RoomIoError::Stream(e.to_string()))
    }

    /// Deletes nothing and closes nothing in the room; stops forwarding and event handling.
    pub fn close(&self) {
        self.shared.close.cancel();
        self.unlink_audio();
        self.unlink_video(None);
    }

    async fn publish_audio_output(&self) -> Result<(Arc<dyn AudioOutput>, String), RoomIoError> {
        let opts = &self.shared.options;
        let source = NativeAudioSource::new(
            AudioSourceOptions::default(),
            opts.output_sample_rate,
            opts.output_num_channels as u32,
            200,
        );
        let track = LocalAudioTrack::create_audio_track(
            "roomio_audio",
            RtcAudioSource::Native(source.clone()),
        );
        let publication = self
            .shared
            .room
            .local_participant()
            .publish_track(
                LocalTrack::Audio(track),
                TrackPublishOptions {
                    source: TrackSource::Microphone,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| RoomIoError::Publish(e.to_string()))?;
        let sid = publication.sid().to_string();
        self.shared.audio_gate.published(&sid);

        // The paced output decides when each frame plays; a pump hands frames to WebRTC.
        // Bounded: the paced output hands over one frame as it starts playing, so this holds
        // more than a frame or two only while WebRTC's capture stalls; past 1 s the frames
        // are dropped (they would play late anyway).
        let (tx, mut rx) = mpsc::channel::<AudioFrame>(ROOM_OUTPUT_PUMP_FRAMES);
        let pump_source = source.clone();
        let close = self.shared.close.clone();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = close.cancelled() => break,
                    f = rx.recv() => match f { Some(f) => f, None => break },
                };
                if let Err(e) = pump_source.capture_frame(&to_rtc(&frame)).await {
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
            RoomAudioOutput { paced, source },
            self.shared.audio_gate.clone(),
        );
        Ok((Arc::new(output), sid))
    }

    async fn event_loop(self, mut events: mpsc::UnboundedReceiver<RoomEvent>) {
        loop {
            let ev = tokio::select! {
                _ = self.shared.close.cancelled() => return,
                ev = events.recv() => match ev { Some(ev) => ev, None => return },
            };
            match ev {
                RoomEvent::ParticipantConnected(p) => self.on_participant(&p),
                RoomEvent::SipDTMFReceived {
                    code,
                    digit,
                    participant,
                } => {
                    let _ = self.shared.events.send(RoomInputEvent::SipDtmf {
                        code,
                        digit: digit.unwrap_or_default(),
                        participant_identity: participant.map(|p| p.identity().to_string()),
                    });
                }
                RoomEvent::LocalTrackSubscribed { track } => {
                    self.shared
                        .audio_gate
                        .local_track_subscribed(track.sid().as_str());
                }
                RoomEvent::LocalTrackRepublished {
                    previous_sid,
                    publication,
                    ..
                } => {
                    let (previous, sid) = (previous_sid.to_string(), publication.sid().to_string());
                    if self.shared.audio_gate.state() != AudioSubscriptionState::Unpublished {
                        self.shared.audio_gate.republished(&previous, &sid);
                    }
                    if let Some(text) = self.shared.text_output.lock().as_ref() {
                        text.republished(&previous, &sid);
                    }
                }
                RoomEvent::ParticipantDisconnected(p) => {
                    let action = self.shared.selector.lock().on_departure(
                        p.identity().as_str(),
                        leave_reason(&p),
                        self.shared.options.close_on_disconnect,
                    );
                    match action {
                        DepartureAction::Ignore => {}
                        DepartureAction::Unlink => {
                            self.unlink_audio();
                            self.unlink_video(None);
                            let _ = self
                                .shared
                                .events
                                .send(RoomInputEvent::LinkedParticipantChanged(None));
                        }
                        DepartureAction::CloseSession => {
                            self.unlink_audio();
                            self.unlink_video(None);
                            let _ = self.shared.events.send(RoomInputEvent::CloseRequested {
                                reason: format!("participant {} disconnected", p.identity()),
                            });
                        }
                    }
                }
                RoomEvent::TrackSubscribed {
                    track: RemoteTrack::Audio(track),
                    publication,
                    participant,
                } => {
                    let linked = self
                        .shared
                        .selector
                        .lock()
                        .is_linked(participant.identity().as_str());
                    if linked && publication.source() == TrackSource::Microphone {
                        self.link_audio(track, &publication);
                    }
                }
                RoomEvent::TrackSubscribed {
                    track: RemoteTrack::Video(track),
                    publication,
                    participant,
                } => {
                    let linked = self
                        .shared
                        .selector
                        .lock()
                        .is_linked(participant.identity().as_str());
                    // The most recently published camera or screen share wins.
                    if linked && video::is_video_source(publication.source()) {
                        self.link_video(track);
                    }
                }
                RoomEvent::TrackUnsubscribed {
                    track: RemoteTrack::Video(track),
                    ..
                } => self.unlink_video(Some(track.sid().as_str())),
                RoomEvent::TrackUnsubscribed {
                    track: RemoteTrack::Audio(track),
                    ..
                } => {
                    let current = self.shared.linked_track.lock().clone();
                    if current.as_deref() == Some(track.sid().as_str()) {
                        self.unlink_audio();
                    }
                }
                RoomEvent::TextStreamOpened {
                    reader,
                    topic,
                    participant_identity,
                } => {
                    let linked = self.linked_participant();
                    let route = room_logic::route_text_stream(
                        &topic,
                        participant_identity.as_str(),
                        linked.as_deref(),
                    );
                    if route == StreamRoute::ChatInput && self.shared.options.text_input {
                        if let Some(reader) = reader.take() {
                            let events = self.shared.events.clone();
                            let identity = participant_identity.to_string();
                            tokio::spawn(async move {
                                match reader.read_all().await {
                                    Ok(text) => {
                                        let _ = events.send(RoomInputEvent::UserText {
                                            text,
                                            participant_identity: identity,
                                        });
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, "could not read chat text")
                                    }
                                }
                            });
                        }
                    }
                }
                RoomEvent::ByteStreamOpened { reader, topic, .. }
                    if room_logic::route_byte_stream(&topic) == StreamRoute::PreConnectAudio
                        && self.shared.options.pre_connect_audio =>
                {
                    if let Some(reader) = reader.take() {
                        tokio::spawn(self.clone().read_pre_connect(reader));
                    }
                }
                RoomEvent::Disconnected { reason } => {
                    let _ = self.shared.events.send(RoomInputEvent::CloseRequested {
                        reason: format!("room disconnected: {reason:?}"),
                    });
                    return;
                }
                _ => {}
            }
        }
    }

    fn on_participant(&self, p: &RemoteParticipant) {
        let linked = self
            .shared
            .selector
            .lock()
            .on_participant(p.identity().as_str(), kind_of(p.kind()));
        if let Some(identity) = linked {
            tracing::info!(participant = identity, "linked participant");
            let _ = self
                .shared
                .events
                .send(RoomInputEvent::LinkedParticipantChanged(Some(identity)));
            self.link_existing_tracks(p);
        }
    }

    fn link_existing_tracks(&self, p: &RemoteParticipant) {
        for publication in p.track_publications().into_values() {
            if video::is_video_source(publication.source()) {
                if let Some(RemoteTrack::Video(track)) = publication.track() {
                    self.link_video(track);
                }
            }
        }
        for publication in p.track_publications().into_values() {
            if publication.source() != TrackSource::Microphone {
                continue;
            }
            if let Some(RemoteTrack::Audio(track)) = publication.track() {
                self.link_audio(track, &publication);
                return;
            }
        }
    }

    /// Forwards `track` as the session's video input (replacing the previous video track).
    fn link_video(&self, track: RemoteVideoTrack) {
        let Some(tx) = self.shared.video_tx.clone() else {
            return;
        };
        self.unlink_video(None);
        let sid = track.sid().to_string();
        tracing::debug!(track = %sid, "linked video track");
        *self.shared.video.lock() = Some((sid, video::forward(track, tx)));
    }

    /// Stops the video forwarder (only if it forwards `sid`, when given).
    fn unlink_video(&self, sid: Option<&str>) {
        let mut current = self.shared.video.lock();
        if sid.is_none() || current.as_ref().map(|(s, _)| s.as_str()) == sid {
            if let Some((_, handle)) = current.take() {
                handle.abort();
            }
        }
    }

    fn unlink_audio(&self) {
        if let Some(handle) = self.shared.forwarder.lock().take() {
            handle.abort();
        }
        *self.shared.linked_track.lock() = None;
    }

    /// Forwards `track` into the session input; if its publication announces a pre-connect
    /// buffer, that recording goes first (see [`room_logic::forward_track_audio`]).
    fn link_audio(&self, track: RemoteAudioTrack, publication: &RemoteTrackPublication) {
        let Some(tx) = self.shared.audio_tx.clone() else {
            return;
        };
        self.unlink_audio();
        let track_id = track.sid().to_string();
        *self.shared.linked_track.lock() = Some(track_id.clone());
        let identity = self.linked_participant();
        let participant = identity.as_ref().and_then(|id| {
            self.shared
                .room
                .remote_participants()
                .get(&ParticipantIdentity::from(id.clone()))
                .map(|p| (kind_of(p.kind()), p.attributes()))
        });
        let (kind, attributes) = participant.unzip();
        self.shared
            .participant
            .send_replace(crate::audio::filter::FilterParams {
                participant_identity: identity,
                participant_kind: kind,
                participant_attributes: attributes.unwrap_or_default(),
            });
        let opts = &self.shared.options;
        let (rate, channels) = (opts.input_sample_rate, opts.input_num_channels);
        let expects_pre_connect = opts.pre_connect_audio
            && publication
                .audio_features()
                .contains(&AudioTrackFeature::TfPreconnectBuffer);
        let pre_connect = expects_pre_connect.then(|| {
            (
                self.shared.pre_connect.clone(),
                track_id,
                opts.pre_connect_audio_timeout,
            )
        });
        // WebRTC delivers 10 ms frames at the requested format; the forwarder makes 50 ms ones.
        let live = NativeAudioStream::new(track.rtc_track(), rate as i32, channels as i32)
            .filter_map(move |f| {
                futures::future::ready(AudioFrame::new(f.data.into_owned(), rate, channels).ok())
            });
        let handle = tokio::spawn(room_logic::forward_track_audio(
            live,
            pre_connect,
            tx,
            rate,
            channels,
            room_logic::INPUT_FRAME_MS,
        ));
        *self.shared.forwarder.lock() = Some(handle);
    }

    async fn read_pre_connect(self, mut reader: ByteStreamReader) {
        let info = reader.info().clone();
        let header = match PreConnectHeader::parse(&info.attributes(), &info.mime_type) {
            Ok(h) if h.track_id.is_empty() => {
                tracing::warn!("ignoring pre-connect audio without a trackId");
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
        while let Some(chunk) = reader.next().await {
            match chunk {
                Ok(bytes) => buffer.push(&bytes),
                Err(e) => {
                    tracing::warn!(track_id, error = %e, "pre-connect audio stream failed");
                    // Stop the track's wait; its live audio goes on.
                    self.shared.pre_connect.insert(&track_id, Vec::new());
                    return;
                }
            }
        }
        let bytes = buffer.received_bytes();
        // Decoding Opus is CPU work: keep it off the async workers.
        let frames = match tokio::task::spawn_blocking(move || buffer.into_frames()).await {
            Ok(Ok(frames)) => frames,
            Ok(Err(e)) => {
                tracing::warn!(track_id, error = %e, "ignoring pre-connect audio");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(track_id, error = %e, "pre-connect audio decoding failed");
                Vec::new()
            }
        };
        let duration: std::time::Duration = frames.iter().map(AudioFrame::duration).sum();
        tracing::debug!(track_id, bytes, ?duration, "pre-connect audio received");
        self.shared.pre_connect.insert(&track_id, frames);
    }
}

/// The agent's published audio: paced playout plus WebRTC's own queue, which is cleared too.
struct RoomAudioOutput {
    paced: PacedAudioOutput,
    source: NativeAudioSource,
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
        self.source.clear_buffer();
    }
    fn pause(&self) {
        self.paced.pause();
        // What WebRTC already queued (up to 200 ms) still plays.
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

    fn new(room: Arc<Room>, track_id: Option<String>, synchronized: bool) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<TranscriptionStep>();
        tokio::spawn(async move {
            let mut writer: Option<TextStreamWriter> = None;
            while let Some(step) = rx.recv().await {
                match step {
                    TranscriptionStep::Open { attributes } => {
                        let options =
                            StreamTextOptions::new_with_topic(room_logic::TOPIC_TRANSCRIPTION)
                                .with_attributes(attributes);
                        match room.local_participant().stream_text(options).await {
                            Ok(w) => writer = Some(w),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not open a transcription stream")
                            }
                        }
                    }
                    TranscriptionStep::Write(text) => {
                        if let Some(w) = &writer {
                            if let Err(e) = w.write(&text).await {
                                tracing::warn!(error = %e, "could not write a transcription");
                            }
                        }
                    }
                    TranscriptionStep::Close { attributes } => {
                        if let Some(w) = writer.take() {
                            if let Err(e) = w.close_with_options(None, Some(attributes)).await {
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
