//! Tool execution: every call streamed by the LLM runs as its own task as soon as the speech is
//! scheduled; outputs are collected when the step ends. An interruption does not cancel a call:
//! its real result is recorded (without asking for a reply), so the history never holds a call
//! without an answer and the model never runs a finished tool again.

use crate::telemetry::traced_tool_call;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::activity::Activity;
use super::agent::Agent;
use super::speech_handle::SpeechHandle;
use crate::llm::chat_context::{new_item_id, now_secs};
use crate::llm::tool::{unknown_tool_error, INTERNAL_ERROR_MESSAGE};
use crate::llm::{
    FunctionCall, FunctionCallOutput, FunctionTool, RunContext, ToolError, ToolOutput,
};

/// Where a tool handler runs: the speech whose step called it, and the agent of that speech.
#[derive(Clone)]
pub(crate) struct ToolScope {
    pub speech: SpeechHandle,
    pub agent: Agent,
}

tokio::task_local! {
    /// Set while a tool handler runs (so `generate_reply` defaults to no tools there, and a
    /// task completed from a tool knows which step to wait for).
    static IN_TOOL: ToolScope;
}

/// Whether the current task is a tool handler.
pub(crate) fn in_tool() -> bool {
    IN_TOOL.try_with(|_| ()).is_ok()
}

/// The tool handler running in the current task, if any.
pub(crate) fn current_tool() -> Option<ToolScope> {
    IN_TOOL.try_with(ToolScope::clone).ok()
}

/// Output text recorded for a tool call whose task was cancelled before it answered (the
/// runtime shut down under it).
pub const CANCELLED_OUTPUT: &str = "The tool call was cancelled because the user interrupted.";

/// One finished call.
pub(crate) struct ToolResult {
    pub call: FunctionCall,
    pub output: FunctionCallOutput,
    pub reply_required: bool,
    pub handoff: Option<Agent>,
}

/// A tool's outcome and when it completed (wall clock: the output item's `created_at`, so the
/// output is placed in the history where it happened).
type Outcome = (Result<ToolOutput, ToolError>, f64);

type Running = Arc<Mutex<Vec<(FunctionCall, JoinHandle<Outcome>)>>>;

/// Runs the calls of one generation step.
pub(crate) struct ToolExecutor {
    running: Running,
    collector: JoinHandle<()>,
}

impl ToolExecutor {
    /// Starts executing calls from `calls` with `tools`.
    pub(crate) fn start(
        activity: &Activity,
        handle: &SpeechHandle,
        tools: Vec<FunctionTool>,
        mut calls: mpsc::UnboundedReceiver<FunctionCall>,
    ) -> Self {
        let running: Running = Arc::default();
        let session = activity.session().clone();
        let handle = handle.clone();
        let agent = activity.agent().clone();
        let sink = running.clone();
        let collector = tokio::spawn(async move {
            let names: Arc<Vec<String>> =
                Arc::new(tools.iter().map(|t| t.name().to_string()).collect());
            while let Some(call) = calls.recv().await {
                let tool = tools.iter().find(|t| t.name() == call.name).cloned();
                let names = names.clone();
                let ctx = RunContext::new(
                    call.clone(),
                    Some(session.clone()),
                    Some(handle.clone()),
                    session.userdata(),
                );
                let arguments = call.arguments.clone();
                let name = call.name.clone();
                let (session_t, call_id) = (session.clone(), call.call_id.clone());
                let handle_id = handle.id().to_string();
                let scope = ToolScope {
                    speech: handle.clone(),
                    agent: agent.clone(),
                };
                let task = tokio::spawn(IN_TOOL.scope(scope, async move {
                    let result = match tool {
                        Some(tool) => {
                            let call = tool.call(ctx, &arguments);
                            let (speech, id) = (handle_id.as_str(), call_id.as_str());
                            traced_tool_call(&session_t, speech, &name, id, call).await
                        }
                        None => Err(unknown_tool_error(&name, names.iter().map(String::as_str))),
                    };
                    (result, now_secs())
                }));
                sink.lock().push((call, task));
            }
        });
        Self { running, collector }
    }

    /// Whether the model called a tool so far in this step.
    pub(crate) fn has_calls(&self) -> bool {
        !self.running.lock().is_empty()
    }

    /// Waits for the calls (the LLM stream must have ended or been dropped).
    ///
    /// As the reference: an interruption does not cancel a call. One that finished keeps its
    /// output; one still running is allowed to finish and its real result is recorded. After an
    /// interruption no reply is asked for, and a handoff does not happen (its output says so).
    pub(crate) async fn finish(self, handle: &SpeechHandle) -> Vec<ToolResult> {
        let _ = self.collector.await;
        let running = std::mem::take(&mut *self.running.lock());
        let mut results = Vec::with_capacity(running.len());
        for (call, task) in running {
            let (outcome, completed_at) = match task.await {
                Ok((outcome, at)) => (Some(outcome), at),
                Err(e) if e.is_panic() => {
                    tracing::error!(tool = %call.name, "tool task panicked");
                    (
                        Some(Err(ToolError::new(INTERNAL_ERROR_MESSAGE))),
                        now_secs(),
                    )
                }
                Err(_) => (None, now_secs()),
            };
            results.push(make_result(
                call,
                outcome,
                completed_at,
                handle.interrupted(),
            ));
        }
        results
    }
}

/// Output recorded for a handoff returned by a tool of an interrupted speech (the reference's
/// text): the interruption left it unapplied.
pub(crate) const INTERRUPTED_HANDOFF_OUTPUT: &str =
    "the agent handoff was interrupted and did not happen";

fn make_result(
    call: FunctionCall,
    outcome: Option<Result<ToolOutput, ToolError>>,
    completed_at: f64,
    interrupted: bool,
) -> ToolResult {
    let (mut output, mut is_error, mut reply_required, mut handoff) = match outcome {
        None => (CANCELLED_OUTPUT.to_string(), true, false, None),
        Some(Ok(ToolOutput::Value(v))) => (value_text(v), false, true, None),
        Some(Ok(ToolOutput::None)) => (String::new(), false, false, None),
        Some(Ok(ToolOutput::Handoff { agent, returns })) => {
            // A handoff that also returns a value asks the old agent to speak it first.
            let reply = returns.is_some();
            (
                returns.map(value_text).unwrap_or_default(),
                false,
                reply,
                Some(agent),
            )
        }
        Some(Err(e)) => (e.message, true, true, None),
    };
    if interrupted {
        reply_required = false;
        if handoff.take().is_some() {
            output = INTERRUPTED_HANDOFF_OUTPUT.to_string();
            is_error = true;
        }
    }
    ToolResult {
        output: FunctionCallOutput {
            id: new_item_id("item"),
            call_id: call.call_id.clone(),
            name: call.name.clone(),
            output,
            is_error,
            created_at: completed_at,
        },
        call,
        reply_required,
        handoff,
    }
}

fn value_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}
