//! OpenAI (and OpenAI-compatible) LLM, STT, TTS and Realtime for livekit-agents
