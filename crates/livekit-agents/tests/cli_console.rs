//! Console mode driven by `--text` and `--input-wav`/`--output-wav` with the fake models of
//! `livekit_agents::testing`, on tokio's paused clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use livekit_agents::cli::{run_console, CliError, ConsoleOptions};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, UserSpeech};
use livekit_agents::voice::{Agent, AgentSession};
use livekit_agents::worker::{JobContext, WorkerOptions};
use parking_lot::Mutex;

/// A display that keeps what the console printed.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().clone()).unwrap()
    }
}

/// A path in a folder that deletes itself with the returned guard (also when the test fails).
fn temp_path(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("lk-console-")
        .tempdir()
        .unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// An agent whose entrypoint builds a session from the given fakes; mode-agnostic, as a real
/// agent would be.
fn agent(llm: FakeLlm, tts: FakeTts, speech: Option<Vec<UserSpeech>>) -> WorkerOptions {
    WorkerOptions::new(move |ctx: JobContext| {
        let (llm, tts, speech) = (llm.clone(), tts.clone(), speech.clone());
        async move {
            let mut builder = AgentSession::builder()
                .llm(Arc::new(llm))
                .tts(Arc::new(tts));
            if let Some(speech) = speech {
                builder = builder
                    .vad(Arc::new(FakeVad::new(speech.clone())))
                    .stt(Arc::new(FakeStt::new(speech)));
            }
            let session = builder.build();
            let io = ctx.session_io(&session).await?;
            session
                .start(Agent::new("You are a test agent."), io)
                .await?;
            Ok(())
        }
    })
}

fn wav_duration(path: &std::path::Path) -> (u32, f64) {
    let reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    (
        spec.sample_rate,
        reader.duration() as f64 / spec.sample_rate as f64,
    )
}

/// The transcript lines of a console run (`user: ...` and `agent: ...`), in order.
fn conversation_lines(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("user:") || l.starts_with("agent:"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn text_mode_runs_turns_in_order_and_writes_the_reply_audio() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::text("Hi there!", Duration::from_millis(300)),
        FakeLlmResponse::text("It is sunny.", Duration::from_millis(300)),
    ]);
    let tts = FakeTts::new(Duration::from_millis(200), Duration::from_secs(1));
    let display = Captured::default();
    let (_tmp_out, out) = temp_path("text-out.wav");
    let report = run_console(
        agent(llm.clone(), tts, None),
        ConsoleOptions::default()
            .with_text(true)
            .with_output_wav(out.clone())
            .with_text_input(Box::new(std::io::Cursor::new(
                b"hello\n\nwhat's the weather?\n".to_vec(),
            )))
            .with_display(Box::new(display.clone())),
    )
    .await
    .unwrap();

    let conversation = conversation_lines(&report.lines);
    assert_eq!(
        conversation,
        [
            "user: hello",
            "agent: Hi there!",
            "user: what's the weather?",
            "agent: It is sunny."
        ],
        "{:#?}",
        report.lines
    );
    assert!(report.lines.iter().any(|l| l == "[state] thinking"));
    assert!(report.lines.iter().any(|l| l == "[state] speaking"));
    assert!(report.lines.last().unwrap().starts_with("[session closed]"));
    // Each turn: LLM time to first token, then TTS time to first byte.
    assert_eq!(report.turn_latencies.len(), 2, "{:#?}", report.lines);
    for latency in &report.turn_latencies {
        assert!(*latency >= Duration::from_millis(500), "{latency:?}");
        assert!(*latency < Duration::from_secs(2), "{latency:?}");
    }
    assert_eq!(llm.requests().len(), 2);
    // The session's metrics reached the worker's /metrics histograms.
    let (count, _) = livekit_agents::worker::metrics::stage_summary("llm_ttft").unwrap();
    assert!(count >= 2, "{count}");
    // The display got the same lines.
    assert!(display.text().contains("agent: It is sunny.\n"));
    // Two replies of 1 s each reached the output file, at the console rate.
    let (rate, secs) = wav_duration(&out);
    assert_eq!(rate, 24_000);
    assert!((secs - 2.0).abs() < 0.05, "{secs}");
}

#[tokio::test(start_paused = true)]
async fn wav_input_mode_answers_and_closes_at_end_of_input() {
    // 3 s of audio; the fake VAD/STT hear "hello" from 0.5 s to 1.5 s.
    let (_tmp_in, input) = temp_path("in.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&input, spec).unwrap();
    for i in 0..48_000 {
        w.write_sample(((i % 100) as i16 - 50) * 100).unwrap();
    }
    w.finalize().unwrap();

    let llm = FakeLlm::new(vec![FakeLlmResponse::text(
        "Hello, human.",
        Duration::from_millis(250),
    )]);
    let tts = FakeTts::new(Duration::from_millis(150), Duration::from_millis(800));
    let (_tmp_out, out) = temp_path("wav-out.wav");
    let report = run_console(
        agent(llm, tts, Some(vec![UserSpeech::new(0.5, 1.5, "hello")])),
        ConsoleOptions::default()
            .with_input_wav(input.clone())
            .with_output_wav(out.clone())
            .with_display(Box::new(Captured::default())),
    )
    .await
    .unwrap();

    let conversation = conversation_lines(&report.lines);
    assert_eq!(
        conversation,
        ["user: hello", "agent: Hello, human."],
        "{:#?}",
        report.lines
    );
    assert_eq!(report.turn_latencies.len(), 1, "{:#?}", report.lines);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.starts_with("[session closed]") && l.contains("InputEnded")),
        "{:#?}",
        report.lines
    );
    let (_, secs) = wav_duration(&out);
    assert!((secs - 0.8).abs() < 0.05, "{secs}");
}

#[tokio::test]
async fn console_input_is_validated() {
    let opts = || {
        agent(
            FakeLlm::new(vec![]),
            FakeTts::new(Duration::ZERO, Duration::ZERO),
            None,
        )
    };
    let err = run_console(
        opts(),
        ConsoleOptions::default().with_input_wav(temp_path("does-not-exist.wav").1),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CliError::Usage { .. }), "{err:?}");
    assert!(err.to_string().contains("no such file"), "{err}");

    #[cfg(not(feature = "console-audio"))]
    {
        let err = run_console(opts(), ConsoleOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--text"), "{err}");
        assert!(err.to_string().contains("console-audio"), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn entrypoint_failure_in_console_is_reported() {
    let opts =
        WorkerOptions::new(|_ctx: JobContext| async { anyhow::bail!("no API key for the LLM") });
    let err = run_console(
        opts,
        ConsoleOptions::default()
            .with_text(true)
            .with_text_input(Box::new(std::io::Cursor::new(Vec::new())))
            .with_display(Box::new(Captured::default())),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CliError::JobFailed { reason: ref e } if e.contains("no API key")),
        "{err:?}"
    );
}

/// `--tape FILE`: the console records the call (the session built in the entrypoint records
/// itself), and the saved tape replays to the same conversation. The `[latency]` lines come
/// from the session's spans, one per turn, with every stage in order.
#[tokio::test(start_paused = true)]
async fn console_tape_records_a_replayable_call_and_latency_comes_from_the_spans() {
    use livekit_agents::testing::replay::{replay, ReplaySetup, SessionTape};

    let (_tmp_in, input) = temp_path("in.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&input, spec).unwrap();
    for i in 0..48_000 {
        w.write_sample(((i % 100) as i16 - 50) * 100).unwrap();
    }
    w.finalize().unwrap();
    let speech = vec![UserSpeech::new(0.5, 1.5, "hello")];
    let llm = FakeLlm::new(vec![FakeLlmResponse::text(
        "Hello, human.",
        Duration::from_millis(250),
    )]);
    let tts = FakeTts::new(Duration::from_millis(150), Duration::from_millis(800));
    let (_tmp_tape, tape_path) = temp_path("call.lktape");
    let (_tmp_out, out) = temp_path("out.wav");
    let report = run_console(
        agent(llm, tts, Some(speech.clone())),
        ConsoleOptions::default()
            .with_input_wav(input)
            .with_output_wav(out)
            .with_tape(tape_path.clone())
            .with_display(Box::new(Captured::default())),
    )
    .await
    .unwrap();
    let conversation = conversation_lines(&report.lines);
    assert_eq!(conversation, ["user: hello", "agent: Hello, human."]);

    // Latency per turn, from the spans.
    assert_eq!(report.turns.len(), 1, "{:#?}", report.lines);
    let turn = &report.turns[0];
    assert!(turn.from_user_speech, "{turn:?}");
    assert_eq!(turn.llm_ttft, Some(Duration::from_millis(250)), "{turn:?}");
    assert_eq!(turn.tts_ttfb, Some(Duration::from_millis(150)), "{turn:?}");
    // The TTS starts once the turn is decided; the LLM may have answered before (preemptive
    // generation is on by default).
    let (eou, llm, tts, frame) = (
        turn.end_of_turn.unwrap(),
        turn.llm_first_token.unwrap(),
        turn.tts_first_byte.unwrap(),
        turn.first_frame.unwrap(),
    );
    assert!(eou <= tts && llm <= tts && tts <= frame, "{turn:?}");
    assert_eq!(report.turn_latencies, [turn.first_frame.unwrap()]);
    let line = report
        .lines
        .iter()
        .find(|l| l.starts_with("[latency]"))
        .unwrap();
    assert!(
        line.starts_with("[latency] eou ")
            && line.contains(" | llm ttft 0.250 s | tts ttfb 0.150 s | first frame "),
        "{line}"
    );

    // The tape: the user's audio and the providers' answers.
    let tape = SessionTape::load(&tape_path).unwrap();
    assert!(!tape.user_audio.is_empty());
    assert_eq!(tape.stt.len(), 1);
    assert_eq!(tape.llm.len(), 1);
    assert!(!tape.tts.is_empty());
    assert!(!tape.truncated);
    let mut setup = ReplaySetup::for_tape(
        &tape,
        Some(Arc::new(FakeVad::new(speech)) as Arc<dyn livekit_agents::vad::Vad>),
    );
    setup.duration += Duration::from_secs(1);
    let again = replay(&tape, Agent::new("You are a test agent."), setup).await;
    let replayed: Vec<String> = again
        .history
        .items()
        .iter()
        .filter_map(|i| match i {
            livekit_agents::llm::ChatItem::Message(m) => Some(format!(
                "{}: {}",
                if m.role == livekit_agents::llm::ChatRole::User {
                    "user"
                } else {
                    "agent"
                },
                m.text_content().unwrap_or_default()
            )),
            _ => None,
        })
        .collect();
    assert_eq!(replayed, conversation);
}
