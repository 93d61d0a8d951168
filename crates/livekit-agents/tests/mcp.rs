//! MCP servers as tool sources, against real servers: the reference test server from npm
//! (`@modelcontextprotocol/server-everything`, installed by `cargo xtask install-test-deps`
//! into `.test-deps/`) over stdio and streamable HTTP, and a local Node server that misbehaves
//! (`tests/fixtures/mcp_misbehaving.js`: hangs, garbage, exits mid-call, changes its tool list).
//!
//! These tests talk to child processes, so they run on the real clock (a paused clock would
//! fire the timeouts while the process is still starting). When Node or the npm package is
//! missing they are skipped with a message, unless `LK_REQUIRE_TEST_DEPS` is set (as
//! `cargo xtask ci` does), where they fail.
#![cfg(feature = "mcp")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use livekit_agents::llm::{ChatRole, FunctionCall, RunContext, ToolOutput};
use livekit_agents::mcp::{McpError, McpServer, McpServerOptions, McpTransport};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
use livekit_agents::voice::{Agent, AgentSession, ErrorSource, SessionEvent, SessionIo};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Skips (returns `None`) or, under `LK_REQUIRE_TEST_DEPS`, fails with a clear message.
fn missing(what: &str) -> Option<PathBuf> {
    if std::env::var_os("LK_REQUIRE_TEST_DEPS").is_some() {
        panic!("{what} is missing: run `cargo xtask install-test-deps` (needs Node.js and npm)");
    }
    eprintln!("skipping: {what} is missing (run `cargo xtask install-test-deps`)");
    None
}

fn node() -> Option<PathBuf> {
    let ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(PathBuf::from("node"))
    } else {
        missing("Node.js (`node`)")
    }
}

/// The entry script of the npm reference server.
fn everything_script() -> Option<PathBuf> {
    node()?;
    let script = workspace_root()
        .join(".test-deps/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if script.exists() {
        Some(script)
    } else {
        missing("the npm package @modelcontextprotocol/server-everything")
    }
}

fn misbehaving(args: &[&str]) -> Option<McpServer> {
    node()?;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_misbehaving.js");
    let mut all = vec![script.to_string_lossy().into_owned()];
    all.extend(args.iter().map(|s| s.to_string()));
    Some(McpServer::stdio("node", all))
}

fn text(out: ToolOutput) -> String {
    match out {
        ToolOutput::Value(Value::String(s)) => s,
        other => panic!("expected text, got {other:?}"),
    }
}

fn short(timeout_ms: u64) -> McpServerOptions {
    McpServerOptions::default()
        .with_timeout(Duration::from_millis(timeout_ms))
        .with_connect_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn reference_server_over_stdio_lists_and_calls_tools() {
    let Some(script) = everything_script() else {
        return;
    };
    let server = McpServer::stdio(
        "node",
        [script.to_string_lossy().into_owned(), "stdio".into()],
    )
    .with_options(short(10_000));
    server.initialize().await.unwrap();
    assert!(server.is_initialized());
    let tools = server.tools();
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    for expected in [
        "echo",
        "get-sum",
        "get-tiny-image",
        "get-structured-content",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for t in &tools {
        t.definition().validate().unwrap();
        assert!(t.definition().parameters.get("$schema").is_none());
    }
    let echo = tools.iter().find(|t| t.name() == "echo").unwrap();
    assert_eq!(
        echo.definition().description,
        "Echoes back the input string"
    );

    // Through the function tool, as the session calls it.
    let call = FunctionCall::new("c1", "echo", r#"{"message":"hello"}"#);
    let out = echo
        .call(RunContext::detached(call.clone()), &call.arguments)
        .await
        .unwrap();
    assert_eq!(text(out), "Echo: hello");

    let sum = server
        .call_tool("get-sum", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert!(text(sum).contains('5'));

    // An image result keeps its block JSON (type, MIME type, base64 data), as the reference does.
    let image = text(server.call_tool("get-tiny-image", json!({})).await.unwrap());
    let blocks: Vec<Value> = serde_json::from_str(&image).unwrap();
    let img = blocks.iter().find(|b| b["type"] == "image").unwrap();
    assert_eq!(img["mimeType"], "image/png");
    assert!(img["data"].as_str().unwrap().len() > 100);

    let raw = server
        .call_tool_raw("get-structured-content", json!({"location": "Chicago"}))
        .await
        .unwrap();
    let structured = raw.structured_content.clone().unwrap();
    assert!(structured.get("temperature").is_some(), "{structured}");
    assert!(text(raw.into_output().unwrap()).contains("temperature"));

    // Protocol errors (an unknown tool) and invalid arguments become tool errors.
    let err = server
        .call_tool("no-such-tool", json!({}))
        .await
        .unwrap_err();
    assert!(!err.message.is_empty());
    let err = server
        .call_tool("get-sum", json!({"a": "x"}))
        .await
        .unwrap_err();
    assert!(!err.message.is_empty());

    server.close().await;
    assert!(!server.is_initialized());
    assert!(server.tools().is_empty());
    let out = echo
        .call(RunContext::detached(call.clone()), &call.arguments)
        .await;
    assert!(out.unwrap_err().message.contains("not running"));
}

#[tokio::test]
async fn reference_server_over_streamable_http() {
    let Some(script) = everything_script() else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Ready once it says so on stderr.
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("listening on port") {
                return;
            }
        }
        panic!("the server ended before listening");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let server = McpServer::http(format!("http://127.0.0.1:{port}/mcp"))
        .with_header("X-Test-Header", "secret-value")
        .with_options(short(10_000));
    assert_eq!(server.label(), "127.0.0.1/mcp");
    assert!(!format!("{server:?}").contains("secret-value"));
    server.initialize().await.unwrap();
    assert!(server.tools().iter().any(|t| t.name() == "echo"));
    let out = server
        .call_tool("echo", json!({"message": "over http"}))
        .await
        .unwrap();
    assert_eq!(text(out), "Echo: over http");
    server.close().await;
    child.kill().await.unwrap();
}

#[tokio::test]
async fn misbehaving_server_calls_become_tool_errors() {
    let Some(server) = misbehaving(&[]) else {
        return;
    };
    // The call timeout is real time (a child process): 2 s is what the hung call costs, and
    // far above what a loaded machine needs for the well-behaved calls around it.
    let server = server.with_options(short(2_000));
    server.initialize().await.unwrap();
    assert_eq!(
        text(server.call_tool("ok", json!({})).await.unwrap()),
        "fine"
    );

    let err = server.call_tool("hang", json!({})).await.unwrap_err();
    assert!(
        err.message.contains("did not answer within 2.0 s"),
        "{}",
        err.message
    );
    // The connection survives a hung call.
    assert_eq!(
        text(server.call_tool("ok", json!({})).await.unwrap()),
        "fine"
    );

    let err = server
        .call_tool("flagged_error", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.message, "it broke");

    // A garbage line gets no answer to the call: a tool error, never a panic.
    let err = server.call_tool("garbage", json!({})).await.unwrap_err();
    assert!(!err.message.is_empty());

    // The process exits mid-call: an error, and later calls fail too (never hang or panic).
    let err = server.call_tool("exit", json!({})).await.unwrap_err();
    assert!(!err.message.is_empty());
    let err = server.call_tool("ok", json!({})).await.unwrap_err();
    assert!(!err.message.is_empty());
    server.close().await;
    assert!(!server.is_initialized());
}

#[tokio::test]
async fn tool_list_changes_update_the_tools() {
    let Some(server) = misbehaving(&[]) else {
        return;
    };
    let server = server.with_options(short(5_000));
    server.initialize().await.unwrap();
    assert!(!server.tools().iter().any(|t| t.name() == "extra"));
    let mut updates = server.tools_updates();
    updates.borrow_and_update();
    assert_eq!(
        text(server.call_tool("add_tool", json!({})).await.unwrap()),
        "added"
    );
    tokio::time::timeout(Duration::from_secs(30), updates.changed())
        .await
        .unwrap()
        .unwrap();
    let extra = server
        .tools()
        .into_iter()
        .find(|t| t.name() == "extra")
        .expect("the new tool is listed");
    let call = FunctionCall::new("c1", "extra", "{}");
    let out = extra.call(RunContext::detached(call), "{}").await.unwrap();
    assert_eq!(text(out), "extra works");
    server.close().await;
}

#[tokio::test]
async fn servers_that_cannot_start_fail_clearly() {
    let server = McpServer::stdio("/nonexistent/mcp-server", Vec::<String>::new());
    let err = server.initialize().await.unwrap_err();
    assert!(matches!(err, McpError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/mcp-server"));

    let Some(server) = misbehaving(&["--garbage-init"]) else {
        return;
    };
    let server = server
        .with_options(McpServerOptions::default().with_connect_timeout(Duration::from_millis(500)));
    let err = server.initialize().await.unwrap_err();
    assert!(
        matches!(err, McpError::Initialize { .. } | McpError::Timeout(_)),
        "{err}"
    );
    assert!(!server.is_initialized());
    assert!(server.tools().is_empty());

    let http = McpServer::new(
        McpTransport::StreamableHttp {
            url: "http://127.0.0.1:9/mcp".into(),
            headers: vec![],
        },
        McpServerOptions::default(),
    );
    assert!(http.initialize().await.is_err());
}

#[tokio::test]
async fn session_uses_mcp_tools_and_survives_a_failed_server() {
    let Some(good) = misbehaving(&[]) else {
        return;
    };
    let good = good.with_options(short(5_000));
    let broken = McpServer::stdio("/nonexistent/mcp-server", Vec::<String>::new());
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("ok", "{}", Duration::from_millis(1)),
        FakeLlmResponse::text("All good.", Duration::from_millis(1)),
    ]);
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .mcp_servers([good.clone(), broken])
        .build();
    let mut events = session.events();
    session
        .start(Agent::new("Use tools."), SessionIo::default())
        .await
        .unwrap();
    let mut saw_error = false;
    while let Some(Ok(ev)) = events.try_recv() {
        if let SessionEvent::Error {
            source: ErrorSource::Mcp,
            error,
            recoverable,
        } = ev
        {
            assert!(recoverable);
            assert!(
                matches!(error, livekit_agents::voice::ComponentError::Mcp { .. }),
                "{error:?}"
            );
            assert!(
                error.to_string().contains("/nonexistent/mcp-server"),
                "{error}"
            );
            saw_error = true;
        }
    }
    assert!(saw_error, "a failed server is an error event");

    let result = session.run("check").await.unwrap();
    let mut expect = result.expect();
    expect.next_event().is_function_call("ok", None);
    expect
        .next_event()
        .is_function_call_output(Some("fine"), Some(false));
    expect.next_event().is_message(ChatRole::Assistant);
    let request = &llm.requests()[0];
    assert!(request.tools.iter().any(|t| t.name == "add_tool"));

    session.close().await;
    assert!(
        !good.is_initialized(),
        "session servers close with the session"
    );
}

#[tokio::test]
async fn agent_servers_replace_the_sessions_while_active() {
    let (Some(session_server), Some(agent_server)) = (misbehaving(&[]), misbehaving(&[])) else {
        return;
    };
    let agent_server =
        agent_server.with_options(short(5_000).with_allowed_tools(vec!["ok".into()]));
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("Hi.", Duration::from_millis(1))]);
    let session = AgentSession::builder()
        .llm(Arc::new(llm.clone()))
        .mcp_servers([session_server.with_options(short(5_000))])
        .build();
    let agent = Agent::builder()
        .instructions("Use tools.")
        .mcp_servers([agent_server.clone()])
        .build();
    session.start(agent, SessionIo::default()).await.unwrap();
    let mut updates = agent_server.tools_updates();
    tokio::time::timeout(Duration::from_secs(10), updates.wait_for(|v| *v > 0))
        .await
        .unwrap()
        .unwrap();
    session.run("hello").await.unwrap();
    let tools: Vec<String> = llm.requests()[0]
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(
        tools,
        vec!["ok".to_string()],
        "only the agent's allowed tool"
    );
    session.close().await;
    assert!(
        !agent_server.is_initialized(),
        "the agent's servers close with the session"
    );
}

#[tokio::test]
async fn a_server_shared_by_the_session_and_an_agent_stays_until_both_let_go() {
    let Some(shared) = misbehaving(&[]) else {
        return;
    };
    let shared = shared.with_options(short(5_000));
    let llm = FakeLlm::new(vec![]);
    let session = AgentSession::builder()
        .llm(Arc::new(llm))
        .mcp_servers([shared.clone()])
        .build();
    let first = Agent::builder()
        .instructions("First.")
        .mcp_servers([shared.clone()])
        .build();
    session.start(first, SessionIo::default()).await.unwrap();
    assert!(shared.is_initialized());
    // The agent that also held it is replaced: the session still holds the server.
    session.update_agent(Agent::new("Second."));
    assert!(shared.is_initialized());
    assert!(shared.tools().iter().any(|t| t.name() == "ok"));
    session.close().await;
    assert!(!shared.is_initialized());
}

/// Lets spawned tasks run (the watcher pushing the tool list is one).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn tool_list_changes_reach_a_realtime_model() {
    use livekit_agents::testing::FakeRealtimeModel;
    let Some(server) = misbehaving(&[]) else {
        return;
    };
    let server = server.with_options(short(5_000));
    let model = FakeRealtimeModel::new(vec![]);
    let session = AgentSession::builder()
        .realtime_model(Arc::new(model.clone()))
        .mcp_servers([server.clone()])
        .build();
    session
        .start(Agent::new("Use tools."), SessionIo::default())
        .await
        .unwrap();
    settle().await;
    // The six tools of the server went with the agent.
    assert!(
        model.calls().iter().any(|c| c == "update_tools:6"),
        "{:?}",
        model.calls()
    );
    let mut updates = server.tools_updates();
    updates.borrow_and_update();
    server.call_tool("add_tool", json!({})).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), updates.changed())
        .await
        .unwrap()
        .unwrap();
    settle().await;
    assert!(
        model.calls().iter().any(|c| c == "update_tools:7"),
        "{:?}",
        model.calls()
    );
    session.close().await;
}
