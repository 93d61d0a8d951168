//! Voice pipeline tests on tokio's paused clock with scripted fakes: exact event order and times.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use livekit_agents::io::memory::{
    audio_input_channel, AudioInputSender, MemoryAudioOutput, MemoryTextOutput,
};
use livekit_agents::llm::{
    ChatContext, ChatItem, ChatMessage, ChatRole, FunctionTool, RunContext, ToolChoice, ToolError,
};
use livekit_agents::testing::{
    FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeTurnDetector, FakeVad, UserSpeech,
};
use livekit_agents::voice::*;
use parking_lot::Mutex;
use tokio::time::Instant;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

struct Harness {
    session: AgentSession,
    log: Arc<Mutex<Vec<(f64, SessionEvent)>>>,
    _audio: AudioInputSender,
    output: MemoryAudioOutput,
    text: MemoryTextOutput,
    llm: FakeLlm,
    stt: FakeStt,
}

impl Harness {
    /// `(time, label)` of state changes and items, rounded to 10 ms.
    fn timeline(&self) -> Vec<(u64, String)> {
        self.log
            .lock()
            .iter()
            .filter_map(|(t, ev)| {
                let label = match ev {
                    SessionEvent::AgentStateChanged { new_state, .. } => {
                        format!("agent:{}", new_state.as_str())
                    }
                    SessionEvent::UserStateChanged { new_state, .. } => {
                        format!("user:{new_state:?}")
                    }
                    SessionEvent::ConversationItemAdded {
                        item: ChatItem::Message(m),
                    } => {
                        format!(
                            "{:?}:{}{}",
                            m.role,
                            m.text_content().unwrap_or_default(),
                            if m.interrupted { " (interrupted)" } else { "" }
                        )
                    }
                    SessionEvent::AgentFalseInterruption { resumed } => {
                        format!("false_interruption:{resumed}")
                    }
                    _ => return None,
                };
                Some(((t * 100.0).round() as u64 * 10, label))
            })
            .collect()
    }
}

async fn start_voice(
    speeches: Vec<UserSpeech>,
    llm: FakeLlm,
    tts: FakeTts,
    options: SessionOptions,
    detector: Option<FakeTurnDetector>,
    agent: Agent,
) -> Harness {
    start_voice_with_text(
        speeches,
        llm,
        tts,
        options,
        detector,
        agent,
        MemoryTextOutput::new(),
    )
    .await
}

async fn start_voice_with_text(
    speeches: Vec<UserSpeech>,
    llm: FakeLlm,
    tts: FakeTts,
    options: SessionOptions,
    detector: Option<FakeTurnDetector>,
    agent: Agent,
    text: MemoryTextOutput,
) -> Harness {
    let stt = FakeStt::new(speeches.clone());
    let mut builder = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches)))
        .stt(Arc::new(stt.clone()))
        .llm(Arc::new(llm.clone()))
        .tts(Arc::new(tts))
        .options(options);
    if let Some(d) = detector {
        builder = builder.turn_detector(Arc::new(d));
    }
    let session = builder.build();
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
    let output = MemoryAudioOutput::new();
    session
        .start(
            agent,
            SessionIo {
                audio_input: Some(input),
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
        stt,
    }
}

fn no_preemption() -> SessionOptions {
    let mut o = SessionOptions::default();
    o.turn_handling.preemptive_generation.enabled = false;
    o.user_away_timeout = None;
    o
}

/// `no_preemption`, and user speech may interrupt the agent's first seconds (no AEC warm-up).
fn no_warmup() -> SessionOptions {
    let mut o = no_preemption();
    o.aec_warmup_duration = AecWarmup::Off;
    o
}

fn at(t: u64, s: &str) -> (u64, String) {
    (t, s.to_string())
}

#[tokio::test(start_paused = true)]
async fn basic_voice_turn_commits_at_min_delay_and_speaks_after_ttft_plus_ttfb() {
    let h = start_voice(
        vec![UserSpeech::new(0.5, 2.5, "Hello there")],
        FakeLlm::new(vec![FakeLlmResponse::text("Hi! How can I help?", ms(100))]),
        FakeTts::new(ms(200), ms(1000)),
        no_preemption(),
        None,
        Agent::new("You are helpful."),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        h.timeline(),
        vec![
            at(0, "agent:listening"),
            at(500, "user:Speaking"),
            at(2800, "user:Listening"),
            at(3000, "User:Hello there"),
            at(3000, "agent:thinking"),
            at(3300, "agent:speaking"),
            at(4300, "Assistant:Hi! How can I help?"),
            at(4300, "agent:listening"),
        ]
    );
    assert_eq!(h.output.played_duration(), Duration::from_secs(1));
    // The LLM saw the instructions and the user message.
    let req = &h.llm.requests()[0];
    let texts: Vec<_> = req
        .chat_ctx
        .items()
        .iter()
        .filter_map(|i| match i {
            ChatItem::Message(m) => Some((m.role, m.text_content().unwrap_or_default())),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            (ChatRole::System, "You are helpful.".into()),
            (ChatRole::User, "Hello there".into())
        ]
    );
    // End-to-end latency: user stopped at 2.5, first audio at 3.3.
    let e2e = h.log.lock().iter().find_map(|(_, ev)| match ev {
        SessionEvent::MetricsCollected {
            metrics: livekit_agents::metrics::AgentMetrics::Turn(t),
        } => Some(t.e2e_latency),
        _ => None,
    });
    assert_eq!(e2e, Some(ms(800)));
    let turn = h.log.lock().iter().find_map(|(_, ev)| match ev {
        SessionEvent::MetricsCollected {
            metrics: livekit_agents::metrics::AgentMetrics::Turn(t),
        } => Some(t.clone()),
        _ => None,
    });
    let turn = turn.unwrap();
    // 0.5 s end of utterance + 0.1 s LLM ttft + 0.2 s TTS ttfb = 0.8 s.
    assert_eq!(turn.end_of_utterance_delay, Some(ms(500)));
    assert_eq!(turn.llm_ttft, Some(ms(100)));
    assert_eq!(turn.tts_ttfb, Some(ms(200)));
    let eou = h.log.lock().iter().find_map(|(_, ev)| match ev {
        SessionEvent::MetricsCollected {
            metrics: livekit_agents::metrics::AgentMetrics::Eou(m),
        } => Some(m.clone()),
        _ => None,
    });
    let eou = eou.unwrap();
    assert_eq!(eou.end_of_utterance_delay, ms(500));
    // Final transcript at 2.7 s, speech ended at 2.5 s.
    assert_eq!(eou.transcription_delay, ms(200));
    // The usage collector summed the LLM and TTS requests.
    let usage = h.session.usage();
    assert_eq!(usage.llm_prompt_tokens, 10);
    assert_eq!(usage.llm_completion_tokens, 5);
    assert_eq!(usage.tts_audio_duration, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn unlikely_turn_detector_waits_max_delay() {
    let h = start_voice(
        vec![UserSpeech::new(0.5, 2.5, "I want to")],
        FakeLlm::new(vec![FakeLlmResponse::text("Sure.", ms(100))]),
        FakeTts::new(ms(200), ms(500)),
        no_preemption(),
        Some(FakeTurnDetector {
            probability: 0.01,
            threshold: 0.1,
            delay: ms(50),
        }),
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tl = h.timeline();
    // Committed at speech end (2.5) + max_delay (3.0).
    assert!(tl.contains(&at(5500, "User:I want to")), "{tl:?}");
}

#[tokio::test(start_paused = true)]
async fn new_speech_during_the_delay_cancels_the_commit() {
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 1.5, "I want"),
            UserSpeech::new(2.0, 3.0, "a coffee"),
        ],
        FakeLlm::new(vec![FakeLlmResponse::text("Sure.", ms(100))]),
        FakeTts::new(ms(200), ms(500)),
        no_preemption(),
        Some(FakeTurnDetector {
            probability: 0.01,
            threshold: 0.1,
            delay: ms(50),
        }),
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let users: Vec<_> = h
        .timeline()
        .into_iter()
        .filter(|(_, l)| l.starts_with("User:"))
        .collect();
    // One turn, committed 3 s after the second speech ended.
    assert_eq!(users, vec![at(6000, "User:I want a coffee")]);
}

#[tokio::test(start_paused = true)]
async fn interruption_after_min_duration_keeps_only_heard_text() {
    let mut opts = no_warmup();
    opts.turn_handling.interruption.resume_false_interruption = false;
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 1.0, "Tell me a story"),
            UserSpeech::new(3.0, 4.0, "Stop"),
        ],
        FakeLlm::new(vec![
            FakeLlmResponse::text("one two three four five six seven eight nine ten", ms(100)),
            FakeLlmResponse::text("Okay.", ms(100)),
        ]),
        FakeTts::new(ms(100), ms(10_000)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let tl = h.timeline();
    // Commit at 1.5, speaking from 1.7; interrupted at 3.512 (the first VAD inference 0.5 s
    // into the user's speech): 1.81 s heard of 10 s for 10 one-syllable words.
    assert!(tl.contains(&at(1700, "agent:speaking")), "{tl:?}");
    assert!(
        tl.contains(&at(3510, "Assistant:one two (interrupted)")),
        "{tl:?}"
    );
    let history = h.session.history();
    let interrupted: Vec<_> = history
        .items()
        .iter()
        .filter_map(|i| match i {
            ChatItem::Message(m) if m.interrupted => m.text_content(),
            _ => None,
        })
        .collect();
    assert_eq!(interrupted, vec!["one two".to_string()]);
    // Audio stopped at the interruption (10 ms frames): 1.82 s of frames started.
    let played = h.output.played();
    let first = played[0].at;
    let first_speech: Duration = played
        .iter()
        .filter(|p| p.at < first + ms(2500))
        .map(|p| p.frame.duration())
        .sum();
    assert_eq!(first_speech, ms(1820));
}

#[tokio::test(start_paused = true)]
async fn false_interruption_pauses_then_resumes_after_timeout() {
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 1.0, "Tell me a story"),
            UserSpeech::new(2.0, 2.8, ""),
        ],
        FakeLlm::new(vec![FakeLlmResponse::text("Once upon a time.", ms(100))]),
        FakeTts::new(ms(100), ms(3000)),
        no_warmup(),
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let tl = h.timeline();
    // Paused at 2.512 (first VAD inference past min_duration), user stops (VAD) at 3.1, resumed at 5.1.
    let expected = [
        at(2510, "agent:listening"),
        at(5100, "agent:speaking"),
        at(5100, "false_interruption:true"),
    ];
    for e in expected {
        assert!(tl.contains(&e), "missing {e:?} in {tl:?}");
    }
    // Not interrupted: the whole text is in history.
    assert!(
        tl.iter().any(|(_, l)| l == "Assistant:Once upon a time."),
        "{tl:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn uninterruptible_say_is_not_interrupted_by_speech() {
    let h = start_voice(
        vec![UserSpeech::new(1.0, 2.0, "")],
        FakeLlm::new(vec![]),
        FakeTts::new(ms(100), ms(3000)),
        no_preemption(),
        None,
        Agent::new(""),
    )
    .await;
    let handle = h
        .session
        .say(
            "Please listen carefully.",
            SayOptions::default().with_allow_interruptions(false),
        )
        .unwrap();
    assert!(handle.interrupt().is_err());
    handle.wait_for_playout().await;
    assert!(!handle.interrupted());
    assert_eq!(h.output.played_duration(), ms(3000));
}

struct Stopper;

#[async_trait]
impl AgentBehavior for Stopper {
    async fn on_user_turn_completed(
        &self,
        _ctx: AgentContext,
        _turn_ctx: &mut ChatContext,
        new_message: &mut ChatMessage,
    ) -> Result<(), StopResponse> {
        if new_message
            .text_content()
            .unwrap_or_default()
            .contains("ignore")
        {
            return Err(StopResponse);
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn stop_response_skips_the_reply() {
    let h = start_voice(
        vec![UserSpeech::new(0.5, 1.0, "please ignore this")],
        FakeLlm::new(vec![FakeLlmResponse::text("Should not be said.", ms(100))]),
        FakeTts::new(ms(100), ms(500)),
        no_preemption(),
        None,
        Agent::builder().behavior(Stopper).build(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.llm.requests().is_empty());
    let roles: Vec<_> = h
        .session
        .history()
        .items()
        .iter()
        .filter_map(|i| match i {
            ChatItem::Message(m) => Some(m.role),
            _ => None,
        })
        .collect();
    assert_eq!(roles, vec![ChatRole::User]);
}

#[tokio::test(start_paused = true)]
async fn a_held_user_away_timer_starts_when_released() {
    let mut opts = no_preemption();
    opts.user_away_timeout = Some(Duration::from_secs(15));
    let h = start_voice(
        vec![],
        FakeLlm::new(vec![]),
        FakeTts::new(ms(100), ms(500)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    // Held (as the room I/O does until the agent's track has a subscriber) for 20 s.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    h.session.hold_user_away_timer_until(async move {
        let _ = released.await;
    });
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(h.timeline(), vec![at(0, "agent:listening")]);
    release.send(()).unwrap();
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(
        h.timeline(),
        vec![at(0, "agent:listening"), at(35000, "user:Away")]
    );
}

#[tokio::test(start_paused = true)]
async fn user_becomes_away_after_15_s_of_mutual_silence() {
    let mut opts = no_preemption();
    opts.user_away_timeout = Some(Duration::from_secs(15));
    let h = start_voice(
        vec![],
        FakeLlm::new(vec![]),
        FakeTts::new(ms(100), ms(500)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        h.timeline(),
        vec![at(0, "agent:listening"), at(15000, "user:Away")]
    );
}

#[tokio::test(start_paused = true)]
async fn preemptive_generation_is_reused_when_the_turn_is_unchanged() {
    let mut opts = no_preemption();
    opts.turn_handling.preemptive_generation.enabled = true;
    let h = start_voice(
        vec![UserSpeech::new(0.5, 2.5, "Hello")],
        FakeLlm::new(vec![FakeLlmResponse::text("Hi.", ms(100))]),
        FakeTts::new(ms(200), ms(500)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The LLM started at the final transcript (2.7), once.
    let times = h.llm.request_times();
    assert_eq!(times.len(), 1);
    // Speaking at commit (3.0) + TTS ttfb (0.2): the LLM was ready.
    assert!(
        h.timeline().contains(&at(3200, "agent:speaking")),
        "{:?}",
        h.timeline()
    );
}

struct AddsContext;

#[async_trait]
impl AgentBehavior for AddsContext {
    async fn on_user_turn_completed(
        &self,
        _ctx: AgentContext,
        turn_ctx: &mut ChatContext,
        _new_message: &mut ChatMessage,
    ) -> Result<(), StopResponse> {
        turn_ctx.add_message(ChatRole::System, "The user is a VIP.");
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn preemptive_generation_is_discarded_when_the_context_changed() {
    let mut opts = no_preemption();
    opts.turn_handling.preemptive_generation.enabled = true;
    let h = start_voice(
        vec![UserSpeech::new(0.5, 2.5, "Hello")],
        FakeLlm::new(vec![
            FakeLlmResponse::text("Preemptive.", ms(100)),
            FakeLlmResponse::text("Fresh.", ms(100)),
        ]),
        FakeTts::new(ms(200), ms(500)),
        opts,
        None,
        Agent::builder().behavior(AddsContext).build(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.llm.requests().len(), 2);
    let said: Vec<_> = h
        .timeline()
        .into_iter()
        .filter(|(_, l)| l.starts_with("Assistant:"))
        .collect();
    assert_eq!(said, vec![at(3800, "Assistant:Fresh.")]);
}

#[tokio::test(start_paused = true)]
async fn manual_commit_returns_the_transcript_and_replies() {
    let mut opts = no_preemption();
    opts.turn_handling.turn_detection = TurnDetection::Manual;
    let h = start_voice(
        vec![UserSpeech::new(0.5, 1.0, "push to talk")],
        FakeLlm::new(vec![FakeLlmResponse::text("Got it.", ms(100))]),
        FakeTts::new(ms(100), ms(500)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Nothing committed on its own.
    assert!(h.session.history().items().is_empty());
    let transcript = h
        .session
        .commit_user_turn(CommitOptions::default())
        .await
        .unwrap();
    assert_eq!(transcript, "push to talk");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let said: Vec<_> = h
        .timeline()
        .into_iter()
        .filter(|(_, l)| l.starts_with("Assistant:"))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(said, vec!["Assistant:Got it.".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_tool_running_at_an_interruption_finishes_and_its_real_output_is_recorded() {
    let slow = FunctionTool::raw(
        "slow_lookup",
        "Looks something up slowly.",
        serde_json::json!({"type": "object", "properties": {}}),
        |_ctx: RunContext, _args: serde_json::Value| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, ToolError>("done")
        },
    );
    let mut opts = no_preemption();
    opts.turn_handling.interruption.resume_false_interruption = false;
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 1.0, "look it up"),
            UserSpeech::new(3.0, 4.0, "never mind"),
        ],
        FakeLlm::new(vec![
            FakeLlmResponse::tool_call("slow_lookup", "{}", ms(100)),
            FakeLlmResponse::text("Okay.", ms(100)),
        ]),
        FakeTts::new(ms(100), ms(500)),
        opts,
        None,
        Agent::builder().tool(slow).build(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    let items: Vec<String> = h
        .session
        .history()
        .items()
        .iter()
        .map(|i| match i {
            ChatItem::FunctionCall(c) => format!("call:{}", c.name),
            ChatItem::FunctionCallOutput(o) => format!("output:{}:{}", o.output, o.is_error),
            ChatItem::Message(m) => {
                format!("{:?}:{}", m.role, m.text_content().unwrap_or_default())
            }
            ChatItem::AgentHandoff(_) => "handoff".into(),
        })
        .collect();
    // The call happened before the user's second turn, its real output came after; no reply
    // was asked for the interrupted step (the model answered the user's turn only).
    assert_eq!(
        items,
        vec![
            "User:look it up",
            "call:slow_lookup",
            "User:never mind",
            "Assistant:Okay.",
            "output:done:false",
        ]
    );
    assert_eq!(h.llm.requests().len(), 2);
    let _ = ToolChoice::Auto;
}

fn noise(ms_len: u64) -> livekit_agents::audio::AudioFrame {
    let n = (16 * ms_len) as usize;
    livekit_agents::audio::AudioFrame::new(vec![1000; n], 16_000, 1).unwrap()
}

#[tokio::test(start_paused = true)]
async fn uninterruptible_speech_replaces_user_audio_with_silence_for_the_stt() {
    let h = start_voice(
        vec![],
        FakeLlm::new(vec![]),
        FakeTts::new(ms(100), ms(2000)),
        no_preemption(),
        None,
        Agent::new(""),
    )
    .await;
    let handle = h
        .session
        .say(
            "Please hold.",
            SayOptions::default().with_allow_interruptions(false),
        )
        .unwrap();
    tokio::time::sleep(ms(500)).await;
    for _ in 0..10 {
        h._audio.send(noise(20));
        tokio::time::sleep(ms(20)).await;
    }
    handle.wait_for_playout().await;
    for _ in 0..5 {
        h._audio.send(noise(20));
        tokio::time::sleep(ms(20)).await;
    }
    let received = h.stt.received();
    assert_eq!(received.total, ms(300));
    assert_eq!(received.non_silent, ms(100));
}

#[tokio::test(start_paused = true)]
async fn user_turn_limit_calls_on_user_turn_exceeded_with_an_uninterruptible_reply() {
    let mut opts = no_preemption();
    opts.turn_handling.user_turn_limit.max_words = Some(3);
    let tool = FunctionTool::raw(
        "noop",
        "Does nothing.",
        serde_json::json!({"type": "object", "properties": {}}),
        |_ctx: RunContext, _a: serde_json::Value| async move { Ok::<_, ToolError>(()) },
    );
    let h = start_voice(
        vec![UserSpeech::new(0.5, 3.0, "one two three four five")],
        FakeLlm::new(vec![FakeLlmResponse::text(
            "Let me stop you there.",
            ms(100),
        )]),
        FakeTts::new(ms(100), ms(500)),
        opts,
        None,
        Agent::builder().tool(tool).build(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let reqs = h.llm.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].tool_choice, Some(ToolChoice::None));
    let created: Vec<bool> = h
        .log
        .lock()
        .iter()
        .filter_map(|(_, ev)| match ev {
            SessionEvent::SpeechCreated { speech_handle, .. } => {
                Some(speech_handle.allow_interruptions())
            }
            _ => None,
        })
        .collect();
    assert_eq!(created, vec![false]);
}

#[tokio::test(start_paused = true)]
async fn turn_detector_timeout_falls_back_to_min_delay() {
    let h = start_voice(
        vec![UserSpeech::new(0.5, 2.5, "Hello")],
        FakeLlm::new(vec![FakeLlmResponse::text("Hi.", ms(100))]),
        FakeTts::new(ms(100), ms(500)),
        no_preemption(),
        Some(FakeTurnDetector {
            probability: 0.01,
            threshold: 0.1,
            delay: Duration::from_secs(5),
        }),
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    // VAD end of speech at 2.8, prediction abandoned at 3.8; min_delay already elapsed.
    assert!(
        h.timeline().contains(&at(3800, "User:Hello")),
        "{:?}",
        h.timeline()
    );
}

#[tokio::test(start_paused = true)]
async fn transcript_reaches_the_text_output_in_step_with_playback() {
    let h = start_voice(
        vec![],
        FakeLlm::new(vec![]),
        FakeTts::new(ms(100), ms(2000)),
        no_preemption(),
        None,
        Agent::new(""),
    )
    .await;
    let handle = h
        .session
        .say("one two three four", SayOptions::default())
        .unwrap();
    // Audio starts at 0.1 s; 4 one-syllable words over 2 s: one word every 0.5 s.
    tokio::time::sleep(ms(700)).await;
    assert_eq!(h.text.segments(), vec!["one two".to_string()]);
    handle.wait_for_playout().await;
    assert_eq!(h.text.segments(), vec!["one two three four".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn an_unsynchronized_text_output_gets_the_text_before_it_is_heard() {
    let h = start_voice_with_text(
        vec![],
        FakeLlm::new(vec![]),
        FakeTts::new(ms(100), ms(2000)),
        no_preemption(),
        None,
        Agent::new(""),
        MemoryTextOutput::unsynchronized(),
    )
    .await;
    let handle = h
        .session
        .say("one two three four", SayOptions::default())
        .unwrap();
    // Audio starts at 0.1 s and lasts 2 s; the whole text is there right away.
    tokio::time::sleep(ms(200)).await;
    assert_eq!(h.text.segments(), vec!["one two three four".to_string()]);
    handle.wait_for_playout().await;
    assert_eq!(h.text.segments(), vec!["one two three four".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn say_with_pre_synthesized_audio_plays_it_and_records_the_text() {
    let h = start_voice(
        vec![],
        FakeLlm::new(vec![]),
        FakeTts::new(ms(100), ms(5000)),
        no_preemption(),
        None,
        Agent::new(""),
    )
    .await;
    let frames: Vec<_> = (0..50)
        .map(|_| livekit_agents::audio::AudioFrame::silence(24_000, 1, 480))
        .collect();
    let handle = h
        .session
        .say(
            "Welcome!",
            SayOptions::default().with_audio(futures::stream::iter(frames).boxed()),
        )
        .unwrap();
    handle.wait_for_playout().await;
    assert_eq!(h.output.played_duration(), Duration::from_secs(1));
    assert!(h.timeline().iter().any(|(_, l)| l == "Assistant:Welcome!"));
}

#[tokio::test(start_paused = true)]
async fn end_of_audio_input_closes_the_session_after_the_last_reply() {
    let h = start_voice(
        vec![UserSpeech::new(0.2, 1.0, "Bye")],
        FakeLlm::new(vec![FakeLlmResponse::text("Goodbye!", ms(100))]),
        FakeTts::new(ms(100), ms(1000)),
        no_preemption(),
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(ms(100)).await;
    let Harness {
        session,
        log,
        _audio,
        ..
    } = h;
    drop(_audio);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!session.is_running());
    let close = log.lock().iter().find_map(|(t, ev)| match ev {
        SessionEvent::Close { reason, .. } => Some((*t, *reason)),
        _ => None,
    });
    let (t, reason) = close.unwrap();
    assert_eq!(reason, CloseReason::InputEnded);
    // The reply (1.5 → 2.7) played before the close at the end of the 3 s grace period.
    assert!((3.0..3.2).contains(&t), "closed at {t}");
    assert!(log.lock().iter().any(|(_, ev)| matches!(ev, SessionEvent::ConversationItemAdded { item: ChatItem::Message(m) } if m.role == ChatRole::Assistant)));
}

#[tokio::test(start_paused = true)]
async fn dynamic_endpointing_learns_from_a_premature_end_of_turn() {
    let mut opts = no_preemption();
    opts.turn_handling.endpointing.mode = EndpointingMode::Dynamic;
    // Adapt fully to the last observation, to make the effect visible in one turn.
    opts.turn_handling.endpointing.alpha = 0.0;
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 1.0, "I would like"),
            UserSpeech::new(1.7, 2.2, "a coffee"),
            UserSpeech::new(4.0, 4.5, "with milk"),
        ],
        FakeLlm::new(vec![
            FakeLlmResponse::text("Sure.", ms(300)),
            FakeLlmResponse::text("Sure.", ms(300)),
            FakeLlmResponse::text("Sure.", ms(300)),
        ]),
        FakeTts::new(ms(100), ms(300)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let users: Vec<_> = h
        .timeline()
        .into_iter()
        .filter(|(_, l)| l.starts_with("User:"))
        .collect();
    // First turn at 1.0 + 0.5. The user went on 0.7 s after speaking, before the reply
    // played: min_delay becomes 0.7, so the next turns commit 0.7 s after the speech ends.
    // (The third speech follows a reply the user heard: not a premature end of turn.)
    assert_eq!(
        users,
        vec![
            at(1500, "User:I would like"),
            at(2900, "User:a coffee"),
            at(5200, "User:with milk")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn manual_commit_with_skip_reply_records_the_turn_without_replying() {
    let mut opts = no_preemption();
    opts.turn_handling.turn_detection = TurnDetection::Manual;
    let h = start_voice(
        vec![UserSpeech::new(0.5, 1.0, "just noting this")],
        FakeLlm::new(vec![FakeLlmResponse::text("Should not be said.", ms(100))]),
        FakeTts::new(ms(100), ms(500)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let transcript = h
        .session
        .commit_user_turn(CommitOptions::default().with_skip_reply(true))
        .await
        .unwrap();
    assert_eq!(transcript, "just noting this");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.llm.requests().is_empty());
    let users: Vec<_> = h
        .timeline()
        .into_iter()
        .filter(|(_, l)| l.starts_with("User:"))
        .collect();
    assert_eq!(users, vec![at(2000, "User:just noting this")]);
}

#[tokio::test(start_paused = true)]
async fn manual_commit_waits_for_the_final_transcript_up_to_the_timeout() {
    let mut opts = no_preemption();
    opts.turn_handling.turn_detection = TurnDetection::Manual;
    let h = start_voice(
        vec![UserSpeech::new(0.5, 1.0, "slow transcript").stt_delay(1.5)],
        FakeLlm::new(vec![FakeLlmResponse::text("Okay.", ms(100))]),
        FakeTts::new(ms(100), ms(500)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    // Commit at 1.2 s: the final transcript comes at 2.5 s, within the 2 s timeout.
    tokio::time::sleep(ms(1200)).await;
    let start = Instant::now();
    let transcript = h
        .session
        .commit_user_turn(CommitOptions::default())
        .await
        .unwrap();
    assert_eq!(transcript, "slow transcript");
    assert_eq!(start.elapsed(), ms(1300));
}

#[tokio::test(start_paused = true)]
async fn voice_handoff_keeps_the_stt_stream_and_the_new_agent_answers() {
    let transfer = FunctionTool::raw(
        "transfer_to_billing",
        "Transfer to billing.",
        serde_json::json!({"type": "object", "properties": {}}),
        |_ctx: RunContext, _a: serde_json::Value| async move {
            let billing = Agent::builder()
                .id("billing")
                .instructions("You handle billing.")
                .build();
            Ok::<_, ToolError>(livekit_agents::llm::ToolOutput::Handoff {
                agent: billing,
                returns: None,
            })
        },
    );
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 1.5, "billing please"),
            UserSpeech::new(4.0, 5.0, "my invoice is wrong"),
        ],
        FakeLlm::new(vec![
            FakeLlmResponse::tool_call("transfer_to_billing", "{}", ms(100)),
            FakeLlmResponse::text("Let me check your invoice.", ms(100)),
        ]),
        FakeTts::new(ms(100), ms(500)),
        no_preemption(),
        None,
        Agent::builder().id("front").tool(transfer).build(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(h.session.current_agent().unwrap().id(), "billing");
    assert_eq!(h.stt.streams_opened(), 1);
    // The second turn went to the billing agent's instructions.
    let reqs = h.llm.requests();
    assert_eq!(reqs.len(), 2);
    let system = reqs[1].chat_ctx.items().iter().find_map(|i| match i {
        ChatItem::Message(m) if m.role == ChatRole::System => m.text_content(),
        _ => None,
    });
    assert_eq!(system.as_deref(), Some("You handle billing."));
    assert!(h
        .timeline()
        .iter()
        .any(|(_, l)| l == "Assistant:Let me check your invoice."));
}

#[tokio::test(start_paused = true)]
async fn the_transcript_clock_stops_while_the_output_is_paused() {
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 1.0, "Tell me a story"),
            UserSpeech::new(2.0, 2.8, ""),
        ],
        FakeLlm::new(vec![FakeLlmResponse::text("one two three four", ms(100))]),
        FakeTts::new(ms(100), ms(2000)),
        no_warmup(),
        None,
        Agent::new(""),
    )
    .await;
    // Speaking from 1.7 s (a word every 0.5 s), paused at 2.512 s, resumed at 5.1 s.
    tokio::time::sleep(ms(4000)).await;
    assert_eq!(h.text.segments(), vec!["one two".to_string()]);
    // 0.81 s had played before the pause: "three" is due 0.19 s after the resume.
    tokio::time::sleep(ms(1400)).await;
    assert_eq!(h.text.segments(), vec!["one two three".to_string()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.text.segments(), vec!["one two three four".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_stt_stream_is_reported_and_reopened() {
    let speeches = vec![UserSpeech::new(2.0, 3.0, "after the failure")];
    let stt = FakeStt::new(speeches.clone()).failing_at(0.5);
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("Still here.", ms(100))]);
    let mut opts = no_preemption();
    opts.user_away_timeout = None;
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches)))
        .stt(Arc::new(stt.clone()))
        .llm(Arc::new(llm))
        .tts(Arc::new(FakeTts::new(ms(100), ms(500))))
        .options(opts)
        .build();
    let mut events = session.events();
    let (_audio, input) = audio_input_channel();
    session
        .start(
            Agent::new(""),
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(MemoryAudioOutput::new())),
                text_output: None,
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(stt.streams_opened(), 2);
    let mut stt_errors = 0;
    let mut user_turns = Vec::new();
    while let Some(Ok(ev)) = events.try_recv() {
        match ev {
            SessionEvent::Error {
                source: ErrorSource::Stt,
                recoverable,
                ..
            } => {
                assert!(!recoverable);
                stt_errors += 1;
            }
            SessionEvent::ConversationItemAdded {
                item: ChatItem::Message(m),
            } if m.role == ChatRole::User => {
                user_turns.push(m.text_content().unwrap_or_default());
            }
            _ => {}
        }
    }
    assert_eq!(stt_errors, 1);
    assert_eq!(user_turns, vec!["after the failure".to_string()]);
    assert!(session.is_running());
}

/// A streaming STT whose stream reports one non-streaming recognition's usage (as the stream
/// adapter does after each utterance) and a provider's own streaming usage.
struct UsageStt;

#[async_trait]
impl livekit_agents::stt::Stt for UsageStt {
    fn label(&self) -> String {
        "usage.STT".into()
    }
    fn capabilities(&self) -> livekit_agents::stt::SttCapabilities {
        livekit_agents::stt::SttCapabilities {
            streaming: true,
            ..Default::default()
        }
    }
    fn stream(
        &self,
        _language: Option<String>,
        _conn: livekit_agents::types::ApiConnectOptions,
    ) -> Result<livekit_agents::stt::SpeechStream, livekit_agents::types::ApiError> {
        use livekit_agents::stt::{RecognitionUsage, SpeechEvent, SpeechEventType};
        let (in_tx, _in_rx) = livekit_agents::model_input::channel();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let task = tokio::spawn(async move {
            let _keep = _in_rx;
            for request_duration in [Some(0.25), None] {
                let mut ev = SpeechEvent::new(SpeechEventType::RecognitionUsage);
                ev.recognition_usage = Some(RecognitionUsage {
                    audio_duration: 1.5,
                    request_duration,
                });
                let _ = tx.send(Ok(ev)).await;
            }
            std::future::pending::<()>().await;
        });
        Ok(livekit_agents::stt::SpeechStream::from_channels(
            in_tx,
            rx,
            Some(task),
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn stt_metrics_carry_the_recognition_request_time() {
    let session = AgentSession::builder()
        .stt(Arc::new(UsageStt) as Arc<dyn livekit_agents::stt::Stt>)
        .llm(Arc::new(FakeLlm::new(vec![])))
        .build();
    let mut rx = session.events();
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
    tokio::time::sleep(ms(100)).await;
    let mut stt = Vec::new();
    while let Some(Ok(ev)) = rx.try_recv() {
        if let SessionEvent::MetricsCollected {
            metrics: livekit_agents::metrics::AgentMetrics::Stt(m),
        } = ev
        {
            stt.push((m.duration, m.audio_duration, m.streamed));
        }
    }
    assert_eq!(
        stt,
        vec![(ms(250), ms(1500), false), (Duration::ZERO, ms(1500), true)]
    );
}

#[tokio::test(start_paused = true)]
async fn during_the_aec_warmup_user_speech_does_not_interrupt_then_it_does() {
    // Default options: a 3 s AEC warm-up from the first `speaking` (1.7 s here) to 4.7 s.
    let mut opts = no_preemption();
    opts.turn_handling.interruption.resume_false_interruption = false;
    assert_eq!(opts.aec_warmup_duration, AecWarmup::Auto);
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 1.0, "Tell me a story"),
            // Echo of the agent during the warm-up: ignored.
            UserSpeech::new(2.0, 3.0, ""),
            // After the warm-up: interrupts.
            UserSpeech::new(6.0, 7.0, "Stop"),
        ],
        FakeLlm::new(vec![
            FakeLlmResponse::text("one two three four five six seven eight nine ten", ms(100)),
            FakeLlmResponse::text("Okay.", ms(100)),
        ]),
        FakeTts::new(ms(100), ms(10_000)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    // User audio while the agent speaks in the warm-up (2.0 s .. 2.2 s) and after it (5.0 s ..
    // 5.1 s): the STT gets silence for the first part only.
    tokio::time::sleep(ms(2000)).await;
    for _ in 0..10 {
        h._audio.send(noise(20));
        tokio::time::sleep(ms(20)).await;
    }
    tokio::time::sleep(ms(2800)).await;
    for _ in 0..5 {
        h._audio.send(noise(20));
        tokio::time::sleep(ms(20)).await;
    }
    let received = h.stt.received();
    assert_eq!(received.total, ms(300));
    assert_eq!(received.non_silent, ms(100));
    tokio::time::sleep(Duration::from_secs(11)).await;
    let tl = h.timeline();
    assert!(tl.contains(&at(1700, "agent:speaking")), "{tl:?}");
    // Nothing happened to the speech during the echo; the interruption came at 6.512 (the
    // first VAD inference 0.5 s into the second user speech).
    let interrupted: Vec<_> = tl
        .iter()
        .filter(|(_, l)| l.ends_with("(interrupted)"))
        .cloned()
        .collect();
    assert_eq!(interrupted.len(), 1, "{tl:?}");
    assert_eq!(interrupted[0].0, 6510, "{tl:?}");
    assert!(
        !tl.iter()
            .any(|(t, l)| *t > 1700 && *t < 6510 && l == "agent:listening"),
        "{tl:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn preemptive_tts_synthesizes_before_the_turn_is_committed() {
    let mut opts = no_preemption();
    opts.turn_handling.preemptive_generation.enabled = true;
    opts.turn_handling.preemptive_generation.preemptive_tts = true;
    let h = start_voice(
        vec![UserSpeech::new(0.5, 2.5, "Hello")],
        FakeLlm::new(vec![FakeLlmResponse::text("Hi.", ms(100))]),
        FakeTts::new(ms(200), ms(500)),
        opts,
        None,
        Agent::new(""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.llm.request_times().len(), 1);
    // The LLM answered at 2.8 and the TTS had its audio at 3.0: speaking at the commit (3.0),
    // not 0.2 s later as without preemptive TTS.
    let tl = h.timeline();
    assert!(tl.contains(&at(3000, "agent:speaking")), "{tl:?}");
    assert!(tl.contains(&at(3500, "Assistant:Hi.")), "{tl:?}");
}

#[tokio::test(start_paused = true)]
async fn a_preemptive_tts_of_a_changed_turn_is_discarded_silently() {
    let mut opts = no_preemption();
    opts.turn_handling.preemptive_generation.enabled = true;
    opts.turn_handling.preemptive_generation.preemptive_tts = true;
    let h = start_voice(
        vec![UserSpeech::new(0.5, 2.5, "Hello")],
        FakeLlm::new(vec![
            FakeLlmResponse::text("Preemptive.", ms(100)),
            FakeLlmResponse::text("Fresh.", ms(100)),
        ]),
        FakeTts::new(ms(200), ms(500)),
        opts,
        None,
        Agent::builder().behavior(AddsContext).build(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let said: Vec<_> = h
        .timeline()
        .into_iter()
        .filter(|(_, l)| l.starts_with("Assistant:"))
        .collect();
    assert_eq!(said, vec![at(3800, "Assistant:Fresh.")]);
    // Only the fresh reply's audio played.
    assert_eq!(h.output.played_duration(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn update_options_changes_endpointing_for_the_next_turns_and_survives_a_handoff() {
    let h = start_voice(
        vec![
            UserSpeech::new(0.5, 2.5, "Hello there"),
            UserSpeech::new(8.0, 9.0, "And now"),
        ],
        FakeLlm::new(vec![
            FakeLlmResponse::text("Hi!", ms(100)),
            FakeLlmResponse::text("Sure.", ms(100)),
        ]),
        FakeTts::new(ms(200), ms(500)),
        no_preemption(),
        None,
        Agent::new(""),
    )
    .await;
    h.session
        .update_options(UpdateOptions::default().with_endpointing(
            EndpointingOptions::default().with_min_delay(Duration::from_millis(1500)),
        ))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.session
        .update_agent(Agent::builder().id("second").build());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let users: Vec<_> = h
        .timeline()
        .into_iter()
        .filter(|(_, l)| l.starts_with("User:"))
        .collect();
    // Committed 1.5 s after each speech ended (not the default 0.5 s), before and after the
    // handoff.
    assert_eq!(
        users,
        vec![at(4000, "User:Hello there"), at(10_500, "User:And now")]
    );
}
