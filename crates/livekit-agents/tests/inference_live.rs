//! LiveKit Inference against LiveKit Cloud's real gateway. Runs only with Cloud credentials:
//! `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` and a `LIVEKIT_URL` on `*.livekit.cloud`; otherwise
//! it prints why it skipped. Not run on this project's CI machines (no access to LiveKit Cloud).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use livekit_agents::inference;
use livekit_agents::llm::{ChatContext, ChatRequest, ChatRole, Llm as _};
use livekit_agents::stt::{SpeechEventType, Stt as _};
use livekit_agents::tts::Tts as _;
use livekit_agents::types::ApiConnectOptions;

fn cloud_credentials() -> bool {
    let set = |v: &str| std::env::var(v).is_ok_and(|x| !x.is_empty());
    let cloud = std::env::var("LIVEKIT_URL").is_ok_and(|u| u.contains(".livekit.cloud"));
    if set("LIVEKIT_API_KEY") && set("LIVEKIT_API_SECRET") && cloud {
        true
    } else {
        println!("skipping live LiveKit Inference test: LiveKit Cloud credentials are not set");
        false
    }
}

#[tokio::test]
async fn live_llm_replies() {
    if !cloud_credentials() {
        return;
    }
    let llm = inference::Llm::from_descriptor("openai/gpt-4.1-mini").unwrap();
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "Reply with the single word: pong");
    let out = llm.chat(ChatRequest::new(ctx)).collect().await.unwrap();
    assert!(out.text.to_lowercase().contains("pong"), "{}", out.text);
}

#[tokio::test]
async fn live_tts_then_stt_round_trip() {
    if !cloud_credentials() {
        return;
    }
    let tts =
        inference::Tts::from_descriptor("cartesia/sonic-3:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc")
            .unwrap();
    let audio = tts
        .synthesize("Hello world, this is a test.", ApiConnectOptions::default())
        .collect()
        .await
        .unwrap();
    assert!(
        audio.samples_per_channel > 24_000 / 2,
        "at least half a second of speech"
    );
    let stt = inference::Stt::from_descriptor("deepgram/nova-3:en").unwrap();
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    stream.push_frame(audio);
    stream.end_input();
    let mut text = String::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(40), stream.next_event())
        .await
        .unwrap()
    {
        let ev = ev.unwrap();
        if ev.kind == SpeechEventType::FinalTranscript {
            text.push_str(ev.text());
        }
    }
    assert!(text.to_lowercase().contains("hello"), "{text}");
}
