//! The OpenAI Realtime API: session settings shared with the realtime transcription stream.

mod config;

pub(crate) use config::pcm_format;
pub use config::{Eagerness, InputTranscription, NoiseReduction, TurnDetection};
