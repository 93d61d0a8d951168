//! The shape [`GetEmailTask`](super::GetEmailTask) and [`GetAddressTask`](super::GetAddressTask)
//! share: an `update_*` tool records each hypothesis of the value, a `confirm_*` tool appears
//! once the value was read back (when confirmation is required), and a `decline_*` tool ends
//! the task when the user refuses. Each task keeps only what differs: its validation, its
//! prompts and how it reads the value back.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::llm::{ChatContext, FunctionTool, RunContext, ToolError, ToolFlags, ToolOutput};
use crate::voice::{Agent, AgentBehavior, AgentContext, AgentSession, ReplyOptions, TaskCompleter};

/// The names and words of one capture task.
pub(super) struct CaptureSpec<R> {
    /// The task agent's id, e.g. `get_email_task`.
    pub agent_id: &'static str,
    /// Short noun used in tool replies: "email", "address".
    pub noun: &'static str,
    /// Long noun used in descriptions and errors: "email address", "address".
    pub long_noun: &'static str,
    /// The confirmation tool's name, e.g. `confirm_email_address`.
    pub confirm_tool: &'static str,
    /// The decline tool's name, e.g. `decline_email_capture`.
    pub decline_tool: &'static str,
    /// The opening reply's instructions.
    pub ask_instructions: &'static str,
    /// The task's result from the confirmed value.
    pub into_result: fn(String) -> R,
}

/// State shared by one run's tools. `current` is the newest hypothesis: a confirmation tool
/// offered for an older one refuses, so the user always confirms what was read back last.
pub(super) struct CaptureState<R: 'static> {
    spec: &'static CaptureSpec<R>,
    current: Mutex<String>,
    /// Whether the next read-back spells the value out (after the first one, or always when
    /// the task verifies spelling).
    spell_read_back: Mutex<bool>,
    /// The agent's tools without the confirmation tool.
    base_tools: Mutex<Vec<FunctionTool>>,
    require_confirmation: Option<bool>,
    done: TaskCompleter<R>,
}

impl<R: Send + 'static> CaptureState<R> {
    pub(super) fn new(
        spec: &'static CaptureSpec<R>,
        require_confirmation: Option<bool>,
        spell_first_read_back: bool,
        done: TaskCompleter<R>,
    ) -> Arc<Self> {
        Arc::new(Self {
            spec,
            current: Mutex::new(String::new()),
            spell_read_back: Mutex::new(spell_first_read_back),
            base_tools: Mutex::new(Vec::new()),
            require_confirmation,
            done,
        })
    }

    /// Records a validated hypothesis. Without confirmation the task completes at once;
    /// otherwise the confirmation tool is offered and the model is told to read the value
    /// back: `read_back(spell)` gives that instruction.
    pub(super) fn record(
        self: &Arc<Self>,
        ctx: &RunContext,
        value: String,
        read_back: impl FnOnce(bool) -> String,
    ) -> ToolOutput {
        *self.current.lock() = value.clone();
        if !super::confirmation_required(self.require_confirmation, ctx.session()) {
            self.done.complete((self.spec.into_result)(value));
            return ToolOutput::None;
        }
        let mut tools = self.base_tools.lock().clone();
        tools.push(confirm_tool(self.clone(), value.clone()));
        if let Some(agent) = ctx.session().and_then(AgentSession::current_agent) {
            agent.update_tools(tools);
        }
        let read_back = {
            let mut spell = self.spell_read_back.lock();
            let text = read_back(*spell);
            *spell = true;
            text
        };
        let spec = self.spec;
        ToolOutput::Value(serde_json::Value::String(format!(
            "The {} has been updated to {value}\n{read_back}\n\
             Prompt the user for confirmation, do not call `{}` directly",
            spec.noun, spec.confirm_tool
        )))
    }

    /// The task agent: `tools` plus the decline tool, the opening ask, `chat_ctx` if given.
    pub(super) fn agent(
        self: &Arc<Self>,
        instructions: String,
        mut tools: Vec<FunctionTool>,
        chat_ctx: Option<ChatContext>,
    ) -> Agent {
        tools.push(decline_tool(self.spec, self.done.clone()));
        *self.base_tools.lock() = tools.clone();
        let mut builder = Agent::builder()
            .id(self.spec.agent_id)
            .instructions(instructions)
            .tools(tools)
            .behavior(AskOnEnter {
                instructions: self.spec.ask_instructions,
            });
        if let Some(ctx) = chat_ctx {
            builder = builder.chat_ctx(ctx);
        }
        builder.build()
    }
}

/// The flags of an `update_*` tool: hidden from the opening reply when the task must ask
/// before recording.
pub(super) fn update_flags(require_explicit_ask: bool) -> ToolFlags {
    if require_explicit_ask {
        ToolFlags::IGNORE_ON_ENTER
    } else {
        ToolFlags::NONE
    }
}

fn confirm_tool<R: Send + 'static>(state: Arc<CaptureState<R>>, value: String) -> FunctionTool {
    let spec = state.spec;
    FunctionTool::new(
        spec.confirm_tool,
        format!(
            "Call after the user confirms the {} is correct.",
            spec.long_noun
        ),
        move |_ctx: RunContext, _: ()| {
            let state = state.clone();
            let value = value.clone();
            async move {
                if *state.current.lock() != value {
                    // The update tool ran again after this tool was offered.
                    return Ok::<_, ToolError>(Some(format!(
                        "The {noun} has changed since confirmation was requested, ask the user to confirm the updated {noun}.",
                        noun = state.spec.noun
                    )));
                }
                state.done.complete((state.spec.into_result)(value));
                Ok(None)
            }
        },
    )
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct DeclineArgs {
    /// A short explanation of why the user declined.
    reason: String,
}

fn decline_tool<R: Send + 'static>(
    spec: &'static CaptureSpec<R>,
    done: TaskCompleter<R>,
) -> FunctionTool {
    FunctionTool::new(
        spec.decline_tool,
        format!(
            "Handles the case when the user explicitly declines to provide an {}.",
            spec.long_noun
        ),
        move |_ctx: RunContext, args: DeclineArgs| {
            let done = done.clone();
            async move {
                done.fail(format!(
                    "couldn't get the {}: {}",
                    spec.long_noun, args.reason
                ));
                Ok::<_, ToolError>(())
            }
        },
    )
    .with_flags(ToolFlags::IGNORE_ON_ENTER)
}

/// `on_enter`: asks for the value with a reply.
struct AskOnEnter {
    instructions: &'static str,
}

#[async_trait]
impl AgentBehavior for AskOnEnter {
    async fn on_enter(&self, ctx: AgentContext) {
        if let Err(e) = ctx.session.generate_reply(ReplyOptions {
            instructions: Some(self.instructions.to_owned()),
            ..Default::default()
        }) {
            tracing::debug!(error = %e, "capture task: cannot ask the user");
        }
    }
}
