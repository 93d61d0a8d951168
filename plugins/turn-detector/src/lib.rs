//! LiveKit end-of-turn detector models for livekit-agents
