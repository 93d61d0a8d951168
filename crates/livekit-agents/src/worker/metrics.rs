//! Process-wide latency registry served by the worker's `/metrics` endpoint.
//!
//! Any part of the framework (the voice pipeline, plugins, user code) reports how long a stage
//! took with [`observe_stage`]; the agent server renders every stage as a Prometheus histogram
//! `livekit_agents_stage_latency_seconds{stage="..."}`. The registry is global so that reporting
//! needs no handle threading through the pipeline; it is cheap (one short mutex section).
//!
//! ```
//! use livekit_agents::worker::metrics;
//!
//! metrics::observe_stage("llm_ttft", 0.42);
//! let text = metrics::render_stage_histograms();
//! assert!(text.contains("stage=\"llm_ttft\""));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implicit.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket in [`LATENCY_BUCKETS`], plus one for `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let idx = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[idx] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

fn registry() -> &'static Mutex<BTreeMap<String, Histogram>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<String, Histogram>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Records that the stage `name` (e.g. `"stt_final"`, `"llm_ttft"`, `"tts_ttfb"`,
/// `"end_of_turn"`, `"e2e"`) took `seconds`. Negative or non-finite values are ignored.
pub fn observe_stage(name: &str, seconds: f64) {
    if !seconds.is_finite() || seconds < 0.0 {
        return;
    }
    let mut reg = registry().lock();
    reg.entry(name.to_owned()).or_default().observe(seconds);
}

/// Records the stage latencies of a session's metrics event: `llm_ttft`, `tts_ttfb`,
/// `stt_duration` (non-streaming recognitions), `end_of_utterance_delay`,
/// `transcription_delay` and `e2e` (user stopped speaking to first agent audio).
/// [`crate::worker::JobContext::session_io`] forwards every session's metrics here.
pub fn observe_agent_metrics(metrics: &crate::metrics::AgentMetrics) {
    use crate::metrics::AgentMetrics;
    match metrics {
        AgentMetrics::Llm(m) => observe_stage("llm_ttft", m.ttft.as_secs_f64()),
        AgentMetrics::Tts(m) => observe_stage("tts_ttfb", m.ttfb.as_secs_f64()),
        AgentMetrics::Stt(m) => observe_stage("stt_duration", m.duration.as_secs_f64()),
        AgentMetrics::Eou(m) => {
            observe_stage(
                "end_of_utterance_delay",
                m.end_of_utterance_delay.as_secs_f64(),
            );
            observe_stage("transcription_delay", m.transcription_delay.as_secs_f64());
        }
        AgentMetrics::Turn(m) => observe_stage("e2e", m.e2e_latency.as_secs_f64()),
        AgentMetrics::Vad(_) => {}
    }
}

/// Count and sum of the observations of one stage so far, if any.
pub fn stage_summary(name: &str) -> Option<(u64, f64)> {
    registry().lock().get(name).map(|h| (h.count, h.sum))
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every stage histogram in the Prometheus text exposition format.
pub fn render_stage_histograms() -> String {
    let reg = registry().lock();
    let mut out = String::new();
    out.push_str("# HELP livekit_agents_stage_latency_seconds Latency of each pipeline stage.\n");
    out.push_str("# TYPE livekit_agents_stage_latency_seconds histogram\n");
    for (name, h) in reg.iter() {
        let stage = escape_label(name);
        let mut cumulative = 0u64;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(
                out,
                "livekit_agents_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += h.buckets[LATENCY_BUCKETS.len()];
        let _ = writeln!(
            out,
            "livekit_agents_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "livekit_agents_stage_latency_seconds_sum{{stage=\"{stage}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "livekit_agents_stage_latency_seconds_count{{stage=\"{stage}\"}} {}",
            h.count
        );
    }
    out
}

/// Renders the process-wide overload counters of the bounded audio inputs
/// ([`crate::io::bounded::overload_totals`]) in the Prometheus text exposition format:
/// `livekit_agents_input_dropped_frames_total`, `livekit_agents_input_dropped_audio_seconds_total`,
/// `livekit_agents_input_overload_episodes_total` (counters) and
/// `livekit_agents_inputs_shedding` (a gauge: inputs dropping audio now).
pub fn render_overload_metrics() -> String {
    let t = crate::io::bounded::overload_totals();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    metric(
        "livekit_agents_input_dropped_frames_total",
        "counter",
        "User audio frames dropped by overloaded sessions.",
        t.dropped_frames.to_string(),
    );
    metric(
        "livekit_agents_input_dropped_audio_seconds_total",
        "counter",
        "User audio dropped by overloaded sessions, in seconds.",
        t.dropped_audio.as_secs_f64().to_string(),
    );
    metric(
        "livekit_agents_input_overload_episodes_total",
        "counter",
        "Episodes in which a session fell behind its audio input.",
        t.episodes.to_string(),
    );
    metric(
        "livekit_agents_inputs_shedding",
        "gauge",
        "Audio inputs dropping audio now (their session falls behind).",
        t.shedding_inputs.to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_metrics_are_rendered() {
        let text = render_overload_metrics();
        for name in [
            "livekit_agents_input_dropped_frames_total ",
            "livekit_agents_input_dropped_audio_seconds_total ",
            "livekit_agents_input_overload_episodes_total ",
            "livekit_agents_inputs_shedding ",
        ] {
            assert!(text.contains(&format!("\n{name}")), "{name} in {text}");
        }
        assert!(text.contains("# TYPE livekit_agents_inputs_shedding gauge"));
    }

    #[test]
    fn histogram_is_cumulative_and_counts_inf() {
        observe_stage("unit_test_stage", 0.07);
        observe_stage("unit_test_stage", 0.07);
        observe_stage("unit_test_stage", 42.0);
        observe_stage("unit_test_stage", f64::NAN);
        let text = render_stage_histograms();
        assert!(text.contains(
            "livekit_agents_stage_latency_seconds_bucket{stage=\"unit_test_stage\",le=\"0.05\"} 0"
        ));
        assert!(text.contains(
            "livekit_agents_stage_latency_seconds_bucket{stage=\"unit_test_stage\",le=\"0.1\"} 2"
        ));
        assert!(text.contains(
            "livekit_agents_stage_latency_seconds_bucket{stage=\"unit_test_stage\",le=\"+Inf\"} 3"
        ));
        assert_eq!(stage_summary("unit_test_stage").map(|s| s.0), Some(3));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
