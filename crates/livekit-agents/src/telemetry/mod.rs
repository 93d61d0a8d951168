//! Observability: `tracing` spans of a session (this module), OpenTelemetry export
//! (`otel`, feature `otel`), the session report ([`SessionReport`](crate::voice::SessionReport)) and call
//! recording ([`recording`]).
//!
//! # Spans
//!
//! Every session is one trace: a root span `agent_session`, and under it
//!
//! | span | opens | closes | attributes |
//! | --- | --- | --- | --- |
//! | `user_turn` | the user starts speaking | the user's message is committed | `lk.pii.user_transcript` (only with [`AgentSession::set_trace_content`]) |
//! | `eou_detection` (in `user_turn`) | the user stops speaking | the end of turn is decided | `lk.end_of_turn_delay`, `lk.transcription_delay`, `lk.on_user_turn_completed_delay` |
//! | `agent_turn` | a speech is created | its playout is done | `lk.speech_id`, `lk.interrupted` |
//! | `llm_request` (in `agent_turn`; in `agent_session` when a preemptive generation starts it before the turn exists) | the LLM request starts | its metrics are in | `gen_ai.request.model`, `gen_ai.provider.name`, `lk.response.ttft`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `lk.cancelled` |
//! | `tts_request` (in `agent_turn`) | the text goes to the TTS | its metrics are in | `gen_ai.request.model`, `gen_ai.provider.name`, `lk.response.ttfb`, `lk.tts.characters`, `lk.cancelled` |
//! | `function_tool` (in `agent_turn`) | a tool call starts | it returns | `lk.function_tool.name`, `lk.function_tool.id`, `lk.function_tool.is_error` |
//! | `agent_speaking` (in `agent_turn`) | the agent starts speaking | it stops | `lk.speech_id` |
//!
//! Spans carry no audio and no secrets; conversation content (the user's transcript) only
//! when turned on. They are at `INFO` level under the target `livekit_agents::telemetry`; with
//! no subscriber interested they cost a level check.

pub mod latency;
#[cfg(feature = "otel")]
pub mod otel;
pub mod recording;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tracing::field::Empty;
use tracing::Span;

use crate::llm::{ChatItem, ChatRole};
use crate::metrics::AgentMetrics;
use crate::voice::events::{AgentState, SessionEvent, UserState};
use crate::voice::{AgentSession, SpeechHandle};

/// Most speeches with open spans at once (speeches are removed when their playout is done;
/// past this the oldest is closed).
const MAX_OPEN_SPEECHES: usize = 64;

/// The spans of one session. Fed by the session's events and by a few start hooks in the
/// pipeline (`llm_started`, `tts_started`, `tool_call`).
#[derive(Default)]
pub(crate) struct SessionTelemetry {
    state: Mutex<TraceState>,
    record_content: AtomicBool,
    /// Cancelled when the session closes: the speech waiters stop.
    closed: tokio_util::sync::CancellationToken,
    /// The session's tape recorder (`AgentSessionBuilder::record_tape`), which also records
    /// the audio input at `start`.
    tape: std::sync::OnceLock<crate::testing::replay::TapeRecorder>,
}

/// The tape recorder of the job running on this task (`console --tape FILE`), if any.
pub(crate) fn job_tape_recorder() -> Option<crate::testing::replay::TapeRecorder> {
    #[cfg(feature = "server")]
    {
        crate::worker::JobContext::current().and_then(|ctx| ctx.tape_recorder())
    }
    #[cfg(not(feature = "server"))]
    {
        None
    }
}

#[derive(Default)]
struct TraceState {
    session: Option<Span>,
    closed: bool,
    user_turn: Option<Span>,
    eou: Option<Span>,
    speeches: HashMap<String, SpeechSpans>,
    /// Creation order of `speeches` (bounded by `MAX_OPEN_SPEECHES`).
    order: Vec<String>,
    /// The speech whose audio was synthesized last (the one `agent_speaking` belongs to).
    last_tts_speech: Option<String>,
    speaking: Option<Span>,
    /// `llm_request` spans of speeches not created yet (a preemptive generation starts its LLM
    /// before the turn ends), by speech id, oldest first (at most `MAX_OPEN_SPEECHES`).
    pending_llm: Vec<(String, Span)>,
}

struct SpeechSpans {
    turn: Span,
    llm: Option<Span>,
    tts: Option<Span>,
}

impl SessionTelemetry {
    /// The id of the session's root span, while it is open and some subscriber records it
    /// (what [`latency::TurnLatency::session_span`] holds; the console picks its turns by it).
    #[cfg(feature = "server")]
    pub(crate) fn root_span_id(&self) -> Option<u64> {
        let st = self.state.lock();
        st.session
            .as_ref()
            .and_then(|s| s.id())
            .map(|id| id.into_u64())
    }

    /// Records the session on `tape` (set once, when the session is built).
    pub(crate) fn set_tape(&self, tape: crate::testing::replay::TapeRecorder) {
        let _ = self.tape.set(tape);
    }

    /// `input`, recorded on the session's tape if it has one.
    pub(crate) fn tape_input(&self, input: crate::io::AudioInput) -> crate::io::AudioInput {
        match self.tape.get() {
            Some(tape) => tape.wrap_input(input),
            None => input,
        }
    }

    fn session_span(&self, st: &mut TraceState) -> Option<Span> {
        if st.closed {
            return None;
        }
        if st.session.is_none() {
            let span = tracing::info_span!(
                target: "livekit_agents::telemetry",
                parent: None,
                "agent_session",
                lk.job_id = Empty,
                lk.agent_name = Empty,
                lk.pii.room_name = Empty,
                lk.close_reason = Empty,
                error.type = Empty,
            );
            #[cfg(feature = "server")]
            if let Some(job) = crate::worker::JobContext::current() {
                span.record("lk.job_id", job.job_id());
                span.record("lk.agent_name", job.job().agent_name.as_str());
                if self.record_content.load(Ordering::Relaxed) {
                    span.record("lk.pii.room_name", job.room_name());
                }
            }
            st.session = Some(span);
        }
        st.session.clone()
    }

    /// Turns recording of conversation content (the user's transcript) on span attributes on
    /// or off.
    pub(crate) fn set_record_content(&self, on: bool) {
        self.record_content.store(on, Ordering::Relaxed);
    }

    /// Updates the spans with an event the session emitted.
    pub(crate) fn observe(self: &std::sync::Arc<Self>, event: &SessionEvent) {
        let mut st = self.state.lock();
        let Some(session) = self.session_span(&mut st) else {
            return;
        };
        match event {
            SessionEvent::UserStateChanged { new_state, .. } => match new_state {
                UserState::Speaking => {
                    st.eou = None;
                    if st.user_turn.is_none() {
                        st.user_turn = Some(tracing::info_span!(
                            target: "livekit_agents::telemetry",
                            parent: &session,
                            "user_turn",
                            lk.pii.user_transcript = Empty,
                        ));
                    }
                }
                UserState::Listening => {
                    if let (Some(turn), None) = (&st.user_turn, &st.eou) {
                        st.eou = Some(tracing::info_span!(
                            target: "livekit_agents::telemetry",
                            parent: turn,
                            "eou_detection",
                            lk.end_of_turn_delay = Empty,
                            lk.transcription_delay = Empty,
                            lk.on_user_turn_completed_delay = Empty,
                        ));
                    }
                }
                UserState::Away => {}
            },
            SessionEvent::ConversationItemAdded {
                item: ChatItem::Message(m),
            } if m.role == ChatRole::User => {
                // `eou_detection` stays open until the end-of-turn metrics (they follow the
                // message); the turn's span closes when it does.
                let turn = st.user_turn.take().unwrap_or_else(|| {
                    // A typed turn: no speech, still a user turn.
                    tracing::info_span!(
                        target: "livekit_agents::telemetry",
                        parent: &session,
                        "user_turn",
                        lk.pii.user_transcript = Empty,
                    )
                });
                if self.record_content.load(Ordering::Relaxed) {
                    if let Some(text) = m.text_content() {
                        turn.record("lk.pii.user_transcript", text.as_str());
                    }
                }
            }
            SessionEvent::MetricsCollected { metrics } => self.on_metrics(&mut st, metrics),
            SessionEvent::SpeechCreated { speech_handle, .. } => {
                self.open_speech(&mut st, &session, speech_handle);
            }
            SessionEvent::AgentStateChanged { new_state, .. } => {
                if *new_state == AgentState::Speaking {
                    if st.speaking.is_none() {
                        let id = st.last_tts_speech.clone().unwrap_or_default();
                        let parent = st
                            .speeches
                            .get(&id)
                            .map(|s| s.turn.clone())
                            .unwrap_or(session);
                        st.speaking = Some(tracing::info_span!(
                            target: "livekit_agents::telemetry",
                            parent: &parent,
                            "agent_speaking",
                            lk.speech_id = id.as_str(),
                        ));
                    }
                } else {
                    st.speaking = None;
                }
            }
            SessionEvent::Close { reason, error } => {
                if let Some(tape) = self.tape.get() {
                    tape.finish();
                }
                session.record("lk.close_reason", format!("{reason:?}").as_str());
                if let Some(e) = error {
                    session.record("error.type", e.as_str());
                }
                st.user_turn = None;
                st.eou = None;
                st.speaking = None;
                st.speeches.clear();
                st.order.clear();
                st.pending_llm.clear();
                st.session = None;
                st.closed = true;
                self.closed.cancel();
            }
            _ => {}
        }
    }

    fn open_speech(
        self: &std::sync::Arc<Self>,
        st: &mut TraceState,
        session: &Span,
        handle: &SpeechHandle,
    ) {
        let id = handle.id().to_string();
        if st.speeches.contains_key(&id) {
            return;
        }
        let turn = tracing::info_span!(
            target: "livekit_agents::telemetry",
            parent: session,
            "agent_turn",
            lk.speech_id = id.as_str(),
            lk.interrupted = Empty,
        );
        if st.order.len() >= MAX_OPEN_SPEECHES {
            let oldest = st.order.remove(0);
            st.speeches.remove(&oldest);
        }
        st.order.push(id.clone());
        let llm = st
            .pending_llm
            .iter()
            .position(|(p, _)| *p == id)
            .map(|i| st.pending_llm.remove(i).1);
        st.speeches.insert(
            id.clone(),
            SpeechSpans {
                turn,
                llm,
                tts: None,
            },
        );
        // The span closes when the speech is done.
        let handle = handle.clone();
        let weak = std::sync::Arc::downgrade(self);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let closed = self.closed.clone();
            rt.spawn(async move {
                tokio::select! {
                    _ = handle.wait_for_playout() => {}
                    _ = closed.cancelled() => return,
                }
                if let Some(t) = weak.upgrade() {
                    t.close_speech(&id, handle.interrupted());
                }
            });
        }
    }

    fn close_speech(&self, id: &str, interrupted: bool) {
        let mut st = self.state.lock();
        if let Some(s) = st.speeches.remove(id) {
            s.turn.record("lk.interrupted", interrupted);
        }
        st.order.retain(|o| o != id);
    }

    fn on_metrics(&self, st: &mut TraceState, metrics: &AgentMetrics) {
        match metrics {
            AgentMetrics::Eou(m) => {
                if let Some(span) = st.eou.take() {
                    span.record(
                        "lk.end_of_turn_delay",
                        m.end_of_utterance_delay.as_secs_f64(),
                    );
                    span.record(
                        "lk.transcription_delay",
                        m.transcription_delay.as_secs_f64(),
                    );
                    span.record(
                        "lk.on_user_turn_completed_delay",
                        m.on_user_turn_completed_delay.as_secs_f64(),
                    );
                }
            }
            AgentMetrics::Llm(m) => {
                let id = m.speech_id.clone().unwrap_or_default();
                let pending = |st: &mut TraceState| {
                    let i = st.pending_llm.iter().position(|(p, _)| *p == id)?;
                    Some(st.pending_llm.remove(i).1)
                };
                let span = match st.speeches.get_mut(&id) {
                    Some(s) => s.llm.take(),
                    None => pending(st),
                };
                if let Some(span) = span {
                    span.record("lk.response.ttft", m.ttft.as_secs_f64());
                    span.record("gen_ai.usage.input_tokens", m.prompt_tokens);
                    span.record("gen_ai.usage.output_tokens", m.completion_tokens);
                    span.record(
                        "gen_ai.usage.cache_read.input_tokens",
                        m.prompt_cached_tokens,
                    );
                    span.record("gen_ai.response.id", m.request_id.as_str());
                    span.record("lk.cancelled", m.cancelled);
                }
            }
            AgentMetrics::Tts(m) => {
                let id = m.speech_id.clone().unwrap_or_default();
                if let Some(span) = st.speeches.get_mut(&id).and_then(|s| s.tts.take()) {
                    span.record("lk.response.ttfb", m.ttfb.as_secs_f64());
                    span.record("lk.tts.characters", m.characters_count as u64);
                    span.record("lk.tts.audio_duration", m.audio_duration.as_secs_f64());
                    span.record("lk.cancelled", m.cancelled);
                }
            }
            _ => {}
        }
    }

    /// An LLM request of speech `speech_id` starts (closes with its metrics). A speech not
    /// created yet (a preemptive generation) gets its span under the session's; the speech's
    /// turn takes it over when it is created.
    pub(crate) fn llm_started(&self, speech_id: &str, model: &str, provider: &str) {
        let mut st = self.state.lock();
        let parent = match st.speeches.get(speech_id) {
            Some(s) => s.turn.clone(),
            None => match self.session_span(&mut st) {
                Some(session) => session,
                None => return,
            },
        };
        let span = tracing::info_span!(
            target: "livekit_agents::telemetry",
            parent: &parent,
            "llm_request",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = model,
            gen_ai.provider.name = provider,
            lk.speech_id = speech_id,
            lk.response.ttft = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            gen_ai.usage.cache_read.input_tokens = Empty,
            gen_ai.response.id = Empty,
            lk.cancelled = Empty,
        );
        match st.speeches.get_mut(speech_id) {
            Some(s) => s.llm = Some(span),
            None => {
                if st.pending_llm.len() >= MAX_OPEN_SPEECHES {
                    st.pending_llm.remove(0);
                }
                st.pending_llm.push((speech_id.to_owned(), span));
            }
        }
    }

    /// A TTS request of speech `speech_id` starts (closes with its metrics).
    pub(crate) fn tts_started(&self, speech_id: &str, model: &str, provider: &str) {
        let mut st = self.state.lock();
        st.last_tts_speech = Some(speech_id.to_string());
        let Some(s) = st.speeches.get_mut(speech_id) else {
            return;
        };
        s.tts = Some(tracing::info_span!(
            target: "livekit_agents::telemetry",
            parent: &s.turn,
            "tts_request",
            gen_ai.request.model = model,
            gen_ai.provider.name = provider,
            lk.speech_id = speech_id,
            lk.response.ttfb = Empty,
            lk.tts.characters = Empty,
            lk.tts.audio_duration = Empty,
            lk.cancelled = Empty,
        ));
    }

    /// The span of one tool call of speech `speech_id`.
    pub(crate) fn tool_span(&self, speech_id: &str, name: &str, call_id: &str) -> Span {
        let st = self.state.lock();
        let parent = st
            .speeches
            .get(speech_id)
            .map(|s| s.turn.clone())
            .or_else(|| st.session.clone())
            .unwrap_or_else(Span::none);
        tracing::info_span!(
            target: "livekit_agents::telemetry",
            parent: &parent,
            "function_tool",
            gen_ai.operation.name = "execute_tool",
            lk.function_tool.name = name,
            lk.function_tool.id = call_id,
            lk.speech_id = speech_id,
            lk.function_tool.is_error = Empty,
        )
    }
}

impl AgentSession {
    /// Puts conversation content (the user's transcript on `user_turn`, the room name on
    /// `agent_session`) on this session's spans, as the reference's `lk.pii.*` attributes. Off
    /// by default: transcripts are personal data.
    pub fn set_trace_content(&self, on: bool) {
        self.inner.telemetry.set_record_content(on);
    }
}

/// Runs one tool call inside its `function_tool` span and records whether it failed.
pub(crate) async fn traced_tool_call<T, E>(
    session: &AgentSession,
    speech_id: &str,
    name: &str,
    call_id: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use tracing::Instrument;
    let span = session.inner.telemetry.tool_span(speech_id, name, call_id);
    let result = fut.instrument(span.clone()).await;
    span.record("lk.function_tool.is_error", result.is_err());
    result
}
