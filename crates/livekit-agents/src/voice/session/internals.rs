//! Crate-internal session plumbing: events and history, agent/user state and the user-away
//! timer, error counting, idleness; and `run()` for tests.

use std::sync::Arc;

use tokio_util::task::AbortOnDropHandle;

use super::super::activity::Activity;
use super::super::events::{AgentState, CloseReason, ErrorSource, SessionEvent, UserState};
use super::super::options::TurnDetection;
use super::super::realtime::RealtimeLink;
use super::{AgentSession, ReplyOptions, SessionError};
use crate::io::{AudioOutput, TextOutput};
use crate::llm::ChatItem;
use crate::metrics::AgentMetrics;

impl AgentSession {
    // ---- crate internals ----

    pub(crate) fn current_activity(&self) -> Option<Activity> {
        let st = self.inner.state.lock();
        if st.closed {
            return None;
        }
        st.activity.clone()
    }

    pub(crate) fn audio_output(&self) -> Option<Arc<dyn AudioOutput>> {
        let st = self.inner.state.lock();
        if st.audio_output_enabled {
            st.audio_output.clone()
        } else {
            None
        }
    }

    pub(crate) fn text_output(&self) -> Option<Arc<dyn TextOutput>> {
        self.inner.state.lock().text_output.clone()
    }

    pub(crate) fn realtime_link(&self) -> Option<Arc<RealtimeLink>> {
        self.inner.state.lock().realtime.clone()
    }

    pub(crate) fn turn_detection(&self) -> TurnDetection {
        self.inner.state.lock().turn_detection.clone()
    }

    /// Whether the `Close` event was sent (nothing is emitted or recorded after it).
    pub(crate) fn close_emitted(&self) -> bool {
        self.inner
            .close_emitted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        self.emit_at(event, tokio::time::Instant::now());
    }

    /// Emits `event` stamped with `at` (its `created_at`; now or earlier).
    pub(crate) fn emit_at(&self, event: SessionEvent, at: tokio::time::Instant) {
        if self.close_emitted() {
            return;
        }
        self.inner.telemetry.observe(&event);
        if let Some(timed) = self
            .inner
            .timed_events
            .get()
            .filter(|t| t.receiver_count() > 0)
        {
            let _ = timed.send(super::super::events::TimedSessionEvent::at(
                event.clone(),
                at,
            ));
        }
        let _ = self.inner.events.send(event);
    }

    /// Records when the user last spoke (the VAD's end of speech minus its silence): the next
    /// `user_state_changed(listening)` is stamped with it.
    pub(crate) fn note_user_last_spoke(&self, at: tokio::time::Instant) {
        self.inner.state.lock().user_last_spoke = Some(at);
    }

    pub(crate) fn emit_metrics(&self, metrics: AgentMetrics) {
        self.inner.state.lock().usage.collect(&metrics);
        self.emit(SessionEvent::MetricsCollected { metrics });
    }

    pub(crate) fn add_history_item(&self, item: ChatItem) {
        if self.close_emitted() {
            return;
        }
        self.inner.state.lock().history.push(item.clone());
        self.emit(SessionEvent::ConversationItemAdded { item });
    }

    /// Adds an item created earlier than the last ones at its place in time (an interrupted
    /// reply before a message typed while it played; a tool call before what was said while
    /// the tool ran).
    pub(crate) fn insert_history_item(&self, item: ChatItem) {
        if self.close_emitted() {
            return;
        }
        self.inner.state.lock().history.insert(item.clone());
        self.emit(SessionEvent::ConversationItemAdded { item });
    }

    pub(crate) fn set_agent_state(&self, new_state: AgentState) {
        if self.close_emitted() {
            return;
        }
        let old_state = {
            let mut st = self.inner.state.lock();
            let old = st.agent_state;
            if old == new_state {
                return;
            }
            st.agent_state = new_state;
            old
        };
        if new_state == AgentState::Speaking {
            // The LLM and the TTS worked: their unrecoverable-error counts start over.
            let mut st = self.inner.state.lock();
            st.error_counts.remove(&ErrorSource::Llm);
            st.error_counts.remove(&ErrorSource::Tts);
            // The AEC warm-up starts when the agent is first heard (once per session).
            let audible = st.audio_output_enabled && st.audio_output.is_some();
            if audible && st.aec_warmup_until.is_none() && !st.aec_warmup_remaining.is_zero() {
                let remaining = std::mem::take(&mut st.aec_warmup_remaining);
                tracing::debug!(?remaining, "aec warmup active, interruptions disabled");
                st.aec_warmup_until = Some(tokio::time::Instant::now() + remaining);
            }
        }
        self.emit(SessionEvent::AgentStateChanged {
            old_state,
            new_state,
        });
        self.update_away_timer();
    }

    pub(crate) fn set_user_state(&self, new_state: UserState) {
        if self.close_emitted() {
            return;
        }
        let (old_state, last_spoke) = {
            let mut st = self.inner.state.lock();
            let old = st.user_state;
            if old == new_state {
                return;
            }
            st.user_state = new_state;
            (old, st.user_last_spoke.take())
        };
        self.inner
            .user_speaking
            .send_replace(new_state == UserState::Speaking);
        // Listening again: stamped with when the user last spoke, as the reference.
        let now = tokio::time::Instant::now();
        let at = match (new_state, last_spoke) {
            (UserState::Listening, Some(t)) if t <= now => t,
            _ => now,
        };
        self.emit_at(
            SessionEvent::UserStateChanged {
                old_state,
                new_state,
            },
            at,
        );
        self.update_away_timer();
    }

    /// Whether the AEC warm-up is running (`SessionOptions::aec_warmup_duration`): user audio
    /// does not interrupt the agent meanwhile.
    pub(crate) fn aec_warmup_active(&self) -> bool {
        let st = self.inner.state.lock();
        !st.closed
            && st
                .aec_warmup_until
                .is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// Waits until the user is not speaking.
    pub(crate) async fn wait_user_silent(&self) {
        let mut rx = self.inner.user_speaking.subscribe();
        let _ = rx.wait_for(|speaking| !*speaking).await;
    }

    /// Keeps the user-away timer (`user_away_timeout`) disarmed until `ready` resolves, e.g.
    /// until the user can hear the agent: the room I/O holds it until the agent's audio track
    /// has a subscriber, as the reference does. The timer then runs as usual.
    ///
    /// ```no_run
    /// # use livekit_agents::voice::AgentSession;
    /// # fn demo(session: &AgentSession, subscribed: tokio::sync::oneshot::Receiver<()>) {
    /// session.hold_user_away_timer_until(async move {
    ///     let _ = subscribed.await;
    /// });
    /// # }
    /// ```
    pub fn hold_user_away_timer_until(
        &self,
        ready: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        {
            let mut st = self.inner.state.lock();
            st.away_holds += 1;
            st.away_timer = None;
        }
        // Holds only a weak reference while waiting, and stops waiting when the session closes,
        // so a hold that never resolves keeps nothing alive.
        let weak = Arc::downgrade(&self.inner);
        let mut closed = self.inner.closed.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = ready => {}
                _ = closed.wait_for(|c| *c) => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            let session = AgentSession { inner };
            session.inner.state.lock().away_holds -= 1;
            session.update_away_timer();
        });
    }

    /// Arms the user-away timer when both sides listen; disarms it otherwise.
    fn update_away_timer(&self) {
        let Some(timeout) = self.inner.options.user_away_timeout else {
            return;
        };
        let mut st = self.inner.state.lock();
        let both_listening =
            st.agent_state == AgentState::Listening && st.user_state == UserState::Listening;
        if !both_listening || st.closed || st.away_holds > 0 {
            st.away_timer = None;
            return;
        }
        if st.away_timer.is_some() {
            return;
        }
        let session = self.clone();
        st.away_timer = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let old_state = {
                let mut st = session.inner.state.lock();
                if st.user_state != UserState::Listening {
                    return;
                }
                st.user_state = UserState::Away;
                st.user_state
            };
            let _ = old_state;
            session.emit(SessionEvent::UserStateChanged {
                old_state: UserState::Listening,
                new_state: UserState::Away,
            });
        })));
    }

    /// Reports a provider error of the model behind `source` (the active agent's override, else
    /// the session's); see [`report_component_error`](Self::report_component_error).
    pub(crate) fn report_error(
        &self,
        source: ErrorSource,
        error: crate::types::ApiError,
        recoverable: bool,
    ) {
        let label = self.model_label(source).unwrap_or_default();
        self.report_component_error(
            source,
            super::super::events::ComponentError::Provider { label, error },
            recoverable,
        );
    }

    /// The label of the model that `source` names, if the session or the active agent has one.
    fn model_label(&self, source: ErrorSource) -> Option<String> {
        let agent = self.current_agent();
        let models = &self.inner.models;
        match source {
            ErrorSource::Stt => agent
                .and_then(|a| a.stt())
                .or_else(|| models.stt.clone())
                .map(|m| m.label()),
            ErrorSource::Llm => agent
                .and_then(|a| a.llm())
                .or_else(|| models.llm.clone())
                .map(|m| m.label()),
            ErrorSource::Tts => agent
                .and_then(|a| a.tts())
                .or_else(|| models.tts.clone())
                .map(|m| m.label()),
            ErrorSource::RealtimeModel => models.realtime.as_ref().map(|m| m.label()),
            ErrorSource::Vad => models.vad.as_ref().map(|m| m.label()),
            ErrorSource::Mcp => None,
        }
    }

    /// Reports a component error; after `max_unrecoverable_errors` unrecoverable errors of one
    /// kind the session closes.
    pub(crate) fn report_component_error(
        &self,
        source: ErrorSource,
        error: super::super::events::ComponentError,
        recoverable: bool,
    ) {
        if self.inner.state.lock().closed {
            return;
        }
        self.emit(SessionEvent::Error {
            source,
            error: error.clone(),
            recoverable,
        });
        if recoverable {
            return;
        }
        let count = {
            let mut st = self.inner.state.lock();
            let c = st.error_counts.entry(source).or_default();
            *c += 1;
            *c
        };
        if count > self.inner.options.max_unrecoverable_errors {
            let session = self.clone();
            let message = format!("{source:?} failed {count} times: {error}");
            tokio::spawn(
                async move { session.close_with(CloseReason::Error, Some(message)).await },
            );
        }
    }

    /// Resets the error counter of `source` (it worked again).
    pub(crate) fn reset_errors(&self, source: ErrorSource) {
        self.inner.state.lock().error_counts.remove(&source);
    }

    /// Waits until no speech is queued or playing and no agent switch is pending.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let mut pending = self.inner.pending_updates.subscribe();
            let _ = pending.wait_for(|n| *n == 0).await;
            let Some(activity) = self.current_activity() else {
                return;
            };
            activity.wait_idle().await;
            // An agent switch may have started while we waited.
            // (A closed activity with no switch pending is as idle as it gets: a closed
            // session's.)
            if *self.inner.pending_updates.borrow() == 0
                && self
                    .current_activity()
                    .is_some_and(|a| a.is_idle() || a.is_closed())
            {
                return;
            }
        }
    }
}

impl AgentSession {
    /// Sends `user_input` as a text turn and returns what the agent did until it is idle again
    /// (messages, tool calls and outputs, handoffs), for tests. The user's message itself is not
    /// part of the result.
    pub async fn run(
        &self,
        user_input: impl Into<String>,
    ) -> Result<crate::testing::RunResult, SessionError> {
        let user_input = user_input.into();
        let mut events = self.events();
        let handle = self.generate_reply(ReplyOptions {
            user_input: Some(user_input.clone()),
            ..Default::default()
        })?;
        handle.wait_for_playout().await;
        self.wait_idle().await;
        let mut out = Vec::new();
        let mut skipped_input = false;
        while let Some(ev) = events.try_recv() {
            let ev = match ev {
                Ok(ev) => ev,
                Err(lagged) => {
                    // A run longer than the event backlog: the result misses the oldest
                    // items, the rest is still read.
                    tracing::warn!(missed = lagged.missed, "AgentSession::run: {lagged}");
                    continue;
                }
            };
            if let SessionEvent::ConversationItemAdded { item } = ev {
                if !skipped_input {
                    if let ChatItem::Message(m) = &item {
                        if m.role == crate::llm::ChatRole::User
                            && m.text_content().as_deref() == Some(&user_input)
                        {
                            skipped_input = true;
                            continue;
                        }
                    }
                }
                out.push(crate::testing::RunEvent::from_item(item));
            }
        }
        Ok(crate::testing::RunResult { events: out })
    }
}
