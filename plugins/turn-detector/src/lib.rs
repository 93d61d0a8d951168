//! LiveKit's end-of-turn detector models for livekit-agents: [`EnglishModel`] and
//! [`MultilingualModel`] implement the core
//! [`TurnDetector`](livekit_agents::turn_detector::TurnDetector) trait.
//!
//! After the user stops speaking, the session asks the detector how likely it is that the user
//! finished their turn, reading the last messages of the conversation. Below the language's
//! [`unlikely_threshold`](livekit_agents::turn_detector::TurnDetector::unlikely_threshold) the
//! session waits `max_delay` (3 s by default) for more speech, otherwise `min_delay` (0.5 s).
//! Languages without a threshold are not supported and the session skips the model.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use livekit_plugins_turn_detector::MultilingualModel;
//!
//! // Once, e.g. when building the image (or `cargo xtask download-files`):
//! MultilingualModel::download_files().await?;
//! // In the agent: loaded once per process, shared by every session.
//! let turn_detector = MultilingualModel::load().await?;
//! # let _ = turn_detector; Ok(()) }
//! ```
//!
//! # How a prediction works
//!
//! 1. The last 6 user/assistant messages with text are taken (tool calls and system messages
//!    are skipped), normalized, and adjacent messages of the same role merged
//!    ([`preprocess`]).
//! 2. The tokenizer's chat template renders them; the text is cut at the last `<|im_end|>` so
//!    the user's turn is open, tokenized, and the last 128 tokens kept.
//! 3. The ONNX model returns a probability per position; the last one is the answer.
//!
//! Steps 1-3 run on dedicated inference threads behind a bounded queue, one model and pool per
//! process ([`InferenceOptions`]). A caller waits at most
//! [`TurnDetectorOptions::timeout`] (1 s by default) and then gets
//! [`TurnDetectorError::Timeout`](livekit_agents::turn_detector::TurnDetectorError::Timeout);
//! when the queue is full the call fails at once instead of queueing behind other sessions.
//!
//! # Files
//!
//! See [`files`] for the pinned Hugging Face revisions, the cache layout and what is (and is
//! not) verified on download.

pub mod bench;
mod error;
pub mod files;
mod inference;
mod languages;
mod model;
mod onnx_backend;
pub mod preprocess;

pub use error::LoadError;
pub use files::{register_files, ModelKind};
pub use inference::{InferenceOptions, Prediction, NO_TEXT_PROBABILITY};
pub use languages::{normalize_language, LanguageThresholds};
pub use model::{EnglishModel, MultilingualModel, TurnDetectorOptions, DEFAULT_TIMEOUT};
pub use preprocess::normalize_text;
