//! Turn options of issue 18 on tokio's paused clock: `transcription_timeout`, an agent's own
//! turn handling (and `update_options` across handoffs), the `llm_node` segment break, the AEC
//! warm-up per call type, and an `AgentTask` handing back without the public event broadcast.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use livekit_agents::audio::FilterParams;
use livekit_agents::io::memory::{
    audio_input_channel, AudioInputSender, MemoryAudioOutput, MemoryTextOutput,
};
use livekit_agents::io::AudioInput;
use livekit_agents::llm::{
    ChatChunk, ChatContext, ChatItem, ChatRole, FunctionTool, RunContext, ToolError,
};
use livekit_agents::room_logic::ParticipantKind;
use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, UserSpeech};
use livekit_agents::types::ApiError;
use livekit_agents::voice::nodes::LlmChunkStream;
use livekit_agents::voice::*;
use parking_lot::Mutex;
use tokio::time::Instant;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

struct Harness {
    session: AgentSession,
    /// `(ms since start, event)`, on tokio's clock.
    log: Arc<Mutex<Vec<(u64, SessionEvent)>>>,
    _audio: AudioInputSender,
    output: MemoryAudioOutput,
    text: MemoryTextOutput,
    llm: FakeLlm,
    tts: FakeTts,
    t0: Instant,
}

impl Harness {
    /// `(ms, label)` of user and assistant messages and agent states.
    fn timeline(&self) -> Vec<(u64, String)> {
        self.log
            .lock()
            .iter()
            .filter_map(|(t, ev)| {
                let label = match ev {
                    SessionEvent::AgentStateChanged { new_state, .. } => {
                        format!("agent:{}", new_state.as_str())
                    }
                    SessionEvent::ConversationItemAdded {
                        item: ChatItem::Message(m),
                    } => format!(
                        "{:?}:{}{}",
                        m.role,
                        m.text_content().unwrap_or_default(),
                        if m.interrupted { " (interrupted)" } else { "" }
                    ),
                    _ => return None,
                };
                Some((*t, label))
            })
            .collect()
    }

    fn users(&self) -> Vec<(u64, String)> {
        self.timeline()
            .into_iter()
            .filter(|(_, l)| l.starts_with("User:"))
            .collect()
    }

    fn assistant(&self) -> Vec<(u64, String)> {
        self.timeline()
            .into_iter()
            .filter(|(_, l)| l.starts_with("Assistant:"))
            .collect()
    }

    /// `(ms, speech duration)` of each `user_transcription_timeout`.
    fn transcription_timeouts(&self) -> Vec<(u64, Duration)> {
        self.log
            .lock()
            .iter()
            .filter_map(|(t, ev)| match ev {
                SessionEvent::UserTranscriptionTimeout {
                    speech_duration, ..
                } => Some((*t, *speech_duration)),
                _ => None,
            })
            .collect()
    }

    fn llm_request_ms(&self) -> Vec<u64> {
        self.llm
            .request_times()
            .iter()
            .map(|t| (t.duration_since(self.t0).as_secs_f64() * 100.0).round() as u64 * 10)
            .collect()
    }
}

fn options() -> SessionOptions {
    let mut o = SessionOptions::default();
    o.turn_handling.preemptive_generation.enabled = false;
    o.user_away_timeout = None;
    o.aec_warmup_duration = AecWarmup::Off;
    o
}

async fn start(
    speeches: Vec<UserSpeech>,
    llm: FakeLlm,
    tts: FakeTts,
    options: SessionOptions,
    agent: Agent,
    input: Option<Box<dyn FnOnce(AudioInput) -> AudioInput>>,
) -> Harness {
    let stt = FakeStt::new(speeches.clone());
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches)))
        .stt(Arc::new(stt))
        .llm(Arc::new(llm.clone()))
        .tts(Arc::new(tts.clone()))
        .options(options)
        .build();
    let log: Arc<Mutex<Vec<(u64, SessionEvent)>>> = Arc::default();
    let mut rx = session.events();
    let t0 = Instant::now();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Some(Ok(ev)) = rx.recv().await {
            // Rounded to 10 ms.
            let t = (t0.elapsed().as_secs_f64() * 100.0).round() as u64 * 10;
            sink.lock().push((t, ev));
        }
    });
    let (audio, audio_input) = audio_input_channel();
    let audio_input = match input {
        Some(f) => f(audio_input),
        None => audio_input,
    };
    let output = MemoryAudioOutput::new();
    let text = MemoryTextOutput::new();
    session
        .start(
            agent,
            SessionIo {
                audio_input: Some(audio_input),
                audio_output: Some(Arc::new(output.clone())),
                text_output: Some(Arc::new(text.clone())),
            },
        )
        .await
        .unwrap();
    Harness {
        session,
        log,
        _audio: audio,
        output,
        text,
        llm,
        tts,
        t0,
    }
}

fn replies(texts: &[&str]) -> FakeLlm {
    FakeLlm::new(
        texts
            .iter()
            .map(|t| FakeLlmResponse::text(*t, ms(100)))
            .collect(),
    )
}

// ---- transcription_timeout ----

fn with_transcription_timeout(timeout: Duration) -> SessionOptions {
    let mut o = options();
    o.transcription_timeout = Some(timeout);
    o
}

#[tokio::test(start_paused = true)]
async fn speech_without_a_transcript_reports_a_transcription_timeout() {
    let h = start(
        vec![UserSpeech::new(1.0, 2.0, "")],
        replies(&[]),
        FakeTts::new(ms(100), ms(500)),
        with_transcription_timeout(Duration::from_secs(1)),
        Agent::new(""),
        None,
    )
    .await;
    let mut events = h.session.timed_events();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // The VAD noticed the end of the speech (2.0 s) after its 0.3 s of silence, at 2.3 s: the
    // second left counts from 2.0 s.
    assert_eq!(h.transcription_timeouts(), vec![(3000, ms(1000))]);
    let mut started = None;
    while let Some(Ok(ev)) = events.try_recv() {
        if let SessionEvent::UserTranscriptionTimeout {
            vad_speech_started_at,
            ..
        } = ev.event
        {
            started = Some((vad_speech_started_at, ev.created_at));
        }
    }
    let (speech_started, created) = started.unwrap();
    // The speech started 2 s before the event.
    let before = created.duration_since(speech_started).unwrap();
    assert!(
        before.abs_diff(Duration::from_secs(2)) < ms(5),
        "{before:?}"
    );
    assert!(h.users().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_transcript_in_time_satisfies_the_timeout_and_a_late_one_does_not() {
    let h = start(
        vec![
            UserSpeech::new(1.0, 2.0, "Hello").stt_delay(0.8),
            UserSpeech::new(6.0, 7.0, "Are you there").stt_delay(1.5),
        ],
        replies(&["Hi.", "Yes."]),
        FakeTts::new(ms(100), ms(500)),
        with_transcription_timeout(Duration::from_secs(1)),
        Agent::new(""),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    // Only the second turn: its transcript came 1.5 s after the speech (timeout at 8.0 s).
    assert_eq!(h.transcription_timeouts(), vec![(8000, ms(1000))]);
    // The late transcript still makes a turn.
    let users: Vec<String> = h.users().into_iter().map(|(_, l)| l).collect();
    assert_eq!(users, vec!["User:Hello", "User:Are you there"]);
}

#[tokio::test(start_paused = true)]
async fn new_speech_stops_the_clock_and_the_turn_speech_adds_up() {
    let h = start(
        vec![UserSpeech::new(1.0, 2.0, ""), UserSpeech::new(2.5, 3.0, "")],
        replies(&[]),
        FakeTts::new(ms(100), ms(500)),
        with_transcription_timeout(Duration::from_secs(1)),
        Agent::new(""),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Armed for 3.0 s by the first speech, stopped at 2.5 s by the second, armed again for
    // 4.0 s by its end: one event with both speeches' 1.5 s.
    assert_eq!(h.transcription_timeouts(), vec![(4000, ms(1500))]);
}

#[tokio::test(start_paused = true)]
async fn clear_user_turn_resets_the_transcription_timeout() {
    let h = start(
        vec![UserSpeech::new(1.0, 2.0, "")],
        replies(&[]),
        FakeTts::new(ms(100), ms(500)),
        with_transcription_timeout(Duration::from_secs(1)),
        Agent::new(""),
        None,
    )
    .await;
    tokio::time::sleep(ms(2500)).await;
    h.session.clear_user_turn();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(h.transcription_timeouts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn without_the_option_no_transcription_timeout_is_reported() {
    let h = start(
        vec![UserSpeech::new(1.0, 2.0, "")],
        replies(&[]),
        FakeTts::new(ms(100), ms(500)),
        options(),
        Agent::new(""),
        None,
    )
    .await;
    assert_eq!(h.session.options().transcription_timeout, None);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(h.transcription_timeouts().is_empty());
}

// ---- an agent's own turn handling ----

#[tokio::test(start_paused = true)]
async fn each_agent_uses_its_own_endpointing_and_session_updates_survive_handoffs() {
    let slow = || {
        Agent::builder()
            .id("slow")
            .min_endpointing_delay(ms(1500))
            .build()
    };
    let h = start(
        vec![
            UserSpeech::new(0.5, 1.5, "one"),
            UserSpeech::new(6.0, 7.0, "two"),
            UserSpeech::new(11.0, 12.0, "three"),
            UserSpeech::new(17.0, 18.0, "four"),
            UserSpeech::new(23.0, 24.0, "five"),
        ],
        replies(&["a", "b", "c", "d", "e"]),
        FakeTts::new(ms(100), ms(300)),
        options(),
        Agent::builder().id("default").build(),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    h.session.update_agent(slow());
    tokio::time::sleep(Duration::from_secs(6)).await;
    // At 10 s: the session's endpointing changes; the active agent follows at once.
    h.session
        .update_options(
            UpdateOptions::default()
                .with_endpointing(EndpointingOptions::default().with_min_delay(ms(1000))),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // At 15 s: an agent without its own endpointing gets the updated session value.
    h.session.update_agent(Agent::builder().id("plain").build());
    tokio::time::sleep(Duration::from_secs(6)).await;
    // At 21 s: an agent with its own value wins over the session's.
    h.session.update_agent(slow());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        h.users(),
        vec![
            (2000, "User:one".to_string()),    // session default 0.5 s
            (8500, "User:two".to_string()),    // the agent's 1.5 s
            (13000, "User:three".to_string()), // the update's 1.0 s, at once
            (19000, "User:four".to_string()),  // the update's 1.0 s, after a handoff
            (25500, "User:five".to_string()),  // the agent's 1.5 s again
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_agents_manual_turn_detection_applies_only_while_it_is_active() {
    let h = start(
        vec![
            UserSpeech::new(0.5, 1.5, "one"),
            UserSpeech::new(8.0, 9.0, "two"),
        ],
        replies(&["a", "b"]),
        FakeTts::new(ms(100), ms(300)),
        options(),
        Agent::builder()
            .id("push_to_talk")
            .turn_detection(TurnDetection::Manual)
            .build(),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(h.users().is_empty(), "manual: no automatic end of turn");
    let transcript = h
        .session
        .commit_user_turn(CommitOptions::default())
        .await
        .unwrap();
    assert_eq!(transcript, "one");
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.session
        .update_agent(Agent::builder().id("automatic").build());
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        h.users(),
        vec![
            (4000, "User:one".to_string()),
            (9500, "User:two".to_string())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_can_turn_preemptive_generation_off() {
    let mut opts = options();
    opts.turn_handling.preemptive_generation.enabled = true;
    let h = start(
        vec![
            UserSpeech::new(0.5, 2.5, "Hello"),
            UserSpeech::new(8.0, 10.0, "Again"),
        ],
        replies(&["Hi.", "Hi again."]),
        FakeTts::new(ms(100), ms(300)),
        opts,
        Agent::builder().id("eager").build(),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.session.update_agent(
        Agent::builder()
            .id("patient")
            .preemptive_generation(false)
            .build(),
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    // The first agent asks the LLM at the final transcript (2.7 s), before the commit (3.0 s);
    // the second only at the commit (10.5 s), not at its transcript (10.2 s).
    assert_eq!(h.llm_request_ms(), vec![2700, 10500]);
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_allows_interruptions_is_interrupted_although_the_session_does_not() {
    let mut opts = options();
    opts.turn_handling.interruption.enabled = false;
    opts.turn_handling.interruption.resume_false_interruption = false;
    let h = start(
        vec![
            UserSpeech::new(0.5, 1.0, "Tell me a story"),
            UserSpeech::new(3.0, 4.0, "Stop"),
        ],
        replies(&["one two three four five six seven eight nine ten", "Okay."]),
        FakeTts::new(ms(100), ms(10_000)),
        opts,
        Agent::builder().allow_interruptions(true).build(),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let interrupted: Vec<_> = h
        .assistant()
        .into_iter()
        .filter(|(_, l)| l.ends_with("(interrupted)"))
        .collect();
    // The first VAD inference 0.5 s into the second speech interrupts.
    assert_eq!(interrupted.len(), 1, "{:?}", h.timeline());
    assert_eq!(interrupted[0].0, 3510, "{:?}", h.timeline());
}

// ---- the llm_node segment break ----

/// Says "Hello there." and "How are you today?" as two segments.
struct TwoSegments;

#[async_trait]
impl AgentBehavior for TwoSegments {
    async fn llm_node(
        &self,
        _ctx: AgentContext,
        _chat_ctx: ChatContext,
        _tools: Vec<FunctionTool>,
        _settings: ModelSettings,
    ) -> Result<Option<LlmChunkStream>, ApiError> {
        let chunks = vec![
            Ok(ChatChunk::text("r1", "Hello there.")),
            Ok(ChatChunk::flush()),
            Ok(ChatChunk::text("r1", " How are you today?")),
        ];
        Ok(Some(futures::stream::iter(chunks).boxed()))
    }
}

async fn two_segments() -> Harness {
    start(
        vec![],
        replies(&[]),
        FakeTts::new(ms(200), ms(1000)),
        options(),
        Agent::builder().behavior(TwoSegments).build(),
        None,
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_segment_break_plays_two_tts_streams_in_order_as_one_message() {
    let h = two_segments().await;
    let reply = h.session.generate_reply(ReplyOptions::default()).unwrap();
    reply.wait_for_playout().await;
    assert_eq!(h.tts.requests(), 2, "one TTS stream per segment");
    assert_eq!(h.output.played_duration(), Duration::from_secs(2));
    let shown: Vec<String> = h
        .text
        .segments()
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    assert_eq!(shown, vec!["Hello there.", "How are you today?"]);
    // The second segment's synthesis ran while the first played: it plays right after it
    // (0.2 s ttfb + 1 s + 1 s), and the reply is one message.
    assert_eq!(
        h.assistant(),
        vec![(
            2200,
            "Assistant:Hello there. How are you today?".to_string()
        )]
    );
    assert_eq!(
        h.timeline()
            .iter()
            .filter(|(_, l)| l == "agent:speaking")
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn interrupting_the_second_segment_keeps_the_first_and_what_was_heard_of_it() {
    let h = two_segments().await;
    let reply = h.session.generate_reply(ReplyOptions::default()).unwrap();
    tokio::time::sleep(ms(1700)).await;
    h.session.interrupt();
    reply.wait_for_playout().await;
    tokio::time::sleep(ms(100)).await;
    let said = h.assistant();
    assert_eq!(said.len(), 1, "{said:?}");
    let text = said[0].1.clone();
    assert!(
        text.starts_with("Assistant:Hello there. How") && text.ends_with("(interrupted)"),
        "{text}"
    );
    assert!(!text.contains("today"), "{text}");
    // 1 s of the first segment and half of the second (to the frame).
    let played = h.output.played_duration();
    assert!(played >= ms(1500) && played < ms(1600), "{played:?}");
}

#[tokio::test(start_paused = true)]
async fn interrupting_the_first_segment_never_plays_the_second() {
    let h = two_segments().await;
    let reply = h.session.generate_reply(ReplyOptions::default()).unwrap();
    tokio::time::sleep(ms(700)).await;
    h.session.interrupt();
    reply.wait_for_playout().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let said = h.assistant();
    assert_eq!(said.len(), 1, "{said:?}");
    let text = &said[0].1;
    assert!(text.ends_with("(interrupted)"), "{text}");
    assert!(!text.contains("How"), "{text}");
    let played = h.output.played_duration();
    assert!(played >= ms(500) && played < ms(600), "{played:?}");
}

// ---- the AEC warm-up per call type ----

fn outbound_sip(input: AudioInput) -> AudioInput {
    input.with_participant(FilterParams {
        participant_identity: Some("callee".into()),
        participant_kind: Some(ParticipantKind::Sip),
        participant_attributes: [("sip.callID".to_string(), "SCL_1".to_string())].into(),
    })
}

fn inbound_sip(input: AudioInput) -> AudioInput {
    input.with_participant(FilterParams {
        participant_identity: Some("caller".into()),
        participant_kind: Some(ParticipantKind::Sip),
        participant_attributes: [("sip.ruleID".to_string(), "SDR_1".to_string())].into(),
    })
}

/// The time of the interruption of a long reply by speech at 2.0-3.0 s (inside a 3 s warm-up
/// from 1.7 s), if any.
async fn interruption_during_the_first_seconds(
    warmup: AecWarmup,
    input: impl FnOnce(AudioInput) -> AudioInput + 'static,
) -> Option<u64> {
    let mut opts = options();
    opts.aec_warmup_duration = warmup;
    opts.turn_handling.interruption.resume_false_interruption = false;
    let h = start(
        vec![
            UserSpeech::new(0.5, 1.0, "Tell me a story"),
            // What the STT makes of it does not matter here (during a warm-up it hears
            // silence): the VAD's speech interrupts, or not.
            UserSpeech::new(2.0, 3.0, ""),
        ],
        replies(&["one two three four five six seven eight nine ten", "Okay."]),
        FakeTts::new(ms(100), ms(10_000)),
        opts,
        Agent::new(""),
        Some(Box::new(input)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let tl = h.timeline();
    assert!(tl.contains(&(1700, "agent:speaking".to_string())), "{tl:?}");
    h.assistant()
        .into_iter()
        .find(|(_, l)| l.ends_with("(interrupted)"))
        .map(|(t, _)| t)
}

#[tokio::test(start_paused = true)]
async fn an_outbound_sip_call_has_no_default_aec_warmup() {
    assert_eq!(
        interruption_during_the_first_seconds(AecWarmup::Auto, outbound_sip).await,
        Some(2510)
    );
}

#[tokio::test(start_paused = true)]
async fn an_inbound_sip_call_keeps_the_default_aec_warmup() {
    assert_eq!(
        interruption_during_the_first_seconds(AecWarmup::Auto, inbound_sip).await,
        None
    );
}

#[tokio::test(start_paused = true)]
async fn an_explicit_aec_warmup_applies_to_outbound_sip_calls_too() {
    assert_eq!(
        interruption_during_the_first_seconds(AecWarmup::For(Duration::from_secs(3)), outbound_sip)
            .await,
        None
    );
}

// ---- AgentTask hand-back ----

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Code {
    code: String,
}

struct AsksCode {
    result: Arc<Mutex<Option<Result<String, TaskError>>>>,
}

#[async_trait]
impl AgentBehavior for AsksCode {
    async fn on_enter(&self, ctx: AgentContext) {
        let session = ctx.session.clone();
        let task = AgentTask::<String>::new(move |done| {
            Agent::builder()
                .id("code_task")
                .tool(FunctionTool::new(
                    "record_code",
                    "Record the code.",
                    move |_ctx: RunContext, c: Code| {
                        let (done, session) = (done.clone(), session.clone());
                        async move {
                            done.complete(c.code);
                            // More events than the public broadcast holds, before the tool
                            // returns: a listener of the broadcast would lag past them.
                            for _ in 0..2_000 {
                                session.push_sip_dtmf(1, "1", None);
                            }
                            tokio::time::sleep(ms(300)).await;
                            Ok::<_, ToolError>("recorded")
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
async fn a_task_hands_back_after_its_completing_tool_is_recorded_whatever_the_broadcast_does() {
    let result: Arc<Mutex<Option<Result<String, TaskError>>>> = Arc::default();
    let session = AgentSession::builder()
        .llm(Arc::new(FakeLlm::new(vec![
            FakeLlmResponse::tool_call("record_code", r#"{"code":"1234"}"#, ms(50)),
            FakeLlmResponse::text("Thanks.", ms(50)),
            FakeLlmResponse::text("Welcome back.", ms(50)),
        ])))
        .build();
    session
        .start(
            Agent::builder()
                .id("parent")
                .behavior(AsksCode {
                    result: result.clone(),
                })
                .build(),
            SessionIo::default(),
        )
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(session.current_agent().unwrap().id(), "code_task");
    // Not `run()`: its own subscription to the broadcast lags behind the flood.
    let reply = session
        .generate_reply(ReplyOptions::default().with_user_input("1 2 3 4"))
        .unwrap();
    reply.wait_for_playout().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(result.lock().clone(), Some(Ok("1234".to_string())));
    assert_eq!(session.current_agent().unwrap().id(), "parent");
    // The completing call's real output, recorded before the task's agent closed.
    let outputs: Vec<_> = session
        .history()
        .items()
        .iter()
        .filter_map(|i| match i {
            ChatItem::FunctionCallOutput(o) => Some((o.output.clone(), o.is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(outputs, vec![("recorded".to_string(), false)]);
    let next = session.run("hello again").await.unwrap();
    next.expect().next_event().is_message(ChatRole::Assistant);
}

#[tokio::test(start_paused = true)]
async fn a_participant_linked_later_decides_the_aec_warmup_of_its_call() {
    // The room links the callee after the session started (before the agent speaks).
    let (tx, rx) = tokio::sync::watch::channel(FilterParams::default());
    tokio::spawn(async move {
        tokio::time::sleep(ms(200)).await;
        let _ = tx.send(FilterParams {
            participant_identity: Some("callee".into()),
            participant_kind: Some(ParticipantKind::Sip),
            ..Default::default()
        });
        // Kept until the test ends.
        std::future::pending::<()>().await;
    });
    let at = interruption_during_the_first_seconds(AecWarmup::Auto, move |input| {
        input.with_participant_updates(rx)
    })
    .await;
    assert_eq!(at, Some(2510));
}
