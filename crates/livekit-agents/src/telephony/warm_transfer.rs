//! [`WarmTransferTask`]: the reference's warm transfer. The caller is put on hold, the agent
//! dials a human into a consultation room, summarises the call for them, and on their word moves
//! them into the caller's room. Any failure (no answer, busy, declined, the human hangs up)
//! returns the caller to the agent with the reason, for the agent to explain.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::call::{OutboundCall, TelephonyError};
use super::sip::SipError;
use crate::llm::{ChatContext, ChatRole, FunctionTool, Llm, RunContext, ToolError, ToolOutput};
use crate::voice::{
    Agent, AgentBehavior, AgentContext, AgentSession, AgentTask, SessionIo, TaskCompleter,
    TaskError,
};
use crate::worker::JobContext;

/// The caller's side of a warm transfer (the reference example's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerState {
    /// Talking with the agent.
    Active,
    /// On hold while the human is consulted.
    Escalated,
    /// Handed over to the human (the agents left).
    Inactive,
}

/// The human's (supervisor's) side of a warm transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HumanState {
    /// Not involved.
    Inactive,
    /// Being dialed.
    Dialing,
    /// Answered; the agent is summarising the call.
    Summarizing,
    /// Moved into the caller's room.
    Merged,
    /// Did not answer, declined, hung up or could not be moved.
    Failed,
}

/// Both sides of a warm transfer; transitions are checked (a finished transfer stays finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransferState {
    /// The caller.
    pub caller: CallerState,
    /// The human.
    pub human: HumanState,
}

impl Default for TransferState {
    fn default() -> Self {
        Self {
            caller: CallerState::Active,
            human: HumanState::Inactive,
        }
    }
}

impl TransferState {
    /// Whether the transfer ended (merged or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.human, HumanState::Merged | HumanState::Failed)
    }

    /// Caller on hold, human being dialed. False if the transfer already started.
    pub fn start_dialing(&mut self) -> bool {
        if self.human != HumanState::Inactive {
            return false;
        }
        *self = Self {
            caller: CallerState::Escalated,
            human: HumanState::Dialing,
        };
        true
    }

    /// The human answered.
    pub fn answered(&mut self) -> bool {
        if self.human != HumanState::Dialing {
            return false;
        }
        self.human = HumanState::Summarizing;
        true
    }

    /// The human was moved to the caller.
    pub fn merged(&mut self) -> bool {
        if self.human != HumanState::Summarizing {
            return false;
        }
        *self = Self {
            caller: CallerState::Inactive,
            human: HumanState::Merged,
        };
        true
    }

    /// The transfer failed: the caller is back with the agent.
    pub fn failed(&mut self) -> bool {
        if self.is_finished() || self.human == HumanState::Inactive {
            return false;
        }
        *self = Self {
            caller: CallerState::Active,
            human: HumanState::Failed,
        };
        true
    }
}

/// What a warm transfer needs from the outside world: the consultation room and the server
/// calls around it. [`SipConsultation`] is the LiveKit implementation; tests use their own.
#[async_trait]
pub trait Consultation: Send + Sync + 'static {
    /// Joins the consultation room as the agent and returns the ports for the session that
    /// talks with the human.
    async fn join(&self) -> Result<SessionIo, TelephonyError>;
    /// Dials the human into the consultation room; returns once they answered.
    async fn dial(&self) -> Result<(), TelephonyError>;
    /// Moves the human from the consultation room into the caller's room.
    async fn move_to_caller(&self) -> Result<(), TelephonyError>;
    /// Resolves (with a reason) when the consultation room closes or the human hangs up.
    async fn closed(&self) -> String;
    /// Leaves the consultation room.
    async fn leave(&self);
}

/// Hold audio for the caller (e.g. music through a background-audio player). Without one the
/// caller hears silence: the session's audio output is switched off while on hold.
#[async_trait]
pub trait HoldAudio: Send + Sync + 'static {
    /// The caller was put on hold.
    async fn start(&self);
    /// The caller is back (or handed over).
    async fn stop(&self);
}

/// [`HoldAudio`] through a [`BackgroundAudioPlayer`](crate::background_audio::BackgroundAudioPlayer):
/// the reference's `hold_audio`, a sound looped while the caller is on hold. Start the player
/// first (e.g. `player.start_in_job(&ctx, &session)`, which publishes its own track: the
/// caller hears it while the session's output is off).
pub struct PlayerHoldAudio {
    player: crate::background_audio::BackgroundAudioPlayer,
    sound: crate::background_audio::Sound,
    playing: Mutex<Option<crate::background_audio::PlayHandle>>,
}

impl std::fmt::Debug for PlayerHoldAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayerHoldAudio")
            .field("sound", &self.sound)
            .finish_non_exhaustive()
    }
}

impl PlayerHoldAudio {
    /// Loops `sound` on `player` while the caller is on hold.
    pub fn new(
        player: crate::background_audio::BackgroundAudioPlayer,
        sound: impl Into<crate::background_audio::Sound>,
    ) -> Self {
        Self {
            player,
            sound: sound.into(),
            playing: Mutex::new(None),
        }
    }

    /// The built-in hold music ([`BuiltinAudioClip::HoldMusic`](crate::background_audio::BuiltinAudioClip::HoldMusic)).
    pub fn hold_music(player: crate::background_audio::BackgroundAudioPlayer) -> Self {
        Self::new(
            player,
            crate::background_audio::AudioConfig::new(
                crate::background_audio::BuiltinAudioClip::HoldMusic,
            ),
        )
    }
}

#[async_trait]
impl HoldAudio for PlayerHoldAudio {
    async fn start(&self) {
        match self.player.play(self.sound.clone(), true) {
            Ok(handle) => {
                if let Some(old) = self.playing.lock().replace(handle) {
                    old.stop();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot play the hold audio"),
        }
    }

    async fn stop(&self) {
        if let Some(handle) = self.playing.lock().take() {
            handle.stop();
        }
    }
}

/// The result of a completed warm transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmTransferResult {
    /// The human's participant identity (now in the caller's room).
    pub human_agent_identity: String,
}

/// The reference's summarising persona.
pub const WARM_TRANSFER_PERSONA: &str = "# Identity

You are an agent that is reaching out to a human agent for help. There has been a previous conversation
between you and a caller, the conversation history is included below.

# Goal

Your main goal is to give the human agent sufficient context about why the caller had called in,
so that the human agent could gain sufficient knowledge to help the caller directly.";

/// The conversation as the human is told it: user and assistant messages with text only
/// (instructions, tool calls and empty messages left out), one `Caller:`/`Assistant:` line each.
pub fn format_conversation_history(chat_ctx: &ChatContext) -> String {
    let mut out = String::new();
    for msg in chat_ctx.messages() {
        let role = match msg.role {
            ChatRole::User => "Caller",
            ChatRole::Assistant => "Assistant",
            _ => continue,
        };
        let Some(text) = msg.text_content().filter(|t| !t.trim().is_empty()) else {
            continue;
        };
        out.push_str(role);
        out.push_str(": ");
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// The human-facing agent's instructions (the reference's template).
pub fn warm_transfer_instructions(conversation_history: &str, extra: &str) -> String {
    format!(
        "{WARM_TRANSFER_PERSONA}

# Context

In the conversation, user refers to the human agent, caller refers to the person who's transcript is included.
Remember, you are not speaking to the caller right now, you are speaking to the human agent.

## Conversation history with caller
{conversation_history}
## End of conversation history with caller

Once the human agent has confirmed, you should call the tool `connect_to_caller` to connect them to the caller.

You are talking to the human agent now, start by giving them a summary of the conversation so far, and answer any questions they might have.

{extra}
"
    )
}

struct Shared {
    consultation: Arc<dyn Consultation>,
    hold: Mutex<Option<Arc<dyn HoldAudio>>>,
    llm: Mutex<Option<Arc<dyn Llm>>>,
    instructions: Mutex<String>,
    human_identity: String,
    state: Mutex<TransferState>,
    human_session: Mutex<Option<AgentSession>>,
    caller_session: Mutex<Option<AgentSession>>,
    /// Audio input/output enabled before the hold.
    saved_io: Mutex<Option<(bool, bool)>>,
    stop: CancellationToken,
}

impl Shared {
    fn state(&self) -> TransferState {
        *self.state.lock()
    }
}

/// A handle to watch a running [`WarmTransferTask`].
#[derive(Clone)]
pub struct WarmTransferHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WarmTransferHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmTransferHandle")
            .field("state", &self.shared.state())
            .finish()
    }
}

impl WarmTransferHandle {
    /// Where the transfer is.
    pub fn state(&self) -> TransferState {
        self.shared.state()
    }

    /// The session talking with the human, once started.
    pub fn human_session(&self) -> Option<AgentSession> {
        self.shared.human_session.lock().clone()
    }
}

/// The reference's `WarmTransferTask`: run it from a tool of the caller's agent; it returns
/// [`WarmTransferResult`] once the human was moved to the caller, or
/// [`TaskError::Failed`] with the reason (the tool returns it to the model, which tells the
/// caller).
///
/// While it runs, the caller's audio input and output are off (silence, or [`HoldAudio`]); a
/// second [`AgentSession`] (the caller session's models, or [`WarmTransferTask::llm`]) talks
/// with the human in the consultation room with the summary instructions and the tools
/// `connect_to_caller`, `decline_transfer` and `voicemail_detected`.
pub struct WarmTransferTask {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WarmTransferTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmTransferTask")
            .field("state", &self.shared.state())
            .finish_non_exhaustive()
    }
}

impl WarmTransferTask {
    /// A warm transfer through `consultation`, summarising `chat_ctx` (the caller
    /// conversation, e.g. `session.history()`) for the human with identity `human_identity`.
    pub fn new(
        consultation: Arc<dyn Consultation>,
        chat_ctx: &ChatContext,
        human_identity: impl Into<String>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                consultation,
                hold: Mutex::new(None),
                llm: Mutex::new(None),
                instructions: Mutex::new(warm_transfer_instructions(
                    &format_conversation_history(chat_ctx),
                    "",
                )),
                human_identity: human_identity.into(),
                state: Mutex::new(TransferState::default()),
                human_session: Mutex::new(None),
                caller_session: Mutex::new(None),
                saved_io: Mutex::new(None),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Hold audio for the caller (default: silence).
    pub fn hold_audio(self, hold: Arc<dyn HoldAudio>) -> Self {
        *self.shared.hold.lock() = Some(hold);
        self
    }

    /// The LLM of the session that talks with the human (default: the caller session's).
    pub fn llm(self, llm: Arc<dyn Llm>) -> Self {
        *self.shared.llm.lock() = Some(llm);
        self
    }

    /// Text appended to the summary instructions.
    pub fn extra_instructions(self, chat_ctx: &ChatContext, extra: &str) -> Self {
        *self.shared.instructions.lock() =
            warm_transfer_instructions(&format_conversation_history(chat_ctx), extra);
        self
    }

    /// A handle to watch the transfer.
    pub fn handle(&self) -> WarmTransferHandle {
        WarmTransferHandle {
            shared: self.shared.clone(),
        }
    }

    /// The instructions the human-facing agent gets.
    pub fn instructions(&self) -> String {
        self.shared.instructions.lock().clone()
    }

    /// Runs the transfer in the caller's `session`.
    pub async fn run(self, session: &AgentSession) -> Result<WarmTransferResult, TaskError> {
        let shared = self.shared;
        *shared.caller_session.lock() = Some(session.clone());
        let task = AgentTask::new(|done| {
            Agent::builder()
                .id("warm_transfer")
                .instructions(shared.instructions.lock().clone())
                .behavior(TransferBehavior {
                    shared: shared.clone(),
                    done,
                })
                .build()
        });
        task.run(session).await
    }
}

struct TransferBehavior {
    shared: Arc<Shared>,
    done: TaskCompleter<WarmTransferResult>,
}

#[async_trait]
impl AgentBehavior for TransferBehavior {
    async fn on_enter(&self, ctx: AgentContext) {
        let shared = self.shared.clone();
        if !shared.state.lock().start_dialing() {
            return;
        }
        set_on_hold(&shared, &ctx.session, true).await;
        tokio::spawn(dial_human(shared, self.done.clone()));
    }

    async fn on_exit(&self, _ctx: AgentContext) {
        self.shared.stop.cancel();
    }
}

async fn set_on_hold(shared: &Shared, caller: &AgentSession, hold: bool) {
    if hold {
        *shared.saved_io.lock() =
            Some((caller.audio_input_enabled(), caller.audio_output_enabled()));
        caller.set_audio_input_enabled(false);
        caller.set_audio_output_enabled(false);
        let hold = shared.hold.lock().clone();
        if let Some(h) = hold {
            h.start().await;
        }
    } else {
        let hold = shared.hold.lock().clone();
        if let Some(h) = hold {
            h.stop().await;
        }
        if let Some((input, output)) = shared.saved_io.lock().take() {
            caller.set_audio_input_enabled(input);
            caller.set_audio_output_enabled(output);
        }
    }
}

/// Ends the transfer: the human session closes, the hold ends, the caller's audio comes back
/// (unless merged), the task completes.
async fn finish(
    shared: &Arc<Shared>,
    done: &TaskCompleter<WarmTransferResult>,
    result: Result<WarmTransferResult, String>,
) {
    if done.is_done() {
        return;
    }
    {
        let mut st = shared.state.lock();
        let changed = match &result {
            Ok(_) => st.merged(),
            Err(_) => st.failed(),
        };
        if !changed {
            return;
        }
    }
    let human = shared.human_session.lock().take();
    if let Some(human) = human {
        human.close().await;
    }
    shared.consultation.leave().await;
    let caller = shared.caller_session.lock().clone();
    if let Some(caller) = caller {
        set_on_hold(shared, &caller, false).await;
    }
    match result {
        Ok(r) => done.complete(r),
        Err(reason) => {
            tracing::info!(reason, "warm transfer failed; back to the caller");
            done.fail(reason)
        }
    }
}

fn failure_reason(e: &TelephonyError) -> String {
    match e {
        TelephonyError::Sip(SipError::Call { failure, .. }) => {
            format!("could not reach the human agent: {}", failure.describe())
        }
        other => format!("could not dial human agent: {other}"),
    }
}

async fn dial_human(shared: Arc<Shared>, done: TaskCompleter<WarmTransferResult>) {
    let outcome = tokio::select! {
        _ = shared.stop.cancelled() => return,
        reason = shared.consultation.closed() => Err(format!("room closed: {reason}")),
        r = start_human_session(&shared, &done) => r,
    };
    match outcome {
        Ok(()) => {
            shared.state.lock().answered();
            // The human speaks first; the session answers with the summary. Wait for the end.
            let reason = tokio::select! {
                _ = shared.stop.cancelled() => return,
                reason = shared.consultation.closed() => format!("room closed: {reason}"),
            };
            finish(&shared, &done, Err(reason)).await;
        }
        Err(reason) => finish(&shared, &done, Err(reason)).await,
    }
}

async fn start_human_session(
    shared: &Arc<Shared>,
    done: &TaskCompleter<WarmTransferResult>,
) -> Result<(), String> {
    let io = shared
        .consultation
        .join()
        .await
        .map_err(|e| format!("could not join the consultation room: {e}"))?;
    let caller = shared.caller_session.lock().clone();
    let mut builder = AgentSession::builder();
    if let Some(caller) = &caller {
        if let Some(stt) = caller.stt() {
            builder = builder.stt(stt);
        }
        if let Some(vad) = caller.vad() {
            builder = builder.vad(vad);
        }
        if let Some(tts) = caller.tts() {
            builder = builder.tts(tts);
        }
        if let Some(llm) = caller.llm() {
            builder = builder.llm(llm);
        }
    }
    let llm = shared.llm.lock().clone();
    if let Some(llm) = llm {
        builder = builder.llm(llm);
    }
    let human = builder.build();
    let agent = Agent::builder()
        .id("warm_transfer_human")
        .instructions(shared.instructions.lock().clone())
        .tools(human_tools(shared.clone(), done.clone()))
        .build();
    human
        .start(agent, io)
        .await
        .map_err(|e| format!("could not start the consultation: {e}"))?;
    *shared.human_session.lock() = Some(human);
    shared
        .consultation
        .dial()
        .await
        .map_err(|e| failure_reason(&e))
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct DeclineArgs {
    /// A short explanation of why the human agent declined to connect to the caller.
    reason: String,
}

fn human_tools(shared: Arc<Shared>, done: TaskCompleter<WarmTransferResult>) -> Vec<FunctionTool> {
    let empty = serde_json::json!({"type": "object", "properties": {}, "required": []});
    let (s1, d1) = (shared.clone(), done.clone());
    let connect = FunctionTool::raw(
        "connect_to_caller",
        "Called when the human agent wants to connect to the caller.",
        empty.clone(),
        move |_ctx: RunContext, _args: serde_json::Value| {
            let (shared, done) = (s1.clone(), d1.clone());
            async move {
                tracing::debug!("connecting the human agent to the caller");
                // Finish in the background: closing the human session ends this tool's speech.
                tokio::spawn(async move {
                    let result = match shared.consultation.move_to_caller().await {
                        Ok(()) => Ok(WarmTransferResult {
                            human_agent_identity: shared.human_identity.clone(),
                        }),
                        Err(e) => Err(format!("could not connect the human agent: {e}")),
                    };
                    finish(&shared, &done, result).await;
                });
                Ok::<_, ToolError>(ToolOutput::None)
            }
        },
    );
    let (s2, d2) = (shared.clone(), done.clone());
    let decline = FunctionTool::new(
        "decline_transfer",
        "Handles the case when the human agent explicitly declines to connect to the caller.",
        move |_ctx: RunContext, args: DeclineArgs| {
            let (shared, done) = (s2.clone(), d2.clone());
            async move {
                let reason: String = args.reason.chars().take(500).collect();
                tokio::spawn(async move {
                    finish(
                        &shared,
                        &done,
                        Err(format!("human agent declined to connect: {reason}")),
                    )
                    .await;
                });
                Ok::<_, ToolError>(ToolOutput::None)
            }
        },
    );
    let (s3, d3) = (shared, done);
    let voicemail = FunctionTool::raw(
        "voicemail_detected",
        "Called when the call reaches voicemail. Use this tool AFTER you hear the voicemail greeting",
        empty,
        move |_ctx: RunContext, _args: serde_json::Value| {
            let (shared, done) = (s3.clone(), d3.clone());
            async move {
                tokio::spawn(async move {
                    finish(&shared, &done, Err("voicemail detected".into())).await;
                });
                Ok::<_, ToolError>(ToolOutput::None)
            }
        },
    );
    vec![connect, decline, voicemail]
}

/// The LiveKit [`Consultation`]: a room named `<caller room>-human-agent`, the human dialed
/// with `CreateSIPParticipant(wait_until_answered)` and moved with `MoveParticipant`. Joining
/// the room needs the `room` feature.
#[derive(Debug, Clone)]
pub struct SipConsultation {
    job: JobContext,
    room_name: String,
    call: OutboundCall,
    closed: CancellationToken,
    close_reason: Arc<Mutex<Option<String>>>,
    #[cfg(feature = "room")]
    room: Arc<Mutex<Option<Arc<livekit::Room>>>>,
}

impl SipConsultation {
    /// A consultation for `job` calling `call` (its `participant_identity` is the human's
    /// identity; `wait_until_answered` is forced on).
    pub fn new(job: JobContext, mut call: OutboundCall) -> Self {
        call.wait_until_answered = true;
        Self {
            room_name: format!("{}-human-agent", job.room_name()),
            job,
            call,
            closed: CancellationToken::new(),
            close_reason: Arc::default(),
            #[cfg(feature = "room")]
            room: Arc::default(),
        }
    }

    /// The consultation room's name.
    pub fn room_name(&self) -> &str {
        &self.room_name
    }

    /// Marks the consultation as closed (the human hung up), ending a running transfer.
    pub fn close(&self, reason: impl Into<String>) {
        self.close_reason
            .lock()
            .get_or_insert_with(|| reason.into());
        self.closed.cancel();
    }
}

#[async_trait]
impl Consultation for SipConsultation {
    #[cfg(feature = "room")]
    async fn join(&self) -> Result<SessionIo, TelephonyError> {
        use livekit_api::access_token::{AccessToken, VideoGrants};
        let creds = self.job.api_credentials();
        let identity = self.job.accept_args().identity.clone();
        let token = AccessToken::with_api_key(&creds.api_key, &creds.api_secret)
            .with_identity(if identity.is_empty() {
                "agent"
            } else {
                &identity
            })
            .with_kind("agent")
            .with_grants(VideoGrants {
                room_join: true,
                room: self.room_name.clone(),
                can_update_own_metadata: Some(true),
                can_publish: Some(true),
                can_subscribe: Some(true),
                ..Default::default()
            })
            .to_jwt()
            .map_err(|e| TelephonyError::Room {
                call: "AccessToken",
                message: e.to_string(),
            })?;
        let (room, mut events) =
            livekit::Room::connect(self.job.url(), &token, livekit::RoomOptions::default())
                .await
                .map_err(|e| TelephonyError::Room {
                    call: "connect",
                    message: e.to_string(),
                })?;
        let room = Arc::new(room);
        *self.room.lock() = Some(room.clone());
        let this = self.clone();
        let human = self.call.participant_identity.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    livekit::RoomEvent::ParticipantDisconnected(p)
                        if p.identity().as_str() == human =>
                    {
                        this.close("the human agent hung up");
                    }
                    livekit::RoomEvent::Disconnected { reason } => {
                        this.close(format!("{reason:?}"));
                    }
                    _ => {}
                }
            }
        });
        let options = crate::room_logic::RoomOptions {
            participant_identity: Some(self.call.participant_identity.clone()),
            ..Default::default()
        };
        let backend = Arc::new(crate::room::LiveKitRoom::new(room));
        let (_io, ports) = crate::room_logic::RoomIo::start(backend, options)
            .await
            .map_err(|e| TelephonyError::Room {
                call: "RoomIo",
                message: e.to_string(),
            })?;
        Ok(SessionIo {
            audio_input: ports.audio_input,
            audio_output: ports.audio_output,
            text_output: ports.text_output,
        })
    }

    #[cfg(not(feature = "room"))]
    async fn join(&self) -> Result<SessionIo, TelephonyError> {
        Err(TelephonyError::Room {
            call: "connect",
            message: "joining a consultation room needs the `room` cargo feature".into(),
        })
    }

    async fn dial(&self) -> Result<(), TelephonyError> {
        // Into the consultation room, not the caller's.
        dial_into(&self.job, &self.room_name, &self.call).await
    }

    async fn move_to_caller(&self) -> Result<(), TelephonyError> {
        if self.job.is_fake_job() {
            return Err(TelephonyError::Console("cannot move a participant"));
        }
        self.job
            .api()
            .room()
            .move_participant(
                &self.room_name,
                &self.call.participant_identity,
                self.job.room_name(),
            )
            .await
            .map_err(|e| TelephonyError::Room {
                call: "MoveParticipant",
                message: e.to_string(),
            })
    }

    async fn closed(&self) -> String {
        self.closed.cancelled().await;
        self.close_reason
            .lock()
            .clone()
            .unwrap_or_else(|| "closed".into())
    }

    async fn leave(&self) {
        #[cfg(feature = "room")]
        {
            let room = self.room.lock().take();
            if let Some(room) = room {
                if let Err(e) = room.close().await {
                    tracing::debug!(error = %e, "leaving the consultation room");
                }
            }
        }
    }
}

async fn dial_into(
    job: &JobContext,
    room: &str,
    call: &OutboundCall,
) -> Result<(), TelephonyError> {
    use livekit_api::services::sip::CreateSIPParticipantOptions;
    if job.is_fake_job() {
        return Err(TelephonyError::Console("cannot place a phone call"));
    }
    job.api()
        .sip()
        .create_sip_participant(
            call.sip_trunk_id.clone(),
            call.phone_number.clone(),
            room.to_owned(),
            CreateSIPParticipantOptions {
                participant_identity: call.participant_identity.clone(),
                participant_name: call.participant_name.clone(),
                dtmf: call.dtmf.clone(),
                wait_until_answered: Some(true),
                ringing_timeout: call.ringing_timeout,
                headers: (!call.headers.is_empty()).then(|| call.headers.clone()),
                ..Default::default()
            },
            None,
        )
        .await
        .map(|_| ())
        .map_err(|e| SipError::from_service_error("CreateSIPParticipant", &e).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ChatMessage;

    #[test]
    fn transitions_follow_the_reference_states() {
        let mut s = TransferState::default();
        assert!(!s.answered() && !s.merged() && !s.failed());
        assert!(s.start_dialing());
        assert_eq!(s.caller, CallerState::Escalated);
        assert!(!s.start_dialing());
        assert!(!s.merged(), "cannot merge before the answer");
        assert!(s.answered());
        assert_eq!(s.human, HumanState::Summarizing);
        assert!(s.merged());
        assert_eq!(
            s,
            TransferState {
                caller: CallerState::Inactive,
                human: HumanState::Merged
            }
        );
        assert!(!s.failed(), "a merged transfer stays merged");

        let mut s = TransferState::default();
        s.start_dialing();
        assert!(s.failed());
        assert_eq!(s.caller, CallerState::Active);
        assert!(s.is_finished());
        assert!(!s.answered());
    }

    #[test]
    fn history_keeps_only_spoken_text() {
        let mut ctx = ChatContext::new();
        ctx.push(ChatItem::Message(ChatMessage::new(
            ChatRole::System,
            "secret prompt",
        )));
        ctx.push(ChatItem::Message(ChatMessage::new(
            ChatRole::User,
            "My order is late.",
        )));
        ctx.push(ChatItem::Message(ChatMessage::new(ChatRole::Assistant, "")));
        ctx.push(ChatItem::FunctionCall(crate::llm::FunctionCall::new(
            "c", "lookup", "{}",
        )));
        ctx.push(ChatItem::Message(ChatMessage::new(
            ChatRole::Assistant,
            "Let me get a colleague.",
        )));
        let text = format_conversation_history(&ctx);
        assert_eq!(
            text,
            "Caller: My order is late.\nAssistant: Let me get a colleague.\n"
        );
        let instructions = warm_transfer_instructions(&text, "Be brief.");
        assert!(
            instructions.contains("## Conversation history with caller\nCaller: My order is late.")
        );
        assert!(instructions.contains("`connect_to_caller`"));
        assert!(instructions.trim_end().ends_with("Be brief."));
    }

    use crate::llm::ChatItem;
}
