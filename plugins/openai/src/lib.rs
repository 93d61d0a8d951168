//! OpenAI (and OpenAI-compatible) LLM, STT, TTS and Realtime for `livekit-agents`.
//!
//! Default models and API versions, and when they were checked: `docs/providers.md`.
//!
//! - [`Llm`]: Chat Completions streaming over server-sent events, with tools (strict schemas
//!   where possible), parallel tool calls, images, usage with cached tokens, and constructors
//!   for OpenAI-compatible providers ([`Llm::with_azure`], [`Llm::with_cerebras`],
//!   [`Llm::with_deepseek`], [`Llm::with_fireworks`], [`Llm::with_groq`],
//!   [`Llm::with_ollama`], [`Llm::with_openrouter`], [`Llm::with_perplexity`],
//!   [`Llm::with_telnyx`], [`Llm::with_together`], [`Llm::with_x_ai`]).
//! - [`Stt`]: `POST /audio/transcriptions` (WAV upload; `gpt-transcribe` by default), and
//!   optional streaming over a Realtime transcription session (interim deltas and finals).
//! - [`Tts`]: `POST /audio/speech` with 24 kHz PCM output streamed as it arrives
//!   (`gpt-4o-mini-tts`, voice `ash` by default; those models shut down on 2027-01-06), or, with
//!   a realtime model ([`REALTIME_TTS_MODEL`], their named successor), speech through the
//!   Realtime API.
//! - [`realtime::RealtimeModel`]: the Realtime API over a WebSocket (audio in and out, server
//!   turn detection, input transcription, tools, truncation on interruption).
//!
//! ```no_run
//! use livekit_agents::llm::{ChatContext, ChatRequest, ChatRole, Llm as _};
//! use livekit_plugins_openai::{realtime, Llm, LlmOptions, Stt, SttOptions, Tts, TtsOptions};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // A pipeline: STT (with the core's VAD stream adapter), LLM, TTS.
//! let stt = Stt::new(SttOptions::default())?;
//! let llm = Llm::new(LlmOptions::default())?;
//! let tts = Tts::new(TtsOptions { voice: "coral".into(), ..Default::default() })?;
//!
//! // The LLM on its own.
//! let mut ctx = ChatContext::new();
//! ctx.add_message(ChatRole::User, "Hello!");
//! let reply = llm.chat(ChatRequest::new(ctx)).collect().await?;
//! println!("{}", reply.text);
//!
//! // Or speech to speech.
//! let model = realtime::RealtimeModel::new(realtime::RealtimeOptions::default())?;
//! # let _ = (stt, tts, model);
//! # Ok(())
//! # }
//! ```
//!
//! Every client takes its API key from its options or the provider's environment variable
//! (`OPENAI_API_KEY` for OpenAI; a missing key is a [`ConfigError`] naming the variable), and
//! its API root from the options, `OPENAI_BASE_URL` or `https://api.openai.com/v1`. Keys never
//! appear in `Debug` output, logs or errors.

mod audio_util;
mod chat_format;
mod client;
mod llm;
pub mod realtime;
mod sse;
mod stt;
mod tts;
mod tts_realtime;
mod ws;

pub use client::{ConfigError, API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL};
pub use llm::{
    AzureConnection, AzureOptions, CompatibleOptions, Llm, LlmOptions, OpenRouterOptions,
    OpenRouterWebPlugin, AZURE_DEFAULT_API_VERSION, DEFAULT_LLM_MODEL, DEFAULT_TEMPERATURE,
};
pub use stt::{Stt, SttOptions, DEFAULT_STT_MODEL};
pub use tts::{Tts, TtsOptions, DEFAULT_TTS_MODEL, DEFAULT_TTS_VOICE, TTS_SAMPLE_RATE};
pub use tts_realtime::REALTIME_TTS_MODEL;
