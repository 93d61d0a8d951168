//! Tool flags (`IGNORE_ON_ENTER`), named toolsets, `mock_tools` and the typed `RunResult`
//! assertions, on text sessions driven by the scripted fake LLM on the paused clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livekit_agents::io::memory::MemoryTextOutput;
use livekit_agents::llm::{
    function_tool, ChatRole, FunctionTool, RunContext, ToolError, ToolFlags, Toolset,
};
use livekit_agents::testing::{mock_tools, FakeLlm, FakeLlmResponse, MockTools, RunEventType};
use livekit_agents::voice::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn tool(name: &'static str, answer: &'static str) -> FunctionTool {
    FunctionTool::raw(
        name,
        "A test tool.",
        serde_json::json!({"type": "object", "properties": {}}),
        move |_ctx: RunContext, _a: serde_json::Value| async move { Ok::<_, ToolError>(answer) },
    )
}

async fn text_session(llm: FakeLlm, agent: Agent) -> AgentSession {
    let session = AgentSession::builder().llm(Arc::new(llm)).build();
    session
        .start(
            agent,
            SessionIo {
                text_output: Some(Arc::new(MemoryTextOutput::new())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    session
}

fn tool_names(req: &livekit_agents::llm::ChatRequest) -> Vec<String> {
    let mut names: Vec<String> = req.tools.iter().map(|t| t.name.clone()).collect();
    names.sort();
    names
}

struct Greets;

#[async_trait]
impl AgentBehavior for Greets {
    async fn on_enter(&self, ctx: AgentContext) {
        let _ = ctx
            .session
            .generate_reply(ReplyOptions::default().with_instructions("Greet the user."));
    }
}

#[tokio::test(start_paused = true)]
async fn ignore_on_enter_tools_are_hidden_from_the_greeting_only() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::text("Hello! What is your email?", ms(50)),
        FakeLlmResponse::text("Thanks.", ms(50)),
    ]);
    let agent = Agent::builder()
        .tool(tool("lookup", "found"))
        .tool(tool("confirm_email", "ok").with_flags(ToolFlags::IGNORE_ON_ENTER))
        .behavior(Greets)
        .build();
    let session = text_session(llm.clone(), agent).await;
    tokio::time::sleep(ms(500)).await;
    session.run("It is a@b.co").await.unwrap();
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        tool_names(&reqs[0]),
        vec!["lookup"],
        "the greeting hides it"
    );
    assert_eq!(
        tool_names(&reqs[1]),
        vec!["confirm_email", "lookup"],
        "a user turn offers it"
    );
}

#[tokio::test(start_paused = true)]
async fn ignore_on_enter_also_holds_for_the_follow_up_of_a_tool_called_in_the_greeting() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("lookup", "{}", ms(50)),
        FakeLlmResponse::text("Found it. What is your email?", ms(50)),
    ]);
    let agent = Agent::builder()
        .tool(tool("lookup", "found"))
        .tool(tool("confirm_email", "ok").with_flags(ToolFlags::IGNORE_ON_ENTER))
        .behavior(Greets)
        .build();
    let _session = text_session(llm.clone(), agent).await;
    tokio::time::sleep(ms(1000)).await;
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(tool_names(&reqs[1]), vec!["lookup"]);
}

/// Confirms the email.
#[function_tool(flags = ToolFlags::IGNORE_ON_ENTER)]
async fn confirm_email() -> Result<String, ToolError> {
    Ok("confirmed".into())
}

#[test]
fn the_macro_sets_flags() {
    assert!(confirm_email().flags().contains(ToolFlags::IGNORE_ON_ENTER));
    assert_eq!(tool("x", "y").flags(), ToolFlags::NONE);
}

#[tokio::test(start_paused = true)]
async fn toolsets_can_be_disabled_and_enabled_at_run_time() {
    let llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text("ok", ms(10)));
    let agent = Agent::builder()
        .tool(tool("lookup", "found"))
        .toolset(Toolset::new(
            "payments",
            [tool("refund", "done"), tool("charge", "done")],
        ))
        .disabled_toolset(Toolset::new("admin", [tool("reset", "done")]))
        .build();
    let session = text_session(llm.clone(), agent.clone()).await;
    session.run("one").await.unwrap();
    assert!(agent.disable_toolset("payments"));
    session.run("two").await.unwrap();
    assert!(agent.enable_toolset("admin"));
    assert!(agent.enable_toolset("payments"));
    session.run("three").await.unwrap();
    assert!(!agent.enable_toolset("nope"));
    let reqs = llm.requests();
    assert_eq!(tool_names(&reqs[0]), vec!["charge", "lookup", "refund"]);
    assert_eq!(tool_names(&reqs[1]), vec!["lookup"]);
    assert_eq!(
        tool_names(&reqs[2]),
        vec!["charge", "lookup", "refund", "reset"]
    );
    assert_eq!(
        agent.toolsets(),
        vec![("payments".to_string(), true), ("admin".to_string(), true)]
    );
}

#[tokio::test(start_paused = true)]
async fn mock_tools_replace_execution_but_not_the_schema_and_restore_on_drop() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("refund", "{}", ms(10)),
        FakeLlmResponse::text("Refunded.", ms(10)),
        FakeLlmResponse::tool_call("refund", "{}", ms(10)),
        FakeLlmResponse::text("Refunded.", ms(10)),
    ]);
    let agent = Agent::builder()
        .toolset(Toolset::new("payments", [tool("refund", "real refund")]))
        .build();
    let session = text_session(llm.clone(), agent.clone()).await;
    {
        let _mocks = mock_tools(
            &agent,
            MockTools::new().tool("refund", |_ctx, _args| async {
                Err::<String, _>(ToolError::new("card declined"))
            }),
        );
        let result = session.run("refund me").await.unwrap();
        let mut expect = result.expect();
        expect.next_function_call();
        expect
            .next_event()
            .is_function_call_output(Some("card declined"), Some(true));
        assert_eq!(
            llm.requests()[0].tools[0].description,
            "A test tool.",
            "the model sees the real tool"
        );
    }
    let result = session.run("again").await.unwrap();
    result
        .expect()
        .contains_function_call_output()
        .is_function_call_output(None, None)
        .output
        .contains("real refund")
        .then_some(())
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn run_result_indexing_ranges_and_typed_next_event() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("lookup", "{}", ms(10)),
        FakeLlmResponse::text("It is found.", ms(10)),
    ]);
    let session = text_session(llm, Agent::builder().tool(tool("lookup", "found")).build()).await;
    let result = session.run("find it").await.unwrap();
    let expect = result.expect();
    // call, output, assistant message
    expect[0].is_function_call("lookup", Some(serde_json::json!({})));
    assert_eq!(
        expect[1].is_function_call_output(None, Some(false)).output,
        "found"
    );
    let last = expect.nth(-1).is_message(ChatRole::Assistant);
    assert_eq!(last.text_content().as_deref(), Some("It is found."));
    expect.range(1..).contains_message(ChatRole::Assistant);
    expect.range(..2).contains_function_call("lookup");
    assert_eq!(expect.range(5..).events().len(), 0);

    let mut cursor = result.expect();
    let msg = cursor.next_message(); // skips the call and its output
    assert_eq!(msg.event().role, ChatRole::Assistant);
    cursor.no_more_events();

    let mut cursor = result.expect();
    assert!(cursor.skip_next_message_if(ChatRole::Assistant).is_none());
    let call = cursor.skip_next_function_call_if("lookup").unwrap();
    assert_eq!(call.name, "lookup");
    assert_eq!(
        cursor
            .next_event_of(RunEventType::Message)
            .event()
            .event_type(),
        RunEventType::Message
    );
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "out of range")]
async fn indexing_past_the_end_panics() {
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("hi", ms(10))]);
    let session = text_session(llm, Agent::new("")).await;
    let result = session.run("hello").await.unwrap();
    result.expect().nth(-2);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "tried to skip 2 event(s)")]
async fn skipping_more_events_than_there_are_panics() {
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("hi", ms(10))]);
    let session = text_session(llm, Agent::new("")).await;
    let result = session.run("hello").await.unwrap();
    result.expect().skip_next(2);
}

#[tokio::test(start_paused = true)]
async fn stt_context_options_reach_stts_that_accept_them() {
    use livekit_agents::testing::FakeStt;
    for supported in [true, false] {
        let mut stt = FakeStt::new(vec![]);
        if supported {
            stt = stt.with_keyterms_support().with_chat_context_support();
        }
        let options = SessionOptions::default().with_stt_context_options(
            livekit_agents::stt::SttContextOptions::default()
                .with_keyterms(vec!["LiveKit".into(), "Acme".into()]),
        );
        let llm = FakeLlm::new(vec![FakeLlmResponse::text("Hello.", ms(10))]);
        let session = AgentSession::builder()
            .llm(Arc::new(llm))
            .stt(Arc::new(stt.clone()))
            .options(options)
            .build();
        session
            .start(
                Agent::new(""),
                SessionIo {
                    text_output: Some(Arc::new(MemoryTextOutput::new())),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        session.run("hi").await.unwrap();
        tokio::time::sleep(ms(50)).await;
        if supported {
            assert_eq!(stt.session_keyterms(), vec!["LiveKit", "Acme"]);
            let texts: Vec<String> = stt
                .conversation_items()
                .iter()
                .filter_map(|i| i.as_message().and_then(|m| m.text_content()))
                .collect();
            assert_eq!(texts, vec!["hi", "Hello."]);
        } else {
            assert!(stt.session_keyterms().is_empty());
            assert!(stt.conversation_items().is_empty());
        }
    }
}
