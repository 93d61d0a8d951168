//! [`SpeechHandle`]: one agent utterance (possibly several generation steps when tools run),
//! its priority, interruption and completion.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::llm::ChatItem;

/// Scheduling priority: higher first, FIFO within a priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum SpeechPriority {
    /// Background speech.
    Low = 0,
    /// Everything the pipeline creates.
    #[default]
    Normal = 5,
    /// Urgent speech.
    High = 10,
}

/// How long an interrupted speech may take to finish before it is marked done anyway.
pub const INTERRUPTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a speech could not be interrupted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("speech {0} does not allow interruptions (use interrupt_force)")]
pub struct NotInterruptible(pub String);

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    interrupted: bool,
    done: bool,
    /// Times the scheduler gave this speech the floor (one per generation step).
    authorizations: u32,
    /// Generation steps that finished playing.
    generations_done: u32,
    /// Tool steps whose calls and outputs the activity recorded.
    tool_steps_recorded: u32,
}

type DoneCallback = Box<dyn FnOnce(&SpeechHandle) + Send>;

struct Inner {
    id: String,
    priority: SpeechPriority,
    allow_interruptions: AtomicBool,
    flags: watch::Sender<Flags>,
    callbacks: Mutex<Vec<DoneCallback>>,
    chat_items: Mutex<Vec<ChatItem>>,
    num_steps: AtomicU32,
    steps_created: AtomicU32,
    /// Made inside an agent's `on_enter`: that agent's address. Its steps run in the on-enter
    /// scope, which hides the agent's `IGNORE_ON_ENTER` tools (see `agent::run_on_enter`); the
    /// loop spawns the steps, so the scope travels with the speech rather than the task.
    on_enter_of: Option<usize>,
}

/// One agent utterance. Cheap to clone; all clones observe the same speech.
#[derive(Clone)]
pub struct SpeechHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SpeechHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flags = *self.inner.flags.borrow();
        f.debug_struct("SpeechHandle")
            .field("id", &self.inner.id)
            .field("priority", &self.inner.priority)
            .field("interrupted", &flags.interrupted)
            .field("done", &flags.done)
            .finish()
    }
}

impl PartialEq for SpeechHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl SpeechHandle {
    pub(crate) fn new(allow_interruptions: bool, priority: SpeechPriority) -> Self {
        let id = format!(
            "speech_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let (flags, _) = watch::channel(Flags::default());
        Self {
            inner: Arc::new(Inner {
                id,
                priority,
                allow_interruptions: AtomicBool::new(allow_interruptions),
                flags,
                callbacks: Mutex::new(Vec::new()),
                chat_items: Mutex::new(Vec::new()),
                num_steps: AtomicU32::new(1),
                on_enter_of: super::agent::current_on_enter_scope(),
                steps_created: AtomicU32::new(0),
            }),
        }
    }

    /// The speech id (`speech_…`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The priority.
    pub fn priority(&self) -> SpeechPriority {
        self.inner.priority
    }

    /// Whether the user (or [`interrupt`](Self::interrupt)) may interrupt it.
    pub fn allow_interruptions(&self) -> bool {
        self.inner.allow_interruptions.load(Ordering::SeqCst)
    }

    /// Changes whether the speech may be interrupted (e.g. a tool that must not be cut off).
    pub fn set_allow_interruptions(&self, allow: bool) {
        self.inner
            .allow_interruptions
            .store(allow, Ordering::SeqCst);
    }

    /// Whether it was interrupted.
    pub fn interrupted(&self) -> bool {
        self.inner.flags.borrow().interrupted
    }

    /// Whether it finished (played out, interrupted, or never played).
    pub fn done(&self) -> bool {
        self.inner.flags.borrow().done
    }

    /// Generation steps so far (1, plus one per tool follow-up).
    pub fn num_steps(&self) -> u32 {
        self.inner.num_steps.load(Ordering::SeqCst)
    }

    /// Items this speech added to the history (assistant messages, tool calls and outputs).
    pub fn chat_items(&self) -> Vec<ChatItem> {
        self.inner.chat_items.lock().clone()
    }

    /// Interrupts the speech. Fails if it does not allow interruptions.
    pub fn interrupt(&self) -> Result<(), NotInterruptible> {
        if !self.allow_interruptions() {
            return Err(NotInterruptible(self.inner.id.clone()));
        }
        self.interrupt_force();
        Ok(())
    }

    /// Interrupts the speech even if it does not allow interruptions.
    ///
    /// If the pipeline has not finished the speech [`INTERRUPTION_TIMEOUT`] later, it is marked
    /// done anyway (as the reference does), so waiters never hang.
    pub fn interrupt_force(&self) {
        let changed = self.inner.flags.send_if_modified(|f| {
            if f.interrupted || f.done {
                false
            } else {
                f.interrupted = true;
                true
            }
        });
        if changed {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let this = self.clone();
                rt.spawn(async move {
                    let mut rx = this.inner.flags.subscribe();
                    let done = tokio::time::timeout(INTERRUPTION_TIMEOUT, rx.wait_for(|f| f.done)).await;
                    if done.is_err() {
                        tracing::warn!(speech_id = %this.id(), "speech not done 5 s after its interruption; marking it done");
                        this.mark_done();
                    }
                });
            }
        }
    }

    /// Waits until the speech finished playing (or was interrupted).
    pub async fn wait_for_playout(&self) {
        let mut rx = self.inner.flags.subscribe();
        let _ = rx.wait_for(|f| f.done).await;
    }

    /// Runs `fut` unless the speech gets interrupted first (`None` then). For long-running tools.
    ///
    /// Deterministic: when `fut` is ready in the same poll as the interruption, its output
    /// wins (a result that exists is never discarded).
    pub async fn wait_if_not_interrupted<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = fut => Some(out),
            _ = self.wait_interrupted() => None,
        }
    }

    /// Calls `callback` once the speech is done (at once if it already is).
    pub fn add_done_callback(&self, callback: impl FnOnce(&SpeechHandle) + Send + 'static) {
        let mut callbacks = self.inner.callbacks.lock();
        if self.done() {
            drop(callbacks);
            callback(self);
        } else {
            callbacks.push(Box::new(callback));
        }
    }

    // ---- pipeline side ----

    /// Resolves when the speech is interrupted (never if it finishes without interruption).
    pub(crate) async fn wait_interrupted(&self) {
        let mut rx = self.inner.flags.subscribe();
        if rx.wait_for(|f| f.interrupted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Reserves the next generation step; the step may run once authorization number `step`
    /// arrived.
    /// The on-enter scope the speech was made in (see `Inner::on_enter_of`).
    pub(crate) fn on_enter_of(&self) -> Option<usize> {
        self.inner.on_enter_of
    }

    pub(crate) fn new_step(&self) -> u32 {
        self.inner.steps_created.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn increment_num_steps(&self) {
        self.inner.num_steps.fetch_add(1, Ordering::SeqCst);
    }

    /// The scheduler gives the speech the floor for its next step.
    pub(crate) fn authorize(&self) {
        self.inner.flags.send_modify(|f| f.authorizations += 1);
    }

    /// Waits until step `step` is authorized; `false` if the speech was interrupted first.
    pub(crate) async fn wait_for_authorization(&self, step: u32) -> bool {
        let mut rx = self.inner.flags.subscribe();
        let ok = match rx
            .wait_for(|f| f.authorizations >= step || f.interrupted || f.done)
            .await
        {
            Ok(f) => f.authorizations >= step && !f.interrupted && !f.done,
            Err(_) => false,
        };
        ok
    }

    /// Whether the authorized steps finished playing (the speech gives the floor back).
    pub(crate) fn generation_released(&self) -> bool {
        let f = *self.inner.flags.borrow();
        f.done || f.generations_done >= f.authorizations
    }

    /// Waits until generation step `step` (1-based) finished playing, or the speech is done.
    pub(crate) async fn wait_for_step_playout(&self, step: u32) {
        let mut rx = self.inner.flags.subscribe();
        let _ = rx.wait_for(|f| f.done || f.generations_done >= step).await;
    }

    pub(crate) fn mark_generation_done(&self) {
        self.inner
            .flags
            .send_modify(|f| f.generations_done = f.authorizations);
    }

    /// Tool steps of this speech recorded so far.
    pub(crate) fn tool_steps_recorded(&self) -> u32 {
        self.inner.flags.borrow().tool_steps_recorded
    }

    /// The activity recorded the calls and outputs of a tool step.
    pub(crate) fn mark_tool_step_recorded(&self) {
        self.inner.flags.send_modify(|f| f.tool_steps_recorded += 1);
    }

    /// Waits until more than `recorded` tool steps are recorded, or the speech is done.
    pub(crate) async fn wait_tool_step_recorded(&self, recorded: u32) {
        let mut rx = self.inner.flags.subscribe();
        let _ = rx
            .wait_for(|f| f.done || f.tool_steps_recorded > recorded)
            .await;
    }

    pub(crate) fn push_chat_item(&self, item: ChatItem) {
        self.inner.chat_items.lock().push(item);
    }

    /// Marks the speech done and runs the done callbacks.
    pub(crate) fn mark_done(&self) {
        let changed = self.inner.flags.send_if_modified(|f| {
            if f.done {
                false
            } else {
                f.done = true;
                true
            }
        });
        if changed {
            let callbacks = std::mem::take(&mut *self.inner.callbacks.lock());
            for cb in callbacks {
                cb(self);
            }
        }
    }
}
