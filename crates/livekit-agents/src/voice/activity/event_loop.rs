//! The activity's event loop: it owns the state, schedules speeches one at a time by priority
//! (FIFO within a priority), and runs each speech's lifecycle from the events its tasks report.
//!
//! One iteration: the priority lane (interrupt, close) first, then the main queue, then the
//! loop's own timers (the pause between consecutive speeches, the false-interruption timer).
//! Handlers are synchronous: anything that waits (LLM, TTS, tools, playout, user hooks) runs in
//! a spawned task that reports back with an [`ActivityEvent`].

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::super::agent::Agent;
use super::super::events::AgentState;
use super::super::generation::{self, ReplyRequest};
use super::super::playout::Spoken;
use super::super::speech_handle::{SpeechHandle, SpeechPriority};
use super::{Activity, ActivityEvent, ActivityView, Control, TurnHookDone};
use crate::llm::{ChatContext, ChatItem, ChatMessage, ChatRole};
use crate::metrics::{AgentMetrics, TurnMetrics};

struct Queued {
    priority: SpeechPriority,
    seq: u64,
    handle: SpeechHandle,
    /// The step generates (LLM or realtime model): the agent is `thinking` once it has the
    /// floor.
    thinking: bool,
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

pub(super) struct Preemptive {
    pub handle: SpeechHandle,
    pub transcript: String,
    pub turn_ctx: ChatContext,
    pub tool_names: Vec<String>,
    pub task: AbortOnDropHandle<()>,
}

/// The speech whose output is paused by a possible false interruption.
pub(super) struct PausedSpeech {
    pub handle: SpeechHandle,
    /// When it resumes if the user said nothing (armed at the end of the user's speech).
    pub resume_at: Option<Instant>,
}

/// The speech holding the floor.
struct Current {
    handle: SpeechHandle,
    thinking: bool,
    /// When the floor is given (after `min_consecutive_speech_delay`); `None` once given.
    authorize_at: Option<Instant>,
}

/// The loop and everything it owns.
pub(crate) struct ActivityLoop {
    pub(super) activity: Activity,
    events: mpsc::UnboundedReceiver<ActivityEvent>,
    control: mpsc::UnboundedReceiver<Control>,
    queue: BinaryHeap<Queued>,
    seq: u64,
    current: Option<Current>,
    /// Scheduled speeches not done yet.
    pub(super) speeches: Vec<SpeechHandle>,
    pub(super) paused: Option<PausedSpeech>,
    scheduling_paused: bool,
    pub(super) closed: bool,
    pub(super) preemptive: Option<Preemptive>,
    pub(super) preemptive_attempts: u32,
    pub(super) turn_words: usize,
    pub(super) turn_duration: Duration,
    pub(super) turn_transcript: String,
    last_playout_end: Option<Instant>,
    /// When the user stopped speaking in the turn being answered (e2e latency).
    pub(super) pending_user_stop: Option<Instant>,
    pub(super) pending_eou_delay: Option<Duration>,
    /// A user-turn hook is running: later turns wait here (one turn at a time).
    pub(super) turn_busy: bool,
    pub(super) pending_turns: VecDeque<super::EndOfTurnInfo>,
}

impl ActivityLoop {
    pub(super) fn new(
        activity: Activity,
        events: mpsc::UnboundedReceiver<ActivityEvent>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        Self {
            activity,
            events,
            control,
            queue: BinaryHeap::new(),
            seq: 0,
            current: None,
            speeches: Vec::new(),
            paused: None,
            scheduling_paused: false,
            closed: false,
            preemptive: None,
            preemptive_attempts: 0,
            turn_words: 0,
            turn_duration: Duration::ZERO,
            turn_transcript: String::new(),
            last_playout_end: None,
            pending_user_stop: None,
            pending_eou_delay: None,
            turn_busy: false,
            pending_turns: VecDeque::new(),
        }
    }

    pub(super) fn session(&self) -> &super::super::session::AgentSession {
        self.activity.session()
    }

    pub(super) fn agent(&self) -> &Agent {
        self.activity.agent()
    }

    /// Runs until the activity closed and its last speech is done.
    pub(super) async fn run(mut self) {
        loop {
            let authorize_at = self.current.as_ref().and_then(|c| c.authorize_at);
            let resume_at = self.paused.as_ref().and_then(|p| p.resume_at);
            tokio::select! {
                biased;
                Some(c) = self.control.recv() => self.on_control(c),
                ev = self.events.recv() => match ev {
                    Some(ev) => {
                        let command = is_command(&ev);
                        self.on_event(ev);
                        if command {
                            self.activity
                                .inner
                                .view
                                .send_modify(|v| v.pending = v.pending.saturating_sub(1));
                        }
                    }
                    None => return,
                },
                _ = sleep_until_opt(authorize_at), if authorize_at.is_some() => self.authorize_current(),
                _ = sleep_until_opt(resume_at), if resume_at.is_some() => self.on_false_interruption_timeout(),
            }
            self.advance();
            self.publish();
            if self.closed && self.speeches.is_empty() {
                // Tasks still running report to nobody; their speeches are done.
                self.end();
                return;
            }
        }
    }

    /// The loop ends: later sends fail (`Activity::command` then finishes the speech it was
    /// asked for), and speeches asked for before are finished here, never played.
    fn end(&mut self) {
        self.events.close();
        while let Ok(ev) = self.events.try_recv() {
            if is_command(&ev) {
                self.activity
                    .inner
                    .view
                    .send_modify(|v| v.pending = v.pending.saturating_sub(1));
            }
            if let ActivityEvent::Say { handle, .. } | ActivityEvent::GenerateReply { handle, .. } =
                ev
            {
                handle.interrupt_force();
                handle.mark_done();
            }
        }
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::InterruptAll => self.interrupt_all(),
            Control::Close => self.close(),
        }
    }

    fn on_event(&mut self, ev: ActivityEvent) {
        match ev {
            ActivityEvent::Say { handle, request } => self.say(handle, request),
            ActivityEvent::GenerateReply { handle, options } => {
                self.generate_reply(handle, options)
            }
            ActivityEvent::PauseScheduling { drain } => {
                self.scheduling_paused = true;
                if drain {
                    self.discard_preemptive();
                }
            }
            ActivityEvent::ResumeScheduling => self.scheduling_paused = false,
            ActivityEvent::StartOfSpeech => self.on_start_of_speech(),
            ActivityEvent::EndOfSpeech => self.on_end_of_speech(),
            ActivityEvent::VadInference {
                speech_duration,
                words,
                stt_enabled,
            } => self.on_vad_inference(speech_duration, words, stt_enabled),
            ActivityEvent::TranscriptActivity { words } => {
                if words > 0 {
                    self.interrupt_by_audio(words, true);
                }
            }
            ActivityEvent::FinalTranscript(text) => {
                if !text.trim().is_empty() {
                    self.cancel_pause_and_interrupt();
                }
            }
            ActivityEvent::Preemptive {
                transcript,
                speech_duration,
            } => self.on_preemptive_generation(&transcript, speech_duration),
            ActivityEvent::EndOfTurn(info) => self.on_end_of_turn(info),
            ActivityEvent::CommitUserMessage(msg) => self.commit_user_message(msg),
            ActivityEvent::RealtimeSpeechStarted => self.on_realtime_speech_started(),
            ActivityEvent::RealtimeGeneration(generation) => {
                self.on_realtime_generation(generation)
            }
            ActivityEvent::TranscriptionTimeout {
                speech_duration,
                speech_started_at,
            } => self.on_transcription_timeout(speech_duration, speech_started_at),
            ActivityEvent::TurnHookDone(done) => self.on_turn_hook_done(*done),
            ActivityEvent::TurnExceededDone => self.turn_finished(),
            ActivityEvent::PlaybackStarted {
                handle,
                llm_ttft,
                tts_ttfb,
            } => self.on_playback_started(&handle, llm_ttft, tts_ttfb),
            ActivityEvent::AssistantSpoken { handle, spoken } => {
                self.commit_assistant_message(&handle, &spoken)
            }
            ActivityEvent::StepPlayed {
                handle,
                tools_running,
            } => {
                if tools_running && !handle.interrupted() {
                    // The words played; the agent is busy with tools until they answer.
                    self.session().set_agent_state(AgentState::Thinking);
                }
                handle.mark_generation_done();
            }
            ActivityEvent::ToolsExecuted {
                handle,
                results,
                follow_up,
            } => self.on_tools_executed(handle, results, follow_up),
            ActivityEvent::SpeechFinished(handle) => self.finish_speech(&handle),
            ActivityEvent::SpeechDone(handle) => {
                tracing::trace!(speech_id = %handle.id(), "speech done");
            }
            ActivityEvent::HoldReleased => {}
        }
    }

    // ---- scheduling ----

    /// Queues a speech (or a new step of it).
    pub(super) fn schedule(&mut self, handle: &SpeechHandle, thinking: bool) {
        if self.closed {
            handle.interrupt_force();
            handle.mark_done();
            return;
        }
        self.seq += 1;
        self.queue.push(Queued {
            priority: handle.priority(),
            seq: self.seq,
            handle: handle.clone(),
            thinking,
        });
        if !self.speeches.contains(handle) {
            self.speeches.push(handle.clone());
            // Handle transitions come back as events (a done speech may free the floor).
            let events = self.activity.inner.events.clone();
            handle.add_done_callback(move |h| {
                let _ = events.send(ActivityEvent::SpeechDone(h.clone()));
            });
        }
    }

    /// After each event: frees the floor when the current step played, gives it to the next
    /// speech.
    fn advance(&mut self) {
        self.speeches.retain(|s| !s.done());
        if let Some(c) = &self.current {
            if c.authorize_at.is_none() && c.handle.generation_released() {
                self.current = None;
                self.last_playout_end = Some(Instant::now());
            } else if c.handle.done() {
                // Done before it got the floor.
                self.current = None;
            }
        }
        if self.current.is_some() || self.scheduling_paused || self.closed {
            return;
        }
        // A session hook (telephony's AMD while it listens) holds speech: nothing plays.
        if !self.queue.is_empty() && self.session().inner.hooks.holds_speech() {
            return;
        }
        while let Some(q) = self.queue.pop() {
            if q.handle.done() {
                continue;
            }
            let gap = self.session().options().min_consecutive_speech_delay;
            let at = self.last_playout_end.map(|last| last + gap);
            self.current = Some(Current {
                handle: q.handle,
                thinking: q.thinking,
                authorize_at: Some(at.unwrap_or_else(Instant::now)),
            });
            if at.is_none_or(|at| at <= Instant::now()) {
                self.authorize_current();
            }
            break;
        }
    }

    fn authorize_current(&mut self) {
        let Some(c) = self.current.as_mut() else {
            return;
        };
        c.authorize_at = None;
        c.handle.authorize();
        if c.thinking && !c.handle.interrupted() && !c.handle.done() {
            self.activity
                .session()
                .set_agent_state(AgentState::Thinking);
        }
    }

    fn publish(&self) {
        let current = self.current.as_ref().map(|c| c.handle.clone());
        let queued =
            !self.closed && !self.scheduling_paused && self.queue.iter().any(|q| !q.handle.done());
        let idle = self.speeches.is_empty() && self.queue.is_empty() && current.is_none();
        let closed = self.closed;
        self.activity.inner.view.send_if_modified(|v| {
            let same = v.current == current && v.queued == queued && v.idle == idle;
            let changed = !same || v.closed != closed;
            *v = ActivityView {
                current,
                queued,
                idle,
                closed: v.closed || closed,
                pending: v.pending,
            };
            changed
        });
    }

    fn has_queued_speech(&self) -> bool {
        !self.closed && !self.scheduling_paused && self.queue.iter().any(|q| !q.handle.done())
    }

    pub(super) fn current_speech(&self) -> Option<SpeechHandle> {
        self.current.as_ref().map(|c| c.handle.clone())
    }

    // ---- commands ----

    fn close(&mut self) {
        self.closed = true;
        self.queue.clear();
        self.discard_preemptive();
        self.paused = None;
        self.pending_turns.clear();
        for s in self.speeches.clone() {
            s.interrupt_force();
        }
        self.release_paused_output();
    }

    /// Interrupts every speech (forced), as `session.interrupt()`.
    fn interrupt_all(&mut self) {
        self.paused = None;
        for s in self.speeches.clone() {
            s.interrupt_force();
        }
        self.release_paused_output();
    }

    /// Switches the active agent (through the session's one switching path).
    pub(super) fn request_switch(&mut self, agent: Agent) {
        if self.closed {
            return;
        }
        self.session().update_agent(agent);
    }

    // ---- speech lifecycle ----

    pub(super) fn finish_speech(&mut self, handle: &SpeechHandle) {
        handle.mark_generation_done();
        handle.mark_done();
        // Not while another speech waits for the floor (e.g. the reply to text typed during
        // this one): it sets `thinking` itself, and a transient `listening` would arm the away
        // timer.
        let current = self.current_speech();
        if current.is_none_or(|s| s == *handle) && !self.has_queued_speech() && !self.closed {
            self.session().set_agent_state(AgentState::Listening);
        }
    }

    fn on_playback_started(
        &mut self,
        handle: &SpeechHandle,
        llm_ttft: Option<Duration>,
        tts_ttfb: Option<Duration>,
    ) {
        if handle.interrupted() && handle.done() {
            return;
        }
        let session = self.session().clone();
        session.set_agent_state(AgentState::Speaking);
        // The agent started playing audio: the user-turn limit resets.
        self.turn_words = 0;
        self.turn_duration = Duration::ZERO;
        self.turn_transcript.clear();
        let eou_delay = self.pending_eou_delay.take();
        if let Some(stop) = self.pending_user_stop.take() {
            session.emit_metrics(AgentMetrics::Turn(TurnMetrics {
                speech_id: handle.id().to_string(),
                end_of_utterance_delay: eou_delay,
                llm_ttft,
                tts_ttfb,
                e2e_latency: Instant::now().saturating_duration_since(stop),
            }));
        }
    }

    fn commit_assistant_message(&mut self, handle: &SpeechHandle, spoken: &Spoken) {
        if spoken.text.trim().is_empty() {
            return;
        }
        let mut msg =
            ChatMessage::new(ChatRole::Assistant, spoken.text.clone()).at(spoken.started_at);
        msg.interrupted = spoken.interrupted;
        let item = ChatItem::Message(msg);
        self.agent().insert_chat_item(item.clone());
        handle.push_chat_item(item.clone());
        self.session().insert_history_item(item);
    }

    pub(super) fn commit_user_message(&mut self, msg: ChatMessage) {
        let item = ChatItem::Message(msg);
        self.agent().push_chat_item(item.clone());
        self.session().add_history_item(item);
    }

    /// Starts a generation step of `handle` (the LLM starts now; playback waits for the
    /// floor).
    pub(super) fn spawn_reply(
        &self,
        handle: &SpeechHandle,
        request: ReplyRequest,
    ) -> AbortOnDropHandle<()> {
        let step = handle.new_step();
        let activity = self.activity.clone();
        let h = handle.clone();
        let scope = handle.on_enter_of();
        let mut request = request;
        crate::voice::agent::hide_on_enter_tools(self.agent(), scope, &mut request.tools);
        let task = tokio::spawn(crate::voice::agent::in_on_enter_scope(scope, async move {
            generation::pipeline_reply(activity, h, step, request).await
        }));
        // Dropping the guard cancels the step: a preemptive generation holds it until the turn
        // is committed (or discarded); other callers `detach()` it.
        AbortOnDropHandle::new(task)
    }

    pub(super) fn discard_preemptive(&mut self) {
        if let Some(p) = self.preemptive.take() {
            p.handle.interrupt_force();
            p.handle.mark_done();
        }
    }

    /// A user turn (and its hook) is over: take the next waiting one.
    pub(super) fn turn_finished(&mut self) {
        self.turn_busy = false;
        if let Some(info) = self.pending_turns.pop_front() {
            self.start_user_turn(info);
        }
    }

    pub(super) fn spawn_turn_hook(&mut self, info: super::EndOfTurnInfo, msg: ChatMessage) {
        self.turn_busy = true;
        let activity = self.activity.clone();
        tokio::spawn(async move {
            let mut msg = msg;
            let mut turn_ctx = activity.agent().chat_ctx();
            let started = Instant::now();
            let result = activity
                .agent()
                .behavior()
                .on_user_turn_completed(activity.context(), &mut turn_ctx, &mut msg)
                .await;
            activity.send(ActivityEvent::TurnHookDone(Box::new(TurnHookDone {
                info,
                msg,
                turn_ctx,
                stop_response: result.is_err(),
                hook_delay: started.elapsed(),
            })));
        });
    }
}

/// Commands counted as pending in the view until handled.
fn is_command(ev: &ActivityEvent) -> bool {
    matches!(
        ev,
        ActivityEvent::Say { .. }
            | ActivityEvent::GenerateReply { .. }
            | ActivityEvent::PauseScheduling { .. }
            | ActivityEvent::ResumeScheduling
            | ActivityEvent::EndOfTurn(_)
    )
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
