//! [`Agent`]: instructions, tools, per-agent model overrides, and an [`AgentBehavior`] whose
//! hooks and pipeline nodes have default implementations (see [`super::nodes`]).

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::nodes::{
    self, AudioFrameStream, LlmChunkStream, SpeechEventStream, SynthesizedStream, TextStream,
};
use super::session::{AgentSession, ReplyOptions};
use crate::llm::{ChatContext, ChatMessage, FunctionTool, Llm, ToolChoice, ToolFlags, Toolset};
use crate::stt::Stt;
use crate::tts::Tts;
use crate::types::ApiError;

/// Returned by [`AgentBehavior::on_user_turn_completed`] to skip the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, thiserror::Error)]
#[error("stop response")]
pub struct StopResponse;

/// Settings of one node call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSettings {
    /// The tool choice of this generation.
    pub tool_choice: Option<ToolChoice>,
}

/// The user spoke past [`UserTurnLimitOptions`](super::UserTurnLimitOptions).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserTurnExceeded {
    /// Words across the consecutive user turns.
    pub words: usize,
    /// Speech across the consecutive user turns.
    pub duration: std::time::Duration,
    /// The transcript of those turns.
    pub transcript: String,
}

/// What hooks and nodes receive: the session and the agent they run for.
#[derive(Clone)]
pub struct AgentContext {
    /// The session.
    pub session: AgentSession,
    /// The agent.
    pub agent: Agent,
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext")
            .field("agent", &self.agent.id())
            .finish_non_exhaustive()
    }
}

/// An agent's hooks and pipeline nodes. Every method has the reference's default behaviour, so
/// implement only what you change; an override can call the default node (for example
/// [`nodes::default_tts_node`]) after rewriting its input.
///
/// ```
/// use async_trait::async_trait;
/// use futures::StreamExt;
/// use livekit_agents::voice::{nodes, Agent, AgentBehavior, AgentContext, ModelSettings};
/// use livekit_agents::types::ApiError;
///
/// struct Pronounce;
///
/// #[async_trait]
/// impl AgentBehavior for Pronounce {
///     async fn tts_node(
///         &self,
///         ctx: AgentContext,
///         text: nodes::TextStream,
///         settings: ModelSettings,
///     ) -> Result<Option<nodes::SynthesizedStream>, ApiError> {
///         let text = text.map(|t| t.replace("LiveKit", "Live Kit")).boxed();
///         nodes::default_tts_node(ctx, text, settings).await
///     }
/// }
///
/// let agent = Agent::builder().instructions("You are helpful.").behavior(Pronounce).build();
/// assert_eq!(agent.instructions(), "You are helpful.");
/// ```
#[async_trait]
pub trait AgentBehavior: Send + Sync + 'static {
    /// The agent became active. Default: nothing.
    async fn on_enter(&self, ctx: AgentContext) {
        let _ = ctx;
    }

    /// The agent is about to hand over to another. Default: nothing.
    async fn on_exit(&self, ctx: AgentContext) {
        let _ = ctx;
    }

    /// The user finished a turn. `turn_ctx` is the agent's context without the new message;
    /// edits to it apply to this reply only, edits to `new_message` are kept. Return
    /// `Err(StopResponse)` to skip the reply.
    async fn on_user_turn_completed(
        &self,
        ctx: AgentContext,
        turn_ctx: &mut ChatContext,
        new_message: &mut ChatMessage,
    ) -> Result<(), StopResponse> {
        let _ = (ctx, turn_ctx, new_message);
        Ok(())
    }

    /// The user spoke past the turn limit. Default: an uninterruptible reply without tools.
    async fn on_user_turn_exceeded(&self, ctx: AgentContext, event: UserTurnExceeded) {
        let _ = event;
        let _ = ctx.session.generate_reply(ReplyOptions {
            allow_interruptions: Some(false),
            tool_choice: Some(ToolChoice::None),
            ..Default::default()
        });
    }

    /// Audio to speech events. Default: [`nodes::default_stt_node`].
    async fn stt_node(
        &self,
        ctx: AgentContext,
        audio: AudioFrameStream,
        settings: ModelSettings,
    ) -> Result<Option<SpeechEventStream>, ApiError> {
        nodes::default_stt_node(ctx, audio, settings).await
    }

    /// Context and tools to text and tool calls. Default: [`nodes::default_llm_node`].
    async fn llm_node(
        &self,
        ctx: AgentContext,
        chat_ctx: ChatContext,
        tools: Vec<FunctionTool>,
        settings: ModelSettings,
    ) -> Result<Option<LlmChunkStream>, ApiError> {
        nodes::default_llm_node(ctx, chat_ctx, tools, settings).await
    }

    /// Text to audio. Default: [`nodes::default_tts_node`].
    async fn tts_node(
        &self,
        ctx: AgentContext,
        text: TextStream,
        settings: ModelSettings,
    ) -> Result<Option<SynthesizedStream>, ApiError> {
        nodes::default_tts_node(ctx, text, settings).await
    }

    /// The agent's transcript before it is shown. Default: passes it through.
    async fn transcription_node(
        &self,
        ctx: AgentContext,
        text: TextStream,
        settings: ModelSettings,
    ) -> TextStream {
        nodes::default_transcription_node(ctx, text, settings).await
    }

    /// Realtime model audio before playback. Default: passes it through.
    async fn realtime_audio_output_node(
        &self,
        ctx: AgentContext,
        audio: AudioFrameStream,
        settings: ModelSettings,
    ) -> AudioFrameStream {
        nodes::default_realtime_audio_output_node(ctx, audio, settings).await
    }
}

/// The behaviour with every default.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultBehavior;

impl AgentBehavior for DefaultBehavior {}

struct AgentInner {
    id: String,
    instructions: Mutex<String>,
    tools: Mutex<Vec<FunctionTool>>,
    /// Named toolsets and whether each is enabled.
    toolsets: Mutex<Vec<(Toolset, bool)>>,
    /// Test doubles: a tool named like one of these runs its handler instead
    /// ([`crate::testing::mock_tools`]).
    tool_mocks: Mutex<Vec<FunctionTool>>,
    chat_ctx: Mutex<ChatContext>,
    stt: Option<Arc<dyn Stt>>,
    llm: Option<Arc<dyn Llm>>,
    tts: Option<Arc<dyn Tts>>,
    /// Turn handling overrides (see `agent/turn_handling.rs`).
    turn_handling: super::options::AgentTurnHandling,
    behavior: Arc<dyn AgentBehavior>,
    mcp_servers: crate::mcp::ServerList,
    /// Model overrides that could not be resolved.
    config_error: Option<String>,
    /// The session the agent was last activated in (weak: the session owns its agents).
    session: Mutex<Option<std::sync::Weak<super::session::SessionInner>>>,
}

/// The id of the system message holding an agent's instructions at the start of its
/// [`Agent::chat_ctx`] (the reference's id).
pub const INSTRUCTIONS_ITEM_ID: &str = "lk.agent_task.instructions";

/// An agent: instructions, tools, model overrides and behaviour. Cheap to clone (clones share
/// state: instructions, tools and chat context updates are seen by all).
#[derive(Clone)]
pub struct Agent {
    inner: Arc<AgentInner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Agent {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Builds an [`Agent`].
pub struct AgentBuilder {
    id: Option<String>,
    instructions: String,
    tools: Vec<FunctionTool>,
    toolsets: Vec<(Toolset, bool)>,
    chat_ctx: ChatContext,
    stt: Option<Arc<dyn Stt>>,
    llm: Option<Arc<dyn Llm>>,
    tts: Option<Arc<dyn Tts>>,
    turn_handling: super::options::AgentTurnHandling,
    behavior: Arc<dyn AgentBehavior>,
    mcp_servers: crate::mcp::ServerList,
    model_errors: Vec<crate::inference::InferenceError>,
}

impl AgentBuilder {
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
                self.model_errors.push(e);
                None
            }
        }
    }
    /// The agent id (default: `agent_…`). Handoff items and test assertions name agents by id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// The system prompt.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self
    }
    /// Adds a tool.
    pub fn tool(mut self, tool: FunctionTool) -> Self {
        self.tools.push(tool);
        self
    }
    /// Adds tools.
    pub fn tools(mut self, tools: impl IntoIterator<Item = FunctionTool>) -> Self {
        self.tools.extend(tools);
        self
    }
    /// Adds a named toolset, enabled. Its tools follow the agent's own tools; disable or
    /// re-enable it at run time with [`Agent::disable_toolset`] / [`Agent::enable_toolset`].
    /// A toolset with the id of one already added replaces it.
    pub fn toolset(mut self, toolset: Toolset) -> Self {
        self.toolsets.retain(|(t, _)| t.id() != toolset.id());
        self.toolsets.push((toolset, true));
        self
    }
    /// Adds a named toolset that starts disabled (see [`toolset`](Self::toolset)).
    pub fn disabled_toolset(mut self, toolset: Toolset) -> Self {
        self.toolsets.retain(|(t, _)| t.id() != toolset.id());
        self.toolsets.push((toolset, false));
        self
    }
    /// The initial conversation (default: empty).
    pub fn chat_ctx(mut self, chat_ctx: ChatContext) -> Self {
        self.chat_ctx = chat_ctx;
        self
    }
    /// Overrides the session's STT (an instance or a LiveKit Inference descriptor).
    pub fn stt(mut self, stt: impl Into<crate::inference::ModelSpec<dyn Stt>>) -> Self {
        self.stt = self.resolve(stt.into(), |s| s.resolve());
        self
    }
    /// Overrides the session's LLM (an instance or a LiveKit Inference descriptor).
    pub fn llm(mut self, llm: impl Into<crate::inference::ModelSpec<dyn Llm>>) -> Self {
        self.llm = self.resolve(llm.into(), |s| s.resolve());
        self
    }
    /// Overrides the session's TTS (an instance or a LiveKit Inference descriptor).
    pub fn tts(mut self, tts: impl Into<crate::inference::ModelSpec<dyn Tts>>) -> Self {
        self.tts = self.resolve(tts.into(), |s| s.resolve());
        self
    }
    /// MCP servers for this agent: while it is active their tools replace those of the
    /// session's servers. They connect when the agent becomes active and close when it is
    /// replaced.
    #[cfg(feature = "mcp")]
    pub fn mcp_servers(mut self, servers: impl IntoIterator<Item = crate::mcp::McpServer>) -> Self {
        self.mcp_servers.extend(servers);
        self
    }
    /// Hooks and nodes.
    pub fn behavior(mut self, behavior: impl AgentBehavior) -> Self {
        self.behavior = Arc::new(behavior);
        self
    }
    /// Hooks and nodes, shared.
    pub fn behavior_arc(mut self, behavior: Arc<dyn AgentBehavior>) -> Self {
        self.behavior = behavior;
        self
    }
    /// The agent, or the first model override that could not be resolved.
    pub fn try_build(mut self) -> Result<Agent, crate::inference::InferenceError> {
        if !self.model_errors.is_empty() {
            return Err(self.model_errors.swap_remove(0));
        }
        Ok(self.build())
    }
    /// The agent. A model override that could not be resolved is logged and makes the
    /// session's `start` with this agent fail (see [`try_build`](Self::try_build)).
    pub fn build(self) -> Agent {
        let config_error = (!self.model_errors.is_empty()).then(|| {
            let errors: Vec<String> = self.model_errors.iter().map(|e| e.to_string()).collect();
            errors.join("; ")
        });
        if let Some(e) = &config_error {
            tracing::error!("{e}");
        }
        Agent {
            inner: Arc::new(AgentInner {
                id: self.id.unwrap_or_else(|| {
                    format!("agent_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
                }),
                instructions: Mutex::new(self.instructions),
                tools: Mutex::new(self.tools),
                toolsets: Mutex::new(self.toolsets),
                tool_mocks: Mutex::new(Vec::new()),
                chat_ctx: Mutex::new(self.chat_ctx),
                stt: self.stt,
                llm: self.llm,
                tts: self.tts,
                turn_handling: self.turn_handling,
                behavior: self.behavior,
                mcp_servers: self.mcp_servers,
                config_error,
                session: Mutex::new(None),
            }),
        }
    }
}

impl Agent {
    /// A builder.
    pub fn builder() -> AgentBuilder {
        AgentBuilder {
            id: None,
            instructions: String::new(),
            tools: Vec::new(),
            toolsets: Vec::new(),
            chat_ctx: ChatContext::new(),
            stt: None,
            llm: None,
            tts: None,
            turn_handling: Default::default(),
            behavior: Arc::new(DefaultBehavior),
            mcp_servers: Default::default(),
            model_errors: Vec::new(),
        }
    }

    /// An agent with these instructions and default behaviour.
    pub fn new(instructions: impl Into<String>) -> Self {
        Self::builder().instructions(instructions).build()
    }

    /// Why a model override could not be resolved, if one could not.
    pub(crate) fn config_error(&self) -> Option<String> {
        self.inner.config_error.clone()
    }

    /// The agent's own MCP servers (empty: the session's apply).
    pub(crate) fn mcp_servers(&self) -> &crate::mcp::ServerList {
        &self.inner.mcp_servers
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The instructions.
    pub fn instructions(&self) -> String {
        self.inner.instructions.lock().clone()
    }

    /// The tools the model may call: the agent's own, then those of its enabled toolsets (a
    /// toolset tool named like an earlier tool is left out).
    pub fn tools(&self) -> Vec<FunctionTool> {
        let mut tools = self.inner.tools.lock().clone();
        for (set, enabled) in self.inner.toolsets.lock().iter() {
            if !enabled {
                continue;
            }
            for t in set.tools() {
                if !tools.iter().any(|x| x.name() == t.name()) {
                    tools.push(t.clone());
                }
            }
        }
        let mocks = self.inner.tool_mocks.lock();
        if !mocks.is_empty() {
            for t in tools.iter_mut() {
                if let Some(mock) = mocks.iter().find(|m| m.name() == t.name()) {
                    *t = t.clone().with_handler_of(mock);
                }
            }
        }
        tools
    }

    /// Replaces the tool mocks, returning the previous ones (see
    /// [`crate::testing::mock_tools`]).
    pub(crate) fn replace_tool_mocks(&self, mocks: Vec<FunctionTool>) -> Vec<FunctionTool> {
        std::mem::replace(&mut *self.inner.tool_mocks.lock(), mocks)
    }

    /// The agent's own tools: without its toolsets' (what [`update_tools`](Self::update_tools)
    /// replaces).
    pub fn own_tools(&self) -> Vec<FunctionTool> {
        self.inner.tools.lock().clone()
    }

    /// The ids of the agent's toolsets, each with whether it is enabled.
    pub fn toolsets(&self) -> Vec<(String, bool)> {
        self.inner
            .toolsets
            .lock()
            .iter()
            .map(|(t, on)| (t.id().to_owned(), *on))
            .collect()
    }

    /// Enables the toolset `id` (its tools are offered from the next generation on, and pushed
    /// to the realtime session when the agent is active on one). Returns whether the agent has
    /// such a toolset.
    pub fn enable_toolset(&self, id: &str) -> bool {
        self.set_toolset_enabled(id, true)
    }

    /// Disables the toolset `id` (its tools are no longer offered). Returns whether the agent
    /// has such a toolset.
    pub fn disable_toolset(&self, id: &str) -> bool {
        self.set_toolset_enabled(id, false)
    }

    fn set_toolset_enabled(&self, id: &str, enabled: bool) -> bool {
        let changed = {
            let mut sets = self.inner.toolsets.lock();
            match sets.iter_mut().find(|(t, _)| t.id() == id) {
                Some((_, on)) => {
                    let changed = *on != enabled;
                    *on = enabled;
                    Some(changed)
                }
                None => None,
            }
        };
        match changed {
            None => {
                tracing::warn!(toolset = id, "no toolset with this id on the agent");
                false
            }
            Some(changed) => {
                if changed {
                    self.sync_realtime_tools();
                }
                true
            }
        }
    }

    fn sync_realtime_tools(&self) {
        let mut definitions: Vec<_> = self
            .tools()
            .iter()
            .map(|t| t.definition().clone())
            .collect();
        if let Some(session) = self.attached_session() {
            for t in session.tools() {
                if !definitions.iter().any(|d| d.name == t.name()) {
                    definitions.push(t.definition().clone());
                }
            }
        }
        self.sync_realtime(move |rt| async move { rt.update_tools(&definitions).await });
    }

    /// A copy of the agent's conversation. As the reference's, it starts with the agent's
    /// instructions as a system message (id [`INSTRUCTIONS_ITEM_ID`]) when there are
    /// instructions and the conversation does not hold that item already.
    pub fn chat_ctx(&self) -> ChatContext {
        let mut ctx = self.inner.chat_ctx.lock().clone();
        let instructions = self.instructions();
        if !instructions.is_empty() && ctx.get(INSTRUCTIONS_ITEM_ID).is_none() {
            let mut msg = crate::llm::ChatMessage::new(crate::llm::ChatRole::System, instructions);
            msg.id = INSTRUCTIONS_ITEM_ID.to_string();
            // Created "at the epoch": placed before every other item.
            ctx.insert(crate::llm::ChatItem::Message(msg.at(0.0)));
        }
        ctx
    }

    /// Replaces the instructions (used from the next generation on; pushed to the realtime
    /// session when the agent is active on one).
    pub fn update_instructions(&self, instructions: impl Into<String>) {
        let instructions = instructions.into();
        *self.inner.instructions.lock() = instructions.clone();
        self.sync_realtime(move |rt| async move { rt.update_instructions(&instructions).await });
    }

    /// Replaces the agent's own tools (its toolsets and the session's tools stay available).
    pub fn update_tools(&self, tools: Vec<FunctionTool>) {
        *self.inner.tools.lock() = tools;
        self.sync_realtime_tools();
    }

    /// Replaces the conversation.
    pub fn update_chat_ctx(&self, chat_ctx: ChatContext) {
        *self.inner.chat_ctx.lock() = chat_ctx.clone();
        self.sync_realtime(move |rt| async move { rt.update_chat_ctx(&chat_ctx).await });
    }

    /// Marks the agent active in `session` (its updates then reach the realtime session).
    pub(crate) fn attach(&self, session: &AgentSession) {
        *self.inner.session.lock() = Some(Arc::downgrade(&session.inner));
    }

    fn attached_session(&self) -> Option<AgentSession> {
        let weak = self.inner.session.lock().clone()?;
        weak.upgrade().map(|inner| AgentSession { inner })
    }

    fn sync_realtime<F, Fut>(&self, update: F)
    where
        F: FnOnce(Arc<dyn crate::llm::realtime::RealtimeSession>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        let Some(session) = self.attached_session() else {
            return;
        };
        let is_active = session.current_agent().is_some_and(|a| a == *self);
        let (Some(link), true) = (session.realtime_link(), is_active) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let realtime = link.session.clone();
        rt.spawn(async move {
            if let Err(e) = update(realtime).await {
                session.report_error(super::events::ErrorSource::RealtimeModel, e, true);
            }
        });
    }

    /// The STT override.
    pub fn stt(&self) -> Option<Arc<dyn Stt>> {
        self.inner.stt.clone()
    }

    /// The LLM override.
    pub fn llm(&self) -> Option<Arc<dyn Llm>> {
        self.inner.llm.clone()
    }

    /// The TTS override.
    pub fn tts(&self) -> Option<Arc<dyn Tts>> {
        self.inner.tts.clone()
    }

    /// The interruption override.
    pub fn allow_interruptions(&self) -> Option<bool> {
        self.inner.turn_handling.allow_interruptions
    }

    /// The behaviour.
    pub fn behavior(&self) -> Arc<dyn AgentBehavior> {
        self.inner.behavior.clone()
    }

    pub(crate) fn push_chat_item(&self, item: crate::llm::ChatItem) {
        self.inner.chat_ctx.lock().push(item);
    }

    /// Adds an item at its place in time (an item created earlier than the last ones).
    pub(crate) fn insert_chat_item(&self, item: crate::llm::ChatItem) {
        self.inner.chat_ctx.lock().insert(item);
    }
}

mod turn_handling;

tokio::task_local! {
    /// Set while an agent's `on_enter` runs, and in the replies it starts: the agent's
    /// address (the reference's `_OnEnterContextVar`).
    static ON_ENTER_OF: usize;
}

impl Agent {
    fn address(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }
}

/// Runs `on_enter` (`fut`) of `agent` so that the replies it starts hide the agent's
/// [`ToolFlags::IGNORE_ON_ENTER`] tools.
pub(crate) async fn run_on_enter<F: std::future::Future>(agent: &Agent, fut: F) -> F::Output {
    ON_ENTER_OF.scope(agent.address(), fut).await
}

/// The on-enter scope of the current task: the address of the agent whose `on_enter` runs.
pub(crate) fn current_on_enter_scope() -> Option<usize> {
    ON_ENTER_OF.try_with(|a| *a).ok()
}

/// `fut` inside on-enter scope `scope` (if any): a reply started from `on_enter` (and its
/// follow-up steps) keeps hiding the flagged tools although the activity loop spawns it.
pub(crate) async fn in_on_enter_scope<F>(scope: Option<usize>, fut: F) -> F::Output
where
    F: std::future::Future,
{
    match scope {
        Some(a) => ON_ENTER_OF.scope(a, fut).await,
        None => fut.await,
    }
}

/// Removes the tools flagged [`ToolFlags::IGNORE_ON_ENTER`] from a reply made in on-enter
/// scope `scope` (see [`current_on_enter_scope`]) of `agent`.
pub(crate) fn hide_on_enter_tools(
    agent: &Agent,
    scope: Option<usize>,
    tools: &mut Vec<FunctionTool>,
) {
    if scope == Some(agent.address()) {
        tools.retain(|t| !t.flags().contains(ToolFlags::IGNORE_ON_ENTER));
    }
}
