//! A session with a cached TTS: a phrase said twice costs one provider request, and a phrase
//! played with `say(text, audio)` from the cache costs none; on tokio's paused clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use livekit_agents::io::memory::{MemoryAudioOutput, MemoryTextOutput};
use livekit_agents::testing::{FakeLlm, FakeTts};
use livekit_agents::tts::{CachedTts, TtsCacheOptions};
use livekit_agents::voice::{Agent, AgentSession, SayOptions, SessionIo};

#[tokio::test(start_paused = true)]
async fn a_cached_phrase_costs_no_provider_request() {
    let provider = FakeTts::new(Duration::from_millis(200), Duration::from_millis(800));
    let tts = CachedTts::new(Arc::new(provider.clone()), TtsCacheOptions::default());
    let session = AgentSession::builder()
        .llm(Arc::new(FakeLlm::new(Vec::new())))
        .tts(Arc::new(tts.clone()))
        .build();
    let output = MemoryAudioOutput::new();
    session
        .start(
            Agent::new("You are a test agent."),
            SessionIo {
                audio_input: None,
                audio_output: Some(Arc::new(output.clone())),
                text_output: Some(Arc::new(MemoryTextOutput::new())),
            },
        )
        .await
        .unwrap();

    let say = |text: &'static str| {
        let handle = session.say(text, SayOptions::default()).unwrap();
        async move { handle.wait_for_playout().await }
    };
    say("Thanks for calling.").await;
    assert_eq!(provider.requests(), 1);
    let first = output.played_duration();
    assert_eq!(first, Duration::from_millis(800));

    // Said again: from the cache, no request, the same audio.
    say("Thanks for calling.").await;
    assert_eq!(provider.requests(), 1);
    assert_eq!(output.played_duration(), first * 2);

    // Pre-synthesized and played through `say(text, audio)`: still no new request.
    tts.presynthesize(["One moment, please."]).await.unwrap();
    assert_eq!(provider.requests(), 2);
    let audio = tts.audio_stream("One moment, please.").await.unwrap();
    let handle = session
        .say(
            "One moment, please.",
            SayOptions::default().with_audio(audio.boxed()),
        )
        .unwrap();
    handle.wait_for_playout().await;
    assert_eq!(provider.requests(), 2);
    assert_eq!(output.played_duration(), first * 3);
    let stats = tts.stats();
    assert_eq!((stats.hits, stats.misses), (2, 2));
}
