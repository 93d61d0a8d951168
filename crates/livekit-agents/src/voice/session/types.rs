//! The session's public option and port types, its error, and its builder.

use std::sync::Arc;
use std::time::Duration;

use super::super::nodes::{AudioFrameStream, TextStream};
use super::super::options::{SessionOptions, TurnHandlingOptions};
use super::super::speech_handle::SpeechPriority;
use super::AgentSession;
use crate::io::{AudioInput, AudioOutput, TextOutput};
use crate::llm::realtime::RealtimeModel;
use crate::llm::tool::Userdata;
use crate::llm::{ChatContext, FunctionTool, Llm, ToolChoice};
use crate::stt::Stt;
use crate::tts::Tts;
use crate::turn_detector::TurnDetector;
use crate::vad::Vad;

/// A session could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `start` was not called (or the session closed).
    #[error("the session is not running")]
    NotRunning,
    /// `start` was called twice.
    #[error("the session is already started")]
    AlreadyStarted,
    /// The configuration cannot work.
    #[error("invalid session configuration: {reason}")]
    Config {
        /// What is wrong with it.
        reason: String,
    },
    /// The user turn could not be committed (no recognition running).
    #[error("cannot commit the user turn: {reason}")]
    Commit {
        /// Why.
        reason: String,
    },
    /// The realtime model session could not be opened.
    #[error("cannot open the realtime session: {reason}")]
    Realtime {
        /// The model's error.
        reason: String,
    },
}

/// The session's ports. Any may be absent: without audio the session is text-only.
#[derive(Default)]
pub struct SessionIo {
    /// User audio.
    pub audio_input: Option<AudioInput>,
    /// Agent audio.
    pub audio_output: Option<Arc<dyn AudioOutput>>,
    /// Agent transcript.
    pub text_output: Option<Arc<dyn TextOutput>>,
}

impl std::fmt::Debug for SessionIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionIo")
            .field(
                "audio_input",
                &self.audio_input.as_ref().map(|a| a.label().to_string()),
            )
            .field(
                "audio_output",
                &self.audio_output.as_ref().map(|a| a.label()),
            )
            .field("text_output", &self.text_output.as_ref().map(|t| t.label()))
            .finish()
    }
}

/// What `say` speaks.
pub enum SayText {
    /// A whole text.
    Text(String),
    /// Text arriving over time.
    Stream(TextStream),
}

impl From<&str> for SayText {
    fn from(s: &str) -> Self {
        SayText::Text(s.to_string())
    }
}

impl From<String> for SayText {
    fn from(s: String) -> Self {
        SayText::Text(s)
    }
}

/// Options of [`AgentSession::say`].
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct SayOptions {
    /// Pre-synthesized audio to play instead of running TTS (the text is then only the
    /// transcript).
    pub audio: Option<AudioFrameStream>,
    /// Override of the agent's interruption setting.
    pub allow_interruptions: Option<bool>,
    /// Add the text to the history after playback (default true).
    pub add_to_chat_ctx: bool,
    /// Scheduling priority (default normal).
    pub priority: SpeechPriority,
}

impl Default for SayOptions {
    fn default() -> Self {
        Self {
            audio: None,
            allow_interruptions: None,
            add_to_chat_ctx: true,
            priority: SpeechPriority::Normal,
        }
    }
}

/// Options of [`AgentSession::generate_reply`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct ReplyOptions {
    /// A user message added to the history before replying.
    pub user_input: Option<String>,
    /// Extra instructions for this reply only (not recorded in history).
    pub instructions: Option<String>,
    /// Tool choice for this reply.
    pub tool_choice: Option<ToolChoice>,
    /// Only these tools (by name) for this reply.
    pub tools: Option<Vec<String>>,
    /// Override of the agent's interruption setting.
    pub allow_interruptions: Option<bool>,
    /// Replaces the agent's context for this reply.
    pub chat_ctx: Option<ChatContext>,
    /// Scheduling priority (default normal).
    pub priority: SpeechPriority,
}

/// What [`AgentSession::update_options`] changes (`None`: unchanged).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct UpdateOptions {
    /// New endpointing delays (the learned state of dynamic endpointing starts over).
    pub endpointing: Option<super::super::options::EndpointingOptions>,
    /// New turn detection; [`TurnDetection::Auto`](super::super::options::TurnDetection::Auto)
    /// goes back to the automatic choice.
    pub turn_detection: Option<super::super::options::TurnDetection>,
}

/// Options of [`AgentSession::commit_user_turn`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct CommitOptions {
    /// How long to wait for the final transcript (default 2 s).
    pub transcript_timeout: Duration,
    /// Silence pushed to the STT so it finalizes (default 2 s).
    pub stt_flush_duration: Duration,
    /// Commit without replying.
    pub skip_reply: bool,
}

impl Default for CommitOptions {
    fn default() -> Self {
        Self {
            transcript_timeout: Duration::from_secs(2),
            stt_flush_duration: Duration::from_secs(2),
            skip_reply: false,
        }
    }
}

/// The models of a session (agents may override some).
#[derive(Clone, Default)]
pub(crate) struct Models {
    pub stt: Option<Arc<dyn Stt>>,
    pub vad: Option<Arc<dyn Vad>>,
    pub llm: Option<Arc<dyn Llm>>,
    pub tts: Option<Arc<dyn Tts>>,
    pub turn_detector: Option<Arc<dyn TurnDetector>>,
    pub realtime: Option<Arc<dyn RealtimeModel>>,
}

/// Builds an [`AgentSession`].
#[derive(Default)]
pub struct AgentSessionBuilder {
    options: SessionOptions,
    models: Models,
    tools: Vec<FunctionTool>,
    userdata: Userdata,
    mcp_servers: crate::mcp::ServerList,
    /// Models that could not be resolved (bad LiveKit Inference descriptors, missing keys).
    model_errors: Vec<String>,
    video_sampler: Option<Box<dyn crate::room_logic::video::VideoSampler>>,
    /// `no_vad()` was called: no default VAD.
    vad_opted_out: bool,
    /// Records the session's provider answers and audio input (`record_tape`).
    tape: Option<crate::testing::replay::TapeRecorder>,
}

impl AgentSessionBuilder {
    fn resolve<T: ?Sized>(
        &mut self,
        spec: crate::inference::ModelSpec<T>,
        resolve: impl FnOnce(
            crate::inference::ModelSpec<T>,
        ) -> Result<Arc<T>, crate::inference::InferenceError>,
    ) -> Option<Arc<T>> {
        match resolve(spec) {
            Ok(model) => Some(model),
            Err(e) => {
                self.model_errors.push(e.to_string());
                None
            }
        }
    }
    /// Speech-to-text: an instance (`Arc<dyn Stt>`, `Arc<Plugin>`) or a LiveKit Inference
    /// descriptor (`"deepgram/nova-3:multi"`, see [`crate::inference`]).
    pub fn stt(mut self, stt: impl Into<crate::inference::ModelSpec<dyn Stt>>) -> Self {
        self.models.stt = self.resolve(stt.into(), |s| s.resolve());
        self
    }
    /// Voice activity detection. Without this call the session gets the registered default
    /// VAD, if any ([`crate::vad::register_default_vad`]; the reference's default Silero VAD).
    pub fn vad(mut self, vad: Arc<dyn Vad>) -> Self {
        self.models.vad = Some(vad);
        self.vad_opted_out = false;
        self
    }
    /// No VAD, not even the registered default (the reference's `vad=None`).
    pub fn no_vad(mut self) -> Self {
        self.models.vad = None;
        self.vad_opted_out = true;
        self
    }
    /// Language model: an instance or a LiveKit Inference descriptor (`"openai/gpt-4.1-mini"`).
    pub fn llm(mut self, llm: impl Into<crate::inference::ModelSpec<dyn Llm>>) -> Self {
        self.models.llm = self.resolve(llm.into(), |s| s.resolve());
        self
    }
    /// A realtime (speech-to-speech) model used instead of STT + LLM (a TTS is still needed for
    /// `say`).
    pub fn realtime_model(mut self, model: Arc<dyn RealtimeModel>) -> Self {
        self.models.realtime = Some(model);
        self
    }
    /// Text-to-speech: an instance or a LiveKit Inference descriptor
    /// (`"cartesia/sonic-3:VOICE"`).
    pub fn tts(mut self, tts: impl Into<crate::inference::ModelSpec<dyn Tts>>) -> Self {
        self.models.tts = self.resolve(tts.into(), |s| s.resolve());
        self
    }
    /// End-of-turn model (also selects [`TurnDetection::Model`](crate::voice::TurnDetection::Model) when turn detection is `Auto`).
    pub fn turn_detector(mut self, detector: Arc<dyn TurnDetector>) -> Self {
        self.models.turn_detector = Some(detector);
        self
    }
    /// Tools available to every agent.
    pub fn tools(mut self, tools: impl IntoIterator<Item = FunctionTool>) -> Self {
        self.tools.extend(tools);
        self
    }
    /// MCP servers whose tools every agent gets (unless the agent has its own servers). They
    /// start with the session and close with it.
    #[cfg(feature = "mcp")]
    pub fn mcp_servers(mut self, servers: impl IntoIterator<Item = crate::mcp::McpServer>) -> Self {
        self.mcp_servers.extend(servers);
        self
    }
    /// Which live video frames to keep (default: the reference's
    /// [`VoiceActivityVideoSampler`](crate::room_logic::video::VoiceActivityVideoSampler), about
    /// 1 frame/s while the user speaks, one every ~3 s otherwise).
    pub fn video_sampler(mut self, sampler: impl crate::room_logic::video::VideoSampler) -> Self {
        self.video_sampler = Some(Box::new(sampler));
        self
    }
    /// Session data for tools and hooks.
    pub fn userdata(mut self, userdata: Userdata) -> Self {
        self.userdata = userdata;
        self
    }
    /// All options at once.
    pub fn options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self
    }
    /// Turn handling options.
    pub fn turn_handling(mut self, turn_handling: TurnHandlingOptions) -> Self {
        self.options.turn_handling = turn_handling;
        self
    }
    /// Navigate automated phone menus ([`SessionOptions::ivr_detection`], default false).
    pub fn ivr_detection(mut self, enabled: bool) -> Self {
        self.options.ivr_detection = enabled;
        self
    }
    /// Consecutive tool steps per reply (default 3).
    pub fn max_tool_steps(mut self, steps: u32) -> Self {
        self.options.max_tool_steps = steps;
        self
    }
    /// Records this session on `tape` (its STT, LLM and TTS answers and the user's audio; see
    /// [`crate::testing::replay`]), so the call can be saved and replayed later. In `console
    /// --tape FILE` the console's recorder is used when none is given here.
    pub fn record_tape(mut self, tape: &crate::testing::replay::TapeRecorder) -> Self {
        self.tape = Some(tape.clone());
        self
    }
    /// The session. A model that could not be resolved (see [`try_build`](Self::try_build))
    /// is logged here and makes `start` fail with [`SessionError::Config`].
    pub fn build(mut self) -> AgentSession {
        let tape = self
            .tape
            .take()
            .or_else(crate::telemetry::job_tape_recorder);
        if let Some(tape) = &tape {
            self.models.stt = self.models.stt.take().map(|m| tape.stt(m));
            self.models.llm = self.models.llm.take().map(|m| tape.llm(m));
            self.models.tts = self.models.tts.take().map(|m| tape.tts(m));
        }
        if self.models.vad.is_none() && !self.vad_opted_out {
            match crate::vad::default_vad() {
                Some(Ok(vad)) => {
                    tracing::debug!(vad = %vad.label(), "using the default VAD");
                    self.models.vad = Some(vad);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "the default VAD could not be loaded"),
                None => {}
            }
        }
        let config_error = (!self.model_errors.is_empty()).then(|| self.model_errors.join("; "));
        if let Some(e) = &config_error {
            tracing::error!("{e}");
        }
        let video = match self.video_sampler {
            Some(sampler) => crate::room_logic::video::VideoState::new(sampler),
            None => Default::default(),
        };
        let session = AgentSession::from_parts(
            self.options,
            self.models,
            self.tools,
            self.userdata,
            self.mcp_servers,
            config_error,
            video,
        );
        if let Some(tape) = tape {
            session.inner.telemetry.set_tape(tape);
        }
        session
    }
    /// The session, or the first model that could not be resolved (a malformed or unknown
    /// LiveKit Inference descriptor, missing credentials).
    pub fn try_build(self) -> Result<AgentSession, SessionError> {
        if let Some(e) = self.model_errors.first() {
            return Err(SessionError::Config { reason: e.clone() });
        }
        Ok(self.build())
    }
}
