//! [`SessionReport`]: what happened in a session, built when it ends (the reference's
//! `SessionReport`), given to [`AgentSession::on_session_end`] and serialisable to JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::events::{SessionEvent, TimedSessionEvent};
use super::session::AgentSession;
use super::SessionOptions;
use crate::llm::{ChatContext, ChatItem, ChatRole};
use crate::metrics::AgentMetrics;

/// Most events a report keeps (a session that emits more keeps the first ones and counts the
/// rest in `events_dropped`).
pub const MAX_REPORT_EVENTS: usize = 100_000;

/// What happened in one session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    /// The job's id (empty outside a job).
    pub job_id: String,
    /// The room's sid (empty when unknown).
    pub room_id: String,
    /// The room's name (empty outside a job).
    pub room: String,
    /// The agent name the job was dispatched with.
    pub agent_name: String,
    /// Version of this crate.
    pub sdk_version: String,
    /// When the session started (Unix seconds).
    pub started_at: f64,
    /// When the report was made, at the end of the session (Unix seconds).
    pub timestamp: f64,
    /// Session length, seconds (on tokio's clock).
    pub duration: f64,
    /// The session's options (the reference's keys).
    pub options: Value,
    /// The agents that were active, in order.
    pub agents: Vec<AgentInfo>,
    /// The conversation, items with their `created_at`.
    pub chat_history: ChatContext,
    /// Every event with its `created_at` (metrics are in `turns` and `usage` instead, as the
    /// reference leaves them out of its events).
    pub events: Vec<ReportEvent>,
    /// Events a slow collector lost or past [`MAX_REPORT_EVENTS`].
    pub events_dropped: u64,
    /// Metrics grouped by speech (one entry per agent turn), in order.
    pub turns: Vec<TurnReport>,
    /// Usage per model (label).
    pub usage: Vec<ModelUsage>,
    /// User messages in the history.
    pub user_turns: usize,
    /// Errors per component (`llm`, `stt`, `tts`, `realtime`, ...).
    pub errors: BTreeMap<String, u32>,
    /// The call recording's file, once set with [`SessionReport::set_recording`].
    pub audio_recording_path: Option<String>,
    /// When the recording started (Unix seconds): event `created_at` minus this is the
    /// event's position in the file.
    pub audio_recording_started_at: Option<f64>,
    /// Why the session closed (`user_initiated`, `error`, `input_ended`).
    pub close_reason: Option<String>,
    /// The error that closed it.
    pub close_error: Option<String>,
}

/// An agent active in the session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentInfo {
    /// The agent's id.
    pub id: String,
    /// Seconds from the session start at which it became active (first seen).
    pub since: f64,
}

/// One event of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportEvent {
    /// The event name (`user_state_changed`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was created (Unix seconds).
    pub created_at: f64,
    /// Seconds from the session start (tokio's clock): offsets into a recording.
    pub offset: f64,
    /// The event's fields.
    pub data: Value,
}

/// The metrics of one agent turn (one speech).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnReport {
    /// The speech.
    pub speech_id: String,
    /// End of speech → turn committed, seconds.
    pub end_of_utterance_delay: Option<f64>,
    /// End of speech → final transcript, seconds.
    pub transcription_delay: Option<f64>,
    /// LLM time to first token, seconds (first request of the turn).
    pub llm_ttft: Option<f64>,
    /// TTS time to first byte, seconds (first request of the turn).
    pub tts_ttfb: Option<f64>,
    /// End of speech → first agent audio, seconds.
    pub e2e_latency: Option<f64>,
    /// LLM prompt tokens.
    pub prompt_tokens: u64,
    /// LLM completion tokens.
    pub completion_tokens: u64,
    /// TTS characters.
    pub tts_characters: u64,
    /// Whether a request of the turn was cancelled (interrupted).
    pub cancelled: bool,
}

/// Usage of one model over the session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelUsage {
    /// `llm`, `tts` or `stt`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The model's label (`provider.Class`).
    pub label: String,
    /// Requests.
    pub requests: u64,
    /// LLM prompt tokens.
    #[serde(skip_serializing_if = "is_zero")]
    pub input_tokens: u64,
    /// LLM cached prompt tokens.
    #[serde(skip_serializing_if = "is_zero")]
    pub input_cached_tokens: u64,
    /// LLM completion tokens.
    #[serde(skip_serializing_if = "is_zero")]
    pub output_tokens: u64,
    /// TTS characters.
    #[serde(skip_serializing_if = "is_zero")]
    pub characters_count: u64,
    /// Seconds of audio (TTS output, STT input).
    #[serde(skip_serializing_if = "is_zero_f")]
    pub audio_duration: f64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}

impl SessionReport {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Notes the call recording made by `recorder` and written to `path` (the reference's
    /// `audio_recording_path` and `audio_recording_started_at`).
    pub fn set_recording(
        &mut self,
        recorder: &crate::telemetry::recording::CallRecorder,
        path: impl AsRef<std::path::Path>,
    ) {
        self.audio_recording_path = Some(path.as_ref().display().to_string());
        self.audio_recording_started_at = Some(recorder.started_at_secs());
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }
}

/// The options as the reference's report names them.
pub fn options_json(o: &SessionOptions) -> Value {
    let th = &o.turn_handling;
    json!({
        "allow_interruptions": th.interruption.enabled,
        "discard_audio_if_uninterruptible": th.interruption.discard_audio_if_uninterruptible,
        "min_interruption_duration": th.interruption.min_duration.as_secs_f64(),
        "min_interruption_words": th.interruption.min_words,
        "min_endpointing_delay": th.endpointing.min_delay.as_secs_f64(),
        "max_endpointing_delay": th.endpointing.max_delay.as_secs_f64(),
        "max_tool_steps": o.max_tool_steps,
        "user_away_timeout": o.user_away_timeout.map(|d| d.as_secs_f64()),
        "min_consecutive_speech_delay": o.min_consecutive_speech_delay.as_secs_f64(),
        "preemptive_generation": {
            "enabled": th.preemptive_generation.enabled,
            "preemptive_tts": th.preemptive_generation.preemptive_tts,
            "max_speech_duration": th.preemptive_generation.max_speech_duration.as_secs_f64(),
            "max_retries": th.preemptive_generation.max_retries,
        },
        "max_unrecoverable_errors": o.max_unrecoverable_errors,
        "use_tts_aligned_transcript": o.use_tts_aligned_transcript,
    })
}

/// An event's fields as JSON (`None` for metrics, which the report keeps per turn).
pub fn event_json(event: &SessionEvent) -> Option<Value> {
    Some(match event {
        SessionEvent::AgentStateChanged {
            old_state,
            new_state,
        } => json!({"old_state": old_state, "new_state": new_state}),
        SessionEvent::UserStateChanged {
            old_state,
            new_state,
        } => json!({"old_state": old_state, "new_state": new_state}),
        SessionEvent::UserInputTranscribed {
            transcript,
            is_final,
            speaker_id,
            language,
        } => json!({
            "transcript": transcript, "is_final": is_final,
            "speaker_id": speaker_id, "language": language,
        }),
        SessionEvent::ConversationItemAdded { item } => json!({ "item": item }),
        SessionEvent::FunctionToolsExecuted {
            function_calls,
            function_call_outputs,
        } => json!({
            "function_calls": function_calls,
            "function_call_outputs": function_call_outputs,
        }),
        SessionEvent::MetricsCollected { .. } => return None,
        SessionEvent::SpeechCreated {
            user_initiated,
            source,
            speech_handle,
        } => json!({
            "user_initiated": user_initiated,
            "source": format!("{source:?}"),
            "speech_id": speech_handle.id(),
        }),
        SessionEvent::AgentFalseInterruption { resumed } => json!({ "resumed": resumed }),
        SessionEvent::Error {
            source,
            error,
            recoverable,
        } => json!({
            "source": format!("{source:?}"), "error": error.to_string(), "recoverable": recoverable,
        }),
        SessionEvent::SipDtmfReceived {
            code,
            digit,
            participant_identity,
        } => json!({
            "code": code, "digit": digit, "participant_identity": participant_identity,
        }),
        SessionEvent::UserTranscriptionTimeout {
            speech_duration,
            vad_speech_started_at,
        } => json!({
            "speech_duration": speech_duration.as_secs_f64(),
            "vad_speech_started_at": vad_speech_started_at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }),
        SessionEvent::Close { reason, error } => {
            json!({ "reason": close_reason_name(*reason), "error": error })
        }
    })
}

fn close_reason_name(r: super::CloseReason) -> &'static str {
    match r {
        super::CloseReason::UserInitiated => "user_initiated",
        super::CloseReason::Error => "error",
        super::CloseReason::InputEnded => "input_ended",
        super::CloseReason::CallEnded => "call_ended",
        super::CloseReason::ParticipantDisconnected => "participant_disconnected",
    }
}

fn error_key(s: super::ErrorSource) -> &'static str {
    match s {
        super::ErrorSource::Stt => "stt",
        super::ErrorSource::Llm => "llm",
        super::ErrorSource::Tts => "tts",
        super::ErrorSource::RealtimeModel => "realtime",
        super::ErrorSource::Vad => "vad",
        super::ErrorSource::Mcp => "mcp",
    }
}

/// Builds a report from the events of a session (in order).
#[derive(Debug)]
pub struct ReportBuilder {
    started: tokio::time::Instant,
    started_at: std::time::SystemTime,
    events: Vec<ReportEvent>,
    dropped: u64,
    turns: Vec<TurnReport>,
    usage: Vec<ModelUsage>,
    agents: Vec<AgentInfo>,
    errors: BTreeMap<String, u32>,
    close: Option<(String, Option<String>)>,
    /// End-of-turn metrics waiting for the speech that answers the turn (they come first).
    pending_eou: Option<(f64, f64)>,
    /// Job id, room name, agent name (of the job running when the builder was made).
    job: (String, String, String),
}

impl Default for ReportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReportBuilder {
    /// A builder for a session starting now (in the current job, if any).
    pub fn new() -> Self {
        let mut errors = BTreeMap::new();
        for k in ["llm", "stt", "tts", "realtime"] {
            errors.insert(k.to_string(), 0);
        }
        Self {
            started: tokio::time::Instant::now(),
            started_at: std::time::SystemTime::now(),
            events: Vec::new(),
            dropped: 0,
            turns: Vec::new(),
            usage: Vec::new(),
            agents: Vec::new(),
            errors,
            close: None,
            pending_eou: None,
            job: job_info(),
        }
    }

    /// Whether the session's `close` event was seen.
    pub fn closed(&self) -> bool {
        self.close.is_some()
    }

    /// Counts `n` events lost.
    pub fn lost(&mut self, n: u64) {
        self.dropped = self.dropped.saturating_add(n);
    }

    /// Notes that agent `id` is active (from now, unless it is already the last one).
    pub fn agent(&mut self, id: &str) {
        if self.agents.last().map(|a| a.id.as_str()) != Some(id) {
            let since = self.started.elapsed().as_secs_f64();
            self.agents.push(AgentInfo {
                id: id.to_string(),
                since,
            });
        }
    }

    /// Adds one event.
    pub fn push(&mut self, ev: &TimedSessionEvent) {
        match &ev.event {
            SessionEvent::MetricsCollected { metrics } => self.metrics(metrics),
            SessionEvent::Error { source, .. } => {
                *self
                    .errors
                    .entry(error_key(*source).to_string())
                    .or_default() += 1;
            }
            SessionEvent::Close { reason, error } => {
                self.close = Some((close_reason_name(*reason).to_string(), error.clone()));
            }
            SessionEvent::SpeechCreated { speech_handle, .. } => {
                let pending = self.pending_eou.take();
                if let Some(t) = self.turn(&Some(speech_handle.id().to_string())) {
                    if let Some((eou, transcription)) = pending {
                        t.end_of_utterance_delay = Some(eou);
                        t.transcription_delay = Some(transcription);
                    }
                }
            }
            _ => {}
        }
        let Some(data) = event_json(&ev.event) else {
            return;
        };
        if self.events.len() >= MAX_REPORT_EVENTS {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.events.push(ReportEvent {
            kind: ev.event.name().to_string(),
            created_at: ev.created_at_secs(),
            offset: ev
                .instant
                .saturating_duration_since(self.started)
                .as_secs_f64(),
            data,
        });
    }

    fn turn(&mut self, speech_id: &Option<String>) -> Option<&mut TurnReport> {
        let id = speech_id.as_deref()?;
        if let Some(i) = self.turns.iter().position(|t| t.speech_id == id) {
            return self.turns.get_mut(i);
        }
        if self.turns.len() >= MAX_REPORT_EVENTS {
            return None;
        }
        self.turns.push(TurnReport {
            speech_id: id.to_string(),
            ..Default::default()
        });
        self.turns.last_mut()
    }

    fn usage_of(&mut self, kind: &str, label: &str) -> &mut ModelUsage {
        let i = match self
            .usage
            .iter()
            .position(|u| u.kind == kind && u.label == label)
        {
            Some(i) => i,
            None => {
                self.usage.push(ModelUsage {
                    kind: kind.into(),
                    label: label.into(),
                    ..Default::default()
                });
                self.usage.len() - 1
            }
        };
        &mut self.usage[i]
    }

    fn metrics(&mut self, m: &AgentMetrics) {
        match m {
            AgentMetrics::Llm(m) => {
                let u = self.usage_of("llm", &m.label);
                u.requests += 1;
                u.input_tokens += u64::from(m.prompt_tokens);
                u.input_cached_tokens += u64::from(m.prompt_cached_tokens);
                u.output_tokens += u64::from(m.completion_tokens);
                if let Some(t) = self.turn(&m.speech_id) {
                    t.llm_ttft.get_or_insert(m.ttft.as_secs_f64());
                    t.prompt_tokens += u64::from(m.prompt_tokens);
                    t.completion_tokens += u64::from(m.completion_tokens);
                    t.cancelled |= m.cancelled;
                }
            }
            AgentMetrics::Tts(m) => {
                let u = self.usage_of("tts", &m.label);
                u.requests += 1;
                u.characters_count += m.characters_count as u64;
                u.audio_duration += m.audio_duration.as_secs_f64();
                if let Some(t) = self.turn(&m.speech_id) {
                    t.tts_ttfb.get_or_insert(m.ttfb.as_secs_f64());
                    t.tts_characters += m.characters_count as u64;
                    t.cancelled |= m.cancelled;
                }
            }
            AgentMetrics::Stt(m) => {
                let u = self.usage_of("stt", &m.label);
                u.requests += 1;
                u.audio_duration += m.audio_duration.as_secs_f64();
            }
            AgentMetrics::Eou(m) => {
                let delays = (
                    m.end_of_utterance_delay.as_secs_f64(),
                    m.transcription_delay.as_secs_f64(),
                );
                match self.turn(&m.speech_id) {
                    Some(t) => {
                        t.end_of_utterance_delay = Some(delays.0);
                        t.transcription_delay = Some(delays.1);
                    }
                    // Emitted before the reply's speech exists: it goes to the next speech.
                    None => self.pending_eou = Some(delays),
                }
            }
            AgentMetrics::Turn(m) => {
                let id = Some(m.speech_id.clone());
                if let Some(t) = self.turn(&id) {
                    t.e2e_latency = Some(m.e2e_latency.as_secs_f64());
                }
            }
            AgentMetrics::Vad(_) => {}
        }
    }

    /// The report, with the session's options and history.
    pub fn finish(self, options: &SessionOptions, history: ChatContext) -> SessionReport {
        let now = std::time::SystemTime::now();
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        let user_turns = history
            .items()
            .iter()
            .filter(|i| matches!(i, ChatItem::Message(m) if m.role == ChatRole::User))
            .count();
        let (job_id, room, agent_name) = self.job;
        let (close_reason, close_error) = match self.close {
            Some((r, e)) => (Some(r), e),
            None => (None, None),
        };
        SessionReport {
            job_id,
            room_id: String::new(),
            room,
            agent_name,
            sdk_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: secs(self.started_at),
            timestamp: secs(now),
            duration: self.started.elapsed().as_secs_f64(),
            options: options_json(options),
            agents: self.agents,
            chat_history: history,
            events: self.events,
            events_dropped: self.dropped,
            turns: self.turns,
            usage: self.usage,
            user_turns,
            errors: self.errors,
            audio_recording_path: None,
            audio_recording_started_at: None,
            close_reason,
            close_error,
        }
    }
}

#[cfg(feature = "server")]
fn job_info() -> (String, String, String) {
    match crate::worker::JobContext::current() {
        Some(job) => (
            job.job_id().to_string(),
            job.room_name().to_string(),
            job.job().agent_name.clone(),
        ),
        None => Default::default(),
    }
}

#[cfg(not(feature = "server"))]
fn job_info() -> (String, String, String) {
    Default::default()
}

/// The report of a session being collected; see [`AgentSession::record_report`].
#[derive(Debug, Clone)]
pub struct ReportHandle {
    report: Arc<Mutex<Option<SessionReport>>>,
    done: tokio::sync::watch::Receiver<bool>,
}

impl ReportHandle {
    /// Waits for the session to close and returns its report.
    pub async fn wait(&self) -> Option<SessionReport> {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
        self.report.lock().clone()
    }

    /// The report, if the session closed.
    pub fn get(&self) -> Option<SessionReport> {
        self.report.lock().clone()
    }
}

impl AgentSession {
    /// Starts collecting this session's [`SessionReport`] (call before `start` to see every
    /// event); the report is ready when the session closes.
    pub fn record_report(&self) -> ReportHandle {
        self.record_report_then(ReportBuilder::new(), |_| {})
    }

    /// As [`record_report`](Self::record_report), with event offsets measured from `origin`
    /// (e.g. a [`CallRecorder`](crate::telemetry::recording::CallRecorder)'s, so they are
    /// offsets into the recording).
    pub fn record_report_at(&self, origin: tokio::time::Instant) -> ReportHandle {
        let mut builder = ReportBuilder::new();
        builder.started = origin;
        self.record_report_then(builder, |_| {})
    }

    /// Calls `hook` with the session's report when it closes (the reference's
    /// `on_session_end`). Call before `start` to see every event.
    ///
    /// ```no_run
    /// # use livekit_agents::voice::AgentSession;
    /// # fn demo(session: &AgentSession) {
    /// session.on_session_end(|report| {
    ///     let _ = report.write_json("session-report.json");
    /// });
    /// # }
    /// ```
    pub fn on_session_end(
        &self,
        hook: impl FnOnce(SessionReport) + Send + 'static,
    ) -> ReportHandle {
        self.record_report_then(ReportBuilder::new(), hook)
    }

    fn record_report_then(
        &self,
        mut builder: ReportBuilder,
        hook: impl FnOnce(SessionReport) + Send + 'static,
    ) -> ReportHandle {
        let mut rx = self.subscribe_timed();
        let report: Arc<Mutex<Option<SessionReport>>> = Arc::default();
        let (done_tx, done) = tokio::sync::watch::channel(false);
        let weak = Arc::downgrade(&self.inner);
        let slot = report.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if let Some(inner) = weak.upgrade() {
                            let session = AgentSession { inner };
                            if let Some(agent) = session.current_agent() {
                                builder.agent(agent.id());
                            }
                        }
                        builder.push(&ev);
                        if builder.closed() {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(n)) => builder.lost(n),
                    Err(RecvError::Closed) => break,
                }
            }
            let Some(inner) = weak.upgrade() else {
                let _ = done_tx.send(true);
                return;
            };
            let session = AgentSession { inner };
            let r = builder.finish(session.options(), session.history());
            *slot.lock() = Some(r.clone());
            let _ = done_tx.send(true);
            hook(r);
        });
        ReportHandle { report, done }
    }
}
