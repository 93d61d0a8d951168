//! Voice agent on LiveKit Inference: models named by descriptor strings, no provider keys.
//!
//! `AgentSession::builder().stt("deepgram/nova-3:multi").llm("openai/gpt-4.1-mini")
//! .tts("cartesia/sonic-3:VOICE")` resolves each string to a `livekit_agents::inference` model
//! that reaches LiveKit Cloud's gateway with the project's LiveKit API key and secret. A
//! malformed descriptor or missing credentials fail `try_build` with one line naming the
//! accepted forms or the variable. The Silero VAD is loaded once per process in prewarm
//! (without its model files the agent runs text-only).
//!
//! Environment: `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (a LiveKit Cloud project; also
//! `LIVEKIT_URL` for `dev`, `start` and `connect`, with the `room` feature). Optional:
//! `LIVEKIT_INFERENCE_URL` to use another gateway (e.g. a local one speaking the protocol in
//! `docs/inference-protocol.md`). Model files: `cargo run --example inference_agent --
//! download-files` once.
//!
//! ```text
//! cargo run --example inference_agent -- console --text
//! cargo run --example inference_agent --features room -- dev
//! ```

use std::process::ExitCode;

use livekit_agents::cli;
use livekit_agents::voice::{Agent, AgentSession, ReplyOptions};
use livekit_agents::worker::{JobContext, WorkerOptions};

/// Cartesia's "Jacqueline" voice, as in the reference's examples.
const VOICE: &str = "9626c31c-bec5-4cca-baa8-f8ba9e84c8bc";

async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    let mut builder = AgentSession::builder()
        .stt("deepgram/nova-3:multi")
        .llm("openai/gpt-4.1-mini")
        .tts(format!("cartesia/sonic-3:{VOICE}"));
    match examples::shared_vad(&ctx) {
        Ok(vad) => builder = builder.vad(vad),
        Err(e) => tracing::warn!("{e}; voice input needs the VAD, `console --text` works without"),
    }
    let session = builder.try_build()?;
    let agent = Agent::new(
        "You are a friendly voice assistant running on LiveKit Inference. Keep your answers \
         short and conversational, without markdown or emojis.",
    );
    let io = ctx.session_io(&session).await?;
    session.start(agent, io).await?;
    session.generate_reply(
        ReplyOptions::default().with_instructions("Greet the user and offer your help."),
    )?;
    Ok(())
}

fn main() -> ExitCode {
    // So that `download-files` knows the Silero model file.
    livekit_plugins_silero::register_files();
    cli::run_app(
        WorkerOptions::new(entrypoint).with_prewarm(|proc| async move {
            // Without the model files the agent still works with typed text.
            if let Err(e) = examples::prewarm_vad(proc).await {
                tracing::warn!("no Silero VAD: {e}");
            }
            Ok(())
        }),
    )
}
