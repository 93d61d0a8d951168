//! Basic voice agent: the classic STT → LLM → TTS pipeline with one function tool.
//!
//! - Deepgram speech-to-text (nova-3), OpenAI LLM (gpt-4o-mini), Cartesia text-to-speech
//!   (sonic-3), Silero VAD (loaded once per process in prewarm) and LiveKit's English
//!   end-of-turn model.
//! - One tool, `lookup_weather`, with typed arguments (its JSON schema comes from the struct).
//!   The weather service is slow (simulated: 2 s), so the tool says a filler ("Let me check
//!   the weather…") if the answer takes more than half a second (`RunContext::with_filler`).
//! - The agent greets the user when the session starts.
//! - Background audio: a quiet office ambience throughout, and keyboard typing while the agent
//!   thinks (e.g. during the tool call); built-in clips synthesised by the framework. In a room
//!   it is the `background_audio` track; in `console --output-wav FILE` it is mixed into the
//!   file.
//!
//! Environment: `DEEPGRAM_API_KEY`, `OPENAI_API_KEY`, `CARTESIA_API_KEY`; for `dev`, `start` and
//! `connect` also `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room` feature).
//! Model files: run `cargo run --example basic_agent -- download-files` once (Silero VAD, the
//! turn detector and ONNX Runtime).
//!
//! ```text
//! cargo run --example basic_agent -- console --text
//! cargo run --example basic_agent --features room -- dev
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use livekit_agents::background_audio::{AudioConfig, BackgroundAudioPlayer, BuiltinAudioClip};
use livekit_agents::cli;
use livekit_agents::llm::{function_tool, Filler, RunContext};
use livekit_agents::voice::{Agent, AgentSession, ReplyOptions};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_cartesia as cartesia;
use livekit_plugins_deepgram as deepgram;
use livekit_plugins_openai as openai;
use livekit_plugins_turn_detector::EnglishModel;

/// Look up the current weather for a location.
///
/// # Arguments
///
/// * `location` - The city or place to look up, e.g. "Paris".
#[function_tool]
async fn lookup_weather(ctx: RunContext, location: String) -> String {
    // The doc comment above is what the model reads. A real agent would ask a weather service;
    // it can take a few seconds, so a filler keeps the user informed meanwhile.
    tracing::info!(%location, "looking up the weather");
    let filler =
        Filler::text("Let me check the weather for you.").delay(Duration::from_millis(500));
    ctx.with_filler(filler, async {
        tokio::time::sleep(WEATHER_SERVICE_LATENCY).await;
        format!("It is sunny with a temperature of 21 degrees Celsius in {location}.")
    })
    .await
}

/// How long the (simulated) weather service takes to answer.
const WEATHER_SERVICE_LATENCY: Duration = Duration::from_secs(2);

#[cfg_attr(test, allow(dead_code))]
async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    // Provider clients first: a missing API key fails here with one line naming the variable.
    let stt = deepgram::Stt::new(deepgram::SttOptions::default())?;
    let llm = openai::Llm::new(openai::LlmOptions::default())?;
    let tts = cartesia::Tts::new(cartesia::TtsOptions::default())?;
    // Loaded once per process and shared by every session (the files come from `download-files`).
    let turn_detector = EnglishModel::load().await?;

    let session = AgentSession::builder()
        .stt(Arc::new(stt))
        .llm(Arc::new(llm))
        .tts(Arc::new(tts))
        .vad(examples::shared_vad(&ctx)?)
        .turn_detector(Arc::new(turn_detector))
        .build();

    let agent = Agent::builder()
        .instructions(
            "You are a friendly voice assistant. Keep your answers short and conversational, \
             without markdown or emojis. Use the lookup_weather tool when asked about the weather.",
        )
        .tool(lookup_weather())
        .build();

    // Console ports in `console` mode, the room's tracks in `dev`/`start`/`connect`.
    let io = ctx.session_io(&session).await?;
    session.start(agent, io).await?;

    // Ambience under the whole conversation; typing while thinking (one of two clips, or
    // nothing 10 % of the time, so it does not sound mechanical).
    let background = BackgroundAudioPlayer::new()
        .with_ambient_sound(AudioConfig::new(BuiltinAudioClip::OfficeAmbience).volume(0.8))
        .with_thinking_sound(vec![
            AudioConfig::new(BuiltinAudioClip::KeyboardTyping)
                .volume(0.8)
                .probability(0.6),
            AudioConfig::new(BuiltinAudioClip::KeyboardTyping2)
                .volume(0.7)
                .probability(0.3),
        ]);
    background.start_in_job(&ctx, &session).await?;
    // Stop it (and unpublish its track) when the job ends.
    ctx.add_shutdown_callback(move |_reason| async move { background.close().await });
    session.generate_reply(
        ReplyOptions::default().with_instructions("Greet the user and offer your help."),
    )?;
    Ok(())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    // So that `download-files` knows which model files these plugins need.
    livekit_plugins_silero::register_files();
    livekit_plugins_turn_detector::register_files();
    cli::run_app(WorkerOptions::new(entrypoint).with_prewarm(examples::prewarm_vad))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use livekit_agents::io::memory::MemoryTextOutput;
    use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
    use livekit_agents::voice::{Agent, AgentSession, SessionIo};

    #[tokio::test(start_paused = true)]
    async fn the_slow_weather_tool_says_a_filler_first() {
        let ttft = Duration::from_millis(100);
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::tool_call("lookup_weather", r#"{"location":"Paris"}"#, ttft),
            FakeLlmResponse::text("It is sunny and 21 degrees in Paris.", ttft),
        ]);
        let session = AgentSession::builder().llm(Arc::new(llm)).build();
        let text = MemoryTextOutput::new();
        session
            .start(
                Agent::builder().tool(super::lookup_weather()).build(),
                SessionIo {
                    text_output: Some(Arc::new(text.clone())),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let result = session.run("What's the weather in Paris?").await.unwrap();
        result.expect().contains_function_call("lookup_weather");
        assert_eq!(
            text.segments(),
            vec![
                "Let me check the weather for you.".to_string(),
                "It is sunny and 21 degrees in Paris.".to_string()
            ]
        );
    }
}
