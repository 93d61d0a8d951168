//! Observability on tokio's paused clock with scripted fakes: event time stamps, spans,
//! session reports, recordings and replay.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use livekit_agents::io::memory::{audio_input_channel, AudioInputSender, MemoryAudioOutput};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, UserSpeech};
use livekit_agents::voice::SessionReport;
use livekit_agents::voice::*;
use parking_lot::Mutex;
use tokio::time::Instant;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

struct Scripted {
    session: AgentSession,
    timed: Arc<Mutex<Vec<TimedSessionEvent>>>,
    t0: Instant,
    _audio: AudioInputSender,
}

/// One user turn "Hello there" (0.5 s to 1.5 s), a reply "Hi! How can I help?".
async fn scripted_session() -> Scripted {
    let speeches = vec![UserSpeech::new(0.5, 1.5, "Hello there")];
    let mut options = SessionOptions::default().without_user_away_timeout();
    options.turn_handling.preemptive_generation.enabled = false;
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches.clone())))
        .stt(Arc::new(FakeStt::new(speeches)))
        .llm(Arc::new(FakeLlm::new(vec![FakeLlmResponse::text(
            "Hi! How can I help?",
            ms(200),
        )])))
        .tts(Arc::new(FakeTts::new(ms(100), ms(800))))
        .options(options)
        .build();
    let timed: Arc<Mutex<Vec<TimedSessionEvent>>> = Arc::default();
    let mut rx = session.timed_events();
    let sink = timed.clone();
    tokio::spawn(async move {
        while let Some(Ok(ev)) = rx.recv().await {
            sink.lock().push(ev);
        }
    });
    let t0 = Instant::now();
    let (audio, input) = audio_input_channel();
    session
        .start(
            Agent::new("You are a helpful assistant."),
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(MemoryAudioOutput::new())),
                text_output: None,
            },
        )
        .await
        .unwrap();
    Scripted {
        session,
        timed,
        t0,
        _audio: audio,
    }
}

#[tokio::test(start_paused = true)]
async fn events_carry_created_at_and_listening_is_stamped_with_the_last_speech() {
    let s = scripted_session().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let events = s.timed.lock().clone();
    assert!(!events.is_empty());
    // Every event has a wall-clock time, in order of emission on tokio's clock.
    for pair in events.windows(2) {
        let a = &pair[0];
        let b = &pair[1];
        if !matches!(
            b.event,
            SessionEvent::UserStateChanged {
                new_state: UserState::Listening,
                ..
            }
        ) {
            assert!(a.instant <= b.instant || a.event.name() == "user_state_changed");
        }
        assert!(a.created_at_secs() > 1.0e9);
    }
    let listening = events
        .iter()
        .find(|e| {
            matches!(
                e.event,
                SessionEvent::UserStateChanged {
                    new_state: UserState::Listening,
                    ..
                }
            )
        })
        .expect("user_state_changed(listening)");
    // The VAD noticed the end of speech at 1.8 s (0.3 s of silence): the event is stamped with
    // the end of the speech, 1.5 s.
    let offset = listening.instant.duration_since(s.t0).as_secs_f64();
    assert!((offset - 1.5).abs() < 0.01, "stamped at {offset}");
    let speaking = events
        .iter()
        .find(|e| {
            matches!(
                e.event,
                SessionEvent::UserStateChanged {
                    new_state: UserState::Speaking,
                    ..
                }
            )
        })
        .unwrap();
    let offset = speaking.instant.duration_since(s.t0).as_secs_f64();
    assert!((offset - 0.5).abs() < 0.01, "speaking at {offset}");
    // The wall-clock stamp is the same 0.3 s before the moment it was emitted.
    let emitted_after = events
        .iter()
        .find(|e| e.instant > listening.instant + ms(250))
        .unwrap();
    let gap = emitted_after
        .created_at
        .duration_since(listening.created_at)
        .unwrap();
    assert!(gap >= ms(290), "{gap:?}");
    assert!(SystemTime::now() >= listening.created_at);
    s.session.close().await;
}

mod spans {
    use std::collections::HashMap;
    use std::sync::Arc;

    use parking_lot::Mutex;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    #[derive(Debug, Clone, Default)]
    pub struct SpanRec {
        pub name: String,
        pub parent: Option<u64>,
        pub fields: HashMap<String, String>,
        pub closed: bool,
    }

    type Records = Arc<Mutex<Vec<(u64, SpanRec)>>>;

    /// Spans of the `livekit_agents::telemetry` target, per test thread. One global subscriber
    /// routes each span to the recorder of the thread that made it (each paused-clock test runs
    /// on its own thread): thread-local default subscribers race on callsite interest when tests
    /// run in parallel.
    #[derive(Clone, Default)]
    pub struct Recorder(pub Records);

    static ROUTES: std::sync::OnceLock<Mutex<HashMap<std::thread::ThreadId, Records>>> =
        std::sync::OnceLock::new();

    fn routes() -> &'static Mutex<HashMap<std::thread::ThreadId, Records>> {
        ROUTES.get_or_init(Default::default)
    }

    fn mine() -> Option<Records> {
        routes().lock().get(&std::thread::current().id()).cloned()
    }

    #[derive(Clone, Default)]
    struct Router;

    struct V<'a>(&'a mut HashMap<String, String>);
    impl Visit for V<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0
                .insert(field.name().to_string(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_string(), value.to_string());
        }
    }

    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Router {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if !attrs
                .metadata()
                .target()
                .starts_with("livekit_agents::telemetry")
            {
                return;
            }
            let Some(records) = mine() else { return };
            let parent = if attrs.is_root() {
                None
            } else if let Some(p) = attrs.parent() {
                Some(p.into_u64())
            } else {
                ctx.current_span().id().map(|i| i.into_u64())
            };
            let mut rec = SpanRec {
                name: attrs.metadata().name().to_string(),
                parent,
                ..Default::default()
            };
            attrs.record(&mut V(&mut rec.fields));
            records.lock().push((id.into_u64(), rec));
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
            let Some(records) = mine() else { return };
            let mut all = records.lock();
            if let Some((_, rec)) = all.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
                values.record(&mut V(&mut rec.fields));
            }
        }
        fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
            let Some(records) = mine() else { return };
            let mut all = records.lock();
            if let Some((_, rec)) = all.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
                rec.closed = true;
            }
        }
    }

    /// Stops recording this thread's spans when dropped.
    pub struct Installed;

    impl Drop for Installed {
        fn drop(&mut self) {
            routes().lock().remove(&std::thread::current().id());
        }
    }

    impl Recorder {
        /// Records the spans of this thread from now on.
        pub fn install(&self) -> Installed {
            static GLOBAL: std::sync::Once = std::sync::Once::new();
            GLOBAL.call_once(|| {
                // With the latency layer too: the console (which installs it when no
                // subscriber is) and the latency test run in this process.
                let subscriber = tracing_subscriber::registry()
                    .with(Router)
                    .with(livekit_agents::telemetry::latency::layer());
                tracing::subscriber::set_global_default(subscriber)
                    .expect("the span recorder must be the first global subscriber");
            });
            routes()
                .lock()
                .insert(std::thread::current().id(), self.0.clone());
            Installed
        }
        pub fn spans(&self) -> Vec<(u64, SpanRec)> {
            self.0.lock().clone()
        }
        pub fn named(&self, name: &str) -> Vec<(u64, SpanRec)> {
            self.spans()
                .into_iter()
                .filter(|(_, s)| s.name == name)
                .collect()
        }
        pub fn parent_name(&self, rec: &SpanRec) -> Option<String> {
            let all = self.spans();
            rec.parent.and_then(|p| {
                all.iter()
                    .rev()
                    .find(|(i, _)| *i == p)
                    .map(|(_, s)| s.name.clone())
            })
        }
    }
}

#[tokio::test(start_paused = true)]
async fn spans_of_a_scripted_session_form_one_tree() {
    let recorder = spans::Recorder::default();
    let _guard = recorder.install();
    let s = scripted_session().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.session.close().await;
    tokio::time::sleep(ms(10)).await;

    let root = recorder.named("agent_session");
    assert_eq!(root.len(), 1, "{:?}", recorder.spans());
    assert!(root[0].1.parent.is_none());
    assert!(root[0].1.closed);
    assert_eq!(root[0].1.fields["lk.close_reason"], "UserInitiated");

    let turns = recorder.named("user_turn");
    assert_eq!(turns.len(), 1);
    assert_eq!(
        recorder.parent_name(&turns[0].1).as_deref(),
        Some("agent_session")
    );
    // Transcripts are off by default.
    assert!(!turns[0].1.fields.contains_key("lk.pii.user_transcript"));

    let eou = recorder.named("eou_detection");
    assert_eq!(eou.len(), 1);
    assert_eq!(
        recorder.parent_name(&eou[0].1).as_deref(),
        Some("user_turn")
    );
    assert!(eou[0].1.fields.contains_key("lk.end_of_turn_delay"));

    let agent_turns = recorder.named("agent_turn");
    assert_eq!(agent_turns.len(), 1);
    let speech_id = agent_turns[0].1.fields["lk.speech_id"].clone();
    assert!(speech_id.starts_with("speech_"), "{speech_id}");
    assert_eq!(agent_turns[0].1.fields["lk.interrupted"], "false");
    assert!(agent_turns[0].1.closed);

    let llm = recorder.named("llm_request");
    assert_eq!(llm.len(), 1);
    let f = &llm[0].1.fields;
    assert_eq!(
        recorder.parent_name(&llm[0].1).as_deref(),
        Some("agent_turn")
    );
    assert_eq!(f["lk.speech_id"], speech_id);
    assert!(f.contains_key("gen_ai.request.model"));
    assert!(f.contains_key("gen_ai.provider.name"));
    let ttft: f64 = f["lk.response.ttft"].parse().unwrap();
    assert!((ttft - 0.2).abs() < 0.01, "ttft {ttft}");
    assert!(f.contains_key("gen_ai.usage.output_tokens"));
    assert_eq!(f["lk.cancelled"], "false");

    let tts = recorder.named("tts_request");
    assert_eq!(tts.len(), 1);
    let f = &tts[0].1.fields;
    assert_eq!(
        recorder.parent_name(&tts[0].1).as_deref(),
        Some("agent_turn")
    );
    let ttfb: f64 = f["lk.response.ttfb"].parse().unwrap();
    assert!((ttfb - 0.1).abs() < 0.05, "ttfb {ttfb}");

    let speaking = recorder.named("agent_speaking");
    assert_eq!(speaking.len(), 1);
    assert_eq!(speaking[0].1.fields["lk.speech_id"], speech_id);
    assert_eq!(
        recorder.parent_name(&speaking[0].1).as_deref(),
        Some("agent_turn")
    );

    // No audio and no secrets: every attribute is short.
    for (_, s) in recorder.spans() {
        for v in s.fields.values() {
            assert!(v.len() < 200, "{v}");
        }
    }
}

/// Two user turns: the first answered with a tool call then text, the second with text.
async fn tool_session(
    record: bool,
) -> (
    AgentSession,
    Option<livekit_agents::voice::ReportHandle>,
    AudioInputSender,
) {
    use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
    let speeches = vec![
        UserSpeech::new(0.5, 1.5, "What's the weather?"),
        UserSpeech::new(6.0, 7.0, "Thanks"),
    ];
    let mut options = SessionOptions::default().without_user_away_timeout();
    options.turn_handling.preemptive_generation.enabled = false;
    let weather = FunctionTool::raw(
        "get_weather",
        "The weather.",
        serde_json::json!({"type": "object", "properties": {}}),
        |_ctx: RunContext, _a: serde_json::Value| async move { Ok::<_, ToolError>("sunny") },
    );
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches.clone())))
        .stt(Arc::new(FakeStt::new(speeches)))
        .llm(Arc::new(FakeLlm::new(vec![
            FakeLlmResponse::tool_call("get_weather", "{}", ms(150)),
            FakeLlmResponse::text("It is sunny.", ms(200)),
            FakeLlmResponse::text("You're welcome.", ms(200)),
        ])))
        .tts(Arc::new(FakeTts::new(ms(100), ms(800))))
        .options(options)
        .build();
    let report = record.then(|| session.record_report());
    let (audio, input) = audio_input_channel();
    session
        .start(
            Agent::builder()
                .instructions("You are a weather bot.")
                .id("weather_agent")
                .tool(weather)
                .build(),
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(MemoryAudioOutput::new())),
                text_output: None,
            },
        )
        .await
        .unwrap();
    (session, report, audio)
}

#[tokio::test(start_paused = true)]
async fn session_report_has_history_events_turn_metrics_usage_and_close_reason() {
    let (session, report, _audio) = tool_session(true).await;
    let report_handle = report.unwrap();
    let hooked: Arc<Mutex<Option<SessionReport>>> = Arc::default();
    let sink = hooked.clone();
    let _hook = session.on_session_end(move |r| *sink.lock() = Some(r));
    tokio::time::sleep(Duration::from_secs(12)).await;
    session.close().await;
    let r = report_handle.wait().await.expect("report");
    tokio::time::sleep(ms(10)).await;
    // The hook got the report too (registered after start: it missed the first events).
    let from_hook = hooked.lock().clone().expect("on_session_end ran");
    assert_eq!(from_hook.chat_history, r.chat_history);
    assert_eq!(from_hook.close_reason, r.close_reason);
    assert!(from_hook.events.len() < r.events.len());

    assert_eq!(r.close_reason.as_deref(), Some("user_initiated"));
    assert_eq!(r.close_error, None);
    assert_eq!(r.user_turns, 2);
    assert_eq!(r.agents.len(), 1);
    assert_eq!(r.agents[0].id, "weather_agent");
    assert_eq!(r.options["max_tool_steps"], 3);
    assert_eq!(r.errors["llm"], 0);
    // History: user, tool call, tool output, agent, user, agent.
    let kinds: Vec<String> = r
        .chat_history
        .items()
        .iter()
        .map(|i| match i {
            livekit_agents::llm::ChatItem::Message(m) => {
                format!("{:?}:{}", m.role, m.text_content().unwrap_or_default())
            }
            livekit_agents::llm::ChatItem::FunctionCall(c) => format!("call:{}", c.name),
            livekit_agents::llm::ChatItem::FunctionCallOutput(o) => format!("output:{}", o.output),
            _ => "other".into(),
        })
        .filter(|k| !k.starts_with("System"))
        .collect();
    assert_eq!(
        kinds,
        [
            "User:What's the weather?",
            "call:get_weather",
            "output:sunny",
            "Assistant:It is sunny.",
            "User:Thanks",
            "Assistant:You're welcome."
        ]
    );
    // Every event has created_at and an offset; offsets never go back except for the
    // back-dated user_state_changed(listening).
    assert!(r.events.iter().all(|e| e.created_at > 1.0e9));
    assert_eq!(r.events.last().unwrap().kind, "close");
    assert!(r.events.iter().all(|e| e.kind != "metrics_collected"));
    let listening: Vec<f64> = r
        .events
        .iter()
        .filter(|e| e.kind == "user_state_changed" && e.data["new_state"] == "listening")
        .map(|e| e.offset)
        .collect();
    assert_eq!(listening.len(), 2);
    assert!((listening[0] - 1.5).abs() < 0.01, "{listening:?}");
    assert!((listening[1] - 7.0).abs() < 0.01, "{listening:?}");
    assert!(r.events.iter().any(|e| e.kind == "function_tools_executed"
        && e.data["function_calls"][0]["name"] == "get_weather"));
    // Metrics per turn: the first user turn's speech made two LLM requests (tool, then text).
    assert!(r.turns.len() >= 2, "{:#?}", r.turns);
    let first = &r.turns[0];
    assert!((first.llm_ttft.unwrap() - 0.15).abs() < 0.01, "{first:?}");
    assert!(first.end_of_utterance_delay.is_some(), "{first:?}");
    assert!(r.turns.iter().any(|t| t.tts_ttfb.is_some()));
    // Usage per model.
    let llm = r.usage.iter().find(|u| u.kind == "llm").unwrap();
    assert_eq!(llm.requests, 3);
    let tts = r.usage.iter().find(|u| u.kind == "tts").unwrap();
    assert!(tts.requests >= 2);
    assert!(tts.characters_count > 0);
    // JSON: the reference's keys.
    let json = r.to_json();
    for key in [
        "job_id",
        "room_id",
        "room",
        "events",
        "options",
        "chat_history",
        "timestamp",
        "usage",
        "close_reason",
        "user_turns",
        "errors",
        "started_at",
        "duration",
        "turns",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["events"][0]["type"], r.events[0].kind.as_str());
}

#[tokio::test(start_paused = true)]
async fn tool_calls_get_function_tool_spans_under_their_speech() {
    let recorder = spans::Recorder::default();
    let _guard = recorder.install();
    let (session, _, _audio) = tool_session(false).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    session.close().await;
    let tools = recorder.named("function_tool");
    assert_eq!(tools.len(), 1, "{:?}", recorder.spans());
    let f = &tools[0].1.fields;
    assert_eq!(f["lk.function_tool.name"], "get_weather");
    assert_eq!(f["lk.function_tool.is_error"], "false");
    assert_eq!(
        recorder.parent_name(&tools[0].1).as_deref(),
        Some("agent_turn")
    );
    let turn_ids: Vec<String> = recorder
        .named("agent_turn")
        .iter()
        .map(|(_, s)| s.fields["lk.speech_id"].clone())
        .collect();
    assert!(turn_ids.contains(&f["lk.speech_id"]));
}

#[tokio::test(start_paused = true)]
async fn transcripts_are_on_spans_only_when_enabled() {
    let recorder = spans::Recorder::default();
    let _guard = recorder.install();
    let s = scripted_session().await;
    s.session.set_trace_content(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.session.close().await;
    let turns = recorder.named("user_turn");
    assert_eq!(turns[0].1.fields["lk.pii.user_transcript"], "Hello there");
}

#[cfg(feature = "server")]
#[tokio::test(start_paused = true)]
async fn console_writes_the_session_report_to_a_file() {
    use livekit_agents::cli::{run_console, ConsoleOptions};
    use livekit_agents::worker::{JobContext, WorkerOptions};

    // The process's global subscriber is the span recorder's (else the console would install
    // one first).
    let _spans = spans::Recorder::default().install();

    #[derive(Clone, Default)]
    struct Sink;
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let dir = tempfile::Builder::new()
        .prefix("lk-report-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("report.json");
    let llm = FakeLlm::new(vec![FakeLlmResponse::text("Hi there!", ms(300))]);
    let tts = FakeTts::new(ms(200), Duration::from_secs(1));
    let opts = WorkerOptions::new(move |ctx: JobContext| {
        let (llm, tts) = (llm.clone(), tts.clone());
        async move {
            let session = AgentSession::builder()
                .llm(Arc::new(llm))
                .tts(Arc::new(tts))
                .build();
            let io = ctx.session_io(&session).await?;
            session
                .start(Agent::new("You are a test agent."), io)
                .await?;
            Ok(())
        }
    });
    run_console(
        opts,
        ConsoleOptions::default()
            .with_text(true)
            .with_text_input(Box::new(std::io::Cursor::new(b"hello\n".to_vec())))
            .with_display(Box::new(Sink))
            .with_report(path.clone()),
    )
    .await
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(json["job_id"].as_str().unwrap().starts_with("console-job-"));
    assert_eq!(json["room"], "console-room");
    assert_eq!(json["user_turns"], 1);
    assert!(json["close_reason"].is_string());
    let items = json["chat_history"]["items"].as_array().unwrap();
    let texts: Vec<String> = items
        .iter()
        .filter(|i| i["type"] == "message" && i["role"] != "system")
        .map(|i| {
            format!(
                "{}:{}",
                i["role"].as_str().unwrap(),
                i["content"][0]["text"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(texts, ["user:hello", "assistant:Hi there!"]);
    assert!(json["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["created_at"].as_f64().unwrap() > 1.0e9));
}

/// Runs of non-zero samples as `(start, end)` seconds.
fn runs(samples: &[i16], rate: u32) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, s) in samples.iter().enumerate() {
        match (start, *s != 0) {
            (None, true) => start = Some(i),
            (Some(b), false) => {
                out.push((b as f64 / rate as f64, i as f64 / rate as f64));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(b) = start {
        out.push((b as f64 / rate as f64, samples.len() as f64 / rate as f64));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn recording_has_the_user_and_what_the_agent_actually_played() {
    use livekit_agents::audio::AudioFrame;
    use livekit_agents::telemetry::recording::{CallRecorder, RecordingOptions};

    // The user speaks at 0.5-1.5 s, then interrupts the 5 s reply at 3.0-4.5 s.
    let speeches = vec![
        UserSpeech::new(0.5, 1.5, "Hello there"),
        UserSpeech::new(3.0, 4.5, "Wait, stop"),
    ];
    let mut options = SessionOptions::default()
        .without_user_away_timeout()
        // The interruption at 3.0 s falls inside the default 3 s AEC warm-up.
        .with_aec_warmup_duration(livekit_agents::voice::AecWarmup::Off);
    options.turn_handling.preemptive_generation.enabled = false;
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches.clone())))
        .stt(Arc::new(FakeStt::new(speeches.clone())))
        .llm(Arc::new(FakeLlm::new(vec![
            FakeLlmResponse::text("Let me tell you a long story about the sea.", ms(200)),
            FakeLlmResponse::text("OK.", ms(200)),
        ])))
        .tts(Arc::new(
            FakeTts::new(ms(100), Duration::from_secs(5)).with_amplitude(1000),
        ))
        .options(options)
        .build();
    let recorder = CallRecorder::new(RecordingOptions::default());
    let report = session.record_report_at(recorder.origin());
    let (audio, input) = audio_input_channel();
    let output = MemoryAudioOutput::new().with_retention(Duration::MAX);
    let io = recorder.wrap_io(SessionIo {
        audio_input: Some(input),
        audio_output: Some(Arc::new(output.clone())),
        text_output: None,
    });
    session
        .start(Agent::new("You are a storyteller."), io)
        .await
        .unwrap();
    let t0 = recorder.origin();
    // The user's microphone: 10 ms frames at 16 kHz, loud while speaking.
    let mic = tokio::spawn(async move {
        for i in 0..1200u32 {
            let t = f64::from(i) * 0.01;
            let loud = speeches.iter().any(|s| t >= s.start && t < s.end);
            let mut frame = AudioFrame::silence(16_000, 1, 160);
            if loud {
                frame.data.fill(2000);
            }
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(t + 0.01)).await;
            if !audio.send(frame) {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(12)).await;
    session.close().await;
    mic.abort();
    let report = report.wait().await.unwrap();

    let rate = recorder.sample_rate();
    let (user, agent) = recorder.tracks();
    assert_eq!(user.len(), agent.len());
    let user_runs = runs(&user, rate);
    assert_eq!(user_runs.len(), 2, "{user_runs:?}");
    for ((b, e), s) in user_runs.iter().zip([(0.5, 1.5), (3.0, 4.5)]) {
        assert!(
            (b - s.0).abs() < 0.02 && (e - s.1).abs() < 0.02,
            "{user_runs:?}"
        );
    }

    // The agent track holds what the output played: the first reply cut where playout
    // stopped, then the second reply.
    let played = output.played();
    let mut segments: Vec<(f64, f64)> = Vec::new();
    for f in &played {
        let b = f.at.duration_since(t0).as_secs_f64();
        let e = b + f.frame.duration_secs();
        match segments.last_mut() {
            Some(last) if (b - last.1).abs() < 0.001 => last.1 = e,
            _ => segments.push((b, e)),
        }
    }
    let agent_runs = runs(&agent, rate);
    assert_eq!(
        agent_runs.len(),
        segments.len(),
        "{agent_runs:?} vs {segments:?}"
    );
    for (r, s) in agent_runs.iter().zip(&segments) {
        assert!(
            (r.0 - s.0).abs() < 0.02 && (r.1 - s.1).abs() < 0.02,
            "{agent_runs:?} vs {segments:?}"
        );
    }
    let first = agent_runs[0];
    assert!(
        first.1 - first.0 < 4.0,
        "the interrupted reply was cut: {first:?}"
    );
    assert!(
        first.1 > 3.0 && first.1 < 4.0,
        "cut at the interruption: {first:?}"
    );
    let interrupted = report
        .chat_history
        .items()
        .iter()
        .any(|i| matches!(i, livekit_agents::llm::ChatItem::Message(m) if m.interrupted));
    assert!(interrupted);

    // The report's event offsets are offsets into the recording.
    let speaking: Vec<f64> = report
        .events
        .iter()
        .filter(|e| e.kind == "agent_state_changed" && e.data["new_state"] == "speaking")
        .map(|e| e.offset)
        .collect();
    assert_eq!(speaking.len(), 2, "{speaking:?}");
    assert!(
        (speaking[0] - first.0).abs() < 0.05,
        "{speaking:?} vs {first:?}"
    );

    // The WAV: stereo, user left, agent right.
    let dir = tempfile::Builder::new()
        .prefix("lk-rec-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("call.wav");
    recorder.write_wav(&path).unwrap();
    let mut report = report;
    report.set_recording(&recorder, &path);
    assert_eq!(
        report.audio_recording_path.as_deref(),
        Some(path.to_str().unwrap())
    );
    let started = report.audio_recording_started_at.unwrap();
    assert!(started > 1.0e9);
    assert_eq!(report.to_json()["audio_recording_started_at"], started);
    let mut reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().channels, 2);
    assert_eq!(reader.spec().sample_rate, rate);
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left, user);
    assert_eq!(right, agent);
}

/// `(offset ms, name, detail)` of events, for comparing two runs (ids and wall-clock times
/// differ between runs; order, times on tokio's clock and content must not).
fn event_trace(events: &[TimedSessionEvent], origin: Instant) -> Vec<(u128, String, String)> {
    events
        .iter()
        .map(|e| {
            let detail = match &e.event {
                SessionEvent::ConversationItemAdded { item } => match item {
                    livekit_agents::llm::ChatItem::Message(m) => format!(
                        "{:?}:{}:{}",
                        m.role,
                        m.text_content().unwrap_or_default(),
                        m.interrupted
                    ),
                    livekit_agents::llm::ChatItem::FunctionCall(c) => format!("call:{}", c.name),
                    livekit_agents::llm::ChatItem::FunctionCallOutput(o) => {
                        format!("output:{}", o.output)
                    }
                    _ => "other".into(),
                },
                SessionEvent::AgentStateChanged { new_state, .. } => format!("{new_state:?}"),
                SessionEvent::UserStateChanged { new_state, .. } => format!("{new_state:?}"),
                SessionEvent::UserInputTranscribed { transcript, .. } => transcript.clone(),
                SessionEvent::MetricsCollected { metrics } => format!("{metrics:?}")
                    .split('{')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            (
                e.instant.saturating_duration_since(origin).as_millis(),
                e.event.name().to_string(),
                detail,
            )
        })
        .collect()
}

fn history_trace(h: &livekit_agents::llm::ChatContext) -> Vec<String> {
    h.items()
        .iter()
        .map(|i| match i {
            livekit_agents::llm::ChatItem::Message(m) => format!(
                "{:?}:{}:{}",
                m.role,
                m.text_content().unwrap_or_default(),
                m.interrupted
            ),
            livekit_agents::llm::ChatItem::FunctionCall(c) => {
                format!("call:{}:{}", c.name, c.arguments)
            }
            livekit_agents::llm::ChatItem::FunctionCallOutput(o) => {
                format!("output:{}:{}", o.output, o.is_error)
            }
            _ => "other".into(),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_recorded_session_replays_to_the_same_history_and_events() {
    use livekit_agents::audio::AudioFrame;
    use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
    use livekit_agents::testing::replay::{replay, ReplaySetup, TapeRecorder};

    // A weather turn with a tool call, then the user interrupts the long answer.
    let speeches = vec![
        UserSpeech::new(0.5, 1.5, "What's the weather?"),
        UserSpeech::new(4.0, 5.0, "Stop, thanks"),
    ];
    let mut options = SessionOptions::default().without_user_away_timeout();
    options.turn_handling.preemptive_generation.enabled = false;
    let make_agent = || {
        let weather = FunctionTool::raw(
            "get_weather",
            "The weather.",
            serde_json::json!({"type": "object", "properties": {}}),
            |_ctx: RunContext, _a: serde_json::Value| async move { Ok::<_, ToolError>("sunny") },
        );
        Agent::builder()
            .instructions("You are a weather bot.")
            .id("weather_agent")
            .tool(weather)
            .build()
    };
    let vad: Arc<dyn livekit_agents::vad::Vad> = Arc::new(FakeVad::new(speeches.clone()));
    let tape = TapeRecorder::new();
    let origin = Instant::now();
    let session = AgentSession::builder()
        .vad(vad.clone())
        .stt(tape.stt(Arc::new(FakeStt::new(speeches.clone()))))
        .llm(tape.llm(Arc::new(FakeLlm::new(vec![
            FakeLlmResponse::tool_call("get_weather", "{}", ms(150)),
            FakeLlmResponse::text("It is sunny and warm all day long by the sea.", ms(200)),
            FakeLlmResponse::text("You're welcome.", ms(250)),
        ]))))
        .tts(tape.tts(Arc::new(
            FakeTts::new(ms(100), Duration::from_secs(4)).with_amplitude(500),
        )))
        .options(options.clone())
        .build();
    let recorded: Arc<Mutex<Vec<TimedSessionEvent>>> = Arc::default();
    let mut rx = session.timed_events();
    let sink = recorded.clone();
    tokio::spawn(async move {
        while let Some(Ok(ev)) = rx.recv().await {
            sink.lock().push(ev);
        }
    });
    let (audio, input) = audio_input_channel();
    let output = MemoryAudioOutput::new();
    session
        .start(
            make_agent(),
            SessionIo {
                audio_input: Some(tape.wrap_input(input)),
                audio_output: Some(Arc::new(output.clone())),
                text_output: None,
            },
        )
        .await
        .unwrap();
    let mic_speeches = speeches.clone();
    let mic = tokio::spawn(async move {
        for i in 0..1200u32 {
            let t = f64::from(i) * 0.01;
            let mut frame = AudioFrame::silence(16_000, 1, 160);
            if mic_speeches.iter().any(|s| t >= s.start && t < s.end) {
                frame.data.fill(2000);
            }
            tokio::time::sleep_until(origin + Duration::from_secs_f64(t + 0.01)).await;
            if !audio.send(frame) {
                break;
            }
        }
    });
    tokio::time::sleep_until(origin + Duration::from_secs(12)).await;
    session.close().await;
    mic.abort();
    tokio::task::yield_now().await;
    let recorded_events = event_trace(&recorded.lock(), origin);
    let recorded_history = history_trace(&session.history());
    assert!(
        recorded_history.iter().any(|h| h.ends_with(":true")),
        "the scenario has an interrupted reply: {recorded_history:#?}"
    );
    let tape = tape.tape();
    assert_eq!(tape.llm.len(), 3);
    assert!(!tape.user_audio.is_empty());

    let mut setup = ReplaySetup::new(Some(vad), Duration::from_secs(12));
    setup.options = options;
    let again = replay(&tape, make_agent(), setup).await;
    assert_eq!(history_trace(&again.history), recorded_history);
    assert_eq!(event_trace(&again.events, again.origin), recorded_events);
    assert_eq!(again.output.played_duration(), output.played_duration());
}

/// What a recorded or replayed run is compared on.
type Traces = (Vec<String>, Vec<(u128, String, String)>, Duration);

/// The weather scenario of the replay test, recorded through `AgentSessionBuilder::record_tape`
/// (as production does) and saved to `path`; returns what it did.
async fn record_weather_call_to(path: &std::path::Path) -> Traces {
    use livekit_agents::audio::AudioFrame;
    use livekit_agents::testing::replay::TapeRecorder;

    let speeches = weather_speeches();
    let tape = TapeRecorder::new();
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches.clone())))
        .stt(Arc::new(FakeStt::new(speeches.clone())))
        .llm(Arc::new(FakeLlm::new(vec![
            FakeLlmResponse::tool_call("get_weather", "{}", ms(150)),
            FakeLlmResponse::text("It is sunny and warm all day long by the sea.", ms(200)),
            FakeLlmResponse::text("You're welcome.", ms(250)),
        ])))
        .tts(Arc::new(
            FakeTts::new(ms(100), Duration::from_secs(4)).with_amplitude(500),
        ))
        .options(weather_options())
        .record_tape(&tape)
        .build();
    let recorded: Arc<Mutex<Vec<TimedSessionEvent>>> = Arc::default();
    let mut rx = session.timed_events();
    let sink = recorded.clone();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            sink.lock().push(ev.expect("the test reads every event"));
        }
    });
    let (saved_tx, saved) = tokio::sync::oneshot::channel();
    {
        let tape = tape.clone();
        let path = path.to_owned();
        session.on_session_end(move |_report| {
            tape.tape().save(path).unwrap();
            let _ = saved_tx.send(());
        });
    }
    let origin = Instant::now();
    let (audio, input) = audio_input_channel();
    let output = MemoryAudioOutput::new();
    session
        .start(
            weather_agent(),
            SessionIo {
                // Not wrapped here: the session records its input itself.
                audio_input: Some(input),
                audio_output: Some(Arc::new(output.clone())),
                text_output: None,
            },
        )
        .await
        .unwrap();
    let mic = tokio::spawn(async move {
        for i in 0..1200u32 {
            let t = f64::from(i) * 0.01;
            let mut frame = AudioFrame::silence(16_000, 1, 160);
            if speeches.iter().any(|s| t >= s.start && t < s.end) {
                frame.data.fill(2000);
            }
            tokio::time::sleep_until(origin + Duration::from_secs_f64(t + 0.01)).await;
            if !audio.send(frame) {
                break;
            }
        }
    });
    tokio::time::sleep_until(origin + Duration::from_secs(12)).await;
    session.close().await;
    mic.abort();
    // The report hook (which saves the tape) runs on the close event.
    saved.await.unwrap();
    tokio::task::yield_now().await;
    let events = recorded.lock().clone();
    (
        history_trace(&session.history()),
        event_trace(&events, origin),
        output.played_duration(),
    )
}

fn weather_speeches() -> Vec<UserSpeech> {
    vec![
        UserSpeech::new(0.5, 1.5, "What's the weather?"),
        UserSpeech::new(4.0, 5.0, "Stop, thanks"),
    ]
}

fn weather_options() -> SessionOptions {
    let mut options = SessionOptions::default().without_user_away_timeout();
    options.turn_handling.preemptive_generation.enabled = false;
    options
}

fn weather_agent() -> Agent {
    use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
    let weather = FunctionTool::raw(
        "get_weather",
        "The weather.",
        serde_json::json!({"type": "object", "properties": {}}),
        |_ctx: RunContext, _a: serde_json::Value| async move { Ok::<_, ToolError>("sunny") },
    );
    Agent::builder()
        .instructions("You are a weather bot.")
        .id("weather_agent")
        .tool(weather)
        .build()
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// A production-style recording (the session records itself) saved to a file, loaded by a
/// fresh runtime that shares nothing with the recording one, replays to the same history,
/// events and played audio.
#[test]
fn a_tape_saved_to_a_file_replays_the_same_call_in_a_fresh_runtime() {
    use livekit_agents::testing::replay::{replay, ReplaySetup, SessionTape};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weather.lktape");
    let (history, events, played) = paused_runtime().block_on(record_weather_call_to(&path));
    assert!(
        history.iter().any(|h| h.ends_with(":true")),
        "the scenario has an interrupted reply: {history:#?}"
    );

    let again = paused_runtime().block_on(async {
        let tape = SessionTape::load(&path).unwrap();
        assert!(!tape.truncated);
        assert_eq!(tape.llm.len(), 3);
        assert_eq!(tape.llm_info.as_ref().unwrap().label, "fake.LLM");
        // The call lasted until its close, 12 s after the start.
        assert_eq!(tape.duration, Duration::from_secs(12));
        let mut setup = ReplaySetup::for_tape(
            &tape,
            Some(Arc::new(FakeVad::new(weather_speeches())) as Arc<dyn livekit_agents::vad::Vad>),
        );
        setup.options = weather_options();
        replay(&tape, weather_agent(), setup).await
    });
    assert_eq!(history_trace(&again.history), history);
    assert_eq!(event_trace(&again.events, again.origin), events);
    assert_eq!(again.output.played_duration(), played);
}

/// A recorder with a small budget stops growing and says so; the saved tape keeps the flag.
#[tokio::test(start_paused = true)]
async fn a_full_tape_is_marked_truncated() {
    use livekit_agents::audio::AudioFrame;
    use livekit_agents::testing::replay::{SessionTape, TapeRecorder};

    let tape = TapeRecorder::with_max_bytes(10_000);
    let (audio, input) = audio_input_channel();
    let mut input = tape.wrap_input(input).into_stream();
    for _ in 0..100 {
        audio.send(AudioFrame::silence(16_000, 1, 160));
        futures::StreamExt::next(&mut input).await.unwrap();
    }
    let recorded = tape.tape();
    assert!(recorded.truncated);
    assert!(
        recorded.user_audio.len() < 100,
        "{}",
        recorded.user_audio.len()
    );
    let mut bytes = Vec::new();
    recorded.write_to(&mut bytes).unwrap();
    assert!(SessionTape::read_from(bytes.as_slice()).unwrap().truncated);
}

/// The latency layer turns a session's spans into one `TurnLatency` per agent turn: the user
/// turn's end-of-turn delay, the LLM's ttft and the TTS's ttfb as the spans recorded them, and
/// the first frame after them.
#[tokio::test(start_paused = true)]
async fn the_latency_layer_times_each_turn_from_the_spans() {
    use livekit_agents::telemetry::latency;

    // The global subscriber (the span recorder's) has the latency layer; other tests' sessions
    // publish their turns too: this session's are picked by speech id.
    let _spans = spans::Recorder::default().install();
    let mut turns = latency::subscribe();
    let s = scripted_session().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.session.close().await;
    tokio::task::yield_now().await;
    let speeches: Vec<String> = s
        .timed
        .lock()
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::SpeechCreated { speech_handle, .. } => {
                Some(speech_handle.id().to_string())
            }
            _ => None,
        })
        .collect();
    let mut mine = Vec::new();
    loop {
        match turns.try_recv() {
            Ok(turn) if speeches.contains(&turn.speech_id) => mine.push(turn),
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    assert_eq!(mine.len(), 1, "one agent turn: {mine:#?}");
    let turn = mine.remove(0);
    assert!(turn.from_user_speech, "{turn:?}");
    assert!(!turn.interrupted);
    // The scripted LLM answers after 200 ms, the TTS after 100 ms.
    assert_eq!(turn.llm_ttft, Some(ms(200)), "{turn:?}");
    assert_eq!(turn.tts_ttfb, Some(ms(100)), "{turn:?}");
    let eou = turn.end_of_turn.unwrap();
    let llm = turn.llm_first_token.unwrap();
    let tts = turn.tts_first_byte.unwrap();
    let frame = turn.first_frame.unwrap();
    // Preemptive generation is off here: each stage follows the previous one.
    assert!(eou <= llm && llm <= tts && tts <= frame, "{turn:?}");
    assert!(llm >= ms(200) && tts >= llm + ms(100), "{turn:?}");
    // Measured from when the user stopped speaking, the first frame is the Turn metrics'
    // end-to-end latency.
    let e2e: Vec<Duration> = s
        .timed
        .lock()
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::MetricsCollected {
                metrics: livekit_agents::metrics::AgentMetrics::Turn(m),
            } => Some(m.e2e_latency),
            _ => None,
        })
        .collect();
    assert_eq!(e2e, [frame], "{turn:?}");
    let line = turn.summary();
    assert!(
        line.starts_with("eou ")
            && line.contains("| llm ttft 0.200 s | tts ttfb 0.100 s | first frame "),
        "{line}"
    );
}
