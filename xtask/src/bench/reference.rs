//! `cargo xtask bench sessions --scenario reference`: the scenario of the Python reference
//! benchmark (`python_sessions_bench.py inproc`, livekit-agents 1.8.9), rebuilt on this framework
//! so the two can run back to back on one machine and be compared number for number.
//!
//! What is the same as the Python script (its defaults):
//! - the input: the reference WAV (`--input`, 16 kHz mono), looped, each session starting at a
//!   random offset drawn like Python's `random.Random(seed * 1000003 + i).randrange(len)` (the
//!   same Mersenne Twister, so the same offsets), fed in 50 ms frames at real-time pace (frame
//!   `k` handed over at `t0 + (k + 1) * 50 ms`);
//! - "speech end" ground truth: 10 ms RMS above `max(60, 3 x` the 10th-percentile RMS`)`, pauses
//!   shorter than 0.3 s bridged, segments shorter than 0.1 s dropped;
//! - the fakes: a streaming STT sending a final transcript 200 ms after each ground-truth speech
//!   end it hears; an LLM whose first token comes 300 ms after the request, then "Sure, that
//!   sounds good to me." word by word 20 ms apart; a streaming 24 kHz TTS whose first audio
//!   comes 150 ms after a segment's first text, then 60 ms of audio per character as text
//!   arrives;
//! - the output: paced at real time with a 200 ms queue (the room's audio source), pausable;
//! - the session: turn detection `vad`, VAD interruptions (min 0.5 s, false-interruption resume),
//!   endpointing 0.5 / 3.0 s, AEC warm-up off, preemptive generation off, everything else default;
//!   the Silero VAD with its defaults (one model for all sessions, as the script's one ONNX
//!   session);
//! - the window: `--warmup` (10 s) after the sessions started, then `--seconds` (60) measured;
//!   CPU is the process's over the window divided by N and minutes; the same turn legs
//!   (A speech end, B VAD end of speech, C STT final, D turn committed, E LLM request, E1 first
//!   token, F TTS first text, G TTS first audio, H first reply frame at the output) and the same
//!   "overhead" = H - D - 300 ms - 150 ms.
//!
//! What differs: each Python session's input has its own timer; here one task hands every
//! session its frame, sessions spread over the 50 ms frame period in 1 ms steps (Python's
//! sessions start one after the other, which spreads them likewise). H is when the reply's
//! first frame starts playing at the output (Python: when the output receives it; with an empty
//! queue these are the same moment).
//!
//! `--python PYTHON --python-script python_sessions_bench.py` also runs the script (`inproc`,
//! same N, warm-up and window) right after, and prints both with their ratios.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use livekit_agents::audio::AudioFrame;
use livekit_agents::io::memory::{audio_input_channel, AudioInputSender};
use livekit_agents::io::PacedAudioOutput;
use livekit_agents::llm::{
    ChatChunk, ChatContext, ChatMessage, ChatRequest, ChunkSender, Llm, LlmStream, LlmStreamTask,
};
use livekit_agents::stt::{
    SpeechData, SpeechEvent, SpeechEventSender, SpeechEventType, SpeechStream, Stt,
    SttCapabilities, SttInput, SttInputReceiver, SttStreamTask,
};
use livekit_agents::tts::{
    AudioEmitter, ChunkedStream, SynthesizeStream, Tts, TtsCapabilities, TtsInput,
    TtsInputReceiver, TtsStreamTask,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_agents::voice::{
    Agent, AgentBehavior, AgentContext, AgentSession, PreemptiveGenerationOptions, SessionEvent,
    SessionIo, SessionOptions, StopResponse, TurnDetection, UserState,
};
use livekit_plugins_silero::{BatchOptions, SileroVad, VadOptions};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{process_cpu_seconds, quantile, BenchArgs};

const FRAME_MS: u64 = 50;
const STT_DELAY: f64 = 0.2;
const STT_MIN_SILENCE: f64 = 0.3;
const LLM_TTFT: Duration = Duration::from_millis(300);
const LLM_TOKEN_INTERVAL: Duration = Duration::from_millis(20);
const REPLY: &str = "Sure, that sounds good to me.";
const TTS_TTFB: Duration = Duration::from_millis(150);
const TTS_SEC_PER_CHAR: f64 = 0.06;
const TTS_RATE: u32 = 24_000;
const OUTPUT_QUEUE: Duration = Duration::from_millis(200);
const SEED: u64 = 1;
/// First sample of every reply segment: the output sink tells a reply's first frame by it.
const REPLY_MARKER: i16 = 12_345;

/// Python's `random.Random(seed)` for an integer seed below 2^32: MT19937 seeded by
/// `init_by_array([seed])`, and `randrange(n)` by rejection on `getrandbits(bit_length(n))`.
struct PyRandom {
    mt: [u32; 624],
    index: usize,
}

impl PyRandom {
    fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = 19_650_218;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624.max(key.len()) {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        Self { mt, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `randrange(n)` for `0 < n < 2^32`.
    fn randrange(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.next_u32() >> (32 - k);
            if r < n {
                return r;
            }
        }
    }
}

/// The start offset (samples) of session `i`'s loop, as the Python script draws it.
fn session_offset(i: usize, wav_len: usize) -> usize {
    let seed = (SEED * 1_000_003 + i as u64) as u32;
    PyRandom::new(seed).randrange(wav_len as u32) as usize
}

/// Ground-truth speech ends (sample indices) by 10 ms frame energy (see the module docs).
fn speech_ends(samples: &[i16], rate: u32) -> Vec<usize> {
    let hop = (rate / 100) as usize;
    let rms: Vec<f64> = samples
        .chunks_exact(hop)
        .map(|c| (c.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / hop as f64).sqrt())
        .collect();
    if rms.is_empty() {
        return Vec::new();
    }
    let mut sorted = rms.clone();
    sorted.sort_by(f64::total_cmp);
    let threshold = (3.0 * sorted[sorted.len() / 10]).max(60.0);
    let mut segments: Vec<(usize, usize)> = Vec::new();
    let mut on = None;
    for (i, &v) in rms.iter().enumerate() {
        match on {
            None if v > threshold => on = Some(i),
            Some(start) if v <= threshold => {
                segments.push((start, i));
                on = None;
            }
            _ => {}
        }
    }
    if let Some(start) = on {
        segments.push((start, rms.len()));
    }
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for s in segments {
        match merged.last_mut() {
            Some(last) if ((s.0 - last.1) as f64) * 0.01 < STT_MIN_SILENCE => last.1 = s.1,
            _ => merged.push(s),
        }
    }
    merged
        .into_iter()
        .filter(|(s, e)| ((e - s) as f64) * 0.01 >= 0.1)
        .map(|(_, e)| e * hop)
        .collect()
}

/// A session's audio position (samples since its first frame) against the looped WAV.
#[derive(Clone)]
struct Timeline {
    wav_len: usize,
    ends: Arc<Vec<usize>>,
    offset: usize,
}

impl Timeline {
    /// Positions `p` of ground-truth speech ends with `p0 < p <= p1`.
    fn ends_in(&self, p0: usize, p1: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let first_loop = (p0 + self.offset) / self.wav_len;
        let last_loop = (p1 + self.offset) / self.wav_len;
        for k in first_loop.saturating_sub(1)..=last_loop + 1 {
            for &e in self.ends.iter() {
                let Some(p) = (k * self.wav_len + e).checked_sub(self.offset) else {
                    continue;
                };
                if p0 < p && p <= p1 {
                    out.push(p);
                }
            }
        }
        out.sort_unstable();
        out
    }
}

/// Per-session event times (tokio's clock), like the Python script's `Probe`.
#[derive(Default)]
struct Probe {
    vad_eos: Vec<Instant>,
    stt_final: Vec<Instant>,
    commit: Vec<Instant>,
    llm_req: Vec<Instant>,
    llm_first: Vec<Instant>,
    tts_text: Vec<Instant>,
    tts_audio: Vec<Instant>,
    out_first: Vec<Instant>,
}

type SharedProbe = Arc<Mutex<Probe>>;

fn lock(p: &SharedProbe) -> std::sync::MutexGuard<'_, Probe> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

struct RefStt {
    probe: SharedProbe,
    timeline: Timeline,
}

#[async_trait]
impl Stt for RefStt {
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
            RefSttTask {
                probe: self.probe.clone(),
                timeline: self.timeline.clone(),
            },
        ))
    }
}

struct RefSttTask {
    probe: SharedProbe,
    timeline: Timeline,
}

#[async_trait]
impl SttStreamTask for RefSttTask {
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        let mut due: std::collections::VecDeque<Instant> = Default::default();
        let mut position = 0usize;
        let mut segment = 0usize;
        loop {
            let deadline = due.front().copied();
            tokio::select! {
                item = input.recv() => match item {
                    None => return Ok(()),
                    Some(SttInput::Frame(frame)) => {
                        let end = position + frame.samples_per_channel;
                        let rate = f64::from(frame.sample_rate.max(1));
                        for e in self.timeline.ends_in(position, end) {
                            // Heard at the frame's end; the speech ended (end - e) samples earlier.
                            let delay = (STT_DELAY - (end - e) as f64 / rate).max(0.0);
                            due.push_back(Instant::now() + Duration::from_secs_f64(delay));
                        }
                        position = end;
                    }
                    Some(SttInput::Flush) => {}
                },
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    due.pop_front();
                    segment += 1;
                    lock(&self.probe).stt_final.push(Instant::now());
                    let data = SpeechData {
                        language: "en".into(),
                        text: format!("this is user segment number {segment}"),
                        confidence: 1.0,
                        ..Default::default()
                    };
                    let event = SpeechEvent::transcript(SpeechEventType::FinalTranscript, data);
                    if !events.send(event).await {
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

struct RefLlm {
    probe: SharedProbe,
}

impl Llm for RefLlm {
    fn label(&self) -> String {
        "bench.LLM".into()
    }
    fn model(&self) -> String {
        "bench-llm".into()
    }
    fn provider(&self) -> String {
        "bench".into()
    }
    fn chat(&self, request: ChatRequest) -> LlmStream {
        LlmStream::spawn(
            "bench.LLM",
            request.conn,
            RefLlmTask {
                probe: self.probe.clone(),
            },
        )
    }
}

struct RefLlmTask {
    probe: SharedProbe,
}

#[async_trait]
impl LlmStreamTask for RefLlmTask {
    async fn run(&mut self, out: &ChunkSender) -> Result<(), ApiError> {
        lock(&self.probe).llm_req.push(Instant::now());
        tokio::time::sleep(LLM_TTFT).await;
        for (i, word) in REPLY.split(' ').enumerate() {
            if i > 0 {
                tokio::time::sleep(LLM_TOKEN_INTERVAL).await;
            }
            let token = if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            };
            if !out.send(ChatChunk::text("bench", token)).await {
                return Ok(());
            }
            if i == 0 {
                lock(&self.probe).llm_first.push(Instant::now());
            }
        }
        Ok(())
    }
}

struct RefTts {
    probe: SharedProbe,
}

#[async_trait]
impl Tts for RefTts {
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
        TTS_RATE
    }
    fn synthesize(&self, _text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        // Streaming only, as the script's fake; a chunked request gets no audio.
        ChunkedStream::spawn("bench.TTS", conn, TTS_RATE, 1, NoAudio)
    }
    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        Ok(SynthesizeStream::spawn(
            "bench.TTS",
            conn,
            TTS_RATE,
            1,
            RefTtsTask {
                probe: self.probe.clone(),
            },
        ))
    }
}

struct NoAudio;

#[async_trait]
impl livekit_agents::tts::ChunkedTtsTask for NoAudio {
    async fn run(&mut self, _emitter: &AudioEmitter) -> Result<(), ApiError> {
        Ok(())
    }
}

struct RefTtsTask {
    probe: SharedProbe,
}

#[async_trait]
impl TtsStreamTask for RefTtsTask {
    async fn run(
        &mut self,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError> {
        let mut in_segment = false;
        let mut first_audio = false;
        let mut frac = 0.0f64;
        let zeros = vec![0i16; TTS_RATE as usize];
        while let Some(item) = input.recv().await {
            match item {
                TtsInput::Text(text) => {
                    if text.is_empty() {
                        continue;
                    }
                    if !in_segment {
                        in_segment = true;
                        first_audio = true;
                        lock(&self.probe).tts_text.push(Instant::now());
                        emitter.start_segment("bench");
                        tokio::time::sleep(TTS_TTFB).await;
                        lock(&self.probe).tts_audio.push(Instant::now());
                    }
                    let samples = text.len() as f64 * TTS_SEC_PER_CHAR * f64::from(TTS_RATE) + frac;
                    let mut n = samples as usize;
                    frac = samples - n as f64;
                    while n > 0 {
                        let k = n.min(zeros.len());
                        let ok = if first_audio {
                            first_audio = false;
                            let mut chunk = zeros[..k].to_vec();
                            chunk[0] = REPLY_MARKER;
                            emitter.push_samples(&chunk).await
                        } else {
                            emitter.push_samples(&zeros[..k]).await
                        };
                        if !ok {
                            return Ok(());
                        }
                        n -= k;
                    }
                }
                TtsInput::Flush => {
                    if in_segment {
                        in_segment = false;
                        frac = 0.0;
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

/// Records the commit (D): `on_user_turn_completed`, as the script's agent does.
struct RefAgent {
    probe: SharedProbe,
}

#[async_trait]
impl AgentBehavior for RefAgent {
    async fn on_user_turn_completed(
        &self,
        _ctx: AgentContext,
        _turn_ctx: &mut ChatContext,
        _new_message: &mut ChatMessage,
    ) -> Result<(), StopResponse> {
        lock(&self.probe).commit.push(Instant::now());
        Ok(())
    }
}

/// One run of the scenario (the keys follow the Python script's JSON where they exist).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RefResult {
    implementation: String,
    sessions: usize,
    window_s: f64,
    cpu_s: f64,
    cpu_s_per_session_min: f64,
    cpu_cores_used: f64,
    rss_mb_after_start: f64,
    rss_mb_window_end: f64,
    turns: usize,
    /// p50, p95, p99 (ms).
    latency_ms: [f64; 3],
    endpointing_ms: [f64; 3],
    overhead_ms: [f64; 3],
    /// Leg name and p50, p95 (ms).
    legs_ms: Vec<(String, [f64; 2])>,
    feeder_lag_p99_ms: f64,
    batching: bool,
    load_start: String,
    load_end: String,
}

/// Entry point (parent process): runs the scenario, and the Python script when asked.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let wav = args.input.clone().context(
        "--scenario reference needs --input <the reference WAV> (shared/reference/python-bench/speech16k.wav)",
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let rust = runtime.block_on(run_scenario(args, &wav))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut results = vec![rust];
    if let Some(python) = &args.python {
        let script = args
            .python_script
            .clone()
            .context("--python needs --python-script <python_sessions_bench.py>")?;
        results.push(run_python(args, python, &script, &wav)?);
    }
    print_results(&results);
    println!(
        "{}",
        serde_json::json!({"bench": "sessions-reference", "runs": results})
    );
    Ok(())
}

fn run_python(
    args: &BenchArgs,
    python: &Path,
    script: &Path,
    wav: &Path,
) -> anyhow::Result<RefResult> {
    eprintln!(
        "running the Python reference script ({} sessions)...",
        args.sessions
    );
    let load_start = super::load_average();
    let output = Command::new(python)
        .arg(script)
        .args(["inproc", "--wav"])
        .arg(wav)
        .arg("--sessions")
        .arg(args.sessions.to_string())
        .arg("--duration")
        .arg(args.seconds.to_string())
        .arg("--warmup")
        .arg(args.warmup.to_string())
        .output()
        .context("cannot run the Python script")?;
    if !output.status.success() {
        bail!(
            "the Python script failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("the Python script printed no JSON line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let f = |path: &[&str]| -> f64 {
        let mut cur = &v;
        for key in path {
            cur = &cur[*key];
        }
        cur.as_f64().unwrap_or(f64::NAN)
    };
    let three = |key: &str| [f(&[key, "p50"]), f(&[key, "p95"]), f(&[key, "p99"])];
    let legs = v["legs_ms"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, d)| {
                    (
                        k.split(' ').next().unwrap_or(k).to_owned(),
                        [
                            d["p50"].as_f64().unwrap_or(f64::NAN),
                            d["p95"].as_f64().unwrap_or(f64::NAN),
                        ],
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(RefResult {
        implementation: "python livekit-agents 1.8.9".into(),
        sessions: args.sessions,
        window_s: f(&["window_s"]),
        cpu_s: f(&["cpu_s"]),
        cpu_s_per_session_min: f(&["cpu_s_per_session_min"]),
        cpu_cores_used: f(&["cpu_cores_used"]),
        rss_mb_after_start: f(&["mem_mb", "after_sessions_started"]),
        rss_mb_window_end: f(&["mem_mb", "window_end"]),
        turns: v["turns"].as_u64().unwrap_or(0) as usize,
        latency_ms: three("latency_ms"),
        endpointing_ms: three("endpointing_ms"),
        overhead_ms: three("overhead_ms"),
        legs_ms: legs,
        feeder_lag_p99_ms: f(&["feeder_lag_ms", "p99"]),
        batching: false,
        load_start,
        load_end: super::load_average(),
    })
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn run_scenario(args: &BenchArgs, wav: &Path) -> anyhow::Result<RefResult> {
    let n = args.sessions.max(1);
    let audio = livekit_agents::audio::wav::read_wav_file(wav)
        .with_context(|| format!("cannot read {}", wav.display()))?;
    let mono = audio.downmix_to_mono();
    let rate = mono.sample_rate;
    let pcm: Arc<Vec<i16>> = Arc::new(mono.data.iter().chain(&mono.data).copied().collect());
    let wav_len = mono.data.len();
    let frame_samples = (rate as usize) * FRAME_MS as usize / 1000;
    if wav_len < frame_samples {
        bail!("{}: shorter than one frame", wav.display());
    }
    let ends = Arc::new(speech_ends(&mono.data, rate));
    let vad = SileroVad::load(VadOptions {
        batching: if args.no_batching {
            BatchOptions::disabled()
        } else {
            BatchOptions::default()
        },
        ..VadOptions::default()
    })
    .context("load Silero (run `cargo xtask download-files` first)")?;

    let mut options = SessionOptions::default();
    options.turn_handling.turn_detection = TurnDetection::Vad;
    options.turn_handling.preemptive_generation =
        PreemptiveGenerationOptions::default().with_enabled(false);
    options.aec_warmup_duration = livekit_agents::voice::AecWarmup::Off;

    let mut probes = Vec::with_capacity(n);
    let mut timelines = Vec::with_capacity(n);
    let mut senders: Vec<AudioInputSender> = Vec::with_capacity(n);
    let mut sessions = Vec::with_capacity(n);
    let mut watchers = Vec::with_capacity(n);
    for i in 0..n {
        let probe: SharedProbe = Arc::default();
        let timeline = Timeline {
            wav_len,
            ends: ends.clone(),
            offset: session_offset(i, wav_len),
        };
        let (sender, audio_input) = audio_input_channel();
        let session = AgentSession::builder()
            .options(options.clone())
            .vad(Arc::new(vad.clone()))
            .stt(Arc::new(RefStt {
                probe: probe.clone(),
                timeline: timeline.clone(),
            }))
            .llm(Arc::new(RefLlm {
                probe: probe.clone(),
            }))
            .tts(Arc::new(RefTts {
                probe: probe.clone(),
            }))
            .build();
        let sink_probe = probe.clone();
        let output = PacedAudioOutput::bounded(
            format!("bench-{i}"),
            Some(TTS_RATE),
            OUTPUT_QUEUE,
            move |frame: &AudioFrame| {
                if frame.data.first() == Some(&REPLY_MARKER) {
                    lock(&sink_probe).out_first.push(Instant::now());
                }
            },
        );
        // B: the user's state leaving `speaking` (the script's `user_state_changed` callback).
        let mut events = session.events();
        let event_probe = probe.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let Ok(SessionEvent::UserStateChanged { old_state, .. }) = ev {
                    if old_state == UserState::Speaking {
                        lock(&event_probe).vad_eos.push(Instant::now());
                    }
                }
            }
        }));
        let agent = Agent::builder()
            .instructions("You are a helpful voice assistant.")
            .behavior(RefAgent {
                probe: probe.clone(),
            })
            .build();
        session
            .start(
                agent,
                SessionIo {
                    audio_input: Some(audio_input),
                    audio_output: Some(Arc::new(output)),
                    text_output: None,
                },
            )
            .await
            .with_context(|| format!("session {i} did not start"))?;
        probes.push(probe);
        timelines.push(timeline);
        senders.push(sender);
        sessions.push(session);
    }
    let rss_after_start = rss_mb();

    // Session i gets frame k at t0_i + (k + 1) * 50 ms, t0_i spread over the frame period.
    let base = Instant::now() + Duration::from_millis(100);
    let phase_ms: Vec<u64> = (0..n).map(|i| (i as u64 * FRAME_MS) / n as u64).collect();
    let t0: Vec<Instant> = phase_ms
        .iter()
        .map(|&p| base + Duration::from_millis(p))
        .collect();
    let mut by_phase: Vec<Vec<usize>> = vec![Vec::new(); FRAME_MS as usize];
    for (i, &p) in phase_ms.iter().enumerate() {
        by_phase[p as usize].push(i);
    }
    let warmup = Duration::from_secs(args.warmup);
    let window = Duration::from_secs(args.seconds);
    let total = warmup + window + Duration::from_secs(1);
    let w0 = base + warmup;
    let w1 = w0 + window;
    let mut measuring = false;
    let mut cpu0 = 0.0;
    let mut wall0 = std::time::Instant::now();
    let mut load_start = String::new();
    let mut feeder_lag = Vec::new();
    let mut cpu = 0.0;
    let mut wall = 0.0;
    let mut rss_window_end = 0.0;
    let mut load_end = String::new();
    eprintln!(
        "  {n} sessions started (RSS {rss_after_start:.1} MB); warm-up {} s, window {} s",
        args.warmup, args.seconds
    );
    let slots = total.as_millis() as usize;
    for t in 0..slots {
        let at = base + Duration::from_millis(t as u64);
        let phase = t % FRAME_MS as usize;
        let boundary = (!measuring && at >= w0) || (measuring && at >= w1 && wall == 0.0);
        if by_phase[phase].is_empty() && !boundary {
            continue; // no session gets a frame in this millisecond
        }
        if boundary {
            tokio::time::sleep_until(at).await;
        }
        if !measuring && at >= w0 {
            measuring = true;
            load_start = super::load_average();
            cpu0 = process_cpu_seconds().unwrap_or(0.0);
            wall0 = std::time::Instant::now();
        } else if measuring && at >= w1 && wall == 0.0 {
            cpu = process_cpu_seconds().unwrap_or(0.0) - cpu0;
            wall = wall0.elapsed().as_secs_f64();
            rss_window_end = rss_mb();
            load_end = super::load_average();
        }
        tokio::time::sleep_until(at).await;
        let now = Instant::now();
        let k_all = t / FRAME_MS as usize; // frames already due, per phase group
        if measuring && wall == 0.0 {
            feeder_lag.push(now.saturating_duration_since(at).as_secs_f64() * 1e3);
        }
        for &i in &by_phase[phase] {
            // Frame k (0-based) of session i is due at t0_i + (k + 1) * 50 ms.
            let Some(k) = k_all.checked_sub(1) else {
                continue;
            };
            let start = (timelines[i].offset + k * frame_samples) % wav_len;
            let data = pcm[start..start + frame_samples].to_vec();
            if let Ok(f) = AudioFrame::new(data, rate, 1) {
                senders[i].send(f);
            }
        }
    }
    if wall == 0.0 {
        cpu = process_cpu_seconds().unwrap_or(0.0) - cpu0;
        wall = wall0.elapsed().as_secs_f64();
        rss_window_end = rss_mb();
        load_end = super::load_average();
    }

    // Turns whose first reply frame fell in the window, as the script's `analyse_turns`.
    let mut latency = Vec::new();
    let mut endpointing = Vec::new();
    let mut overhead = Vec::new();
    let leg_names = [
        "A->B", "A->C", "B->D", "D->E", "E->E1", "E1->F", "F->G", "G->H",
    ];
    let mut legs: Vec<Vec<f64>> = vec![Vec::new(); leg_names.len()];
    let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e3;
    for ((probe, timeline), &t0) in probes.iter().zip(&timelines).zip(&t0) {
        let p = lock(probe);
        // Last time in `xs` at or before `t` and at or after `lo`.
        let last_le = |xs: &[Instant], t: Instant, lo: Instant| -> Option<Instant> {
            xs.iter()
                .rev()
                .find(|&&x| x <= t)
                .filter(|&&x| x >= lo)
                .copied()
        };
        for &h in &p.out_first {
            if h < w0 || h > w1 {
                continue;
            }
            let Some(d) = last_le(
                &p.commit,
                h,
                h.checked_sub(Duration::from_secs(10)).unwrap_or(t0),
            ) else {
                continue;
            };
            // A: the last ground-truth speech end at or before D.
            let pos = (d.saturating_duration_since(t0).as_secs_f64() * f64::from(rate)) as usize;
            let Some(&a_pos) = timeline
                .ends_in(pos.saturating_sub(2 * wav_len), pos)
                .last()
            else {
                continue;
            };
            let a = t0 + Duration::from_secs_f64(a_pos as f64 / f64::from(rate));
            // B: the first end of speech after A. (The event is recorded by a task reading
            // the session's events, which may run just after the commit's hook: "at or before
            // D", as the script's synchronous callback allows, would miss it.)
            let b = p.vad_eos.iter().copied().find(|&x| x >= a && x <= h);
            let c = last_le(&p.stt_final, d, a);
            let e = last_le(&p.llm_req, h, a);
            let e1 = last_le(&p.llm_first, h, a);
            let f = last_le(&p.tts_text, h, a);
            let g = last_le(&p.tts_audio, h, a);
            latency.push(secs(a, h));
            endpointing.push(secs(a, d));
            overhead.push(secs(d, h) - (LLM_TTFT + TTS_TTFB).as_secs_f64() * 1e3);
            let pairs = [
                (Some(a), b),
                (Some(a), c),
                (b, Some(d)),
                (Some(d), e),
                (e, e1),
                (e1, f),
                (f, g),
                (g, Some(h)),
            ];
            for (all, (from, to)) in legs.iter_mut().zip(pairs) {
                if let (Some(from), Some(to)) = (from, to) {
                    all.push(secs(from, to));
                }
            }
        }
    }
    drop(sessions);
    for w in watchers {
        w.abort();
    }
    for v in [
        &mut latency,
        &mut endpointing,
        &mut overhead,
        &mut feeder_lag,
    ]
    .into_iter()
    .chain(legs.iter_mut())
    {
        v.sort_by(f64::total_cmp);
    }
    let three = |v: &[f64]| [quantile(v, 0.5), quantile(v, 0.95), quantile(v, 0.99)];
    let window_s = window.as_secs_f64();
    Ok(RefResult {
        implementation: "rust livekit-agents".into(),
        sessions: n,
        window_s,
        cpu_s: cpu,
        cpu_s_per_session_min: cpu / window_s * 60.0 / n as f64,
        cpu_cores_used: cpu / wall.max(1e-9),
        rss_mb_after_start: rss_after_start,
        rss_mb_window_end: rss_window_end,
        turns: latency.len(),
        latency_ms: three(&latency),
        endpointing_ms: three(&endpointing),
        overhead_ms: three(&overhead),
        legs_ms: leg_names
            .iter()
            .zip(&legs)
            .map(|(name, v)| ((*name).to_owned(), [quantile(v, 0.5), quantile(v, 0.95)]))
            .collect(),
        feeder_lag_p99_ms: quantile(&feeder_lag, 0.99),
        batching: !args.no_batching,
        load_start,
        load_end,
    })
}

fn print_results(results: &[RefResult]) {
    println!(
        "\n{:<28} {:>4} {:>9} {:>6} {:>6} {:>20} {:>14} {:>20} {:>9}",
        "implementation",
        "N",
        "CPU s/min",
        "cores",
        "turns",
        "latency p50/95/99",
        "endpt p50/95",
        "overhead p50/95/99",
        "RSS MB"
    );
    for r in results {
        println!(
            "{:<28} {:>4} {:>9.3} {:>6.2} {:>6} {:>20} {:>14} {:>20} {:>9.1}",
            r.implementation,
            r.sessions,
            r.cpu_s_per_session_min,
            r.cpu_cores_used,
            r.turns,
            format!(
                "{:.0}/{:.0}/{:.0}",
                r.latency_ms[0], r.latency_ms[1], r.latency_ms[2]
            ),
            format!("{:.0}/{:.0}", r.endpointing_ms[0], r.endpointing_ms[1]),
            format!(
                "{:.2}/{:.2}/{:.2}",
                r.overhead_ms[0], r.overhead_ms[1], r.overhead_ms[2]
            ),
            r.rss_mb_window_end,
        );
    }
    for r in results {
        let legs: Vec<String> = r
            .legs_ms
            .iter()
            .map(|(k, v)| format!("{k} {:.1}/{:.1}", v[0], v[1]))
            .collect();
        println!(
            "  {} legs p50/p95 ms: {}; feeder lag p99 {:.2} ms; load average {} -> {}",
            r.implementation,
            legs.join(", "),
            r.feeder_lag_p99_ms,
            r.load_start,
            r.load_end
        );
    }
    if let [rust, python, ..] = results {
        println!(
            "\nratios python / rust: CPU per session-minute {:.1}x, overhead p50 {:.1}x, overhead p99 {:.1}x, latency p50 {:+.1} ms (python - rust)",
            python.cpu_s_per_session_min / rust.cpu_s_per_session_min,
            python.overhead_ms[0] / rust.overhead_ms[0],
            python.overhead_ms[2] / rust.overhead_ms[2],
            python.latency_ms[0] - rust.latency_ms[0],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets are Python's: `random.Random(1000003 + i).randrange(427813)` printed
    /// 270469, 260838, 144045, 180124, 406260 for i = 0..5 (CPython 3.11).
    #[test]
    fn offsets_match_python_random() {
        let got: Vec<usize> = (0..5).map(|i| session_offset(i, 427_813)).collect();
        assert_eq!(got, [270_469, 260_838, 144_045, 180_124, 406_260]);
        assert_eq!(session_offset(59, 427_813), 366_739);
        assert_eq!(session_offset(99, 427_813), 347_465);
    }

    #[test]
    fn timeline_finds_ends_across_the_loop_point() {
        let t = Timeline {
            wav_len: 1000,
            ends: Arc::new(vec![100, 900]),
            offset: 850,
        };
        // Position p is WAV sample (p + 850) % 1000: end 900 at p = 50, end 100 at p = 250.
        assert_eq!(t.ends_in(0, 300), vec![50, 250]);
        assert_eq!(t.ends_in(50, 1050), vec![250, 1050]);
    }
}
