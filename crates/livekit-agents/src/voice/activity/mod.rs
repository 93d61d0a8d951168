//! The activity of the active agent: it receives recognition hooks (speech started, transcript,
//! end of turn), decides interruptions, runs the user-turn hook, and schedules speeches one at a
//! time by priority (FIFO within a priority).
//!
//! - this module: the activity's state, the scheduler, start/close/drain, shared helpers;
//! - `interruption`: recognition hooks deciding interruptions and false-interruption pauses;
//! - `turn`: speech creation (`say`, `generate_reply`, user turns, preemptive generation,
//!   realtime generations), all through [`Activity::new_speech`].

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::agent::{Agent, AgentContext};
use super::realtime;
use super::session::AgentSession;
use super::speech_handle::{SpeechHandle, SpeechPriority};
use crate::llm::{ChatContext, ToolChoice};

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
        crate::stt::context::bind(&self.inner.session, &self.inner.agent);
        let this = self.clone();
        *self.inner.scheduler.lock() = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            this.scheduling_loop().await;
        })));
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
        let own_servers = self.inner.agent.mcp_servers().clone();
        if !own_servers.is_empty() {
            tokio::spawn(async move { own_servers.close_all().await });
        }
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

mod interruption;
mod turn;
