//! Background audio mixed into a session's output, on tokio's paused clock with scripted fakes:
//! the thinking sound follows the agent state, the ambient sound plays throughout, and the
//! agent's speech frames are neither delayed nor altered beyond the sample-exact sum.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use livekit_agents::audio::{AudioFrame, AudioMixer};
use livekit_agents::background_audio::{AudioConfig, AudioSource, BackgroundAudioPlayer};
use livekit_agents::io::memory::audio_input_channel;
use livekit_agents::io::PacedAudioOutput;
use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, UserSpeech};
use livekit_agents::voice::*;
use parking_lot::Mutex;
use tokio::time::Instant;

const RATE: u32 = 24_000;
/// The ambient clip's constant sample value, and the thinking clip's.
const AMBIENT: i16 = 7;
const THINKING: i16 = 100;

type Played = Arc<Mutex<Vec<(Duration, AudioFrame)>>>;

fn constant(value: i16, seconds: f64) -> AudioFrame {
    AudioFrame::new(vec![value; (RATE as f64 * seconds) as usize], RATE, 1).unwrap()
}

struct Run {
    played: Played,
    states: Arc<Mutex<Vec<(Duration, AgentState)>>>,
    _session: AgentSession,
    _player: BackgroundAudioPlayer,
}

/// One turn: the user speaks 0.5-2.5 s, the turn commits at 3.0 s, the LLM takes 1.2 s (so the
/// agent thinks 3.0-4.2 s), then 1 s of (silent) speech plays.
async fn run(player: Option<BackgroundAudioPlayer>) -> Run {
    let speeches = vec![UserSpeech::new(0.5, 2.5, "Hello there")];
    let mut options = SessionOptions::default();
    options.turn_handling.preemptive_generation.enabled = false;
    options.user_away_timeout = None;
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speeches.clone())))
        .stt(Arc::new(FakeStt::new(speeches)))
        .llm(Arc::new(FakeLlm::new(vec![FakeLlmResponse::text(
            "Let me check.",
            Duration::from_millis(1200),
        )])))
        .tts(Arc::new(FakeTts::new(
            Duration::ZERO,
            Duration::from_secs(1),
        )))
        .options(options)
        .build();
    let t0 = Instant::now();
    let states: Arc<Mutex<Vec<(Duration, AgentState)>>> = Arc::default();
    let mut events = session.events();
    let log = states.clone();
    tokio::spawn(async move {
        while let Some(Ok(ev)) = events.recv().await {
            if let SessionEvent::AgentStateChanged { new_state, .. } = ev {
                log.lock().push((t0.elapsed(), new_state));
            }
        }
    });
    let played: Played = Arc::default();
    let rec = played.clone();
    let mixer = AudioMixer::new(RATE, 1);
    let output = PacedAudioOutput::new(
        "mixed",
        Some(RATE),
        mixer.sink(move |f: &AudioFrame| rec.lock().push((t0.elapsed(), f.clone()))),
    );
    let (_audio, input) = audio_input_channel();
    session
        .start(
            Agent::new("You are helpful."),
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(output)),
                text_output: None,
            },
        )
        .await
        .unwrap();
    let player = player.unwrap_or_default();
    player.start(mixer, Some(&session)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(_audio);
    Run {
        played,
        states,
        _session: session,
        _player: player,
    }
}

fn player() -> BackgroundAudioPlayer {
    BackgroundAudioPlayer::new()
        .with_ambient_sound(AudioSource::from(constant(AMBIENT, 0.25)))
        .with_thinking_sound(AudioConfig::new(constant(THINKING, 5.0)))
}

#[tokio::test(start_paused = true)]
async fn thinking_sound_follows_the_agent_state_and_ambient_plays_throughout() {
    let r = run(Some(player())).await;
    let states = r.states.lock().clone();
    let at = |s: AgentState| {
        states
            .iter()
            .find(|(_, x)| *x == s)
            .map(|(t, _)| *t)
            .unwrap()
    };
    let thinking = at(AgentState::Thinking);
    let speaking = at(AgentState::Speaking);
    assert_eq!(thinking, Duration::from_millis(3000));
    assert_eq!(speaking, Duration::from_millis(4200));

    let played = r.played.lock().clone();
    // Every sample is the ambient (7) plus the thinking sound (100) or not: exact sums, since
    // the agent's speech is silence here.
    for (t, f) in &played {
        assert!(
            f.data
                .iter()
                .all(|&s| s == AMBIENT || s == AMBIENT + THINKING),
            "unexpected samples at {t:?}"
        );
    }
    let with_thinking: Vec<Duration> = played
        .iter()
        .filter(|(_, f)| f.data.contains(&(AMBIENT + THINKING)))
        .map(|(t, _)| *t)
        .collect();
    let first = *with_thinking.first().unwrap();
    let last = *with_thinking.last().unwrap();
    // Starts with the state (within the 10 ms block the mixer was playing) ...
    assert!(
        first >= thinking && first <= thinking + Duration::from_millis(10),
        "{first:?}"
    );
    // ... and stops when the agent speaks: at most the frame that started the speech overlaps.
    assert!(last <= speaking, "{last:?}");
    assert!(last + Duration::from_millis(20) >= speaking, "{last:?}");
    // The ambient fills the whole 6 s, gaps and speech alike, without a hole.
    let total: Duration = played.iter().map(|(_, f)| f.duration()).sum();
    assert!(total >= Duration::from_millis(5980), "{total:?}");
    for pair in played.windows(2) {
        let (t, f) = &pair[0];
        assert!(pair[1].0 <= *t + f.duration(), "a hole after {t:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn background_audio_does_not_move_the_agent_speech() {
    let speech_times = |played: &[(Duration, AudioFrame)]| -> Vec<Duration> {
        // The agent's frames are the 10 ms ones from the fake TTS (the mixer's own blocks are
        // 10 ms too, so tell them apart by time: speech plays 4.2-5.2 s).
        played
            .iter()
            .filter(|(t, _)| *t >= Duration::from_millis(4200) && *t < Duration::from_millis(5200))
            .map(|(t, _)| *t)
            .collect()
    };
    let with = run(Some(player())).await;
    let without = run(None).await;
    // (The first session closes later, when its input ended: compare the 6 s of the turn.)
    let turn = |r: &Run| -> Vec<(Duration, AgentState)> {
        let states = r.states.lock().clone();
        states
            .into_iter()
            .filter(|(t, _)| *t < Duration::from_secs(6))
            .collect()
    };
    assert_eq!(turn(&with), turn(&without));
    let with = speech_times(&with.played.lock());
    let without = speech_times(&without.played.lock());
    assert_eq!(without.len(), 100);
    // Every speech frame starts at the same instant with the mixer on. The only extra frame
    // allowed is a background block handed out at 4.2 s in the same instant as the first speech
    // frame (whichever task the runtime polled first).
    assert!(without.iter().all(|t| with.contains(t)), "{with:?}");
    assert!(with.len() - without.len() <= 1, "{with:?}");
}

/// `console --output-wav`: the background player started in the job mixes into the file.
#[cfg(feature = "server")]
#[tokio::test(start_paused = true)]
async fn console_output_wav_carries_the_background_mix() {
    use livekit_agents::cli::{run_console, ConsoleOptions};
    use livekit_agents::worker::{JobContext, WorkerOptions};

    let out = std::env::temp_dir().join(format!("lk-bg-console-{}.wav", std::process::id()));
    let opts = WorkerOptions::new(|ctx: JobContext| async move {
        let session = AgentSession::builder()
            .llm(Arc::new(FakeLlm::new(vec![FakeLlmResponse::text(
                "Hi there!",
                Duration::from_millis(300),
            )])))
            .tts(Arc::new(FakeTts::new(
                Duration::from_millis(200),
                Duration::from_secs(1),
            )))
            .build();
        let io = ctx.session_io(&session).await?;
        session
            .start(Agent::new("You are a test agent."), io)
            .await?;
        let player = BackgroundAudioPlayer::new()
            .with_ambient_sound(AudioSource::from(constant(AMBIENT, 0.25)));
        player.start_in_job(&ctx, &session).await?;
        ctx.add_shutdown_callback(move |_| async move { player.close().await });
        Ok(())
    });
    run_console(
        opts,
        ConsoleOptions::default()
            .with_text(true)
            .with_output_wav(out.clone())
            .with_text_input(Box::new(std::io::Cursor::new(b"hello\n".to_vec())))
            .with_display(Box::new(std::io::sink())),
    )
    .await
    .unwrap();
    let mut reader = hound::WavReader::open(&out).unwrap();
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    std::fs::remove_file(&out).unwrap();
    // More than the 1 s reply: the ambient also played before and after it, and every sample
    // (the fake's silent speech included) carries it, exactly.
    assert!(samples.len() > RATE as usize * 3 / 2, "{}", samples.len());
    assert!(samples.iter().all(|&s| s == AMBIENT));
}
