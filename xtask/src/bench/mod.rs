//! `cargo xtask bench <name>`: benchmarks that report numbers (never pass/fail).
//!
//! Benchmarks always run optimised: a debug `xtask` re-runs itself with `--release`.
//! Add a benchmark as a module here and a match arm in [`run`].

pub(crate) mod alloc_count;
mod audio;
mod job_start;
mod reference;
mod sessions;
mod turn_detector;
mod vad;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which benchmark: vad, sessions, turn-detector, audio or job-start.
    pub name: String,
    /// Input file for benchmarks that read one (vad: a WAV; default: the Silero test speech).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Passes over the input (more passes, steadier numbers).
    #[arg(long, default_value_t = 20)]
    pub passes: usize,
    /// Concurrent streams for the throughput part (vad).
    #[arg(long, default_value_t = 16)]
    pub streams: usize,
    /// Concurrent voice sessions (sessions; the run also measures 2x this many).
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Seconds of speech fed to each session (sessions).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Search the largest number of sessions that holds real time, from `--sessions` (sessions).
    #[arg(long)]
    pub find_max: bool,
    /// Run only `--sessions` sessions, not also twice as many (quicker; no memory-per-session
    /// figure) (sessions).
    #[arg(long)]
    pub single: bool,
    /// Deliver every session's frame at the same instant of each 20 ms period instead of
    /// spreading sessions over 20 phases (a worst-case burst) (sessions).
    #[arg(long)]
    pub aligned_input: bool,
    /// Give every session a background audio player (office ambience, typing while thinking)
    /// mixed into its output, to measure what mixing adds (sessions).
    #[arg(long)]
    pub background_audio: bool,
    /// Run the Silero VAD without cross-stream batching (vad, sessions).
    #[arg(long)]
    pub no_batching: bool,
    /// Run `--sessions` sessions with VAD batching off and on, alternating, `--rounds` times
    /// each, and compare (sessions).
    #[arg(long)]
    pub ab_batching: bool,
    /// Jobs dispatched one after the other (job-start).
    #[arg(long, default_value_t = 200)]
    pub jobs: usize,
    /// Rounds of an A/B comparison (sessions `--ab-batching`).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Run the sessions on tokio's paused clock, on one thread, as fast as they go (sessions):
    /// a deterministic workload whose cost can be counted (allocations; instructions with
    /// `--instructions`) whatever else the machine runs. Latencies are then virtual (~0).
    #[arg(long)]
    pub paused: bool,
    /// Count the instructions of the feeding window with valgrind's callgrind (implies
    /// `--paused`; needs `valgrind` on the PATH): total, per session-second and by library
    /// (sessions).
    #[arg(long)]
    pub instructions: bool,
    /// Which scenario the sessions benchmark runs: `default` (the scenario described in
    /// docs/performance.md) or `reference` (the Python reference benchmark's: 50 ms frames,
    /// seeded offsets, interruptions, 200 ms output queue; needs `--input <its WAV>`).
    #[arg(long, default_value = "default")]
    pub scenario: String,
    /// Seconds of warm-up before the measured window (sessions `--scenario reference`).
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Python interpreter with livekit-agents 1.8.9 installed: also run the reference script
    /// (`--python-script`) with the same settings and print both (sessions `--scenario
    /// reference`).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The Python reference benchmark script (`python_sessions_bench.py`).
    #[arg(long)]
    pub python_script: Option<PathBuf>,
    /// Interval of the resident-memory samples whose slope the run reports (sessions; with
    /// `--seconds 3600`, one per minute).
    #[arg(long, default_value_t = 60)]
    pub rss_sample_secs: u64,
    /// `info`: run under a real `tracing` subscriber at INFO with the session spans and the
    /// telemetry latency layer, no exporter (what the spans cost); `off` (default): none
    /// (sessions).
    #[arg(long, default_value = "off")]
    pub tracing: String,
}

/// Runs a benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && std::env::var_os("XTASK_BENCH_IN_RELEASE").is_none() {
        return rerun_in_release();
    }
    match args.name.as_str() {
        "vad" => vad::run(&args),
        "turn-detector" => turn_detector::run(&args),
        "sessions" => sessions::run(&args),
        "audio" => audio::run(&args),
        "job-start" => job_start::run(&args),
        other => {
            bail!(
                "unknown benchmark '{other}' (available: vad, sessions, turn-detector, audio, job-start)"
            )
        }
    }
}

/// Re-runs this command from an optimised build of xtask.
fn rerun_in_release() -> anyhow::Result<()> {
    eprintln!("(benchmarks run optimised: rebuilding xtask with --release)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
        .args(std::env::args_os().skip(1))
        .env("XTASK_BENCH_IN_RELEASE", "1")
        .status()
        .context("could not run cargo")?;
    if !status.success() {
        bail!("benchmark failed ({status})");
    }
    Ok(())
}

/// CPU time (user + system) this process has used so far, all threads, seconds. Linux only
/// (reads `/proc/self/stat`, in clock ticks of 1/100 s); `None` elsewhere.
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The machine's load average (1, 5, 15 min) as `/proc/loadavg` shows it, or "?" where that
/// is not available. Printed with every measurement: the development machine is shared.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// The `q`-quantile (0..=1) of sorted values.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
