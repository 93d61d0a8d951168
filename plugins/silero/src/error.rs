//! Errors of the Silero plugin.

use livekit_agents::download::MissingFileError;
use livekit_agents_onnx::OnnxError;

/// Why the VAD could not be loaded or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SileroError {
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The model file is not in the cache (the message names the command to run).
    #[error("Silero VAD model: {0}")]
    MissingModel(#[from] MissingFileError),
    /// ONNX Runtime could not be found or the model could not be loaded or run.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}
