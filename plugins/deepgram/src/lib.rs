//! Deepgram STT and TTS for livekit-agents
