//! The voice pipeline: [`AgentSession`], [`Agent`], [`SpeechHandle`].
//!
//! (Skeleton: the pipeline lands with the voice-pipeline work; these types are the names other
//! modules refer to.)

use std::sync::Arc;

/// An agent: instructions, tools and behaviour.
pub struct Agent {
    id: String,
}

impl Agent {
    /// The agent's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A running conversation.
#[derive(Clone)]
pub struct AgentSession {
    _inner: Arc<()>,
}

/// One agent utterance.
#[derive(Clone)]
pub struct SpeechHandle {
    _inner: Arc<()>,
}
