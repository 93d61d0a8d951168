//! The voice pipeline: [`AgentSession`], [`Agent`], [`SpeechHandle`].
//!
//! A turn flows through these modules (see "A turn, step by step" in `docs/ARCHITECTURE.md`):
//!
//! - `session`: the conversation: models, ports, history, events, the active agent.
//! - `recognition`: user audio → VAD + STT → transcript; end of turn (with `endpointing`).
//! - `activity`: the active agent's turn handling and speech scheduling.
//! - `generation`: LLM → TTS → audio output, transcript sync (`transcription`), tool loop
//!   (`tool_execution`).
//! - `agent`, [`nodes`]: what users customize (hooks and pipeline nodes).
//! - `task`: [`AgentTask`], an agent that completes with a value.
//! - `events`, `options`, `speech_handle`, `report`.

mod activity;
pub(crate) mod agent;
mod endpointing;
pub(crate) mod events;
mod generation;
pub(crate) mod hooks;
pub mod nodes;
pub(crate) mod options;
mod playout;
mod realtime;
mod recognition;
pub(crate) mod report;
mod segments;
pub(crate) mod session;
pub(crate) mod speech_handle;
pub(crate) mod task;
mod tool_execution;
mod transcription;

pub use agent::INSTRUCTIONS_ITEM_ID;
pub use agent::{
    Agent, AgentBehavior, AgentBuilder, AgentContext, DefaultBehavior, ModelSettings, StopResponse,
    UserTurnExceeded,
};
pub use events::{
    AgentState, CloseReason, ComponentError, ErrorSource, SessionEvent, SpeechSource,
    TimedSessionEvent, UserState,
};
pub use options::{
    AecWarmup, AgentTurnHandling, EndpointingMode, EndpointingOptions, InterruptionMode,
    InterruptionOptions, PreemptiveGenerationOptions, SessionOptions, TurnDetection,
    TurnHandlingOptions, UserTurnLimitOptions,
};
pub use report::{
    AgentInfo, ModelUsage, ReportBuilder, ReportEvent, TurnReport, MAX_REPORT_EVENTS,
};
pub use report::{ReportHandle, SessionReport};
pub use session::{
    AgentSession, AgentSessionBuilder, CommitOptions, ReplyOptions, SayOptions, SayText,
    SessionError, SessionIo, UpdateOptions,
};
pub use speech_handle::{NotInterruptible, SpeechHandle, SpeechPriority, INTERRUPTION_TIMEOUT};
pub use task::{AgentTask, TaskCompleter, TaskError};
#[allow(unused_imports)] // used by `telephony` (feature `server`)
pub(crate) use tool_execution::in_tool;
pub use tool_execution::CANCELLED_OUTPUT;
pub use transcription::STANDARD_SPEECH_RATE;
