//! Observability on tokio's paused clock with scripted fakes: event time stamps, spans,
//! session reports, recordings and replay.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use livekit_agents::io::memory::{audio_input_channel, AudioInputSender, MemoryAudioOutput};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, UserSpeech};
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
    let mut options = SessionOptions::default();
    options.user_away_timeout = None;
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
    let mut rx = session.subscribe_timed();
    let sink = timed.clone();
    tokio::spawn(async move {
        while let Ok(ev) = rx.recv().await {
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
