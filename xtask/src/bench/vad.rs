//! `cargo xtask bench vad`: Silero VAD cost.
//!
//! 1. Inference: µs per 32 ms window (median, p99), one thread, the model alone.
//! 2. One stream: the whole `VadStream` path (20 ms frames in, events out, the stream task)
//!    over the input, CPU seconds per audio second and real-time factor, compared with the
//!    Python plugin's measured cost on the same file.
//! 3. Many streams at once: throughput, and the number of 16 kHz streams one core sustains.
//! 4. Batched inference (`LoadedModel::infer_batch`): thread CPU per window at batch sizes 1, 4,
//!    8, 16 and 32, the sizes interleaved round by round so a machine whose load changes during
//!    the run affects every size alike.
//! 5. Allocations per 20 ms frame in one stream's steady state (a counting global allocator):
//!    the whole `VadStream` path, the model call alone, and the resampler.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use livekit_agents::audio::AudioFrame;
use livekit_agents::vad::Vad as _;
use livekit_plugins_silero::{
    BatchOptions, LoadedModel, ModelSampleRate, SileroVad, SpeechProbability, VadOptions,
};

use super::{process_cpu_seconds, quantile, BenchArgs};

/// Python `livekit-plugins-silero` 1.8.9: stream CPU on the default input (11.435 s), as
/// measured in docs (0.134-0.146 s; the task statement quotes 0.33 s on 27 s of speech, the
/// same 0.012 s per audio second).
const PYTHON_CPU_PER_AUDIO_SECOND: f64 = 0.33 / 27.0;

/// CPU time of the calling thread, ns (Linux `/proc/thread-self/schedstat`: time on a CPU, so
/// time spent preempted by other processes is not counted).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// CPU time of every live thread of this process, seconds (schedstat, ns resolution), falling
/// back to `/proc/self/stat` (1/100 s resolution).
fn process_cpu() -> Option<f64> {
    let mut total = 0u64;
    let mut any = false;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            total += ns;
            any = true;
        }
    }
    if any {
        Some(total as f64 / 1e9)
    } else {
        process_cpu_seconds()
    }
}

fn default_input() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/silero/testdata/speech_16k.wav")
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let path = args.input.clone().unwrap_or_else(default_input);
    let audio = livekit_agents::audio::wav::read_wav_file(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if audio.is_empty() {
        bail!("{}: no audio", path.display());
    }
    let seconds = audio.duration_secs();
    println!(
        "input: {} ({:.3} s, {} Hz, {} ch), {} passes",
        path.display(),
        seconds,
        audio.sample_rate,
        audio.num_channels,
        args.passes
    );

    let load_started = Instant::now();
    let model = LoadedModel::load(None, 1)
        .context("load the model (run `cargo xtask download-files` first)")?;
    println!(
        "model + runtime load: {:.1} ms (ONNX Runtime from {})",
        load_started.elapsed().as_secs_f64() * 1e3,
        livekit_agents_onnx::loaded_runtime_path().unwrap_or("?")
    );

    println!("load average at start: {}", super::load_average());
    inference_only(&model, &audio, args.passes)?;
    batched_inference(&model, &audio, args.passes)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let vad = SileroVad::load(VadOptions {
        batching: if args.no_batching {
            BatchOptions::disabled()
        } else {
            BatchOptions::default()
        },
        ..VadOptions::default()
    })?;
    runtime.block_on(one_stream(&vad, &audio, args.passes))?;
    runtime.block_on(many_streams(&vad, &audio, args.streams))?;
    allocations(&model, &audio)?;
    python_reference(&path, args.passes);
    println!("\nload average at end: {}", super::load_average());
    Ok(())
}

/// Allocations per 20 ms frame in steady state, counted on one thread (a current-thread
/// runtime): one stream fed frame by frame with its events read as they come, then the model
/// call alone, then the 48 -> 16 kHz resampler.
fn allocations(model: &LoadedModel, audio: &AudioFrame) -> anyhow::Result<()> {
    use super::alloc_count::Counting;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mono = audio.downmix_to_mono();
    let mono = if mono.sample_rate == 16_000 {
        mono
    } else {
        livekit_agents::audio::resample::resample_frame(&mono, 16_000)?
    };
    let frames: Vec<AudioFrame> = mono
        .data
        .chunks_exact(320)
        .map(|c| AudioFrame::new(c.to_vec(), 16_000, 1))
        .collect::<Result<_, _>>()?;
    println!("\n[allocations per 20 ms frame, steady state, one thread]");
    for (label, batching) in [
        ("VadStream, batching off", BatchOptions::disabled()),
        ("VadStream, batching on (alone)", BatchOptions::default()),
    ] {
        let vad = SileroVad::load(VadOptions {
            batching,
            ..VadOptions::default()
        })?;
        let (counts, n) = runtime.block_on(async {
            let mut stream = vad.stream();
            let warm = frames.len().min(100);
            let mut counts = None;
            for (i, frame) in frames.iter().enumerate() {
                // The frame as it arrives from a track reader: a fresh buffer (not counted,
                // the transport allocates it), then everything the VAD does with it.
                let frame = frame.clone();
                Counting::start();
                stream.push_frame(frame);
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                while let Some(Some(_event)) = futures_now(&mut stream) {}
                let c = Counting::stop();
                if i >= warm {
                    counts = Some(add(counts, c));
                }
            }
            (counts.unwrap_or_default(), frames.len() - warm)
        });
        let n = n.max(1) as f64;
        println!(
            "  {label:<34} {:>6.2} allocations, {:>7.0} bytes per frame",
            counts.allocations as f64 / n,
            counts.bytes as f64 / n
        );
    }
    // The model call alone (0.625 calls per 20 ms frame without batching).
    let rate = ModelSampleRate::Hz16000;
    for batch in [1usize, 16] {
        let input = vec![0.01f32; batch * (rate.context_samples() + rate.window_samples())];
        let mut state = vec![0.0f32; batch * 256];
        let mut probabilities = vec![0.0f32; batch];
        model.infer_batch(rate, batch, &input, &mut state, &mut probabilities)?;
        let calls = 200;
        Counting::start();
        for _ in 0..calls {
            model.infer_batch(rate, batch, &input, &mut state, &mut probabilities)?;
        }
        let c = Counting::stop();
        println!(
            "  {:<34} {:>6.2} allocations, {:>7.0} bytes per call (batch {batch}; Rust side only: ONNX Runtime's own C++ allocations do not pass through this allocator)",
            "model call (infer_batch)",
            c.allocations as f64 / calls as f64,
            c.bytes as f64 / calls as f64
        );
    }
    let mut resampler = livekit_agents::audio::resample::Resampler::new(48_000, 16_000, 1)?;
    let frame48 = AudioFrame::sine(440.0, 0.5, 48_000, 1, 960);
    for _ in 0..50 {
        resampler.push(&frame48)?;
    }
    let pushes = 500;
    Counting::start();
    for _ in 0..pushes {
        resampler.push(&frame48)?;
    }
    let c = Counting::stop();
    println!(
        "  {:<34} {:>6.2} allocations, {:>7.0} bytes per frame",
        "Resampler::push 48 -> 16 kHz",
        c.allocations as f64 / pushes as f64,
        c.bytes as f64 / pushes as f64
    );
    Ok(())
}

fn add(
    a: Option<super::alloc_count::Counts>,
    b: super::alloc_count::Counts,
) -> super::alloc_count::Counts {
    let a = a.unwrap_or_default();
    super::alloc_count::Counts {
        allocations: a.allocations + b.allocations,
        bytes: a.bytes + b.bytes,
    }
}

/// The next event if one is ready now.
fn futures_now(
    stream: &mut livekit_agents::vad::VadStream,
) -> Option<Option<livekit_agents::vad::VadEvent>> {
    use futures::FutureExt as _;
    futures::StreamExt::next(stream).now_or_never()
}

/// Thread CPU per window of batched inference at several batch sizes. Each round runs every
/// size over the same number of windows (the input's windows, split among the batch's rows as
/// independent streams with their own state), in a rotating order.
fn batched_inference(model: &LoadedModel, audio: &AudioFrame, passes: usize) -> anyhow::Result<()> {
    const SIZES: [usize; 5] = [1, 4, 8, 16, 32];
    let rate = ModelSampleRate::Hz16000;
    let row = rate.context_samples() + rate.window_samples();
    let windows = windows_16k(audio)?;
    // Per size: CPU ns and wall ns over all rounds, windows run.
    let mut cpu_ns = [0u64; SIZES.len()];
    let mut wall_ns = [0u128; SIZES.len()];
    let mut counted = [0usize; SIZES.len()];
    let mut per_call_wall: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
    let run_size = |batch: usize,
                    cpu: &mut u64,
                    wall: &mut u128,
                    count: &mut usize,
                    calls: &mut Vec<f64>|
     -> anyhow::Result<()> {
        let mut input = vec![0.0f32; batch * row];
        let mut state = vec![0.0f32; batch * 256];
        let mut probabilities = vec![0.0f32; batch];
        // Row r reads the windows r, r + batch, r + 2 * batch, ... (its own stream).
        for chunk in windows.chunks_exact(batch) {
            for (r, w) in chunk.iter().enumerate() {
                let dst = &mut input[r * row..(r + 1) * row];
                dst.copy_within(row - 64.., 0);
                dst[64..].copy_from_slice(w);
            }
            let cpu0 = thread_cpu_ns();
            let started = Instant::now();
            model.infer_batch(rate, batch, &input, &mut state, &mut probabilities)?;
            let elapsed = started.elapsed();
            if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
                *cpu += b - a;
            }
            *wall += elapsed.as_nanos();
            calls.push(elapsed.as_secs_f64() * 1e6);
            *count += batch;
        }
        Ok(())
    };
    // Warm-up: one round of every size (first runs of a shape allocate).
    for &batch in &SIZES {
        run_size(batch, &mut 0, &mut 0, &mut 0, &mut Vec::new())?;
    }
    let rounds = passes.max(1);
    for round in 0..rounds {
        for k in 0..SIZES.len() {
            let i = (k + round) % SIZES.len();
            run_size(
                SIZES[i],
                &mut cpu_ns[i],
                &mut wall_ns[i],
                &mut counted[i],
                &mut per_call_wall[i],
            )?;
        }
    }
    println!(
        "\n[batched inference, 1 thread, {rounds} interleaved rounds of {} windows per size]",
        windows.len()
    );
    println!(
        "  {:>5} {:>16} {:>17} {:>15} {:>20}",
        "batch", "CPU µs / window", "wall µs / window", "vs batch 1", "wall µs / call p50/p99"
    );
    let base = cpu_ns[0] as f64 / counted[0].max(1) as f64;
    for (i, &batch) in SIZES.iter().enumerate() {
        let cpu = cpu_ns[i] as f64 / counted[i].max(1) as f64 / 1e3;
        let wall = wall_ns[i] as f64 / counted[i].max(1) as f64 / 1e3;
        per_call_wall[i].sort_by(f64::total_cmp);
        println!(
            "  {batch:>5} {cpu:>16.1} {wall:>17.1} {:>14.2}x {:>9.0} / {:<9.0}",
            cpu * 1e3 / base,
            quantile(&per_call_wall[i], 0.5),
            quantile(&per_call_wall[i], 0.99)
        );
    }
    println!(
        "  (CPU: the thread's schedstat time, so time preempted by other processes is not counted)"
    );
    Ok(())
}

/// With `SILERO_BENCH_PYTHON=<python with livekit-plugins-silero>`, measures the Python plugin
/// on the same file right after us, so the comparison holds on a busy machine too.
fn python_reference(path: &std::path::Path, passes: usize) {
    let Some(python) = std::env::var_os("SILERO_BENCH_PYTHON") else {
        println!(
            "\n(set SILERO_BENCH_PYTHON=<venv>/bin/python, with livekit-plugins-silero installed, to measure the Python plugin on this machine now)"
        );
        return;
    };
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/silero/testdata/python_cpu.py");
    println!("\n[Python livekit-plugins-silero, same file, same machine, now]");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(path)
        .arg(passes.to_string())
        .output();
    match output {
        Ok(out) if out.status.success() => print!("  {}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!(
            "  failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(err) => println!("  cannot run python: {err}"),
    }
}

/// 16 kHz mono windows of the input (resampled/down-mixed the way the VAD does).
fn windows_16k(audio: &AudioFrame) -> anyhow::Result<Vec<Vec<f32>>> {
    let mono = audio.downmix_to_mono();
    let mono = if mono.sample_rate == 16_000 {
        mono
    } else {
        livekit_agents::audio::resample::resample_frame(&mono, 16_000)?
    };
    Ok(mono
        .data
        .chunks_exact(512)
        .map(|w| w.iter().map(|&s| f32::from(s) / 32767.0).collect())
        .collect())
}

fn inference_only(model: &LoadedModel, audio: &AudioFrame, passes: usize) -> anyhow::Result<()> {
    let windows = windows_16k(audio)?;
    let mut runner = model.runner(ModelSampleRate::Hz16000);
    // Warm-up pass (first inferences allocate).
    for w in &windows {
        runner.probability(w)?;
    }
    let mut micros = Vec::with_capacity(windows.len() * passes);
    let mut cpu_micros = Vec::with_capacity(windows.len() * passes);
    for _ in 0..passes {
        runner.reset();
        for w in &windows {
            let cpu0 = thread_cpu_ns();
            let started = Instant::now();
            runner.probability(w)?;
            micros.push(started.elapsed().as_secs_f64() * 1e6);
            if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
                cpu_micros.push((b - a) as f64 / 1e3);
            }
        }
    }
    micros.sort_by(f64::total_cmp);
    let median = quantile(&micros, 0.5);
    let mean = micros.iter().sum::<f64>() / micros.len() as f64;
    println!("\n[inference only, 1 thread, {} windows]", micros.len());
    println!(
        "  per 32 ms window: median {median:.1} µs, p99 {:.1} µs, mean {mean:.1} µs, min {:.1} µs (target: median <= 100 µs)",
        quantile(&micros, 0.99),
        micros[0]
    );
    println!(
        "  real-time factor {:.4}; one core sustains {:.0} streams (32 ms / mean)",
        mean / 32_000.0,
        32_000.0 / mean
    );
    if !cpu_micros.is_empty() {
        // schedstat advances at scheduler ticks, so only the mean over many windows is exact.
        let cpu_mean = cpu_micros.iter().sum::<f64>() / cpu_micros.len() as f64;
        println!(
            "  thread CPU per window (mean; excludes time preempted by other processes): {cpu_mean:.1} µs -> {:.0} streams per core",
            32_000.0 / cpu_mean
        );
    }
    Ok(())
}

async fn push_file(vad: &SileroVad, audio: &AudioFrame) -> anyhow::Result<usize> {
    let mut stream = vad.stream();
    let per_frame = (audio.sample_rate as usize / 50) * audio.num_channels as usize;
    for chunk in audio.data.chunks(per_frame) {
        stream.push_frame(AudioFrame::new(
            chunk.to_vec(),
            audio.sample_rate,
            audio.num_channels,
        )?);
    }
    stream.end_input();
    let mut events = 0;
    while stream.next_event().await.is_some() {
        events += 1;
    }
    Ok(events)
}

async fn one_stream(vad: &SileroVad, audio: &AudioFrame, passes: usize) -> anyhow::Result<()> {
    push_file(vad, audio).await?; // warm-up
    let cpu0 = process_cpu();
    let started = Instant::now();
    let mut events = 0;
    for _ in 0..passes {
        events += push_file(vad, audio).await?;
    }
    let wall = started.elapsed().as_secs_f64() / passes as f64;
    let audio_seconds = audio.duration_secs();
    println!(
        "\n[one stream, 20 ms frames, {passes} passes, {} events per pass]",
        events / passes
    );
    println!(
        "  wall per pass {:.1} ms, real-time factor {:.4}",
        wall * 1e3,
        wall / audio_seconds
    );
    match (cpu0, process_cpu()) {
        (Some(a), Some(b)) => {
            let cpu = (b - a) / passes as f64;
            let per_second = cpu / audio_seconds;
            println!(
                "  CPU per pass {:.1} ms = {:.2} ms per audio second; Python plugin: {:.1} ms per audio second -> {:.1}x less CPU (target: >= 4x)",
                cpu * 1e3,
                per_second * 1e3,
                PYTHON_CPU_PER_AUDIO_SECOND * 1e3,
                PYTHON_CPU_PER_AUDIO_SECOND / per_second
            );
            println!(
                "  one core sustains {:.0} streams at this whole-stream cost",
                1.0 / per_second
            );
        }
        _ => println!("  (process CPU time not available on this platform)"),
    }
    Ok(())
}

async fn many_streams(vad: &SileroVad, audio: &AudioFrame, streams: usize) -> anyhow::Result<()> {
    let cpu0 = process_cpu();
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let vad = vad.clone();
            let audio = audio.clone();
            tokio::spawn(async move { push_file(&vad, &audio).await })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let wall = started.elapsed().as_secs_f64();
    let audio_total = audio.duration_secs() * streams as f64;
    println!(
        "\n[{streams} streams at once, {} CPUs]",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  {audio_total:.1} s of audio in {:.1} ms wall ({:.0}x real time)",
        wall * 1e3,
        audio_total / wall
    );
    if let (Some(a), Some(b)) = (cpu0, process_cpu()) {
        println!(
            "  CPU {:.1} ms = {:.2} ms per audio second",
            (b - a) * 1e3,
            (b - a) / audio_total * 1e3
        );
    }
    match vad.batch_stats() {
        Some(stats) => println!(
            "  batching: {} windows in {} inferences (mean batch {:.1}, largest {})",
            stats.windows,
            stats.batches,
            stats.mean_batch(),
            stats.largest_batch
        ),
        None => println!("  batching off"),
    }
    Ok(())
}
