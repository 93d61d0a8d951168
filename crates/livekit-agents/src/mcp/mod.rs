//! MCP (Model Context Protocol) servers as tool sources.
//!
//! An [`McpServer`] connects to one server — a local command over stdio
//! ([`McpServer::stdio`]) or a URL over streamable HTTP ([`McpServer::http`]) — with the official
//! Rust SDK (`rmcp`), lists its tools and exposes each as a [`FunctionTool`](crate::llm::FunctionTool) next to the agent's
//! own tools. Give servers to a session (`AgentSessionBuilder::mcp_servers`) or an agent
//! (`AgentBuilder::mcp_servers`, which replaces the session's servers while that agent is
//! active, as in the Python framework):
//!
//! - the session's servers start with the session (`start` waits for them, each bounded by
//!   [`McpServerOptions::connect_timeout`]) and close with it; an agent's servers start when
//!   the agent becomes active and close when it is replaced;
//! - a server that fails to start is reported as a `SessionEvent::Error` with
//!   `ErrorSource::Mcp` (`recoverable: true`) and the session works on without its tools;
//! - each call goes to the server with [`McpServerOptions::timeout`] (5 s, the reference's
//!   `client_session_timeout_seconds`); a timeout, a transport failure or a result with
//!   `isError` becomes a [`ToolError`] the model sees;
//! - `notifications/tools/list_changed` makes the server list its tools again; the next reply
//!   uses the new list, and a realtime model's session gets it at once.
//!
//! Results: text blocks are joined with newlines; a result with only structured content gives
//! its JSON; any other mix (images, audio, resources) gives the JSON array of the content blocks,
//! the form the Python framework sends (images as base64 in the tool output). A
//! [`McpServerOptions::result_resolver`] can do otherwise.
//!
//! ```no_run
//! use livekit_agents::mcp::McpServer;
//!
//! # async fn demo() -> Result<(), livekit_agents::mcp::McpError> {
//! let server = McpServer::stdio("npx", ["-y", "@modelcontextprotocol/server-everything"]);
//! server.initialize().await?;
//! for tool in server.tools() {
//!     println!("{}: {}", tool.name(), tool.definition().description);
//! }
//! server.close().await;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "mcp")]
mod client;
#[cfg(feature = "mcp")]
mod result;

#[cfg(feature = "mcp")]
pub use client::{McpError, McpServer, McpServerOptions, McpTransport, ResultResolver};
#[cfg(feature = "mcp")]
pub use result::{McpContent, McpToolResult};

#[cfg(feature = "mcp")]
use crate::llm::ToolError;
#[cfg(feature = "mcp")]
use std::sync::Arc;

/// The MCP servers of a session or an agent (empty without the `mcp` feature).
///
/// Starting and closing a list is idempotent (clones share the state), and servers count their
/// users: a server given to both the session and an agent stays connected until both closed
/// their lists.
#[derive(Clone, Default)]
pub(crate) struct ServerList {
    #[cfg(feature = "mcp")]
    servers: Vec<McpServer>,
    /// Whether this list holds its servers (held while starting or closing, so a close waits
    /// for a start or close in progress).
    #[cfg(feature = "mcp")]
    held: Arc<tokio::sync::Mutex<bool>>,
    /// Stops the tasks that push tool-list changes to a realtime model.
    #[cfg(feature = "mcp")]
    watchers: Arc<parking_lot::Mutex<Option<tokio_util::sync::CancellationToken>>>,
}

impl ServerList {
    /// Appends servers.
    #[cfg(feature = "mcp")]
    pub(crate) fn extend(&mut self, servers: impl IntoIterator<Item = McpServer>) {
        self.servers.extend(servers);
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(feature = "mcp")]
        return self.servers.is_empty();
        #[cfg(not(feature = "mcp"))]
        true
    }

    /// Connects every server (concurrently). A server that fails is reported to the session as
    /// a recoverable `ErrorSource::Mcp` error and left out; the others work.
    pub(crate) async fn start_all(&self, session: &crate::voice::AgentSession) {
        #[cfg(feature = "mcp")]
        {
            if self.servers.is_empty() {
                return;
            }
            let mut held = self.held.lock().await;
            if *held {
                return;
            }
            *held = true;
            let results = futures::future::join_all(
                self.servers
                    .iter()
                    .map(|s| async move { (s, s.acquire().await) }),
            )
            .await;
            self.watch_tool_changes(session);
            for (server, result) in results {
                if let Err(e) = result {
                    tracing::error!(server = %server.label(), error = %e, "MCP server failed to start; going on without its tools");
                    session.report_component_error(
                        crate::voice::ErrorSource::Mcp,
                        crate::voice::ComponentError::Mcp {
                            server: server.label().to_string(),
                            error: Arc::new(e),
                        },
                        true,
                    );
                }
            }
        }
        #[cfg(not(feature = "mcp"))]
        let _ = session;
    }

    /// Tool-list changes reach a realtime model's session at once (pipeline LLMs read the list
    /// at each reply). Also pushes the current list now: an agent's servers connect while the
    /// agent is already active.
    #[cfg(feature = "mcp")]
    fn watch_tool_changes(&self, session: &crate::voice::AgentSession) {
        if session.realtime_link().is_none() {
            return;
        }
        let token = tokio_util::sync::CancellationToken::new();
        if let Some(old) = self.watchers.lock().replace(token.clone()) {
            old.cancel();
        }
        let weak = Arc::downgrade(&session.inner);
        let mut updates: Vec<_> = self.servers.iter().map(McpServer::tools_updates).collect();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                if !first {
                    let changed = futures::future::select_all(
                        updates.iter_mut().map(|rx| Box::pin(rx.changed())),
                    );
                    tokio::select! {
                        _ = token.cancelled() => return,
                        (result, _, _) = changed => if result.is_err() { return },
                    }
                }
                first = false;
                let Some(inner) = weak.upgrade() else { return };
                let session = crate::voice::AgentSession { inner };
                let (Some(link), Some(activity)) =
                    (session.realtime_link(), session.current_activity())
                else {
                    continue;
                };
                let tools: Vec<_> = activity
                    .all_tools()
                    .iter()
                    .map(|t| t.definition().clone())
                    .collect();
                if let Err(e) = link.session.update_tools(&tools).await {
                    session.report_error(crate::voice::ErrorSource::RealtimeModel, e, true);
                }
            }
        });
    }

    /// Releases every server (concurrently); a server nobody else uses is closed.
    pub(crate) async fn close_all(&self) {
        #[cfg(feature = "mcp")]
        {
            if self.servers.is_empty() {
                return;
            }
            let mut held = self.held.lock().await;
            if !*held {
                return;
            }
            *held = false;
            if let Some(token) = self.watchers.lock().take() {
                token.cancel();
            }
            futures::future::join_all(self.servers.iter().map(McpServer::release)).await;
        }
    }

    /// Adds the tools of the connected servers to `tools`, skipping names already present.
    pub(crate) fn append_tools(&self, tools: &mut Vec<crate::llm::FunctionTool>) {
        #[cfg(feature = "mcp")]
        for server in &self.servers {
            for tool in server.tools() {
                if !tools.iter().any(|t| t.name() == tool.name()) {
                    tools.push(tool);
                }
            }
        }
        #[cfg(not(feature = "mcp"))]
        let _ = tools;
    }
}

/// The message a tool of a closed or never-connected server returns.
#[cfg(feature = "mcp")]
pub(crate) fn unavailable(label: &str) -> ToolError {
    ToolError::new(format!(
        "Tool invocation failed: the MCP server {label} is not running."
    ))
}
