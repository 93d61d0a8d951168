//! The activity of the active agent: it receives recognition hooks (speech started, transcript,
//! end of turn), decides interruptions, runs the user-turn hook, and schedules speeches one at a
//! time by priority (FIFO within a priority).

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::agent::{Agent, AgentContext, UserTurnExceeded};
use super::events::{AgentState, SessionEvent, SpeechSource};
use super::generation::{self, ReplyRequest, SayRequest};
use super::options::TurnDetection;
use super::realtime;
use super::session::{AgentSession, ReplyOptions, SayOptions, SayText};
use super::speech_handle::{SpeechHandle, SpeechPriority};
use crate::llm::{ChatContext, ChatItem, ChatMessage, ChatRole, FunctionTool, ToolChoice};
use crate::metrics::{AgentMetrics, EouMetrics};

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

struct Queued {
    priority: SpeechPriority,
    seq: u64,
    handle: SpeechHandle,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Max-heap: higher priority first, then lower sequence number (FIFO).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

struct Preemptive {
    handle: SpeechHandle,
    transcript: String,
    turn_ctx: ChatContext,
    tool_names: Vec<String>,
    _task: AbortOnDropHandle<()>,
}

struct PausedSpeech {
    handle: SpeechHandle,
    timer: Option<AbortOnDropHandle<()>>,
}

#[derive(Default)]
struct ActState {
    queue: BinaryHeap<Queued>,
    seq: u64,
    current: Option<SpeechHandle>,
    /// Scheduled speeches not done yet.
    speeches: Vec<SpeechHandle>,
    paused: Option<PausedSpeech>,
    scheduling_paused: bool,
    closed: bool,
    preemptive: Option<Preemptive>,
    preemptive_attempts: u32,
    turn_words: usize,
    turn_duration: Duration,
    turn_transcript: String,
    last_playout_end: Option<Instant>,
    /// When the user stopped speaking in the turn being answered (e2e latency).
    pending_user_stop: Option<Instant>,
    pending_eou_delay: Option<Duration>,
}

pub(crate) struct ActivityInner {
    session: AgentSession,
    agent: Agent,
    state: Mutex<ActState>,
    wake: Notify,
    changes: watch::Sender<u64>,
    /// Whether this activity paused the audio output (false-interruption handling).
    output_paused: watch::Sender<bool>,
    scheduler: Mutex<Option<AbortOnDropHandle<()>>>,
    turn_lock: tokio::sync::Mutex<()>,
}

/// The running state of one agent. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Activity {
    inner: Arc<ActivityInner>,
}

impl Activity {
    pub(crate) fn new(session: AgentSession, agent: Agent) -> Self {
        let (changes, _) = watch::channel(0);
        let (output_paused, _) = watch::channel(false);
        Self {
            inner: Arc::new(ActivityInner {
                session,
                agent,
                state: Mutex::new(ActState::default()),
                wake: Notify::new(),
                changes,
                output_paused,
                scheduler: Mutex::new(None),
                turn_lock: tokio::sync::Mutex::new(()),
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

    /// Starts the scheduler and (if `enter`) runs `on_enter`.
    pub(crate) fn start(&self, enter: bool) {
        self.inner.agent.attach(&self.inner.session);
        let this = self.clone();
        *self.inner.scheduler.lock() = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            this.scheduling_loop().await;
        })));
        if let Some(link) = self.inner.session.realtime_link() {
            let this = self.clone();
            tokio::spawn(async move { realtime::sync_agent(&this, &link.session).await });
        }
        if enter {
            let ctx = self.context();
            let behavior = self.inner.agent.behavior();
            tokio::spawn(async move { behavior.on_enter(ctx).await });
        }
    }

    /// Stops everything: speeches are interrupted, the scheduler ends.
    pub(crate) fn close(&self) {
        let speeches = {
            let mut st = self.inner.state.lock();
            st.closed = true;
            st.queue.clear();
            st.preemptive = None;
            st.paused = None;
            std::mem::take(&mut st.speeches)
        };
        for s in speeches {
            s.interrupt_force();
        }
        self.release_paused_output();
        self.inner.scheduler.lock().take();
        self.inner.wake.notify_one();
        self.bump();
    }

    /// Before a handoff: `on_exit` runs (it may still speak), then queued speech finishes.
    pub(crate) async fn drain_for_handoff(&self) {
        self.inner.agent.behavior().on_exit(self.context()).await;
        self.wait_idle().await;
        let mut st = self.inner.state.lock();
        st.scheduling_paused = true;
        st.preemptive = None;
    }

    /// Stops scheduling new speeches (an [`AgentTask`](super::AgentTask) took over).
    pub(crate) fn pause_scheduling(&self) {
        self.inner.state.lock().scheduling_paused = true;
    }

    /// Resumes scheduling after a task.
    pub(crate) fn resume_scheduling(&self) {
        self.inner.state.lock().scheduling_paused = false;
        self.inner.wake.notify_one();
    }

    pub(crate) fn current_speech(&self) -> Option<SpeechHandle> {
        self.inner.state.lock().current.clone()
    }

    /// Whether a speech (other than the current one) waits for the floor.
    pub(crate) fn has_queued_speech(&self) -> bool {
        let st = self.inner.state.lock();
        !st.closed && !st.scheduling_paused && st.queue.iter().any(|q| !q.handle.done())
    }

    pub(crate) fn is_idle(&self) -> bool {
        let mut st = self.inner.state.lock();
        st.speeches.retain(|s| !s.done());
        st.speeches.is_empty() && st.queue.is_empty() && st.current.is_none()
    }

    /// Waits until no speech is queued or running.
    pub(crate) async fn wait_idle(&self) {
        let mut rx = self.inner.changes.subscribe();
        loop {
            if self.is_idle() || self.inner.state.lock().closed {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn bump(&self) {
        self.inner.changes.send_modify(|n| *n += 1);
    }

    /// Queues a speech (or a new step of it).
    pub(crate) fn schedule(&self, handle: &SpeechHandle) {
        {
            let mut st = self.inner.state.lock();
            if st.closed {
                drop(st);
                handle.interrupt_force();
                handle.mark_done();
                return;
            }
            st.seq += 1;
            let seq = st.seq;
            st.queue.push(Queued {
                priority: handle.priority(),
                seq,
                handle: handle.clone(),
            });
            st.speeches.retain(|s| !s.done());
            if !st.speeches.contains(handle) {
                st.speeches.push(handle.clone());
                let this = self.clone();
                handle.add_done_callback(move |_| this.bump());
            }
        }
        self.inner.wake.notify_one();
        self.bump();
    }

    async fn scheduling_loop(&self) {
        loop {
            let next = {
                let mut st = self.inner.state.lock();
                if st.closed {
                    return;
                }
                let mut found = None;
                if !st.scheduling_paused {
                    while let Some(q) = st.queue.pop() {
                        if !q.handle.done() {
                            found = Some(q.handle);
                            break;
                        }
                    }
                }
                if let Some(h) = &found {
                    st.current = Some(h.clone());
                }
                found.map(|h| (h, st.last_playout_end))
            };
            let Some((handle, last_end)) = next else {
                self.inner.wake.notified().await;
                continue;
            };
            let gap = self.inner.session.options().min_consecutive_speech_delay;
            if let Some(last) = last_end {
                tokio::time::sleep_until(last + gap).await;
            }
            handle.authorize();
            handle.wait_for_generation().await;
            {
                let mut st = self.inner.state.lock();
                if st.current.as_ref() == Some(&handle) {
                    st.current = None;
                }
                st.last_playout_end = Some(Instant::now());
            }
            self.bump();
        }
    }

    /// Interrupts every speech (forced), as `session.interrupt()`.
    pub(crate) fn interrupt_all(&self) {
        let speeches = {
            let mut st = self.inner.state.lock();
            if let Some(p) = st.paused.take() {
                drop(p.timer);
            }
            st.speeches.clone()
        };
        for s in speeches {
            s.interrupt_force();
        }
        self.release_paused_output();
    }

    fn allow_interruptions(&self, requested: Option<bool>) -> bool {
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

    // ---- speeches ----

    pub(crate) fn say(&self, text: SayText, options: SayOptions) -> SpeechHandle {
        let handle = SpeechHandle::new(
            self.allow_interruptions(options.allow_interruptions),
            options.priority,
        );
        self.inner.session.emit(SessionEvent::SpeechCreated {
            user_initiated: true,
            source: SpeechSource::Say,
            speech_handle: handle.clone(),
        });
        let request = SayRequest {
            text,
            audio: options.audio,
            add_to_chat_ctx: options.add_to_chat_ctx,
        };
        let this = self.clone();
        let h = handle.clone();
        let step = handle.new_step();
        tokio::spawn(async move { generation::say_task(this, h, step, request).await });
        self.schedule(&handle);
        handle
    }

    /// The tools of this agent plus the session's.
    pub(crate) fn all_tools(&self) -> Vec<FunctionTool> {
        let mut tools = self.inner.agent.tools();
        for t in self.inner.session.tools() {
            if !tools.iter().any(|x| x.name() == t.name()) {
                tools.push(t);
            }
        }
        tools
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

    pub(crate) fn generate_reply(
        &self,
        options: ReplyOptions,
        source: SpeechSource,
        user_initiated: bool,
    ) -> SpeechHandle {
        let mut options = options;
        // The reference: a reply requested from inside a tool defaults to no tool calls.
        if options.tool_choice.is_none() && super::tool_execution::in_tool() {
            options.tool_choice = Some(ToolChoice::None);
        }
        if let Some(text) = options.user_input.as_ref() {
            self.commit_user_message(ChatMessage::new(ChatRole::User, text.clone()));
        }
        let handle = SpeechHandle::new(
            self.allow_interruptions(options.allow_interruptions),
            options.priority,
        );
        self.inner.session.emit(SessionEvent::SpeechCreated {
            user_initiated,
            source,
            speech_handle: handle.clone(),
        });
        if let Some(link) = self.inner.session.realtime_link() {
            let step = handle.new_step();
            let (this, h, rt) = (self.clone(), handle.clone(), link.session.clone());
            tokio::spawn(async move {
                realtime::request_reply(this, h, step, rt, options.instructions, true).await
            });
            self.schedule(&handle);
            return handle;
        }
        let base = match options.chat_ctx {
            Some(ctx) => ctx,
            None => self.inner.agent.chat_ctx(),
        };
        let chat_ctx = self.llm_context(&base, options.instructions.as_deref());
        let mut tools = self.all_tools();
        if let Some(names) = options.tools.as_ref() {
            tools.retain(|t| names.iter().any(|n| n == t.name()));
        }
        self.spawn_reply(
            &handle,
            ReplyRequest {
                chat_ctx,
                tools,
                tool_choice: options.tool_choice,
            },
        )
        .detach();
        self.schedule(&handle);
        handle
    }

    /// Starts a generation step of `handle` (the LLM starts now; playback waits for the
    /// scheduler).
    pub(crate) fn spawn_reply(
        &self,
        handle: &SpeechHandle,
        request: ReplyRequest,
    ) -> AbortOnDropHandle<()> {
        let step = handle.new_step();
        let this = self.clone();
        let h = handle.clone();
        let task =
            tokio::spawn(async move { generation::pipeline_reply(this, h, step, request).await });
        // Dropping the guard cancels the step: a preemptive generation holds it until the turn
        // is committed (or discarded); other callers `detach()` it.
        AbortOnDropHandle::new(task)
    }

    pub(crate) fn commit_user_message(&self, msg: ChatMessage) {
        let item = ChatItem::Message(msg);
        self.inner.agent.push_chat_item(item.clone());
        self.inner.session.add_history_item(item);
    }

    /// The agent started playing audio: the user-turn limit resets.
    pub(crate) fn on_agent_speaking(&self) {
        let mut st = self.inner.state.lock();
        st.turn_words = 0;
        st.turn_duration = Duration::ZERO;
        st.turn_transcript.clear();
    }

    /// Takes the "user stopped speaking" time of the turn being answered (for e2e latency).
    pub(crate) fn take_turn_timing(&self) -> (Option<Instant>, Option<Duration>) {
        let mut st = self.inner.state.lock();
        (st.pending_user_stop.take(), st.pending_eou_delay.take())
    }

    // ---- recognition hooks ----

    pub(crate) fn on_start_of_speech(&self) {
        self.inner
            .session
            .set_user_state(super::events::UserState::Speaking);
        let mut st = self.inner.state.lock();
        if let Some(p) = st.paused.as_mut() {
            p.timer = None;
        }
    }

    pub(crate) fn on_end_of_speech(&self) {
        self.inner
            .session
            .set_user_state(super::events::UserState::Listening);
        self.start_false_interruption_timer();
    }

    /// VAD says the user has spoken for `speech_duration`; `words` is the current transcript's
    /// word count.
    pub(crate) fn on_vad_inference(
        &self,
        speech_duration: Duration,
        words: usize,
        stt_enabled: bool,
    ) {
        let opts = self.inner.session.options().turn_handling.interruption;
        if speech_duration >= opts.min_duration {
            self.interrupt_by_audio(words, stt_enabled);
        }
    }

    /// A transcript arrived and there is no VAD.
    pub(crate) fn on_transcript_activity(&self, words: usize) {
        if words > 0 {
            self.interrupt_by_audio(words, true);
        }
    }

    fn interrupt_by_audio(&self, words: usize, stt_enabled: bool) {
        let opts = self.inner.session.options().turn_handling.interruption;
        // With server-side turn detection the realtime model decides interruptions.
        if !opts.enabled
            || matches!(
                self.inner.session.turn_detection(),
                TurnDetection::RealtimeLlm
            )
        {
            return;
        }
        let Some(current) = self.current_speech() else {
            return;
        };
        if current.done() || current.interrupted() || !current.allow_interruptions() {
            return;
        }
        if stt_enabled && opts.min_words > 0 && words < opts.min_words {
            return;
        }
        let output = self.inner.session.audio_output();
        let can_pause = opts.resume_false_interruption
            && opts.false_interruption_timeout.is_some()
            && output.as_ref().is_some_and(|o| o.can_pause());
        if can_pause {
            let mut st = self.inner.state.lock();
            if st.paused.as_ref().is_some_and(|p| p.handle == current) {
                return;
            }
            st.paused = Some(PausedSpeech {
                handle: current,
                timer: None,
            });
            drop(st);
            if let Some(o) = output {
                o.pause();
                self.inner.output_paused.send_replace(true);
            }
            self.inner.session.set_agent_state(AgentState::Listening);
        } else {
            let _ = current.interrupt();
        }
    }

    fn start_false_interruption_timer(&self) {
        let Some(timeout) = self
            .inner
            .session
            .options()
            .turn_handling
            .interruption
            .false_interruption_timeout
        else {
            return;
        };
        let this = self.clone();
        let mut st = self.inner.state.lock();
        let Some(paused) = st.paused.as_mut() else {
            return;
        };
        let handle = paused.handle.clone();
        paused.timer = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let resumed = {
                let mut st = this.inner.state.lock();
                match st.paused.as_ref() {
                    Some(p) if p.handle == handle => {
                        // The timer is this task: take it out without aborting ourselves.
                        if let Some(mut p) = st.paused.take() {
                            if let Some(t) = p.timer.take() {
                                t.detach();
                            }
                        }
                        true
                    }
                    _ => false,
                }
            };
            if !resumed {
                return;
            }
            if handle.done() || handle.interrupted() {
                return;
            }
            this.resume_output();
            this.inner.session.set_agent_state(AgentState::Speaking);
            this.inner
                .session
                .emit(SessionEvent::AgentFalseInterruption { resumed: true });
        })));
    }

    /// Resumes the audio output if this activity paused it.
    pub(crate) fn resume_output(&self) {
        if let Some(o) = self.inner.session.audio_output() {
            o.resume();
        }
        self.inner.output_paused.send_replace(false);
    }

    /// Whether the output is paused by a possible false interruption (the transcript clock
    /// stops meanwhile).
    pub(crate) fn output_paused(&self) -> watch::Receiver<bool> {
        self.inner.output_paused.subscribe()
    }

    /// Interrupts the paused speech for real (the user did say something).
    ///
    /// The output is cleared and resumed from here, not only by the speech's playout: a writer
    /// waiting in `capture_frame` on the paused output is released either way.
    fn cancel_pause_and_interrupt(&self) {
        let paused = self.inner.state.lock().paused.take();
        if let Some(p) = paused {
            drop(p.timer);
            p.handle.interrupt_force();
            self.release_paused_output();
        }
    }

    /// Clears and resumes the audio output if this activity paused it (the paused speech was
    /// interrupted, or the activity closes).
    fn release_paused_output(&self) {
        if !*self.inner.output_paused.borrow() {
            return;
        }
        if let Some(o) = self.inner.session.audio_output() {
            o.clear_buffer();
        }
        self.resume_output();
    }

    pub(crate) fn on_final_transcript(&self, transcript: &str) {
        if !transcript.trim().is_empty() {
            self.cancel_pause_and_interrupt();
        }
    }

    /// Whether user audio should be replaced by silence before the STT (uninterruptible speech).
    pub(crate) fn discard_stt_audio(&self) -> bool {
        let opts = self.inner.session.options().turn_handling.interruption;
        opts.discard_audio_if_uninterruptible
            && self
                .current_speech()
                .is_some_and(|s| !s.done() && !s.allow_interruptions())
    }

    /// A final transcript arrived before the turn ended: start the reply early.
    pub(crate) fn on_preemptive_generation(&self, transcript: &str, speech_duration: Duration) {
        let opts = self
            .inner
            .session
            .options()
            .turn_handling
            .preemptive_generation;
        if !opts.enabled || transcript.trim().is_empty() {
            return;
        }
        if self.inner.agent.llm().is_none() && self.inner.session.llm().is_none() {
            return;
        }
        if speech_duration > opts.max_speech_duration {
            return;
        }
        if self
            .current_speech()
            .is_some_and(|s| !s.done() && !s.allow_interruptions())
        {
            return;
        }
        {
            let mut st = self.inner.state.lock();
            if st.scheduling_paused || st.closed || st.preemptive_attempts >= opts.max_retries {
                return;
            }
            if st
                .preemptive
                .as_ref()
                .is_some_and(|p| p.transcript == transcript)
            {
                return;
            }
            if let Some(old) = st.preemptive.take() {
                old.handle.interrupt_force();
                old.handle.mark_done();
            }
            st.preemptive_attempts += 1;
        }
        let turn_ctx = self.inner.agent.chat_ctx();
        let mut ctx = turn_ctx.clone();
        ctx.add_message(ChatRole::User, transcript);
        let tools = self.all_tools();
        let tool_names = tools.iter().map(|t| t.name().to_string()).collect();
        let handle = SpeechHandle::new(self.allow_interruptions(None), SpeechPriority::Normal);
        let task = self.spawn_reply(
            &handle,
            ReplyRequest {
                chat_ctx: self.llm_context(&ctx, None),
                tools,
                tool_choice: None,
            },
        );
        self.inner.state.lock().preemptive = Some(Preemptive {
            handle,
            transcript: transcript.to_string(),
            turn_ctx,
            tool_names,
            _task: task,
        });
    }

    /// Recognition ended the user's turn. Returns whether the turn was committed.
    pub(crate) fn on_end_of_turn(&self, info: EndOfTurnInfo) -> bool {
        if info.transcript.trim().is_empty() {
            return false;
        }
        let opts = self.inner.session.options().turn_handling.interruption;
        if opts.min_words > 0 {
            let speaking = self.current_speech().is_some_and(|s| !s.done());
            if speaking && info.transcript.split_whitespace().count() < opts.min_words {
                return false;
            }
        }
        {
            let mut st = self.inner.state.lock();
            if st.closed {
                return false;
            }
            if let Some(p) = st.paused.as_mut() {
                p.timer = None;
            }
        }
        let this = self.clone();
        tokio::spawn(async move { this.user_turn_completed(info).await });
        true
    }

    async fn user_turn_completed(&self, info: EndOfTurnInfo) {
        let _guard = self.inner.turn_lock.lock().await;
        let mut msg = ChatMessage::new(ChatRole::User, info.transcript.clone());
        if let Some(current) = self.current_speech().filter(|s| !s.done()) {
            if !current.allow_interruptions() {
                self.commit_user_message(msg);
                self.discard_preemptive();
                return;
            }
            self.cancel_pause_and_interrupt();
            let _ = current.interrupt();
        }
        self.cancel_pause_and_interrupt();
        // Speeches still running tools in the background are superseded by the new turn.
        let background: Vec<SpeechHandle> = self
            .inner
            .state
            .lock()
            .speeches
            .iter()
            .filter(|s| !s.done())
            .cloned()
            .collect();
        for s in background {
            let _ = s.interrupt();
        }

        let mut turn_ctx = self.inner.agent.chat_ctx();
        let started = Instant::now();
        let result = self
            .inner
            .agent
            .behavior()
            .on_user_turn_completed(self.context(), &mut turn_ctx, &mut msg)
            .await;
        let hook_delay = started.elapsed();
        let text = msg.text_content().unwrap_or_default();
        self.commit_user_message(msg.clone());
        self.inner
            .session
            .emit_metrics(AgentMetrics::Eou(EouMetrics {
                end_of_utterance_delay: info.end_of_utterance_delay,
                transcription_delay: info.transcription_delay,
                on_user_turn_completed_delay: hook_delay,
                speech_id: None,
            }));
        if result.is_err() || info.skip_reply {
            self.discard_preemptive();
            return;
        }

        let limit = self.inner.session.options().turn_handling.user_turn_limit;
        let exceeded = {
            let mut st = self.inner.state.lock();
            st.preemptive_attempts = 0;
            st.turn_words += text.split_whitespace().count();
            st.turn_duration += info.speech_duration;
            if !st.turn_transcript.is_empty() {
                st.turn_transcript.push(' ');
            }
            st.turn_transcript.push_str(&text);
            let over = limit.max_words.is_some_and(|w| st.turn_words > w)
                || limit.max_duration.is_some_and(|d| st.turn_duration > d);
            over.then(|| UserTurnExceeded {
                words: st.turn_words,
                duration: st.turn_duration,
                transcript: st.turn_transcript.clone(),
            })
        };
        {
            let mut st = self.inner.state.lock();
            st.pending_user_stop = info.stopped_speaking_at;
            st.pending_eou_delay = Some(info.end_of_utterance_delay);
        }
        if let Some(event) = exceeded {
            self.discard_preemptive();
            self.on_agent_speaking();
            self.inner
                .agent
                .behavior()
                .on_user_turn_exceeded(self.context(), event)
                .await;
            return;
        }

        if let Some(link) = self.inner.session.realtime_link() {
            link.session.commit_audio();
            let handle = SpeechHandle::new(self.allow_interruptions(None), SpeechPriority::Normal);
            self.inner.session.emit(SessionEvent::SpeechCreated {
                user_initiated: false,
                source: SpeechSource::GenerateReply,
                speech_handle: handle.clone(),
            });
            let step = handle.new_step();
            let (this, h, rt) = (self.clone(), handle.clone(), link.session.clone());
            tokio::spawn(
                async move { realtime::request_reply(this, h, step, rt, None, false).await },
            );
            self.schedule(&handle);
            return;
        }
        let preemptive = self.inner.state.lock().preemptive.take();
        let tools = self.all_tools();
        if let Some(p) = preemptive {
            let tool_names: Vec<String> = tools.iter().map(|t| t.name().to_string()).collect();
            if normalize(&p.transcript) == normalize(&text)
                && p.turn_ctx.is_equivalent(&turn_ctx)
                && p.tool_names == tool_names
            {
                tracing::debug!(speech_id = %p.handle.id(), "using the preemptive generation");
                self.inner.session.emit(SessionEvent::SpeechCreated {
                    user_initiated: false,
                    source: SpeechSource::GenerateReply,
                    speech_handle: p.handle.clone(),
                });
                let handle = p.handle.clone();
                // The generation task must outlive the preemptive slot now.
                p._task.detach();
                self.schedule(&handle);
                return;
            }
            tracing::debug!("preemptive generation discarded: the turn changed");
            p.handle.interrupt_force();
            p.handle.mark_done();
        }

        let handle = SpeechHandle::new(self.allow_interruptions(None), SpeechPriority::Normal);
        self.inner.session.emit(SessionEvent::SpeechCreated {
            user_initiated: false,
            source: SpeechSource::GenerateReply,
            speech_handle: handle.clone(),
        });
        let mut ctx = turn_ctx;
        ctx.push(ChatItem::Message(msg));
        self.spawn_reply(
            &handle,
            ReplyRequest {
                chat_ctx: self.llm_context(&ctx, None),
                tools,
                tool_choice: None,
            },
        )
        .detach();
        self.schedule(&handle);
    }

    /// The realtime model started a reply by itself (server-side turn detection).
    pub(crate) fn on_realtime_generation(
        &self,
        generation: crate::llm::realtime::GenerationCreated,
    ) {
        let Some(link) = self.inner.session.realtime_link() else {
            return;
        };
        let handle = SpeechHandle::new(self.allow_interruptions(None), SpeechPriority::Normal);
        self.inner.session.emit(SessionEvent::SpeechCreated {
            user_initiated: false,
            source: SpeechSource::GenerateReply,
            speech_handle: handle.clone(),
        });
        let step = handle.new_step();
        let (this, h, rt) = (self.clone(), handle.clone(), link.session.clone());
        tokio::spawn(async move { realtime::play_generation(this, h, step, rt, generation).await });
        self.schedule(&handle);
    }

    fn discard_preemptive(&self) {
        let p = self.inner.state.lock().preemptive.take();
        if let Some(p) = p {
            p.handle.interrupt_force();
            p.handle.mark_done();
        }
    }

    pub(crate) fn follow_up_tool_choice(
        &self,
        original: Option<ToolChoice>,
        max_steps_reached: bool,
    ) -> Option<ToolChoice> {
        if max_steps_reached || original == Some(ToolChoice::None) {
            Some(ToolChoice::None)
        } else {
            original
        }
    }
}

fn normalize(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| c.is_ascii_punctuation())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
