//! Prints the speech segments of a WAV file, one line per event:
//! `START <seconds>` / `END <seconds>` (position in the input, 3 decimals).
//!
//! ```text
//! cargo xtask download-files     # once: the model and ONNX Runtime
//! cargo run --release -p livekit-plugins-silero --example vad -- speech.wav
//! ```
//!
//! Any PCM WAV works (8/16/24/32-bit integer or 32-bit float, any rate, mono or stereo).

use std::path::Path;

use anyhow::{bail, Context};
use futures::StreamExt;
use livekit_agents::audio::AudioFrame;
use livekit_agents::vad::{Vad, VadEventType};
use livekit_plugins_silero::{SileroVad, VadOptions};

/// Reads a WAV file as interleaved 16-bit samples.
fn read_wav(path: &Path) -> anyhow::Result<(Vec<i16>, u32, u16)> {
    let mut reader = hound::WavReader::open(path)
        .with_context(|| format!("{}: not a readable WAV file", path.display()))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        bail!(
            "{}: invalid WAV header (no channels or no sample rate)",
            path.display()
        );
    }
    let truncated =
        |e: hound::Error| anyhow::anyhow!("{}: truncated or corrupt WAV data: {e}", path.display());
    let samples: Vec<i16> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .map_err(truncated)?,
        (hound::SampleFormat::Int, bits) if bits <= 32 => {
            let shift = i32::from(bits) - 16;
            reader
                .samples::<i32>()
                .map(|s| {
                    s.map(|v| {
                        if shift >= 0 {
                            (v >> shift) as i16
                        } else {
                            (v << -shift) as i16
                        }
                    })
                })
                .collect::<Result<_, _>>()
                .map_err(truncated)?
        }
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .map(|s| s.map(livekit_agents::audio::f32_to_i16))
            .collect::<Result<_, _>>()
            .map_err(truncated)?,
        (format, bits) => bail!(
            "{}: unsupported WAV sample format {format:?} {bits}-bit",
            path.display()
        ),
    };
    if samples.is_empty() {
        bail!("{}: the WAV file contains no audio", path.display());
    }
    Ok((samples, spec.sample_rate, spec.channels))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(path) = std::env::args_os().nth(1) else {
        bail!("usage: vad <file.wav>");
    };
    let (samples, rate, channels) = read_wav(Path::new(&path))?;
    let vad = SileroVad::load(VadOptions::default())?;
    let mut stream = vad.stream();

    // Push 20 ms frames, as a room or microphone would deliver them.
    let per_frame = (rate as usize / 50).max(1) * channels as usize;
    for chunk in samples.chunks(per_frame) {
        let frame = AudioFrame::new(chunk.to_vec(), rate, channels)
            .context("the WAV data does not hold whole samples for every channel")?;
        stream.push_frame(frame);
    }
    stream.end_input();
    while let Some(event) = stream.next().await {
        match event.kind {
            VadEventType::StartOfSpeech => println!("START {:.3}", event.timestamp),
            VadEventType::EndOfSpeech => println!("END {:.3}", event.timestamp),
            VadEventType::InferenceDone => {}
        }
    }
    Ok(())
}
