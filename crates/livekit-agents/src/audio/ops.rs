//! Frame helpers: concatenation, mixing, gain, levels, down-mixing, splitting, test tones.

use super::{f32_to_i16, AudioError, AudioFrame};

/// Concatenates frames of the same format into one frame.
///
/// Fails with [`AudioError::NoFrames`] on an empty list and [`AudioError::FormatMismatch`] when
/// sample rates or channel counts differ.
///
/// ```
/// use livekit_agents::audio::{combine_frames, AudioFrame};
///
/// let a = AudioFrame::new(vec![1, 2], 16_000, 1).unwrap();
/// let b = AudioFrame::new(vec![3], 16_000, 1).unwrap();
/// assert_eq!(combine_frames(&[a.clone(), b]).unwrap().data, [1, 2, 3]);
/// let other_rate = AudioFrame::new(vec![3], 8_000, 1).unwrap();
/// assert!(combine_frames(&[a, other_rate]).is_err());
/// ```
pub fn combine_frames(frames: &[AudioFrame]) -> Result<AudioFrame, AudioError> {
    let first = frames.first().ok_or(AudioError::NoFrames)?;
    let mut data = Vec::with_capacity(frames.iter().map(|f| f.data.len()).sum());
    for (i, f) in frames.iter().enumerate() {
        if f.sample_rate != first.sample_rate || f.num_channels != first.num_channels {
            return Err(AudioError::FormatMismatch {
                reason: format!(
                    "frame {i} is {} Hz / {} ch, frame 0 is {} Hz / {} ch",
                    f.sample_rate, f.num_channels, first.sample_rate, first.num_channels
                ),
            });
        }
        data.extend_from_slice(&f.data);
    }
    AudioFrame::new(data, first.sample_rate, first.num_channels)
}

/// Converts decibels to a linear amplitude factor (`0 dB` → `1.0`, `-6 dB` → about `0.5`).
pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Converts a linear amplitude (1.0 = full scale) to decibels; zero gives `-inf`.
pub fn gain_to_db(gain: f32) -> f32 {
    20.0 * gain.log10()
}

impl AudioFrame {
    /// A sine tone (useful for tests and beeps): `amplitude` is relative to full scale, the
    /// same signal is written to every channel.
    pub fn sine(
        frequency: f32,
        amplitude: f32,
        sample_rate: u32,
        num_channels: u16,
        samples_per_channel: usize,
    ) -> Self {
        let channels = num_channels as usize;
        let mut data = Vec::with_capacity(samples_per_channel * channels);
        let step = std::f64::consts::TAU * frequency as f64 / sample_rate.max(1) as f64;
        for n in 0..samples_per_channel {
            let v = f32_to_i16(amplitude * (step * n as f64).sin() as f32);
            data.extend(std::iter::repeat_n(v, channels));
        }
        Self {
            data,
            sample_rate,
            num_channels,
            samples_per_channel,
        }
    }

    /// Multiplies every sample by `factor`, saturating at full scale.
    pub fn apply_gain(&mut self, factor: f32) {
        for s in &mut self.data {
            *s = f32_to_i16(*s as f32 / 32768.0 * factor);
        }
    }

    /// Changes the level by `db` decibels (negative is quieter), saturating at full scale.
    ///
    /// ```
    /// use livekit_agents::audio::AudioFrame;
    ///
    /// let mut f = AudioFrame::new(vec![10_000, -10_000], 16_000, 1).unwrap();
    /// f.apply_gain_db(-6.0206);
    /// assert_eq!(f.data, [5_000, -5_000]);
    /// ```
    pub fn apply_gain_db(&mut self, db: f32) {
        self.apply_gain(db_to_gain(db));
    }

    /// Root-mean-square level over all samples, relative to full scale (`0.0..=1.0`).
    pub fn rms(&self) -> f32 {
        if self.data.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .data
            .iter()
            .map(|&s| {
                let v = s as f64 / 32768.0;
                v * v
            })
            .sum();
        (sum / self.data.len() as f64).sqrt() as f32
    }

    /// Largest absolute sample, relative to full scale (`0.0..=1.0`).
    pub fn peak(&self) -> f32 {
        self.data
            .iter()
            .map(|&s| (s as i32).unsigned_abs())
            .max()
            .map_or(0.0, |m| m as f32 / 32768.0)
    }

    /// RMS level in dBFS (0 dBFS = full-scale square wave; a full-scale sine is about -3 dBFS;
    /// silence is `-inf`).
    pub fn rms_dbfs(&self) -> f32 {
        gain_to_db(self.rms())
    }

    /// Peak level in dBFS (silence is `-inf`).
    pub fn peak_dbfs(&self) -> f32 {
        gain_to_db(self.peak())
    }

    /// Averages all channels into one. A mono frame is returned unchanged.
    ///
    /// ```
    /// use livekit_agents::audio::AudioFrame;
    ///
    /// let stereo = AudioFrame::new(vec![100, 300, -10, -20], 48_000, 2).unwrap();
    /// let mono = stereo.downmix_to_mono();
    /// assert_eq!((mono.num_channels, mono.data.clone()), (1, vec![200, -15]));
    /// ```
    pub fn downmix_to_mono(&self) -> AudioFrame {
        let channels = self.num_channels.max(1) as usize;
        if channels == 1 {
            return self.clone();
        }
        let data = self
            .data
            .chunks_exact(channels)
            .map(|c| (c.iter().map(|&s| s as i32).sum::<i32>() / channels as i32) as i16)
            .collect::<Vec<_>>();
        AudioFrame {
            samples_per_channel: data.len(),
            data,
            sample_rate: self.sample_rate,
            num_channels: 1,
        }
    }

    /// Sums two frames of the same format sample by sample (saturating); the shorter one is
    /// padded with silence.
    pub fn mix(&self, other: &AudioFrame) -> Result<AudioFrame, AudioError> {
        if self.sample_rate != other.sample_rate || self.num_channels != other.num_channels {
            return Err(AudioError::FormatMismatch {
                reason: format!(
                    "cannot mix {} Hz / {} ch with {} Hz / {} ch",
                    self.sample_rate, self.num_channels, other.sample_rate, other.num_channels
                ),
            });
        }
        let len = self.data.len().max(other.data.len());
        let data = (0..len)
            .map(|i| {
                let a = self.data.get(i).copied().unwrap_or(0);
                let b = other.data.get(i).copied().unwrap_or(0);
                a.saturating_add(b)
            })
            .collect();
        AudioFrame::new(data, self.sample_rate, self.num_channels)
    }

    /// Splits the frame into frames of `samples_per_channel` (the last one may be shorter).
    /// `samples_per_channel == 0` returns the frame whole.
    pub fn chunks(&self, samples_per_channel: usize) -> Vec<AudioFrame> {
        let channels = self.num_channels.max(1) as usize;
        if samples_per_channel == 0 || self.data.is_empty() {
            return vec![self.clone()];
        }
        self.data
            .chunks(samples_per_channel * channels)
            .map(|c| AudioFrame {
                data: c.to_vec(),
                sample_rate: self.sample_rate,
                num_channels: self.num_channels,
                samples_per_channel: c.len() / channels,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_checks_formats() {
        assert_eq!(combine_frames(&[]), Err(AudioError::NoFrames));
        let a = AudioFrame::new(vec![1, 2, 3, 4], 16_000, 2).unwrap();
        let b = AudioFrame::new(vec![5, 6], 16_000, 2).unwrap();
        let c = combine_frames(&[a.clone(), b]).unwrap();
        assert_eq!(c.data, [1, 2, 3, 4, 5, 6]);
        assert_eq!(c.samples_per_channel, 3);
        let mono = AudioFrame::new(vec![5, 6], 16_000, 1).unwrap();
        assert!(matches!(
            combine_frames(&[a, mono]),
            Err(AudioError::FormatMismatch { .. })
        ));
    }

    #[test]
    fn gain_and_levels() {
        let mut f = AudioFrame::sine(1000.0, 0.5, 16_000, 1, 1600);
        assert!((f.peak() - 0.5).abs() < 0.001);
        assert!((f.peak_dbfs() - (-6.02)).abs() < 0.05);
        assert!((f.rms() - 0.3536).abs() < 0.001);
        assert!((f.rms_dbfs() - (-9.03)).abs() < 0.05);
        f.apply_gain_db(6.0206);
        assert!((f.peak() - 1.0).abs() < 0.001);
        f.apply_gain_db(20.0); // saturates instead of wrapping
        assert_eq!(f.peak(), 1.0);
        assert!(f
            .data
            .iter()
            .all(|&s| s == i16::MAX || s == i16::MIN || s.abs() < 32767));
        let silence = AudioFrame::silence(16_000, 1, 160);
        assert_eq!(silence.rms(), 0.0);
        assert_eq!(silence.rms_dbfs(), f32::NEG_INFINITY);
        assert_eq!(AudioFrame::default().peak(), 0.0);
        let full = AudioFrame::new(vec![i16::MIN], 8_000, 1).unwrap();
        assert_eq!(full.peak(), 1.0);
    }

    #[test]
    fn downmix_mix_and_chunks() {
        let stereo =
            AudioFrame::new(vec![i16::MAX, i16::MAX, i16::MIN, i16::MIN], 8_000, 2).unwrap();
        let mono = stereo.downmix_to_mono();
        assert_eq!(mono.data, [i16::MAX, i16::MIN]);
        assert_eq!(mono.samples_per_channel, 2);
        assert_eq!(mono.downmix_to_mono(), mono);

        let a = AudioFrame::new(vec![30_000, 1, 2], 8_000, 1).unwrap();
        let b = AudioFrame::new(vec![30_000], 8_000, 1).unwrap();
        assert_eq!(a.mix(&b).unwrap().data, [i16::MAX, 1, 2]);
        assert!(a.mix(&stereo).is_err());

        let chunks = AudioFrame::sine(100.0, 0.1, 8_000, 2, 250).chunks(100);
        assert_eq!(
            chunks
                .iter()
                .map(|c| c.samples_per_channel)
                .collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert_eq!(chunks[2].data.len(), 100);
    }
}
