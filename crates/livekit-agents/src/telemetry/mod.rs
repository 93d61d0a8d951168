//! Observability: `tracing` spans of a session (this module), OpenTelemetry export
//! (`otel`, feature `otel`), the session report ([`crate::voice::report`]) and call
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
//! | `llm_request` (in `agent_turn`) | the LLM request starts | its metrics are in | `gen_ai.request.model`, `gen_ai.provider.name`, `lk.response.ttft`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `lk.cancelled` |
//! | `tts_request` (in `agent_turn`) | the text goes to the TTS | its metrics are in | `gen_ai.request.model`, `gen_ai.provider.name`, `lk.response.ttfb`, `lk.tts.characters`, `lk.cancelled` |
//! | `function_tool` (in `agent_turn`) | a tool call starts | it returns | `lk.function_tool.name`, `lk.function_tool.id`, `lk.function_tool.is_error` |
//! | `agent_speaking` (in `agent_turn`) | the agent starts speaking | it stops | `lk.speech_id` |
//!
//! Spans carry no audio and no secrets; conversation content (the user's transcript) only
//! when turned on. They are at `INFO` level under the target `livekit_agents::telemetry`; with
//! no subscriber interested they cost a level check.

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
}

struct SpeechSpans {
    turn: Span,
    llm: Option<Span>,
    tts: Option<Span>,
}

impl SessionTelemetry {
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
                session.record("lk.close_reason", format!("{reason:?}").as_str());
                if let Some(e) = error {
                    session.record("error.type", e.as_str());
                }
                st.user_turn = None;
                st.eou = None;
                st.speaking = None;
                st.speeches.clear();
                st.order.clear();
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
        st.speeches.insert(
            id.clone(),
            SpeechSpans {
                turn,
                llm: None,
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
                if let Some(span) = st.speeches.get_mut(&id).and_then(|s| s.llm.take()) {
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

    /// An LLM request of speech `speech_id` starts (closes with its metrics).
    pub(crate) fn llm_started(&self, speech_id: &str, model: &str, provider: &str) {
        let mut st = self.state.lock();
        let Some(s) = st.speeches.get_mut(speech_id) else {
            return;
        };
        s.llm = Some(tracing::info_span!(
            target: "livekit_agents::telemetry",
            parent: &s.turn,
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
        ));
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
