//! [`AgentTask`]: an agent that takes over the session until it completes with a value.
//!
//! Awaited from a tool or a hook of the active agent: the parent agent stops scheduling speech,
//! the task's agent becomes active (its `on_enter` runs), and when a tool of the task calls
//! [`TaskCompleter::complete`] the task's agent exits, its conversation is merged into the
//! parent's, and the parent resumes.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::activity::Activity;
use super::agent::Agent;
use super::session::{Activation, AgentSession};
use crate::llm::ChatItem;

/// Why a task ended without a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task failed (set by [`TaskCompleter::fail`]).
    #[error("task failed: {reason}")]
    Failed {
        /// Why the task failed.
        reason: String,
    },
    /// The session closed before the task completed.
    #[error("the session closed before the task completed")]
    SessionClosed,
    /// The session is not running.
    #[error("the session is not running")]
    NotRunning,
    /// The user asked to go back to earlier tasks of a
    /// [`TaskGroup`](crate::workflows::TaskGroup) (their ids, in the order asked); the group
    /// runs them again, then this one.
    #[error("the user asked to go back to the tasks {0:?}")]
    OutOfScope(Vec<String>),
}

/// The step whose tool completed a task: its speech and agent, and how many tool steps of
/// that speech were recorded when the tool completed it.
struct CompletingStep {
    speech: super::SpeechHandle,
    agent: Agent,
    recorded: u32,
}

impl CompletingStep {
    /// The tool step running in this task, if it is one.
    fn current() -> Option<Self> {
        super::tool_execution::current_tool().map(|scope| CompletingStep {
            recorded: scope.speech.tool_steps_recorded(),
            speech: scope.speech,
            agent: scope.agent,
        })
    }
}

/// The result, and the tool step that gave it (if a tool handler gave it).
type ResultSlot<T> =
    Arc<Mutex<Option<oneshot::Sender<(Result<T, TaskError>, Option<CompletingStep>)>>>>;

/// How long a task waits, after a tool completed it, for that tool's output to be recorded
/// before the task's agent is closed (closing interrupts the speech that runs the tool).
const TOOL_RESULT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Marks the session's agent switch as pending from the moment a running task completes until
/// the parent agent is back, so that `wait_idle` (the console, `RunResult`) does not see the
/// closing task agent as idle and hand the next user turn to it.
#[derive(Default)]
struct SwitchMark {
    /// The running session's pending-switch counter (set by `AgentTask::run`).
    pending: Mutex<Option<tokio::sync::watch::Sender<u32>>>,
    marked: std::sync::atomic::AtomicBool,
}

impl SwitchMark {
    fn mark(&self) {
        if let Some(pending) = self.pending.lock().as_ref() {
            if !self.marked.swap(true, std::sync::atomic::Ordering::SeqCst) {
                pending.send_modify(|n| *n += 1);
            }
        }
    }

    fn unmark(&self) {
        if let Some(pending) = self.pending.lock().take() {
            if self.marked.swap(false, std::sync::atomic::Ordering::SeqCst) {
                pending.send_modify(|n| *n = n.saturating_sub(1));
            }
        }
    }
}

/// Ends the pending switch of a task when `AgentTask::run` returns, whichever way it returns.
struct UnmarkOnDrop(Arc<SwitchMark>);

impl Drop for UnmarkOnDrop {
    fn drop(&mut self) {
        self.0.unmark();
    }
}

/// Completes an [`AgentTask`]; give it to the task's tools.
pub struct TaskCompleter<T> {
    tx: ResultSlot<T>,
    switch: Arc<SwitchMark>,
}

impl<T> Clone for TaskCompleter<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            switch: self.switch.clone(),
        }
    }
}

impl<T> std::fmt::Debug for TaskCompleter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCompleter")
            .field("completed", &self.tx.lock().is_none())
            .finish()
    }
}

impl<T> TaskCompleter<T> {
    /// Completes the task with `value` (later calls are ignored).
    pub fn complete(&self, value: T) {
        if let Some(tx) = self.tx.lock().take() {
            self.switch.mark();
            let _ = tx.send((Ok(value), CompletingStep::current()));
        }
    }

    /// Ends the task with an error.
    pub fn fail(&self, message: impl Into<String>) {
        self.fail_with(TaskError::Failed {
            reason: message.into(),
        });
    }

    /// Ends the task with `error` (later calls are ignored).
    pub fn fail_with(&self, error: TaskError) {
        if let Some(tx) = self.tx.lock().take() {
            self.switch.mark();
            let _ = tx.send((Err(error), CompletingStep::current()));
        }
    }

    /// Whether the task already completed.
    pub fn is_done(&self) -> bool {
        self.tx.lock().is_none()
    }
}

/// An agent that runs until it completes with a `T`.
///
/// ```no_run
/// use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
/// use livekit_agents::voice::{Agent, AgentSession, AgentTask};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Email { address: String }
///
/// # async fn demo(session: AgentSession) {
/// let task = AgentTask::<String>::new(|done| {
///     Agent::builder()
///         .instructions("Ask for the user's email address.")
///         .tool(FunctionTool::new("record_email", "Record the email.", move |_ctx: RunContext, e: Email| {
///             let done = done.clone();
///             async move {
///                 done.complete(e.address);
///                 Ok::<_, ToolError>(())
///             }
///         }))
///         .build()
/// });
/// let email = task.run(&session).await;
/// # }
/// ```
pub struct AgentTask<T> {
    agent: Agent,
    completer: TaskCompleter<T>,
    rx: oneshot::Receiver<(Result<T, TaskError>, Option<CompletingStep>)>,
}

impl<T> std::fmt::Debug for AgentTask<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTask")
            .field("agent", &self.agent.id())
            .finish()
    }
}

impl<T: Send + 'static> AgentTask<T> {
    /// A task whose agent `build` makes, given the completer its tools call.
    pub fn new(build: impl FnOnce(TaskCompleter<T>) -> Agent) -> Self {
        let (tx, rx) = oneshot::channel();
        let completer = TaskCompleter {
            tx: Arc::new(Mutex::new(Some(tx))),
            switch: Arc::default(),
        };
        Self {
            agent: build(completer.clone()),
            completer,
            rx,
        }
    }

    /// The task's agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// A completer of this task, for ending it from outside its tools (e.g. a
    /// [`TaskGroup`](crate::workflows::TaskGroup) going back to an earlier task).
    pub fn completer(&self) -> TaskCompleter<T> {
        self.completer.clone()
    }

    /// Runs the task in `session` and returns its value; the previous agent resumes after.
    pub async fn run(self, session: &AgentSession) -> Result<T, TaskError> {
        let parent = session.current_activity().ok_or(TaskError::NotRunning)?;
        *self.completer.switch.pending.lock() = Some(session.inner.pending_updates.clone());
        let _unmark = UnmarkOnDrop(self.completer.switch.clone());
        let activity = Activity::new(session.clone(), self.agent.clone());
        if session
            .activate(activity.clone(), Activation::Task)
            .await
            .is_none()
        {
            return Err(TaskError::NotRunning);
        }

        // No decision here reads the public event broadcast (which can lag): the session's
        // closed flag, and the completing step's recording, set by the activity loop itself.
        let (result, completing) = tokio::select! {
            biased;
            r = self.rx => r.unwrap_or_else(|_| (Err(TaskError::Failed { reason: "the task was dropped".into() }), None)),
            _ = session.wait_closed() => (Err(TaskError::SessionClosed), None),
        };
        if !session.is_running() {
            return result;
        }
        // A tool of this task's agent completed it and is still returning: let the loop record
        // its step's calls and outputs before closing the activity, which would otherwise
        // interrupt the step and record the call as cancelled.
        if let Some(step) = completing.filter(|s| s.agent == self.agent) {
            let recorded = async {
                tokio::select! {
                    _ = step.speech.wait_tool_step_recorded(step.recorded) => {}
                    _ = session.wait_closed() => {}
                }
            };
            if tokio::time::timeout(TOOL_RESULT_GRACE, recorded)
                .await
                .is_err()
            {
                tracing::warn!("the tool that completed the task did not finish in time");
            }
        }

        self.agent.behavior().on_exit(activity.context()).await;
        activity.close();
        // Merge the task's conversation (messages) into the parent's.
        let parent_agent = parent.agent().clone();
        let known: Vec<String> = parent_agent
            .chat_ctx()
            .items()
            .iter()
            .map(|i| i.id().to_string())
            .collect();
        for item in self.agent.chat_ctx().items() {
            if matches!(item, ChatItem::Message(_)) && !known.iter().any(|k| k == item.id()) {
                parent_agent.push_chat_item(item.clone());
            }
        }
        session.activate(parent, Activation::Resume).await;
        result
    }
}
