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

/// Reads a WAV file, with errors that name the file.
fn read_wav(path: &Path) -> anyhow::Result<AudioFrame> {
    let audio = livekit_agents::audio::wav::read_wav_file(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if audio.is_empty() {
        bail!("{}: the WAV file contains no audio", path.display());
    }
    Ok(audio)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(path) = std::env::args_os().nth(1) else {
        bail!("usage: vad <file.wav>");
    };
    let audio = read_wav(Path::new(&path))?;
    let (rate, channels) = (audio.sample_rate, audio.num_channels);
    let vad = SileroVad::load(VadOptions::default())?;
    let mut stream = vad.stream();

    // Push 20 ms frames, as a room or microphone would deliver them.
    let per_frame = (rate as usize / 50).max(1) * channels as usize;
    for chunk in audio.data.chunks(per_frame) {
        let frame = AudioFrame::new(chunk.to_vec(), rate, channels)
            .context("the WAV data does not hold whole samples for every channel")?;
        stream.push_frame(frame);
    }
    stream.end_input();
    while let Some(event) = stream.next().await {
        match event.kind {
            VadEventType::StartOfSpeech => println!("START {:.3}", event.timestamp),
            VadEventType::EndOfSpeech => println!("END {:.3}", event.timestamp),
            // Per-window inference results, and any kind a later version adds.
            _ => {}
        }
    }
    Ok(())
}
