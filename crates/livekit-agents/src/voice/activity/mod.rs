//! The activity of the active agent: one event loop per agent.
//!
//! Everything that changes what the agent does arrives as an [`ActivityEvent`] on one queue:
//! user commands (`say`, `generate_reply`, scheduling pauses around agent switches), recognition
//! events (speech started/ended, VAD inference, transcripts, end of turn), realtime-model
//! events, and what spawned tasks report back (the user-turn hook finished, playback started,
//! words spoken, a generation step played, tools executed, a speech finished, a speech handle
//! became done). Interruption and close travel on a priority lane ([`Control`]) that the loop
//! polls first. The loop owns the activity's state ([`event_loop::ActivityLoop`]); the rest of
//! the crate reads a published snapshot ([`ActivityView`]) and never decides on shared state.
//!
//! - this module: the [`Activity`] handle (sends events, reads the view), the event types;
//! - `event_loop`: the loop, its state, the scheduler and the speech lifecycle;
//! - `interruption`: recognition events deciding interruptions and false-interruption pauses;
//! - `tools`: the one tail after a step's tools ran (record, answer, hand off, finish);
//! - `turn`: speech creation (`say`, `generate_reply`, user turns, preemptive generation,
//!   realtime generations), all through `ActivityLoop::new_speech`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::agent::{Agent, AgentContext};
use super::events::SpeechSource;
use super::generation::SayRequest;
use super::playout::Spoken;
use super::realtime;
use super::session::{AgentSession, ReplyOptions, SayOptions, SayText};
use super::speech_handle::SpeechHandle;
use super::tool_execution::ToolResult;
use crate::llm::realtime::{GenerationCreated, RealtimeSession};
use crate::llm::{ChatContext, ChatItem, ChatMessage, ChatRole, FunctionTool, ToolChoice};

/// What recognition knows when it ends a user turn.
#[derive(Debug, Clone)]
pub(crate) struct EndOfTurnInfo {
    pub transcript: String,
    pub skip_reply: bool,
    pub end_of_utterance_delay: Duration,
    pub transcription_delay: Duration,
    pub speech_duration: Duration,
    /// When the user stopped speaking (for end-to-end latency).
    pub stopped_speaking_at: Option<Instant>,
}

/// What the user-turn hook task reports back.
pub(crate) struct TurnHookDone {
    pub info: EndOfTurnInfo,
    pub msg: ChatMessage,
    pub turn_ctx: ChatContext,
    pub stop_response: bool,
    pub hook_delay: Duration,
}

/// How a speech continues after its tools ran.
pub(crate) enum FollowUp {
    /// A pipeline (LLM) step with this tool choice.
    Pipeline(Option<ToolChoice>),
    /// A realtime-model generation.
    Realtime(Arc<dyn RealtimeSession>),
}

/// Everything the activity loop reacts to, in the order it arrived (see [`Control`] for the
/// priority lane).
pub(crate) enum ActivityEvent {
    // ---- user commands ----
    /// `session.say`: the handle was created (and announced) by the caller.
    Say {
        handle: SpeechHandle,
        request: SayRequest,
    },
    /// `session.generate_reply`.
    GenerateReply {
        handle: SpeechHandle,
        options: ReplyOptions,
    },
    /// An agent task or a handoff took over: stop scheduling (and, when draining, drop the
    /// preemptive generation).
    PauseScheduling {
        drain: bool,
    },
    /// The agent task ended: schedule again.
    ResumeScheduling,
    // ---- recognition ----
    StartOfSpeech,
    EndOfSpeech,
    VadInference {
        speech_duration: Duration,
        words: usize,
        stt_enabled: bool,
    },
    /// A transcript arrived and there is no VAD.
    TranscriptActivity {
        words: usize,
    },
    FinalTranscript(String),
    Preemptive {
        transcript: String,
        speech_duration: Duration,
    },
    EndOfTurn(EndOfTurnInfo),
    /// A message the user said that is already final (a realtime model's transcription).
    CommitUserMessage(ChatMessage),
    /// The realtime model heard the user start speaking.
    RealtimeSpeechStarted,
    /// The realtime model started a reply by itself.
    RealtimeGeneration(GenerationCreated),
    /// `transcription_timeout`: the VAD heard `speech_duration` of speech from
    /// `speech_started_at` on, and no transcript came.
    TranscriptionTimeout {
        speech_duration: Duration,
        speech_started_at: Instant,
    },
    // ---- spawned tasks reporting back ----
    TurnHookDone(Box<TurnHookDone>),
    /// `on_user_turn_exceeded` returned.
    TurnExceededDone,
    PlaybackStarted {
        handle: SpeechHandle,
        llm_ttft: Option<Duration>,
        tts_ttfb: Option<Duration>,
    },
    /// Words of `handle` were played (or shown): record them.
    AssistantSpoken {
        handle: SpeechHandle,
        spoken: Spoken,
    },
    /// The current generation step of `handle` finished playing; tools may still run.
    StepPlayed {
        handle: SpeechHandle,
        tools_running: bool,
    },
    /// The tools of a step returned.
    ToolsExecuted {
        handle: SpeechHandle,
        results: Vec<ToolResult>,
        follow_up: FollowUp,
    },
    /// The speech's task ended.
    SpeechFinished(SpeechHandle),
    /// A speech handle became done (its task, an interruption timeout, or a discard).
    SpeechDone(SpeechHandle),
    /// A session hook stopped holding speech (`voice::hooks`): the floor may be given.
    HoldReleased,
}

/// The priority lane: polled before the main queue.
pub(crate) enum Control {
    /// `session.interrupt()`: every speech, even uninterruptible ones.
    InterruptAll,
    /// The activity ends (session closed or the agent replaced).
    Close,
}

/// The loop's published state, for readers outside the loop.
#[derive(Clone, Default)]
pub(crate) struct ActivityView {
    /// The speech holding the floor.
    pub current: Option<SpeechHandle>,
    /// A speech (other than the current one) waits for the floor.
    pub queued: bool,
    /// No speech queued, holding the floor or running tools.
    pub idle: bool,
    pub closed: bool,
    /// Commands sent but not handled by the loop yet.
    pub pending: usize,
}

pub(crate) struct ActivityInner {
    session: AgentSession,
    agent: Agent,
    events: mpsc::UnboundedSender<ActivityEvent>,
    control: mpsc::UnboundedSender<Control>,
    receivers: Mutex<
        Option<(
            mpsc::UnboundedReceiver<ActivityEvent>,
            mpsc::UnboundedReceiver<Control>,
        )>,
    >,
    view: watch::Sender<ActivityView>,
    /// Whether this activity paused the audio output (false-interruption handling); the
    /// playout reads it to stop the transcript clock.
    output_paused: watch::Sender<bool>,
    event_loop: Mutex<Option<AbortOnDropHandle<()>>>,
}

/// The handle of one agent's activity. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Activity {
    inner: Arc<ActivityInner>,
}

impl Activity {
    pub(crate) fn new(session: AgentSession, agent: Agent) -> Self {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let (view, _) = watch::channel(ActivityView {
            idle: true,
            ..Default::default()
        });
        let (output_paused, _) = watch::channel(false);
        Self {
            inner: Arc::new(ActivityInner {
                session,
                agent,
                events,
                control,
                receivers: Mutex::new(Some((events_rx, control_rx))),
                view,
                output_paused,
                event_loop: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn agent(&self) -> &Agent {
        &self.inner.agent
    }

    pub(crate) fn session(&self) -> &AgentSession {
        &self.inner.session
    }

    pub(crate) fn context(&self) -> AgentContext {
        AgentContext {
            session: self.inner.session.clone(),
            agent: self.inner.agent.clone(),
        }
    }

    /// Sends an event to the loop (dropped once the loop ended).
    pub(crate) fn send(&self, event: ActivityEvent) {
        let _ = self.inner.events.send(event);
    }

    /// Sends a command whose effect readers must see at once (the view counts it as pending
    /// until the loop handled it, so `wait_idle` does not return before it).
    fn command(&self, event: ActivityEvent) {
        self.inner.view.send_modify(|v| v.pending += 1);
        if let Err(mpsc::error::SendError(event)) = self.inner.events.send(event) {
            self.inner
                .view
                .send_modify(|v| v.pending = v.pending.saturating_sub(1));
            // The loop ended (the activity closed): a speech asked for now never plays, and
            // its waiters must not hang.
            if let ActivityEvent::Say { handle, .. } | ActivityEvent::GenerateReply { handle, .. } =
                event
            {
                handle.interrupt_force();
                handle.mark_done();
            }
        }
    }

    /// Starts the loop and (if `enter`) runs `on_enter`.
    pub(crate) fn start(&self, enter: bool) {
        self.inner.agent.attach(&self.inner.session);
        crate::stt::context::bind(&self.inner.session, &self.inner.agent);
        if let Some((events, control)) = self.inner.receivers.lock().take() {
            let event_loop = event_loop::ActivityLoop::new(self.clone(), events, control);
            *self.inner.event_loop.lock() =
                Some(AbortOnDropHandle::new(tokio::spawn(event_loop.run())));
        }
        if let Some(link) = self.inner.session.realtime_link() {
            let this = self.clone();
            tokio::spawn(async move { realtime::sync_agent(&this, &link.session).await });
        }
        let own_servers = self.inner.agent.mcp_servers().clone();
        if enter || !own_servers.is_empty() {
            let ctx = self.context();
            let behavior = self.inner.agent.behavior();
            let session = self.inner.session.clone();
            // The agent's own MCP servers connect before `on_enter`, so its first reply has
            // their tools (connecting an already connected server does nothing).
            tokio::spawn(async move {
                own_servers.start_all(&session).await;
                if enter {
                    let agent = ctx.agent.clone();
                    super::agent::run_on_enter(&agent, behavior.on_enter(ctx)).await;
                }
            });
        }
    }

    /// Wakes the loop after a session hook released held speech.
    pub(crate) fn wake(&self) {
        self.send(ActivityEvent::HoldReleased);
    }

    /// Ends the activity: speeches are interrupted, nothing new is scheduled (priority lane).
    pub(crate) fn close(&self) {
        self.inner.view.send_modify(|v| v.closed = true);
        let _ = self.inner.control.send(Control::Close);
        let own_servers = self.inner.agent.mcp_servers().clone();
        if !own_servers.is_empty() {
            tokio::spawn(async move { own_servers.close_all().await });
        }
    }

    /// Interrupts every speech (forced), as `session.interrupt()` (priority lane).
    pub(crate) fn interrupt_all(&self) {
        let _ = self.inner.control.send(Control::InterruptAll);
    }

    /// Before a handoff: `on_exit` runs (it may still speak), then queued speech finishes.
    pub(crate) async fn drain_for_handoff(&self) {
        self.inner.agent.behavior().on_exit(self.context()).await;
        self.wait_idle().await;
        self.command(ActivityEvent::PauseScheduling { drain: true });
    }

    /// Stops scheduling new speeches (an [`AgentTask`](super::AgentTask) took over).
    pub(crate) fn pause_scheduling(&self) {
        self.command(ActivityEvent::PauseScheduling { drain: false });
    }

    /// Resumes scheduling after a task.
    pub(crate) fn resume_scheduling(&self) {
        self.command(ActivityEvent::ResumeScheduling);
    }

    // ---- the published view ----

    fn view(&self) -> ActivityView {
        self.inner.view.borrow().clone()
    }

    pub(crate) fn current_speech(&self) -> Option<SpeechHandle> {
        self.view().current
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.view.borrow().closed
    }

    pub(crate) fn is_idle(&self) -> bool {
        let v = self.inner.view.borrow();
        v.idle && v.pending == 0
    }

    /// Waits until no speech is queued or running (or the activity closed).
    pub(crate) async fn wait_idle(&self) {
        let mut rx = self.inner.view.subscribe();
        let _ = rx
            .wait_for(|v| v.closed || (v.idle && v.pending == 0))
            .await;
    }

    /// Whether the output is paused by a possible false interruption (the transcript clock
    /// stops meanwhile).
    pub(crate) fn output_paused(&self) -> watch::Receiver<bool> {
        self.inner.output_paused.subscribe()
    }

    /// Resumes the audio output if it was paused (a playout interrupted while paused releases
    /// its writer).
    pub(crate) fn resume_output(&self) {
        if let Some(o) = self.inner.session.audio_output() {
            o.resume();
        }
        self.inner.output_paused.send_replace(false);
    }

    /// Whether user audio should be replaced by silence before the STT: an uninterruptible
    /// speech plays, or the agent speaks during the AEC warm-up (its echo is not transcribed).
    pub(crate) fn discard_stt_audio(&self) -> bool {
        let session = &self.inner.session;
        if session.agent_state() == super::events::AgentState::Speaking
            && session.aec_warmup_active()
        {
            return true;
        }
        let opts = session.options().turn_handling.interruption;
        opts.discard_audio_if_uninterruptible
            && self
                .current_speech()
                .is_some_and(|s| !s.done() && !s.allow_interruptions())
    }

    // ---- user commands ----

    pub(crate) fn say(&self, text: SayText, options: SayOptions) -> SpeechHandle {
        let handle = self.new_speech(
            options.allow_interruptions,
            options.priority,
            SpeechSource::Say,
            true,
        );
        let request = SayRequest {
            text,
            audio: options.audio,
            add_to_chat_ctx: options.add_to_chat_ctx,
        };
        self.command(ActivityEvent::Say {
            handle: handle.clone(),
            request,
        });
        handle
    }

    pub(crate) fn generate_reply(
        &self,
        options: ReplyOptions,
        source: SpeechSource,
        user_initiated: bool,
    ) -> SpeechHandle {
        let mut options = options;
        // The reference: a reply requested from inside a tool defaults to no tool calls.
        if options.tool_choice.is_none() && crate::voice::tool_execution::in_tool() {
            options.tool_choice = Some(ToolChoice::None);
        }
        let handle = self.new_speech(
            options.allow_interruptions,
            options.priority,
            source,
            user_initiated,
        );
        self.command(ActivityEvent::GenerateReply {
            handle: handle.clone(),
            options,
        });
        handle
    }

    /// Creates a speech and announces it (`SpeechCreated`): the one place speeches are made,
    /// with the agent's (or the session's) interruption setting unless `allow_interruptions`
    /// overrides it. (A preemptive generation's speech is announced when the turn uses it.)
    pub(crate) fn new_speech(
        &self,
        allow_interruptions: Option<bool>,
        priority: super::speech_handle::SpeechPriority,
        source: SpeechSource,
        user_initiated: bool,
    ) -> SpeechHandle {
        let handle = SpeechHandle::new(self.allow_interruptions(allow_interruptions), priority);
        self.inner
            .session
            .emit(super::events::SessionEvent::SpeechCreated {
                user_initiated,
                source,
                speech_handle: handle.clone(),
            });
        handle
    }

    /// Preemptive generation for this agent: its own values over the session's.
    pub(crate) fn preemptive_options(&self) -> super::options::PreemptiveGenerationOptions {
        self.inner.agent.turn_handling().preemptive_generation(
            self.inner
                .session
                .options()
                .turn_handling
                .preemptive_generation,
        )
    }

    /// Whether the user may interrupt this agent (`requested`, else the agent's setting, else
    /// the session's).
    pub(crate) fn allow_interruptions(&self, requested: Option<bool>) -> bool {
        requested
            .or(self.inner.agent.allow_interruptions())
            .unwrap_or(
                self.inner
                    .session
                    .options()
                    .turn_handling
                    .interruption
                    .enabled,
            )
    }

    // ---- recognition (each hook is one event) ----

    pub(crate) fn on_start_of_speech(&self) {
        self.send(ActivityEvent::StartOfSpeech);
    }

    pub(crate) fn on_end_of_speech(&self) {
        self.send(ActivityEvent::EndOfSpeech);
    }

    /// VAD says the user has spoken for `speech_duration`; `words` is the current transcript's
    /// word count.
    pub(crate) fn on_vad_inference(
        &self,
        speech_duration: Duration,
        words: usize,
        stt_enabled: bool,
    ) {
        self.send(ActivityEvent::VadInference {
            speech_duration,
            words,
            stt_enabled,
        });
    }

    /// A transcript arrived and there is no VAD.
    pub(crate) fn on_transcript_activity(&self, words: usize) {
        self.send(ActivityEvent::TranscriptActivity { words });
    }

    pub(crate) fn on_final_transcript(&self, transcript: &str) {
        self.send(ActivityEvent::FinalTranscript(transcript.to_string()));
    }

    /// A final (or preflight) transcript arrived before the turn ended: start the reply early.
    pub(crate) fn on_preemptive_generation(&self, transcript: &str, speech_duration: Duration) {
        self.send(ActivityEvent::Preemptive {
            transcript: transcript.to_string(),
            speech_duration,
        });
    }

    /// The VAD heard the user but no transcript came in time (`transcription_timeout`).
    pub(crate) fn on_transcription_timeout(
        &self,
        speech_duration: Duration,
        speech_started_at: Instant,
    ) {
        self.send(ActivityEvent::TranscriptionTimeout {
            speech_duration,
            speech_started_at,
        });
    }

    /// Recognition ended the user's turn. Returns whether the turn is taken (the loop then
    /// answers it): not when empty, when the activity closed, or when the user said fewer
    /// than `min_words` words over the agent's speech.
    pub(crate) fn on_end_of_turn(&self, info: EndOfTurnInfo) -> bool {
        if info.transcript.trim().is_empty() || self.is_closed() {
            return false;
        }
        let opts = self.inner.session.options().turn_handling.interruption;
        if opts.min_words > 0 {
            let speaking = self.current_speech().is_some_and(|s| !s.done());
            if speaking && info.transcript.split_whitespace().count() < opts.min_words {
                return false;
            }
        }
        self.command(ActivityEvent::EndOfTurn(info));
        true
    }

    // ---- shared helpers (pure) ----

    /// The tools of this agent plus the session's.
    pub(crate) fn all_tools(&self) -> Vec<FunctionTool> {
        let mut tools = self.inner.agent.tools();
        for t in self.inner.session.tools() {
            if !tools.iter().any(|x| x.name() == t.name()) {
                tools.push(t);
            }
        }
        self.mcp_servers().append_tools(&mut tools);
        self.inner.session.inner.hooks.append_tools(&mut tools);
        tools
    }

    /// The MCP servers in effect: the agent's if it has any, else the session's.
    fn mcp_servers(&self) -> &crate::mcp::ServerList {
        let own = self.inner.agent.mcp_servers();
        if own.is_empty() {
            &self.inner.session.inner.mcp_servers
        } else {
            own
        }
    }

    /// The context sent to the LLM: instructions first, then `items`, then per-reply
    /// instructions.
    pub(crate) fn llm_context(
        &self,
        base: &ChatContext,
        extra_instructions: Option<&str>,
    ) -> ChatContext {
        let mut ctx = ChatContext::new();
        let instructions = self.inner.agent.instructions();
        // Added only if missing (a caller-given context may already carry them).
        let present = base.items().iter().any(|i| {
            matches!(i, ChatItem::Message(m)
                if matches!(m.role, ChatRole::System | ChatRole::Developer)
                    && m.text_content().as_deref() == Some(instructions.as_str()))
        });
        if !instructions.is_empty() && !present {
            ctx.add_message(ChatRole::System, instructions);
        }
        for item in base.items() {
            ctx.push(item.clone());
        }
        if let Some(extra) = extra_instructions {
            ctx.add_message(ChatRole::System, extra);
        }
        ctx
    }
}

mod event_loop;
mod interruption;
mod tools;
mod turn;
