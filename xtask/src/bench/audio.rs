//! `cargo xtask bench audio`: CPU cost of the audio extras per session-minute: the input filters
//! (noise suppression, automatic gain control) on the user's audio, and the background mixer on
//! the agent's output.
//!
//! Each stage processes `--seconds` of audio (default 60, i.e. one session-minute) in 20 ms
//! frames, `--passes` times; the report is the CPU time of the measuring thread (Linux
//! schedstat: time spent preempted by other processes is not counted) per minute of audio, and
//! the share of one core that is.

use std::sync::Arc;

use anyhow::Context;
use livekit_agents::audio::AudioFilter;
use livekit_agents::audio::{
    AudioFrame, AudioMixer, AutoGainControl, FilterChain, NoiseSuppressor, SourceOptions,
};
use livekit_agents::background_audio::BuiltinAudioClip;

use super::BenchArgs;

/// CPU time of the calling thread, ns (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// 20 ms frames of speech-like input: the Silero test speech (looped) plus steady noise.
fn input_frames(rate: u32, seconds: u64) -> anyhow::Result<Vec<AudioFrame>> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/silero/testdata/speech_16k.wav");
    let speech = livekit_agents::audio::wav::read_wav_file(&path)
        .with_context(|| format!("reading {}", path.display()))?;
    let speech = livekit_agents::audio::resample::resample_frame(&speech.downmix_to_mono(), rate)?;
    let total = rate as usize * seconds as usize;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<i16> = (0..total)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = ((seed >> 40) as i32 % 600) - 300;
            let s = speech.data[i % speech.data.len()] as i32;
            (s + noise).clamp(i16::MIN as i32, i16::MAX as i32) as i16
        })
        .collect();
    Ok(AudioFrame::new(data, rate, 1)?.chunks(rate as usize / 50))
}

fn measure(passes: usize, mut run: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let start = thread_cpu_ns().unwrap_or(0);
        run();
        let spent = thread_cpu_ns().unwrap_or(0).saturating_sub(start) as f64 / 1e9;
        best = best.min(spent);
    }
    best
}

fn report(name: &str, cpu: f64, seconds: u64) {
    let per_minute = cpu * 60.0 / seconds as f64;
    println!(
        "{name:<44} {:>9.1} ms CPU per session-minute  ({:.3} % of a core)",
        per_minute * 1000.0,
        per_minute / 60.0 * 100.0
    );
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let seconds = args.seconds.max(1);
    let passes = args.passes.clamp(1, 5);
    println!("audio extras: {seconds} s of audio per pass, best of {passes} passes");
    for rate in [16_000u32, 48_000] {
        let frames = input_frames(rate, seconds)?;
        let cpu = measure(passes, || {
            let mut ns = NoiseSuppressor::new();
            for f in &frames {
                std::hint::black_box(ns.process(f.clone()));
            }
        });
        report(
            &format!("noise suppression (input at {} kHz)", rate / 1000),
            cpu,
            seconds,
        );
    }
    let frames = input_frames(16_000, seconds)?;
    let cpu = measure(passes, || {
        let mut agc = AutoGainControl::default();
        for f in &frames {
            std::hint::black_box(agc.process(f.clone()));
        }
    });
    report("automatic gain control (16 kHz)", cpu, seconds);
    let cpu = measure(passes, || {
        let mut chain = FilterChain::default()
            .push(NoiseSuppressor::new())
            .push(AutoGainControl::default());
        for f in &frames {
            std::hint::black_box(chain.process(f.clone()));
        }
    });
    report("noise suppression + AGC (16 kHz)", cpu, seconds);

    // The mixer: an ambient clip and a thinking clip summed into 24 kHz output frames.
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let _guard = rt.enter();
    let out_rate = 24_000u32;
    let ambient: Arc<[i16]> = livekit_agents::audio::resample::resample_frame(
        &AudioFrame::new(
            BuiltinAudioClip::OfficeAmbience.samples().to_vec(),
            48_000,
            1,
        )?,
        out_rate,
    )?
    .data
    .into();
    let blocks = out_rate as usize / 50;
    let cpu = measure(passes, || {
        let mixer = AudioMixer::new(out_rate, 1);
        let a = mixer.play_clip(ambient.clone(), true, SourceOptions::default());
        let b = mixer.play_clip(
            ambient.clone(),
            true,
            SourceOptions::default().with_volume(0.5),
        );
        let mut speech = vec![0i16; blocks];
        for _ in 0..seconds * 50 {
            mixer.mix_into(&mut speech);
            std::hint::black_box(&speech);
        }
        a.stop();
        b.stop();
    });
    report("background mixer (2 sources into 24 kHz)", cpu, seconds);
    Ok(())
}
