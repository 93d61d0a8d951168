//! Cartesia TTS and STT for livekit-agents
