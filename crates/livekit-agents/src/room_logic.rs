//! The decisions of room I/O that need no WebRTC, compiled in every build and unit-tested:
//! which participant the agent listens to, when a departure closes the session, transcription
//! segment ids and stream attributes, the `lk.agent.state` attribute, routing of incoming
//! text/byte streams by topic, and parsing of the pre-connect audio buffer.
//!
//! [`RoomIo`] (the reference's `RoomIO`) carries these decisions out on a [`RoomBackend`], a
//! small trait over a connected room: the `room` feature maps it onto the `livekit` crate
//! (`room::LiveKitRoom`, WebRTC), and [`crate::testing::MemoryRoom`] is an in-memory room with
//! the same event order, so RoomIO runs in tests.

use std::collections::HashMap;
use std::time::Duration;

use crate::audio::AudioFrame;

#[cfg(feature = "pre-connect-opus")]
mod opus;
// Ogg Opus files for background audio (`audio::decode`) use the same decoder.
#[cfg(feature = "pre-connect-opus")]
pub(crate) use opus::decode as decode_opus;
mod backend;
mod room_io;
mod subscription;
mod track_forward;
pub mod video;

pub use backend::{
    AudioFrames, IncomingStream, LocalAudioTrack, ParticipantInfo, RoomBackend, RoomError,
    RoomEvent, RoomEvents, StreamChunks, StreamInfo, TextStreamOptions, TextStreamWriter,
    TrackInfo, TrackKind, TrackSource, VideoFrames,
};
pub use room_io::{
    RoomInputEvent, RoomInputEvents, RoomIo, RoomIoError, RoomPorts, AGENT_TRACK_NAME,
    CHAT_TEXT_MAX_BYTES,
};

pub use subscription::{
    AudioSubscription, AudioSubscriptionGate, AudioSubscriptionState, SubscriptionGatedOutput,
};
pub use track_forward::{
    forward_track_audio, PreConnectStore, END_OF_TRACK_SILENCE, PRE_CONNECT_MAX_AGE,
};

/// Text stream topic of user chat input.
pub const TOPIC_CHAT: &str = "lk.chat";
/// Text stream topic of transcriptions (agent and user).
pub const TOPIC_TRANSCRIPTION: &str = "lk.transcription";
/// Byte stream topic of the audio a client recorded before the agent joined.
pub const TOPIC_PRE_CONNECT_AUDIO: &str = "lk.agent.pre-connect-audio-buffer";
/// Participant attribute holding the agent state.
pub const ATTR_AGENT_STATE: &str = "lk.agent.state";
/// Transcription stream attribute: the segment id.
pub const ATTR_SEGMENT_ID: &str = "lk.segment_id";
/// Transcription stream attribute: the track the text transcribes.
pub const ATTR_TRANSCRIBED_TRACK_ID: &str = "lk.transcribed_track_id";
/// Transcription stream attribute: `"true"` when the segment is final.
pub const ATTR_TRANSCRIPTION_FINAL: &str = "lk.transcription_final";
/// Participant attribute set by avatar workers publishing for an agent.
pub const ATTR_PUBLISH_ON_BEHALF: &str = "lk.publish_on_behalf";
/// How long pre-connect audio is kept waiting for its track (3 s).
pub const PRE_CONNECT_AUDIO_TIMEOUT: Duration = Duration::from_secs(3);

/// Room audio input format: 24 kHz.
pub const INPUT_SAMPLE_RATE: u32 = 24_000;
/// Room audio input format: mono.
pub const INPUT_NUM_CHANNELS: u16 = 1;
/// Room audio input frame length: 50 ms.
pub const INPUT_FRAME_MS: u32 = 50;

/// Participant kinds linked automatically and given to participant entrypoints by default
/// (the reference's `DEFAULT_PARTICIPANT_KINDS`: connector, SIP and standard).
pub const DEFAULT_PARTICIPANT_KINDS: [ParticipantKind; 3] = [
    ParticipantKind::Connector,
    ParticipantKind::Sip,
    ParticipantKind::Standard,
];

/// Kinds of room participants (mirrors the LiveKit protocol's `ParticipantInfo.Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantKind {
    /// A regular client.
    Standard,
    /// An ingress.
    Ingress,
    /// An egress.
    Egress,
    /// A phone call.
    Sip,
    /// An agent.
    Agent,
    /// A connector (e.g. WhatsApp/Twilio).
    Connector,
    /// A bridge (e.g. RTSP).
    Bridge,
}

/// Why a participant left (the subset that matters for closing the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The client hung up / left.
    ClientInitiated,
    /// The room was deleted.
    RoomDeleted,
    /// A SIP callee rejected the call.
    UserRejected,
    /// Anything else (network loss, migration, ...).
    Other,
}

/// What RoomIO must do after a participant left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepartureAction {
    /// Not the linked participant: nothing.
    Ignore,
    /// The linked participant left but the session stays (it may come back); input is unlinked.
    Unlink,
    /// Close the session (`close_on_disconnect` and a final reason).
    CloseSession,
}

/// Chooses and tracks the linked participant: the one whose audio and text the agent takes.
///
/// The reference's rules (`RoomIO._on_participant_connected`):
/// - a participant is linked only if its kind is one of `kinds` (empty:
///   [`DEFAULT_PARTICIPANT_KINDS`]), even when it is the identity asked for;
/// - with an identity asked for (`wanted`), only that participant is linked; otherwise the
///   first one present or joining, skipping participants that publish on behalf of the local
///   participant (avatar workers: attribute [`ATTR_PUBLISH_ON_BEHALF`]);
/// - once linked, the identity sticks: when it leaves, only the same identity is linked again
///   when it comes back ([`set_participant`](Self::set_participant) changes it).
///
/// ```
/// use livekit_agents::room_logic::{LinkSelector, ParticipantKind};
///
/// let mut sel = LinkSelector::new(None, vec![ParticipantKind::Standard, ParticipantKind::Sip]);
/// assert_eq!(sel.on_participant("bot", ParticipantKind::Agent), None);
/// assert_eq!(sel.on_participant("alice", ParticipantKind::Standard), Some("alice".to_string()));
/// assert_eq!(sel.on_participant("bob", ParticipantKind::Standard), None); // first one wins
/// assert_eq!(sel.linked(), Some("alice"));
/// ```
#[derive(Debug, Clone)]
pub struct LinkSelector {
    wanted: Option<String>,
    kinds: Vec<ParticipantKind>,
    linked: Option<String>,
    local_identity: Option<String>,
}

impl LinkSelector {
    /// Links `wanted` if given, else the first participant of one of `kinds` (empty:
    /// [`DEFAULT_PARTICIPANT_KINDS`]).
    pub fn new(wanted: Option<String>, kinds: Vec<ParticipantKind>) -> Self {
        let kinds = if kinds.is_empty() {
            DEFAULT_PARTICIPANT_KINDS.to_vec()
        } else {
            kinds
        };
        Self {
            wanted,
            kinds,
            linked: None,
            local_identity: None,
        }
    }

    /// Skips participants publishing on behalf of `identity` (the local participant) when
    /// choosing automatically.
    pub fn with_local_identity(mut self, identity: impl Into<String>) -> Self {
        self.local_identity = Some(identity.into());
        self
    }

    /// The linked participant's identity.
    pub fn linked(&self) -> Option<&str> {
        self.linked.as_deref()
    }

    /// Whether `identity` is the linked participant.
    pub fn is_linked(&self, identity: &str) -> bool {
        self.linked.as_deref() == Some(identity)
    }

    /// Whom input is expected from: the linked participant, else the identity asked for (or
    /// linked before and gone); `None`: anyone.
    pub fn expected(&self) -> Option<&str> {
        self.linked.as_deref().or(self.wanted.as_deref())
    }

    /// A participant is present (joined, or found at start). Returns the identity if it
    /// becomes the linked participant.
    pub fn on_participant(&mut self, identity: &str, kind: ParticipantKind) -> Option<String> {
        self.offer(identity, kind, None)
    }

    /// Like [`on_participant`](Self::on_participant), with the participant's
    /// [`ATTR_PUBLISH_ON_BEHALF`] attribute.
    pub fn offer(
        &mut self,
        identity: &str,
        kind: ParticipantKind,
        publish_on_behalf: Option<&str>,
    ) -> Option<String> {
        if self.linked.is_some() {
            return None;
        }
        match &self.wanted {
            Some(w) if w != identity => return None,
            Some(_) => {}
            None => {
                if publish_on_behalf.is_some()
                    && publish_on_behalf == self.local_identity.as_deref()
                {
                    return None;
                }
            }
        }
        if !self.kinds.contains(&kind) {
            return None;
        }
        self.linked = Some(identity.to_owned());
        self.wanted = Some(identity.to_owned());
        self.linked.clone()
    }

    /// Picks among participants already in the room (in join order).
    pub fn select_initial<'a>(
        &mut self,
        participants: impl IntoIterator<Item = (&'a str, ParticipantKind)>,
    ) -> Option<String> {
        participants
            .into_iter()
            .find_map(|(id, kind)| self.on_participant(id, kind))
    }

    /// Links `identity` from now on (the reference's `set_participant`, whatever its kind):
    /// at once if it is `present`, else when it joins. `None` unlinks and goes back to
    /// automatic selection among the participants joining next. Returns the previous linked
    /// identity.
    pub fn set_participant(&mut self, identity: Option<String>, present: bool) -> Option<String> {
        self.wanted = identity.clone();
        let linked = if present { identity } else { None };
        std::mem::replace(&mut self.linked, linked)
    }

    /// A participant left.
    pub fn on_departure(
        &mut self,
        identity: &str,
        reason: LeaveReason,
        close_on_disconnect: bool,
    ) -> DepartureAction {
        if !self.is_linked(identity) {
            return DepartureAction::Ignore;
        }
        self.linked = None;
        let final_reason = matches!(
            reason,
            LeaveReason::ClientInitiated | LeaveReason::RoomDeleted | LeaveReason::UserRejected
        );
        if close_on_disconnect && final_reason {
            DepartureAction::CloseSession
        } else {
            DepartureAction::Unlink
        }
    }
}

/// A new transcription segment id: `SG_` + 12 hex digits (the reference's `shortuuid("SG_")`).
pub fn new_segment_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("SG_{}", &id[..12])
}

/// Attributes of a `lk.transcription` text stream.
pub fn transcription_attributes(
    segment_id: &str,
    transcribed_track_id: Option<&str>,
    is_final: bool,
) -> HashMap<String, String> {
    let mut attrs = HashMap::from([
        (ATTR_SEGMENT_ID.to_owned(), segment_id.to_owned()),
        (ATTR_TRANSCRIPTION_FINAL.to_owned(), is_final.to_string()),
    ]);
    if let Some(track) = transcribed_track_id {
        attrs.insert(ATTR_TRANSCRIBED_TRACK_ID.to_owned(), track.to_owned());
    }
    attrs
}

/// One step a transcription text output takes on the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscriptionStep {
    /// Open a text stream on [`TOPIC_TRANSCRIPTION`] with these attributes.
    Open {
        /// Stream attributes.
        attributes: HashMap<String, String>,
    },
    /// Write this text (a delta) to the open stream.
    Write(String),
    /// Close the open stream with these trailer attributes (the segment is final).
    Close {
        /// Trailer attributes (`lk.transcription_final` = `"true"`).
        attributes: HashMap<String, String>,
    },
}

/// Turns `capture_text`/`flush` calls into stream operations: one stream per segment, written
/// in delta mode, with a fresh segment id each time.
#[derive(Debug, Default)]
pub struct TranscriptionSegmenter {
    track_id: Option<String>,
    open_segment: Option<String>,
}

impl TranscriptionSegmenter {
    /// A segmenter whose streams name `track_id` as the transcribed track.
    pub fn new(track_id: Option<String>) -> Self {
        Self {
            track_id,
            open_segment: None,
        }
    }

    /// Sets the transcribed track (e.g. once the agent's audio track is published).
    pub fn set_track_id(&mut self, track_id: Option<String>) {
        self.track_id = track_id;
    }

    /// The transcribed track.
    pub fn track_id(&self) -> Option<&str> {
        self.track_id.as_deref()
    }

    /// The segment being written, if any.
    pub fn current_segment(&self) -> Option<&str> {
        self.open_segment.as_deref()
    }

    /// Steps for capturing `text`. The stream opens with the first non-empty text, as the
    /// reference's (an empty capture writes nothing).
    pub fn capture(&mut self, text: &str) -> Vec<TranscriptionStep> {
        let mut steps = Vec::new();
        if text.is_empty() {
            return steps;
        }
        if self.open_segment.is_none() {
            let id = new_segment_id();
            steps.push(TranscriptionStep::Open {
                attributes: transcription_attributes(&id, self.track_id.as_deref(), false),
            });
            self.open_segment = Some(id);
        }
        steps.push(TranscriptionStep::Write(text.to_owned()));
        steps
    }

    /// Steps for ending the segment.
    pub fn flush(&mut self) -> Vec<TranscriptionStep> {
        match self.open_segment.take() {
            Some(id) => vec![TranscriptionStep::Close {
                attributes: transcription_attributes(&id, self.track_id.as_deref(), true),
            }],
            None => Vec::new(),
        }
    }
}

/// Segment ids of a participant's (user's) transcripts: interim updates share the segment id,
/// a final one ends the segment.
#[derive(Debug, Default)]
pub struct UserTranscriptSegments {
    current: Option<String>,
}

impl UserTranscriptSegments {
    /// The segment id for an update and the stream attributes to send it with.
    pub fn update(
        &mut self,
        transcribed_track_id: Option<&str>,
        is_final: bool,
    ) -> HashMap<String, String> {
        let id = self.current.get_or_insert_with(new_segment_id).clone();
        if is_final {
            self.current = None;
        }
        transcription_attributes(&id, transcribed_track_id, is_final)
    }
}

/// Publishes `lk.agent.state` only when it changes.
#[derive(Debug, Default)]
pub struct AgentStateAttribute {
    last: Option<String>,
}

impl AgentStateAttribute {
    /// The attributes to set for `state`, or `None` when unchanged.
    pub fn update(&mut self, state: &str) -> Option<HashMap<String, String>> {
        if self.last.as_deref() == Some(state) {
            return None;
        }
        self.last = Some(state.to_owned());
        Some(HashMap::from([(
            ATTR_AGENT_STATE.to_owned(),
            state.to_owned(),
        )]))
    }
}

/// Where an incoming stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRoute {
    /// User text for the session (`lk.chat` from the linked participant).
    ChatInput,
    /// Pre-connect audio from the linked participant.
    PreConnectAudio,
    /// Not for us.
    Ignore,
}

/// Routes a text stream by topic and sender: `lk.chat` from the `expected` participant (see
/// [`LinkSelector::expected`]; `None`: from anyone).
pub fn route_text_stream(topic: &str, sender: &str, expected: Option<&str>) -> StreamRoute {
    if topic == TOPIC_CHAT && expected.is_none_or(|e| e == sender) {
        StreamRoute::ChatInput
    } else {
        StreamRoute::Ignore
    }
}

/// Routes a byte stream by topic. Pre-connect audio is accepted from any participant because
/// it can arrive before the participant is linked; it is used only if its track gets linked.
pub fn route_byte_stream(topic: &str) -> StreamRoute {
    if topic == TOPIC_PRE_CONNECT_AUDIO {
        StreamRoute::PreConnectAudio
    } else {
        StreamRoute::Ignore
    }
}

/// Why a pre-connect audio buffer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreConnectError {
    /// A required stream attribute is absent or not a number.
    #[error("pre-connect audio: attribute {0:?} is missing or invalid")]
    BadAttribute(&'static str),
    /// The encoding is neither 16-bit PCM nor (with the `pre-connect-opus` feature) Opus in
    /// WebM or Ogg.
    #[error("pre-connect audio: unsupported mime type {0:?} (decoded: 16-bit PCM{opus})", opus = if cfg!(feature = "pre-connect-opus") { ", Opus in WebM or Ogg" } else { "; Opus needs the `pre-connect-opus` feature" })]
    UnsupportedMime(String),
    /// The `sampleRate` attribute is a number outside
    /// [`SUPPORTED_SAMPLE_RATES`](crate::audio::SUPPORTED_SAMPLE_RATES).
    #[error("pre-connect audio: unsupported sample rate {0} Hz (supported: 8000 to 192000 Hz)")]
    UnsupportedSampleRate(u32),
    /// The Opus recording could not be decoded.
    #[error("pre-connect audio: {0}")]
    Decode(String),
}

/// How the pre-connect audio bytes are encoded (from the stream's mime type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreConnectEncoding {
    /// Raw little-endian 16-bit PCM, interleaved (native SDKs: Swift, Android, C++).
    Pcm16,
    /// An Opus recording in WebM or Ogg (browsers: `audio/webm;codecs=opus`). Decoded with the
    /// `pre-connect-opus` feature (on by default).
    Opus,
}

/// At most this many bytes of pre-connect audio are kept (the client SDKs' own cap, 10 MiB).
pub const PRE_CONNECT_MAX_BYTES: usize = 10 * 1024 * 1024;

/// The most channels a pre-connect recording may declare (8); more is refused as a bad
/// `channels` attribute.
pub const PRE_CONNECT_MAX_CHANNELS: u16 = 8;

/// The header of a pre-connect audio byte stream (its attributes). [`PreConnectHeader::parse`]
/// validates what the participant declared: a rate in
/// [`SUPPORTED_SAMPLE_RATES`](crate::audio::SUPPORTED_SAMPLE_RATES), 1 to
/// [`PRE_CONNECT_MAX_CHANNELS`] channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreConnectHeader {
    /// Sample rate (`sampleRate`).
    pub sample_rate: u32,
    /// Channels (`channels`).
    pub num_channels: u16,
    /// The track the audio belongs to (`trackId`), replayed when that track is subscribed.
    pub track_id: String,
    /// The encoding, from the stream's mime type.
    pub encoding: PreConnectEncoding,
}

impl PreConnectHeader {
    /// Reads the stream attributes. `mime_type`: PCM is `audio/pcm`, `audio/l16`,
    /// `application/octet-stream` or empty; Opus is `audio/opus`, anything with
    /// `codecs=opus`, `audio/webm` or `audio/ogg` (accepted only with the `pre-connect-opus`
    /// feature).
    pub fn parse(
        attributes: &HashMap<String, String>,
        mime_type: &str,
    ) -> Result<Self, PreConnectError> {
        let mime = mime_type.to_ascii_lowercase();
        let pcm = mime.is_empty()
            || mime.starts_with("audio/pcm")
            || mime.starts_with("audio/l16")
            || mime == "application/octet-stream";
        let opus = mime == "audio/opus"
            || mime.contains("codecs=opus")
            || mime.starts_with("audio/webm")
            || mime.starts_with("audio/ogg");
        let encoding = if pcm {
            PreConnectEncoding::Pcm16
        } else if opus && cfg!(feature = "pre-connect-opus") {
            PreConnectEncoding::Opus
        } else {
            return Err(PreConnectError::UnsupportedMime(mime_type.to_owned()));
        };
        let num = |key: &'static str| -> Result<u32, PreConnectError> {
            attributes
                .get(key)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| *n > 0)
                .ok_or(PreConnectError::BadAttribute(key))
        };
        let sample_rate = num("sampleRate")?;
        crate::audio::check_sample_rate(sample_rate)
            .map_err(|_| PreConnectError::UnsupportedSampleRate(sample_rate))?;
        let num_channels = u16::try_from(num("channels")?)
            .ok()
            .filter(|n| *n <= PRE_CONNECT_MAX_CHANNELS)
            .ok_or(PreConnectError::BadAttribute("channels"))?;
        let track_id = attributes.get("trackId").cloned().unwrap_or_default();
        Ok(Self {
            sample_rate,
            num_channels,
            track_id,
            encoding,
        })
    }
}

/// Collects a pre-connect audio stream (any chunking) and turns it into audio frames: PCM
/// bytes are reassembled into samples as they come, an Opus recording is decoded at the end.
#[derive(Debug)]
pub struct PreConnectBuffer {
    header: PreConnectHeader,
    /// PCM: an odd trailing byte; Opus: the whole recording.
    pending: Vec<u8>,
    samples: Vec<i16>,
    received: usize,
}

impl PreConnectBuffer {
    /// An empty buffer for a stream with `header`.
    pub fn new(header: PreConnectHeader) -> Self {
        Self {
            header,
            pending: Vec::new(),
            samples: Vec::new(),
            received: 0,
        }
    }

    /// The stream header.
    pub fn header(&self) -> &PreConnectHeader {
        &self.header
    }

    /// Bytes received so far (bytes past [`PRE_CONNECT_MAX_BYTES`] are dropped).
    pub fn received_bytes(&self) -> usize {
        self.received
    }

    /// Appends a chunk (chunks may split samples or container elements).
    pub fn push(&mut self, chunk: &[u8]) {
        let room = PRE_CONNECT_MAX_BYTES.saturating_sub(self.received);
        let chunk = &chunk[..chunk.len().min(room)];
        self.received += chunk.len();
        self.pending.extend_from_slice(chunk);
        if self.header.encoding == PreConnectEncoding::Pcm16 {
            let whole = self.pending.len() / 2 * 2;
            self.samples.extend(
                self.pending[..whole]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
            self.pending.drain(..whole);
        }
    }

    /// The audio as 50 ms frames (the last one may be shorter; a trailing partial sample is
    /// dropped). Opus audio comes out at the announced rate if Opus supports it (8, 12, 16, 24
    /// or 48 kHz), else at 48 kHz, with the recording's channel count.
    pub fn into_frames(self) -> Result<Vec<AudioFrame>, PreConnectError> {
        let (samples, rate, channels) = match self.header.encoding {
            PreConnectEncoding::Pcm16 => (
                self.samples,
                self.header.sample_rate,
                self.header.num_channels,
            ),
            #[cfg(feature = "pre-connect-opus")]
            PreConnectEncoding::Opus => {
                let audio = opus::decode(
                    &self.pending,
                    self.header.sample_rate,
                    self.header.num_channels,
                )?;
                (audio.samples, audio.sample_rate, audio.num_channels)
            }
            #[cfg(not(feature = "pre-connect-opus"))]
            PreConnectEncoding::Opus => {
                return Err(PreConnectError::UnsupportedMime("audio/opus".into()))
            }
        };
        let ch = channels as usize;
        let per_frame = (rate / 20) as usize * ch;
        let usable = samples.len() / ch * ch;
        Ok(samples[..usable]
            .chunks(per_frame.max(ch))
            .filter_map(|chunk| AudioFrame::new(chunk.to_vec(), rate, channels).ok())
            .collect())
    }
}

/// RoomIO options with the reference defaults (the reference's `RoomOptions`).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomOptions {
    /// Take user text on `lk.chat` (default true).
    pub text_input: bool,
    /// Take the linked participant's audio (default true).
    pub audio_input: bool,
    /// Publish the agent's audio (default true).
    pub audio_output: bool,
    /// Publish transcriptions on `lk.transcription` (default true).
    pub text_output: bool,
    /// Synchronize agent transcriptions to audio playout (default true): words are published
    /// as they are heard. `false` publishes the text as soon as the LLM writes it (see
    /// [`crate::io::TextOutput::synchronized`]).
    pub sync_transcription: bool,
    /// Input sample rate (24 kHz).
    pub input_sample_rate: u32,
    /// Input channels (1).
    pub input_num_channels: u16,
    /// Output sample rate (24 kHz).
    pub output_sample_rate: u32,
    /// Output channels (1).
    pub output_num_channels: u16,
    /// Kinds that can be linked automatically ([`DEFAULT_PARTICIPANT_KINDS`]: connector, SIP
    /// and standard).
    pub participant_kinds: Vec<ParticipantKind>,
    /// Link this participant instead of the first one.
    pub participant_identity: Option<String>,
    /// Close the session when the linked participant leaves for good (default true).
    pub close_on_disconnect: bool,
    /// Delete the room when the session closes (default false).
    pub delete_room_on_close: bool,
    /// Replay the pre-connect audio buffer (default true).
    pub pre_connect_audio: bool,
    /// How long pre-connect audio waits for its track (3 s).
    pub pre_connect_audio_timeout: Duration,
    /// The agent's audio is held until a participant subscribes to its track, so the start of
    /// the first reply is not played into nobody. `None` (the default, as in the reference)
    /// waits however long it takes; `Some(d)` plays anyway `d` after the track was published.
    /// See [`AudioSubscriptionGate`].
    pub audio_subscription_timeout: Option<Duration>,
    /// Take the linked participant's most recently published camera or screen-share track
    /// (default false, as in the reference); frames go through the session's video sampler
    /// (see [`video`]).
    pub video_input: bool,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            text_input: true,
            audio_input: true,
            audio_output: true,
            text_output: true,
            sync_transcription: true,
            input_sample_rate: INPUT_SAMPLE_RATE,
            input_num_channels: INPUT_NUM_CHANNELS,
            output_sample_rate: INPUT_SAMPLE_RATE,
            output_num_channels: 1,
            participant_kinds: DEFAULT_PARTICIPANT_KINDS.to_vec(),
            participant_identity: None,
            close_on_disconnect: true,
            delete_room_on_close: false,
            pre_connect_audio: true,
            pre_connect_audio_timeout: PRE_CONNECT_AUDIO_TIMEOUT,
            audio_subscription_timeout: None,
            video_input: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_identity_still_needs_an_accepted_kind() {
        let mut sel = LinkSelector::new(Some("caller".into()), vec![ParticipantKind::Standard]);
        assert_eq!(
            sel.select_initial([
                ("alice", ParticipantKind::Standard),
                ("caller", ParticipantKind::Sip)
            ]),
            None
        );
        let mut sel = LinkSelector::new(Some("caller".into()), vec![]);
        assert_eq!(
            sel.select_initial([
                ("alice", ParticipantKind::Standard),
                ("caller", ParticipantKind::Sip)
            ]),
            Some("caller".into())
        );
    }

    #[test]
    fn avatars_publishing_for_the_agent_are_skipped() {
        let mut sel = LinkSelector::new(None, vec![]).with_local_identity("agent");
        assert_eq!(
            sel.offer("avatar", ParticipantKind::Standard, Some("agent")),
            None
        );
        assert_eq!(
            sel.offer("alice", ParticipantKind::Standard, Some("other-agent")),
            Some("alice".into())
        );
    }

    #[test]
    fn a_linked_identity_sticks_after_it_left() {
        let mut sel = LinkSelector::new(None, vec![]);
        sel.on_participant("alice", ParticipantKind::Standard);
        sel.on_departure("alice", LeaveReason::Other, true);
        assert_eq!(sel.expected(), Some("alice"));
        assert_eq!(sel.on_participant("bob", ParticipantKind::Standard), None);
        assert_eq!(
            sel.on_participant("alice", ParticipantKind::Standard),
            Some("alice".into())
        );
    }

    #[test]
    fn departure_closes_only_for_final_reasons() {
        let kinds = vec![ParticipantKind::Standard];
        let mut sel = LinkSelector::new(None, kinds.clone());
        sel.on_participant("alice", ParticipantKind::Standard);
        assert_eq!(
            sel.on_departure("bob", LeaveReason::ClientInitiated, true),
            DepartureAction::Ignore
        );
        assert_eq!(
            sel.on_departure("alice", LeaveReason::Other, true),
            DepartureAction::Unlink
        );
        assert_eq!(sel.linked(), None);
        // Relinks the next one that comes.
        assert_eq!(
            sel.on_participant("alice", ParticipantKind::Standard),
            Some("alice".into())
        );
        assert_eq!(
            sel.on_departure("alice", LeaveReason::ClientInitiated, true),
            DepartureAction::CloseSession
        );
        let mut sel = LinkSelector::new(None, kinds);
        sel.on_participant("a", ParticipantKind::Standard);
        assert_eq!(
            sel.on_departure("a", LeaveReason::RoomDeleted, false),
            DepartureAction::Unlink
        );
    }

    #[test]
    fn set_participant_relinks() {
        let mut sel = LinkSelector::new(None, vec![ParticipantKind::Standard]);
        sel.on_participant("a", ParticipantKind::Standard);
        assert_eq!(
            sel.set_participant(Some("b".into()), true),
            Some("a".into())
        );
        assert!(sel.is_linked("b"));
        assert_eq!(
            sel.set_participant(Some("c".into()), false),
            Some("b".into())
        );
        assert_eq!(sel.linked(), None);
        assert_eq!(sel.expected(), Some("c"));
        assert_eq!(sel.set_participant(None, false), None);
        assert_eq!(
            sel.on_participant("c", ParticipantKind::Standard),
            Some("c".into())
        );
    }

    #[test]
    fn segments_get_fresh_ids_and_attributes() {
        let mut seg = TranscriptionSegmenter::new(Some("TR_agent".into()));
        let steps = seg.capture("Hello ");
        let TranscriptionStep::Open { attributes } = &steps[0] else {
            panic!("{steps:?}")
        };
        let first_id = attributes[ATTR_SEGMENT_ID].clone();
        assert!(first_id.starts_with("SG_") && first_id.len() == 15);
        assert_eq!(attributes[ATTR_TRANSCRIBED_TRACK_ID], "TR_agent");
        assert_eq!(attributes[ATTR_TRANSCRIPTION_FINAL], "false");
        assert_eq!(steps[1], TranscriptionStep::Write("Hello ".into()));
        assert_eq!(
            seg.capture("world"),
            vec![TranscriptionStep::Write("world".into())]
        );
        let steps = seg.flush();
        let [TranscriptionStep::Close { attributes }] = steps.as_slice() else {
            panic!("{steps:?}")
        };
        assert_eq!(attributes[ATTR_TRANSCRIPTION_FINAL], "true");
        assert_eq!(attributes[ATTR_SEGMENT_ID], first_id);
        assert!(seg.flush().is_empty());
        let steps = seg.capture("Next");
        let TranscriptionStep::Open { attributes } = &steps[0] else {
            panic!("{steps:?}")
        };
        assert_ne!(attributes[ATTR_SEGMENT_ID], first_id);
    }

    #[test]
    fn user_transcripts_share_a_segment_until_final() {
        let mut seg = UserTranscriptSegments::default();
        let a = seg.update(Some("TR_user"), false);
        let b = seg.update(Some("TR_user"), true);
        let c = seg.update(Some("TR_user"), false);
        assert_eq!(a[ATTR_SEGMENT_ID], b[ATTR_SEGMENT_ID]);
        assert_ne!(b[ATTR_SEGMENT_ID], c[ATTR_SEGMENT_ID]);
        assert_eq!(b[ATTR_TRANSCRIPTION_FINAL], "true");
        assert_eq!(a[ATTR_TRANSCRIBED_TRACK_ID], "TR_user");
    }

    #[test]
    fn agent_state_attribute_dedups() {
        let mut a = AgentStateAttribute::default();
        let set = a.update("listening").unwrap();
        assert_eq!(set[ATTR_AGENT_STATE], "listening");
        assert!(a.update("listening").is_none());
        assert!(a.update("thinking").is_some());
    }

    #[test]
    fn routes_streams_by_topic_and_sender() {
        assert_eq!(
            route_text_stream(TOPIC_CHAT, "alice", Some("alice")),
            StreamRoute::ChatInput
        );
        assert_eq!(
            route_text_stream(TOPIC_CHAT, "mallory", Some("alice")),
            StreamRoute::Ignore
        );
        assert_eq!(
            route_text_stream("other", "alice", Some("alice")),
            StreamRoute::Ignore
        );
        assert_eq!(
            route_text_stream(TOPIC_CHAT, "anyone", None),
            StreamRoute::ChatInput
        );
        assert_eq!(
            route_byte_stream(TOPIC_PRE_CONNECT_AUDIO),
            StreamRoute::PreConnectAudio
        );
        assert_eq!(route_byte_stream("files"), StreamRoute::Ignore);
    }

    #[test]
    fn pre_connect_buffer_parses_header_and_reassembles_samples() {
        let attrs = HashMap::from([
            ("sampleRate".to_string(), "16000".to_string()),
            ("channels".to_string(), "1".to_string()),
            ("trackId".to_string(), "TR_mic".to_string()),
        ]);
        let header = PreConnectHeader::parse(&attrs, "audio/pcm").unwrap();
        assert_eq!(header.track_id, "TR_mic");
        assert_eq!(header.encoding, PreConnectEncoding::Pcm16);
        assert_eq!(
            PreConnectHeader::parse(&attrs, "video/mp4"),
            Err(PreConnectError::UnsupportedMime("video/mp4".into()))
        );
        let mut bad = attrs.clone();
        bad.insert("sampleRate".into(), "x".into());
        assert_eq!(
            PreConnectHeader::parse(&bad, ""),
            Err(PreConnectError::BadAttribute("sampleRate"))
        );
        // Issue 15 item 2: a participant-declared rate sizes the resampler; 4294967295 used to
        // abort the process with a multi-GB allocation.
        for rate in [u32::MAX, 192_001, 7_999] {
            bad.insert("sampleRate".into(), rate.to_string());
            assert_eq!(
                PreConnectHeader::parse(&bad, ""),
                Err(PreConnectError::UnsupportedSampleRate(rate))
            );
        }
        let mut bad = attrs.clone();
        bad.insert("channels".into(), "65535".into());
        assert_eq!(
            PreConnectHeader::parse(&bad, ""),
            Err(PreConnectError::BadAttribute("channels"))
        );

        let mut buf = PreConnectBuffer::new(header);
        // 1000 samples of value i, split at odd byte offsets.
        let bytes: Vec<u8> = (0..1000i16).flat_map(|i| i.to_le_bytes()).collect();
        for chunk in bytes.chunks(333) {
            buf.push(chunk);
        }
        assert_eq!(buf.received_bytes(), 2000);
        let frames = buf.into_frames().unwrap();
        assert_eq!(frames.len(), 2); // 800 + 200 samples (50 ms frames at 16 kHz)
        assert_eq!(frames[0].samples_per_channel, 800);
        assert_eq!(frames[1].samples_per_channel, 200);
        assert_eq!(frames[1].data[0], 800);
    }

    #[cfg(feature = "pre-connect-opus")]
    #[test]
    fn pre_connect_buffer_decodes_a_browser_webm_opus_recording() {
        let attrs = HashMap::from([
            ("sampleRate".to_string(), "48000".to_string()),
            ("channels".to_string(), "1".to_string()),
            ("trackId".to_string(), "TR_mic".to_string()),
        ]);
        let header = PreConnectHeader::parse(&attrs, "audio/webm;codecs=opus").unwrap();
        assert_eq!(header.encoding, PreConnectEncoding::Opus);
        let mut buf = PreConnectBuffer::new(header);
        // MediaRecorder chunks (timeslice) split container elements anywhere.
        for chunk in opus::tests::webm_fixture(1.0).chunks(777) {
            buf.push(chunk);
        }
        let frames = buf.into_frames().unwrap();
        let total: usize = frames.iter().map(|f| f.samples_per_channel).sum();
        assert_eq!(total, 48_000 - 312); // one second minus the encoder's pre-skip
        assert_eq!(frames[0].samples_per_channel, 2_400); // 50 ms frames
        assert!(frames
            .iter()
            .all(|f| f.sample_rate == 48_000 && f.num_channels == 1));
    }
}
