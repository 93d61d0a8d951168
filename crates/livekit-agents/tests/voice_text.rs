//! Text-only sessions and the `run()` testing API: tool loop, max tool steps, handoff, AgentTask.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use livekit_agents::io::memory::MemoryTextOutput;
use livekit_agents::llm::{ChatRole, FunctionTool, RunContext, ToolChoice, ToolError, ToolOutput};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
use livekit_agents::voice::*;
use parking_lot::Mutex;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Weather {
    /// City.
    location: String,
}

fn weather_tool() -> FunctionTool {
    FunctionTool::new(
        "lookup_weather",
        "Look up the weather.",
        |_ctx: RunContext, a: Weather| async move {
            Ok::<_, ToolError>(format!("Sunny in {}.", a.location))
        },
    )
}

async fn text_session(llm: FakeLlm, agent: Agent) -> (AgentSession, MemoryTextOutput) {
    let session = AgentSession::builder().llm(Arc::new(llm)).build();
    let text = MemoryTextOutput::new();
    session
        .start(
            agent,
            SessionIo {
                text_output: Some(Arc::new(text.clone())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (session, text)
}

#[tokio::test(start_paused = true)]
async fn text_only_session_replies_through_the_text_output() {
    let llm = FakeLlm::new(vec![FakeLlmResponse::text(
        "Hello! How can I help?",
        ms(100),
    )]);
    let (session, text) = text_session(llm, Agent::new("Be brief.")).await;
    let result = session.run("Hi").await.unwrap();
    let mut expect = result.expect();
    let msg = expect.next_event().is_message(ChatRole::Assistant);
    assert_eq!(
        msg.text_content().as_deref(),
        Some("Hello! How can I help?")
    );
    expect.no_more_events();
    assert_eq!(text.segments(), vec!["Hello! How can I help?".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn tool_call_output_then_follow_up_reply() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("lookup_weather", r#"{"location":"Paris"}"#, ms(100)),
        FakeLlmResponse::text("It is sunny in Paris.", ms(100)),
    ]);
    let (session, _) =
        text_session(llm.clone(), Agent::builder().tool(weather_tool()).build()).await;
    let result = session.run("Weather in Paris?").await.unwrap();
    let mut expect = result.expect();
    expect.next_event().is_function_call(
        "lookup_weather",
        Some(serde_json::json!({"location": "Paris"})),
    );
    expect
        .next_event()
        .is_function_call_output(Some("Sunny in Paris."), Some(false));
    let msg = expect.next_event().is_message(ChatRole::Assistant);
    assert_eq!(msg.text_content().as_deref(), Some("It is sunny in Paris."));
    expect.no_more_events();
    // The follow-up request saw the tool output.
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1]
        .chat_ctx
        .items()
        .iter()
        .any(|i| matches!(i, livekit_agents::llm::ChatItem::FunctionCallOutput(_))));
}

#[tokio::test(start_paused = true)]
async fn max_tool_steps_forces_tool_choice_none() {
    let llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::tool_call(
        "lookup_weather",
        r#"{"location":"Oslo"}"#,
        ms(10),
    ));
    let (session, _) =
        text_session(llm.clone(), Agent::builder().tool(weather_tool()).build()).await;
    let result = session.run("Weather?").await.unwrap();
    let choices: Vec<_> = llm
        .requests()
        .iter()
        .map(|r| r.tool_choice.clone())
        .collect();
    // Four tool steps, then a fifth generation without tools (the reference's rule for 3).
    assert_eq!(
        choices,
        vec![None, None, None, None, Some(ToolChoice::None)]
    );
    let calls = result
        .events
        .iter()
        .filter(|e| matches!(e, livekit_agents::testing::RunEvent::FunctionCall(_)))
        .count();
    assert_eq!(calls, 4);
}

struct Recorder {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl AgentBehavior for Recorder {
    async fn on_enter(&self, _ctx: AgentContext) {
        self.log.lock().push(format!("{}:enter", self.name));
    }
    async fn on_exit(&self, _ctx: AgentContext) {
        self.log.lock().push(format!("{}:exit", self.name));
    }
}

#[tokio::test(start_paused = true)]
async fn handoff_by_tool_switches_agent_with_exit_before_enter() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let log2 = log.clone();
    let transfer = FunctionTool::raw(
        "transfer",
        "Transfer to billing.",
        serde_json::json!({"type": "object", "properties": {}}),
        move |_ctx: RunContext, _a: serde_json::Value| {
            let log = log2.clone();
            async move {
                let billing = Agent::builder()
                    .id("billing")
                    .instructions("You handle billing.")
                    .behavior(Recorder {
                        name: "billing",
                        log,
                    })
                    .build();
                Ok::<_, ToolError>(ToolOutput::Handoff {
                    agent: billing,
                    returns: None,
                })
            }
        },
    );
    let front = Agent::builder()
        .id("front")
        .tool(transfer)
        .behavior(Recorder {
            name: "front",
            log: log.clone(),
        })
        .build();
    let llm = FakeLlm::new(vec![FakeLlmResponse::tool_call("transfer", "{}", ms(50))]);
    let (session, _) = text_session(llm, front).await;
    let result = session.run("I have a billing question").await.unwrap();
    let mut expect = result.expect();
    expect.next_event().is_function_call("transfer", None);
    expect
        .next_event()
        .is_function_call_output(Some(""), Some(false));
    expect.next_event().is_agent_handoff("billing");
    expect.no_more_events();
    tokio::task::yield_now().await;
    assert_eq!(
        *log.lock(),
        vec!["front:enter", "front:exit", "billing:enter"]
    );
    assert_eq!(session.current_agent().unwrap().id(), "billing");
}

struct AsksName {
    result: Arc<Mutex<Option<Result<String, TaskError>>>>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Name {
    name: String,
}

#[async_trait]
impl AgentBehavior for AsksName {
    async fn on_enter(&self, ctx: AgentContext) {
        let task = AgentTask::<String>::new(|done| {
            Agent::builder()
                .id("name_task")
                .instructions("Ask for the user's name.")
                .tool(FunctionTool::new(
                    "record_name",
                    "Record the name.",
                    move |_ctx: RunContext, n: Name| {
                        let done = done.clone();
                        async move {
                            done.complete(n.name);
                            // Work after completing (e.g. saving the result): the task must
                            // not close its agent, and so cancel this call, meanwhile.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Ok::<_, ToolError>(())
                        }
                    },
                ))
                .build()
        });
        let r = task.run(&ctx.session).await;
        *self.result.lock() = Some(r);
    }
}

#[tokio::test(start_paused = true)]
async fn agent_task_returns_its_value_and_the_parent_resumes() {
    let result: Arc<Mutex<Option<Result<String, TaskError>>>> = Arc::default();
    let parent = Agent::builder()
        .id("parent")
        .behavior(AsksName {
            result: result.clone(),
        })
        .build();
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("record_name", r#"{"name":"Ada"}"#, ms(50)),
        FakeLlmResponse::text("Thanks Ada, what can I do for you?", ms(50)),
    ]);
    let (session, _) = text_session(llm, parent).await;
    tokio::task::yield_now().await;
    assert_eq!(session.current_agent().unwrap().id(), "name_task");
    let run = session.run("I'm Ada").await.unwrap();
    run.expect().contains_function_call("record_name");
    tokio::time::sleep(ms(100)).await;
    assert_eq!(result.lock().clone(), Some(Ok("Ada".to_string())));
    assert_eq!(session.current_agent().unwrap().id(), "parent");
    // The tool that completed the task is recorded as having run, not as cancelled.
    let outputs: Vec<_> = session
        .history()
        .items()
        .iter()
        .filter_map(|i| match i {
            livekit_agents::llm::ChatItem::FunctionCallOutput(o) if o.name == "record_name" => {
                Some(o.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert!(!outputs[0].is_error, "{outputs:?}");
    // The parent's context now holds the task's conversation.
    let parent_ctx = session.current_agent().unwrap().chat_ctx();
    assert!(parent_ctx.items().iter().any(|i| matches!(i, livekit_agents::llm::ChatItem::Message(m) if m.text_content().as_deref() == Some("I'm Ada"))));
    // The parent generates the next reply.
    let next = session.run("hello again").await.unwrap();
    next.expect().next_event().is_message(ChatRole::Assistant);
}

#[tokio::test(start_paused = true)]
async fn repeated_unrecoverable_llm_errors_close_the_session() {
    let llm =
        FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::error("model overloaded", ms(10)));
    let (session, _) = text_session(llm, Agent::new("")).await;
    let mut events = session.events();
    // max_unrecoverable_errors = 3 tolerates three: the fourth closes the session.
    for _ in 0..4 {
        if let Ok(h) = session.generate_reply(ReplyOptions::default()) {
            h.wait_for_playout().await;
        }
    }
    tokio::time::sleep(ms(10)).await;
    let mut errors = 0;
    let mut close = None;
    while let Some(Ok(ev)) = events.try_recv() {
        match ev {
            SessionEvent::Error {
                source,
                recoverable,
                ..
            } => {
                assert_eq!(source, ErrorSource::Llm);
                assert!(!recoverable);
                errors += 1;
            }
            SessionEvent::Close { reason, error } => close = Some((reason, error)),
            _ => {}
        }
    }
    assert_eq!(errors, 4);
    let (reason, error) = close.unwrap();
    assert_eq!(reason, CloseReason::Error);
    assert!(error.unwrap().contains("model overloaded"));
    assert!(!session.is_running());
}

#[tokio::test(start_paused = true)]
async fn generate_reply_inside_a_tool_defaults_to_no_tools() {
    let announce = FunctionTool::raw(
        "announce",
        "Announce something.",
        serde_json::json!({"type": "object", "properties": {}}),
        |ctx: RunContext, _a: serde_json::Value| async move {
            if let Some(session) = ctx.session() {
                let _ = session.generate_reply(ReplyOptions::default());
            }
            Ok::<_, ToolError>(())
        },
    );
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("announce", "{}", ms(10)),
        FakeLlmResponse::text("Attention please.", ms(10)),
    ]);
    let (session, _) = text_session(llm.clone(), Agent::builder().tool(announce).build()).await;
    session.run("Announce it").await.unwrap();
    let choices: Vec<_> = llm
        .requests()
        .iter()
        .map(|r| r.tool_choice.clone())
        .collect();
    assert_eq!(choices, vec![None, Some(ToolChoice::None)]);
}

#[tokio::test(start_paused = true)]
async fn speeches_play_one_at_a_time_by_priority_then_fifo() {
    let (session, text) = text_session(FakeLlm::new(vec![]), Agent::new("")).await;
    let say = |t: &str, priority: SpeechPriority| {
        session
            .say(t, SayOptions::default().with_priority(priority))
            .unwrap()
    };
    // The first one takes the floor and holds it until its text stream ends; the rest queue.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let first = session
        .say(
            SayText::Stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed()),
            SayOptions::default(),
        )
        .unwrap();
    tokio::time::sleep(ms(10)).await;
    let low = say("low", SpeechPriority::Low);
    let normal_a = say("normal a", SpeechPriority::Normal);
    let high = say("high", SpeechPriority::High);
    let normal_b = say("normal b", SpeechPriority::Normal);
    tx.send("first".into()).unwrap();
    drop(tx);
    for h in [&first, &low, &normal_a, &high, &normal_b] {
        h.wait_for_playout().await;
    }
    assert_eq!(
        text.segments(),
        vec!["first", "high", "normal a", "normal b", "low"]
    );
}

#[tokio::test(start_paused = true)]
async fn judge_asks_the_llm_for_a_verdict() {
    use livekit_agents::llm::ChatMessage;
    use livekit_agents::testing::{judge, JudgeError};
    let msg = ChatMessage::new(ChatRole::Assistant, "Hello! How can I help you today?");
    let yes = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "check_intent",
        r#"{"success": true, "reason": "greets the user"}"#,
        ms(10),
    )]);
    judge(&yes, &msg, "greets the user").await.unwrap();
    assert_eq!(yes.requests()[0].tool_choice, Some(ToolChoice::Required));
    let no = FakeLlm::new(vec![FakeLlmResponse::tool_call(
        "check_intent",
        r#"{"success": false, "reason": "does not mention the weather"}"#,
        ms(10),
    )]);
    assert_eq!(
        judge(&no, &msg, "talks about the weather").await,
        Err(JudgeError::Failed("does not mention the weather".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_handoff_with_a_value_is_spoken_by_the_old_agent_before_the_new_one_enters() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let log2 = log.clone();
    let transfer = FunctionTool::raw(
        "transfer",
        "Transfer to billing.",
        serde_json::json!({"type": "object", "properties": {}}),
        move |_ctx: RunContext, _a: serde_json::Value| {
            let log = log2.clone();
            async move {
                let billing = Agent::builder()
                    .id("billing")
                    .behavior(Recorder {
                        name: "billing",
                        log,
                    })
                    .build();
                Ok::<_, ToolError>((billing, "Transferring you to billing."))
            }
        },
    );
    let front = Agent::builder()
        .id("front")
        .tool(transfer)
        .behavior(Recorder {
            name: "front",
            log: log.clone(),
        })
        .build();
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("transfer", "{}", ms(50)),
        FakeLlmResponse::text("One moment, billing will take it from here.", ms(50)),
    ]);
    let (session, _) = text_session(llm.clone(), front).await;
    let result = session.run("I have a billing question").await.unwrap();
    let mut expect = result.expect();
    expect.next_event().is_function_call("transfer", None);
    expect
        .next_event()
        .is_function_call_output(Some("Transferring you to billing."), Some(false));
    let said = expect.next_event().is_message(ChatRole::Assistant);
    assert_eq!(
        said.text_content().as_deref(),
        Some("One moment, billing will take it from here.")
    );
    expect.next_event().is_agent_handoff("billing");
    expect.no_more_events();
    tokio::task::yield_now().await;
    assert_eq!(
        *log.lock(),
        vec!["front:enter", "front:exit", "billing:enter"]
    );
    // The old agent answered the value without calling tools again (it is being drained).
    assert_eq!(llm.requests()[1].tool_choice, Some(ToolChoice::None));
}

#[tokio::test(start_paused = true)]
async fn tool_errors_read_as_the_reference_texts() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("lookup_wether", "{}", ms(50)),
        FakeLlmResponse::tool_call("lookup_weather", r#"{"city": "Paris"}"#, ms(50)),
        FakeLlmResponse::text("Sorry.", ms(50)),
    ]);
    let (session, _) = text_session(llm, Agent::builder().tool(weather_tool()).build()).await;
    let result = session.run("Weather?").await.unwrap();
    let mut expect = result.expect();
    expect.next_event().is_function_call("lookup_wether", None);
    expect.next_event().is_function_call_output(
        Some("Unknown function: lookup_wether - available tools: lookup_weather"),
        Some(true),
    );
    expect.next_event().is_function_call("lookup_weather", None);
    let out = expect.next_event().event().clone();
    let livekit_agents::testing::RunEvent::FunctionCallOutput(out) = out else {
        panic!("expected an output, got {out:?}");
    };
    assert!(out.is_error);
    assert!(
        out.output
            .starts_with("Error parsing arguments for `lookup_weather`: missing field `location`"),
        "{}",
        out.output
    );
}

#[test]
fn an_agents_chat_ctx_starts_with_its_instructions() {
    let agent = Agent::new("Be brief.");
    let ctx = agent.chat_ctx();
    let first = ctx.items()[0].as_message().unwrap();
    assert_eq!(first.role, ChatRole::System);
    assert_eq!(first.text_content().as_deref(), Some("Be brief."));
    assert_eq!(first.id, livekit_agents::voice::INSTRUCTIONS_ITEM_ID);
    assert!(Agent::new("").chat_ctx().items().is_empty());
}
