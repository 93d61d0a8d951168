//! Function tools: what the model may call, how arguments reach your code, and what comes back.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::chat_context::FunctionCall;
use crate::voice::{Agent, AgentSession, SpeechHandle};

/// Which tools the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// The model must call a tool.
    Required,
    /// The model must not call tools.
    None,
    /// The model must call this function.
    Function(String),
}

/// What the model sees of a tool: its name, description and JSON-schema parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// Tool name (`[a-zA-Z0-9_-]{1,64}`).
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// A tool failure whose message goes back to the model (it can apologize or try again).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// Message for the model.
    pub message: String,
}

impl ToolError {
    /// A tool error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Session data shared with tools and hooks. Store a type with interior mutability (e.g. a
/// `Mutex`) to change it from tools.
///
/// ```
/// use livekit_agents::llm::tool::Userdata;
/// use std::sync::Mutex;
///
/// #[derive(Default)]
/// struct Order { items: Vec<String> }
///
/// let data = Userdata::new(Mutex::new(Order::default()));
/// data.get::<Mutex<Order>>().unwrap().lock().unwrap().items.push("coffee".into());
/// assert!(data.get::<String>().is_none());
/// ```
#[derive(Clone, Default)]
pub struct Userdata(Option<Arc<dyn Any + Send + Sync>>);

impl Userdata {
    /// Wraps a value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Some(Arc::new(value)))
    }

    /// The value if it is a `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.clone()?.downcast::<T>().ok()
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Debug for Userdata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Userdata(..)" } else { "Userdata(None)" })
    }
}

/// What a tool handler receives besides its arguments.
#[derive(Clone)]
pub struct RunContext {
    /// The call being executed.
    pub function_call: FunctionCall,
    session: Option<AgentSession>,
    speech_handle: Option<SpeechHandle>,
    userdata: Userdata,
}

impl RunContext {
    /// A context for `function_call` within a session.
    pub fn new(
        function_call: FunctionCall,
        session: Option<AgentSession>,
        speech_handle: Option<SpeechHandle>,
        userdata: Userdata,
    ) -> Self {
        Self {
            function_call,
            session,
            speech_handle,
            userdata,
        }
    }

    /// A context with no session (for calling tools directly, e.g. in unit tests).
    pub fn detached(function_call: FunctionCall) -> Self {
        Self::new(function_call, None, None, Userdata::default())
    }

    /// The session running the tool.
    pub fn session(&self) -> Option<&AgentSession> {
        self.session.as_ref()
    }

    /// The speech during which the model called the tool.
    pub fn speech_handle(&self) -> Option<&SpeechHandle> {
        self.speech_handle.as_ref()
    }

    /// The session's userdata, if it is a `T`.
    pub fn userdata<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.userdata.get::<T>()
    }
}

/// What a tool returns.
pub enum ToolOutput {
    /// A value the model sees (serialized to JSON text; strings are passed as they are). The
    /// model is asked to reply.
    Value(serde_json::Value),
    /// Nothing: no follow-up reply is needed.
    None,
    /// Switch to another agent, optionally telling the model something.
    Handoff {
        /// The new agent.
        agent: Agent,
        /// Value for the model, if any.
        returns: Option<serde_json::Value>,
    },
}

impl std::fmt::Debug for ToolOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolOutput::Value(v) => f.debug_tuple("Value").field(v).finish(),
            ToolOutput::None => f.write_str("None"),
            ToolOutput::Handoff { returns, .. } => f
                .debug_struct("Handoff")
                .field("returns", returns)
                .finish_non_exhaustive(),
        }
    }
}

/// Conversion of a handler's return value into a [`ToolOutput`].
pub trait IntoToolOutput {
    /// Converts.
    fn into_tool_output(self) -> ToolOutput;
}

impl IntoToolOutput for ToolOutput {
    fn into_tool_output(self) -> ToolOutput {
        self
    }
}

impl IntoToolOutput for () {
    fn into_tool_output(self) -> ToolOutput {
        ToolOutput::None
    }
}

impl IntoToolOutput for String {
    fn into_tool_output(self) -> ToolOutput {
        ToolOutput::Value(serde_json::Value::String(self))
    }
}

impl IntoToolOutput for &'static str {
    fn into_tool_output(self) -> ToolOutput {
        ToolOutput::Value(serde_json::Value::String(self.to_owned()))
    }
}

impl IntoToolOutput for serde_json::Value {
    fn into_tool_output(self) -> ToolOutput {
        ToolOutput::Value(self)
    }
}

impl IntoToolOutput for Agent {
    fn into_tool_output(self) -> ToolOutput {
        ToolOutput::Handoff {
            agent: self,
            returns: None,
        }
    }
}

type ToolHandler =
    Arc<dyn Fn(RunContext, serde_json::Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>> + Send + Sync>;

/// A tool the model can call: a definition plus an async handler.
///
/// ```
/// use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
///
/// /// Arguments of `lookup_weather`.
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct WeatherArgs {
///     /// The city to look up.
///     location: String,
/// }
///
/// let tool = FunctionTool::new(
///     "lookup_weather",
///     "Look up the current weather for a city.",
///     |_ctx: RunContext, args: WeatherArgs| async move {
///         Ok::<_, ToolError>(format!("It is sunny in {}.", args.location))
///     },
/// );
/// assert_eq!(tool.definition().name, "lookup_weather");
/// ```
#[derive(Clone)]
pub struct FunctionTool {
    definition: ToolDefinition,
    handler: ToolHandler,
}

impl std::fmt::Debug for FunctionTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionTool")
            .field("name", &self.definition.name)
            .finish_non_exhaustive()
    }
}

impl FunctionTool {
    /// A tool whose arguments are the typed struct `A` (its JSON schema comes from `schemars`;
    /// doc comments on fields become descriptions).
    pub fn new<A, F, Fut, R>(name: impl Into<String>, description: impl Into<String>, handler: F) -> Self
    where
        A: DeserializeOwned + schemars::JsonSchema + Send + 'static,
        F: Fn(RunContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
        R: IntoToolOutput,
    {
        let parameters = parameters_schema::<A>();
        let handler = Arc::new(handler);
        let erased: ToolHandler = Arc::new(move |ctx, args| {
            let handler = handler.clone();
            Box::pin(async move {
                let args: A = serde_json::from_value(args)
                    .map_err(|e| ToolError::new(format!("invalid arguments: {e}")))?;
                handler(ctx, args).await.map(IntoToolOutput::into_tool_output)
            })
        });
        Self {
            definition: ToolDefinition {
                name: name.into(),
                description: description.into(),
                parameters,
            },
            handler: erased,
        }
    }

    /// A tool with a hand-written JSON schema; the handler receives the raw arguments object.
    pub fn raw<F, Fut, R>(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: serde_json::Value,
        handler: F,
    ) -> Self
    where
        F: Fn(RunContext, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
        R: IntoToolOutput,
    {
        let handler = Arc::new(handler);
        let erased: ToolHandler = Arc::new(move |ctx, args| {
            let handler = handler.clone();
            Box::pin(async move { handler(ctx, args).await.map(IntoToolOutput::into_tool_output) })
        });
        Self {
            definition: ToolDefinition {
                name: name.into(),
                description: description.into(),
                parameters,
            },
            handler: erased,
        }
    }

    /// The definition sent to the model.
    pub fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// Runs the tool on the model's JSON arguments text. Malformed JSON becomes a
    /// [`ToolError`] the model sees.
    pub async fn call(&self, ctx: RunContext, arguments: &str) -> Result<ToolOutput, ToolError> {
        let trimmed = arguments.trim();
        let args = if trimmed.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(trimmed)
                .map_err(|e| ToolError::new(format!("arguments are not valid JSON: {e}")))?
        };
        (self.handler)(ctx, args).await
    }
}

/// The JSON schema of `A` as an OpenAI-style parameters object.
pub fn parameters_schema<A: schemars::JsonSchema>() -> serde_json::Value {
    let schema = schemars::schema_for!(A);
    let mut value = serde_json::to_value(schema).unwrap_or_else(|_| serde_json::json!({"type": "object"}));
    if let Some(obj) = value.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        obj.entry("type").or_insert_with(|| serde_json::json!("object"));
        obj.entry("properties").or_insert_with(|| serde_json::json!({}));
    }
    value
}
