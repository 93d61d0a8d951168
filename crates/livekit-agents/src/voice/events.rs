//! What a session reports: [`SessionEvent`] and the agent/user states.

use crate::llm::{ChatItem, FunctionCall, FunctionCallOutput};
use crate::metrics::AgentMetrics;

use super::SpeechHandle;

/// What the agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Starting up (and again after close).
    Initializing,
    /// Started but not attached to input (the reference's `idle`).
    Idle,
    /// Waiting for the user.
    Listening,
    /// Processing the user's turn.
    Thinking,
    /// Playing speech.
    Speaking,
}

impl AgentState {
    /// The name used in the `lk.agent.state` attribute.
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentState::Initializing => "initializing",
            AgentState::Idle => "idle",
            AgentState::Listening => "listening",
            AgentState::Thinking => "thinking",
            AgentState::Speaking => "speaking",
        }
    }
}

/// What the user is doing (driven by VAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// Speaking.
    Speaking,
    /// Silent.
    Listening,
    /// Silent for `user_away_timeout` while the agent was listening too.
    Away,
}

/// Who created a speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpeechSource {
    /// [`AgentSession::say`](super::AgentSession::say).
    Say,
    /// [`AgentSession::generate_reply`](super::AgentSession::generate_reply) or a user turn.
    GenerateReply,
    /// A follow-up reply to tool outputs.
    ToolResponse,
}

/// Which component failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorSource {
    /// Speech-to-text.
    Stt,
    /// Language model.
    Llm,
    /// Text-to-speech.
    Tts,
    /// Realtime model.
    RealtimeModel,
    /// Voice activity detection.
    Vad,
    /// An MCP server (it failed to start; the session goes on without its tools).
    Mcp,
}

/// The error of a [`SessionEvent::Error`]: the reference's `LLMError`, `STTError`, `TTSError`
/// and `RealtimeModelError` (which model failed, and its typed error), or a failed MCP server.
/// Which kind of component failed, and whether the session goes on, are the event's `source`
/// and `recoverable`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    /// A model provider failed: an STT, LLM, TTS or realtime model (its stream already retried
    /// what could be retried).
    #[error("{label}: {error}")]
    Provider {
        /// The model's label (`Stt::label`, `Llm::label`, ...), e.g. `deepgram.STT`; empty
        /// when the session has no such model (a node overridden by the agent).
        label: String,
        /// The provider's error.
        #[source]
        error: crate::types::ApiError,
    },
    /// An MCP server failed to start (the session goes on without its tools). Feature `mcp`.
    #[cfg(feature = "mcp")]
    #[error("MCP server {server}: {error}")]
    Mcp {
        /// The server's label.
        server: String,
        /// Why.
        #[source]
        error: std::sync::Arc<crate::mcp::McpError>,
    },
}

impl ComponentError {
    /// The provider error, when a model failed.
    pub fn api_error(&self) -> Option<&crate::types::ApiError> {
        match self {
            ComponentError::Provider { error, .. } => Some(error),
            #[cfg(feature = "mcp")]
            ComponentError::Mcp { .. } => None,
        }
    }
}

/// Why the session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// [`AgentSession::close`](super::AgentSession::close) or `drain`.
    UserInitiated,
    /// Too many unrecoverable errors.
    Error,
    /// The input ended (e.g. the WAV file or the participant's track ended).
    InputEnded,
    /// The agent ended the phone call: the `end_call` tool, a hang-up, a voicemail left, or a
    /// cold transfer (the `telephony` module, feature `server`).
    CallEnded,
    /// The linked room participant left for good (RoomIO's `close_on_disconnect`).
    ParticipantDisconnected,
}

/// An event of a session; receive them with [`AgentSession::events`](super::AgentSession::events).
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// The agent state changed.
    AgentStateChanged {
        /// Before.
        old_state: AgentState,
        /// After.
        new_state: AgentState,
    },
    /// The user state changed.
    UserStateChanged {
        /// Before.
        old_state: UserState,
        /// After.
        new_state: UserState,
    },
    /// A user transcript (interim or final).
    UserInputTranscribed {
        /// The text.
        transcript: String,
        /// Whether it is final.
        is_final: bool,
        /// Speaker id with diarization.
        speaker_id: Option<String>,
        /// Language as reported by the STT.
        language: Option<String>,
    },
    /// An item was added to the session history.
    ConversationItemAdded {
        /// The item.
        item: ChatItem,
    },
    /// Tools of one step finished.
    FunctionToolsExecuted {
        /// The calls.
        function_calls: Vec<FunctionCall>,
        /// Their outputs (same order).
        function_call_outputs: Vec<FunctionCallOutput>,
    },
    /// Metrics of one stage.
    MetricsCollected {
        /// The metrics.
        metrics: AgentMetrics,
    },
    /// A speech was created.
    SpeechCreated {
        /// Created by `say`/`generate_reply` (not by a user turn or tool reply).
        user_initiated: bool,
        /// What created it.
        source: SpeechSource,
        /// The speech.
        speech_handle: SpeechHandle,
    },
    /// A user interruption turned out to be false (no transcript within the timeout).
    AgentFalseInterruption {
        /// Whether the paused speech resumed.
        resumed: bool,
    },
    /// A component failed.
    Error {
        /// Which one.
        source: ErrorSource,
        /// The typed error, naming the model or server that failed.
        error: ComponentError,
        /// Whether the session retries or goes on.
        recoverable: bool,
    },
    /// A DTMF tone (telephone keypad key) arrived from a SIP participant (the room's
    /// `sip_dtmf_received`). Injected by the room I/O, or by
    /// [`AgentSession::push_sip_dtmf`](super::AgentSession::push_sip_dtmf).
    SipDtmfReceived {
        /// RFC 4733 event code (`0`-`9` for digits, `*` = 10, `#` = 11, `A`-`D` = 12-15).
        code: u32,
        /// The key as text (`"1"`, `"*"`, `"#"`, ...); may be empty when only the code came.
        digit: String,
        /// The participant that pressed the key, if known.
        participant_identity: Option<String>,
    },
    /// The VAD heard the user during their turn but no non-empty final transcript arrived
    /// within [`SessionOptions::transcription_timeout`](super::SessionOptions::transcription_timeout)
    /// after that speech ended (the reference's `user_transcription_timeout`): the STT failed,
    /// or the audio was withheld from it. Ask the user to repeat.
    UserTranscriptionTimeout {
        /// VAD-detected speech in the turn that produced no transcript.
        speech_duration: std::time::Duration,
        /// When the VAD first detected speech in this turn (wall clock; the reference's
        /// `vad_speech_started_at`).
        vad_speech_started_at: std::time::SystemTime,
    },
    /// The session closed.
    Close {
        /// Why.
        reason: CloseReason,
        /// The error that closed it, if any.
        error: Option<String>,
    },
}

impl SessionEvent {
    /// A short snake_case name (the reference's event name).
    pub fn name(&self) -> &'static str {
        match self {
            SessionEvent::AgentStateChanged { .. } => "agent_state_changed",
            SessionEvent::UserStateChanged { .. } => "user_state_changed",
            SessionEvent::UserInputTranscribed { .. } => "user_input_transcribed",
            SessionEvent::ConversationItemAdded { .. } => "conversation_item_added",
            SessionEvent::FunctionToolsExecuted { .. } => "function_tools_executed",
            SessionEvent::MetricsCollected { .. } => "metrics_collected",
            SessionEvent::SpeechCreated { .. } => "speech_created",
            SessionEvent::AgentFalseInterruption { .. } => "agent_false_interruption",
            SessionEvent::Error { .. } => "error",
            SessionEvent::SipDtmfReceived { .. } => "sip_dtmf_received",
            SessionEvent::UserTranscriptionTimeout { .. } => "user_transcription_timeout",
            SessionEvent::Close { .. } => "close",
        }
    }
}

/// A [`SessionEvent`] with the time it was created: the reference's `created_at` on every event.
/// Receive them with [`AgentSession::timed_events`](super::AgentSession::timed_events).
///
/// `user_state_changed` to `listening` is stamped with the time the user last spoke (the end of
/// their speech as the VAD measured it, not the moment the VAD noticed the silence), as the
/// reference's is.
#[derive(Debug, Clone)]
pub struct TimedSessionEvent {
    /// Wall-clock time of the event (the reference's `created_at`, Unix time).
    pub created_at: std::time::SystemTime,
    /// The same time on tokio's clock (paused in tests): offsets between events, e.g. into a
    /// recording, come from it.
    pub instant: tokio::time::Instant,
    /// The event.
    pub event: SessionEvent,
}

impl TimedSessionEvent {
    /// `event` created at `instant` on tokio's clock (now or earlier); `created_at` is the
    /// wall-clock time that many seconds before now.
    pub fn at(event: SessionEvent, instant: tokio::time::Instant) -> Self {
        let ago = tokio::time::Instant::now().saturating_duration_since(instant);
        let now = std::time::SystemTime::now();
        Self {
            created_at: now.checked_sub(ago).unwrap_or(now),
            instant,
            event,
        }
    }

    /// `created_at` as Unix seconds (the reference's float timestamps).
    pub fn created_at_secs(&self) -> f64 {
        self.created_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}
