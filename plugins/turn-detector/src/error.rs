//! Load-time errors. Prediction errors are the core's
//! [`TurnDetectorError`](livekit_agents::turn_detector::TurnDetectorError).

use std::path::PathBuf;

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A model file is not on disk.
    #[error(
        "turn detector file {path} is missing; run `download-files` (or `cargo xtask download-files`) first"
    )]
    MissingFile {
        /// Where it was expected.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `tokenizer.json` is invalid.
    #[error("invalid tokenizer: {0}")]
    Tokenizer(String),
    /// `tokenizer_config.json` (or its chat template) is invalid.
    #[error("invalid tokenizer config: {0}")]
    Config(String),
    /// `languages.json` is invalid.
    #[error("invalid languages.json: {0}")]
    Languages(String),
    /// ONNX Runtime could not be loaded or rejected the model.
    #[error("cannot load the ONNX model: {0}")]
    Onnx(String),
    /// Downloading the files failed.
    #[error("download failed: {0}")]
    Download(String),
    /// The options are invalid.
    #[error("invalid options: {0}")]
    Options(String),
}
