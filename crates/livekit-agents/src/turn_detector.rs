//! End-of-turn detection: a model that reads the conversation and says how likely it is that
//! the user finished their turn.
//!
//! The session waits `min_delay` after the user stops speaking, or `max_delay` when the
//! probability is below [`TurnDetector::unlikely_threshold`] for the language.

use async_trait::async_trait;

use crate::llm::ChatContext;

/// Why a prediction failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TurnDetectorError {
    /// The model did not answer in time.
    #[error("end-of-turn prediction timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The model failed.
    #[error("end-of-turn prediction failed: {reason}")]
    Inference {
        /// The model's error.
        reason: String,
    },
}

/// An end-of-turn model.
#[async_trait]
pub trait TurnDetector: Send + Sync + 'static {
    /// A short name for logs.
    fn label(&self) -> String;
    /// Probability in 0..=1 that the last user message in `chat_ctx` ends the turn.
    async fn predict_end_of_turn(
        &self,
        chat_ctx: &ChatContext,
        language: Option<&str>,
    ) -> Result<f32, TurnDetectorError>;
    /// Whether the model handles `language` (`None`: unknown language).
    fn supports_language(&self, language: Option<&str>) -> bool;
    /// Below this probability the turn is "unlikely" to be over, for `language`.
    fn unlikely_threshold(&self, language: Option<&str>) -> Option<f32>;
}
