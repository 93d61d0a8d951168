//! Long-running tools: filler speech while a slow step runs ([`RunContext::with_filler`]),
//! and tools that answer at once and finish after the turn, reporting progress
//! ([`RunContext::finish_in_background`], [`ToolProgress`]).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::chat_context::{FunctionCall, FunctionCallOutput};
use super::tool::{IntoToolOutput, RunContext, ToolError, ToolOutput};
use super::{ChatItem, ToolChoice};
use crate::voice::{AgentSession, AgentState, ReplyOptions, SessionEvent, UserState};

/// The text the model reads for a progress update (the reference's `UPDATE_TEMPLATE`;
/// `{function_name}` and `{message}` are replaced).
pub const UPDATE_TEMPLATE: &str = "The tool `{function_name}` has updated, message: {message}\n\
The task is still running, so DON'T make up or give information not included in the message above.";

type FillerFn = Arc<dyn Fn(usize) -> Option<String> + Send + Sync>;

/// What [`RunContext::with_filler`] says while a slow step runs (the reference's
/// `with_filler(source, delay=, interval=, max_steps=)`).
///
/// The filler plays once the session has been idle (neither the agent nor the user speaking)
/// for `delay` without a break; with an `interval` it plays again after each interval (and a
/// new idle `delay`), at most `max_steps` times.
#[derive(Clone)]
pub struct Filler {
    source: FillerFn,
    delay: Duration,
    interval: Option<Duration>,
    max_steps: Option<usize>,
}

impl std::fmt::Debug for Filler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filler")
            .field("delay", &self.delay)
            .field("interval", &self.interval)
            .field("max_steps", &self.max_steps)
            .finish_non_exhaustive()
    }
}

impl Filler {
    /// Says `text` (default: at once when idle, once).
    pub fn text(text: impl Into<String>) -> Self {
        let text: String = text.into();
        Self::from_fn(move |_| Some(text.clone()))
    }

    /// Says what `source(step)` returns, `step` counting the fillers played so far; `None`
    /// skips this time (retried after the interval; the count does not advance).
    pub fn from_fn(source: impl Fn(usize) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            source: Arc::new(source),
            delay: Duration::ZERO,
            interval: None,
            max_steps: None,
        }
    }

    /// Idle time required before each filler (default 0: as soon as the session is idle).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Plays again this long after each filler (default: once only).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// At most this many fillers (default: no limit).
    pub fn max_steps(mut self, max_steps: usize) -> Self {
        self.max_steps = Some(max_steps);
        self
    }
}

/// Whether neither the agent nor the user is speaking.
fn is_idle(session: &AgentSession) -> bool {
    session.agent_state() != AgentState::Speaking && session.user_state() != UserState::Speaking
}

/// Whether `event` ends an idle stretch.
fn breaks_idle(event: &SessionEvent) -> bool {
    match event {
        SessionEvent::AgentStateChanged { new_state, .. } => *new_state == AgentState::Speaking,
        SessionEvent::UserStateChanged { new_state, .. } => *new_state == UserState::Speaking,
        _ => false,
    }
}

/// Plays `filler` in `session` until dropped.
async fn filler_loop(session: AgentSession, filler: Filler) {
    let mut events = session.subscribe();
    let mut played = 0usize;
    loop {
        if filler.max_steps.is_some_and(|max| played >= max) {
            return;
        }
        // Wait for idle, then for `delay` of continuous idle.
        loop {
            while !is_idle(&session) {
                match events.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
            let dwell = tokio::time::sleep(filler.delay);
            tokio::pin!(dwell);
            let broken = loop {
                tokio::select! {
                    _ = &mut dwell => break false,
                    ev = events.recv() => match ev {
                        Ok(SessionEvent::Close { .. }) | Err(RecvError::Closed) => return,
                        Ok(ev) if breaks_idle(&ev) => break true,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                    }
                }
            };
            if !broken && is_idle(&session) {
                break;
            }
        }
        if let Some(text) = (filler.source)(played) {
            match session.say(text, Default::default()) {
                Ok(_) => played += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "filler: cannot speak");
                    return;
                }
            }
        }
        match filler.interval {
            Some(interval) => tokio::time::sleep(interval).await,
            None => return,
        }
    }
}

impl RunContext {
    /// Runs `work` (a slow step of the tool), saying `filler` if it takes long, as the
    /// reference's `async with ctx.with_filler(...)`. The filler stops when `work` ends (a
    /// filler already speaking finishes its sentence). Without a session (a detached context)
    /// this just awaits `work`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use livekit_agents::llm::{Filler, RunContext, ToolError};
    ///
    /// async fn search_flights(ctx: RunContext) -> Result<String, ToolError> {
    ///     let filler = Filler::text("Let me look that up, one moment.").delay(Duration::from_secs(1));
    ///     let flights = ctx
    ///         .with_filler(filler, async {
    ///             tokio::time::sleep(Duration::from_secs(5)).await; // the slow API
    ///             "two flights at 9:00 and 13:30".to_string()
    ///         })
    ///         .await;
    ///     Ok(flights)
    /// }
    /// ```
    pub async fn with_filler<F: Future>(&self, filler: Filler, work: F) -> F::Output {
        let Some(session) = self.session().cloned() else {
            return work.await;
        };
        let scheduler =
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(filler_loop(session, filler)));
        let out = work.await;
        drop(scheduler);
        out
    }

    /// Finishes this tool after the turn: returns at once with `first_update` (the model
    /// reads it through [`UPDATE_TEMPLATE`] and replies, e.g. "I'm booking it, this takes a
    /// minute"), while `work` runs in the background with a [`ToolProgress`] to report more
    /// updates. Its result is added to the conversation as the output of a
    /// `{call_id}_final` call and answered with a new reply once the session is idle (the
    /// reference's asynchronous tools). The user-away timer stays disarmed until that reply has
    /// been played, so a user waiting for the result is not marked away.
    ///
    /// Without a session (a detached context) `work` still runs; its result goes nowhere.
    ///
    /// ```no_run
    /// use livekit_agents::llm::{RunContext, ToolError, ToolOutput};
    ///
    /// async fn book(ctx: RunContext) -> Result<ToolOutput, ToolError> {
    ///     Ok(ctx.finish_in_background("Booking started.", |progress| async move {
    ///         progress.update("Seats held, paying now.");
    ///         Ok::<_, ToolError>("Booked: confirmation ABC123.")
    ///     }))
    /// }
    /// ```
    pub fn finish_in_background<F, Fut, R>(
        &self,
        first_update: impl Into<String>,
        work: F,
    ) -> ToolOutput
    where
        F: FnOnce(ToolProgress) -> Fut,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
        R: IntoToolOutput,
    {
        let call = self.function_call.clone();
        let first = render_update(&call.name, &first_update.into());
        let progress = ToolProgress {
            session: self.session().cloned(),
            call: call.clone(),
            updates: Arc::new(AtomicUsize::new(1)),
        };
        let fut = work(progress.clone());
        let session = self.session().cloned();
        let (landed_tx, landed_rx) = tokio::sync::oneshot::channel::<()>();
        if let Some(session) = &session {
            session.hold_user_away_timer_until(async move {
                let _ = landed_rx.await;
            });
        }
        tokio::spawn(async move {
            // A panic in the background work becomes an internal error, as in a handler.
            let outcome =
                match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut)).await {
                    Ok(r) => r.map(IntoToolOutput::into_tool_output),
                    Err(_) => {
                        tracing::error!(tool = %call.name, "background tool work panicked");
                        Err(ToolError::new(super::INTERNAL_ERROR_MESSAGE))
                    }
                };
            let Some(session) = session else { return };
            let (text, is_error, reply) = match outcome {
                Ok(ToolOutput::Value(v)) => (value_text(v), false, true),
                Ok(ToolOutput::None) => (String::new(), false, false),
                Ok(ToolOutput::Handoff { agent, returns }) => {
                    session.update_agent(agent);
                    (returns.map(value_text).unwrap_or_default(), false, false)
                }
                Err(e) => {
                    if e.is_internal() {
                        tracing::error!(tool = %call.name, error = %e, "background tool failed");
                    }
                    (e.message().to_owned(), true, true)
                }
            };
            record_pair(&session, &call, "_final", text, is_error);
            if reply {
                if let Some(handle) = reply_when_idle(&session, None).await {
                    handle.wait_for_playout().await;
                }
            }
            let _ = landed_tx.send(());
        });
        ToolOutput::Value(serde_json::Value::String(first))
    }
}

/// Reports progress of a tool finishing in the background
/// ([`RunContext::finish_in_background`]).
#[derive(Debug, Clone)]
pub struct ToolProgress {
    session: Option<AgentSession>,
    call: FunctionCall,
    updates: Arc<AtomicUsize>,
}

impl ToolProgress {
    /// Adds `message` to the conversation (as the output of a `{call_id}_update_{n}` call,
    /// through [`UPDATE_TEMPLATE`]) and has the agent tell the user once the session is idle.
    pub fn update(&self, message: impl Into<String>) {
        self.push(message.into(), true);
    }

    /// Adds `message` to the conversation for the model only: nothing is said.
    pub fn update_silent(&self, message: impl Into<String>) {
        self.push(message.into(), false);
    }

    /// The call being worked on.
    pub fn function_call(&self) -> &FunctionCall {
        &self.call
    }

    fn push(&self, message: String, speak: bool) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let n = self.updates.fetch_add(1, Ordering::SeqCst);
        let text = render_update(&self.call.name, &message);
        record_pair(&session, &self.call, &format!("_update_{n}"), text, false);
        if speak {
            tokio::spawn(async move {
                reply_when_idle(&session, Some(ToolChoice::None)).await;
            });
        }
    }
}

fn render_update(function_name: &str, message: &str) -> String {
    UPDATE_TEMPLATE
        .replace("{function_name}", function_name)
        .replace("{message}", message)
}

fn value_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Adds a synthetic call (the original's name and arguments, call id `{call_id}{suffix}`) and
/// its output to the active agent's conversation and the session history.
fn record_pair(
    session: &AgentSession,
    call: &FunctionCall,
    suffix: &str,
    output: String,
    is_error: bool,
) {
    let synthetic = FunctionCall::new(
        format!("{}{suffix}", call.call_id),
        call.name.clone(),
        call.arguments.clone(),
    );
    let out = FunctionCallOutput::for_call(&synthetic, output, is_error);
    let items = [
        ChatItem::FunctionCall(synthetic),
        ChatItem::FunctionCallOutput(out),
    ];
    if let Some(agent) = session.current_agent() {
        for item in &items {
            agent.push_chat_item(item.clone());
        }
    }
    for item in items {
        session.add_history_item(item);
    }
}

/// Waits until the agent listens and the user is not speaking, then asks for a reply.
async fn reply_when_idle(
    session: &AgentSession,
    tool_choice: Option<ToolChoice>,
) -> Option<crate::voice::SpeechHandle> {
    let mut events = session.subscribe();
    loop {
        if !session.is_running() {
            return None;
        }
        let idle = session.agent_state() == AgentState::Listening
            && session.user_state() != UserState::Speaking
            && session.current_speech().is_none();
        if idle {
            break;
        }
        match events.recv().await {
            Ok(SessionEvent::Close { .. }) | Err(RecvError::Closed) => return None,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
        }
    }
    match session.generate_reply(ReplyOptions {
        tool_choice,
        ..Default::default()
    }) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::debug!(error = %e, "background tool: cannot reply");
            None
        }
    }
}
