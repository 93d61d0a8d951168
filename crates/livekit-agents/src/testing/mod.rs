//! Testing tools for agents (yours included): fake STT, LLM, TTS, VAD and turn detector driven
//! by a scripted timeline on tokio's clock, and [`RunResult`] assertions over what the agent did
//! for one user input.
//!
//! Timelines are relative to when the fake's stream was opened (the session's start), so a test
//! on a paused clock (`#[tokio::test(start_paused = true)]`) asserts exact times.

mod fakes;
mod memory_room;
mod mock_tools;
mod realtime;
mod run_result;

pub use fakes::{
    FakeLlm, FakeLlmResponse, FakeStt, FakeTts, FakeTurnDetector, FakeVad, ReceivedAudio,
    UserSpeech, FAKE_LLM_REQUEST_RETENTION,
};
pub use memory_room::{ByteStreamSender, MemoryRoom, PublishedTrack, SentTextStream};
pub use mock_tools::{mock_tools, MockTools, MockToolsGuard};
pub mod replay;
mod replay_file;
pub use realtime::{FakeRealtimeModel, FakeRealtimeReply};
pub use run_result::{
    judge, AgentHandoffAssert, ChatMessageAssert, EventAssert, EventRangeAssert,
    FunctionCallAssert, FunctionCallOutputAssert, JudgeError, RunAssert, RunEvent, RunEventType,
    RunResult,
};
