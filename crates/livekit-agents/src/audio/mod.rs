//! Audio primitives: [`AudioFrame`], re-chunking ([`AudioByteStream`]), resampling
//! ([`resample::Resampler`]), WAV files ([`wav`]) and level helpers; decoding audio files
//! (`decode`), mixing background sounds (`mixer`), click-free gain ([`GainRamp`],
//! [`GainAudioOutput`]) and filters on the user's audio (`filter`: noise suppression and
//! automatic gain control).
//!
//! All audio in the framework is interleaved signed 16-bit PCM. Frames carry their own sample
//! rate and channel count; stages that need another format convert explicitly (see
//! [`resample::Resampler`] and [`AudioFrame::downmix_to_mono`]).
//!
//! ```
//! use livekit_agents::audio::{combine_frames, AudioByteStream, AudioFrame};
//!
//! // 25 ms of a 440 Hz tone at 16 kHz, re-chunked into 10 ms frames.
//! let tone = AudioFrame::sine(440.0, 0.5, 16_000, 1, 400);
//! let mut chunker = AudioByteStream::new(16_000, 1, 160);
//! let mut frames = chunker.push_samples(&tone.data);
//! frames.extend(chunker.flush());
//! assert_eq!(frames.iter().map(|f| f.samples_per_channel).collect::<Vec<_>>(), [160, 160, 80]);
//! assert_eq!(combine_frames(&frames).unwrap(), tone);
//! assert!((tone.rms_dbfs() - (-9.03)).abs() < 0.1); // a 0.5 sine: -6 dB peak, -9 dB RMS
//! ```

mod bytestream;
pub(crate) mod decode;
pub(crate) mod filter;
mod gain;
pub(crate) mod mixer;
mod ops;
pub mod resample;
pub mod wav;

pub use bytestream::AudioByteStream;
pub use decode::{
    decode_bytes, decode_file_to, MAX_DECODED_SAMPLES, MAX_DECODED_SECONDS, MAX_FILE_BYTES,
};
pub use decode::{decode_file, DecodeError, DecodeErrorKind};
#[cfg(feature = "noise-suppression")]
pub use filter::NoiseSuppressor;
pub use filter::{AgcOptions, AudioFilterFactory, FilterParams};
pub use filter::{AudioFilter, AutoGainControl, FilterChain};
pub use gain::{GainAudioOutput, GainControl, GainRamp, DEFAULT_GAIN_RAMP};
pub use mixer::{AudioMixer, MixingSink, PlayHandle, SourceOptions};
pub use ops::{combine_frames, db_to_gain, gain_to_db};

use std::time::Duration;

/// A run of interleaved 16-bit PCM samples.
///
/// ```
/// use livekit_agents::audio::AudioFrame;
///
/// let frame = AudioFrame::silence(16_000, 1, 160); // 10 ms of mono silence
/// assert_eq!(frame.duration().as_millis(), 10);
/// assert_eq!(frame.data.len(), 160);
/// ```
#[derive(Clone, PartialEq, Default)]
pub struct AudioFrame {
    /// Interleaved samples: `samples_per_channel * num_channels` values.
    pub data: Vec<i16>,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Number of interleaved channels.
    pub num_channels: u16,
    /// Number of samples in each channel.
    pub samples_per_channel: usize,
}

impl std::fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFrame")
            .field("sample_rate", &self.sample_rate)
            .field("num_channels", &self.num_channels)
            .field("samples_per_channel", &self.samples_per_channel)
            .finish()
    }
}

/// An audio format or frame that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The sample rate is zero.
    #[error("invalid sample rate: {0} Hz")]
    InvalidSampleRate(u32),
    /// The channel count is zero.
    #[error("invalid channel count: {0}")]
    InvalidChannels(u16),
    /// The sample buffer does not hold a whole number of multi-channel samples.
    #[error("{len} samples is not a multiple of {channels} channels")]
    RaggedData {
        /// Buffer length.
        len: usize,
        /// Channel count.
        channels: u16,
    },
    /// Two frames that must share a format do not.
    #[error("format mismatch: {reason}")]
    FormatMismatch {
        /// The two formats.
        reason: String,
    },
    /// A byte buffer does not hold a whole number of 16-bit samples.
    #[error("{0} bytes is not a whole number of 16-bit samples")]
    OddByteCount(usize),
    /// An operation that needs at least one frame got none.
    #[error("no audio frames given")]
    NoFrames,
    /// The resampler could not be built or failed.
    #[error("resampler error: {reason}")]
    Resample {
        /// The resampler's error.
        reason: String,
    },
    /// A sample rate outside [`SUPPORTED_SAMPLE_RATES`] (from a file, a participant or a
    /// provider); refused so it cannot drive a huge allocation.
    #[error("unsupported sample rate: {0} Hz (supported: 8000 to 192000 Hz)")]
    UnsupportedSampleRate(u32),
}

/// The sample rates the framework accepts from outside (WAV headers, pre-connect attributes,
/// provider-declared rates) and resamples between: 8 kHz to 192 kHz. A rate outside this range
/// is refused with [`AudioError::UnsupportedSampleRate`] before anything is sized from it.
pub const SUPPORTED_SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// `rate` if it is in [`SUPPORTED_SAMPLE_RATES`], else [`AudioError::UnsupportedSampleRate`].
///
/// ```
/// use livekit_agents::audio::{check_sample_rate, AudioError};
///
/// assert_eq!(check_sample_rate(48_000), Ok(48_000));
/// assert_eq!(check_sample_rate(u32::MAX), Err(AudioError::UnsupportedSampleRate(u32::MAX)));
/// ```
pub fn check_sample_rate(rate: u32) -> Result<u32, AudioError> {
    if SUPPORTED_SAMPLE_RATES.contains(&rate) {
        Ok(rate)
    } else {
        Err(AudioError::UnsupportedSampleRate(rate))
    }
}

impl AudioFrame {
    /// Builds a frame from interleaved samples, checking the format.
    pub fn new(data: Vec<i16>, sample_rate: u32, num_channels: u16) -> Result<Self, AudioError> {
        if sample_rate == 0 {
            return Err(AudioError::InvalidSampleRate(sample_rate));
        }
        if num_channels == 0 {
            return Err(AudioError::InvalidChannels(num_channels));
        }
        if !data.len().is_multiple_of(num_channels as usize) {
            return Err(AudioError::RaggedData {
                len: data.len(),
                channels: num_channels,
            });
        }
        let samples_per_channel = data.len() / num_channels as usize;
        Ok(Self {
            data,
            sample_rate,
            num_channels,
            samples_per_channel,
        })
    }

    /// A frame of zeros.
    pub fn silence(sample_rate: u32, num_channels: u16, samples_per_channel: usize) -> Self {
        Self {
            data: vec![0; samples_per_channel * num_channels as usize],
            sample_rate,
            num_channels,
            samples_per_channel,
        }
    }

    /// Duration of the frame.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.samples_per_channel as f64 / self.sample_rate as f64)
    }

    /// Duration in seconds as `f64`.
    pub fn duration_secs(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.samples_per_channel as f64 / self.sample_rate as f64
    }

    /// Whether the frame holds no samples.
    pub fn is_empty(&self) -> bool {
        self.samples_per_channel == 0
    }

    /// Samples as `f32` in `[-1.0, 1.0)` (divided by 32768), interleaved.
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&s| s as f32 / 32768.0).collect()
    }

    /// Builds a frame from interleaved `f32` samples, clamping to `[-1.0, 1.0]`.
    pub fn from_f32(
        samples: &[f32],
        sample_rate: u32,
        num_channels: u16,
    ) -> Result<Self, AudioError> {
        let data = samples.iter().map(|&s| f32_to_i16(s)).collect();
        Self::new(data, sample_rate, num_channels)
    }

    /// Builds a frame from little-endian 16-bit PCM bytes (the `pcm_s16le` wire format).
    ///
    /// ```
    /// use livekit_agents::audio::AudioFrame;
    ///
    /// let frame = AudioFrame::from_le_bytes(&[1, 0, 255, 255], 8_000, 1).unwrap();
    /// assert_eq!(frame.data, [1, -1]);
    /// assert_eq!(frame.to_le_bytes(), [1, 0, 255, 255]);
    /// assert!(AudioFrame::from_le_bytes(&[1, 0, 2], 8_000, 1).is_err());
    /// ```
    pub fn from_le_bytes(
        bytes: &[u8],
        sample_rate: u32,
        num_channels: u16,
    ) -> Result<Self, AudioError> {
        if !bytes.len().is_multiple_of(2) {
            return Err(AudioError::OddByteCount(bytes.len()));
        }
        let data = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        Self::new(data, sample_rate, num_channels)
    }

    /// The little-endian bytes of the samples (the `pcm_s16le` wire format).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() * 2);
        for s in &self.data {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

/// Converts one `f32` sample in `[-1, 1]` to `i16`, clamping out-of-range values.
pub fn f32_to_i16(s: f32) -> i16 {
    let scaled = (s * 32768.0).round();
    scaled.clamp(i16::MIN as f32, i16::MAX as f32) as i16
}
