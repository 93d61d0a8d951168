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

/// A WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WavIoError {
    /// The file could not be opened, parsed or written.
    #[error("WAV file {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: hound::Error,
    },
    /// The file's format is not 16-bit integer PCM.
    #[error("WAV file {path}: unsupported format ({bits} bits, {format:?}); expected 16-bit PCM")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Bits per sample.
        bits: u16,
        /// Sample format.
        format: hound::SampleFormat,
    },
}

/// How a WAV input delivers its frames.
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// Reads a 16-bit PCM WAV file into frames.
pub fn read_wav_frames(
    path: &Path,
    frame_duration: Duration,
) -> Result<Vec<AudioFrame>, WavIoError> {
    let wav_err = |source| WavIoError::Wav {
        path: path.to_path_buf(),
        source,
    };
    let reader = hound::WavReader::open(path).map_err(wav_err)?;
    let spec = reader.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(WavIoError::Unsupported {
            path: path.to_path_buf(),
            bits: spec.bits_per_sample,
            format: spec.sample_format,
        });
    }
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(wav_err)?;
    let channels = spec.channels.max(1) as usize;
    let per_frame = ((spec.sample_rate as f64 * frame_duration.as_secs_f64()).round() as usize)
        .max(1)
        * channels;
    Ok(samples
        .chunks(per_frame)
        .map(|chunk| AudioFrame {
            data: chunk.to_vec(),
            sample_rate: spec.sample_rate,
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
