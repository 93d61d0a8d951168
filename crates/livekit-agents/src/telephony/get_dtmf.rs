//! [`GetDtmfTask`]: an [`AgentTask`] that collects a sequence of keypad digits, entered on the
//! phone (DTMF) or spoken, with an optional confirmation.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::dtmf::{format_dtmf, DtmfCollectOptions, DtmfCollector, DtmfEvent, DtmfOutcome};
use crate::llm::{ChatContext, FunctionTool, RunContext, ToolChoice, ToolError};
use crate::voice::{
    Agent, AgentBehavior, AgentContext, AgentSession, AgentState, AgentTask, ReplyOptions,
    SessionEvent, TaskCompleter, TaskError, UserState,
};

/// The digits a [`GetDtmfTask`] collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetDtmfResult {
    /// The keys, space separated as the reference formats them (`"1 2 3 4"`).
    pub user_input: String,
    /// The keys.
    pub keys: Vec<DtmfEvent>,
}

impl GetDtmfResult {
    fn from_keys(keys: Vec<DtmfEvent>) -> Self {
        Self {
            user_input: format_dtmf(&keys),
            keys,
        }
    }
}

/// Collects `num_digits` keypad digits (the reference's `GetDtmfTask`): the caller types them
/// (each key restarts a `dtmf_input_timeout` quiet period, 4 s; `#` ends input at once) or says
/// them (the model records them with a tool). With `ask_for_confirmation` the agent reads the
/// digits back and the model confirms them with `confirm_inputs`. Too few or too many typed keys
/// end the task with [`TaskError::Failed`] carrying the reference's message.
///
/// ```no_run
/// use livekit_agents::telephony::GetDtmfTask;
/// use livekit_agents::voice::AgentSession;
///
/// # async fn demo(session: AgentSession) {
/// match GetDtmfTask::new(4).ask_for_confirmation(true).run(&session).await {
///     Ok(pin) => println!("PIN {}", pin.user_input),
///     Err(e) => println!("no PIN: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GetDtmfTask {
    num_digits: usize,
    ask_for_confirmation: bool,
    dtmf_input_timeout: Duration,
    dtmf_stop_event: DtmfEvent,
    chat_ctx: Option<ChatContext>,
    extra_instructions: Option<String>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Inputs {
    /// The digits, one key per item.
    inputs: Vec<DtmfEvent>,
}

impl GetDtmfTask {
    /// A task collecting `num_digits` digits (at least 1).
    pub fn new(num_digits: usize) -> Self {
        Self {
            num_digits: num_digits.max(1),
            ask_for_confirmation: false,
            dtmf_input_timeout: Duration::from_secs(4),
            dtmf_stop_event: DtmfEvent::Pound,
            chat_ctx: None,
            extra_instructions: None,
        }
    }

    /// Read the digits back and wait for the user's confirmation (default false).
    pub fn ask_for_confirmation(mut self, ask: bool) -> Self {
        self.ask_for_confirmation = ask;
        self
    }

    /// Quiet time after the last key (default 4 s).
    pub fn dtmf_input_timeout(mut self, timeout: Duration) -> Self {
        self.dtmf_input_timeout = timeout;
        self
    }

    /// The key that ends input (default `#`).
    pub fn dtmf_stop_event(mut self, key: DtmfEvent) -> Self {
        self.dtmf_stop_event = key;
        self
    }

    /// The task agent's starting context.
    pub fn chat_ctx(mut self, chat_ctx: ChatContext) -> Self {
        self.chat_ctx = Some(chat_ctx);
        self
    }

    /// Appended to the task's instructions.
    pub fn extra_instructions(mut self, text: impl Into<String>) -> Self {
        self.extra_instructions = Some(text.into());
        self
    }

    /// The task's instructions (the reference's text).
    fn instructions(&self) -> String {
        let mut s = String::from(
            "You are a single step in a broader system, responsible solely for gathering digits input from the user. \
             You will either receive a sequence of digits through dtmf events tagged by <dtmf_inputs>, or \
             user will directly say the digits to you. You should be able to handle both cases. ",
        );
        if self.ask_for_confirmation {
            s.push_str("Once user has confirmed the digits (by verbally spoken or entered manually), call `confirm_inputs` with the inputs.");
        } else {
            s.push_str("If user provides the digits through voice and it is valid, call `record_inputs` with the inputs.");
        }
        if let Some(extra) = &self.extra_instructions {
            s.push('\n');
            s.push_str(extra);
        }
        s
    }

    /// The task, to run with [`AgentTask::run`].
    pub fn build(self) -> AgentTask<GetDtmfResult> {
        AgentTask::new(move |done| {
            let tool = if self.ask_for_confirmation {
                let done = done.clone();
                FunctionTool::new(
                    "confirm_inputs",
                    "Finalize the collected digit inputs after explicit user confirmation.\n\n\
                     Use this ONLY after the confirmation. You should confirm by verbally reading out the digits one by one and, once the \
                     user confirms they are correct, call this tool with the inputs.\n\n\
                     Do not use this tool to capture the initial digits.",
                    move |_ctx: RunContext, args: Inputs| {
                        let done = done.clone();
                        async move {
                            done.complete(GetDtmfResult::from_keys(args.inputs));
                            Ok::<_, ToolError>(())
                        }
                    },
                )
            } else {
                let done = done.clone();
                FunctionTool::new(
                    "record_inputs",
                    "Record the collected digit inputs without additional confirmation.\n\n\
                     Call this tool as soon as a valid sequence of digits has been provided by the user (via DTMF or spoken).",
                    move |_ctx: RunContext, args: Inputs| {
                        let done = done.clone();
                        async move {
                            done.complete(GetDtmfResult::from_keys(args.inputs));
                            Ok::<_, ToolError>(())
                        }
                    },
                )
            };
            let mut builder = Agent::builder()
                .id("get_dtmf_task")
                .instructions(self.instructions())
                .tool(tool);
            if let Some(ctx) = self.chat_ctx.clone() {
                builder = builder.chat_ctx(ctx);
            }
            builder
                .behavior(DtmfBehavior {
                    done,
                    ask_for_confirmation: self.ask_for_confirmation,
                    options: DtmfCollectOptions {
                        num_digits: self.num_digits,
                        stop_event: self.dtmf_stop_event,
                        input_timeout: self.dtmf_input_timeout,
                    },
                    stop: CancellationToken::new(),
                })
                .build()
        })
    }

    /// Builds and runs the task in `session`.
    pub async fn run(self, session: &AgentSession) -> Result<GetDtmfResult, TaskError> {
        self.build().run(session).await
    }
}

struct DtmfBehavior {
    done: TaskCompleter<GetDtmfResult>,
    ask_for_confirmation: bool,
    options: DtmfCollectOptions,
    stop: CancellationToken,
}

#[async_trait]
impl AgentBehavior for DtmfBehavior {
    async fn on_enter(&self, ctx: AgentContext) {
        let session = ctx.session.clone();
        let events = session.subscribe();
        tokio::spawn(collect_loop(
            session.clone(),
            events,
            DtmfCollector::new(self.options),
            self.done.clone(),
            self.ask_for_confirmation,
            self.stop.clone(),
        ));
        if let Err(e) = session.generate_reply(ReplyOptions {
            tool_choice: Some(ToolChoice::None),
            ..Default::default()
        }) {
            tracing::debug!(error = %e, "GetDtmfTask: cannot ask for the digits");
        }
    }

    async fn on_exit(&self, _ctx: AgentContext) {
        self.stop.cancel();
    }
}

async fn collect_loop(
    session: AgentSession,
    mut events: tokio::sync::broadcast::Receiver<SessionEvent>,
    mut collector: DtmfCollector,
    done: TaskCompleter<GetDtmfResult>,
    ask_for_confirmation: bool,
    stop: CancellationToken,
) {
    loop {
        let deadline = collector.deadline();
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => collector.on_tick(tokio::time::Instant::now()),
            ev = events.recv() => {
                let now = tokio::time::Instant::now();
                match ev {
                    Ok(SessionEvent::SipDtmfReceived { code, digit, .. }) => {
                        match DtmfEvent::from_received(code, &digit) {
                            Ok(key) => {
                                let out = collector.on_key(key, now);
                                tracing::debug!(count = collector.keys().len(), "DTMF input received");
                                out
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "ignoring an unknown DTMF tone");
                                None
                            }
                        }
                    }
                    Ok(SessionEvent::UserStateChanged { new_state, .. }) => {
                        collector.on_user_speaking(new_state == UserState::Speaking, now);
                        None
                    }
                    Ok(SessionEvent::AgentStateChanged { new_state, .. }) => {
                        collector.on_agent_busy(
                            matches!(new_state, AgentState::Speaking | AgentState::Thinking),
                            now,
                        );
                        None
                    }
                    Ok(SessionEvent::Close { .. }) | Err(RecvError::Closed) => return,
                    Ok(_) | Err(RecvError::Lagged(_)) => None,
                }
            }
        };
        let Some(outcome) = outcome else { continue };
        if done.is_done() {
            return;
        }
        session.interrupt();
        match outcome {
            DtmfOutcome::Incomplete { message, .. } => {
                done.fail(message);
                return;
            }
            DtmfOutcome::Complete(keys) if !ask_for_confirmation => {
                done.complete(GetDtmfResult::from_keys(keys));
                return;
            }
            DtmfOutcome::Complete(keys) => {
                let instructions = format!(
                    "User has entered the following valid digits on the telephone keypad:\n\
                     <dtmf_inputs>{}</dtmf_inputs>\n\
                     Please confirm it with the user by saying the digits one by one with space in between \
                     (.e.g. 'one two three four five six seven eight nine ten'). \
                     Once you are sure, call `confirm_inputs` with the inputs.",
                    format_dtmf(&keys)
                );
                if let Err(e) = session.generate_reply(ReplyOptions {
                    user_input: Some(instructions),
                    ..Default::default()
                }) {
                    tracing::debug!(error = %e, "GetDtmfTask: cannot confirm the digits");
                }
            }
        }
    }
}
