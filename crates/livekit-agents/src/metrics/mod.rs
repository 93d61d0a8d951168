//! Per-stage metrics and a usage collector.
//!
//! Each stage reports one struct per request; the session re-emits them as
//! [`SessionEvent::MetricsCollected`](crate::voice::SessionEvent::MetricsCollected). A turn's
//! latency is explained by [`EouMetrics`] (user stopped speaking → turn committed), then
//! [`LlmMetrics::ttft`], [`TtsMetrics::ttfb`], and summed up in [`TurnMetrics::e2e_latency`]
//! (user stopped speaking → first agent audio played).

use std::collections::HashMap;
use std::time::Duration;

/// One LLM request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlmMetrics {
    /// The model's label.
    pub label: String,
    /// Request id.
    pub request_id: String,
    /// Time to the first text or tool call.
    pub ttft: Duration,
    /// Whole request.
    pub duration: Duration,
    /// The request was cancelled (interruption).
    pub cancelled: bool,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Prompt tokens served from cache.
    pub prompt_cached_tokens: u32,
    /// Total tokens.
    pub total_tokens: u32,
    /// Completion tokens per second.
    pub tokens_per_second: f64,
    /// The speech this request belongs to.
    pub speech_id: Option<String>,
}

/// Speech-to-text usage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SttMetrics {
    /// The model's label.
    pub label: String,
    /// Request id.
    pub request_id: String,
    /// Time the request took (0 for streams).
    pub duration: Duration,
    /// Audio processed.
    pub audio_duration: Duration,
    /// Streaming recognition.
    pub streamed: bool,
}

/// One TTS request (segment).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TtsMetrics {
    /// The model's label.
    pub label: String,
    /// Request id.
    pub request_id: String,
    /// Time from the first text to the first audio.
    pub ttfb: Duration,
    /// Whole request.
    pub duration: Duration,
    /// Audio produced.
    pub audio_duration: Duration,
    /// Characters synthesized.
    pub characters_count: usize,
    /// Cancelled (interruption).
    pub cancelled: bool,
    /// Streaming synthesis.
    pub streamed: bool,
    /// The speech this request belongs to.
    pub speech_id: Option<String>,
}

/// VAD work over a period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VadMetrics {
    /// The model's label.
    pub label: String,
    /// Inferences run.
    pub inference_count: u64,
    /// Time spent in inference.
    pub inference_duration_total: Duration,
}

/// How long the end of one user turn took.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EouMetrics {
    /// User stopped speaking → turn committed.
    pub end_of_utterance_delay: Duration,
    /// User stopped speaking → last final transcript.
    pub transcription_delay: Duration,
    /// Time spent in `on_user_turn_completed`.
    pub on_user_turn_completed_delay: Duration,
    /// The reply's speech.
    pub speech_id: Option<String>,
}

/// One turn's end-to-end latency, stage by stage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TurnMetrics {
    /// The reply's speech.
    pub speech_id: String,
    /// User stopped speaking → turn committed.
    pub end_of_utterance_delay: Option<Duration>,
    /// Reply's LLM request start → first token.
    pub llm_ttft: Option<Duration>,
    /// Reply's first text to TTS → first audio.
    pub tts_ttfb: Option<Duration>,
    /// User stopped speaking → first agent audio frame played.
    pub e2e_latency: Duration,
}

/// Any metrics.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AgentMetrics {
    /// LLM.
    Llm(LlmMetrics),
    /// STT.
    Stt(SttMetrics),
    /// TTS.
    Tts(TtsMetrics),
    /// VAD.
    Vad(VadMetrics),
    /// End of utterance.
    Eou(EouMetrics),
    /// Turn latency.
    Turn(TurnMetrics),
}

/// Usage summed over a session.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct UsageSummary {
    /// LLM prompt tokens.
    pub llm_prompt_tokens: u64,
    /// LLM cached prompt tokens.
    pub llm_prompt_cached_tokens: u64,
    /// LLM completion tokens.
    pub llm_completion_tokens: u64,
    /// TTS characters.
    pub tts_characters_count: u64,
    /// TTS audio produced.
    pub tts_audio_duration: Duration,
    /// STT audio processed.
    pub stt_audio_duration: Duration,
    /// Per model label: LLM requests, TTS requests.
    pub requests_by_label: HashMap<String, u64>,
}

/// Sums metrics into a [`UsageSummary`].
///
/// ```
/// use livekit_agents::metrics::{AgentMetrics, LlmMetrics, UsageCollector};
///
/// let mut usage = UsageCollector::default();
/// usage.collect(&AgentMetrics::Llm(LlmMetrics { prompt_tokens: 10, completion_tokens: 5, ..Default::default() }));
/// usage.collect(&AgentMetrics::Llm(LlmMetrics { prompt_tokens: 20, completion_tokens: 5, ..Default::default() }));
/// assert_eq!(usage.summary().llm_prompt_tokens, 30);
/// ```
#[derive(Debug, Clone, Default)]
pub struct UsageCollector {
    summary: UsageSummary,
}

impl UsageCollector {
    /// Adds one metrics report.
    pub fn collect(&mut self, metrics: &AgentMetrics) {
        let s = &mut self.summary;
        match metrics {
            AgentMetrics::Llm(m) => {
                s.llm_prompt_tokens += m.prompt_tokens as u64;
                s.llm_prompt_cached_tokens += m.prompt_cached_tokens as u64;
                s.llm_completion_tokens += m.completion_tokens as u64;
                *s.requests_by_label.entry(m.label.clone()).or_default() += 1;
            }
            AgentMetrics::Tts(m) => {
                s.tts_characters_count += m.characters_count as u64;
                s.tts_audio_duration += m.audio_duration;
                *s.requests_by_label.entry(m.label.clone()).or_default() += 1;
            }
            AgentMetrics::Stt(m) => s.stt_audio_duration += m.audio_duration,
            AgentMetrics::Vad(_) | AgentMetrics::Eou(_) | AgentMetrics::Turn(_) => {}
        }
    }

    /// The totals so far.
    pub fn summary(&self) -> UsageSummary {
        self.summary.clone()
    }
}
