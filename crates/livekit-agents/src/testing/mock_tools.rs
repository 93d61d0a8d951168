//! [`mock_tools`]: replace what an agent's tools do, for a test.

use std::future::Future;

use crate::llm::{FunctionTool, IntoToolOutput, RunContext, ToolError};
use crate::voice::Agent;

/// Replacement handlers for tools, by name (see [`mock_tools`]).
#[derive(Debug, Default, Clone)]
pub struct MockTools {
    mocks: Vec<FunctionTool>,
}

impl MockTools {
    /// No mock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `handler` instead of the tool named `name`. It receives the call's context and the
    /// model's arguments as a JSON object (the real tool's schema is what the model sees). A
    /// later mock for the same name replaces an earlier one.
    pub fn tool<F, Fut, R>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(RunContext, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
        R: IntoToolOutput,
    {
        let name = name.into();
        self.mocks.retain(|m| m.name() != name);
        self.mocks.push(FunctionTool::raw(
            name,
            "mock",
            serde_json::json!({"type": "object", "properties": {}}),
            handler,
        ));
        self
    }

    /// The names of the mocked tools.
    pub fn names(&self) -> Vec<&str> {
        self.mocks.iter().map(FunctionTool::name).collect()
    }
}

/// Mocks in effect on an agent until this guard is dropped; dropping it restores the mocks
/// that were in effect before.
#[must_use = "the mocks are removed when the guard is dropped"]
#[derive(Debug)]
pub struct MockToolsGuard {
    agent: Agent,
    previous: Option<Vec<FunctionTool>>,
}

impl Drop for MockToolsGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            self.agent.replace_tool_mocks(previous);
        }
    }
}

/// Makes `agent`'s tools run the handlers of `mocks` instead of their own, until the returned
/// guard is dropped (the reference's `mock_tools(AgentClass, {...})`; Rust agents have no
/// class, so the mocks apply to this agent and its clones). Mocks intercept execution only: the
/// model keeps seeing the real tools' names, descriptions and schemas, and a mock whose name
/// matches no tool of the agent (its own or an enabled toolset's) does nothing. Calling it
/// again replaces the set of mocks while the new guard lives.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use livekit_agents::llm::{FunctionCall, FunctionTool, RunContext, ToolError, ToolOutput};
/// use livekit_agents::testing::{mock_tools, MockTools};
/// use livekit_agents::voice::Agent;
///
/// let weather = FunctionTool::new("lookup_weather", "Look up the weather.", |_: RunContext, _: ()| async {
///     Ok::<_, ToolError>("sunny") // would call a weather API
/// });
/// let agent = Agent::builder().tool(weather).build();
/// let guard = mock_tools(
///     &agent,
///     MockTools::new().tool("lookup_weather", |_ctx, _args| async { Ok::<_, ToolError>("rainy") }),
/// );
/// let tool = agent.tools().remove(0);
/// let out = tool.call(RunContext::detached(FunctionCall::new("c1", "lookup_weather", "{}")), "{}").await;
/// assert!(matches!(out, Ok(ToolOutput::Value(v)) if v == "rainy"));
/// drop(guard); // the real tool again
/// # });
/// ```
pub fn mock_tools(agent: &Agent, mocks: MockTools) -> MockToolsGuard {
    let previous = agent.replace_tool_mocks(mocks.mocks);
    MockToolsGuard {
        agent: agent.clone(),
        previous: Some(previous),
    }
}
