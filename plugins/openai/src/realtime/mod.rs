//! The OpenAI Realtime API: [`RealtimeModel`] (speech to speech over a WebSocket) and the
//! session settings it shares with the realtime transcription stream of [`crate::Stt`].

mod config;
mod model;

pub(crate) use config::{iso_639_1, pcm_format, rejects_turn_detection, takes_language_list};
pub use config::{Eagerness, InputTranscription, NoiseReduction, TurnDetection};
pub use model::{
    Modality, RealtimeModel, RealtimeOptions, RealtimeSession, DEFAULT_INPUT_TRANSCRIPTION_MODEL,
    DEFAULT_MAX_SESSION_DURATION, DEFAULT_MAX_VIDEO_FRAMES, DEFAULT_REALTIME_MODEL,
    DEFAULT_REALTIME_VOICE,
};
