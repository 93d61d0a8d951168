//! WAV-file ports: read user audio from a file, write agent audio to a file.
//!
//! Used by `console --input-wav/--output-wav` and by tests. The input can be paced at real time
//! (as a microphone would deliver it) or delivered as fast as the session reads it; the output
//! is a [`PacedAudioOutput`], so the file receives audio at playback pace and interruptions cut
//! it exactly as a speaker would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

use super::{AudioInput, PacedAudioOutput};
use crate::audio::AudioFrame;

/// A WAV file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("WAV file {path}: {source}")]
#[non_exhaustive]
pub struct WavIoError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: crate::audio::wav::WavError,
}

/// How a WAV input delivers its frames.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct WavInputOptions {
    /// Frame length.
    pub frame_duration: Duration,
    /// Deliver one frame per `frame_duration` of tokio time (like a microphone); otherwise as
    /// fast as the reader takes them.
    pub realtime: bool,
    /// Silence appended after the file (so the VAD and STT see the end of speech).
    pub trailing_silence: Duration,
}

impl Default for WavInputOptions {
    fn default() -> Self {
        Self {
            frame_duration: Duration::from_millis(20),
            realtime: true,
            trailing_silence: Duration::from_secs(2),
        }
    }
}

/// Reads a WAV file (any format [`crate::audio::wav`] reads) into frames of `frame_duration`.
pub fn read_wav_frames(
    path: &Path,
    frame_duration: Duration,
) -> Result<Vec<AudioFrame>, WavIoError> {
    let audio = crate::audio::wav::read_wav_file(path).map_err(|source| WavIoError {
        path: path.to_path_buf(),
        source,
    })?;
    let channels = audio.num_channels.max(1) as usize;
    let per_frame = ((audio.sample_rate as f64 * frame_duration.as_secs_f64()).round() as usize)
        .max(1)
        * channels;
    Ok(audio
        .data
        .chunks(per_frame)
        .map(|chunk| AudioFrame {
            data: chunk.to_vec(),
            sample_rate: audio.sample_rate,
            num_channels: channels as u16,
            samples_per_channel: chunk.len() / channels,
        })
        .collect())
}

/// An [`AudioInput`] reading `path`.
pub fn wav_file_input(
    path: impl AsRef<Path>,
    options: WavInputOptions,
) -> Result<AudioInput, WavIoError> {
    let path = path.as_ref();
    let mut frames = read_wav_frames(path, options.frame_duration)?;
    if let Some(last) = frames.last() {
        let (rate, channels) = (last.sample_rate, last.num_channels);
        let per_frame =
            ((rate as f64 * options.frame_duration.as_secs_f64()).round() as usize).max(1);
        let count = (options.trailing_silence.as_secs_f64() / options.frame_duration.as_secs_f64())
            .ceil() as usize;
        frames.extend((0..count).map(|_| AudioFrame::silence(rate, channels, per_frame)));
    }
    let label = format!("wav:{}", path.display());
    let stream = futures::stream::iter(frames);
    if options.realtime {
        let stream = stream.then(|frame| async move {
            tokio::time::sleep(frame.duration()).await;
            frame
        });
        Ok(AudioInput::from_stream(label, stream))
    } else {
        Ok(AudioInput::from_stream(label, stream))
    }
}

/// A real-time paced output writing the played audio to a WAV file.
///
/// The file takes the sample rate and channel count of the first frame; frames of another format
/// are skipped with a warning (set `sample_rate` so the pipeline resamples to one rate). The file
/// is finalized when the output is dropped.
pub fn wav_file_output(path: impl AsRef<Path>, sample_rate: Option<u32>) -> PacedAudioOutput {
    let path = path.as_ref().to_path_buf();
    let mut writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>> = None;
    let mut spec: Option<hound::WavSpec> = None;
    let mut failed = false;
    PacedAudioOutput::new(
        format!("wav:{}", path.display()),
        sample_rate,
        move |frame: &AudioFrame| {
            if failed {
                return;
            }
            let want = hound::WavSpec {
                channels: frame.num_channels,
                sample_rate: frame.sample_rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            match spec {
                None => match hound::WavWriter::create(&path, want) {
                    Ok(w) => {
                        writer = Some(w);
                        spec = Some(want);
                    }
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "cannot create WAV output");
                        failed = true;
                        return;
                    }
                },
                Some(s) if s != want => {
                    tracing::warn!(path = %path.display(), "skipping frame with a different format");
                    return;
                }
                Some(_) => {}
            }
            if let Some(w) = writer.as_mut() {
                for &s in &frame.data {
                    if let Err(e) = w.write_sample(s) {
                        tracing::error!(path = %path.display(), error = %e, "cannot write WAV output");
                        failed = true;
                        return;
                    }
                }
                // Keep the header valid while playing, so an interrupted process leaves a usable file.
                let _ = w.flush();
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::AudioOutput;

    fn tone(rate: u32, ms: u64) -> AudioFrame {
        let n = (rate as u64 * ms / 1000) as usize;
        let data = (0..n)
            .map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16)
            .collect();
        AudioFrame::new(data, rate, 1).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn wav_input_yields_the_file_then_trailing_silence_at_real_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        crate::audio::wav::write_wav_file(&path, &[tone(16_000, 500)]).unwrap();
        let input = wav_file_input(
            &path,
            WavInputOptions {
                trailing_silence: Duration::from_millis(100),
                ..Default::default()
            },
        )
        .unwrap();
        let start = tokio::time::Instant::now();
        let frames: Vec<AudioFrame> = input.into_stream().collect().await;
        assert_eq!(frames.len(), 25 + 5);
        assert!(frames[..25].iter().all(|f| f.samples_per_channel == 320));
        assert!(frames[25..].iter().all(|f| f.data.iter().all(|&s| s == 0)));
        assert_eq!(start.elapsed(), Duration::from_millis(600));
    }

    #[tokio::test(start_paused = true)]
    async fn wav_output_writes_what_played_and_stops_at_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let out = wav_file_output(&path, None);
        let mut events = out.subscribe();
        for _ in 0..10 {
            out.capture_frame(tone(24_000, 100)).await;
        }
        out.flush();
        tokio::time::sleep(Duration::from_millis(350)).await;
        out.clear_buffer();
        let finished = crate::io::wait_for_finished(&mut events).await.unwrap();
        assert!(finished.interrupted);
        assert_eq!(finished.playback_position, Duration::from_millis(350));
        drop(out);
        tokio::task::yield_now().await;
        let written = crate::audio::wav::read_wav_file(&path).unwrap();
        // Four frames started playing before the clear.
        assert_eq!(written.samples_per_channel, 4 * 2400);
    }
}
