//! The realtime-model path with a scripted realtime model.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use livekit_agents::io::memory::{audio_input_channel, MemoryAudioOutput};
use livekit_agents::io::AudioOutput;
use livekit_agents::llm::realtime::RealtimeEvent;
use livekit_agents::llm::{ChatItem, ChatRole, FunctionTool, RunContext, ToolError};
use livekit_agents::testing::{FakeRealtimeModel, FakeRealtimeReply};
use livekit_agents::voice::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn reply(text: &str, audio_ms: u64) -> FakeRealtimeReply {
    FakeRealtimeReply {
        text: text.into(),
        audio_duration: ms(audio_ms),
        ttft: ms(100),
        tool_calls: vec![],
    }
}

fn assistant_messages(session: &AgentSession) -> Vec<(String, bool)> {
    session
        .history()
        .items()
        .iter()
        .filter_map(|i| match i {
            ChatItem::Message(m) if m.role == ChatRole::Assistant => {
                Some((m.text_content().unwrap_or_default(), m.interrupted))
            }
            _ => None,
        })
        .collect()
}

async fn start(
    model: &FakeRealtimeModel,
    agent: Agent,
) -> (
    AgentSession,
    MemoryAudioOutput,
    livekit_agents::io::memory::AudioInputSender,
) {
    let session = AgentSession::builder()
        .realtime_model(Arc::new(model.clone()))
        .build();
    let (tx, input) = audio_input_channel();
    let output = MemoryAudioOutput::new();
    session
        .start(
            agent,
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(output.clone()) as Arc<dyn AudioOutput>),
                text_output: None,
            },
        )
        .await
        .unwrap();
    (session, output, tx)
}

#[tokio::test(start_paused = true)]
async fn realtime_reply_plays_and_is_recorded() {
    let model = FakeRealtimeModel::new(vec![reply("Hello there.", 1000)]);
    let (session, output, tx) = start(&model, Agent::new("Be nice.")).await;
    tx.send(livekit_agents::audio::AudioFrame::silence(24_000, 1, 480));
    let handle = session.generate_reply(ReplyOptions::default()).unwrap();
    handle.wait_for_playout().await;
    assert_eq!(output.played_duration(), ms(1000));
    assert_eq!(
        assistant_messages(&session),
        vec![("Hello there.".to_string(), false)]
    );
    let calls = model.calls();
    assert!(
        calls.contains(&"update_instructions:Be nice.".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("generate_reply")),
        "{calls:?}"
    );
    assert_eq!(model.pushed_audio(), ms(20));
}

#[tokio::test(start_paused = true)]
async fn server_speech_start_interrupts_and_truncates_at_the_played_position() {
    let model = FakeRealtimeModel::new(vec![]);
    let (session, _output, _tx) = start(&model, Agent::new("")).await;
    model.emit_reply(reply("one two three four", 2000)).await;
    // Playback starts at 0.1 s; the user speaks at 0.7 s: 0.6 s of 4 words over 2 s heard.
    tokio::time::sleep(ms(700)).await;
    model.emit(RealtimeEvent::InputSpeechStarted).await;
    tokio::time::sleep(ms(100)).await;
    let calls = model.calls();
    assert!(calls.contains(&"interrupt".to_string()), "{calls:?}");
    let truncate = calls.iter().find(|c| c.starts_with("truncate:")).unwrap();
    assert_eq!(truncate, "truncate:600:one two");
    assert_eq!(
        assistant_messages(&session),
        vec![("one two".to_string(), true)]
    );
}

#[tokio::test(start_paused = true)]
async fn realtime_tool_calls_run_and_trigger_a_follow_up_reply() {
    let tool = FunctionTool::raw(
        "get_time",
        "Current time.",
        serde_json::json!({"type": "object", "properties": {}}),
        |_ctx: RunContext, _a: serde_json::Value| async move { Ok::<_, ToolError>("noon") },
    );
    let model = FakeRealtimeModel::new(vec![
        FakeRealtimeReply {
            tool_calls: vec![("get_time".into(), "{}".into())],
            ttft: ms(50),
            ..Default::default()
        },
        reply("It is noon.", 500),
    ]);
    let (session, _output, _tx) = start(&model, Agent::builder().tool(tool).build()).await;
    let handle = session.generate_reply(ReplyOptions::default()).unwrap();
    handle.wait_for_playout().await;
    let outputs: Vec<_> = session
        .history()
        .items()
        .iter()
        .filter_map(|i| match i {
            ChatItem::FunctionCallOutput(o) => Some(o.output.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(outputs, vec!["noon".to_string()]);
    assert_eq!(
        assistant_messages(&session),
        vec![("It is noon.".to_string(), false)]
    );
    assert_eq!(
        model
            .calls()
            .iter()
            .filter(|c| c.starts_with("generate_reply"))
            .count(),
        2
    );
    assert_eq!(handle.num_steps(), 2);
}

#[tokio::test(start_paused = true)]
async fn agent_updates_reach_the_realtime_session() {
    let model = FakeRealtimeModel::new(vec![]);
    let agent = Agent::new("Old.");
    let (_session, _output, _tx) = start(&model, agent.clone()).await;
    tokio::task::yield_now().await;
    agent.update_instructions("New.");
    agent.update_tools(Vec::new());
    tokio::task::yield_now().await;
    let calls = model.calls();
    assert!(
        calls.contains(&"update_instructions:Old.".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"update_instructions:New.".to_string()),
        "{calls:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("update_tools"))
            .count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_text_only_realtime_model_is_voiced_by_the_session_tts() {
    // Half-cascade: the model answers in text (no audio output); the session's TTS speaks it.
    use livekit_agents::llm::realtime::RealtimeCapabilities;
    use livekit_agents::testing::FakeTts;
    let model = FakeRealtimeModel::new(vec![reply("Hello there.", 0)]).with_capabilities(
        RealtimeCapabilities {
            message_truncation: false,
            turn_detection: true,
            user_transcription: true,
            auto_tool_reply_generation: false,
            audio_output: false,
        },
    );
    let session = AgentSession::builder()
        .realtime_model(Arc::new(model.clone()))
        .tts(Arc::new(FakeTts::new(ms(200), ms(700))))
        .build();
    let (tx, input) = audio_input_channel();
    let output = MemoryAudioOutput::new();
    session
        .start(
            Agent::new("Be nice."),
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(output.clone()) as Arc<dyn AudioOutput>),
                text_output: None,
            },
        )
        .await
        .unwrap();
    tx.send(livekit_agents::audio::AudioFrame::silence(24_000, 1, 480));
    let handle = session.generate_reply(ReplyOptions::default()).unwrap();
    handle.wait_for_playout().await;
    assert_eq!(
        output.played_duration(),
        ms(700),
        "the TTS audio was played"
    );
    assert_eq!(
        assistant_messages(&session),
        vec![("Hello there.".to_string(), false)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_realtime_handoff_with_a_value_is_answered_by_the_old_agent_before_the_new_one_enters() {
    let transfer = FunctionTool::raw(
        "transfer",
        "Transfer to billing.",
        serde_json::json!({"type": "object", "properties": {}}),
        |_ctx: RunContext, _a: serde_json::Value| async move {
            let billing = Agent::builder()
                .id("billing")
                .instructions("Billing.")
                .build();
            Ok::<_, ToolError>((billing, "Transferring you to billing."))
        },
    );
    let model = FakeRealtimeModel::new(vec![
        FakeRealtimeReply {
            tool_calls: vec![("transfer".into(), "{}".into())],
            ttft: ms(50),
            ..Default::default()
        },
        reply("One moment, billing will take it from here.", 500),
    ]);
    let front = Agent::builder()
        .id("front")
        .instructions("Front.")
        .tool(transfer)
        .build();
    let (session, _output, _tx) = start(&model, front).await;
    let handle = session.generate_reply(ReplyOptions::default()).unwrap();
    handle.wait_for_playout().await;
    tokio::time::sleep(ms(100)).await;
    let items: Vec<String> = session
        .history()
        .items()
        .iter()
        .map(|i| match i {
            ChatItem::Message(m) => {
                format!("{:?}:{}", m.role, m.text_content().unwrap_or_default())
            }
            ChatItem::FunctionCall(c) => format!("call:{}", c.name),
            ChatItem::FunctionCallOutput(o) => format!("output:{}", o.output),
            ChatItem::AgentHandoff(h) => format!("handoff:{}", h.new_agent_id),
        })
        .collect();
    assert_eq!(
        items,
        vec![
            "call:transfer".to_string(),
            "output:Transferring you to billing.".into(),
            "Assistant:One moment, billing will take it from here.".into(),
            "handoff:billing".into(),
        ]
    );
    assert_eq!(session.current_agent().unwrap().id(), "billing");
    let calls = model.calls();
    // The old agent answered (a second generation, without tools: it is being drained), then
    // the new agent's instructions reached the model.
    let answer = calls
        .iter()
        .rposition(|c| c.starts_with("generate_reply"))
        .unwrap();
    let restricted = calls
        .iter()
        .position(|c| c == "update_tool_choice:None")
        .unwrap();
    let billing = calls
        .iter()
        .position(|c| c == "update_instructions:Billing.")
        .unwrap();
    assert!(restricted < answer && answer < billing, "{calls:?}");
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("generate_reply"))
            .count(),
        2
    );
}
