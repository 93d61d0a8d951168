//! Silero voice activity detection for livekit-agents.
//!
//! [`SileroVad`] implements the core [`Vad`](livekit_agents::vad::Vad) trait with the Silero VAD
//! v5 ONNX model, run by ONNX Runtime (provisioned by `livekit-agents-onnx`). It reproduces the
//! Python `livekit-plugins-silero` plugin: the same windows (512 samples + 64 of context at
//! 16 kHz, 256 + 32 at 8 kHz), the same probability smoothing (exponential, alpha 0.35), the
//! same state machine and defaults, and so the same speech segments on the same audio.
//!
//! Before first use, fetch the model and the runtime into the cache:
//!
//! ```text
//! cargo xtask download-files        # or: <your agent binary> download-files
//! ```
//!
//! Input may be any sample rate and channel count: it is down-mixed to mono and resampled to
//! the model rate. Frames of any size may be pushed.
//!
//! Events (see [`livekit_agents::vad::VadEvent`]):
//! - `InferenceDone` for every 32 ms window (smoothed probability, the window's input audio);
//! - `StartOfSpeech` once `min_speech_duration` of speech accumulates, carrying the buffered
//!   speech with up to `prefix_padding_duration` of audio before it;
//! - `EndOfSpeech` once `min_silence_duration` of silence follows, carrying the whole utterance.
//!
//! `samples_index` counts input samples (per channel) consumed up to the event, and
//! `timestamp` is the position in seconds (a multiple of 32 ms). The reference counts
//! `samples_index` in model-rate samples; both agree for 16 kHz input.

mod batch;
mod detector;
mod error;
mod model;
mod options;
mod vad;

pub use batch::BatchStats;
pub use error::SileroError;
pub use model::{model_file, LoadedModel, SileroModel, SpeechProbability, MODEL_FILE_NAME};
pub use options::{BatchOptions, ModelSampleRate, VadOptions, VadOptionsUpdate, MAX_BATCH_LIMIT};
pub use vad::{SileroVad, StreamOptionsHandle};

/// Every file this plugin needs: the Silero model and the ONNX Runtime library for this host.
/// `download-files` fetches these.
pub fn download_files() -> Vec<livekit_agents::download::FileSpec> {
    let mut files = vec![model_file()];
    files.extend(livekit_agents_onnx::runtime_files());
    files
}

/// Declares [`download_files`] in the core download registry (plugin name `silero`), so the
/// agent CLI's `download-files` fetches them.
pub fn register_files() {
    livekit_agents::download::register_files("silero", download_files());
}

/// Makes Silero (default [`VadOptions`]) the VAD of sessions built without one, as the
/// reference's default VAD (see [`livekit_agents::vad::register_default_vad`]; a session opts
/// out with `AgentSessionBuilder::no_vad`). The model is loaded once, on the first session
/// that needs it, and shared.
pub fn register_default_vad() {
    let cache: std::sync::Mutex<Option<std::sync::Arc<dyn livekit_agents::vad::Vad>>> =
        std::sync::Mutex::new(None);
    livekit_agents::vad::register_default_vad(move || {
        let mut slot = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(vad) = slot.as_ref() {
            return Ok(vad.clone());
        }
        let vad: std::sync::Arc<dyn livekit_agents::vad::Vad> =
            std::sync::Arc::new(SileroVad::load(VadOptions::default()).map_err(|e| e.to_string())?);
        *slot = Some(vad.clone());
        Ok(vad)
    });
}
