//! `AgentSession::events()`: a `Stream` of session events that reports lag instead of dropping
//! silently, `run()` reading past a lag, and typed provider errors in `SessionEvent::Error`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use livekit_agents::io::memory::MemoryTextOutput;
use livekit_agents::llm::{ChatRole, FunctionTool, RunContext, ToolError};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
use livekit_agents::types::{ApiError, Lagged};
use livekit_agents::voice::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
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

/// Sends `n` DTMF events (cheap events that need no model).
fn flood(session: &AgentSession, n: u32) {
    for i in 0..n {
        session.push_sip_dtmf(i % 10, (i % 10).to_string(), None);
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_receiver_gets_lagged_then_the_events_that_follow() {
    let session = text_session(FakeLlm::new(vec![]), Agent::new("")).await;
    let mut events = session.events();
    flood(&session, 1500);

    // The backlog holds 1,024 events: the 476 oldest are reported as lost, not dropped silently.
    let mut lost = 0;
    let mut received = Vec::new();
    while let Some(item) = events.try_recv() {
        match item {
            Ok(SessionEvent::SipDtmfReceived { code, .. }) => received.push(code),
            Ok(_) => {}
            Err(Lagged { missed, .. }) => {
                assert!(received.is_empty(), "the gap is reported where it is");
                lost += missed;
            }
        }
    }
    assert_eq!(lost, 1500 - 1024);
    assert_eq!(received.len(), 1024);
    assert_eq!(
        received[0],
        476 % 10,
        "reading goes on with the oldest event kept"
    );

    // After the lag the stream is usable as a `Stream`.
    session.push_sip_dtmf(7, "7", None);
    match events.next().await {
        Some(Ok(SessionEvent::SipDtmfReceived { code: 7, .. })) => {}
        other => panic!("unexpected {other:?}"),
    }
    session.close().await;
    let mut closed = false;
    while let Some(item) = events.try_recv() {
        closed |= matches!(item, Ok(SessionEvent::Close { .. }));
    }
    assert!(closed);
}

#[tokio::test(start_paused = true)]
async fn timed_events_report_lag_too() {
    let session = text_session(FakeLlm::new(vec![]), Agent::new("")).await;
    let mut events = session.timed_events();
    flood(&session, 1030);
    match events.recv().await {
        Some(Err(lagged)) => assert_eq!(lagged.missed, 6),
        other => panic!("expected a lag, got {other:?}"),
    }
    match events.recv().await {
        Some(Ok(TimedSessionEvent {
            event: SessionEvent::SipDtmfReceived { code, .. },
            ..
        })) => assert_eq!(code, 6),
        other => panic!("unexpected {other:?}"),
    }
}

/// More events during one `run` than the backlog holds: `run` reads past the lag and still
/// returns the reply (the old loop stopped at the first lag and returned nothing).
#[tokio::test(start_paused = true)]
async fn run_does_not_stop_at_a_lag() {
    let noisy = FunctionTool::raw(
        "noisy",
        "Makes a lot of events.",
        serde_json::json!({"type": "object", "properties": {}}),
        |ctx: RunContext, _a: serde_json::Value| async move {
            if let Some(session) = ctx.session() {
                flood(session, 2000);
            }
            Ok::<_, ToolError>("done")
        },
    );
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::tool_call("noisy", "{}", ms(10)),
        FakeLlmResponse::text("All done.", ms(10)),
    ]);
    let session = text_session(llm, Agent::builder().tools([noisy]).build()).await;
    let result = session.run("make noise").await.unwrap();
    let mut expect = result.expect();
    expect.next_function_call();
    expect.next_function_call_output();
    let reply = expect.next_message();
    assert_eq!(reply.role, ChatRole::Assistant);
    assert_eq!(reply.text_content().as_deref(), Some("All done."));
}

#[tokio::test(start_paused = true)]
async fn a_provider_error_keeps_its_type_and_names_the_model() {
    let llm = FakeLlm::new(vec![FakeLlmResponse::error("model overloaded", ms(10))]);
    let session = text_session(llm, Agent::new("")).await;
    let mut events = session.events();
    session
        .generate_reply(ReplyOptions::default())
        .unwrap()
        .wait_for_playout()
        .await;
    let mut seen = None;
    while let Some(Ok(ev)) = events.try_recv() {
        if let SessionEvent::Error {
            source,
            error,
            recoverable,
        } = ev
        {
            seen = Some((source, error, recoverable));
        }
    }
    let (source, error, recoverable) = seen.expect("an error event");
    assert_eq!(source, ErrorSource::Llm);
    assert!(!recoverable);
    match &error {
        ComponentError::Provider { label, error } => {
            assert_eq!(label, "fake.LLM");
            assert!(
                matches!(error, ApiError::Other { .. }),
                "the provider's own error type: {error:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(error.api_error().is_some());
    assert!(error.to_string().contains("model overloaded"), "{error}");
}

/// A VAD that reports absurd durations (`1e300`, infinity, NaN, negative) from a provider.
struct AbsurdVad;

impl livekit_agents::vad::Vad for AbsurdVad {
    fn label(&self) -> String {
        "absurd.VAD".into()
    }
    fn capabilities(&self) -> livekit_agents::vad::VadCapabilities {
        livekit_agents::vad::VadCapabilities {
            update_interval: 0.032,
        }
    }
    fn stream(&self) -> livekit_agents::vad::VadStream {
        use livekit_agents::vad::{VadEvent, VadEventType};
        let (in_tx, mut in_rx) = livekit_agents::model_input::channel();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(async move {
            let drain = tokio::spawn(async move { while in_rx.recv().await.is_some() {} });
            tokio::time::sleep(ms(100)).await;
            let mut start = VadEvent::new(VadEventType::StartOfSpeech);
            start.speaking = true;
            start.speech_duration = 1e300;
            start.inference_duration = f64::INFINITY;
            let mut inference = VadEvent::new(VadEventType::InferenceDone);
            inference.speaking = true;
            inference.speech_duration = 1e300;
            inference.inference_duration = f64::NAN;
            let mut end = VadEvent::new(VadEventType::EndOfSpeech);
            end.speech_duration = -5.0;
            end.silence_duration = f64::INFINITY;
            end.inference_duration = 1e300;
            for ev in [start, inference, end] {
                if tx.send(ev).await.is_err() {
                    return;
                }
                tokio::time::sleep(ms(50)).await;
            }
            let _ = drain.await;
        });
        livekit_agents::vad::VadStream::from_channels(in_tx, rx, Some(task))
    }
}

#[tokio::test(start_paused = true)]
async fn absurd_vad_durations_do_not_stop_the_session() {
    let session = AgentSession::builder()
        .vad(Arc::new(AbsurdVad))
        .llm(Arc::new(FakeLlm::new(vec![])))
        .build();
    let mut events = session.events();
    let (_audio, input) = livekit_agents::io::memory::audio_input_channel();
    session
        .start(
            Agent::new(""),
            SessionIo {
                audio_input: Some(input),
                text_output: Some(Arc::new(MemoryTextOutput::new())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut states = Vec::new();
    while let Some(Ok(ev)) = events.try_recv() {
        if let SessionEvent::UserStateChanged { new_state, .. } = ev {
            states.push(new_state);
        }
    }
    // The recognition task survived every event: the user spoke, then stopped.
    assert_eq!(states, [UserState::Speaking, UserState::Listening]);
    assert!(session.is_running());
    session.close().await;
}
