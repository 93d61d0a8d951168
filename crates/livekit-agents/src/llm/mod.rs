//! Language models: the [`Llm`] trait and its chunk stream, the [`ChatContext`] conversation,
//! function tools, and the realtime (speech-to-speech) model traits.

pub(crate) mod chat_context;
pub(crate) mod fallback;
pub mod realtime;
pub(crate) mod tool;
mod tool_progress;

pub use chat_context::{
    AgentHandoff, ChatContent, ChatContext, ChatItem, ChatMessage, ChatRole, FunctionCall,
    FunctionCallOutput, ImageContent, ImageSource, ItemFilter,
};
pub use fallback::FallbackAdapter;
pub use fallback::{AvailabilityChanged, LlmFallbackOptions, NoProviders};

/// Turns a documented `async fn` into a function returning its [`FunctionTool`]: the doc
/// comment is the description the model reads, the `# Arguments` section describes the
/// parameters, and each parameter becomes a property of the JSON schema (its type must be
/// `serde::Deserialize` + `schemars::JsonSchema`). A first parameter of type [`RunContext`]
/// receives the call's context. The function may return `Result<T, E>` with any error type
/// (so `?` works: see [`ToolError`] for what the model sees) or a plain value.
///
/// Options: `#[function_tool(name = "…", description = "…")]`.
///
/// ```
/// use livekit_agents::llm::{function_tool, RunContext, ToolError};
///
/// /// Look up the current weather for a city.
/// ///
/// /// # Arguments
/// ///
/// /// * `location` - The city to look up.
/// /// * `days` - How many days of forecast, if any.
/// #[function_tool]
/// async fn lookup_weather(
///     _ctx: RunContext,
///     location: String,
///     days: Option<u8>,
/// ) -> Result<String, ToolError> {
///     if location.is_empty() {
///         return Err(ToolError::new("which city?"));
///     }
///     Ok(format!("Sunny in {location} for {} day(s).", days.unwrap_or(1)))
/// }
///
/// let tool = lookup_weather();
/// assert_eq!(tool.name(), "lookup_weather");
/// let schema = &tool.definition().parameters;
/// assert_eq!(schema["properties"]["location"]["description"], "The city to look up.");
/// assert_eq!(schema["required"], serde_json::json!(["location"]));
/// ```
pub use livekit_agents_macros::function_tool;
pub use tool::{to_strict_schema, InvalidToolDefinition, StrictSchemaError};
pub use tool::{
    FunctionTool, IntoToolOutput, IntoToolResult, RunContext, ToolCallResult, ToolChoice,
    ToolDefinition, ToolError, ToolFlags, ToolOutput, ToolSet, Toolset, Userdata, UserdataError,
    INTERNAL_ERROR_MESSAGE,
};
pub use tool_progress::{Filler, ToolProgress, UPDATE_TEMPLATE};

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use tokio::sync::mpsc;

use crate::stt::EVENT_BUFFER;
use crate::types::{ApiConnectOptions, ApiError};

/// A tool call streamed by the model (arguments are the raw JSON text).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct FunctionToolCall {
    /// The provider's id for this call (pairs the call with its output).
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as a JSON string (complete: plugins stitch streamed fragments).
    pub arguments: String,
}

/// Token usage of one LLM request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CompletionUsage {
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens served from the provider's cache.
    pub prompt_cached_tokens: u32,
    /// Total tokens.
    pub total_tokens: u32,
}

/// The new content of one streamed chunk.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChoiceDelta {
    /// Role, usually only on the first chunk.
    pub role: Option<ChatRole>,
    /// Text content.
    pub content: Option<String>,
    /// Complete tool calls.
    pub tool_calls: Vec<FunctionToolCall>,
}

/// One item of an [`LlmStream`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatChunk {
    /// Response id.
    pub id: String,
    /// New content.
    pub delta: Option<ChoiceDelta>,
    /// Usage, usually on the last chunk.
    pub usage: Option<CompletionUsage>,
}

impl ChatChunk {
    /// A chunk carrying text.
    pub fn text(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            delta: Some(ChoiceDelta {
                role: Some(ChatRole::Assistant),
                content: Some(text.into()),
                tool_calls: Vec::new(),
            }),
            usage: None,
        }
    }

    /// A chunk carrying tool calls.
    pub fn tool_calls(id: impl Into<String>, calls: Vec<FunctionToolCall>) -> Self {
        Self {
            id: id.into(),
            delta: Some(ChoiceDelta {
                role: Some(ChatRole::Assistant),
                content: None,
                tool_calls: calls,
            }),
            usage: None,
        }
    }

    /// Whether the chunk carries text or tool calls (what counts as "the model said something").
    pub fn has_content(&self) -> bool {
        self.delta.as_ref().is_some_and(|d| {
            d.content.as_deref().is_some_and(|c| !c.is_empty()) || !d.tool_calls.is_empty()
        })
    }

    /// A segment break (the reference's `FlushSentinel`): an `llm_node` yields it between two
    /// pieces of a reply that must be spoken as separate segments. The text before it is
    /// synthesized and played as one segment (its own TTS stream), the text after it as the
    /// next, in order; the reply is still one assistant message, and an interruption keeps only
    /// what was heard. It carries no content (models never send it; [`has_content`] is false).
    ///
    /// ```
    /// use livekit_agents::llm::ChatChunk;
    ///
    /// let reply = vec![
    ///     ChatChunk::text("r1", "Let me check that."),
    ///     ChatChunk::flush(),
    ///     ChatChunk::text("r1", " Your order ships tomorrow."),
    /// ];
    /// assert!(reply[1].is_flush() && !reply[0].is_flush());
    /// ```
    ///
    /// [`has_content`]: Self::has_content
    pub fn flush() -> Self {
        Self {
            id: FLUSH_CHUNK_ID.to_string(),
            delta: None,
            usage: None,
        }
    }

    /// Whether this is a segment break made by [`ChatChunk::flush`].
    pub fn is_flush(&self) -> bool {
        self.id == FLUSH_CHUNK_ID && self.delta.is_none() && self.usage.is_none()
    }
}

/// The id of a [`ChatChunk::flush`] segment break.
pub const FLUSH_CHUNK_ID: &str = "lk.flush_sentinel";

/// Reasoning effort for reasoning models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    /// Minimal reasoning.
    Minimal,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// No reasoning (GPT-5.1 and later, GPT-6, Grok 4.3): the lowest latency, and what
    /// OpenAI's Chat Completions requires of GPT-6 models for function calling.
    None,
}

/// Per-request generation options. Unset fields use the provider's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct ChatOptions {
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Maximum tokens to generate.
    pub max_tokens: Option<u32>,
    /// Whether the model may call several tools at once.
    pub parallel_tool_calls: Option<bool>,
    /// Reasoning effort for reasoning models.
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Provider-specific fields merged into the request body.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Everything one LLM request needs.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The conversation.
    pub chat_ctx: ChatContext,
    /// Tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Tool choice (`None`: provider default, i.e. auto when tools are given).
    pub tool_choice: Option<ToolChoice>,
    /// Generation options.
    pub options: ChatOptions,
    /// Retry and timeout policy.
    pub conn: ApiConnectOptions,
}

impl ChatRequest {
    /// A request for `chat_ctx` with no tools and default options.
    pub fn new(chat_ctx: ChatContext) -> Self {
        Self {
            chat_ctx,
            ..Default::default()
        }
    }
}

/// A language model.
#[async_trait]
pub trait Llm: Send + Sync + 'static {
    /// A short name for logs and metrics, e.g. `openai.LLM`.
    fn label(&self) -> String;
    /// The model name.
    fn model(&self) -> String;
    /// The provider name.
    fn provider(&self) -> String;
    /// Starts a streamed completion.
    fn chat(&self, request: ChatRequest) -> LlmStream;
    /// Starts connection setup early.
    async fn prewarm(&self) {}
}

/// The sending end of an [`LlmStream`], handed to [`LlmStreamTask::run`].
#[derive(Clone)]
pub struct ChunkSender {
    tx: mpsc::Sender<Result<ChatChunk, ApiError>>,
    emitted: Arc<AtomicUsize>,
}

impl ChunkSender {
    /// Wraps a channel sender.
    pub fn new(tx: mpsc::Sender<Result<ChatChunk, ApiError>>) -> Self {
        Self {
            tx,
            emitted: Arc::default(),
        }
    }

    /// Sends a chunk; `false` once the consumer is gone.
    pub async fn send(&self, chunk: ChatChunk) -> bool {
        if chunk.has_content() {
            self.emitted.fetch_add(1, Ordering::Relaxed);
        }
        self.tx.send(Ok(chunk)).await.is_ok()
    }

    /// Number of chunks with text or tool calls sent.
    pub fn emitted_content(&self) -> usize {
        self.emitted.load(Ordering::Relaxed)
    }

    /// Whether the consumer dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// One attempt of a streamed completion.
#[async_trait]
pub trait LlmStreamTask: Send + 'static {
    /// Sends the response's chunks to `out`.
    async fn run(&mut self, out: &ChunkSender) -> Result<(), ApiError>;
}

/// A streamed completion.
pub struct LlmStream {
    events: mpsc::Receiver<Result<ChatChunk, ApiError>>,
    task: crate::types::ProducerTask,
}

/// A whole completion gathered from an [`LlmStream`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CollectedResponse {
    /// All text.
    pub text: String,
    /// All tool calls.
    pub tool_calls: Vec<FunctionToolCall>,
    /// Usage, if reported.
    pub usage: Option<CompletionUsage>,
}

impl LlmStream {
    /// Runs `task`, retrying retryable errors per `conn` only while no text or tool call was
    /// emitted (a retry after content would duplicate speech).
    pub fn spawn(
        label: impl Into<String>,
        conn: ApiConnectOptions,
        mut task: impl LlmStreamTask,
    ) -> Self {
        let label = label.into();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let handle = tokio::spawn(async move {
            let out = ChunkSender::new(tx);
            let mut retries = 0;
            loop {
                match crate::types::catch_attempt(task.run(&out)).await {
                    Ok(()) => break,
                    Err(error) => {
                        if error.is_retryable()
                            && out.emitted_content() == 0
                            && retries < conn.max_retry
                            && !out.is_closed()
                        {
                            tracing::warn!(llm = %label, %error, retry = retries + 1, "completion failed, retrying");
                            tokio::time::sleep(conn.interval_for_retry(retries)).await;
                            retries += 1;
                            continue;
                        }
                        tracing::error!(llm = %label, %error, "completion failed");
                        let _ = out.tx.send(Err(error)).await;
                        break;
                    }
                }
            }
        });
        Self {
            events: rx,
            task: crate::types::ProducerTask::new(Some(handle)),
        }
    }

    /// Builds a stream from a channel whose producer the caller runs.
    pub fn from_channel(
        events: mpsc::Receiver<Result<ChatChunk, ApiError>>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            events,
            task: crate::types::ProducerTask::new(task),
        }
    }

    /// The next chunk, `None` at the end.
    pub async fn next_chunk(&mut self) -> Option<Result<ChatChunk, ApiError>> {
        std::future::poll_fn(|cx| self.task.poll_recv(&mut self.events, cx)).await
    }

    /// Reads the whole response.
    pub async fn collect(mut self) -> Result<CollectedResponse, ApiError> {
        let mut out = CollectedResponse::default();
        while let Some(chunk) =
            std::future::poll_fn(|cx| self.task.poll_recv(&mut self.events, cx)).await
        {
            let chunk = chunk?;
            if let Some(delta) = chunk.delta {
                if let Some(text) = delta.content {
                    out.text.push_str(&text);
                }
                out.tool_calls.extend(delta.tool_calls);
            }
            if chunk.usage.is_some() {
                out.usage = chunk.usage;
            }
        }
        Ok(out)
    }
}

impl Stream for LlmStream {
    type Item = Result<ChatChunk, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.task.poll_recv(&mut this.events, cx)
    }
}
