//! Interruptions meeting outputs, tools and close, on tokio's paused clock with scripted fakes.
//! Scenarios prone to scheduling differences run 50 times with shifted timings.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use livekit_agents::io::memory::{audio_input_channel, AudioInputSender, MemoryAudioOutput};
use livekit_agents::llm::{ChatItem, ChatRole};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, UserSpeech};
use livekit_agents::voice::*;
use parking_lot::Mutex;
use tokio::time::Instant;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

struct Harness {
    session: AgentSession,
    log: Arc<Mutex<Vec<(f64, SessionEvent)>>>,
    _audio: AudioInputSender,
    output: MemoryAudioOutput,
}

impl Harness {
    async fn start(
        speeches: Vec<UserSpeech>,
        llm: FakeLlm,
        tts: FakeTts,
        options: SessionOptions,
        agent: Agent,
        output: MemoryAudioOutput,
    ) -> Harness {
        let session = AgentSession::builder()
            .vad(Arc::new(FakeVad::new(speeches.clone())))
            .stt(Arc::new(FakeStt::new(speeches)))
            .llm(Arc::new(llm))
            .tts(Arc::new(tts))
            .options(options)
            .build();
        let log: Arc<Mutex<Vec<(f64, SessionEvent)>>> = Arc::default();
        let mut rx = session.events();
        let t0 = Instant::now();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = rx.recv().await {
                sink.lock().push((t0.elapsed().as_secs_f64(), ev));
            }
        });
        let (audio, input) = audio_input_channel();
        session
            .start(
                agent,
                SessionIo {
                    audio_input: Some(input),
                    audio_output: Some(Arc::new(output.clone())),
                    text_output: None,
                },
            )
            .await
            .unwrap();
        Harness {
            session,
            log,
            _audio: audio,
            output,
        }
    }

    /// The history's messages as `Role:text`, `(interrupted)` marked.
    fn messages(&self) -> Vec<String> {
        self.session
            .history()
            .items()
            .iter()
            .filter_map(|i| match i {
                ChatItem::Message(m) => Some(format!(
                    "{:?}:{}{}",
                    m.role,
                    m.text_content().unwrap_or_default(),
                    if m.interrupted { " (interrupted)" } else { "" }
                )),
                _ => None,
            })
            .collect()
    }
}

fn options() -> SessionOptions {
    let mut o = SessionOptions::default();
    o.turn_handling.preemptive_generation.enabled = false;
    o.user_away_timeout = None;
    o
}

/// An output with a 200 ms queue that makes the writer wait while full and while paused
/// (as a room track does): a false interruption pauses it with the reply's writer waiting.
/// `shift` moves the user's barge-in so it lands at different points of the writer's wait.
fn paused_writer_scenario(shift: Duration, says_something: bool) -> Vec<String> {
    paused_runtime().block_on(async move {
        let s = shift.as_secs_f64();
        let barge_in = if says_something { "Stop please" } else { "" };
        let h = Harness::start(
            vec![
                UserSpeech::new(0.5, 1.0, "Tell me a story"),
                UserSpeech::new(2.0 + s, 2.8 + s, barge_in),
                UserSpeech::new(10.0, 10.5, "Are you there"),
            ],
            FakeLlm::new(vec![
                FakeLlmResponse::text("Once upon a time.", ms(100)),
                FakeLlmResponse::text("Okay.", ms(100)),
            ])
            .with_fallback(FakeLlmResponse::text("Yes.", ms(100))),
            FakeTts::new(ms(100), ms(3000)),
            options(),
            Agent::new(""),
            MemoryAudioOutput::bounded(ms(200)),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(16)).await;
        // The last reply played: the output was not left paused or blocked.
        let last_played = h.output.played().last().map(|p| p.at);
        assert!(
            last_played.is_some_and(|at| at > Instant::now() - Duration::from_secs(6)),
            "the reply to the last turn did not play"
        );
        h.messages()
    })
}

#[test]
fn a_paused_bounded_output_resumes_after_a_false_interruption_50_times() {
    for i in 0..50u64 {
        let messages = paused_writer_scenario(ms(i * 7), false);
        assert_eq!(
            messages,
            vec![
                "User:Tell me a story",
                "Assistant:Once upon a time.",
                "User:Are you there",
                "Assistant:Okay.",
            ],
            "iteration {i}"
        );
    }
}

#[test]
fn a_writer_blocked_on_a_paused_output_is_released_by_a_real_interruption_50_times() {
    for i in 0..50u64 {
        let messages = paused_writer_scenario(ms(i * 7), true);
        assert_eq!(messages.len(), 6, "iteration {i}: {messages:?}");
        assert!(
            messages[1].starts_with("Assistant:") && messages[1].ends_with("(interrupted)"),
            "iteration {i}: {messages:?}"
        );
        assert_eq!(
            messages[2..],
            [
                "User:Stop please",
                "Assistant:Okay.",
                "User:Are you there",
                "Assistant:Yes.",
            ],
            "iteration {i}"
        );
    }
}

#[test]
fn a_bounded_output_plays_a_whole_reply_without_interruption() {
    let messages = paused_runtime().block_on(async {
        let h = Harness::start(
            vec![UserSpeech::new(0.5, 1.0, "Hello")],
            FakeLlm::new(vec![FakeLlmResponse::text("Hi there.", ms(100))]),
            FakeTts::new(ms(100), ms(2000)),
            options(),
            Agent::new(""),
            MemoryAudioOutput::bounded(ms(200)),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(h.output.played_duration(), Duration::from_secs(2));
        let speaking = h.log.lock().iter().any(|(_, ev)| {
            matches!(
                ev,
                SessionEvent::AgentStateChanged {
                    new_state: AgentState::Speaking,
                    ..
                }
            )
        });
        assert!(speaking);
        h.messages()
    });
    assert_eq!(messages, vec!["User:Hello", "Assistant:Hi there."]);
    let _ = ChatRole::User;
}

/// "Say goodbye, then hang up": the tool waits for the words of its own step to play
/// (`RunContext::wait_for_playout`), then closes the session from inside the tool. The goodbye
/// plays in full, and nothing is emitted or recorded after the close event.
fn goodbye_then_hang_up(tts_audio: Duration) -> (Vec<String>, Vec<&'static str>, Duration) {
    paused_runtime().block_on(async move {
        let end_call = livekit_agents::llm::FunctionTool::new(
            "end_call",
            "Ends the call.",
            |ctx: livekit_agents::llm::RunContext, _: ()| async move {
                ctx.wait_for_playout().await;
                if let Some(session) = ctx.session() {
                    session.close().await;
                }
                Ok::<_, livekit_agents::llm::ToolError>(())
            },
        );
        let h = Harness::start(
            vec![UserSpeech::new(0.5, 1.0, "Bye")],
            FakeLlm::new(vec![FakeLlmResponse {
                text: "Goodbye, have a nice day!".into(),
                tool_calls: vec![("end_call".into(), "{}".into())],
                ttft: ms(100),
                ..Default::default()
            }]),
            FakeTts::new(ms(100), tts_audio),
            options(),
            Agent::builder().tool(end_call).build(),
            MemoryAudioOutput::new(),
        )
        .await;
        tokio::time::timeout(Duration::from_secs(20), h.session.wait_closed())
            .await
            .expect("the tool closed the session");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let names: Vec<&'static str> = h.log.lock().iter().map(|(_, ev)| ev.name()).collect();
        (h.messages(), names, h.output.played_duration())
    })
}

#[test]
fn wait_for_playout_in_a_tool_lets_the_goodbye_play_then_the_session_closes_50_times() {
    for i in 0..50u64 {
        let audio = ms(1000 + i * 10);
        let (messages, names, played) = goodbye_then_hang_up(audio);
        assert_eq!(
            messages,
            vec!["User:Bye", "Assistant:Goodbye, have a nice day!"],
            "iteration {i}"
        );
        assert_eq!(played, audio, "iteration {i}: the goodbye played in full");
        assert_eq!(names.last(), Some(&"close"), "iteration {i}: {names:?}");
        assert_eq!(
            names.iter().filter(|n| **n == "close").count(),
            1,
            "iteration {i}"
        );
    }
}

fn items(session: &AgentSession) -> Vec<String> {
    session
        .history()
        .items()
        .iter()
        .map(|i| match i {
            ChatItem::FunctionCall(c) => format!("call:{}", c.name),
            ChatItem::FunctionCallOutput(o) => format!("output:{}:{}", o.output, o.is_error),
            ChatItem::Message(m) => format!(
                "{:?}:{}{}",
                m.role,
                m.text_content().unwrap_or_default(),
                if m.interrupted { " (interrupted)" } else { "" }
            ),
            ChatItem::AgentHandoff(h) => format!("handoff:{}", h.new_agent_id),
        })
        .collect()
}

fn states(log: &Mutex<Vec<(f64, SessionEvent)>>) -> Vec<AgentState> {
    log.lock()
        .iter()
        .filter_map(|(_, ev)| match ev {
            SessionEvent::AgentStateChanged { new_state, .. } => Some(*new_state),
            _ => None,
        })
        .collect()
}

/// The model says something and calls a tool in the same step; the user interrupts the words
/// after the tool finished (`handoff`: the tool hands off to another agent).
fn interrupted_after_the_tool(shift: Duration, handoff: bool) -> (Vec<String>, usize, String) {
    paused_runtime().block_on(async move {
        let s = shift.as_secs_f64();
        let tool = livekit_agents::llm::FunctionTool::new(
            "count_items",
            "Counts the items in the cart.",
            move |_ctx: livekit_agents::llm::RunContext, _: ()| async move {
                if handoff {
                    Ok::<_, livekit_agents::llm::ToolError>(
                        livekit_agents::llm::ToolOutput::Handoff {
                            agent: Agent::builder().id("billing").build(),
                            returns: None,
                        },
                    )
                } else {
                    Ok(livekit_agents::llm::ToolOutput::Value("42 items".into()))
                }
            },
        );
        let llm = FakeLlm::new(vec![
            FakeLlmResponse {
                text: "Let me count the items in your cart.".into(),
                tool_calls: vec![("count_items".into(), "{}".into())],
                ttft: ms(100),
                ..Default::default()
            },
            FakeLlmResponse::text("Okay.", ms(100)),
        ]);
        let h = Harness::start(
            vec![
                UserSpeech::new(0.5, 1.0, "Check my cart"),
                UserSpeech::new(2.5 + s, 3.0 + s, "Stop"),
            ],
            llm.clone(),
            FakeTts::new(ms(100), ms(3000)),
            options(),
            Agent::builder().id("front").tool(tool).build(),
            MemoryAudioOutput::new(),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let agent = h.session.current_agent().unwrap().id().to_string();
        (items(&h.session), llm.requests().len(), agent)
    })
}

#[test]
fn a_tool_that_finished_before_the_interruption_keeps_its_real_output_50_times() {
    for i in 0..50u64 {
        let (items, requests, agent) = interrupted_after_the_tool(ms(i * 9), false);
        assert_eq!(items.len(), 6, "iteration {i}: {items:?}");
        assert_eq!(items[0], "User:Check my cart");
        assert!(
            items[1].starts_with("Assistant:") && items[1].ends_with("(interrupted)"),
            "iteration {i}: {items:?}"
        );
        assert_eq!(
            items[2..],
            [
                "call:count_items",
                "output:42 items:false",
                "User:Stop",
                "Assistant:Okay.",
            ],
            "iteration {i}"
        );
        // No reply was asked for the interrupted step's output: the model answered "Stop" only.
        assert_eq!(requests, 2, "iteration {i}");
        assert_eq!(agent, "front");
    }
}

#[test]
fn a_handoff_returned_by_a_tool_of_an_interrupted_speech_does_not_happen_50_times() {
    for i in 0..50u64 {
        let (items, requests, agent) = interrupted_after_the_tool(ms(i * 9), true);
        assert_eq!(
            items[2..4],
            [
                "call:count_items",
                "output:the agent handoff was interrupted and did not happen:true",
            ],
            "iteration {i}: {items:?}"
        );
        assert!(
            !items.iter().any(|i| i.starts_with("handoff:")),
            "{items:?}"
        );
        assert_eq!(agent, "front", "iteration {i}");
        assert_eq!(requests, 2, "iteration {i}");
    }
}

#[test]
fn text_typed_during_a_speech_goes_after_the_interrupted_message_without_a_listening_gap_50_times()
{
    for i in 0..50u64 {
        let (items, states) = paused_runtime().block_on(async move {
            let h = Harness::start(
                vec![],
                FakeLlm::new(vec![FakeLlmResponse::text("Sure.", ms(100))]),
                FakeTts::new(ms(100), ms(3000)),
                options(),
                Agent::new(""),
                MemoryAudioOutput::new(),
            )
            .await;
            h.session
                .say("one two three four five six", SayOptions::default())
                .unwrap();
            tokio::time::sleep(ms(1000 + i * 13)).await;
            // What a room's text input does: interrupt, then reply to the typed text.
            h.session.interrupt();
            h.session
                .generate_reply(ReplyOptions::default().with_user_input("Actually, something else"))
                .unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            (items(&h.session), states(&h.log))
        });
        assert_eq!(items.len(), 3, "iteration {i}: {items:?}");
        assert!(
            items[0].starts_with("Assistant:one") && items[0].ends_with("(interrupted)"),
            "iteration {i}: {items:?}"
        );
        assert_eq!(
            items[1..],
            ["User:Actually, something else", "Assistant:Sure."],
            "iteration {i}"
        );
        assert_eq!(
            states,
            vec![
                AgentState::Listening,
                AgentState::Speaking,
                AgentState::Thinking,
                AgentState::Speaking,
                AgentState::Listening,
            ],
            "iteration {i}"
        );
    }
}

#[test]
fn the_agent_thinks_while_a_tool_runs_after_its_words_then_listens_50_times() {
    for i in 0..50u64 {
        let (items, states) = paused_runtime().block_on(async move {
            let slow = livekit_agents::llm::FunctionTool::new(
                "file_ticket",
                "Files a ticket.",
                move |_ctx: livekit_agents::llm::RunContext, _: ()| async move {
                    tokio::time::sleep(ms(2000 + i * 11)).await;
                    Ok::<_, livekit_agents::llm::ToolError>(())
                },
            );
            let h = Harness::start(
                vec![UserSpeech::new(0.5, 1.0, "File a ticket")],
                FakeLlm::new(vec![FakeLlmResponse {
                    text: "Filing it now.".into(),
                    tool_calls: vec![("file_ticket".into(), "{}".into())],
                    ttft: ms(100),
                    ..Default::default()
                }]),
                FakeTts::new(ms(100), ms(500)),
                options(),
                Agent::builder().tool(slow).build(),
                MemoryAudioOutput::new(),
            )
            .await;
            tokio::time::sleep(Duration::from_secs(8)).await;
            (items(&h.session), states(&h.log))
        });
        assert_eq!(
            items,
            vec![
                "User:File a ticket",
                "Assistant:Filing it now.",
                "call:file_ticket",
                "output::false",
            ],
            "iteration {i}"
        );
        assert_eq!(
            states,
            vec![
                AgentState::Listening,
                AgentState::Thinking,
                AgentState::Speaking,
                AgentState::Thinking,
                AgentState::Listening,
            ],
            "iteration {i}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn three_unrecoverable_errors_are_tolerated_and_the_fourth_closes_the_session() {
    let llm = FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::error("boom", ms(50)));
    let session = AgentSession::builder().llm(Arc::new(llm)).build();
    let mut events = session.events();
    session
        .start(Agent::new(""), SessionIo::default())
        .await
        .unwrap();
    for _ in 0..3 {
        let h = session.generate_reply(ReplyOptions::default()).unwrap();
        h.wait_for_playout().await;
        tokio::time::sleep(ms(100)).await;
    }
    assert!(session.is_running(), "3 errors are tolerated");
    let h = session.generate_reply(ReplyOptions::default()).unwrap();
    h.wait_for_playout().await;
    tokio::time::timeout(Duration::from_secs(5), session.wait_closed())
        .await
        .expect("the 4th error closes the session");
    let mut errors = 0;
    let mut close = None;
    while let Some(Ok(ev)) = events.try_recv() {
        match ev {
            SessionEvent::Error {
                source: ErrorSource::Llm,
                ..
            } => errors += 1,
            SessionEvent::Close { reason, .. } => close = Some(reason),
            _ => {}
        }
    }
    assert_eq!(errors, 4);
    assert_eq!(close, Some(CloseReason::Error));
}

#[tokio::test(start_paused = true)]
async fn an_stt_error_other_than_a_lost_connection_is_counted_and_not_reopened() {
    let speeches = vec![UserSpeech::new(2.0, 3.0, "hello")];
    let stt = FakeStt::new(speeches.clone()).failing_with(
        0.5,
        livekit_agents::types::ApiError::status(400, "bad request"),
    );
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches)))
        .stt(Arc::new(stt.clone()))
        .llm(Arc::new(FakeLlm::new(vec![])))
        .options(options())
        .build();
    let mut events = session.events();
    let (_audio, input) = audio_input_channel();
    session
        .start(
            Agent::new(""),
            SessionIo {
                audio_input: Some(input),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(stt.streams_opened(), 1);
    let mut stt_errors = 0;
    while let Some(Ok(ev)) = events.try_recv() {
        if let SessionEvent::Error {
            source: ErrorSource::Stt,
            recoverable,
            ..
        } = ev
        {
            assert!(!recoverable);
            stt_errors += 1;
        }
    }
    assert_eq!(stt_errors, 1);
    assert!(session.is_running(), "one error is within the budget");
}

/// `close()` while the user is still talking: the final transcript arrives after the close
/// started and is committed before the close event.
#[test]
fn close_waits_for_the_users_trailing_transcript_50_times() {
    for i in 0..50u64 {
        let names_and_items = paused_runtime().block_on(async move {
            let speech = UserSpeech::new(0.5, 2.0, "see you tomorrow").stt_delay(0.8);
            let h = Harness::start(
                vec![speech],
                FakeLlm::new(vec![]),
                FakeTts::new(ms(100), ms(500)),
                options(),
                Agent::new(""),
                MemoryAudioOutput::new(),
            )
            .await;
            tokio::time::sleep(ms(1500 + i * 10)).await;
            h.session.close().await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let names: Vec<String> = h
                .log
                .lock()
                .iter()
                .filter_map(|(_, ev)| match ev {
                    SessionEvent::ConversationItemAdded { item } => Some(format!(
                        "item:{}",
                        item.as_message()
                            .and_then(|m| m.text_content())
                            .unwrap_or_default()
                    )),
                    SessionEvent::Close { .. } => Some("close".into()),
                    _ => None,
                })
                .collect();
            (names, h.messages())
        });
        assert_eq!(
            names_and_items,
            (
                vec!["item:see you tomorrow".to_string(), "close".to_string()],
                vec!["User:see you tomorrow".to_string()]
            ),
            "iteration {i}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn close_does_not_wait_when_the_user_is_silent() {
    let h = Harness::start(
        vec![],
        FakeLlm::new(vec![]),
        FakeTts::new(ms(100), ms(500)),
        options(),
        Agent::new(""),
        MemoryAudioOutput::new(),
    )
    .await;
    let started = Instant::now();
    h.session.close().await;
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_llm_request_reports_its_usage_as_cancelled() {
    let h = Harness::start(
        vec![],
        FakeLlm::new(vec![FakeLlmResponse {
            text: "one two three four five six seven eight".into(),
            ttft: ms(100),
            duration: Duration::from_secs(4),
            ..Default::default()
        }]),
        FakeTts::new(ms(100), ms(5000)),
        options(),
        Agent::new(""),
        MemoryAudioOutput::new(),
    )
    .await;
    h.session.generate_reply(ReplyOptions::default()).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.session.interrupt();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let llm: Vec<_> = h
        .log
        .lock()
        .iter()
        .filter_map(|(_, ev)| match ev {
            SessionEvent::MetricsCollected {
                metrics: livekit_agents::metrics::AgentMetrics::Llm(m),
            } => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(llm.len(), 1);
    assert!(llm[0].cancelled);
    assert_eq!(llm[0].ttft, ms(100));
}

#[test]
fn close_on_the_priority_lane_wins_over_queued_commands_50_times() {
    for i in 0..50u64 {
        let (a, b, played, states, messages) = paused_runtime().block_on(async move {
            let h = Harness::start(
                vec![],
                FakeLlm::new(vec![]),
                FakeTts::new(ms(100), ms(2000)),
                options(),
                Agent::new(""),
                MemoryAudioOutput::new(),
            )
            .await;
            tokio::time::sleep(ms(i * 7)).await;
            // Two commands on the main queue, then close on the priority lane, in one tick:
            // the loop handles the close first, so neither speech ever gets the floor.
            let a = h.session.say("first", SayOptions::default()).unwrap();
            let b = h.session.say("second", SayOptions::default()).unwrap();
            h.session.close().await;
            a.wait_for_playout().await;
            b.wait_for_playout().await;
            (
                a.interrupted(),
                b.interrupted(),
                h.output.played_duration(),
                states(&h.log),
                h.messages(),
            )
        });
        assert!(a && b, "iteration {i}");
        assert_eq!(played, Duration::ZERO, "iteration {i}");
        assert!(
            !states.contains(&AgentState::Speaking),
            "iteration {i}: {states:?}"
        );
        assert!(messages.is_empty(), "iteration {i}: {messages:?}");
    }
}
