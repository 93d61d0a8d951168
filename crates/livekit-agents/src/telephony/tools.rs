//! Ready tools for phone agents: [`EndCallTool`] (`end_call`), [`send_dtmf_events_tool`]
//! (`send_dtmf_events`) and [`VoicemailTool`] (`detected_answering_machine`), plus the
//! [`DtmfSender`] they send keys through.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::call::{
    close_for_call_end, finish_call, CallControl, HangupOptions, HangupTarget, TelephonyError,
};
use super::dtmf::DtmfEvent;
use crate::llm::{FunctionTool, RunContext, ToolError, ToolOutput};
use crate::voice::{AgentSession, ReplyOptions, SayOptions};
use crate::worker::JobContext;

/// The reference's description of `end_call`.
pub const END_CALL_DESCRIPTION: &str = "Ends the current call and disconnects immediately.

Call when:
- The user clearly indicates they are done (e.g., \u{201c}that\u{2019}s all, bye\u{201d}).

Do not call when:
- The user asks to pause, hold, or transfer.
- Intent is unclear.

This is the final action the agent can take.
Once called, no further interaction is possible with the user.
Don't generate any other text or response when the tool is called.
";

/// Pause between two DTMF keys sent by `send_dtmf_events` (the reference's 0.3 s).
pub const DTMF_PUBLISH_DELAY: Duration = Duration::from_millis(300);

/// Most keys `send_dtmf_events` sends in one call (the model's arguments are untrusted).
pub const MAX_DTMF_EVENTS_PER_CALL: usize = 32;

/// Pause between the voicemail message and hanging up (the reference's 0.5 s).
pub const VOICEMAIL_HANGUP_DELAY: Duration = Duration::from_millis(500);

/// Where DTMF keys go: the room's local participant (`publish_dtmf`), or a recorder in console
/// mode and tests.
#[async_trait]
pub trait DtmfSender: Send + Sync + 'static {
    /// Sends one key.
    async fn send_dtmf(&self, key: DtmfEvent) -> Result<(), String>;
}

/// A [`DtmfSender`] that records the keys (and logs them): console mode and tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryDtmfSender {
    sent: Arc<Mutex<Vec<DtmfEvent>>>,
}

impl MemoryDtmfSender {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys sent so far.
    pub fn sent(&self) -> Vec<DtmfEvent> {
        self.sent.lock().clone()
    }
}

#[async_trait]
impl DtmfSender for MemoryDtmfSender {
    async fn send_dtmf(&self, key: DtmfEvent) -> Result<(), String> {
        tracing::info!(key = %key, code = key.code(), "DTMF sent");
        self.sent.lock().push(key);
        Ok(())
    }
}

/// The sender for a job: the room's local participant when connected (feature `room`), a
/// [`MemoryDtmfSender`] in console mode. `None` when the job has no room yet.
pub fn dtmf_sender_for(ctx: &JobContext) -> Option<Arc<dyn DtmfSender>> {
    if ctx.is_fake_job() {
        return Some(Arc::new(MemoryDtmfSender::new()));
    }
    #[cfg(feature = "room")]
    {
        ctx.room()
            .map(|room| Arc::new(super::room::RoomDtmfSender::new(room)) as Arc<dyn DtmfSender>)
    }
    #[cfg(not(feature = "room"))]
    {
        None
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct DtmfArgs {
    /// The keys to press, in order.
    events: Vec<DtmfEvent>,
}

/// The reference's `send_dtmf_events` tool: presses keys one by one, 0.3 s apart.
pub fn send_dtmf_events_tool(sender: Arc<dyn DtmfSender>) -> FunctionTool {
    FunctionTool::new(
        "send_dtmf_events",
        "Send a list of DTMF events to the telephony provider.\n\nCall when:\n- User wants to send DTMF events",
        move |_ctx: RunContext, args: DtmfArgs| {
            let sender = sender.clone();
            async move {
                if args.events.len() > MAX_DTMF_EVENTS_PER_CALL {
                    return Err(ToolError::new(format!(
                        "Too many DTMF events: at most {MAX_DTMF_EVENTS_PER_CALL} per call"
                    )));
                }
                for (i, key) in args.events.iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(DTMF_PUBLISH_DELAY).await;
                    }
                    if let Err(e) = sender.send_dtmf(*key).await {
                        return Ok(format!("Failed to send DTMF event: {key}. Error: {e}"));
                    }
                }
                let sent: Vec<String> = args.events.iter().map(|k| k.to_string()).collect();
                Ok(format!("Successfully sent DTMF events: {}", sent.join(", ")))
            }
        },
    )
}

/// The reference's `EndCallTool`: an `end_call` tool. When the model calls it, the tool's output
/// (`end_instructions`, default "say goodbye to the user") makes the model say goodbye in the
/// same speech; once that speech is done the session drains and closes with
/// [`CloseReason::CallEnded`](crate::voice::CloseReason::CallEnded), then the room is deleted
/// (`delete_room`, default true) and the job shuts down ("the agent ended the call").
///
/// ```no_run
/// use livekit_agents::telephony::EndCallTool;
/// use livekit_agents::voice::Agent;
/// use livekit_agents::worker::JobContext;
///
/// fn agent(ctx: &JobContext) -> Agent {
///     Agent::builder()
///         .instructions("You answer the phone for a bakery.")
///         .tool(EndCallTool::new(Some(ctx.clone())).build())
///         .build()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct EndCallTool {
    job: Option<JobContext>,
    delete_room: bool,
    end_instructions: Option<String>,
    extra_description: String,
}

impl EndCallTool {
    /// An end-call tool for `job` (`None`: only the session closes, e.g. in tests).
    pub fn new(job: Option<JobContext>) -> Self {
        Self {
            job,
            delete_room: true,
            end_instructions: Some("say goodbye to the user".into()),
            extra_description: String::new(),
        }
    }

    /// Whether to delete the room (disconnecting the SIP caller) after the session closes
    /// (default true); otherwise only the job shuts down.
    pub fn delete_room(mut self, delete: bool) -> Self {
        self.delete_room = delete;
        self
    }

    /// What the tool tells the model (default "say goodbye to the user"); `None`: no reply,
    /// the session ends once the turn that called the tool is done.
    pub fn end_instructions(mut self, instructions: Option<String>) -> Self {
        self.end_instructions = instructions;
        self
    }

    /// Text appended to the tool's description.
    pub fn extra_description(mut self, text: impl Into<String>) -> Self {
        self.extra_description = text.into();
        self
    }

    /// The tool.
    pub fn build(self) -> FunctionTool {
        let description = format!("{END_CALL_DESCRIPTION}\n{}", self.extra_description);
        let this = Arc::new(self);
        FunctionTool::raw(
            "end_call",
            description,
            serde_json::json!({"type": "object", "properties": {}, "required": []}),
            move |ctx: RunContext, _args: serde_json::Value| {
                let this = this.clone();
                async move {
                    tracing::debug!("end_call tool called");
                    let session = ctx.session().cloned();
                    let output = match &this.end_instructions {
                        Some(text) => ToolOutput::Value(serde_json::Value::String(text.clone())),
                        None => ToolOutput::None,
                    };
                    let end = move || {
                        tokio::spawn(async move {
                            if let Some(session) = &session {
                                close_for_call_end(session, true).await;
                            }
                            if let Some(job) = &this.job {
                                let target = this.delete_room.then_some(&HangupTarget::DeleteRoom);
                                if let Err(e) =
                                    finish_call(job, target, "the agent ended the call").await
                                {
                                    tracing::warn!(error = %e, "cannot end the call");
                                }
                            }
                        });
                    };
                    // The reply to this tool runs in the same speech: end once it is done.
                    match ctx.speech_handle() {
                        Some(speech) => speech.add_done_callback(move |_| end()),
                        None => end(),
                    }
                    Ok::<_, ToolError>(output)
                }
            },
        )
    }
}

/// What the agent leaves on an answering machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoicemailMessage {
    /// Say this text.
    Text(String),
    /// Ask the model for the message with these instructions.
    Instructions(String),
}

/// The reference's voicemail pattern as a tool, `detected_answering_machine`: the model calls it
/// after hearing a voicemail greeting; the agent leaves its message, waits 0.5 s and hangs up.
#[derive(Debug, Clone)]
pub struct VoicemailTool {
    job: Option<JobContext>,
    message: VoicemailMessage,
}

impl VoicemailTool {
    /// A voicemail tool leaving `message` for `job`'s call.
    pub fn new(job: Option<JobContext>, message: VoicemailMessage) -> Self {
        Self { job, message }
    }

    /// The tool.
    pub fn build(self) -> FunctionTool {
        let this = Arc::new(self);
        FunctionTool::raw(
            "detected_answering_machine",
            "Call this tool if you have detected a voicemail system, AFTER hearing the voicemail greeting",
            serde_json::json!({"type": "object", "properties": {}, "required": []}),
            move |ctx: RunContext, _args: serde_json::Value| {
                let this = this.clone();
                async move {
                    let session = ctx
                        .session()
                        .cloned()
                        .ok_or_else(|| ToolError::new("no session to leave a message from"))?;
                    tracing::info!("answering machine detected: leaving a message");
                    let speech = leave_message(&session, &this.message)
                        .map_err(|e| ToolError::new(e.to_string()))?;
                    // The message plays after the speech running this tool: the tool returns
                    // first, and the call ends in the background once it played.
                    let job = this.job.clone();
                    tokio::spawn(async move {
                        if let Err(e) = hang_up_after_message(&session, job.as_ref(), speech).await
                        {
                            tracing::warn!(error = %e, "cannot hang up after voicemail");
                        }
                    });
                    Ok::<_, ToolError>(ToolOutput::None)
                }
            },
        )
    }
}

/// The voicemail flow, for an answering machine found by [`Amd`](super::Amd) (a
/// `machine-vm` verdict) or otherwise: waits until the greeting is over (the callee's line is
/// silent: the beep comes at its end), leaves `message` (uninterruptible), waits
/// [`VOICEMAIL_HANGUP_DELAY`], then hangs up. With `job`, as
/// [`CallControl::hang_up`] (the room is deleted; the job shuts down with "voicemail left");
/// without, only the session closes. Either way the session closes with
/// [`CloseReason::CallEnded`](crate::voice::CloseReason::CallEnded).
///
/// Keep the [`Amd`](super::Amd) alive meanwhile: the rest of the greeting then gets no
/// automatic reply. Not from inside a tool (the message would wait for the tool's own
/// speech): use [`VoicemailTool`] there.
pub async fn leave_voicemail(
    session: &AgentSession,
    job: Option<&JobContext>,
    message: &VoicemailMessage,
) -> Result<(), TelephonyError> {
    session.wait_user_silent().await;
    let speech = leave_message(session, message)?;
    hang_up_after_message(session, job, speech).await
}

/// Waits until the message played, pauses, then hangs up.
async fn hang_up_after_message(
    session: &AgentSession,
    job: Option<&JobContext>,
    speech: crate::voice::SpeechHandle,
) -> Result<(), TelephonyError> {
    speech.wait_for_playout().await;
    tokio::time::sleep(VOICEMAIL_HANGUP_DELAY).await;
    match job {
        Some(job) => {
            let options = HangupOptions {
                wait_for_playout: false,
                reason: "voicemail left".into(),
                ..Default::default()
            };
            job.hang_up(Some(session), options).await
        }
        None => {
            close_for_call_end(session, false).await;
            Ok(())
        }
    }
}

fn leave_message(
    session: &AgentSession,
    message: &VoicemailMessage,
) -> Result<crate::voice::SpeechHandle, crate::voice::SessionError> {
    match message {
        VoicemailMessage::Text(text) => session.say(
            text.clone(),
            SayOptions {
                allow_interruptions: Some(false),
                ..Default::default()
            },
        ),
        VoicemailMessage::Instructions(instructions) => session.generate_reply(ReplyOptions {
            instructions: Some(instructions.clone()),
            allow_interruptions: Some(false),
            tool_choice: Some(crate::llm::ToolChoice::None),
            ..Default::default()
        }),
    }
}
