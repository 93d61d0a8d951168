//! An agent whose tools come from MCP (Model Context Protocol) servers.
//!
//! The session gets one MCP server: a command over stdio (`MCP_SERVER_COMMAND`, split on
//! whitespace) or a URL over streamable HTTP (`MCP_SERVER_URL`, with an optional bearer token
//! in `MCP_SERVER_TOKEN`). Without either it starts the reference test server
//! (`npx -y @modelcontextprotocol/server-everything`, which needs Node.js; `cargo xtask
//! install-test-deps` puts it in `.test-deps/` for offline use). The server's tools (echo,
//! get-sum, ...) appear to the LLM next to the agent's own; a server that cannot start is
//! logged as a session error and the agent works without it.
//!
//! Environment: `OPENAI_API_KEY`; for `dev`, `start` and `connect` also `LIVEKIT_URL`,
//! `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room` feature).
//!
//! ```text
//! cargo run --example mcp_agent -- console --text
//! MCP_SERVER_URL=http://127.0.0.1:3001/mcp cargo run --example mcp_agent -- console --text
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use livekit_agents::cli;
use livekit_agents::mcp::{McpServer, McpServerOptions};
use livekit_agents::room_logic::RoomOptions;
use livekit_agents::voice::{Agent, AgentSession, SessionEvent};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_openai as openai;

/// The MCP server named by the environment (see the module docs).
fn mcp_server() -> McpServer {
    let options = McpServerOptions::default()
        // Tool calls of the reference server are quick; `npx` may take a while to start.
        .with_timeout(Duration::from_secs(10))
        .with_connect_timeout(Duration::from_secs(60));
    if let Ok(url) = std::env::var("MCP_SERVER_URL") {
        let mut server = McpServer::http(url);
        if let Ok(token) = std::env::var("MCP_SERVER_TOKEN") {
            server = server.with_header("Authorization", format!("Bearer {token}"));
        }
        return server.with_options(options);
    }
    let local = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.test-deps/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    );
    let command = std::env::var("MCP_SERVER_COMMAND").unwrap_or_else(|_| {
        if std::path::Path::new(local).exists() {
            format!("node {local} stdio")
        } else {
            "npx -y @modelcontextprotocol/server-everything stdio".into()
        }
    });
    let mut parts = command.split_whitespace().map(str::to_owned);
    let program = parts.next().unwrap_or_default();
    McpServer::stdio(program, parts.collect::<Vec<_>>()).with_options(options)
}

async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    let session = AgentSession::builder()
        .llm(Arc::new(openai::Llm::new(openai::LlmOptions::default())?))
        .mcp_servers([mcp_server()])
        .build();
    let mut events = session.events();
    tokio::spawn(async move {
        while let Some(item) = events.recv().await {
            match item {
                Ok(SessionEvent::Error { error, .. }) => tracing::warn!("session error: {error}"),
                Ok(_) => {}
                Err(lagged) => tracing::warn!("{lagged}"),
            }
        }
    });
    let io = ctx
        .session_io_with(
            &session,
            RoomOptions {
                audio_input: false,
                audio_output: false,
                ..Default::default()
            },
        )
        .await?;
    let agent = Agent::new(
        "You are a helpful assistant. Use the tools you have when they help; say which tool \
         you used.",
    );
    session.start(agent, io).await?;
    Ok(())
}

fn main() -> ExitCode {
    cli::run_app(WorkerOptions::new(entrypoint))
}
