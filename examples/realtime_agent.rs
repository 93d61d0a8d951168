//! Speech-to-speech agent on the OpenAI Realtime API.
//!
//! The realtime model hears the user's audio and answers with audio directly (no separate STT,
//! LLM or TTS); turn detection and interruptions come from the model's server-side VAD. Tools
//! work the same as in a pipeline agent.
//!
//! Environment: `OPENAI_API_KEY`; for `dev`, `start` and `connect` also `LIVEKIT_URL`,
//! `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room` feature).
//!
//! ```text
//! cargo run --example realtime_agent -- console --text
//! cargo run --example realtime_agent --features room -- dev
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use livekit_agents::cli;
use livekit_agents::llm::function_tool;
use livekit_agents::voice::{Agent, AgentSession, ReplyOptions};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_openai::realtime::{RealtimeModel, RealtimeOptions};

/// Look up the current weather for a location.
///
/// # Arguments
///
/// * `location` - The city or place to look up.
#[function_tool]
async fn lookup_weather(location: String) -> String {
    format!("It is cloudy and 15 degrees Celsius in {location}.")
}

async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    let model = RealtimeModel::new(RealtimeOptions {
        voice: "coral".into(),
        ..Default::default()
    })?;
    let session = AgentSession::builder()
        .realtime_model(Arc::new(model))
        .build();
    let agent = Agent::builder()
        .instructions("You are a cheerful voice assistant. Keep your answers short.")
        .tool(lookup_weather())
        .build();
    let io = ctx.session_io(&session).await?;
    session.start(agent, io).await?;
    session.generate_reply(
        ReplyOptions::default().with_instructions("Greet the user and offer your help."),
    )?;
    Ok(())
}

fn main() -> ExitCode {
    cli::run_app(WorkerOptions::new(entrypoint))
}
