//! ONNX Runtime provisioning and shared sessions for livekit-agents plugins
