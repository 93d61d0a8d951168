//! [`AgentSession`]: one conversation. It owns the models, the ports, the history and the
//! events, and hands turns to the active agent's activity (`voice/activity.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{broadcast, oneshot, watch};
use tokio_util::task::AbortOnDropHandle;

use super::activity::Activity;
use super::agent::Agent;
use super::events::{AgentState, CloseReason, ErrorSource, SessionEvent, SpeechSource, UserState};
use super::options::{InterruptionMode, SessionOptions, TurnDetection};
use super::realtime::RealtimeLink;
use super::recognition::{self, RecognitionCommand, RecognitionHandle};
use super::speech_handle::SpeechHandle;
use crate::io::{AudioOutput, TextOutput};
use crate::llm::tool::Userdata;
use crate::llm::{ChatContext, ChatItem, FunctionTool, Llm};
use crate::metrics::{UsageCollector, UsageSummary};
use crate::stt::Stt;
use crate::tts::Tts;
use crate::vad::Vad;

/// How [`AgentSession::activate`] brings an activity in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// The session starts with it.
    Start,
    /// A handoff (`update_agent`, a tool returning an agent).
    Handoff,
    /// An agent task takes over.
    Task,
    /// The paused agent resumes after its task.
    Resume,
}

pub(crate) struct SessionState {
    pub started: bool,
    pub closed: bool,
    pub agent_state: AgentState,
    pub user_state: UserState,
    pub history: ChatContext,
    pub activity: Option<Activity>,
    pub audio_output: Option<Arc<dyn AudioOutput>>,
    pub text_output: Option<Arc<dyn TextOutput>>,
    pub audio_input_enabled: bool,
    pub audio_output_enabled: bool,
    pub recognition: Option<RecognitionHandle>,
    pub away_timer: Option<AbortOnDropHandle<()>>,
    /// Holds of the user-away timer not released yet (see `hold_user_away_timer_until`).
    pub away_holds: usize,
    pub error_counts: HashMap<ErrorSource, u32>,
    pub usage: UsageCollector,
    pub turn_detection: TurnDetection,
    pub realtime: Option<Arc<RealtimeLink>>,
    /// When the user last spoke (end of speech minus the VAD's silence): the time stamp of the
    /// next `user_state_changed(listening)`.
    pub user_last_spoke: Option<tokio::time::Instant>,
    /// The AEC warm-up not used yet, and when the running one ends.
    pub aec_warmup_remaining: std::time::Duration,
    pub aec_warmup_until: Option<tokio::time::Instant>,
    /// The session's endpointing (changed by `update_options`); an agent's own values go over
    /// it (`endpointing_for`).
    pub endpointing: super::options::EndpointingOptions,
    /// Follows the audio input's participant (the AEC warm-up per call type).
    pub participant_watch: Option<AbortOnDropHandle<()>>,
}

pub(crate) struct SessionInner {
    pub options: SessionOptions,
    pub models: Models,
    pub tools: Vec<FunctionTool>,
    pub userdata: Userdata,
    /// MCP servers (started in `start`, closed in `close_with`).
    pub mcp_servers: crate::mcp::ServerList,
    /// Models the builder could not resolve: `start` fails with it.
    pub config_error: Option<String>,
    /// Live video: sampler and latest frame (see `room_logic::video`).
    pub video: Arc<crate::room_logic::video::VideoState>,
    pub events: broadcast::Sender<SessionEvent>,
    /// The same events with their creation time (`subscribe_timed`; session reports). Made on
    /// the first `subscribe_timed`: a broadcast channel allocates all its slots up front
    /// (about 190 KB for 1,024 events), which most sessions never use.
    pub timed_events: std::sync::OnceLock<broadcast::Sender<super::events::TimedSessionEvent>>,
    pub state: Mutex<SessionState>,
    pub user_speaking: watch::Sender<bool>,
    /// Serializes agent switches.
    pub update_lock: tokio::sync::Mutex<()>,
    /// Number of agent switches in flight (so `run` waits for them).
    pub pending_updates: watch::Sender<u32>,
    /// Set once the session closed.
    pub closed: watch::Sender<bool>,
    /// Set once the `Close` event was sent: nothing is emitted or recorded after it (a tool
    /// that closed the session and then returned adds nothing).
    pub close_emitted: std::sync::atomic::AtomicBool,
    /// Spans of this session (`crate::telemetry`), fed by the events.
    pub telemetry: Arc<crate::telemetry::SessionTelemetry>,
    /// Hooks of features outside `voice` (telephony), consulted by the activity loop.
    pub hooks: super::hooks::SessionHooks,
}

/// One conversation between a user and agents. Cheap to clone (a handle).
///
/// ```
/// use livekit_agents::voice::{Agent, AgentSession, SessionIo, SessionEvent};
///
/// # async fn demo(llm: std::sync::Arc<dyn livekit_agents::llm::Llm>) {
/// let session = AgentSession::builder().llm(llm).build();
/// let mut events = session.events();
/// session.start(Agent::new("You are a helpful assistant."), SessionIo::default()).await.unwrap();
/// let reply = session.generate_reply(Default::default()).unwrap();
/// reply.wait_for_playout().await;
/// while let Some(Ok(ev)) = events.try_recv() {
///     println!("{}", ev.name());
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct AgentSession {
    pub(crate) inner: Arc<SessionInner>,
}

impl std::fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("AgentSession")
            .field("agent_state", &st.agent_state)
            .field("user_state", &st.user_state)
            .finish_non_exhaustive()
    }
}

impl AgentSession {
    /// A builder.
    pub fn builder() -> AgentSessionBuilder {
        AgentSessionBuilder::default()
    }

    fn from_parts(
        options: SessionOptions,
        models: Models,
        tools: Vec<FunctionTool>,
        userdata: Userdata,
        mcp_servers: crate::mcp::ServerList,
        config_error: Option<String>,
        video: crate::room_logic::video::VideoState,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        let (user_speaking, _) = watch::channel(false);
        let (pending_updates, _) = watch::channel(0);
        let (closed, _) = watch::channel(false);
        // Until a participant is linked, a call is not known to be outbound SIP.
        let aec_warmup = options
            .aec_warmup_duration
            .duration(false)
            .unwrap_or_default();
        let endpointing = options.turn_handling.endpointing;
        Self {
            inner: Arc::new(SessionInner {
                options,
                models,
                tools,
                userdata,
                mcp_servers,
                config_error,
                video: Arc::new(video),
                events,
                timed_events: std::sync::OnceLock::new(),
                user_speaking,
                update_lock: tokio::sync::Mutex::new(()),
                pending_updates,
                closed,
                close_emitted: std::sync::atomic::AtomicBool::new(false),
                telemetry: Arc::default(),
                hooks: Default::default(),
                state: Mutex::new(SessionState {
                    started: false,
                    closed: false,
                    agent_state: AgentState::Initializing,
                    user_state: UserState::Listening,
                    history: ChatContext::new(),
                    activity: None,
                    audio_output: None,
                    text_output: None,
                    audio_input_enabled: true,
                    audio_output_enabled: true,
                    recognition: None,
                    away_timer: None,
                    away_holds: 0,
                    error_counts: HashMap::new(),
                    usage: UsageCollector::default(),
                    turn_detection: TurnDetection::Auto,
                    realtime: None,
                    user_last_spoke: None,
                    aec_warmup_remaining: aec_warmup,
                    aec_warmup_until: None,
                    endpointing,
                    participant_watch: None,
                }),
            }),
        }
    }

    /// The session's events from now on, as a [`Stream`](futures::Stream). A receiver that
    /// reads too slowly (more than 1,024 events behind) loses the oldest ones and gets
    /// `Err(Lagged { missed })` in their place; the stream ends when the session is dropped.
    pub fn events(&self) -> crate::types::EventStream<SessionEvent> {
        crate::types::EventStream::new(self.inner.events.subscribe())
    }

    /// The same events as [`events`](Self::events) with their creation time (the reference's
    /// `created_at`).
    pub fn timed_events(&self) -> crate::types::EventStream<super::events::TimedSessionEvent> {
        crate::types::EventStream::new(self.subscribe_timed())
    }

    /// The crate's own raw subscription (a receiver handles `Lagged` itself).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    /// The crate's own raw subscription to the timed events. The channel is made on the first
    /// subscription (a 1,024-slot channel allocates its slots up front, about 0.19 MB per
    /// session), so sessions nobody times pay nothing.
    pub(crate) fn subscribe_timed(&self) -> broadcast::Receiver<super::events::TimedSessionEvent> {
        self.inner
            .timed_events
            .get_or_init(|| broadcast::channel(1024).0)
            .subscribe()
    }

    /// The options.
    pub fn options(&self) -> &SessionOptions {
        &self.inner.options
    }

    /// The session STT.
    pub fn stt(&self) -> Option<Arc<dyn Stt>> {
        self.inner.models.stt.clone()
    }
    /// The session VAD.
    pub fn vad(&self) -> Option<Arc<dyn Vad>> {
        self.inner.models.vad.clone()
    }
    /// The session LLM.
    pub fn llm(&self) -> Option<Arc<dyn Llm>> {
        self.inner.models.llm.clone()
    }
    /// The session TTS.
    pub fn tts(&self) -> Option<Arc<dyn Tts>> {
        self.inner.models.tts.clone()
    }
    /// Session-wide tools.
    pub fn tools(&self) -> Vec<FunctionTool> {
        self.inner.tools.clone()
    }
    /// Session data.
    pub fn userdata(&self) -> Userdata {
        self.inner.userdata.clone()
    }

    /// Starts the session with `agent` on `io`: recognition runs on the audio input (if any and
    /// a VAD or STT is set), the agent becomes active (`on_enter` runs), state becomes
    /// `listening`.
    pub async fn start(&self, agent: Agent, io: SessionIo) -> Result<(), SessionError> {
        if let Some(e) = self
            .inner
            .config_error
            .clone()
            .or_else(|| agent.config_error())
        {
            return Err(SessionError::Config { reason: e });
        }
        let turn_detection =
            self.resolve_turn_detection(self.inner.options.turn_handling.turn_detection.clone())?;
        {
            let mut st = self.inner.state.lock();
            if st.started {
                return Err(SessionError::AlreadyStarted);
            }
            st.started = true;
            st.audio_output = io.audio_output;
            st.text_output = io.text_output;
            st.turn_detection = turn_detection;
        }
        if let Some(model) = self.inner.models.realtime.clone() {
            match RealtimeLink::open(self, &model).await {
                Ok(link) => self.inner.state.lock().realtime = Some(Arc::new(link)),
                Err(e) => {
                    self.inner.state.lock().started = false;
                    return Err(SessionError::Realtime {
                        reason: e.to_string(),
                    });
                }
            }
        }
        if self.inner.options.turn_handling.interruption.mode == InterruptionMode::Adaptive {
            tracing::info!(
                "adaptive interruption is a LiveKit Cloud service; using VAD interruptions"
            );
        }
        self.inner.mcp_servers.start_all(self).await;
        let activity = Activity::new(self.clone(), agent);
        self.activate(activity.clone(), Activation::Start).await;
        if let Some(input) = io.audio_input {
            // Recorded as read, when the session records a tape (`record_tape`).
            let input = self.inner.telemetry.tape_input(input);
            // The AEC warm-up depends on who the input comes from (none for outbound SIP).
            self.watch_participant(input.participant_updates());
            // Every input (room, console, WAV, user-built) behind the overload-shedding queue
            // (issue 15 item 8; a no-op for an input that is already bounded).
            let input = input.bounded(crate::io::bounded::DEFAULT_MAX_BUFFERED_INPUT);
            // Input filters (noise suppression, AGC) run before VAD and STT.
            let input = match &self.inner.options.audio_filter {
                Some(factory) => input.filtered_by(factory),
                None => input,
            };
            if self.inner.models.vad.is_some()
                || self.inner.models.stt.is_some()
                || self.inner.models.realtime.is_some()
                || activity.agent().stt().is_some()
            {
                let handle = recognition::spawn(self.clone(), input);
                self.inner.state.lock().recognition = Some(handle);
            } else {
                tracing::warn!("audio input given but no VAD or STT: user audio is ignored");
            }
        }
        self.set_agent_state(AgentState::Listening);
        #[cfg(feature = "server")]
        crate::worker::JobContext::note_session_started(); // job-start metric
        Ok(())
    }

    fn resolve_turn_detection(&self, td: TurnDetection) -> Result<TurnDetection, SessionError> {
        self.resolve_turn_detection_with(td, self.inner.models.stt.is_some())
    }

    /// Resolves `td` for a pipeline with an STT or not (an agent's own STT counts for its own
    /// turn detection).
    pub(crate) fn resolve_turn_detection_with(
        &self,
        td: TurnDetection,
        has_stt: bool,
    ) -> Result<TurnDetection, SessionError> {
        let m = &self.inner.models;
        let server_td = m
            .realtime
            .as_ref()
            .is_some_and(|r| r.capabilities().turn_detection);
        if server_td && !self.inner.options.turn_handling.interruption.enabled {
            return Err(SessionError::Config {
                reason:
                    "a realtime model with server-side turn detection needs interruptions enabled; \
                 disable the model's turn detection and use VAD to turn interruptions off"
                        .into(),
            });
        }
        Ok(match td {
            TurnDetection::Auto if server_td => TurnDetection::RealtimeLlm,
            TurnDetection::RealtimeLlm if server_td => TurnDetection::RealtimeLlm,
            TurnDetection::Auto => {
                if let (Some(det), true) = (m.turn_detector.clone(), has_stt) {
                    TurnDetection::Model(det)
                } else if m.vad.is_some() {
                    TurnDetection::Vad
                } else if has_stt {
                    TurnDetection::Stt
                } else {
                    TurnDetection::Manual
                }
            }
            TurnDetection::Model(det) if !has_stt => {
                tracing::warn!(detector = %det.label(), "the turn detector needs an STT; using VAD endpointing");
                TurnDetection::Vad
            }
            TurnDetection::Vad if m.vad.is_none() => {
                tracing::warn!("turn_detection=vad without a VAD; using STT endpointing");
                TurnDetection::Stt
            }
            TurnDetection::RealtimeLlm => {
                return Err(SessionError::Config { reason: "realtime_llm turn detection needs a realtime model with server-side turn detection".into(), })
            }
            other => other,
        })
    }

    /// Closes the session now: speech stops, recognition stops, `close` is emitted, state goes
    /// back to `initializing`.
    pub async fn close(&self) {
        self.close_with(CloseReason::UserInitiated, None).await;
    }

    /// Lets queued speech finish, then closes.
    pub async fn drain(&self) {
        if let Some(activity) = self.current_activity() {
            activity.wait_idle().await;
        }
        self.close().await;
    }

    pub(crate) async fn close_with(&self, reason: CloseReason, error: Option<String>) {
        let (activity, recognition, realtime) = {
            let mut st = self.inner.state.lock();
            if st.closed || !st.started {
                return;
            }
            st.closed = true;
            st.away_timer = None;
            st.participant_watch = None;
            (
                st.activity.take(),
                st.recognition.take(),
                st.realtime.take(),
            )
        };
        if let Some(activity) = activity.as_ref() {
            activity.close();
        }
        // What the user was saying when the session closed: wait (bounded) for its final
        // transcript and commit it before the close event, as the reference does (not when
        // closing on errors).
        if let (Some(r), true) = (recognition.as_ref(), reason != CloseReason::Error) {
            let timeout = self.inner.options.session_close_transcript_timeout;
            let transcript = r.trailing_transcript(timeout).await;
            if !transcript.trim().is_empty() {
                let item = ChatItem::Message(crate::llm::ChatMessage::new(
                    crate::llm::ChatRole::User,
                    transcript,
                ));
                if let Some(activity) = activity.as_ref() {
                    activity.agent().push_chat_item(item.clone());
                }
                self.add_history_item(item);
            }
        }
        drop(recognition);
        if let Some(link) = realtime {
            link.session.close().await;
        }
        if let Some(out) = self.audio_output() {
            out.clear_buffer();
        }
        self.inner.mcp_servers.close_all().await;
        if let Some(activity) = activity {
            activity.agent().mcp_servers().close_all().await;
        }
        self.set_agent_state(AgentState::Initializing);
        self.emit(SessionEvent::Close { reason, error });
        self.inner
            .close_emitted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.closed.send_replace(true);
    }

    /// Waits until the session closed (by `close`, `drain`, errors or the end of the input).
    pub async fn wait_closed(&self) {
        let mut rx = self.inner.closed.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Whether the session is running.
    pub fn is_running(&self) -> bool {
        let st = self.inner.state.lock();
        st.started && !st.closed
    }

    /// Speaks `text` (through TTS unless `options.audio` gives the audio).
    pub fn say(
        &self,
        text: impl Into<SayText>,
        options: SayOptions,
    ) -> Result<SpeechHandle, SessionError> {
        let activity = self.current_activity().ok_or(SessionError::NotRunning)?;
        Ok(activity.say(text.into(), options))
    }

    /// Asks the LLM for a reply.
    pub fn generate_reply(&self, options: ReplyOptions) -> Result<SpeechHandle, SessionError> {
        let activity = self.current_activity().ok_or(SessionError::NotRunning)?;
        Ok(activity.generate_reply(options, SpeechSource::GenerateReply, true))
    }

    /// Interrupts the current and queued speech (even uninterruptible speech).
    pub fn interrupt(&self) {
        if let Some(activity) = self.current_activity() {
            activity.interrupt_all();
        }
    }

    /// Ends the user's turn now (manual turn detection, push-to-talk) and returns its
    /// transcript.
    pub async fn commit_user_turn(&self, options: CommitOptions) -> Result<String, SessionError> {
        let cmd = {
            let st = self.inner.state.lock();
            st.recognition.as_ref().map(|r| r.commands.clone())
        };
        let cmd = cmd.ok_or_else(|| SessionError::Commit {
            reason: "no audio recognition is running".into(),
        })?;
        let (tx, rx) = oneshot::channel();
        cmd.send(RecognitionCommand::Commit { options, reply: tx })
            .map_err(|_| SessionError::Commit {
                reason: "recognition stopped".into(),
            })?;
        rx.await.map_err(|_| SessionError::Commit {
            reason: "recognition stopped".into(),
        })
    }

    /// Discards the user's buffered turn (transcript and pending end of turn).
    pub fn clear_user_turn(&self) {
        let st = self.inner.state.lock();
        if let Some(r) = st.recognition.as_ref() {
            let _ = r.commands.send(RecognitionCommand::Clear);
        }
    }

    /// Makes `agent` the active agent (the old one's `on_exit` runs first, then an
    /// `AgentHandoff` item is added and the new one's `on_enter` runs). Returns at once; the
    /// switch happens in the background.
    pub fn update_agent(&self, agent: Agent) {
        let session = self.clone();
        self.inner.pending_updates.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            let activity = Activity::new(session.clone(), agent);
            session.activate(activity, Activation::Handoff).await;
            session
                .inner
                .pending_updates
                .send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    /// The one code path that changes the active agent. Returns the agent it replaced.
    ///
    /// - `Start`: the first agent;
    /// - `Handoff`: the old activity drains (`on_exit`, queued speech), an `AgentHandoff` item
    ///   is recorded, the new activity starts (`on_enter`), the old one closes;
    /// - `Task`: an [`AgentTask`](super::AgentTask)'s agent takes over; the old activity only
    ///   stops scheduling;
    /// - `Resume`: the task ended (its activity closed by the caller); the paused activity
    ///   schedules again.
    pub(crate) async fn activate(&self, activity: Activity, how: Activation) -> Option<Agent> {
        let _guard = match how {
            Activation::Handoff => Some(self.inner.update_lock.lock().await),
            _ => None,
        };
        let old = self.current_activity();
        match how {
            Activation::Handoff => {
                if let Some(old) = old.as_ref() {
                    old.drain_for_handoff().await;
                }
            }
            Activation::Task => {
                if let Some(old) = old.as_ref() {
                    old.pause_scheduling();
                }
            }
            Activation::Start | Activation::Resume => {}
        }
        {
            let mut st = self.inner.state.lock();
            if st.closed || !st.started {
                return None;
            }
            st.activity = Some(activity.clone());
        }
        let old_agent = old.as_ref().map(|a| a.agent().clone());
        let agent = activity.agent().clone();
        if matches!(how, Activation::Handoff | Activation::Task) {
            let handoff = ChatItem::AgentHandoff(crate::llm::AgentHandoff {
                id: crate::llm::chat_context::new_item_id("item"),
                old_agent_id: old_agent.as_ref().map(|a| a.id().to_string()),
                new_agent_id: agent.id().to_string(),
                created_at: crate::llm::chat_context::now_secs(),
            });
            agent.push_chat_item(handoff.clone());
            self.add_history_item(handoff);
        }
        match how {
            Activation::Start => activity.start(true),
            Activation::Handoff => {
                if let Some(old) = old.as_ref() {
                    old.close();
                }
                activity.start(true);
            }
            Activation::Task => activity.start(true),
            Activation::Resume => activity.resume_scheduling(),
        }
        if !matches!(how, Activation::Start) {
            if let Some(r) = self.inner.state.lock().recognition.as_ref() {
                let _ = r.commands.send(RecognitionCommand::AgentChanged(agent));
            }
        }
        old_agent
    }

    /// Changes turn handling while the session runs (the reference's `update_options`):
    /// endpointing delays and turn detection, from the next turn on. They apply at once to the
    /// active agent (even over its own [`AgentTurnHandling`](super::AgentTurnHandling), as the
    /// reference's), and survive handoffs: a later agent uses them unless it overrides them.
    ///
    /// ```no_run
    /// # use livekit_agents::voice::{AgentSession, EndpointingOptions, UpdateOptions};
    /// # use std::time::Duration;
    /// # fn demo(session: &AgentSession) {
    /// session
    ///     .update_options(UpdateOptions::default().with_endpointing(
    ///         EndpointingOptions::default().with_min_delay(Duration::from_millis(800)),
    ///     ))
    ///     .unwrap();
    /// # }
    /// ```
    pub fn update_options(&self, update: UpdateOptions) -> Result<(), SessionError> {
        let turn_detection = match update.turn_detection {
            Some(td) => Some(self.resolve_turn_detection(td)?),
            None => None,
        };
        let mut st = self.inner.state.lock();
        if let Some(td) = turn_detection.clone() {
            st.turn_detection = td;
        }
        if let Some(endpointing) = update.endpointing {
            st.endpointing = endpointing;
        }
        if let Some(r) = st.recognition.as_ref() {
            let _ = r.commands.send(RecognitionCommand::UpdateOptions {
                endpointing: update.endpointing,
                turn_detection,
            });
        }
        Ok(())
    }

    /// The conversation so far (all agents).
    pub fn history(&self) -> ChatContext {
        self.inner.state.lock().history.clone()
    }

    /// The speech playing now.
    pub fn current_speech(&self) -> Option<SpeechHandle> {
        self.current_activity().and_then(|a| a.current_speech())
    }

    /// The active agent.
    pub fn current_agent(&self) -> Option<Agent> {
        self.current_activity().map(|a| a.agent().clone())
    }

    /// The agent state.
    pub fn agent_state(&self) -> AgentState {
        self.inner.state.lock().agent_state
    }

    /// The user state.
    pub fn user_state(&self) -> UserState {
        self.inner.state.lock().user_state
    }

    /// Turns user audio on or off (off: frames are dropped before VAD and STT).
    pub fn set_audio_input_enabled(&self, enabled: bool) {
        self.inner.state.lock().audio_input_enabled = enabled;
    }

    /// Whether user audio is used.
    pub fn audio_input_enabled(&self) -> bool {
        self.inner.state.lock().audio_input_enabled
    }

    /// Turns agent audio on or off (off: replies are text-only).
    pub fn set_audio_output_enabled(&self, enabled: bool) {
        self.inner.state.lock().audio_output_enabled = enabled;
    }

    /// Whether agent audio is played.
    pub fn audio_output_enabled(&self) -> bool {
        self.inner.state.lock().audio_output_enabled
    }

    /// Reports a DTMF tone received from a SIP participant: emits
    /// [`SessionEvent::SipDtmfReceived`] (what `GetDtmfTask` and other listeners read). The room
    /// I/O calls this for the room's `sip_dtmf_received` events; tests and other transports can
    /// call it too.
    pub fn push_sip_dtmf(
        &self,
        code: u32,
        digit: impl Into<String>,
        participant_identity: Option<String>,
    ) {
        self.emit(SessionEvent::SipDtmfReceived {
            code,
            digit: digit.into(),
            participant_identity,
        });
    }

    /// Usage summed over the session.
    pub fn usage(&self) -> UsageSummary {
        self.inner.state.lock().usage.summary()
    }
}

mod internals;
mod turn_options;
mod types;

pub(crate) use types::Models;
pub use types::{
    AgentSessionBuilder, CommitOptions, ReplyOptions, SayOptions, SayText, SessionError, SessionIo,
    UpdateOptions,
};
