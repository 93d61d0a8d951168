//! [`TaskGroup`]: several [`AgentTask`]s in order, with going back to an earlier one.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::llm::{
    ChatContext, ChatItem, ChatMessage, ChatRequest, ChatRole, FunctionTool, RunContext, ToolError,
    ToolFlags,
};
use crate::voice::agent::INSTRUCTIONS_ITEM_ID;
use crate::voice::{Agent, AgentSession, AgentTask, TaskError};

/// A task type-erased for the group: its agent, a way to send it back, and its run.
struct ErasedTask {
    agent: Agent,
    go_back: Arc<dyn Fn(Vec<String>) + Send + Sync>,
    run: Box<
        dyn FnOnce(AgentSession) -> BoxFuture<'static, Result<serde_json::Value, TaskError>> + Send,
    >,
}

type Factory = Arc<dyn Fn() -> ErasedTask + Send + Sync>;

struct Entry {
    id: String,
    description: String,
    factory: Factory,
}

/// Given to [`TaskGroup::on_task_completed`] after each task.
#[derive(Debug, Clone)]
pub struct TaskCompletedEvent {
    /// The task's id in the group.
    pub task_id: String,
    /// The task's agent.
    pub agent: Agent,
    /// Its result.
    pub result: serde_json::Value,
}

/// The results of a [`TaskGroup`], by task id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskGroupResult {
    /// Each completed task's value (as JSON), by id.
    pub task_results: BTreeMap<String, serde_json::Value>,
    /// With [`TaskGroup::return_exceptions`]: the tasks that failed, by id.
    pub task_errors: BTreeMap<String, TaskError>,
}

impl TaskGroupResult {
    /// The value of task `id`, as a `T` (`None` if it has none or is not a `T`).
    pub fn get<T: serde::de::DeserializeOwned>(&self, id: &str) -> Option<T> {
        serde_json::from_value(self.task_results.get(id)?.clone()).ok()
    }
}

type CompletedCallback = Arc<dyn Fn(TaskCompletedEvent) -> BoxFuture<'static, ()> + Send + Sync>;

/// Runs several [`AgentTask`]s one after the other (the reference's `TaskGroup`). Once a task is
/// done the user can ask to change what it collected: every later task gets an `out_of_scope`
/// tool (hidden during its greeting) listing the tasks already visited with their
/// descriptions; when the model calls it, the current task stops, the named tasks run again
/// (new instances from their factories) and then the interrupted one.
///
/// Each task starts with the conversation of the group so far; at the end, with
/// [`summarize_chat_ctx`](Self::summarize_chat_ctx) (the default), what the tasks added to the
/// caller's conversation is replaced by one summary message written by the session's LLM.
///
/// Run it from a tool or hook of the active agent, like an [`AgentTask`]:
///
/// ```no_run
/// use livekit_agents::voice::AgentSession;
/// use livekit_agents::workflows::{GetAddressResult, GetAddressTask, GetEmailResult, GetEmailTask, TaskGroup};
///
/// # async fn demo(session: AgentSession) -> Result<(), livekit_agents::voice::TaskError> {
/// let results = TaskGroup::new()
///     .add("email", "Collect the user's email address", || GetEmailTask::new().build())
///     .add("address", "Collect the shipping address", || GetAddressTask::new().build())
///     .run(&session)
///     .await?;
/// let email: GetEmailResult = results.get("email").unwrap();
/// let address: GetAddressResult = results.get("address").unwrap();
/// # Ok(()) }
/// ```
pub struct TaskGroup {
    entries: Vec<Entry>,
    summarize_chat_ctx: bool,
    return_exceptions: bool,
    chat_ctx: ChatContext,
    on_task_completed: Option<CompletedCallback>,
}

impl std::fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskGroup")
            .field(
                "tasks",
                &self
                    .entries
                    .iter()
                    .map(|e| e.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("summarize_chat_ctx", &self.summarize_chat_ctx)
            .field("return_exceptions", &self.return_exceptions)
            .finish_non_exhaustive()
    }
}

impl Default for TaskGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskGroup {
    /// An empty group with the reference's defaults: summarize the conversation at the end,
    /// stop at the first failing task.
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            summarize_chat_ctx: true,
            return_exceptions: false,
            chat_ctx: ChatContext::new(),
            on_task_completed: None,
        }
    }

    /// Adds a task: `factory` makes a new instance each time the task runs (again), `id` names
    /// its result, `description` tells the model when to go back to it. A second task with
    /// the same id replaces the first (keeping its place).
    pub fn add<T, F>(
        mut self,
        id: impl Into<String>,
        description: impl Into<String>,
        factory: F,
    ) -> Self
    where
        T: serde::Serialize + Send + 'static,
        F: Fn() -> AgentTask<T> + Send + Sync + 'static,
    {
        let factory: Factory = Arc::new(move || {
            let task = factory();
            let completer = task.completer();
            ErasedTask {
                agent: task.agent().clone(),
                go_back: Arc::new(move |ids| completer.fail_with(TaskError::OutOfScope(ids))),
                run: Box::new(move |session: AgentSession| {
                    Box::pin(async move {
                        let value = task.run(&session).await?;
                        serde_json::to_value(value).map_err(|e| TaskError::Failed {
                            reason: format!("the task's result is not serializable: {e}"),
                        })
                    })
                }),
            }
        });
        let entry = Entry {
            id: id.into(),
            description: description.into(),
            factory,
        };
        match self.entries.iter_mut().find(|e| e.id == entry.id) {
            Some(existing) => *existing = entry,
            None => self.entries.push(entry),
        }
        self
    }

    /// Whether to replace the group's messages in the caller's conversation by one summary
    /// (default true; needs the session's LLM).
    pub fn summarize_chat_ctx(mut self, summarize: bool) -> Self {
        self.summarize_chat_ctx = summarize;
        self
    }

    /// Whether a failing task is recorded in [`TaskGroupResult::task_errors`] and the group
    /// goes on (default false: the group fails with the task's error). A closed session
    /// always ends the group.
    pub fn return_exceptions(mut self, return_exceptions: bool) -> Self {
        self.return_exceptions = return_exceptions;
        self
    }

    /// The conversation every task starts with (default: empty); the tasks' messages are
    /// added to it as they complete.
    pub fn chat_ctx(mut self, chat_ctx: ChatContext) -> Self {
        self.chat_ctx = chat_ctx;
        self
    }

    /// Called after each task completes.
    pub fn on_task_completed<F, Fut>(mut self, callback: F) -> Self
    where
        F: Fn(TaskCompletedEvent) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.on_task_completed = Some(Arc::new(move |ev| Box::pin(callback(ev))));
        self
    }

    /// Runs the tasks in `session` and returns their results.
    pub async fn run(self, session: &AgentSession) -> Result<TaskGroupResult, TaskError> {
        let caller = session.current_agent().ok_or(TaskError::NotRunning)?;
        let known_before: HashSet<String> = caller
            .chat_ctx()
            .items()
            .iter()
            .map(|i| i.id().to_owned())
            .collect();
        let mut group_ctx = self.chat_ctx.clone();
        let mut results = TaskGroupResult::default();
        let visited: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut stack: Vec<String> = self.entries.iter().map(|e| e.id.clone()).collect();

        while !stack.is_empty() {
            let task_id = stack.remove(0);
            let Some(entry) = self.entries.iter().find(|e| e.id == task_id) else {
                continue;
            };
            let task = (entry.factory)();
            share_context(&task.agent, &group_ctx);
            if let Some(tool) = self.out_of_scope_tool(&task_id, &visited, task.go_back.clone()) {
                let mut tools = own_tools(&task.agent);
                tools.push(tool);
                task.agent.update_tools(tools);
            }
            {
                let mut v = visited.lock();
                if !v.contains(&task_id) {
                    v.push(task_id.clone());
                }
            }
            let agent = task.agent.clone();
            match (task.run)(session.clone()).await {
                Ok(value) => {
                    merge_task_context(&mut group_ctx, &agent);
                    results.task_results.insert(task_id.clone(), value.clone());
                    if let Some(cb) = &self.on_task_completed {
                        cb(TaskCompletedEvent {
                            task_id,
                            agent,
                            result: value,
                        })
                        .await;
                    }
                }
                Err(TaskError::OutOfScope(targets)) => {
                    tracing::debug!(from = %task_id, to = ?targets, "task group: going back");
                    merge_task_context(&mut group_ctx, &agent);
                    stack.insert(0, task_id);
                    for target in targets.into_iter().rev() {
                        stack.insert(0, target);
                    }
                }
                Err(e @ (TaskError::SessionClosed | TaskError::NotRunning)) => return Err(e),
                Err(e) => {
                    if self.return_exceptions {
                        results.task_errors.insert(task_id, e);
                    } else {
                        return Err(e);
                    }
                }
            }
        }

        if self.summarize_chat_ctx {
            summarize_into(session, &caller, &known_before, &group_ctx).await?;
        }
        Ok(results)
    }

    /// The tool that sends the current task back to visited ones; none before any task ran.
    fn out_of_scope_tool(
        &self,
        active: &str,
        visited: &Arc<Mutex<Vec<String>>>,
        go_back: Arc<dyn Fn(Vec<String>) + Send + Sync>,
    ) -> Option<FunctionTool> {
        let ids: Vec<String> = visited
            .lock()
            .iter()
            .filter(|id| id.as_str() != active)
            .cloned()
            .collect();
        if ids.is_empty() {
            return None;
        }
        let described: serde_json::Map<String, serde_json::Value> = self
            .entries
            .iter()
            .filter(|e| ids.contains(&e.id))
            .map(|e| {
                (
                    e.id.clone(),
                    serde_json::Value::String(e.description.clone()),
                )
            })
            .collect();
        let description = format!(
            "Call to go back to earlier tasks when the user wants to change something they already gave; \
             pass the ids of the tasks concerned, in the order the user asked. For example, if the user wants \
             to change their email and the task \"email\" is described as \"Collect the user's email\", pass \
             [\"email\"]. The tasks, by id: {}",
            serde_json::Value::Object(described)
        );
        let parameters = serde_json::json!({
            "type": "object",
            "properties": {
                "task_ids": {
                    "type": "array",
                    "description": "The IDs of the tasks requested",
                    "items": {"type": "string", "enum": ids},
                }
            },
            "required": ["task_ids"],
        });
        let known: Vec<String> = self.entries.iter().map(|e| e.id.clone()).collect();
        let visited = visited.clone();
        Some(
            FunctionTool::raw(
                "out_of_scope",
                description,
                parameters,
                move |_ctx: RunContext, args: serde_json::Value| {
                    let go_back = go_back.clone();
                    let visited = visited.clone();
                    let known = known.clone();
                    async move {
                        let ids: Vec<String> = args
                            .get("task_ids")
                            .and_then(|v| serde_json::from_value(v.clone()).ok())
                            .ok_or_else(|| ToolError::new("task_ids must be a list of task ids"))?;
                        if ids.is_empty() {
                            return Err(ToolError::new("task_ids must name at least one task"));
                        }
                        let visited = visited.lock().clone();
                        if let Some(bad) = ids
                            .iter()
                            .find(|id| !known.contains(id) || !visited.contains(id))
                        {
                            return Err(ToolError::new(format!(
                                "unable to regress, invalid task id {bad}"
                            )));
                        }
                        go_back(ids);
                        Ok::<_, ToolError>(())
                    }
                },
            )
            .with_flags(ToolFlags::IGNORE_ON_ENTER),
        )
    }
}

/// The agent's own tools (without its toolsets' and the session's).
fn own_tools(agent: &Agent) -> Vec<FunctionTool> {
    agent.own_tools()
}

/// Adds the group's conversation to the task's (items it does not hold yet).
fn share_context(agent: &Agent, group_ctx: &ChatContext) {
    if group_ctx.is_empty() {
        return;
    }
    let mut ctx = agent.chat_ctx();
    ctx.remove(INSTRUCTIONS_ITEM_ID);
    for item in group_ctx.items() {
        if ctx.get(item.id()).is_none() {
            ctx.insert(item.clone());
        }
    }
    agent.update_chat_ctx(ctx);
}

/// Adds what the task said and did (messages, tool calls and outputs; not its instructions)
/// to the group's conversation.
fn merge_task_context(group_ctx: &mut ChatContext, agent: &Agent) {
    for item in agent.chat_ctx().items() {
        let keep = match item {
            ChatItem::Message(m) => matches!(m.role, ChatRole::User | ChatRole::Assistant),
            ChatItem::FunctionCall(_) | ChatItem::FunctionCallOutput(_) => true,
            ChatItem::AgentHandoff(_) => false,
        };
        if keep && group_ctx.get(item.id()).is_none() {
            group_ctx.insert(item.clone());
        }
    }
}

/// The group's transcript in the reference's XML form, for the summarizer.
fn transcript(group_ctx: &ChatContext) -> String {
    let mut lines = Vec::new();
    for item in group_ctx.items() {
        match item {
            ChatItem::Message(m) => {
                let text = m.text_content().unwrap_or_default();
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let tag = if m.role == ChatRole::User {
                    "user"
                } else {
                    "assistant"
                };
                lines.push(format!("<{tag}>{text}</{tag}>"));
            }
            ChatItem::FunctionCall(c) => lines.push(format!(
                "<function_call name=\"{}\" call_id=\"{}\">{}</function_call>",
                c.name, c.call_id, c.arguments
            )),
            ChatItem::FunctionCallOutput(o) => lines.push(format!(
                "<function_call_output name=\"{}\" call_id=\"{}\">{}</function_call_output>",
                o.name, o.call_id, o.output
            )),
            ChatItem::AgentHandoff(_) => {}
        }
    }
    lines.join("\n")
}

const SUMMARY_PROMPT: &str = "Summarize the conversation below briefly and faithfully.\n\
The conversation is XML: <user> is what the user said, <assistant> what the assistant said, \
<function_call> an action the assistant took and <function_call_output> its result (maybe an <error>).\n\
Keep what was learned from the actions without mentioning the actions themselves; keep the user's goals, \
constraints, decisions, key facts, preferences and anything still open; leave out greetings and small talk.";

/// Replaces the messages the group added to `caller`'s conversation by one summary.
async fn summarize_into(
    session: &AgentSession,
    caller: &Agent,
    known_before: &HashSet<String>,
    group_ctx: &ChatContext,
) -> Result<(), TaskError> {
    let source = transcript(group_ctx);
    if source.is_empty() {
        return Ok(());
    }
    let llm = caller
        .llm()
        .or_else(|| session.llm())
        .ok_or_else(|| TaskError::Failed {
            reason: "summarizing the task group needs an LLM".into(),
        })?;
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, SUMMARY_PROMPT);
    ctx.add_message(
        ChatRole::User,
        format!("Conversation to summarize:\n\n{source}"),
    );
    let response = llm
        .chat(ChatRequest::new(ctx))
        .collect()
        .await
        .map_err(|e| TaskError::Failed {
            reason: format!("summarizing the task group failed: {e}"),
        })?;
    let summary = response.text.trim();
    if summary.is_empty() {
        return Ok(());
    }
    let mut ctx = caller.chat_ctx();
    ctx.remove(INSTRUCTIONS_ITEM_ID);
    ctx.items_mut().retain(|item| {
        known_before.contains(item.id())
            || !matches!(item, ChatItem::Message(m) if matches!(m.role, ChatRole::User | ChatRole::Assistant))
    });
    let mut msg = ChatMessage::new(
        ChatRole::Assistant,
        format!("<chat_history_summary>{summary}</chat_history_summary>"),
    );
    msg.id = crate::llm::chat_context::new_item_id("item");
    ctx.push(ChatItem::Message(msg));
    caller.update_chat_ctx(ctx);
    Ok(())
}
