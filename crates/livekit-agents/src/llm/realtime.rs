//! Realtime (speech-to-speech) models: [`RealtimeModel`] opens a [`RealtimeSession`] that takes
//! user audio and produces generations (text, audio and tool calls) with server-side turn
//! detection.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::chat_context::{ChatContext, FunctionCall};
use super::tool::{ToolChoice, ToolDefinition};
use crate::audio::AudioFrame;
use crate::types::ApiError;

/// What a realtime model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RealtimeCapabilities {
    /// An assistant message can be truncated to what the user heard.
    pub message_truncation: bool,
    /// The server detects turns.
    pub turn_detection: bool,
    /// The server transcribes user audio.
    pub user_transcription: bool,
    /// The server replies to tool outputs by itself.
    pub auto_tool_reply_generation: bool,
    /// The model produces audio.
    pub audio_output: bool,
}

/// A message being generated: its text and audio arrive on separate channels.
#[derive(Debug)]
pub struct MessageGeneration {
    /// The assistant message id (used to truncate it).
    pub message_id: String,
    /// Text (or audio transcript) deltas.
    pub text_stream: mpsc::Receiver<String>,
    /// Audio frames.
    pub audio_stream: mpsc::Receiver<AudioFrame>,
}

/// A response started by the model.
#[derive(Debug)]
pub struct GenerationCreated {
    /// Messages of the response.
    pub message_stream: mpsc::Receiver<MessageGeneration>,
    /// Tool calls of the response.
    pub function_stream: mpsc::Receiver<FunctionCall>,
    /// The response answers an explicit [`RealtimeSession::generate_reply`] call.
    pub user_initiated: bool,
    /// Provider response id.
    pub response_id: String,
}

/// Something that happened in a realtime session.
#[derive(Debug)]
#[non_exhaustive]
pub enum RealtimeEvent {
    /// A response started.
    GenerationCreated(GenerationCreated),
    /// The server heard the user start speaking.
    InputSpeechStarted,
    /// The server heard the user stop speaking.
    InputSpeechStopped {
        /// A transcription of the turn will follow.
        user_transcription_enabled: bool,
    },
    /// The server transcribed user audio.
    InputAudioTranscriptionCompleted {
        /// The user item id.
        item_id: String,
        /// The transcript.
        transcript: String,
        /// Whether the transcript is final.
        is_final: bool,
    },
    /// Usage of one response.
    Usage {
        /// Input tokens.
        input_tokens: u32,
        /// Output tokens.
        output_tokens: u32,
        /// Cached input tokens.
        cached_tokens: u32,
    },
    /// An error; `recoverable` errors leave the session usable.
    Error {
        /// What went wrong.
        error: ApiError,
        /// Whether the session is still usable.
        recoverable: bool,
    },
}

/// A realtime model provider.
#[async_trait]
pub trait RealtimeModel: Send + Sync + 'static {
    /// A short name for logs, e.g. `openai.realtime.RealtimeModel`.
    fn label(&self) -> String;
    /// The model name.
    fn model(&self) -> String;
    /// The provider name.
    fn provider(&self) -> String;
    /// What the model can do.
    fn capabilities(&self) -> RealtimeCapabilities;
    /// Opens a session (one per conversation).
    async fn session(&self) -> Result<Box<dyn RealtimeSession>, ApiError>;
}

/// A live conversation with a realtime model.
#[async_trait]
pub trait RealtimeSession: Send + Sync {
    /// Takes the event receiver (returns `None` after the first call).
    fn take_events(&mut self) -> Option<mpsc::Receiver<RealtimeEvent>>;
    /// Replaces the instructions.
    async fn update_instructions(&self, instructions: &str) -> Result<(), ApiError>;
    /// Replaces the conversation held by the server.
    async fn update_chat_ctx(&self, chat_ctx: &ChatContext) -> Result<(), ApiError>;
    /// Replaces the tools.
    async fn update_tools(&self, tools: &[ToolDefinition]) -> Result<(), ApiError>;
    /// Sets the default tool choice.
    async fn update_tool_choice(&self, tool_choice: ToolChoice) -> Result<(), ApiError>;
    /// Appends user audio.
    fn push_audio(&self, frame: &AudioFrame);
    /// Pushes a live video frame (a sampled, JPEG-encoded image). Default: ignored, for models
    /// without video input.
    fn push_video(&self, image: &crate::llm::ImageContent) {
        let _ = image;
    }
    /// Commits the pending user audio as a turn.
    fn commit_audio(&self);
    /// Drops the pending user audio.
    fn clear_audio(&self);
    /// Asks the model to reply now.
    async fn generate_reply(
        &self,
        instructions: Option<&str>,
    ) -> Result<GenerationCreated, ApiError>;
    /// Cancels the current response.
    fn interrupt(&self);
    /// Truncates an assistant message to what was played.
    async fn truncate(
        &self,
        message_id: &str,
        audio_end_ms: u64,
        audio_transcript: Option<&str>,
    ) -> Result<(), ApiError>;
    /// Closes the session.
    async fn close(&self);
}
