//! `cargo xtask bench sessions`: N concurrent voice sessions in one process, on the real clock.
//!
//! Every session is a real [`AgentSession`] (turn detection `vad`, preemptive generation off so
//! the reply path is one fixed chain) fed real speech at real-time pace through the real Silero
//! VAD, with fake STT/LLM/TTS that answer after fixed real-clock latencies, and a
//! [`PacedAudioOutput`] that consumes the agent's audio at real-time pace. Sessions receive their
//! 20 ms frames at 20 different phases of the frame period, as independent calls do
//! (`--aligned-input`: all at once, a worst-case burst).
//!
//! What one run measures (see `docs/performance.md` for the definitions):
//! - framework-added latency per turn: the sum of the framework's steps from the audio that ends
//!   the user's speech reaching the session to the first agent frame playing, minus the fakes'
//!   latencies, measured from when things actually happened (so the harness's own timer slop is
//!   left out); also the cruder "first frame minus its scheduled ideal", which includes it;
//! - CPU seconds per session-minute; resident memory (the parent runs N and 2N in fresh child
//!   processes: `(RSS(2N) - RSS(N)) / N` per additional session);
//! - output frames that started playing late, VAD input processed late, turns completed.
//!
//! `--find-max` searches the largest N that holds real time (no late frame, every turn answered).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use livekit_agents::audio::AudioFrame;
use livekit_agents::io::memory::{audio_input_channel, AudioInputSender};
use livekit_agents::io::PacedAudioOutput;
use livekit_agents::llm::{ChatChunk, ChatRequest, ChunkSender, Llm, LlmStream, LlmStreamTask};
use livekit_agents::stt::{
    SpeechData, SpeechEvent, SpeechEventSender, SpeechEventType, SpeechStream, Stt,
    SttCapabilities, SttInput, SttInputReceiver, SttStreamTask,
};
use livekit_agents::tts::{
    AudioEmitter, ChunkedStream, SynthesizeStream, Tts, TtsCapabilities, TtsInput,
    TtsInputReceiver, TtsStreamTask,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_agents::vad::{Vad, VadCapabilities, VadEvent, VadEventType, VadStream};
use livekit_agents::voice::{
    Agent, AgentSession, PreemptiveGenerationOptions, SessionIo, SessionOptions, TurnDetection,
};
use livekit_plugins_silero::{BatchOptions, SileroVad, VadOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{process_cpu_seconds, quantile, BenchArgs};

/// STT final transcript, after the end of speech reached the STT.
const STT_FINAL_DELAY: Duration = Duration::from_millis(200);
/// LLM time to first token.
const LLM_TTFT: Duration = Duration::from_millis(300);
/// TTS time to first audio, after the first text.
const TTS_TTFB: Duration = Duration::from_millis(150);
/// Length of every agent reply.
const REPLY_AUDIO: Duration = Duration::from_millis(1500);
const REPLY_TEXT: &str = "Sure, I can help you with that.";
const TTS_SAMPLE_RATE: u32 = 24_000;
/// First sample of every reply: lets the output sink tell the first frame of a reply apart.
const REPLY_MARKER: i16 = 12_345;
/// Silence inserted after each utterance of the input, so the reply ends before the user talks
/// again (no interruptions: every turn is one measurable reply).
const PAUSE_AFTER_UTTERANCE: f64 = 3.0;
/// Input frames: 20 ms, like a room track.
const FRAME: Duration = Duration::from_millis(20);
/// Sessions receive their frames at one of `PHASES` moments `PHASE_STEP` apart within each frame
/// period (`PHASES * PHASE_STEP == FRAME`).
const PHASES: usize = 20;
const PHASE_STEP: Duration = Duration::from_millis(1);
/// A frame starting later than this after its schedule counts as late (output), and a VAD result
/// arriving later than this after its audio was delivered counts as late (input).
const LATE_THRESHOLD: Duration = Duration::from_millis(20);
/// Marks the child's result line on its stdout.
const RESULT_PREFIX: &str = "SESSIONS_RESULT ";
/// Set in a child process.
const CHILD_ENV: &str = "XTASK_SESSIONS_CHILD";

fn default_input() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/silero/testdata/speech_16k.wav")
}

/// Entry point: a child runs the sessions; the parent runs children and reports.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match args.scenario.as_str() {
        "default" => {}
        "reference" => return super::reference::run(args),
        other => bail!("unknown scenario '{other}' (available: default, reference)"),
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        let result = run_child(args)?;
        println!("{RESULT_PREFIX}{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    if args.find_max {
        return find_max(args);
    }
    if args.ab_batching {
        return ab_batching(args);
    }
    let n = args.sessions.max(1);
    let small = spawn_child(args, n)?;
    if args.single {
        print_table(&[&small]);
        print_memory_slope(&small);
        let json = serde_json::json!({
            "bench": "sessions",
            "sessions": n,
            "seconds": args.seconds,
            "runs": [small],
        });
        println!("{json}");
        return Ok(());
    }
    let large = spawn_child(args, 2 * n)?;
    let per_session_mb = (large.rss_end_kb as f64 - small.rss_end_kb as f64) / 1024.0 / n as f64;
    print_table(&[&small, &large]);
    print_memory_slope(&small);
    println!(
        "\nresident memory per additional session: (RSS({}) - RSS({n})) / {n} = {per_session_mb:.2} MB (target < 5 MB)",
        2 * n
    );
    let json = serde_json::json!({
        "bench": "sessions",
        "sessions": n,
        "seconds": args.seconds,
        "rss_per_session_mb": per_session_mb,
        "runs": [small, large],
    });
    println!("{json}");
    Ok(())
}

/// `--sessions` sessions with VAD batching off, then on, alternating for `--rounds` rounds, each
/// run a fresh child; interleaving makes a change in the machine's other load hit both alike.
fn ab_batching(args: &BenchArgs) -> anyhow::Result<()> {
    let n = args.sessions.max(1);
    let mut runs = Vec::new();
    for _ in 0..args.rounds.max(1) {
        for no_batching in [true, false] {
            let mut child_args = args.clone();
            child_args.no_batching = no_batching;
            runs.push(spawn_child(&child_args, n)?);
        }
    }
    let refs: Vec<&RunResult> = runs.iter().collect();
    print_table(&refs);
    println!("\nA/B summary (means over rounds):");
    for batching in [false, true] {
        let group: Vec<&RunResult> = runs.iter().filter(|r| r.batching == batching).collect();
        let mean = |f: &dyn Fn(&RunResult) -> f64| {
            group.iter().map(|r| f(r)).sum::<f64>() / group.len().max(1) as f64
        };
        println!(
            "  batching {:>3}: framework p50/p99 {:.2}/{:.2} ms, VAD step p99 {:.2} ms, CPU {:.3} s per session-minute, late in/out {}/{}, mean batch {:.1}",
            if batching { "on" } else { "off" },
            mean(&|r| r.framework_p50_ms),
            mean(&|r| r.framework_p99_ms),
            mean(&|r| r.eos_lag_p99_ms),
            mean(&|r| r.cpu_per_session_minute),
            group.iter().map(|r| r.input_late).sum::<usize>(),
            group.iter().map(|r| r.output_late).sum::<usize>(),
            mean(&|r| r.vad_mean_batch),
        );
    }
    let json = serde_json::json!({
        "bench": "sessions-ab-batching",
        "sessions": n,
        "seconds": args.seconds,
        "aligned_input": args.aligned_input,
        "runs": runs,
    });
    println!("{json}");
    Ok(())
}

/// Doubling from `--sessions`, then bisection, each trial a fresh child process.
fn find_max(args: &BenchArgs) -> anyhow::Result<()> {
    let mut good: Option<RunResult> = None;
    let mut bad: Option<usize> = None;
    let mut n = args.sessions.max(1);
    let mut trials = Vec::new();
    loop {
        let r = spawn_child(args, n)?;
        let holds = r.holds_real_time();
        eprintln!(
            "  N={n}: {} (late output {}, late input {}, turns {}/{})",
            if holds { "real time" } else { "NOT real time" },
            r.output_late,
            r.input_late,
            r.turns_completed,
            r.turns_expected
        );
        trials.push(r.clone());
        if holds {
            good = Some(r);
        } else {
            bad = Some(n);
        }
        let lo = good.as_ref().map_or(0, |g| g.sessions);
        n = match bad {
            None => n * 2,
            Some(hi) => {
                // Stop at 5 % resolution (or 4 sessions).
                if hi - lo <= (lo / 20).max(4) {
                    break;
                }
                (lo + hi) / 2
            }
        };
        if trials.len() >= 10 {
            break;
        }
    }
    let trial_refs: Vec<&RunResult> = trials.iter().collect();
    print_table(&trial_refs);
    match &good {
        Some(g) => println!("\nmaximum N holding real time: {}", g.sessions),
        None => println!("\nno N holds real time (smallest tried: {})", args.sessions),
    }
    let json = serde_json::json!({
        "bench": "sessions-find-max",
        "seconds": args.seconds,
        "max_real_time_sessions": good.as_ref().map(|g| g.sessions),
        "runs": trials,
    });
    println!("{json}");
    Ok(())
}

/// Runs this benchmark at `sessions` in a fresh process and reads its result line.
fn spawn_child(args: &BenchArgs, sessions: usize) -> anyhow::Result<RunResult> {
    eprintln!(
        "running {sessions} sessions for {} s (child process)...",
        args.seconds
    );
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    let profile = std::env::temp_dir().join(format!(
        "xtask-sessions-callgrind-{}-{sessions}.out",
        std::process::id()
    ));
    let mut cmd = if args.instructions {
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", profile.display()))
            .arg("--toggle-collect=*measured_feed*")
            .arg(exe);
        cmd
    } else {
        Command::new(exe)
    };
    cmd.args(["bench", "sessions", "--sessions"])
        .arg(sessions.to_string())
        .arg("--seconds")
        .arg(args.seconds.to_string());
    if let Some(input) = &args.input {
        cmd.arg("--input").arg(input);
    }
    if args.aligned_input {
        cmd.arg("--aligned-input");
    }
    if args.background_audio {
        cmd.arg("--background-audio");
    }
    if args.no_batching {
        cmd.arg("--no-batching");
    }
    if args.paused || args.instructions {
        cmd.arg("--paused");
    }
    cmd.arg("--rss-sample-secs")
        .arg(args.rss_sample_secs.to_string());
    cmd.arg("--tracing").arg(&args.tracing);
    let mut child = cmd
        .env(CHILD_ENV, "1")
        .env("XTASK_BENCH_IN_RELEASE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the child benchmark")?;
    let stdout = child.stdout.take().context("no child stdout")?;
    let mut result = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        match line.strip_prefix(RESULT_PREFIX) {
            Some(json) => result = Some(serde_json::from_str::<RunResult>(json)?),
            None => println!("{line}"),
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("child benchmark at {sessions} sessions failed ({status})");
    }
    let mut result = result.context("the child benchmark printed no result")?;
    if args.instructions {
        result.instructions = Some(parse_callgrind(&profile)?);
        let _ = std::fs::remove_file(&profile);
    }
    Ok(result)
}

/// What one child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunResult {
    sessions: usize,
    seconds: f64,
    turns_expected: usize,
    turns_completed: usize,
    /// Replies that matched no user turn (should be 0).
    extra_replies: usize,
    /// Framework-added latency per turn (the framework's own steps, measured from what actually
    /// happened: the harness's timer slop left out), ms.
    framework_p50_ms: f64,
    framework_p95_ms: f64,
    framework_p99_ms: f64,
    framework_max_ms: f64,
    /// First agent frame minus its scheduled ideal, ms: the framework's latency plus the
    /// harness's timer slop (input delivery, the fakes' sleeps).
    added_p50_ms: f64,
    added_p95_ms: f64,
    added_p99_ms: f64,
    added_max_ms: f64,
    /// End of user speech to first agent audio, ms (includes endpointing and fakes).
    total_p50_ms: f64,
    /// The ideal of that total (endpointing + fakes), ms, median over turns.
    ideal_p50_ms: f64,
    cpu_seconds: f64,
    cpu_per_session_minute: f64,
    /// Busy share of the machine's cores during the run.
    cpu_utilization: f64,
    rss_start_kb: u64,
    rss_end_kb: u64,
    rss_peak_kb: u64,
    output_frames: usize,
    output_late: usize,
    output_lateness_p99_ms: f64,
    output_lateness_max_ms: f64,
    input_windows: usize,
    input_late: usize,
    input_lag_p50_ms: f64,
    input_lag_p99_ms: f64,
    input_lag_max_ms: f64,
    /// Silero's inference time per 32 ms window (part of the input lag), ms.
    vad_inference_p50_ms: f64,
    vad_inference_p99_ms: f64,
    /// Mean lateness of the feeder's 20 ms tick (input delivery), ms.
    feeder_timer_slop_mean_ms: f64,
    /// Mean lateness of one fake's sleep (the LLM and the TTS each add one per turn), ms.
    fake_timer_slop_mean_ms: f64,
    /// The framework's steps (see `framework_steps`), p50/p99 ms.
    eos_lag_p50_ms: f64,
    eos_lag_p99_ms: f64,
    eos_to_llm_p50_ms: f64,
    eos_to_llm_p99_ms: f64,
    llm_to_tts_p50_ms: f64,
    llm_to_tts_p99_ms: f64,
    tts_to_output_p50_ms: f64,
    tts_to_output_p99_ms: f64,
    /// Whether the VAD batched inference across sessions.
    #[serde(default)]
    batching: bool,
    /// Mean windows per VAD inference (1 without batching).
    #[serde(default)]
    vad_mean_batch: f64,
    /// `/proc/loadavg` (1/5/15 min) when the feeding started and ended.
    #[serde(default)]
    load_start: String,
    #[serde(default)]
    load_end: String,
    /// Resident memory sampled every `--rss-sample-secs` while feeding: (seconds since the
    /// feeding started, RSS kB, bytes the bench's own measurement records held then).
    #[serde(default)]
    rss_samples: Vec<(f64, u64, u64)>,
    /// Seconds from the start of feeding until the last session started.
    #[serde(default)]
    ramp_up_secs: f64,
    /// Run on tokio's paused clock (`--paused`): latencies are virtual.
    #[serde(default)]
    paused: bool,
    /// Allocations (and bytes) over the feeding window (`--paused` runs only).
    #[serde(default)]
    allocations: u64,
    #[serde(default)]
    allocated_bytes: u64,
    /// Instructions of the feeding window (`--instructions`), filled in by the parent.
    #[serde(default)]
    instructions: Option<InstructionCounts>,
}

impl RunResult {
    fn holds_real_time(&self) -> bool {
        self.output_late == 0
            && self.input_late == 0
            && self.turns_completed == self.turns_expected
            && self.turns_expected > 0
    }
}

fn print_table(runs: &[&RunResult]) {
    println!(
        "\n{:>6} {:>6} {:>11} {:>24} {:>24} {:>10} {:>9} {:>9} {:>17} {:>17}",
        "N",
        "secs",
        "turns",
        "framework p50/p95/p99",
        "with harness p50/p95/p99",
        "CPU s/min",
        "CPU use",
        "RSS MB",
        "out late (max ms)",
        "in late (max ms)"
    );
    for r in runs {
        let turns = format!("{}/{}", r.turns_completed, r.turns_expected);
        let framework = format!(
            "{:.2}/{:.2}/{:.2}",
            r.framework_p50_ms, r.framework_p95_ms, r.framework_p99_ms
        );
        let added = format!(
            "{:.2}/{:.2}/{:.2}",
            r.added_p50_ms, r.added_p95_ms, r.added_p99_ms
        );
        let out_late = format!(
            "{}/{} ({:.1})",
            r.output_late, r.output_frames, r.output_lateness_max_ms
        );
        let in_late = format!(
            "{}/{} ({:.1})",
            r.input_late, r.input_windows, r.input_lag_max_ms
        );
        println!(
            "{:>6} {:>6.0} {turns:>11} {framework:>24} {added:>24} {:>10.3} {:>8.0}% {:>9.1} {out_late:>17} {in_late:>17}",
            r.sessions,
            r.seconds,
            r.cpu_per_session_minute,
            r.cpu_utilization * 100.0,
            r.rss_end_kb as f64 / 1024.0,
        );
    }
    for r in runs {
        println!(
            "  N={}: framework steps (p50/p99 ms): end-of-speech audio -> VAD end of speech {:.2}/{:.2}, -> LLM call {:.2}/{:.2}, LLM reply -> TTS text {:.2}/{:.2}, TTS audio -> first frame playing {:.2}/{:.2}; VAD result lag p50/p99 {:.2}/{:.2} ms (inference {:.2}/{:.2}); output lateness p99 {:.2} ms; harness timer slop: input tick {:.2} ms, fakes {:.2} ms per sleep (x2 per turn)",
            r.sessions,
            r.eos_lag_p50_ms,
            r.eos_lag_p99_ms,
            r.eos_to_llm_p50_ms,
            r.eos_to_llm_p99_ms,
            r.llm_to_tts_p50_ms,
            r.llm_to_tts_p99_ms,
            r.tts_to_output_p50_ms,
            r.tts_to_output_p99_ms,
            r.input_lag_p50_ms,
            r.input_lag_p99_ms,
            r.vad_inference_p50_ms,
            r.vad_inference_p99_ms,
            r.output_lateness_p99_ms,
            r.feeder_timer_slop_mean_ms,
            r.fake_timer_slop_mean_ms,
        );
    }
    for r in runs {
        println!(
            "  N={}: VAD batching {} (mean batch {:.1}); load average at start {} / end {}",
            r.sessions,
            if r.batching { "on" } else { "off" },
            r.vad_mean_batch,
            r.load_start,
            r.load_end
        );
    }
    for r in runs {
        print_counts(r);
    }
    if let Some(r) = runs.first() {
        println!(
            "(end of speech -> first audio: median {:.1} ms, of which ideal {:.1} ms = endpointing + STT/LLM/TTS fakes {}/{}/{} ms)",
            r.total_p50_ms,
            r.ideal_p50_ms,
            STT_FINAL_DELAY.as_millis(),
            LLM_TTFT.as_millis(),
            TTS_TTFB.as_millis()
        );
    }
}

/// The load-independent counts of a `--paused` run: allocations and (with `--instructions`)
/// instructions of the feeding window, per session-second of audio and by library.
fn print_counts(r: &RunResult) {
    if !r.paused {
        return;
    }
    let session_seconds = r.sessions as f64 * r.seconds;
    println!(
        "  N={} (paused clock, {:.0} session-seconds): {} allocations in the feeding window = {:.1} per session-second ({:.0} bytes per session-second)",
        r.sessions,
        session_seconds,
        r.allocations,
        r.allocations as f64 / session_seconds,
        r.allocated_bytes as f64 / session_seconds,
    );
    if let Some(ins) = &r.instructions {
        let share = |name: &str| {
            ins.by_object
                .iter()
                .filter(|(o, _)| o.contains(name))
                .map(|(_, c)| *c)
                .sum::<u64>()
        };
        let onnx = share("libonnxruntime");
        let libc = share("libc.so") + share("libc-") + share("ld-linux");
        let own = share("xtask");
        println!(
            "  N={}: instructions {} = {:.2} M per session-second; ONNX Runtime {:.2} M, the bench binary (framework, plugins, tokio, bench) {:.2} M, libc {:.2} M, other {:.2} M per session-second",
            r.sessions,
            ins.total,
            ins.total as f64 / session_seconds / 1e6,
            onnx as f64 / session_seconds / 1e6,
            own as f64 / session_seconds / 1e6,
            libc as f64 / session_seconds / 1e6,
            ins.total.saturating_sub(onnx + own + libc) as f64 / session_seconds / 1e6,
        );
        let top: Vec<String> = ins
            .by_object
            .iter()
            .take(6)
            .map(|(o, c)| format!("{o} {:.1} %", *c as f64 * 100.0 / ins.total.max(1) as f64))
            .collect();
        println!("    by object: {}", top.join(", "));
    }
}

/// Least-squares slope of `y` over `x` (`None` with fewer than two distinct `x`).
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The memory slope of a run: resident memory against time over the samples taken once every
/// session had started, and the same for the bench's own records (which grow with the run: one
/// entry per VAD window, output frame and input tick), whose growth is not the framework's.
fn print_memory_slope(r: &RunResult) {
    let samples: Vec<&(f64, u64, u64)> = r
        .rss_samples
        .iter()
        .filter(|s| s.0 >= r.ramp_up_secs)
        .collect();
    let minutes = |s: &(f64, u64, u64)| s.0 / 60.0;
    let rss: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (minutes(s), s.1 as f64 / 1024.0))
        .collect();
    let own: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (minutes(s), s.2 as f64 / (1024.0 * 1024.0)))
        .collect();
    match (slope(&rss), slope(&own)) {
        (Some(rss_slope), Some(own_slope)) => println!(
            "\nmemory over time ({} samples after ramp-up, every {:.0} s): RSS {:.1} -> {:.1} MB, slope {:+.3} MB/min; the bench's own records {:+.3} MB/min; net {:+.3} MB/min = {:+.1} MB/hour ({:+.3} MB per session per hour)",
            rss.len(),
            samples.get(1).map_or(0.0, |s| s.0) - samples.first().map_or(0.0, |s| s.0),
            rss.first().map_or(0.0, |p| p.1),
            rss.last().map_or(0.0, |p| p.1),
            rss_slope,
            own_slope,
            rss_slope - own_slope,
            (rss_slope - own_slope) * 60.0,
            (rss_slope - own_slope) * 60.0 / r.sessions.max(1) as f64,
        ),
        _ => println!(
            "\nmemory over time: fewer than two RSS samples after ramp-up (run longer than the ramp-up of {:.0} s plus two --rss-sample-secs intervals)",
            r.ramp_up_secs
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The child: input audio, reference turns, sessions.

/// One user turn of the input, in input-audio seconds.
#[derive(Debug, Clone, Copy)]
struct RefTurn {
    /// Last speaking time (as the VAD sees it: end-of-speech timestamp minus its silence).
    speech_end: f64,
    /// Audio time at which the VAD decides end of speech.
    eos: f64,
}

/// The looped input of one session and its reference turns.
struct Input {
    frames: Vec<AudioFrame>,
    turns: Vec<RefTurn>,
    loop_seconds: f64,
}

fn ceil_to_frame(secs: f64) -> f64 {
    let f = FRAME.as_secs_f64();
    (secs / f - 1e-9).ceil() * f
}

/// Runs the VAD offline over 20 ms frames and returns its end-of-speech events.
async fn vad_ends(vad: &SileroVad, frames: &[AudioFrame]) -> Vec<VadEvent> {
    let mut stream = vad.stream();
    for f in frames {
        stream.push_frame(f.clone());
    }
    stream.end_input();
    let mut ends = Vec::new();
    while let Some(ev) = stream.next_event().await {
        if ev.kind == VadEventType::EndOfSpeech {
            ends.push(ev);
        }
    }
    ends
}

fn frames_of(samples: &[i16], rate: u32) -> anyhow::Result<Vec<AudioFrame>> {
    let per = (rate as usize) / 50;
    samples
        .chunks_exact(per)
        .map(|c| Ok(AudioFrame::new(c.to_vec(), rate, 1)?))
        .collect()
}

/// The input WAV with `PAUSE_AFTER_UTTERANCE` of silence inserted where the VAD ended each
/// utterance, looped to `seconds`; reference turns from the VAD run over exactly those frames.
async fn build_input(vad: &SileroVad, path: &Path, seconds: f64) -> anyhow::Result<Input> {
    let audio = livekit_agents::audio::wav::read_wav_file(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mono = audio.downmix_to_mono();
    let rate = mono.sample_rate;
    let original = frames_of(&mono.data, rate)?;
    let ends = vad_ends(vad, &original).await;
    if ends.is_empty() {
        bail!("{}: the VAD finds no speech", path.display());
    }
    let pause = vec![0i16; (PAUSE_AFTER_UTTERANCE * rate as f64) as usize];
    let mut one_loop = Vec::with_capacity(mono.data.len() + pause.len() * ends.len());
    let mut from = 0usize;
    for ev in &ends {
        let at = ((ev.timestamp * rate as f64) as usize).min(mono.data.len());
        one_loop.extend_from_slice(&mono.data[from..at]);
        one_loop.extend_from_slice(&pause);
        from = at;
    }
    one_loop.extend_from_slice(&mono.data[from..]);
    let loop_seconds = one_loop.len() as f64 / rate as f64;
    let loops = (seconds / loop_seconds).ceil() as usize;
    let mut all = Vec::with_capacity(one_loop.len() * loops);
    for _ in 0..loops {
        all.extend_from_slice(&one_loop);
    }
    all.truncate((seconds * rate as f64) as usize);
    let frames = frames_of(&all, rate)?;
    let turns = vad_ends(vad, &frames)
        .await
        .iter()
        .map(|ev| RefTurn {
            speech_end: ev.timestamp - ev.silence_duration,
            eos: ev.timestamp,
        })
        .collect();
    Ok(Input {
        frames,
        turns,
        loop_seconds,
    })
}

/// Per-session measurements, shared by the session's VAD wrapper, output sink and the harness.
#[derive(Default)]
struct Probe {
    /// Wall time at which input-audio time 0 was "captured" (frame `j` is delivered at
    /// `t0 + (j + 1) * 20 ms`).
    t0: OnceLock<Instant>,
    stats: Mutex<ProbeStats>,
}

#[derive(Default)]
struct ProbeStats {
    /// Wall times of the first frame of each reply.
    reply_starts: Vec<Instant>,
    /// Output lateness of every non-first frame, ms.
    output_lateness_ms: Vec<f32>,
    /// Each VAD inference result: its audio timestamp (input seconds) and when it left the VAD.
    vad_results: Vec<(f64, Instant)>,
    /// The VAD's own inference time per window, ms.
    vad_inference_ms: Vec<f32>,
    /// When the LLM was called, answered, the TTS got its first text, and the TTS pushed its
    /// audio.
    llm_calls: Vec<Instant>,
    llm_replies: Vec<Instant>,
    /// Timer slop of the fakes (their sleeps wake up to ~1 ms late), ms.
    fake_slop_ms: Vec<f32>,
    tts_texts: Vec<Instant>,
    tts_audio: Vec<Instant>,
    /// When each end-of-speech event left the VAD (the turn's commit waits for it).
    vad_ends: Vec<Instant>,
}

impl ProbeStats {
    /// Bytes these records hold (the bench's own memory, growing with the run).
    fn bytes(&self) -> usize {
        use std::mem::size_of;
        let instants = self.reply_starts.len()
            + self.llm_calls.len()
            + self.llm_replies.len()
            + self.tts_texts.len()
            + self.tts_audio.len()
            + self.vad_ends.len();
        instants * size_of::<Instant>()
            + self.vad_results.len() * size_of::<(f64, Instant)>()
            + (self.output_lateness_ms.len()
                + self.vad_inference_ms.len()
                + self.fake_slop_ms.len())
                * size_of::<f32>()
    }
}

impl Probe {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The real Silero VAD, with each inference result's lag recorded.
struct ProbedVad {
    inner: SileroVad,
    probe: Arc<Probe>,
}

impl Vad for ProbedVad {
    fn label(&self) -> String {
        self.inner.label()
    }
    fn capabilities(&self) -> VadCapabilities {
        self.inner.capabilities()
    }
    fn stream(&self) -> VadStream {
        let mut inner = self.inner.stream();
        let input = inner.input_handle();
        let probe = self.probe.clone();
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(async move {
            while let Some(ev) = inner.next_event().await {
                if ev.kind == VadEventType::EndOfSpeech {
                    probe.lock().vad_ends.push(Instant::now());
                }
                if ev.kind == VadEventType::InferenceDone {
                    let mut stats = probe.lock();
                    stats.vad_results.push((ev.timestamp, Instant::now()));
                    stats
                        .vad_inference_ms
                        .push(ev.inference_duration as f32 * 1e3);
                }
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        // Frames go straight into the Silero stream (its own input handle: no extra hop per
        // frame); only events pass through the probe task. The outer `end_input` therefore does
        // not end the stream: the bench stops sessions by shutting the runtime down.
        VadStream::from_channels(input, rx, Some(task))
    }
}

/// Records when each reply's first frame starts playing and how late the following frames start
/// against a continuous playout from that first frame.
fn output_sink(probe: Arc<Probe>) -> impl FnMut(&AudioFrame) + Send + 'static {
    let mut anchor: Option<Instant> = None;
    let mut offset = Duration::ZERO;
    move |frame: &AudioFrame| {
        let now = Instant::now();
        if frame.data.first() == Some(&REPLY_MARKER) {
            probe.lock().reply_starts.push(now);
            anchor = Some(now);
            offset = Duration::ZERO;
        } else if let Some(anchor) = anchor {
            let lateness = now.saturating_duration_since(anchor + offset);
            probe
                .lock()
                .output_lateness_ms
                .push(lateness.as_secs_f32() * 1e3);
        }
        offset += frame.duration();
    }
}

/// A streaming STT answering a final transcript `STT_FINAL_DELAY` after the end of each
/// utterance reached it (the end positions come from the reference VAD run).
struct BenchStt {
    speech_ends: Arc<Vec<f64>>,
}

#[async_trait]
impl Stt for BenchStt {
    fn label(&self) -> String {
        "bench.STT".into()
    }
    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            streaming: true,
            interim_results: false,
            ..Default::default()
        }
    }
    fn stream(
        &self,
        _language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        Ok(SpeechStream::spawn(
            "bench.STT",
            conn,
            BenchSttTask {
                speech_ends: self.speech_ends.clone(),
                next: 0,
            },
        ))
    }
}

struct BenchSttTask {
    speech_ends: Arc<Vec<f64>>,
    next: usize,
}

#[async_trait]
impl SttStreamTask for BenchSttTask {
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        let mut due: std::collections::VecDeque<Instant> = Default::default();
        loop {
            let deadline = due.front().copied();
            tokio::select! {
                item = input.recv() => match item {
                    None => return Ok(()),
                    Some(SttInput::Frame(_)) => {
                        let position = input.consumed_secs();
                        while self.speech_ends.get(self.next).is_some_and(|&end| end <= position) {
                            due.push_back(Instant::now() + STT_FINAL_DELAY);
                            self.next += 1;
                        }
                    }
                    Some(SttInput::Flush) => {}
                },
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    due.pop_front();
                    let data = SpeechData {
                        language: "en".into(),
                        text: "What is the weather like today?".into(),
                        confidence: 1.0,
                        ..Default::default()
                    };
                    let final_ = SpeechEvent::transcript(SpeechEventType::FinalTranscript, data);
                    if !events.send(final_).await {
                        return Ok(());
                    }
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// An LLM answering `REPLY_TEXT` in one chunk after `LLM_TTFT`.
struct BenchLlm {
    probe: Arc<Probe>,
}

impl Llm for BenchLlm {
    fn label(&self) -> String {
        "bench.LLM".into()
    }
    fn model(&self) -> String {
        "bench".into()
    }
    fn provider(&self) -> String {
        "bench".into()
    }
    fn chat(&self, request: ChatRequest) -> LlmStream {
        self.probe.lock().llm_calls.push(Instant::now());
        LlmStream::spawn(
            "bench.LLM",
            request.conn,
            BenchLlmTask {
                probe: self.probe.clone(),
            },
        )
    }
}

struct BenchLlmTask {
    probe: Arc<Probe>,
}

#[async_trait]
impl LlmStreamTask for BenchLlmTask {
    async fn run(&mut self, out: &ChunkSender) -> Result<(), ApiError> {
        let asked = Instant::now();
        tokio::time::sleep(LLM_TTFT).await;
        let slop = asked.elapsed().saturating_sub(LLM_TTFT);
        {
            let mut stats = self.probe.lock();
            stats.fake_slop_ms.push(slop.as_secs_f32() * 1e3);
            stats.llm_replies.push(Instant::now());
        }
        out.send(ChatChunk::text("bench", REPLY_TEXT)).await;
        Ok(())
    }
}

/// A streaming TTS: `TTS_TTFB` after a segment's first text, the whole reply audio at once
/// (providers stream faster than real time; the output paces playback).
struct BenchTts {
    reply: Arc<Vec<i16>>,
    probe: Arc<Probe>,
}

#[async_trait]
impl Tts for BenchTts {
    fn label(&self) -> String {
        "bench.TTS".into()
    }
    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            aligned_transcript: false,
        }
    }
    fn sample_rate(&self) -> u32 {
        TTS_SAMPLE_RATE
    }
    fn synthesize(&self, _text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        ChunkedStream::spawn(
            "bench.TTS",
            conn,
            TTS_SAMPLE_RATE,
            1,
            BenchChunkedTask {
                reply: self.reply.clone(),
            },
        )
    }
    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        Ok(SynthesizeStream::spawn(
            "bench.TTS",
            conn,
            TTS_SAMPLE_RATE,
            1,
            BenchTtsTask {
                reply: self.reply.clone(),
                probe: self.probe.clone(),
            },
        ))
    }
}

struct BenchChunkedTask {
    reply: Arc<Vec<i16>>,
}

#[async_trait]
impl livekit_agents::tts::ChunkedTtsTask for BenchChunkedTask {
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
        tokio::time::sleep(TTS_TTFB).await;
        emitter.push_samples(&self.reply).await;
        Ok(())
    }
}

struct BenchTtsTask {
    reply: Arc<Vec<i16>>,
    probe: Arc<Probe>,
}

#[async_trait]
impl TtsStreamTask for BenchTtsTask {
    async fn run(
        &mut self,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError> {
        let mut open = false;
        while let Some(item) = input.recv().await {
            match item {
                TtsInput::Text(text) => {
                    if !open && !text.trim().is_empty() {
                        open = true;
                        emitter.start_segment("bench");
                        let asked = Instant::now();
                        self.probe.lock().tts_texts.push(asked);
                        tokio::time::sleep(TTS_TTFB).await;
                        let slop = asked.elapsed().saturating_sub(TTS_TTFB);
                        {
                            let mut stats = self.probe.lock();
                            stats.tts_audio.push(Instant::now());
                            stats.fake_slop_ms.push(slop.as_secs_f32() * 1e3);
                        }
                        if !emitter.push_samples(&self.reply).await {
                            return Ok(());
                        }
                    }
                }
                TtsInput::Flush => {
                    if open {
                        open = false;
                        if !emitter.end_segment().await {
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The reply audio: a quiet 220 Hz tone whose first sample is `REPLY_MARKER`.
fn reply_samples() -> Vec<i16> {
    let n = (REPLY_AUDIO.as_secs_f64() * TTS_SAMPLE_RATE as f64) as usize;
    let mut samples: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / TTS_SAMPLE_RATE as f64;
            (1000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16
        })
        .collect();
    if let Some(first) = samples.first_mut() {
        *first = REPLY_MARKER;
    }
    samples
}

/// `VmRSS` and `VmHWM` of this process, kB (0 where unavailable).
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn run_child(args: &BenchArgs) -> anyhow::Result<RunResult> {
    install_tracing(&args.tracing)?;
    if args.paused || args.instructions {
        return run_child_paused(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(child_main(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The deterministic variant (`--paused`): one thread, tokio's clock paused (it jumps to the
/// next timer whenever every task waits), so the run does the same work as a real-time run
/// (same audio, same turns, same model calls) as fast as the CPU allows, and its cost does not
/// depend on the machine's other load. Allocations are counted over the feeding window; under
/// `--instructions` the parent runs this child in callgrind, collecting only inside
/// [`measured_feed`].
fn run_child_paused(args: &BenchArgs) -> anyhow::Result<RunResult> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .context("cannot start the async runtime")?;
    let prepared = runtime.block_on(prepare(args))?;
    super::alloc_count::Counting::start();
    let fed = measured_feed(&runtime, args, &prepared);
    let allocations = super::alloc_count::Counting::stop();
    let mut result = runtime.block_on(analyse(prepared, fed));
    result.paused = true;
    result.allocations = allocations.allocations;
    result.allocated_bytes = allocations.bytes;
    Ok(result)
}

/// The feeding window of a `--paused` run: every task of the (single-threaded) runtime runs
/// inside this call, and nothing else does, so callgrind's `--toggle-collect=*measured_feed*`
/// counts exactly the sessions' work (setup and analysis left out). Not inlined, so the symbol
/// exists.
#[inline(never)]
fn measured_feed(runtime: &tokio::runtime::Runtime, args: &BenchArgs, prep: &Prepared) -> Fed {
    runtime.block_on(feed(args, prep))
}

/// Instruction counts of one callgrind profile (see [`parse_callgrind`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InstructionCounts {
    /// Instructions executed in the collected window.
    total: u64,
    /// Self cost by shared object (file name), largest first.
    by_object: Vec<(String, u64)>,
}

/// Totals and self cost per object of a callgrind output file (format version 1, the `Ir`
/// event only, as `valgrind --tool=callgrind` writes it by default).
fn parse_callgrind(path: &Path) -> anyhow::Result<InstructionCounts> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut names: std::collections::HashMap<String, String> = Default::default();
    let mut by_object: std::collections::HashMap<String, u64> = Default::default();
    let mut object = String::from("?");
    let mut total = None;
    let mut skip_next_cost = false;
    // `ob=(3) /lib/x.so` defines id 3; a later `ob=(3)` refers to it.
    let mut resolve = |spec: &str| -> String {
        let spec = spec.trim();
        match spec.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((id, rest)) => {
                let rest = rest.trim();
                if rest.is_empty() {
                    names.get(id).cloned().unwrap_or_else(|| format!("({id})"))
                } else {
                    names.insert(id.to_owned(), rest.to_owned());
                    rest.to_owned()
                }
            }
            None => spec.to_owned(),
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ob=") {
            object = resolve(rest);
        } else if let Some(rest) = line.strip_prefix("cob=") {
            resolve(rest); // defines the name; the cost stays with the current object
        } else if line.starts_with("calls=") {
            skip_next_cost = true; // the next cost line is the call's inclusive cost
        } else if let Some(rest) = line
            .strip_prefix("totals:")
            .or_else(|| line.strip_prefix("summary:"))
        {
            total = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if line
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '+' || c == '-' || c == '*')
        {
            let cost: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if skip_next_cost {
                skip_next_cost = false;
            } else {
                *by_object.entry(object.clone()).or_default() += cost;
            }
        }
    }
    let mut by_object: Vec<(String, u64)> = by_object
        .into_iter()
        .map(|(path, cost)| {
            let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
            (name, cost)
        })
        .collect();
    by_object.sort_by_key(|b| std::cmp::Reverse(b.1));
    let summed = by_object.iter().map(|o| o.1).sum();
    Ok(InstructionCounts {
        total: total.unwrap_or(summed),
        by_object,
    })
}

/// The ideal time of the first reply frame, input-audio seconds: the turn is committed when the
/// VAD's end of speech has been delivered, `min_delay` after the last speaking time, and the STT
/// final is in (whichever is last); then the LLM and TTS latencies.
fn ideal_first_audio(turn: &RefTurn, min_delay: f64) -> f64 {
    let eos_delivered = ceil_to_frame(turn.eos);
    let stt_final = ceil_to_frame(turn.speech_end) + STT_FINAL_DELAY.as_secs_f64();
    let commit = eos_delivered
        .max(turn.speech_end + min_delay)
        .max(stt_final);
    commit + LLM_TTFT.as_secs_f64() + TTS_TTFB.as_secs_f64()
}

async fn child_main(args: &BenchArgs) -> anyhow::Result<RunResult> {
    let prepared = prepare(args).await?;
    let fed = feed(args, &prepared).await;
    Ok(analyse(prepared, fed).await)
}

/// The sessions started and the feeding schedule (what `prepare` builds).
struct Prepared {
    n: usize,
    seconds: f64,
    vad: SileroVad,
    input: Input,
    min_delay: f64,
    rss_start_kb: u64,
    probes: Vec<Arc<Probe>>,
    senders: Vec<AudioInputSender>,
    /// Kept alive for the run (`--background-audio`).
    _players: Vec<livekit_agents::background_audio::BackgroundAudioPlayer>,
    sessions: Vec<AgentSession>,
    /// Input tick at which each session's first frame is delivered.
    start_tick: Vec<usize>,
    /// Phase (ms within the 20 ms period) of each session's frames.
    phase: Vec<usize>,
    /// Slot 0 of the feeding.
    base: Instant,
    stagger_ticks: usize,
    /// VAD batching on.
    batching: bool,
}

/// What the feeding measured (what `feed` returns).
struct Fed {
    load_start: String,
    load_end: String,
    cpu_seconds: f64,
    wall: f64,
    rss_end_kb: u64,
    rss_peak_kb: u64,
    vad_mean_batch: f64,
    /// When each 1 ms slot's frames were actually handed over.
    delivered_at: Vec<Instant>,
    rss_samples: Vec<(f64, u64, u64)>,
}

/// Loads the VAD, builds the input and starts the sessions.
async fn prepare(args: &BenchArgs) -> anyhow::Result<Prepared> {
    let n = args.sessions.max(1);
    let seconds = args.seconds as f64;
    let vad = SileroVad::load(VadOptions {
        batching: if args.no_batching {
            BatchOptions::disabled()
        } else {
            BatchOptions::default()
        },
        ..VadOptions::default()
    })
    .context("load Silero (run `cargo xtask download-files` first)")?;
    let path = args.input.clone().unwrap_or_else(default_input);
    let input = build_input(&vad, &path, seconds).await?;
    let speech_ends = Arc::new(input.turns.iter().map(|t| t.speech_end).collect::<Vec<_>>());
    let reply = Arc::new(reply_samples());
    let mut options = SessionOptions::default();
    options.turn_handling.turn_detection = TurnDetection::Vad;
    options.turn_handling.preemptive_generation =
        PreemptiveGenerationOptions::default().with_enabled(false);
    let min_delay = options.turn_handling.endpointing.min_delay.as_secs_f64();

    let (rss_start_kb, _) = rss_kb();
    let mut probes = Vec::with_capacity(n);
    let mut senders: Vec<AudioInputSender> = Vec::with_capacity(n);
    let mut players = Vec::new();
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        let probe = Arc::new(Probe::default());
        let (sender, audio_input) = audio_input_channel();
        let session = AgentSession::builder()
            .options(options.clone())
            .vad(Arc::new(ProbedVad {
                inner: vad.clone(),
                probe: probe.clone(),
            }))
            .stt(Arc::new(BenchStt {
                speech_ends: speech_ends.clone(),
            }))
            .llm(Arc::new(BenchLlm {
                probe: probe.clone(),
            }))
            .tts(Arc::new(BenchTts {
                reply: reply.clone(),
                probe: probe.clone(),
            }))
            .build();
        // With `--background-audio` the output's sink is a `MixingSink`: each agent frame is
        // mixed (into a copy that goes nowhere) before the probe sees the original frame, so
        // the mixing's time counts against the first-frame time, and the mixer's own blocks
        // between replies run as in a real output.
        let mixer = livekit_agents::audio::AudioMixer::new(TTS_SAMPLE_RATE, 1);
        let mut probe_sink = output_sink(probe.clone());
        let output = if args.background_audio {
            use livekit_agents::io::FrameSink as _;
            let mut mixing = mixer.sink(|_: &AudioFrame| {});
            PacedAudioOutput::new(
                format!("bench-{i}"),
                Some(TTS_SAMPLE_RATE),
                move |frame: &AudioFrame| {
                    mixing.play(frame);
                    probe_sink(frame);
                },
            )
        } else {
            PacedAudioOutput::new(format!("bench-{i}"), Some(TTS_SAMPLE_RATE), probe_sink)
        };
        session
            .start(
                Agent::new("You are a helpful voice assistant."),
                SessionIo {
                    audio_input: Some(audio_input),
                    audio_output: Some(Arc::new(output)),
                    text_output: None,
                },
            )
            .await
            .with_context(|| format!("session {i} did not start"))?;
        if args.background_audio {
            use livekit_agents::background_audio::{BackgroundAudioPlayer, BuiltinAudioClip};
            let player = BackgroundAudioPlayer::new()
                .with_ambient_sound(BuiltinAudioClip::OfficeAmbience)
                .with_thinking_sound(BuiltinAudioClip::KeyboardTyping);
            player.start(mixer, Some(&session)).await?;
            players.push(player);
        }
        probes.push(probe);
        senders.push(sender);
        sessions.push(session);
    }

    // Sessions start spread evenly over one input loop (capped at half the run), so turns are
    // spread in time the way independent calls are.
    let frame_secs = FRAME.as_secs_f64();
    let stagger_ticks = (input.loop_seconds.min(seconds / 2.0) / frame_secs) as usize;
    let start_tick: Vec<usize> = (0..n).map(|i| i * stagger_ticks / n).collect();
    // Independent calls' frames arrive at independent moments of the 20 ms period: session i
    // gets its frames at phase `i % PHASES` (1 ms steps). `--aligned-input` hands every session
    // its frame at the same instant instead (a transport with one shared audio tick would).
    let phases = if args.aligned_input { 1 } else { PHASES };
    let phase: Vec<usize> = (0..n).map(|i| i % phases).collect();
    let slot = |tick: usize, phase: usize| tick * PHASES + phase;
    let base = Instant::now() + Duration::from_millis(200);
    for ((probe, &s), &p) in probes.iter().zip(&start_tick).zip(&phase) {
        // Frame j of session i is delivered at slot (s + j, p) = t0 + (j + 1) * FRAME.
        let first = base + PHASE_STEP * slot(s, p) as u32;
        let _ = probe.t0.set(first.checked_sub(FRAME).unwrap_or(base));
    }
    eprintln!(
        "  {n} sessions started (RSS {:.1} MB); feeding {:.0} s of speech each, starts spread over {:.1} s",
        rss_kb().0 as f64 / 1024.0,
        seconds,
        stagger_ticks as f64 * frame_secs
    );
    Ok(Prepared {
        n,
        seconds,
        vad,
        input,
        min_delay,
        rss_start_kb,
        probes,
        senders,
        _players: players,
        sessions,
        start_tick,
        phase,
        base,
        stagger_ticks,
        batching: !args.no_batching,
    })
}

/// Delivers every session's frames on schedule (one "network" task) and measures CPU, memory
/// and load over the feeding.
async fn feed(args: &BenchArgs, prep: &Prepared) -> Fed {
    let Prepared {
        vad,
        input,
        probes,
        senders,
        start_tick,
        phase,
        base,
        stagger_ticks,
        ..
    } = prep;
    let (base, stagger_ticks) = (*base, *stagger_ticks);
    let load_start = super::load_average();
    let stats0 = vad.batch_stats().unwrap_or_default();
    let cpu0 = process_cpu_seconds().unwrap_or(0.0);
    let wall0 = std::time::Instant::now();
    let frames = input.frames.len();
    let total_ticks = stagger_ticks + frames;
    // One "network" task delivers every session's 20 ms frames (its cost is part of the
    // measured CPU, as a room's track readers would be), one phase group per millisecond.
    let mut by_phase: Vec<Vec<usize>> = vec![Vec::new(); PHASES];
    for (i, &p) in phase.iter().enumerate() {
        by_phase[p].push(i);
    }
    let total_slots = total_ticks * PHASES;
    let mut delivered_at = Vec::with_capacity(total_slots);
    // Resident memory every `--rss-sample-secs` (in slots of 1 ms), with what the bench's own
    // records hold at that moment (they grow with the run; the framework's memory should not).
    let sample_every = (args.rss_sample_secs.max(1) * 1000) as usize;
    let mut rss_samples = Vec::new();
    for t in 0..total_slots {
        if t % sample_every == 0 {
            let own = probes.iter().map(|p| p.lock().bytes()).sum::<usize>()
                + delivered_at.len() * std::mem::size_of::<Instant>();
            rss_samples.push((t as f64 / 1000.0, rss_kb().0, own as u64));
        }
        tokio::time::sleep_until(base + PHASE_STEP * t as u32).await;
        // The frames of this slot reach their sessions now (the timer wakes this task a little
        // after the slot: that slop belongs to the harness, not to the framework).
        delivered_at.push(Instant::now());
        let (k, p) = (t / PHASES, t % PHASES);
        for &i in &by_phase[p] {
            if let Some(frame) = k
                .checked_sub(start_tick[i])
                .and_then(|j| input.frames.get(j))
            {
                senders[i].send(frame.clone());
            }
        }
    }
    let cpu_seconds = process_cpu_seconds().unwrap_or(0.0) - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    let (rss_end_kb, rss_peak_kb) = rss_kb();
    let load_end = super::load_average();
    let vad_mean_batch = match vad.batch_stats() {
        Some(stats) => {
            let batches = stats.batches - stats0.batches;
            (stats.windows - stats0.windows) as f64 / batches.max(1) as f64
        }
        None => 1.0,
    };
    Fed {
        load_start,
        load_end,
        cpu_seconds,
        wall,
        rss_end_kb,
        rss_peak_kb,
        vad_mean_batch,
        delivered_at,
        rss_samples,
    }
}

/// Waits for the last replies, then computes the run's result from the probes.
async fn analyse(prep: Prepared, fed: Fed) -> RunResult {
    let Prepared {
        n,
        seconds,
        input,
        min_delay,
        rss_start_kb,
        probes,
        sessions,
        start_tick,
        phase,
        base,
        stagger_ticks,
        batching,
        ..
    } = prep;
    let Fed {
        load_start,
        load_end,
        cpu_seconds,
        wall,
        rss_end_kb,
        rss_peak_kb,
        vad_mean_batch,
        delivered_at,
        rss_samples,
    } = fed;
    let frame_secs = FRAME.as_secs_f64();
    let slot = |tick: usize, phase: usize| tick * PHASES + phase;
    // Replies of the last turns are still on their way.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut m = Measurements::default();
    for (t, at) in delivered_at.iter().enumerate() {
        let nominal = base + PHASE_STEP * t as u32;
        m.feeder_slop
            .push(at.saturating_duration_since(nominal).as_secs_f64() * 1e3);
    }
    for ((probe, &start), &p) in probes.iter().zip(&start_tick).zip(&phase) {
        let Some(&t0) = probe.t0.get() else { continue };
        let stats = probe.lock();
        let secs = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
        // When the frame completing the audio up to input time `ts` actually reached the session.
        let delivered = |ts: f64| -> Option<f64> {
            let j = ((ceil_to_frame(ts) / frame_secs).round() as usize).checked_sub(1)?;
            delivered_at.get(slot(start + j, p)).map(|&t| secs(t))
        };
        // The first event of `times` at or after `from` (seconds since t0).
        let after = |times: &[Instant], from: f64| {
            times.iter().map(|&t| secs(t)).find(|&t| t >= from - 0.05)
        };
        for &(ts, out) in &stats.vad_results {
            if let Some(d) = delivered(ts) {
                m.in_lag.push((secs(out) - d) * 1e3);
            }
        }
        let expected: Vec<&RefTurn> = input
            .turns
            .iter()
            .filter(|t| ideal_first_audio(t, min_delay) + 0.1 < seconds)
            .collect();
        m.turns_expected += expected.len();
        let mut matched = vec![false; expected.len()];
        for &reply_start in &stats.reply_starts {
            let at = secs(reply_start);
            let Some(i) = expected.iter().rposition(|t| t.speech_end < at) else {
                m.extra_replies += 1;
                continue;
            };
            if matched[i] {
                m.extra_replies += 1;
                continue;
            }
            matched[i] = true;
            let turn = expected[i];
            let ideal = ideal_first_audio(turn, min_delay);
            m.added.push((at - ideal) * 1e3);
            m.totals.push((at - turn.speech_end) * 1e3);
            m.ideals.push((ideal - turn.speech_end) * 1e3);
            if let Some(steps) = framework_steps(&stats, turn, min_delay, &delivered, &after, at) {
                m.framework.push(steps.iter().sum());
                for (all, step) in m.steps.iter_mut().zip(steps) {
                    all.push(step);
                }
            }
        }
        m.out_lateness
            .extend(stats.output_lateness_ms.iter().map(|&v| f64::from(v)));
        m.fake_slop
            .extend(stats.fake_slop_ms.iter().map(|&v| f64::from(v)));
        m.vad_inference
            .extend(stats.vad_inference_ms.iter().map(|&v| f64::from(v)));
    }
    drop(sessions);
    m.sort();
    let late_ms = LATE_THRESHOLD.as_secs_f64() * 1e3;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    RunResult {
        sessions: n,
        seconds,
        turns_expected: m.turns_expected,
        turns_completed: m.added.len(),
        extra_replies: m.extra_replies,
        framework_p50_ms: quantile(&m.framework, 0.5),
        framework_p95_ms: quantile(&m.framework, 0.95),
        framework_p99_ms: quantile(&m.framework, 0.99),
        framework_max_ms: m.framework.last().copied().unwrap_or(f64::NAN),
        added_p50_ms: quantile(&m.added, 0.5),
        added_p95_ms: quantile(&m.added, 0.95),
        added_p99_ms: quantile(&m.added, 0.99),
        added_max_ms: m.added.last().copied().unwrap_or(f64::NAN),
        total_p50_ms: quantile(&m.totals, 0.5),
        ideal_p50_ms: quantile(&m.ideals, 0.5),
        cpu_seconds,
        cpu_per_session_minute: cpu_seconds / (n as f64 * seconds / 60.0),
        cpu_utilization: cpu_seconds / wall / cores,
        rss_start_kb,
        rss_end_kb,
        rss_peak_kb,
        output_frames: m.out_lateness.len(),
        output_late: m.out_lateness.iter().filter(|&&v| v > late_ms).count(),
        output_lateness_p99_ms: quantile(&m.out_lateness, 0.99),
        output_lateness_max_ms: m.out_lateness.last().copied().unwrap_or(0.0),
        input_windows: m.in_lag.len(),
        input_late: m.in_lag.iter().filter(|&&v| v > late_ms).count(),
        input_lag_p50_ms: quantile(&m.in_lag, 0.5),
        input_lag_p99_ms: quantile(&m.in_lag, 0.99),
        input_lag_max_ms: m.in_lag.last().copied().unwrap_or(0.0),
        vad_inference_p50_ms: quantile(&m.vad_inference, 0.5),
        vad_inference_p99_ms: quantile(&m.vad_inference, 0.99),
        feeder_timer_slop_mean_ms: mean(&m.feeder_slop),
        fake_timer_slop_mean_ms: mean(&m.fake_slop),
        eos_lag_p50_ms: quantile(&m.steps[0], 0.5),
        eos_lag_p99_ms: quantile(&m.steps[0], 0.99),
        eos_to_llm_p50_ms: quantile(&m.steps[1], 0.5),
        eos_to_llm_p99_ms: quantile(&m.steps[1], 0.99),
        llm_to_tts_p50_ms: quantile(&m.steps[2], 0.5),
        llm_to_tts_p99_ms: quantile(&m.steps[2], 0.99),
        tts_to_output_p50_ms: quantile(&m.steps[3], 0.5),
        tts_to_output_p99_ms: quantile(&m.steps[3], 0.99),
        batching,
        vad_mean_batch,
        load_start,
        load_end,
        rss_samples,
        ramp_up_secs: stagger_ticks as f64 * frame_secs,
        paused: false,
        allocations: 0,
        allocated_bytes: 0,
        instructions: None,
    }
}

/// Everything one child collects before computing quantiles (ms unless said otherwise).
#[derive(Default)]
struct Measurements {
    turns_expected: usize,
    extra_replies: usize,
    /// First agent frame minus its ideal time (harness timer slop included).
    added: Vec<f64>,
    /// The framework's own share: the sum of the four steps below.
    framework: Vec<f64>,
    /// [end-of-speech audio delivered -> VAD end of speech out, -> LLM call, LLM reply -> TTS
    /// text, TTS audio -> first frame playing].
    steps: [Vec<f64>; 4],
    totals: Vec<f64>,
    ideals: Vec<f64>,
    out_lateness: Vec<f64>,
    in_lag: Vec<f64>,
    vad_inference: Vec<f64>,
    feeder_slop: Vec<f64>,
    fake_slop: Vec<f64>,
}

impl Measurements {
    fn sort(&mut self) {
        for v in [
            &mut self.added,
            &mut self.framework,
            &mut self.totals,
            &mut self.ideals,
            &mut self.out_lateness,
            &mut self.in_lag,
            &mut self.vad_inference,
            &mut self.feeder_slop,
            &mut self.fake_slop,
        ]
        .into_iter()
        .chain(self.steps.iter_mut())
        {
            v.sort_by(f64::total_cmp);
        }
    }
}

/// The framework's steps of one turn (ms), measured from what actually happened rather than
/// from the schedule, so the harness's timer slop (input delivery, the fakes' sleeps) is left
/// out: audio delivered -> VAD end of speech out -> LLM call; LLM reply -> TTS text; TTS audio
/// -> first frame playing. `None` when the turn's commit was not bound by the VAD (then the
/// steps do not add up to the turn) or an event is missing.
fn framework_steps(
    stats: &ProbeStats,
    turn: &RefTurn,
    min_delay: f64,
    delivered: &dyn Fn(f64) -> Option<f64>,
    after: &dyn Fn(&[Instant], f64) -> Option<f64>,
    first_frame: f64,
) -> Option<[f64; 4]> {
    let eos_nominal = ceil_to_frame(turn.eos);
    let stt_final = ceil_to_frame(turn.speech_end) + STT_FINAL_DELAY.as_secs_f64();
    if eos_nominal < (turn.speech_end + min_delay).max(stt_final) {
        return None;
    }
    let eos_delivered = delivered(turn.eos)?;
    let eos_out = after(&stats.vad_ends, eos_delivered)?;
    let llm_call = after(&stats.llm_calls, eos_out)?;
    let llm_reply = after(&stats.llm_replies, llm_call)?;
    let tts_text = after(&stats.tts_texts, llm_reply)?;
    let tts_audio = after(&stats.tts_audio, tts_text)?;
    if first_frame < tts_audio {
        return None;
    }
    Some([
        (eos_out - eos_delivered) * 1e3,
        (llm_call - eos_out) * 1e3,
        (tts_text - llm_reply) * 1e3,
        (first_frame - tts_audio) * 1e3,
    ])
}

/// `--tracing`: `off` runs without a subscriber (span macros cost a level check); `info`
/// installs a real one at INFO: the session spans on (`agent_session`, `user_turn`,
/// `agent_turn`, `llm_request`, ...) with the telemetry latency layer timing them, and no
/// exporter. Comparing the two runs' CPU-s per session-minute gives what the spans cost.
fn install_tracing(mode: &str) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    match mode {
        "off" => Ok(()),
        "info" => {
            tracing_subscriber::registry()
                .with(livekit_agents::telemetry::latency::layer())
                .with(tracing_subscriber::EnvFilter::new("info"))
                .try_init()
                .context("cannot install the tracing subscriber")?;
            eprintln!("tracing: INFO subscriber with the session spans and the latency layer, no exporter");
            Ok(())
        }
        other => anyhow::bail!("unknown --tracing {other:?} (use off or info)"),
    }
}
