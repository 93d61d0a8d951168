//! How long a dispatched job takes to start, served on `/metrics` as
//! `livekit_agents_job_start_seconds{phase="..."}`, with buckets fine enough for milliseconds:
//!
//! - `entrypoint`: the server's assignment received -> the job's entrypoint starts running
//!   (its first poll, on its own task);
//! - `session_ready`: the assignment received -> the first [`AgentSession`] started by the
//!   entrypoint is ready ([`AgentSession::start`] returned: recognition running, state
//!   `listening`).
//!
//! Both are measured inside this process from the moment the assignment message was decoded;
//! local jobs (`console`, `connect`) have no assignment and are not counted. `cargo xtask bench
//! job-start` reports the same numbers against a local fake LiveKit server.
//!
//! [`AgentSession`]: crate::voice::AgentSession
//! [`AgentSession::start`]: crate::voice::AgentSession::start

use std::fmt::Write as _;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Upper bounds (seconds) of the job-start histogram buckets; `+Inf` is implicit.
pub const JOB_START_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The phases measured, in the order rendered.
pub const JOB_START_PHASES: [&str; 2] = ["entrypoint", "session_ready"];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket, plus one for `+Inf`.
    buckets: [u64; JOB_START_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

fn registry() -> &'static Mutex<[Histogram; JOB_START_PHASES.len()]> {
    static REGISTRY: OnceLock<Mutex<[Histogram; JOB_START_PHASES.len()]>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Records that `phase` (one of [`JOB_START_PHASES`]) was reached `seconds` after the
/// assignment. Unknown phases, negative and non-finite values are ignored.
pub(crate) fn observe(phase: &str, seconds: f64) {
    let Some(index) = JOB_START_PHASES.iter().position(|p| *p == phase) else {
        return;
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return;
    }
    let bucket = JOB_START_BUCKETS
        .iter()
        .position(|&le| seconds <= le)
        .unwrap_or(JOB_START_BUCKETS.len());
    let mut registry = registry().lock();
    let h = &mut registry[index];
    h.buckets[bucket] += 1;
    h.sum += seconds;
    h.count += 1;
}

/// Count and sum (seconds) of the observations of `phase` so far.
pub fn job_start_summary(phase: &str) -> Option<(u64, f64)> {
    let index = JOB_START_PHASES.iter().position(|p| *p == phase)?;
    let h = &registry().lock()[index];
    Some((h.count, h.sum))
}

/// Renders the job-start histograms in the Prometheus text exposition format.
pub fn render_job_start_histograms() -> String {
    let registry = registry().lock();
    let mut out = String::new();
    out.push_str(
        "# HELP livekit_agents_job_start_seconds Job assignment received to entrypoint running / first session ready.\n",
    );
    out.push_str("# TYPE livekit_agents_job_start_seconds histogram\n");
    for (phase, h) in JOB_START_PHASES.iter().zip(registry.iter()) {
        let mut cumulative = 0u64;
        for (i, le) in JOB_START_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(
                out,
                "livekit_agents_job_start_seconds_bucket{{phase=\"{phase}\",le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += h.buckets[JOB_START_BUCKETS.len()];
        let _ = writeln!(
            out,
            "livekit_agents_job_start_seconds_bucket{{phase=\"{phase}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "livekit_agents_job_start_seconds_sum{{phase=\"{phase}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "livekit_agents_job_start_seconds_count{{phase=\"{phase}\"}} {}",
            h.count
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_counted_in_fine_buckets() {
        let (before, _) = job_start_summary("session_ready").unwrap();
        observe("session_ready", 0.0015);
        observe("session_ready", f64::NAN);
        observe("no_such_phase", 0.001);
        let (after, sum) = job_start_summary("session_ready").unwrap();
        assert_eq!(after, before + 1);
        assert!(sum >= 0.0015);
        let text = render_job_start_histograms();
        assert!(text.contains("# TYPE livekit_agents_job_start_seconds histogram"));
        assert!(text.contains(
            "livekit_agents_job_start_seconds_bucket{phase=\"session_ready\",le=\"0.002\"}"
        ));
        assert!(text.contains("livekit_agents_job_start_seconds_count{phase=\"entrypoint\"}"));
        assert!(job_start_summary("no_such_phase").is_none());
    }
}
