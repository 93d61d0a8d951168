//! A scripted realtime model.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::audio::AudioFrame;
use crate::llm::chat_context::{new_item_id, now_secs};
use crate::llm::realtime::{
    GenerationCreated, MessageGeneration, RealtimeCapabilities, RealtimeEvent, RealtimeModel,
    RealtimeSession,
};
use crate::llm::{ChatContext, FunctionCall, ToolChoice, ToolDefinition};
use crate::types::ApiError;

/// One scripted realtime reply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FakeRealtimeReply {
    /// Transcript of the audio.
    pub text: String,
    /// Audio length (24 kHz silence in 10 ms frames).
    pub audio_duration: Duration,
    /// Delay before the message starts.
    pub ttft: Duration,
    /// Tool calls (name, JSON arguments).
    pub tool_calls: Vec<(String, String)>,
}

#[derive(Default)]
struct Shared {
    replies: VecDeque<FakeRealtimeReply>,
    calls: Vec<String>,
    pushed_audio: Duration,
    events: Option<mpsc::Receiver<RealtimeEvent>>,
}

/// A realtime model that answers `generate_reply` from a script, records every call
/// (`commit_audio`, `interrupt`, `truncate:<message>:<ms>:<text>`, `generate_reply`, …), and lets
/// a test inject server events with [`FakeRealtimeModel::emit`].
#[derive(Clone)]
pub struct FakeRealtimeModel {
    capabilities: RealtimeCapabilities,
    shared: Arc<Mutex<Shared>>,
    events_tx: mpsc::Sender<RealtimeEvent>,
}

impl std::fmt::Debug for FakeRealtimeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRealtimeModel").finish_non_exhaustive()
    }
}

impl FakeRealtimeModel {
    /// A model with server turn detection and truncation, answering with `replies` in order.
    pub fn new(replies: Vec<FakeRealtimeReply>) -> Self {
        let (events_tx, events_rx) = mpsc::channel(256);
        Self {
            capabilities: RealtimeCapabilities {
                message_truncation: true,
                turn_detection: true,
                user_transcription: true,
                auto_tool_reply_generation: false,
                audio_output: true,
            },
            shared: Arc::new(Mutex::new(Shared {
                replies: replies.into(),
                events: Some(events_rx),
                ..Default::default()
            })),
            events_tx,
        }
    }

    /// Overrides the capabilities.
    pub fn with_capabilities(mut self, capabilities: RealtimeCapabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Sends a server event to the session.
    pub async fn emit(&self, event: RealtimeEvent) {
        let _ = self.events_tx.send(event).await;
    }

    /// A server-initiated reply (as after server-side end of turn).
    pub async fn emit_reply(&self, reply: FakeRealtimeReply) {
        let generation = make_generation(reply, false);
        self.emit(RealtimeEvent::GenerationCreated(generation))
            .await;
    }

    /// The calls received so far.
    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }

    /// User audio received so far.
    pub fn pushed_audio(&self) -> Duration {
        self.shared.lock().pushed_audio
    }
}

fn make_generation(reply: FakeRealtimeReply, user_initiated: bool) -> GenerationCreated {
    let (msg_tx, msg_rx) = mpsc::channel(4);
    let (fn_tx, fn_rx) = mpsc::channel(16);
    tokio::spawn(async move {
        tokio::time::sleep(reply.ttft).await;
        if !reply.text.is_empty() || !reply.audio_duration.is_zero() {
            let (text_tx, text_rx) = mpsc::channel(16);
            let (audio_tx, audio_rx) = mpsc::channel(4096);
            let _ = msg_tx
                .send(MessageGeneration {
                    message_id: new_item_id("msg"),
                    text_stream: text_rx,
                    audio_stream: audio_rx,
                })
                .await;
            let _ = text_tx.send(reply.text.clone()).await;
            drop(text_tx);
            let frames = (reply.audio_duration.as_secs_f64() * 100.0).round() as usize;
            for _ in 0..frames {
                if audio_tx
                    .send(AudioFrame::silence(24_000, 1, 240))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        drop(msg_tx);
        for (i, (name, args)) in reply.tool_calls.into_iter().enumerate() {
            let _ = fn_tx
                .send(FunctionCall {
                    id: new_item_id("item"),
                    call_id: format!("rt_call_{i}"),
                    name,
                    arguments: args,
                    created_at: now_secs(),
                })
                .await;
        }
    });
    GenerationCreated {
        message_stream: msg_rx,
        function_stream: fn_rx,
        user_initiated,
        response_id: new_item_id("resp"),
    }
}

#[async_trait]
impl RealtimeModel for FakeRealtimeModel {
    fn label(&self) -> String {
        "fake.RealtimeModel".into()
    }
    fn model(&self) -> String {
        "fake".into()
    }
    fn provider(&self) -> String {
        "fake".into()
    }
    fn capabilities(&self) -> RealtimeCapabilities {
        self.capabilities
    }
    async fn session(&self) -> Result<Box<dyn RealtimeSession>, ApiError> {
        Ok(Box::new(FakeRealtimeSession {
            shared: self.shared.clone(),
        }))
    }
}

struct FakeRealtimeSession {
    shared: Arc<Mutex<Shared>>,
}

impl FakeRealtimeSession {
    fn record(&self, call: String) {
        self.shared.lock().calls.push(call);
    }
}

#[async_trait]
impl RealtimeSession for FakeRealtimeSession {
    fn take_events(&mut self) -> Option<mpsc::Receiver<RealtimeEvent>> {
        self.shared.lock().events.take()
    }
    async fn update_instructions(&self, instructions: &str) -> Result<(), ApiError> {
        self.record(format!("update_instructions:{instructions}"));
        Ok(())
    }
    async fn update_chat_ctx(&self, chat_ctx: &ChatContext) -> Result<(), ApiError> {
        self.record(format!("update_chat_ctx:{}", chat_ctx.items().len()));
        Ok(())
    }
    async fn update_tools(&self, tools: &[ToolDefinition]) -> Result<(), ApiError> {
        self.record(format!("update_tools:{}", tools.len()));
        Ok(())
    }
    async fn update_tool_choice(&self, tool_choice: ToolChoice) -> Result<(), ApiError> {
        self.record(format!("update_tool_choice:{tool_choice:?}"));
        Ok(())
    }
    fn push_audio(&self, frame: &AudioFrame) {
        self.shared.lock().pushed_audio += frame.duration();
    }
    fn commit_audio(&self) {
        self.record("commit_audio".into());
    }
    fn clear_audio(&self) {
        self.record("clear_audio".into());
    }
    async fn generate_reply(
        &self,
        instructions: Option<&str>,
    ) -> Result<GenerationCreated, ApiError> {
        self.record(format!("generate_reply:{}", instructions.unwrap_or("")));
        let reply = self.shared.lock().replies.pop_front().unwrap_or_default();
        Ok(make_generation(reply, true))
    }
    fn interrupt(&self) {
        self.record("interrupt".into());
    }
    async fn truncate(
        &self,
        message_id: &str,
        audio_end_ms: u64,
        audio_transcript: Option<&str>,
    ) -> Result<(), ApiError> {
        let _ = message_id;
        self.record(format!(
            "truncate:{audio_end_ms}:{}",
            audio_transcript.unwrap_or("")
        ));
        Ok(())
    }
    async fn close(&self) {
        self.record("close".into());
    }
}
