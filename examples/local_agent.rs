//! A voice agent with no cloud keys: every model runs on this machine behind an
//! OpenAI-compatible HTTP API, reached through the OpenAI plugin's base URLs
//! (see `docs/guides/local-models.md` for servers that speak these endpoints).
//!
//! - LLM: `POST {LOCAL_LLM_URL}/chat/completions` (default `http://localhost:11434/v1`, Ollama;
//!   model `LOCAL_LLM_MODEL`, default `llama3.1`). llama.cpp's `llama-server` works too
//!   (`http://localhost:8080/v1`).
//! - STT: `POST {LOCAL_STT_URL}/audio/transcriptions` (default `http://localhost:8000/v1`, e.g.
//!   Speaches / faster-whisper-server; model `LOCAL_STT_MODEL`, default
//!   `Systran/faster-whisper-small`), one request per utterance cut by the Silero VAD.
//! - TTS: `POST {LOCAL_TTS_URL}/audio/speech` with `response_format: "pcm"` (24 kHz 16-bit
//!   mono; default `http://localhost:8880/v1`, e.g. Kokoro-FastAPI; model `LOCAL_TTS_MODEL`,
//!   default `kokoro`, voice `LOCAL_TTS_VOICE`, default `af_heart`).
//!
//! Without the Silero model files (`cargo run --example local_agent -- download-files`) the
//! agent runs text-only (`console --text`), which needs only the LLM server.
//!
//! ```text
//! cargo run --example local_agent -- console --text
//! cargo run --example local_agent -- console --input-wav question.wav --output-wav reply.wav
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use livekit_agents::cli;
use livekit_agents::stt::{StreamAdapter, Stt};
use livekit_agents::voice::{Agent, AgentSession};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_openai as openai;
use livekit_plugins_silero::{SileroVad, VadOptions};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    let llm = openai::Llm::with_ollama(openai::CompatibleOptions {
        base_url: Some(env_or("LOCAL_LLM_URL", "http://localhost:11434/v1")),
        model: Some(env_or("LOCAL_LLM_MODEL", "llama3.1")),
        ..Default::default()
    })?;
    // Local servers ignore the key, but the plugin sends one.
    let stt = openai::Stt::new(openai::SttOptions {
        model: env_or("LOCAL_STT_MODEL", "Systran/faster-whisper-small"),
        base_url: Some(env_or("LOCAL_STT_URL", "http://localhost:8000/v1")),
        api_key: Some("local".into()),
        ..Default::default()
    })?;
    let tts = openai::Tts::new(openai::TtsOptions {
        model: env_or("LOCAL_TTS_MODEL", "kokoro"),
        voice: env_or("LOCAL_TTS_VOICE", "af_heart"),
        base_url: Some(env_or("LOCAL_TTS_URL", "http://localhost:8880/v1")),
        api_key: Some("local".into()),
        ..Default::default()
    })?;

    let mut builder = AgentSession::builder()
        .llm(Arc::new(llm))
        .tts(Arc::new(tts));
    // The Whisper endpoint transcribes whole utterances: the VAD cuts them.
    match tokio::task::spawn_blocking(|| SileroVad::load(VadOptions::default())).await? {
        Ok(vad) => {
            let vad: Arc<dyn livekit_agents::vad::Vad> = Arc::new(vad);
            let stt: Arc<dyn Stt> = Arc::new(StreamAdapter::new(Arc::new(stt), vad.clone()));
            builder = builder.stt(stt).vad(vad);
        }
        Err(e) => tracing::warn!(
            "no Silero VAD ({e}); voice input is off, type with `console --text` \
             (run `download-files` for voice)"
        ),
    }
    let session = builder.try_build()?;
    let agent = Agent::new(
        "You are a helpful voice assistant running entirely on local models. Keep answers \
         short, without markdown or emojis.",
    );
    let io = ctx.session_io(&session).await?;
    session.start(agent, io).await?;
    Ok(())
}

fn main() -> ExitCode {
    livekit_plugins_silero::register_files();
    cli::run_app(WorkerOptions::new(entrypoint))
}
