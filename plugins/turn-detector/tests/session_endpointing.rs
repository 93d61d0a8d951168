//! The session's end-of-turn decision driven by the real (tiny, generated) English model: a turn
//! the model finds finished commits after `min_delay`, one it finds unfinished waits
//! `max_delay`.
//!
//! The session runs on tokio's paused clock with scripted fake VAD/STT/LLM/TTS. The model's own
//! inference threads are invisible to that clock (it would jump ahead while they compute), so
//! the test drives the model through `spawn_blocking`, during which tokio does not auto-advance
//! a paused clock. That keeps the times exact without touching the plugin's threading.
//!
//! Needs ONNX Runtime (`ORT_DYLIB_PATH` or `cargo xtask download-files`); prints SKIP otherwise.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livekit_agents::io::memory::{audio_input_channel, MemoryAudioOutput};
use livekit_agents::llm::{ChatContext, ChatItem, ChatRole};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeVad, UserSpeech};
use livekit_agents::turn_detector::{TurnDetector, TurnDetectorError};
use livekit_agents::voice::{Agent, AgentSession, SessionEvent, SessionIo, SessionOptions};
use livekit_plugins_turn_detector::{EnglishModel, TurnDetectorOptions};
use tokio::time::Instant;

/// The real model, predicting on tokio's blocking pool (see the module docs).
struct OnBlockingPool(EnglishModel);

#[async_trait]
impl TurnDetector for OnBlockingPool {
    fn label(&self) -> String {
        self.0.label()
    }

    async fn predict_end_of_turn(
        &self,
        chat_ctx: &ChatContext,
        _language: Option<&str>,
    ) -> Result<f32, TurnDetectorError> {
        let model = self.0.clone();
        let chat_ctx = chat_ctx.clone();
        tokio::task::spawn_blocking(move || model.predict_blocking(&chat_ctx))
            .await
            .map_err(|e| TurnDetectorError::Inference {
                reason: e.to_string(),
            })?
            .map(|p| p.probability)
    }

    fn supports_language(&self, language: Option<&str>) -> bool {
        self.0.supports_language(language)
    }

    fn unlikely_threshold(&self, language: Option<&str>) -> Option<f32> {
        self.0.unlikely_threshold(language)
    }
}

/// When (seconds after start) the user's message was committed to the history.
async fn commit_time(transcript: &str) -> Option<f64> {
    let dir = common::testdata().join("v1.2.2-en");
    let model = EnglishModel::load_with(TurnDetectorOptions {
        model_dir: Some(dir),
        ..Default::default()
    })
    .await
    .unwrap();

    let speech = vec![UserSpeech::new(0.5, 2.5, transcript)];
    let mut options = SessionOptions::default();
    options.turn_handling.preemptive_generation.enabled = false;
    options.user_away_timeout = None;
    let session = AgentSession::builder()
        .vad(Arc::new(FakeVad::new(speech.clone())))
        .stt(Arc::new(FakeStt::new(speech)))
        .llm(Arc::new(FakeLlm::new(vec![FakeLlmResponse::text(
            "Sure.",
            Duration::from_millis(100),
        )])))
        .tts(Arc::new(FakeTts::new(
            Duration::from_millis(200),
            Duration::from_millis(500),
        )))
        .turn_detector(Arc::new(OnBlockingPool(model)))
        .options(options)
        .build();
    let mut events = session.events();
    let (_audio, input) = audio_input_channel();
    let t0 = Instant::now();
    session
        .start(
            Agent::new("You take restaurant bookings."),
            SessionIo {
                audio_input: Some(input),
                audio_output: Some(Arc::new(MemoryAudioOutput::new())),
                text_output: None,
            },
        )
        .await
        .unwrap();

    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return None,
            event = events.recv() => {
                if let Some(Ok(SessionEvent::ConversationItemAdded { item: ChatItem::Message(m) })) = event {
                    if m.role == ChatRole::User {
                        return Some(t0.elapsed().as_secs_f64());
                    }
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_finished_turn_commits_after_min_delay() {
    if !common::onnx_runtime() {
        return;
    }
    // The tiny model gives "thanks" a probability of 0.97: above the 0.0289 threshold.
    let t = commit_time("i want a table for two thanks").await.unwrap();
    // Speech ends at 2.5 s; min_delay is 0.5 s.
    assert!((t - 3.0).abs() < 0.02, "committed at {t}");
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_turn_waits_max_delay() {
    if !common::onnx_runtime() {
        return;
    }
    // "and" gives 0.002: below the threshold, so the session waits max_delay (3.0 s).
    let t = commit_time("i want a table for two and").await.unwrap();
    assert!((t - 5.5).abs() < 0.02, "committed at {t}");
}
