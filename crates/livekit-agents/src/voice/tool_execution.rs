//! Tool execution: every call streamed by the LLM runs as its own task as soon as the speech is
//! scheduled; outputs are collected when the step ends. A call cut short by an interruption gets
//! a "cancelled" output, so the history never holds a call without an answer.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::activity::Activity;
use super::agent::Agent;
use super::speech_handle::SpeechHandle;
use crate::llm::chat_context::{new_item_id, now_secs};
use crate::llm::{
    FunctionCall, FunctionCallOutput, FunctionTool, RunContext, ToolError, ToolOutput,
};

tokio::task_local! {
    /// Set while a tool handler runs (so `generate_reply` defaults to no tools there).
    static IN_TOOL: bool;
}

/// Whether the current task is a tool handler.
pub(crate) fn in_tool() -> bool {
    IN_TOOL.try_with(|v| *v).unwrap_or(false)
}

/// Output text recorded for a tool call cancelled by an interruption.
pub const CANCELLED_OUTPUT: &str = "The tool call was cancelled because the user interrupted.";

/// One finished call.
pub(crate) struct ToolResult {
    pub call: FunctionCall,
    pub output: FunctionCallOutput,
    pub reply_required: bool,
    pub handoff: Option<Agent>,
}

type Running = Arc<Mutex<Vec<(FunctionCall, JoinHandle<Result<ToolOutput, ToolError>>)>>>;

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
        let sink = running.clone();
        let collector = tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                let tool = tools.iter().find(|t| t.name() == call.name).cloned();
                let ctx = RunContext::new(
                    call.clone(),
                    Some(session.clone()),
                    Some(handle.clone()),
                    session.userdata(),
                );
                let arguments = call.arguments.clone();
                let name = call.name.clone();
                let task = tokio::spawn(IN_TOOL.scope(true, async move {
                    match tool {
                        Some(tool) => tool.call(ctx, &arguments).await,
                        None => Err(ToolError::new(format!("unknown function: {name}"))),
                    }
                }));
                sink.lock().push((call, task));
            }
        });
        Self { running, collector }
    }

    /// Waits for the calls (the LLM stream must have ended or been dropped). With an
    /// interruption, unfinished calls are aborted and get a cancelled output.
    pub(crate) async fn finish(self, handle: &SpeechHandle) -> Vec<ToolResult> {
        let _ = self.collector.await;
        let running = std::mem::take(&mut *self.running.lock());
        let mut results = Vec::with_capacity(running.len());
        for (call, task) in running {
            let outcome = if handle.interrupted() && !task.is_finished() {
                task.abort();
                None
            } else {
                let abort = task.abort_handle();
                match handle.wait_if_not_interrupted(task).await {
                    Some(Ok(outcome)) => Some(outcome),
                    Some(Err(join_error)) => Some(Err(ToolError::new(format!(
                        "the tool failed: {join_error}"
                    )))),
                    None => {
                        abort.abort();
                        None
                    }
                }
            };
            results.push(make_result(call, outcome));
        }
        results
    }
}

fn make_result(call: FunctionCall, outcome: Option<Result<ToolOutput, ToolError>>) -> ToolResult {
    let (output, is_error, reply_required, handoff) = match outcome {
        None => (CANCELLED_OUTPUT.to_string(), true, false, None),
        Some(Ok(ToolOutput::Value(v))) => (value_text(v), false, true, None),
        Some(Ok(ToolOutput::None)) => (String::new(), false, false, None),
        Some(Ok(ToolOutput::Handoff { agent, returns })) => (
            returns.map(value_text).unwrap_or_default(),
            false,
            false,
            Some(agent),
        ),
        Some(Err(e)) => (e.message, true, true, None),
    };
    ToolResult {
        output: FunctionCallOutput {
            id: new_item_id("item"),
            call_id: call.call_id.clone(),
            name: call.name.clone(),
            output,
            is_error,
            created_at: now_secs(),
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
