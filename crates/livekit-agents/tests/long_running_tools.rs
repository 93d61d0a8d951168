//! Long-running tools: filler speech while a slow step runs, tools finishing after the turn
//! with progress updates, and the user-away timer held until their reply lands. Text
//! sessions with the scripted fake LLM on the paused clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use livekit_agents::io::memory::MemoryTextOutput;
use livekit_agents::llm::{ChatItem, Filler, FunctionTool, RunContext, ToolChoice, ToolError};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
use livekit_agents::voice::*;
use parking_lot::Mutex;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

async fn text_session(
    llm: FakeLlm,
    agent: Agent,
    away: Option<Duration>,
) -> (AgentSession, MemoryTextOutput) {
    let mut options = SessionOptions::default();
    options.user_away_timeout = away;
    let session = AgentSession::builder()
        .llm(Arc::new(llm))
        .options(options)
        .build();
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

fn slow_tool(work: Duration, filler: Filler) -> FunctionTool {
    FunctionTool::raw(
        "search",
        "Search.",
        serde_json::json!({"type": "object", "properties": {}}),
        move |ctx: RunContext, _a: serde_json::Value| {
            let filler = filler.clone();
            async move {
                let found = ctx
                    .with_filler(filler, async move {
                        tokio::time::sleep(work).await;
                        "3 results"
                    })
                    .await;
                Ok::<_, ToolError>(found)
            }
        },
    )
}

fn script() -> FakeLlm {
    FakeLlm::new(vec![
        FakeLlmResponse::tool_call("search", "{}", ms(50)),
        FakeLlmResponse::text("I found 3 results.", ms(50)),
    ])
}

#[tokio::test(start_paused = true)]
async fn a_filler_plays_while_a_slow_tool_runs() {
    let filler = Filler::text("One moment, searching.").delay(Duration::from_secs(1));
    let agent = Agent::builder()
        .tool(slow_tool(Duration::from_secs(5), filler))
        .build();
    let (session, text) = text_session(script(), agent, None).await;
    session.run("search please").await.unwrap();
    assert_eq!(
        text.segments(),
        vec![
            "One moment, searching.".to_string(),
            "I found 3 results.".to_string()
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn no_filler_when_the_tool_is_fast() {
    let filler = Filler::text("One moment, searching.").delay(Duration::from_secs(1));
    let agent = Agent::builder().tool(slow_tool(ms(300), filler)).build();
    let (session, text) = text_session(script(), agent, None).await;
    session.run("search please").await.unwrap();
    assert_eq!(text.segments(), vec!["I found 3 results.".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn fillers_repeat_at_the_interval_up_to_max_steps() {
    let filler = Filler::from_fn(|step| Some(format!("Still searching ({step}).")))
        .delay(ms(500))
        .interval(Duration::from_secs(2))
        .max_steps(3);
    let agent = Agent::builder()
        .tool(slow_tool(Duration::from_secs(20), filler))
        .build();
    let (session, text) = text_session(script(), agent, None).await;
    session.run("search please").await.unwrap();
    assert_eq!(
        text.segments(),
        vec![
            "Still searching (0).".to_string(),
            "Still searching (1).".to_string(),
            "Still searching (2).".to_string(),
            "I found 3 results.".to_string()
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_tool_finishing_in_the_background_reports_progress_and_its_result() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("book", "{}", ms(50)),
        FakeLlmResponse::text("I'm booking it, this takes a moment.", ms(50)),
        FakeLlmResponse::text("Seats are held, paying now.", ms(50)),
        FakeLlmResponse::text("Done: your confirmation is ABC123.", ms(50)),
    ]);
    let book = FunctionTool::raw(
        "book",
        "Book the flight.",
        serde_json::json!({"type": "object", "properties": {}}),
        |ctx: RunContext, _a: serde_json::Value| async move {
            Ok::<_, ToolError>(ctx.finish_in_background(
                "Booking started.",
                |progress| async move {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    progress.update("Seats held.");
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Ok::<_, ToolError>("Booked: ABC123.")
                },
            ))
        },
    );
    let away: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let (session, text) = text_session(
        llm.clone(),
        Agent::builder().tool(book).build(),
        Some(Duration::from_secs(2)),
    )
    .await;
    let mut events = session.events();
    let away2 = away.clone();
    tokio::spawn(async move {
        while let Some(Ok(ev)) = events.recv().await {
            if let SessionEvent::UserStateChanged {
                new_state: UserState::Away,
                ..
            } = ev
            {
                away2.lock().push(tokio::time::Instant::now());
            }
        }
    });
    let t0 = tokio::time::Instant::now();
    let result = session.run("book the flight").await.unwrap();
    let mut expect = result.expect();
    expect.next_function_call();
    let first = expect.next_function_call_output();
    assert!(
        first
            .output
            .contains("has updated, message: Booking started."),
        "{}",
        first.output
    );
    tokio::time::sleep(Duration::from_secs(10)).await;

    assert_eq!(
        text.segments(),
        vec![
            "I'm booking it, this takes a moment.".to_string(),
            "Seats are held, paying now.".to_string(),
            "Done: your confirmation is ABC123.".to_string()
        ]
    );
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(
        reqs[2].tool_choice,
        Some(ToolChoice::None),
        "an update's reply calls no tool"
    );
    let outputs: Vec<(String, String)> = session
        .history()
        .items()
        .iter()
        .filter_map(|i| match i {
            ChatItem::FunctionCallOutput(o) => Some((o.call_id.clone(), o.output.clone())),
            _ => None,
        })
        .collect();
    let call_id = &outputs[0].0;
    assert_eq!(outputs.len(), 3, "{outputs:?}");
    assert_eq!(outputs[1].0, format!("{call_id}_update_1"));
    assert!(outputs[1].1.contains("Seats held."));
    assert_eq!(
        outputs[2],
        (format!("{call_id}_final"), "Booked: ABC123.".to_string())
    );
    // The user was not marked away while waiting for the result (6 s > the 2 s timeout),
    // only after the final reply.
    let away = away.lock().clone();
    assert!(!away.is_empty(), "the timer runs again after the reply");
    assert!(
        away[0] - t0 >= Duration::from_secs(8),
        "away after {:?}",
        away[0] - t0
    );
}
