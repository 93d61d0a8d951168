//! Function tools: what the model may call, how arguments reach your code, and what comes back.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::chat_context::{FunctionCall, FunctionCallOutput};
use crate::voice::{Agent, AgentSession, SpeechHandle};

/// Which tools the model may call.
///
/// Serializes in the OpenAI form: `"auto"`, `"required"`, `"none"`, or
/// `{"type": "function", "function": {"name": "…"}}` (a bare `{"function": "…"}` or
/// `{"name": "…"}` is also accepted when reading).
///
/// ```
/// use livekit_agents::llm::ToolChoice;
///
/// assert_eq!(serde_json::to_string(&ToolChoice::Auto).unwrap(), r#""auto""#);
/// let named: ToolChoice = serde_json::from_str(
///     r#"{"type":"function","function":{"name":"lookup_weather"}}"#,
/// ).unwrap();
/// assert_eq!(named, ToolChoice::Function("lookup_weather".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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

impl Serialize for ToolChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Function(name) => serde_json::json!({
                "type": "function",
                "function": { "name": name },
            })
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(d)?;
        match &value {
            serde_json::Value::String(s) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "required" => Ok(ToolChoice::Required),
                "none" => Ok(ToolChoice::None),
                other => Err(D::Error::custom(format!(
                    "unknown tool choice {other:?} (expected auto, required or none)"
                ))),
            },
            serde_json::Value::Object(obj) => {
                let name = match obj.get("function") {
                    Some(serde_json::Value::Object(f)) => f.get("name"),
                    Some(name @ serde_json::Value::String(_)) => Some(name),
                    _ => obj.get("name"),
                };
                match name.and_then(|n| n.as_str()) {
                    Some(name) => Ok(ToolChoice::Function(name.to_owned())),
                    None => Err(D::Error::custom(format!(
                        "tool choice object without a function name: {value}"
                    ))),
                }
            }
            _ => Err(D::Error::custom(format!("invalid tool choice: {value}"))),
        }
    }
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

impl ToolDefinition {
    /// Checks what providers require of a tool: a name of 1 to 64 characters from
    /// `[a-zA-Z0-9_-]`, and parameters that are a JSON-schema object (`"type": "object"`).
    ///
    /// ```
    /// use livekit_agents::llm::ToolDefinition;
    ///
    /// let def = ToolDefinition {
    ///     name: "end_call".into(),
    ///     description: "Hang up.".into(),
    ///     parameters: serde_json::json!({"type": "object", "properties": {}}),
    /// };
    /// assert!(def.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), InvalidToolDefinition> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(InvalidToolDefinition {
                tool: self.name.clone(),
                reason: "the name must be 1 to 64 characters from [a-zA-Z0-9_-]".into(),
            });
        }
        let is_object = self.parameters.is_object()
            && schema_types(&self.parameters).iter().any(|t| t == "object");
        if !is_object {
            return Err(InvalidToolDefinition {
                tool: self.name.clone(),
                reason: format!(
                    "parameters must be a JSON schema of type \"object\", got {}",
                    self.parameters
                ),
            });
        }
        Ok(())
    }

    /// This definition with its parameters converted by [`to_strict_schema`], for providers'
    /// strict (structured-output) tool mode.
    pub fn to_strict(&self) -> Result<ToolDefinition, StrictSchemaError> {
        Ok(ToolDefinition {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: to_strict_schema(&self.parameters)?,
        })
    }
}

/// A [`ToolDefinition`] providers would reject.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid tool definition {tool:?}: {reason}")]
#[non_exhaustive]
pub struct InvalidToolDefinition {
    /// The tool's name.
    pub tool: String,
    /// What is wrong.
    pub reason: String,
}

/// The error the model reads when it called a tool that does not exist (the reference's text,
/// naming the tools it may call).
pub fn unknown_tool_error<'a>(
    name: &str,
    available: impl IntoIterator<Item = &'a str>,
) -> ToolError {
    let available: Vec<&str> = available.into_iter().collect();
    ToolError::new(format!(
        "Unknown function: {name} - available tools: {}",
        available.join(", ")
    ))
}

/// The text the model sees when a tool fails with an error that was not meant for it (any
/// error converted with `?`, or a panic): the reference's wording. The real error is logged.
pub const INTERNAL_ERROR_MESSAGE: &str = "An internal error occurred";

/// A tool failure. Two kinds, as in the reference:
///
/// - [`ToolError::new`]: a message for the model (it can apologize, ask again or try another
///   way), e.g. "no table is free at 7 pm";
/// - any other error, converted with `?` (`From<E: std::error::Error>`): the model sees only
///   [`INTERNAL_ERROR_MESSAGE`], because the error's text may hold internals; the real error
///   is logged at ERROR level with the tool's name and kept in [`ToolError::source_error`].
///
/// `ToolError` deliberately does not implement `std::error::Error` itself, so that the blanket
/// conversion from every error type is possible (the same choice as `anyhow::Error`).
///
/// ```
/// use livekit_agents::llm::ToolError;
///
/// fn parse_guests(text: &str) -> Result<u32, ToolError> {
///     let n: u32 = text.parse()?; // a ParseIntError: the model sees a generic message
///     if n == 0 {
///         return Err(ToolError::new("a booking needs at least one guest"));
///     }
///     Ok(n)
/// }
/// assert_eq!(parse_guests("0").unwrap_err().message(), "a booking needs at least one guest");
/// let internal = parse_guests("many").unwrap_err();
/// assert!(internal.is_internal());
/// assert_eq!(internal.message(), "An internal error occurred");
/// ```
#[derive(Clone)]
pub struct ToolError {
    /// The message the model sees.
    pub message: String,
    /// The underlying error of an internal failure (never shown to the model).
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ToolError {
    /// A tool error whose message the model sees.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An internal failure: the model sees [`INTERNAL_ERROR_MESSAGE`], `error` is logged.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self {
            message: INTERNAL_ERROR_MESSAGE.to_owned(),
            source: Some(Arc::from(error.into())),
        }
    }

    /// The message the model sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is an internal failure (its real cause is not shown to the model).
    pub fn is_internal(&self) -> bool {
        self.source.is_some()
    }

    /// The underlying error of an internal failure.
    pub fn source_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ToolError {
    fn from(error: E) -> Self {
        Self::internal(error)
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::fmt::Debug for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ToolError");
        d.field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

/// Equal when the model would see the same thing (the message and whether it is internal).
impl PartialEq for ToolError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message && self.is_internal() == other.is_internal()
    }
}

/// What a tool function may return: `Result<T, E>` where `T` is an [`IntoToolOutput`] and `E`
/// converts into a [`ToolError`] (any error type, or `ToolError` itself), or a plain
/// [`IntoToolOutput`] for tools that cannot fail. Used by the `#[function_tool]` macro.
pub trait IntoToolResult {
    /// Converts.
    fn into_tool_result(self) -> Result<ToolOutput, ToolError>;
}

impl<T: IntoToolOutput, E: Into<ToolError>> IntoToolResult for Result<T, E> {
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        self.map(IntoToolOutput::into_tool_output)
            .map_err(Into::into)
    }
}

impl<T: IntoToolOutput> IntoToolResult for T {
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        Ok(self.into_tool_output())
    }
}

/// Session data shared with tools and hooks (the reference's `session.userdata`). Store a
/// type with interior mutability (e.g. a `Mutex`) to change it from tools.
///
/// Reading it names the type, and a mismatch is a typed [`UserdataError`] (which converts into
/// a [`ToolError`], so `?` works in a tool), never a silent `None`. The per-process store that
/// a prewarm function fills is a different thing: `worker::ProcessUserdata`.
///
/// ```
/// use livekit_agents::llm::{Userdata, UserdataError};
/// use std::sync::Mutex;
///
/// #[derive(Default)]
/// struct Order { items: Vec<String> }
///
/// let data = Userdata::new(Mutex::new(Order::default()));
/// data.get::<Mutex<Order>>().unwrap().lock().unwrap().items.push("coffee".into());
/// let err = data.get::<String>().unwrap_err();
/// assert!(matches!(err, UserdataError::WrongType { .. }));
/// assert!(err.to_string().contains("Order"), "{err}");
/// assert!(matches!(Userdata::default().get::<String>(), Err(UserdataError::NotSet { .. })));
/// ```
#[derive(Clone, Default)]
pub struct Userdata(Option<(Arc<dyn Any + Send + Sync>, &'static str)>);

impl Userdata {
    /// Wraps a value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Some((Arc::new(value), std::any::type_name::<T>())))
    }

    /// The value, if it is a `T`; otherwise why not.
    pub fn get<T: Any + Send + Sync>(&self) -> Result<Arc<T>, UserdataError> {
        let expected = std::any::type_name::<T>();
        let (value, actual) = self.0.clone().ok_or(UserdataError::NotSet { expected })?;
        value
            .downcast::<T>()
            .map_err(|_| UserdataError::WrongType { expected, actual })
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The name of the stored value's type, if any.
    pub fn type_name(&self) -> Option<&'static str> {
        self.0.as_ref().map(|(_, name)| *name)
    }
}

impl std::fmt::Debug for Userdata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some((_, name)) => write!(f, "Userdata({name})"),
            None => f.write_str("Userdata(None)"),
        }
    }
}

/// Why typed userdata (the session's [`Userdata`] or the process's
/// `worker::ProcessUserdata`) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserdataError {
    /// No value was set (e.g. `AgentSessionBuilder::userdata` was not called).
    #[error("no userdata is set (a {expected} was asked for)")]
    NotSet {
        /// The type asked for.
        expected: &'static str,
    },
    /// A value of another type is stored.
    #[error("the userdata is a {actual}, not a {expected}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        actual: &'static str,
    },
    /// Nothing is stored under this key of the process userdata.
    #[error("no process userdata under `{key}` (a {expected} was asked for)")]
    MissingKey {
        /// The key.
        key: String,
        /// The type asked for.
        expected: &'static str,
    },
}

/// What a tool handler receives besides its arguments.
#[derive(Clone)]
pub struct RunContext {
    /// The call being executed.
    pub function_call: FunctionCall,
    session: Option<AgentSession>,
    speech_handle: Option<SpeechHandle>,
    userdata: Userdata,
    /// The generation step of `speech_handle` that called the tool (1-based).
    step: u32,
}

impl RunContext {
    /// A context for `function_call` within a session.
    pub fn new(
        function_call: FunctionCall,
        session: Option<AgentSession>,
        speech_handle: Option<SpeechHandle>,
        userdata: Userdata,
    ) -> Self {
        let step = speech_handle.as_ref().map_or(0, SpeechHandle::num_steps);
        Self {
            function_call,
            session,
            speech_handle,
            userdata,
            step,
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

    /// The session's userdata as a `T`; a typed error (usable with `?` in a tool) when none is
    /// set or it has another type.
    pub fn userdata<T: Any + Send + Sync>(&self) -> Result<Arc<T>, UserdataError> {
        self.userdata.get::<T>()
    }

    /// Waits until the words the agent said in the step that called this tool finished playing
    /// (or were interrupted), as the reference's `RunContext.wait_for_playout`.
    ///
    /// Unlike [`SpeechHandle::wait_for_playout`], which waits for the whole speech, including
    /// this tool and the reply to its output (so awaiting it from the tool never returns), this
    /// waits only for what was said before the tool ran: "say goodbye, then hang up" is
    ///
    /// ```no_run
    /// use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
    ///
    /// let end_call = FunctionTool::new(
    ///     "end_call",
    ///     "Ends the call once the user said goodbye.",
    ///     |ctx: RunContext, _: ()| async move {
    ///         ctx.wait_for_playout().await; // the goodbye is heard first
    ///         if let Some(session) = ctx.session() {
    ///             session.close().await; // then hang up
    ///         }
    ///         Ok::<_, ToolError>(())
    ///     },
    /// );
    /// ```
    ///
    /// Returns at once for a context without a speech ([`RunContext::detached`]).
    pub async fn wait_for_playout(&self) {
        if let Some(handle) = &self.speech_handle {
            handle.wait_for_step_playout(self.step).await;
        }
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

/// Numbers and booleans reach the model as their JSON text.
macro_rules! json_scalar_output {
    ($($t:ty),*) => {$(
        impl IntoToolOutput for $t {
            fn into_tool_output(self) -> ToolOutput {
                ToolOutput::Value(serde_json::Value::from(self))
            }
        }
    )*};
}
json_scalar_output!(bool, i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

/// `None` returns nothing (no reply needed); `Some(v)` returns `v`.
impl<T: IntoToolOutput> IntoToolOutput for Option<T> {
    fn into_tool_output(self) -> ToolOutput {
        match self {
            Some(v) => v.into_tool_output(),
            None => ToolOutput::None,
        }
    }
}

/// A handoff that also tells the model something (the reference's `return agent, "text"`).
impl IntoToolOutput for (Agent, serde_json::Value) {
    fn into_tool_output(self) -> ToolOutput {
        ToolOutput::Handoff {
            agent: self.0,
            returns: Some(self.1),
        }
    }
}

/// A handoff that also tells the model something.
impl IntoToolOutput for (Agent, String) {
    fn into_tool_output(self) -> ToolOutput {
        (self.0, serde_json::Value::String(self.1)).into_tool_output()
    }
}

/// A handoff that also tells the model something.
impl IntoToolOutput for (Agent, &'static str) {
    fn into_tool_output(self) -> ToolOutput {
        (self.0, serde_json::Value::String(self.1.to_owned())).into_tool_output()
    }
}

impl ToolOutput {
    /// A value from any serializable type (a struct becomes a JSON object the model reads).
    ///
    /// ```
    /// use livekit_agents::llm::{ToolError, ToolOutput};
    ///
    /// #[derive(serde::Serialize)]
    /// struct Weather { temperature_c: f32, sky: &'static str }
    ///
    /// let out = ToolOutput::json(&Weather { temperature_c: 21.5, sky: "clear" })?;
    /// assert!(matches!(out, ToolOutput::Value(v) if v["sky"] == "clear"));
    /// # Ok::<(), ToolError>(())
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<ToolOutput, ToolError> {
        serde_json::to_value(value)
            .map(ToolOutput::Value)
            .map_err(|e| ToolError::new(format!("the tool's result could not be serialized: {e}")))
    }
}

type ToolHandler = Arc<
    dyn Fn(RunContext, serde_json::Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>>
        + Send
        + Sync,
>;

/// Flags of a [`FunctionTool`] (the reference's `ToolFlag`); combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ToolFlags(u8);

impl ToolFlags {
    /// No flag.
    pub const NONE: ToolFlags = ToolFlags(0);
    /// Hidden from the model during the replies an agent's `on_enter` starts (its greeting),
    /// so a tool that needs the user's answer ("confirm the email") is not called before the
    /// user said anything. The reference's `ToolFlag.IGNORE_ON_ENTER`.
    pub const IGNORE_ON_ENTER: ToolFlags = ToolFlags(1);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: ToolFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for ToolFlags {
    type Output = ToolFlags;
    fn bitor(self, rhs: ToolFlags) -> ToolFlags {
        ToolFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ToolFlags {
    fn bitor_assign(&mut self, rhs: ToolFlags) {
        self.0 |= rhs.0;
    }
}

/// A named group of tools (the reference's `Toolset`), given to an agent with
/// [`AgentBuilder::toolset`](crate::voice::AgentBuilder::toolset). The agent can disable and
/// re-enable the whole group at run time by its id
/// ([`Agent::disable_toolset`](crate::voice::Agent::disable_toolset)), e.g. payment tools only
/// once the user is verified. (Not to be confused with [`ToolSet`], the tools of one
/// generation by name.)
///
/// ```
/// use livekit_agents::llm::{FunctionTool, RunContext, ToolError, Toolset};
///
/// let refund = FunctionTool::new("refund", "Refund the order.", |_: RunContext, _: ()| async {
///     Ok::<_, ToolError>("refunded")
/// });
/// let payments = Toolset::new("payments", [refund]);
/// assert_eq!(payments.id(), "payments");
/// assert_eq!(payments.tools()[0].name(), "refund");
/// ```
#[derive(Debug, Clone)]
pub struct Toolset {
    id: String,
    tools: Vec<FunctionTool>,
}

impl Toolset {
    /// A toolset named `id`.
    pub fn new(id: impl Into<String>, tools: impl IntoIterator<Item = FunctionTool>) -> Self {
        Self {
            id: id.into(),
            tools: tools.into_iter().collect(),
        }
    }

    /// The toolset's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its tools.
    pub fn tools(&self) -> &[FunctionTool] {
        &self.tools
    }
}

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
    flags: ToolFlags,
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
    pub fn new<A, F, Fut, R>(
        name: impl Into<String>,
        description: impl Into<String>,
        handler: F,
    ) -> Self
    where
        A: DeserializeOwned + schemars::JsonSchema + Send + 'static,
        F: Fn(RunContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
        R: IntoToolOutput,
    {
        let parameters = parameters_schema::<A>();
        let name: String = name.into();
        let tool_name: Arc<str> = Arc::from(name.as_str());
        let handler = Arc::new(handler);
        let erased: ToolHandler = Arc::new(move |ctx, args| {
            let handler = handler.clone();
            let tool_name = tool_name.clone();
            Box::pin(async move {
                let args: A = parse_arguments(args, &tool_name)?;
                handler(ctx, args)
                    .await
                    .map(IntoToolOutput::into_tool_output)
            })
        });
        Self {
            definition: ToolDefinition {
                name,
                description: description.into(),
                parameters,
            },
            handler: erased,
            flags: ToolFlags::NONE,
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
            Box::pin(async move {
                handler(ctx, args)
                    .await
                    .map(IntoToolOutput::into_tool_output)
            })
        });
        Self {
            definition: ToolDefinition {
                name: name.into(),
                description: description.into(),
                parameters,
            },
            handler: erased,
            flags: ToolFlags::NONE,
        }
    }

    /// This tool with `flags` (the reference's `@function_tool(flags=…)`).
    ///
    /// ```
    /// use livekit_agents::llm::{FunctionTool, RunContext, ToolError, ToolFlags};
    ///
    /// let tool = FunctionTool::new("confirm", "Confirm the order.", |_: RunContext, _: ()| async {
    ///     Ok::<_, ToolError>("confirmed")
    /// })
    /// .with_flags(ToolFlags::IGNORE_ON_ENTER);
    /// assert!(tool.flags().contains(ToolFlags::IGNORE_ON_ENTER));
    /// ```
    pub fn with_flags(mut self, flags: ToolFlags) -> Self {
        self.flags = flags;
        self
    }

    /// The tool's flags.
    pub fn flags(&self) -> ToolFlags {
        self.flags
    }

    /// This tool with another handler (same name, description, schema and flags): what
    /// [`mock_tools`](crate::testing::mock_tools) uses to replace a tool's behaviour in tests.
    /// The handler receives the raw JSON arguments object.
    pub fn with_handler<F, Fut, R>(mut self, handler: F) -> Self
    where
        F: Fn(RunContext, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
        R: IntoToolOutput,
    {
        let handler = Arc::new(handler);
        self.handler = Arc::new(move |ctx, args| {
            let handler = handler.clone();
            Box::pin(async move {
                handler(ctx, args)
                    .await
                    .map(IntoToolOutput::into_tool_output)
            })
        });
        self
    }

    /// This tool (its definition and flags) running `other`'s handler.
    pub(crate) fn with_handler_of(mut self, other: &FunctionTool) -> Self {
        self.handler = other.handler.clone();
        self
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
    ///
    /// A handler that panics does not take the session down: the panic is logged and the model
    /// sees a generic error (the panic message may hold internals, so it is not forwarded).
    pub async fn call(&self, ctx: RunContext, arguments: &str) -> Result<ToolOutput, ToolError> {
        let trimmed = arguments.trim();
        let args = if trimmed.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(trimmed).map_err(|e| {
                ToolError::new(format!(
                    "Error parsing arguments for `{}`: {e}",
                    self.definition.name
                ))
            })?
        };
        match AssertUnwindSafe((self.handler)(ctx, args))
            .catch_unwind()
            .await
        {
            Ok(Err(e)) if e.is_internal() => {
                tracing::error!(tool = %self.definition.name, error = %e, "tool failed");
                Err(e)
            }
            Ok(result) => result,
            Err(_) => {
                tracing::error!(tool = %self.definition.name, "tool handler panicked");
                Err(ToolError::new(INTERNAL_ERROR_MESSAGE))
            }
        }
    }
}

/// Deserializes the model's arguments object into `A`. An empty object also reads as `null`,
/// so tools taking `()` work; serde's message (missing field, wrong type) reaches the model.
fn parse_arguments<A: DeserializeOwned>(
    args: serde_json::Value,
    tool: &str,
) -> Result<A, ToolError> {
    let empty = args.as_object().is_some_and(|o| o.is_empty());
    match serde_json::from_value::<A>(args) {
        Ok(a) => Ok(a),
        Err(e) => {
            if empty {
                if let Ok(a) = serde_json::from_value::<A>(serde_json::Value::Null) {
                    return Ok(a);
                }
            }
            Err(ToolError::new(format!(
                "Error parsing arguments for `{tool}`: {e}"
            )))
        }
    }
}

/// The tools available to the model, by name.
///
/// Adding a tool whose name is already present replaces it (the later definition wins, like
/// an agent overriding a session tool).
///
/// ```
/// # tokio_test_block_on(async {
/// use livekit_agents::llm::{FunctionCall, RunContext, ToolError, ToolSet};
/// use livekit_agents::llm::FunctionTool;
///
/// let tools = ToolSet::new().with(FunctionTool::raw(
///     "ping",
///     "Answers pong.",
///     serde_json::json!({"type": "object", "properties": {}}),
///     |_ctx: RunContext, _args: serde_json::Value| async { Ok::<_, ToolError>("pong") },
/// ));
/// let call = FunctionCall::new("call_1", "ping", "{}");
/// let result = tools.execute(RunContext::detached(call)).await;
/// assert_eq!(result.output.output, "pong");
/// assert!(result.reply_required);
///
/// let unknown = tools.execute(RunContext::detached(FunctionCall::new("c2", "nope", "{}"))).await;
/// assert!(unknown.output.is_error);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ToolSet {
    tools: Vec<FunctionTool>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(FunctionTool::name))
            .finish()
    }
}

impl ToolSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces by name) a tool, builder style.
    pub fn with(mut self, tool: FunctionTool) -> Self {
        self.add(tool);
        self
    }

    /// Adds a tool, replacing and returning any tool with the same name.
    pub fn add(&mut self, tool: FunctionTool) -> Option<FunctionTool> {
        match self.tools.iter_mut().find(|t| t.name() == tool.name()) {
            Some(existing) => Some(std::mem::replace(existing, tool)),
            None => {
                self.tools.push(tool);
                None
            }
        }
    }

    /// Adds every tool of `other` (replacing same-named ones).
    pub fn extend(&mut self, other: impl IntoIterator<Item = FunctionTool>) {
        for tool in other {
            self.add(tool);
        }
    }

    /// Removes the tool with this name.
    pub fn remove(&mut self, name: &str) -> Option<FunctionTool> {
        let idx = self.tools.iter().position(|t| t.name() == name)?;
        Some(self.tools.remove(idx))
    }

    /// The tool with this name.
    pub fn get(&self, name: &str) -> Option<&FunctionTool> {
        self.tools.iter().find(|t| t.name() == name)
    }

    /// Whether a tool has this name.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tools, in the order they were first added.
    pub fn iter(&self) -> impl Iterator<Item = &FunctionTool> + '_ {
        self.tools.iter()
    }

    /// The tool names.
    pub fn names(&self) -> Vec<String> {
        self.tools.iter().map(|t| t.name().to_owned()).collect()
    }

    /// The definitions to send to the model.
    pub fn definitions(&self) -> Vec<ToolDefinition> {
        self.tools.iter().map(|t| t.definition().clone()).collect()
    }

    /// Runs the tool named by `ctx.function_call` on its arguments. An unknown name is a
    /// [`ToolError`] the model sees (`Unknown function: NAME - available tools: …`, as the
    /// reference, so the model can correct itself).
    pub async fn call(&self, ctx: RunContext) -> Result<ToolOutput, ToolError> {
        let name = ctx.function_call.name.clone();
        match self.get(&name) {
            Some(tool) => {
                let arguments = ctx.function_call.arguments.clone();
                tool.call(ctx, &arguments).await
            }
            None => {
                tracing::warn!(tool = %name, "the model called an unknown tool");
                Err(unknown_tool_error(
                    &name,
                    self.tools.iter().map(FunctionTool::name),
                ))
            }
        }
    }

    /// Runs the call like [`call`](Self::call) and turns the result into the output item to
    /// commit (see [`ToolCallResult::from_result`]).
    pub async fn execute(&self, ctx: RunContext) -> ToolCallResult {
        let call = ctx.function_call.clone();
        let result = self.call(ctx).await;
        ToolCallResult::from_result(&call, result)
    }
}

impl FromIterator<FunctionTool> for ToolSet {
    fn from_iter<I: IntoIterator<Item = FunctionTool>>(iter: I) -> Self {
        let mut set = ToolSet::new();
        set.extend(iter);
        set
    }
}

impl IntoIterator for ToolSet {
    type Item = FunctionTool;
    type IntoIter = std::vec::IntoIter<FunctionTool>;

    fn into_iter(self) -> Self::IntoIter {
        self.tools.into_iter()
    }
}

/// The outcome of one tool call, ready to commit to the chat context.
pub struct ToolCallResult {
    /// The call.
    pub call: FunctionCall,
    /// The output item the model sees.
    pub output: FunctionCallOutput,
    /// Whether the model should be asked to reply to the output (false when the tool returned
    /// nothing).
    pub reply_required: bool,
    /// The agent to switch to, when the tool handed off.
    pub handoff: Option<Agent>,
}

impl std::fmt::Debug for ToolCallResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCallResult")
            .field("call", &self.call)
            .field("output", &self.output)
            .field("reply_required", &self.reply_required)
            .field("handoff", &self.handoff.as_ref().map(Agent::id))
            .finish()
    }
}

impl ToolCallResult {
    /// Builds the output item for `call` from what the tool returned:
    ///
    /// - `Err(ToolError)`: the message, `is_error`, reply required;
    /// - a string value: the string as is (not JSON-quoted); another JSON value: its JSON text;
    ///   reply required;
    /// - [`ToolOutput::None`] (or a JSON `null`): an empty output, no reply required;
    /// - a handoff: the returned value if any (reply required only then), plus the new agent.
    pub fn from_result(call: &FunctionCall, result: Result<ToolOutput, ToolError>) -> Self {
        let (text, is_error, reply_required, handoff) = match result {
            Err(e) => (e.message, true, true, None),
            Ok(ToolOutput::None) => (String::new(), false, false, None),
            Ok(ToolOutput::Value(v)) => match value_text(v) {
                Some(text) => (text, false, true, None),
                None => (String::new(), false, false, None),
            },
            Ok(ToolOutput::Handoff { agent, returns }) => match returns.and_then(value_text) {
                Some(text) => (text, false, true, Some(agent)),
                None => (String::new(), false, false, Some(agent)),
            },
        };
        Self {
            call: call.clone(),
            output: FunctionCallOutput::for_call(call, text, is_error),
            reply_required,
            handoff,
        }
    }
}

/// The text the model sees for a returned value; `None` for JSON `null`.
fn value_text(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// The JSON schema of `A` as an OpenAI-style parameters object (`"type": "object"` with
/// `properties`; a unit type `()` becomes an object without properties).
pub fn parameters_schema<A: schemars::JsonSchema>() -> serde_json::Value {
    let schema = schemars::schema_for!(A);
    let mut value =
        serde_json::to_value(schema).unwrap_or_else(|_| serde_json::json!({"type": "object"}));
    if let Some(obj) = value.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        if obj.get("type").and_then(|t| t.as_str()) == Some("null") {
            obj.insert("type".into(), serde_json::json!("object"));
        }
        obj.entry("type")
            .or_insert_with(|| serde_json::json!("object"));
        obj.entry("properties")
            .or_insert_with(|| serde_json::json!({}));
    }
    value
}

/// Why a schema cannot be used in strict mode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StrictSchemaError {
    /// An object allows properties beyond the declared ones.
    #[error("{path}: objects with additionalProperties cannot be strict")]
    AdditionalProperties {
        /// JSON pointer of the object.
        path: String,
    },
    /// An optional property does not accept `null`, so making it required would change what
    /// the tool accepts.
    #[error("{path}: optional property does not accept null, so it cannot be made required")]
    OptionalNotNullable {
        /// JSON pointer of the property.
        path: String,
    },
    /// A `$ref` points outside the schema's `$defs`.
    #[error("{path}: unresolvable $ref {reference}")]
    UnresolvedRef {
        /// JSON pointer of the reference.
        path: String,
        /// The reference.
        reference: String,
    },
}

/// String formats the OpenAI strict mode accepts; other `format` values are dropped.
const STRICT_FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

/// Converts a parameters schema to the form OpenAI's strict mode (`"strict": true`) requires:
/// every object gets `"additionalProperties": false` and lists all its properties as
/// `required`; `oneOf` becomes `anyOf`; a single-entry `allOf` and `$ref`s with sibling keys
/// are inlined; `"default": null` and unsupported string `format`s are removed.
///
/// Making an optional property required keeps its meaning only if it accepts `null` (an
/// `Option<T>` field does: the model then sends `null`), so an optional property that does not
/// is an error, as is an object with `additionalProperties`. Callers then send the tool without
/// strict mode.
///
/// ```
/// use livekit_agents::llm::to_strict_schema;
/// use serde_json::json;
///
/// let schema = json!({
///     "type": "object",
///     "properties": {
///         "city": {"type": "string"},
///         "unit": {"type": ["string", "null"]}
///     },
///     "required": ["city"]
/// });
/// let strict = to_strict_schema(&schema).unwrap();
/// assert_eq!(strict["required"], json!(["city", "unit"]));
/// assert_eq!(strict["additionalProperties"], json!(false));
/// ```
pub fn to_strict_schema(
    schema: &serde_json::Value,
) -> Result<serde_json::Value, StrictSchemaError> {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .cloned()
        .unwrap_or_default();
    let mut out = schema.clone();
    strictify(&mut out, "#", &defs, 0)?;
    Ok(out)
}

/// Deepest nesting followed through `$ref` inlining (recursive types would loop forever).
const MAX_STRICT_DEPTH: usize = 32;

fn strictify(
    node: &mut serde_json::Value,
    path: &str,
    defs: &serde_json::Value,
    depth: usize,
) -> Result<(), StrictSchemaError> {
    use serde_json::Value;
    let Some(obj) = node.as_object_mut() else {
        return Ok(());
    };
    if depth > MAX_STRICT_DEPTH {
        return Ok(());
    }

    // `$ref` next to other keys: inline the definition (siblings win).
    if obj.len() > 1 {
        if let Some(Value::String(reference)) = obj.get("$ref").cloned() {
            let resolved =
                resolve_ref(defs, &reference).ok_or_else(|| StrictSchemaError::UnresolvedRef {
                    path: path.to_owned(),
                    reference: reference.clone(),
                })?;
            obj.remove("$ref");
            if let Value::Object(def) = resolved.clone() {
                for (k, v) in def {
                    obj.entry(k).or_insert(v);
                }
            }
            return strictify(node, path, defs, depth + 1);
        }
    }

    // A single `allOf` entry is the same as its content.
    if let Some(Value::Array(all)) = obj.get("allOf") {
        if all.len() == 1 {
            if let Some(Value::Object(inner)) = obj
                .remove("allOf")
                .and_then(|a| a.as_array().and_then(|a| a.first().cloned()))
            {
                for (k, v) in inner {
                    obj.entry(k).or_insert(v);
                }
                return strictify(node, path, defs, depth + 1);
            }
        }
    }

    if let Some(one_of) = obj.remove("oneOf") {
        obj.insert("anyOf".into(), one_of);
    }
    if obj.get("default") == Some(&Value::Null) {
        obj.remove("default");
    }
    if let Some(Value::String(format)) = obj.get("format") {
        if !STRICT_FORMATS.contains(&format.as_str()) {
            obj.remove("format");
        }
    }

    let is_object = obj.contains_key("properties")
        || schema_types(&Value::Object(obj.clone()))
            .iter()
            .any(|t| t == "object");
    if is_object {
        match obj.get("additionalProperties") {
            None | Some(Value::Bool(false)) => {}
            Some(_) => {
                return Err(StrictSchemaError::AdditionalProperties {
                    path: path.to_owned(),
                })
            }
        }
        obj.insert("additionalProperties".into(), Value::Bool(false));
        let required: Vec<String> = obj
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut names = Vec::new();
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            for (name, prop) in props.iter_mut() {
                let prop_path = format!("{path}/properties/{name}");
                strictify(prop, &prop_path, defs, depth + 1)?;
                if !required.contains(name) && !accepts_null(prop, defs, 0) {
                    return Err(StrictSchemaError::OptionalNotNullable { path: prop_path });
                }
                names.push(Value::String(name.clone()));
            }
        } else {
            obj.insert("properties".into(), Value::Object(Default::default()));
        }
        obj.insert("required".into(), Value::Array(names));
    }

    for key in ["anyOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            for (i, sub) in list.iter_mut().enumerate() {
                strictify(sub, &format!("{path}/{key}/{i}"), defs, depth + 1)?;
            }
        }
    }
    if let Some(items) = obj.get_mut("items") {
        match items {
            Value::Array(list) => {
                for (i, sub) in list.iter_mut().enumerate() {
                    strictify(sub, &format!("{path}/items/{i}"), defs, depth + 1)?;
                }
            }
            sub => strictify(sub, &format!("{path}/items"), defs, depth + 1)?,
        }
    }
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(map)) = obj.get_mut(key) {
            for (name, sub) in map.iter_mut() {
                strictify(sub, &format!("{path}/{key}/{name}"), defs, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn resolve_ref<'a>(defs: &'a serde_json::Value, reference: &str) -> Option<&'a serde_json::Value> {
    let name = reference
        .strip_prefix("#/$defs/")
        .or_else(|| reference.strip_prefix("#/definitions/"))?;
    defs.get(name)
}

/// The `type` keyword as a list (`"string"` or `["string", "null"]`).
fn schema_types(schema: &serde_json::Value) -> Vec<String> {
    match schema.get("type") {
        Some(serde_json::Value::String(t)) => vec![t.clone()],
        Some(serde_json::Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `schema` admits `null`.
fn accepts_null(schema: &serde_json::Value, defs: &serde_json::Value, depth: usize) -> bool {
    use serde_json::Value;
    if depth > MAX_STRICT_DEPTH {
        return false;
    }
    if schema_types(schema).iter().any(|t| t == "null")
        || schema.get("nullable") == Some(&Value::Bool(true))
        || schema.get("const") == Some(&Value::Null)
        || schema
            .get("enum")
            .and_then(|e| e.as_array())
            .is_some_and(|e| e.contains(&Value::Null))
    {
        return true;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = schema.get(key) {
            if list.iter().any(|s| accepts_null(s, defs, depth + 1)) {
                return true;
            }
        }
    }
    if let Some(Value::String(reference)) = schema.get("$ref") {
        if let Some(def) = resolve_ref(defs, reference) {
            return accepts_null(def, defs, depth + 1);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Arguments of the weather tool.
    #[derive(Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct WeatherArgs {
        /// The city to look up.
        location: String,
        /// Temperature unit, if the user said.
        unit: Option<Unit>,
        /// How many days to forecast.
        days: Option<u32>,
    }

    #[derive(Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Unit {
        Celsius,
        Fahrenheit,
    }

    fn weather_tool() -> FunctionTool {
        FunctionTool::new(
            "lookup_weather",
            "Look up the weather.",
            |_ctx: RunContext, args: WeatherArgs| async move {
                Ok::<_, ToolError>(format!("sunny in {}", args.location))
            },
        )
    }

    fn ctx(name: &str, args: &str) -> RunContext {
        RunContext::detached(FunctionCall::new("call_1", name, args))
    }

    async fn call(tool: &FunctionTool, args: &str) -> Result<ToolOutput, ToolError> {
        tool.call(ctx(tool.name(), args), args).await
    }

    fn value(out: Result<ToolOutput, ToolError>) -> serde_json::Value {
        match out {
            Ok(ToolOutput::Value(v)) => v,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn typed_schema_is_an_openai_object_with_descriptions() {
        let def = weather_tool().definition().clone();
        def.validate().unwrap();
        let p = &def.parameters;
        assert_eq!(p["type"], "object");
        assert!(p.get("$schema").is_none());
        assert_eq!(p["required"], json!(["location"]));
        assert_eq!(
            p["properties"]["location"]["description"],
            "The city to look up."
        );
        assert_eq!(p["properties"]["location"]["type"], "string");
        assert!(p["properties"]["days"]["description"]
            .as_str()
            .unwrap()
            .contains("forecast"));
    }

    #[test]
    fn unit_args_schema_is_an_empty_object() {
        let tool = FunctionTool::new(
            "hang_up",
            "End the call.",
            |_ctx: RunContext, _: ()| async { Ok::<_, ToolError>(()) },
        );
        tool.definition().validate().unwrap();
        assert_eq!(tool.definition().parameters["type"], "object");
        assert_eq!(tool.definition().parameters["properties"], json!({}));
    }

    #[tokio::test]
    async fn typed_tool_runs_with_valid_arguments() {
        let tool = weather_tool();
        assert_eq!(
            value(call(&tool, r#"{"location": "Paris", "unit": "celsius"}"#).await),
            json!("sunny in Paris")
        );
        // Strict-mode models send nulls for optional fields.
        assert_eq!(
            value(call(&tool, r#"{"location": "Oslo", "unit": null, "days": null}"#).await),
            json!("sunny in Oslo")
        );
    }

    #[tokio::test]
    async fn bad_arguments_become_tool_errors() {
        let tool = weather_tool();
        let err = call(&tool, "{not json").await.unwrap_err();
        assert!(
            err.message
                .starts_with("Error parsing arguments for `lookup_weather`"),
            "{err}"
        );
        let err = call(&tool, r#"{"unit": "celsius"}"#).await.unwrap_err();
        assert!(err.message.contains("missing field `location`"), "{err}");
        let err = call(&tool, r#"{"location": 42}"#).await.unwrap_err();
        assert!(err.message.contains("invalid type"), "{err}");
        let err = call(&tool, r#"{"location": "x", "unit": "kelvin"}"#)
            .await
            .unwrap_err();
        assert!(err.message.contains("unknown variant"), "{err}");
        let err = call(&tool, "").await.unwrap_err();
        assert!(err.message.contains("missing field"), "{err}");
        let err = call(&tool, "[1, 2]").await.unwrap_err();
        assert!(
            err.message.starts_with("Error parsing arguments for"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unit_args_accept_empty_arguments() {
        let tool = FunctionTool::new(
            "hang_up",
            "End the call.",
            |_ctx: RunContext, _: ()| async { Ok::<_, ToolError>("bye") },
        );
        assert_eq!(value(call(&tool, "").await), json!("bye"));
        assert_eq!(value(call(&tool, "{}").await), json!("bye"));
    }

    #[tokio::test]
    async fn handler_errors_and_panics_reach_the_model() {
        let failing = FunctionTool::raw(
            "fail",
            "Fails.",
            json!({"type": "object", "properties": {}}),
            |_ctx: RunContext, _args: serde_json::Value| async {
                Err::<(), _>(ToolError::new("the order system is down"))
            },
        );
        assert_eq!(
            call(&failing, "{}").await.unwrap_err().message,
            "the order system is down"
        );
        let panicking = FunctionTool::raw(
            "boom",
            "Panics.",
            json!({"type": "object", "properties": {}}),
            |_ctx: RunContext, _args: serde_json::Value| async {
                if true {
                    panic!("secret internals");
                }
                Ok::<_, ToolError>(())
            },
        );
        let err = call(&panicking, "{}").await.unwrap_err();
        assert_eq!(err.message, INTERNAL_ERROR_MESSAGE);
    }

    #[test]
    fn tool_choice_serde() {
        for (choice, text) in [
            (ToolChoice::Auto, r#""auto""#),
            (ToolChoice::Required, r#""required""#),
            (ToolChoice::None, r#""none""#),
            (
                ToolChoice::Function("f".into()),
                r#"{"function":{"name":"f"},"type":"function"}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&choice).unwrap(), text);
            assert_eq!(serde_json::from_str::<ToolChoice>(text).unwrap(), choice);
        }
        assert_eq!(
            serde_json::from_str::<ToolChoice>(r#"{"function":"g"}"#).unwrap(),
            ToolChoice::Function("g".into())
        );
        assert_eq!(
            serde_json::from_str::<ToolChoice>(r#"{"name":"h"}"#).unwrap(),
            ToolChoice::Function("h".into())
        );
        assert!(serde_json::from_str::<ToolChoice>(r#""sometimes""#).is_err());
        assert!(serde_json::from_str::<ToolChoice>(r#"{"type":"function"}"#).is_err());
        assert!(serde_json::from_str::<ToolChoice>("3").is_err());
    }

    #[tokio::test]
    async fn tool_set_lookup_replace_and_unknown() {
        let echo = |name: &'static str, reply: &'static str| {
            FunctionTool::raw(
                name,
                "Echo.",
                json!({"type": "object", "properties": {}}),
                move |_ctx: RunContext, _args: serde_json::Value| async move {
                    Ok::<_, ToolError>(reply)
                },
            )
        };
        let mut set: ToolSet = [echo("a", "1"), echo("b", "2")].into_iter().collect();
        assert_eq!(set.names(), ["a", "b"]);
        assert!(set.add(echo("a", "3")).is_some());
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.definitions()
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(value(set.call(ctx("a", "{}")).await), json!("3"));
        assert!(set.contains("b") && !set.contains("c"));

        let unknown = set.execute(ctx("c", "{}")).await;
        assert!(unknown.output.is_error);
        assert_eq!(
            unknown.output.output,
            "Unknown function: c - available tools: a, b"
        );
        assert_eq!(unknown.output.call_id, "call_1");
        assert!(unknown.reply_required);

        assert!(set.remove("a").is_some());
        assert_eq!(set.names(), ["b"]);
        assert_eq!(format!("{set:?}"), r#"["b"]"#);
    }

    #[test]
    fn conversions_into_tool_output() {
        assert!(matches!(
            None::<String>.into_tool_output(),
            ToolOutput::None
        ));
        assert!(matches!(
            Some("x").into_tool_output(),
            ToolOutput::Value(serde_json::Value::String(s)) if s == "x"
        ));
        let agent = Agent::new("You are the billing agent.");
        let call = FunctionCall::new("c", "transfer", "{}");
        let r = ToolCallResult::from_result(
            &call,
            Ok((agent.clone(), "Transferring you now.").into_tool_output()),
        );
        assert_eq!(r.output.output, "Transferring you now.");
        assert!(r.reply_required);
        assert_eq!(r.handoff.as_ref().map(Agent::id), Some(agent.id()));
        let r = ToolCallResult::from_result(&call, Ok(agent.clone().into_tool_output()));
        assert!(!r.reply_required && r.handoff.is_some() && r.output.output.is_empty());
        #[derive(Serialize)]
        struct Point {
            x: i32,
        }
        assert!(
            matches!(ToolOutput::json(&Point { x: 3 }), Ok(ToolOutput::Value(v)) if v == json!({"x": 3}))
        );
    }

    #[test]
    fn call_output_from_results() {
        let call = FunctionCall::new("call_9", "t", "{}");
        let r = ToolCallResult::from_result(&call, Ok(ToolOutput::Value(json!("plain text"))));
        assert_eq!(r.output.output, "plain text");
        assert_eq!(
            (r.output.call_id.as_str(), r.output.name.as_str()),
            ("call_9", "t")
        );
        assert!(r.reply_required && !r.output.is_error && r.handoff.is_none());

        let r = ToolCallResult::from_result(&call, Ok(ToolOutput::Value(json!({"temp": 21}))));
        assert_eq!(r.output.output, r#"{"temp":21}"#);
        let r = ToolCallResult::from_result(&call, Ok(ToolOutput::Value(json!(3.5))));
        assert_eq!(r.output.output, "3.5");

        let r = ToolCallResult::from_result(&call, Ok(ToolOutput::None));
        assert_eq!(r.output.output, "");
        assert!(!r.reply_required);
        let r = ToolCallResult::from_result(&call, Ok(ToolOutput::Value(serde_json::Value::Null)));
        assert!(!r.reply_required);

        let r = ToolCallResult::from_result(&call, Err(ToolError::new("nope")));
        assert_eq!(r.output.output, "nope");
        assert!(r.output.is_error && r.reply_required);
    }

    #[test]
    fn strict_schema_from_typed_args() {
        let strict = weather_tool().definition().to_strict().unwrap().parameters;
        assert_eq!(strict["additionalProperties"], json!(false));
        // Property order follows the schema's map (sorted: serde_json without `preserve_order`).
        assert_eq!(strict["required"], json!(["days", "location", "unit"]));
        // u32's "uint32" format is not accepted by strict mode.
        assert!(strict["properties"]["days"].get("format").is_none());
        // Converting twice changes nothing more.
        assert_eq!(to_strict_schema(&strict).unwrap(), strict);
    }

    #[test]
    fn strict_schema_nested_objects_and_refs() {
        let schema = json!({
            "type": "object",
            "properties": {
                "address": {"$ref": "#/$defs/Address", "description": "Where to deliver."},
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                "choice": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "note": {"type": "string", "default": null, "anyOf": [{"type": "string"}, {"type": "null"}]}
            },
            "required": ["address", "items", "choice"],
            "$defs": {
                "Address": {"type": "object", "properties": {"street": {"type": "string"}}, "required": ["street"]},
                "Item": {"type": "object", "properties": {"sku": {"type": "string", "format": "uuid"}}}
            }
        });
        // Item.sku is optional and not nullable: strict would change its meaning.
        let err = to_strict_schema(&schema).unwrap_err();
        assert_eq!(
            err,
            StrictSchemaError::OptionalNotNullable {
                path: "#/$defs/Item/properties/sku".into()
            }
        );

        let mut ok = schema.clone();
        ok["$defs"]["Item"]["required"] = json!(["sku"]);
        let strict = to_strict_schema(&ok).unwrap();
        let address = &strict["properties"]["address"];
        assert!(address.get("$ref").is_none());
        assert_eq!(address["description"], "Where to deliver.");
        assert_eq!(address["additionalProperties"], json!(false));
        assert_eq!(address["required"], json!(["street"]));
        assert_eq!(
            strict["$defs"]["Item"]["additionalProperties"],
            json!(false)
        );
        assert_eq!(
            strict["$defs"]["Item"]["properties"]["sku"]["format"],
            "uuid"
        );
        assert!(strict["properties"]["choice"].get("oneOf").is_none());
        assert!(strict["properties"]["choice"]["anyOf"].is_array());
        assert!(strict["properties"]["note"].get("default").is_none());
        assert_eq!(
            strict["required"],
            json!(["address", "choice", "items", "note"])
        );
    }

    #[test]
    fn strict_schema_rejects_open_objects() {
        let schema = json!({
            "type": "object",
            "properties": {"tags": {"type": "object", "additionalProperties": {"type": "string"}}},
            "required": ["tags"]
        });
        assert_eq!(
            to_strict_schema(&schema).unwrap_err(),
            StrictSchemaError::AdditionalProperties {
                path: "#/properties/tags".into()
            }
        );
    }

    #[test]
    fn definition_validation() {
        let def = |name: &str, parameters: serde_json::Value| ToolDefinition {
            name: name.into(),
            description: String::new(),
            parameters,
        };
        assert!(def("ok_name-1", json!({"type": "object"}))
            .validate()
            .is_ok());
        assert!(def("", json!({"type": "object"})).validate().is_err());
        assert!(def("has space", json!({"type": "object"}))
            .validate()
            .is_err());
        assert!(def(&"x".repeat(65), json!({"type": "object"}))
            .validate()
            .is_err());
        assert!(def("arr", json!({"type": "array"})).validate().is_err());
        assert!(def("str", json!("object")).validate().is_err());
    }
}
