//! # livekit-agents
//!
//! Realtime voice AI agents for LiveKit rooms, in Rust: listen (VAD, speech-to-text, turn
//! detection), think (an LLM with tools and handoffs) and speak (text-to-speech), with natural
//! interruptions. Many sessions run in one process and share loaded models.
//!
//! The crate is organised by stage; see `docs/ARCHITECTURE.md` in the repository for the map.
//!
//! - [`audio`]: frames, re-chunking, resampling, WAV.
//! - [`stt`], [`tts`], [`llm`], [`vad`], [`turn_detector`]: model traits that plugins implement.
//! - [`tokenize`]: sentence/word tokenizers and TTS text transforms.
//! - [`voice`]: `AgentSession`, `Agent`, turn handling, speech generation.
//! - [`metrics`], [`testing`], [`io`].
//! - [`model_input`]: the bounded input queues of model streams and their policy.
//! - `worker`, `cli` (feature `server`, default): the agent server and the command line;
//!   `download` (feature `download`, part of `server`): the model-file registry.
//!
//! Plugins depend on this crate with `default-features = false` (adding `download` if they
//! ship model files), so they compile neither the agent server nor the CLI.
//! - [`telephony`] (feature `server`): phone calls: hang up, transfers, outbound calls, DTMF,
//!   IVR, voicemail.
//! - [`plugin_support`]: the toolkit for plugin authors (API keys, base URLs, WebSocket
//!   connections with typed errors, streaming-audio bookkeeping).

pub mod audio;
pub mod background_audio;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "download")]
pub mod download;
pub mod inference;
pub mod io;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod model_input;
pub mod plugin_support;
#[cfg(feature = "room")]
pub mod room;
pub mod room_logic;
pub mod stt;
pub mod telemetry;
#[cfg(feature = "server")]
pub mod telephony;
pub mod testing;
pub mod tokenize;
pub mod tts;
pub mod turn_detector;
pub mod types;
pub mod vad;
pub mod voice;
#[cfg(feature = "server")]
pub mod worker;
pub mod workflows;

// Lets the crate's own code use its macros, whose output names `::livekit_agents`.
extern crate self as livekit_agents;

/// Paths used by the code that the crate's macros generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
}
