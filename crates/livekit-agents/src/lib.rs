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
//! - [`metrics`], [`testing`], [`download`], [`worker`], [`cli`], [`io`].
//! - [`telephony`]: phone calls: hang up, transfers, outbound calls, DTMF, IVR, voicemail.
//! - [`plugin_support`]: the toolkit for plugin authors (API keys, base URLs, WebSocket
//!   connections with typed errors, streaming-audio bookkeeping).

pub mod audio;
pub mod cli;
pub mod download;
pub mod io;
pub mod llm;
pub mod metrics;
pub mod plugin_support;
#[cfg(feature = "room")]
pub mod room;
pub mod room_logic;
pub mod stt;
pub mod telephony;
pub mod testing;
pub mod tokenize;
pub mod tts;
pub mod turn_detector;
pub mod types;
pub mod vad;
pub mod voice;
pub mod worker;

pub use types::{ApiConnectOptions, ApiError};
