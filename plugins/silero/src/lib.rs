//! Silero voice activity detection for livekit-agents
