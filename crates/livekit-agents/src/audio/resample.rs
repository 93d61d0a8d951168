//! Streaming sample-rate conversion (on `rubato`'s synchronous FFT resampler).
//!
//! [`Resampler`] converts a stream of frames of any size between any two rates (8, 16, 22.05,
//! 24, 44.1, 48 kHz, ...) for any channel count. It works in fixed internal blocks of about
//! 10 ms, so it holds back less than one block of input, and removes the filter's delay so the
//! output lines up with the input. [`Resampler::flush`] at the end of a stream drains the
//! filter: the total output is then exactly `round(input_len * output_rate / input_rate)`
//! samples per channel.

use rubato::{FftFixedInOut, Resampler as _};

use super::{f32_to_i16, AudioError, AudioFrame};

/// A streaming resampler from one rate to another, for a fixed channel count.
///
/// Equal rates pass frames through untouched.
///
/// ```
/// use livekit_agents::audio::{resample::Resampler, AudioFrame};
///
/// let mut rs = Resampler::new(48_000, 16_000, 1).unwrap();
/// let mut out = 0;
/// for _ in 0..10 {
///     let frame = AudioFrame::sine(440.0, 0.5, 48_000, 1, 480); // 10 ms
///     out += rs.push(&frame).unwrap().iter().map(|f| f.samples_per_channel).sum::<usize>();
/// }
/// out += rs.flush().iter().map(|f| f.samples_per_channel).sum::<usize>();
/// assert_eq!(out, 1600); // 100 ms at 16 kHz
/// ```
pub struct Resampler {
    input_rate: u32,
    output_rate: u32,
    num_channels: u16,
    /// `None` when the rates are equal.
    inner: Option<Inner>,
}

struct Inner {
    fft: FftFixedInOut<f32>,
    chunk_in: usize,
    /// Pending input, one vector per channel.
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
    /// Output frames still to drop at the start (the filter delay).
    skip: usize,
    total_in: u64,
    total_out: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .field("num_channels", &self.num_channels)
            .finish()
    }
}

impl Resampler {
    /// A resampler from `input_rate` to `output_rate` Hz for `num_channels` interleaved
    /// channels. Converting between different rates needs both in
    /// [`SUPPORTED_SAMPLE_RATES`](super::SUPPORTED_SAMPLE_RATES)
    /// ([`AudioError::UnsupportedSampleRate`] otherwise).
    pub fn new(input_rate: u32, output_rate: u32, num_channels: u16) -> Result<Self, AudioError> {
        for rate in [input_rate, output_rate] {
            if rate == 0 {
                return Err(AudioError::InvalidSampleRate(rate));
            }
        }
        if num_channels == 0 {
            return Err(AudioError::InvalidChannels(num_channels));
        }
        let inner = if input_rate == output_rate {
            None
        } else {
            // The filter is sized from the rates: an absurd one must not become an allocation.
            super::check_sample_rate(input_rate)?;
            super::check_sample_rate(output_rate)?;
            let channels = num_channels as usize;
            let block = (input_rate as usize / 100).max(1);
            let fft = FftFixedInOut::<f32>::new(
                input_rate as usize,
                output_rate as usize,
                block,
                channels,
            )
            .map_err(|e| AudioError::Resample {
                reason: e.to_string(),
            })?;
            let chunk_in = fft.input_frames_next();
            let output = fft.output_buffer_allocate(true);
            let skip = fft.output_delay();
            Some(Inner {
                fft,
                chunk_in,
                input: vec![Vec::with_capacity(chunk_in * 2); channels],
                output,
                skip,
                total_in: 0,
                total_out: 0,
            })
        };
        Ok(Self {
            input_rate,
            output_rate,
            num_channels,
            inner,
        })
    }

    /// Channel count.
    pub fn num_channels(&self) -> u16 {
        self.num_channels
    }

    /// Input sample rate.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Output sample rate.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Pushes a frame (any length); returns the resampled audio available so far (at most one
    /// frame). Fails when the frame's rate or channel count is not the resampler's.
    pub fn push(&mut self, frame: &AudioFrame) -> Result<Vec<AudioFrame>, AudioError> {
        if frame.sample_rate != self.input_rate || frame.num_channels != self.num_channels {
            return Err(AudioError::FormatMismatch {
                reason: format!(
                    "resampler expects {} Hz / {} ch, got {} Hz / {} ch",
                    self.input_rate, self.num_channels, frame.sample_rate, frame.num_channels
                ),
            });
        }
        if self.inner.is_none() {
            // Equal rates: the frame itself, without copying it twice.
            self.check_ragged(&frame.data)?;
            return Ok(if frame.data.is_empty() {
                Vec::new()
            } else {
                vec![frame.clone()]
            });
        }
        let mut out = Vec::new();
        self.push_samples(&frame.data, &mut out)?;
        Ok(self.wrap(out))
    }

    /// Pushes interleaved samples at the input rate and channel count, appending the resampled
    /// audio available so far (interleaved) to `out`: the allocation-free form of
    /// [`Resampler::push`] for a caller that keeps its own buffers (a realtime stream).
    pub fn push_samples(&mut self, data: &[i16], out: &mut Vec<i16>) -> Result<(), AudioError> {
        self.check_ragged(data)?;
        let channels = self.num_channels as usize;
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(data);
            return Ok(());
        };
        for (ch, buf) in inner.input.iter_mut().enumerate() {
            buf.extend(
                data.iter()
                    .skip(ch)
                    .step_by(channels)
                    .map(|&s| s as f32 / 32768.0),
            );
        }
        inner.total_in += (data.len() / channels) as u64;
        // Consume whole blocks from an offset and drain once, so a long push stays linear.
        let mut offset = 0;
        let mut result = Ok(());
        while inner.input[0].len() - offset >= inner.chunk_in {
            match inner.process_block(offset, out, channels, u64::MAX) {
                Ok(0) => break,
                Ok(used) => offset += used,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        for buf in &mut inner.input {
            buf.drain(..offset.min(buf.len()));
        }
        result
    }

    fn check_ragged(&self, data: &[i16]) -> Result<(), AudioError> {
        if data.len().is_multiple_of(self.num_channels as usize) {
            Ok(())
        } else {
            Err(AudioError::RaggedData {
                len: data.len(),
                channels: self.num_channels,
            })
        }
    }

    /// Ends the stream: drains the filter and returns the remaining audio, so the total output
    /// matches the exact rate ratio. The resampler is then ready for a new stream.
    pub fn flush(&mut self) -> Vec<AudioFrame> {
        let channels = self.num_channels as usize;
        let Some(inner) = self.inner.as_mut() else {
            return Vec::new();
        };
        let expected = (inner.total_in as u128 * self.output_rate as u128
            + self.input_rate as u128 / 2)
            / self.input_rate as u128;
        let expected = expected as u64;
        let mut out = Vec::new();
        // Each block adds chunk_out frames; the bound only guards against a logic error.
        let max_blocks = 4
            + (inner.skip as u64 + expected.saturating_sub(inner.total_out))
                / inner.fft.output_frames_next().max(1) as u64;
        let mut blocks = 0;
        while inner.total_out < expected && blocks <= max_blocks {
            for buf in &mut inner.input {
                buf.resize(inner.chunk_in.max(buf.len()), 0.0);
            }
            match inner.process_block(0, &mut out, channels, expected) {
                Ok(used) => {
                    for buf in &mut inner.input {
                        buf.drain(..used.min(buf.len()));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resampler flush failed");
                    break;
                }
            }
            blocks += 1;
        }
        inner.reset();
        self.wrap(out)
    }

    fn wrap(&self, data: Vec<i16>) -> Vec<AudioFrame> {
        if data.is_empty() {
            return Vec::new();
        }
        vec![AudioFrame {
            samples_per_channel: data.len() / self.num_channels as usize,
            data,
            sample_rate: self.output_rate,
            num_channels: self.num_channels,
        }]
    }
}

impl Inner {
    /// Resamples one block of `input` starting at `offset`, appending interleaved output
    /// (after the delay skip, and never past `limit` total output frames). Returns the input
    /// frames used (the caller drains them).
    fn process_block(
        &mut self,
        offset: usize,
        out: &mut Vec<i16>,
        channels: usize,
        limit: u64,
    ) -> Result<usize, AudioError> {
        let (used, produced) = if let [mono] = self.input.as_slice() {
            // One channel (the usual case): no per-block vector of channel slices.
            self.fft
                .process_into_buffer(&[&mono[offset..]], &mut self.output, None)
        } else {
            let input: Vec<&[f32]> = self.input.iter().map(|b| &b[offset..]).collect();
            self.fft.process_into_buffer(&input, &mut self.output, None)
        }
        .map_err(|e| AudioError::Resample {
            reason: e.to_string(),
        })?;
        let skipped = self.skip.min(produced);
        self.skip -= skipped;
        let room = limit.saturating_sub(self.total_out);
        let take = ((produced - skipped) as u64).min(room) as usize;
        out.reserve(take * channels);
        for i in skipped..skipped + take {
            for ch in 0..channels {
                out.push(f32_to_i16(self.output[ch][i]));
            }
        }
        self.total_out += take as u64;
        Ok(used)
    }

    fn reset(&mut self) {
        self.fft.reset();
        for buf in &mut self.input {
            buf.clear();
        }
        self.skip = self.fft.output_delay();
        self.total_in = 0;
        self.total_out = 0;
    }
}

/// Resamples a whole frame to `output_rate` (a one-shot [`Resampler`]).
pub fn resample_frame(frame: &AudioFrame, output_rate: u32) -> Result<AudioFrame, AudioError> {
    let mut rs = Resampler::new(frame.sample_rate, output_rate, frame.num_channels)?;
    let mut parts = rs.push(frame)?;
    parts.extend(rs.flush());
    if parts.is_empty() {
        return Ok(AudioFrame::silence(output_rate, frame.num_channels, 0));
    }
    super::combine_frames(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

    /// Feeds `total` samples per channel of a sine in frames of the given sizes (cycled).
    fn run_stream(
        rs: &mut Resampler,
        freq: f32,
        input_rate: u32,
        channels: u16,
        total: usize,
        sizes: &[usize],
    ) -> AudioFrame {
        let tone = AudioFrame::sine(freq, 0.5, input_rate, channels, total);
        let mut parts = Vec::new();
        let mut pos = 0;
        for &size in sizes.iter().cycle() {
            if pos >= total {
                break;
            }
            let end = (pos + size).min(total);
            let ch = channels as usize;
            let frame =
                AudioFrame::new(tone.data[pos * ch..end * ch].to_vec(), input_rate, channels)
                    .unwrap();
            parts.extend(rs.push(&frame).unwrap());
            pos = end;
        }
        parts.extend(rs.flush());
        let out_rate = rs.output_rate();
        if parts.is_empty() {
            return AudioFrame::silence(out_rate, channels, 0);
        }
        combine_frames_ok(&parts)
    }

    fn combine_frames_ok(parts: &[AudioFrame]) -> AudioFrame {
        crate::audio::combine_frames(parts).unwrap()
    }

    fn zero_crossing_frequency(samples: &[i16], rate: u32) -> f32 {
        let crossings: Vec<usize> = samples
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] < 0 && w[1] >= 0)
            .map(|(i, _)| i)
            .collect();
        let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
        (crossings.len() - 1) as f32 * rate as f32 / (last - first) as f32
    }

    #[test]
    fn output_length_matches_ratio_for_all_rate_pairs() {
        for &a in &RATES {
            for &b in &RATES {
                for channels in [1u16, 2] {
                    let mut rs = Resampler::new(a, b, channels).unwrap();
                    let total = (a as usize * 3) / 10 + 7; // 0.3 s and a bit
                    let out = run_stream(&mut rs, 440.0, a, channels, total, &[97, 480, 1, 333]);
                    let exact = total as f64 * b as f64 / a as f64;
                    assert!(
                        (out.samples_per_channel as f64 - exact).abs() <= 1.0,
                        "{a}->{b} x{channels}: {} vs {exact}",
                        out.samples_per_channel
                    );
                    assert_eq!(out.sample_rate, b);
                    assert_eq!(out.num_channels, channels);
                    assert_eq!(out.data.len(), out.samples_per_channel * channels as usize);
                }
            }
        }
    }

    #[test]
    fn sine_keeps_its_frequency() {
        for (a, b) in [
            (48_000, 16_000),
            (16_000, 48_000),
            (44_100, 16_000),
            (8_000, 22_050),
            (24_000, 44_100),
        ] {
            let mut rs = Resampler::new(a, b, 1).unwrap();
            let out = run_stream(&mut rs, 440.0, a, 1, a as usize, &[160, 37, 1000]);
            // Skip the edges, where the filter ramps in and out.
            let n = out.data.len();
            let f = zero_crossing_frequency(&out.data[n / 10..n * 9 / 10], b);
            assert!((f - 440.0).abs() < 2.0, "{a}->{b}: {f} Hz");
            // The level is kept too.
            let mid = AudioFrame::new(out.data[n / 10..n * 9 / 10].to_vec(), b, 1).unwrap();
            assert!(
                (mid.peak() - 0.5).abs() < 0.03,
                "{a}->{b}: peak {}",
                mid.peak()
            );
        }
    }

    #[test]
    fn no_clicks_at_frame_boundaries() {
        for (a, b) in [
            (48_000, 16_000),
            (16_000, 24_000),
            (44_100, 48_000),
            (22_050, 8_000),
        ] {
            for channels in [1u16, 2] {
                let mut rs = Resampler::new(a, b, channels).unwrap();
                let out = run_stream(
                    &mut rs,
                    300.0,
                    a,
                    channels,
                    a as usize / 2,
                    &[1, 7, 113, 61, 1024],
                );
                // A 300 Hz sine at amplitude 0.5 moves at most 2*pi*300/rate*0.5 of full scale
                // per sample; allow 50% slack (filter ripple) but nothing like a click.
                let max_step =
                    (std::f32::consts::TAU * 300.0 / b as f32 * 0.5 * 32768.0 * 1.5) as i32;
                let ch = channels as usize;
                let n = out.samples_per_channel;
                for c in 0..ch {
                    let series: Vec<i32> = out
                        .data
                        .iter()
                        .skip(c)
                        .step_by(ch)
                        .map(|&s| s as i32)
                        .collect();
                    // Ignore the very first/last samples (ramp-in/out of the filter).
                    for w in series[8..n - 8].windows(2) {
                        let jump = (w[1] - w[0]).abs();
                        assert!(
                            jump <= max_step,
                            "{a}->{b} x{channels}: jump {jump} > {max_step}"
                        );
                    }
                }
                // Stereo channels stay identical (same input on both).
                if ch == 2 {
                    assert!(out
                        .data
                        .chunks(2)
                        .all(|p| (p[0] as i32 - p[1] as i32).abs() <= 1));
                }
            }
        }
    }

    #[test]
    fn output_is_aligned_with_input_and_free_of_aliasing() {
        // An impulse comes out at the same time position (the filter delay is removed).
        for (a, b) in [
            (48_000u32, 16_000u32),
            (16_000, 48_000),
            (44_100, 16_000),
            (22_050, 24_000),
        ] {
            let mut data = vec![0i16; a as usize / 10];
            let at = a as usize / 20;
            data[at] = 20_000;
            let mut rs = Resampler::new(a, b, 1).unwrap();
            let mut parts = rs.push(&AudioFrame::new(data, a, 1).unwrap()).unwrap();
            parts.extend(rs.flush());
            let out = combine_frames_ok(&parts);
            let peak_at = (0..out.data.len())
                .max_by_key(|&i| (out.data[i] as i32).abs())
                .unwrap();
            let expected = at as f64 * b as f64 / a as f64;
            assert!(
                (peak_at as f64 - expected).abs() <= 1.0,
                "{a}->{b}: {peak_at} vs {expected}"
            );
        }
        // Tones above the output Nyquist frequency are removed, tones below are kept.
        for (a, b, f, kept) in [
            (48_000u32, 16_000u32, 12_000.0f32, false),
            (44_100, 16_000, 9_000.0, false),
            (48_000, 16_000, 7_000.0, true),
        ] {
            let mut rs = Resampler::new(a, b, 1).unwrap();
            let out = run_stream(&mut rs, f, a, 1, a as usize / 2, &[480]);
            let n = out.data.len();
            let mid = AudioFrame::new(out.data[n / 10..n * 9 / 10].to_vec(), b, 1).unwrap();
            if kept {
                assert!(
                    (mid.rms_dbfs() - (-9.03)).abs() < 0.5,
                    "{f} Hz: {}",
                    mid.rms_dbfs()
                );
            } else {
                assert!(
                    mid.rms_dbfs() < -60.0,
                    "{f} Hz aliased: {} dBFS",
                    mid.rms_dbfs()
                );
            }
        }
    }

    #[test]
    fn one_long_push_equals_many_small_ones() {
        let tone = AudioFrame::sine(440.0, 0.5, 44_100, 2, 44_100 * 3);
        let mut whole = Resampler::new(44_100, 16_000, 2).unwrap();
        let mut a = whole.push(&tone).unwrap();
        a.extend(whole.flush());
        let mut small = Resampler::new(44_100, 16_000, 2).unwrap();
        let mut b = Vec::new();
        for part in tone.chunks(441) {
            b.extend(small.push(&part).unwrap());
        }
        b.extend(small.flush());
        assert_eq!(combine_frames_ok(&a), combine_frames_ok(&b));
        assert_eq!(combine_frames_ok(&a).samples_per_channel, 48_000);
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut rs = Resampler::new(16_000, 16_000, 2).unwrap();
        let f = AudioFrame::sine(100.0, 0.3, 16_000, 2, 123);
        assert_eq!(rs.push(&f).unwrap(), vec![f.clone()]);
        assert!(rs
            .push(&AudioFrame::silence(16_000, 2, 0))
            .unwrap()
            .is_empty());
        assert!(rs.flush().is_empty());
    }

    #[test]
    fn errors_and_reuse_after_flush() {
        assert_eq!(
            Resampler::new(0, 16_000, 1).unwrap_err(),
            AudioError::InvalidSampleRate(0)
        );
        assert_eq!(
            Resampler::new(16_000, 0, 1).unwrap_err(),
            AudioError::InvalidSampleRate(0)
        );
        assert_eq!(
            Resampler::new(16_000, 8_000, 0).unwrap_err(),
            AudioError::InvalidChannels(0)
        );
        // Issue 15 item 2: the filter is sized from the rates; u32::MAX used to abort the
        // process with a multi-GB allocation.
        assert_eq!(
            Resampler::new(u32::MAX, 24_000, 1).unwrap_err(),
            AudioError::UnsupportedSampleRate(u32::MAX)
        );
        assert_eq!(
            Resampler::new(24_000, 4_000_000_000, 1).unwrap_err(),
            AudioError::UnsupportedSampleRate(4_000_000_000)
        );
        let mut rs = Resampler::new(16_000, 8_000, 1).unwrap();
        assert!(matches!(
            rs.push(&AudioFrame::silence(48_000, 1, 10)),
            Err(AudioError::FormatMismatch { .. })
        ));
        assert!(matches!(
            rs.push(&AudioFrame::silence(16_000, 2, 10)),
            Err(AudioError::FormatMismatch { .. })
        ));
        let mut stereo = Resampler::new(16_000, 8_000, 2).unwrap();
        let ragged = AudioFrame {
            data: vec![1, 2, 3],
            sample_rate: 16_000,
            num_channels: 2,
            samples_per_channel: 1,
        };
        assert!(matches!(
            stereo.push(&ragged),
            Err(AudioError::RaggedData { .. })
        ));
        // An empty stream flushes to nothing; a second stream after flush is exact again.
        assert!(rs.flush().is_empty());
        for _ in 0..2 {
            let out = run_stream(&mut rs, 440.0, 16_000, 1, 1_000, &[100]);
            assert_eq!(out.samples_per_channel, 500);
        }
        let one_shot =
            resample_frame(&AudioFrame::sine(440.0, 0.5, 44_100, 2, 4410), 16_000).unwrap();
        assert_eq!(one_shot.samples_per_channel, 1600);
        assert_eq!(one_shot.sample_rate, 16_000);
    }

    #[test]
    fn push_samples_appends_what_push_returns() {
        for (from, to, channels) in [
            (48_000, 16_000, 1u16),
            (16_000, 16_000, 1),
            (44_100, 24_000, 2),
        ] {
            let mut framed = Resampler::new(from, to, channels).unwrap();
            let mut raw = Resampler::new(from, to, channels).unwrap();
            let mut a = Vec::new();
            let mut b = vec![7i16]; // appended to, not replaced
            for size in [480usize, 333, 960, 1, 2000] {
                let frame = AudioFrame::sine(300.0, 0.4, from, channels, size);
                for part in framed.push(&frame).unwrap() {
                    a.extend_from_slice(&part.data);
                }
                raw.push_samples(&frame.data, &mut b).unwrap();
            }
            assert_eq!(b[0], 7);
            assert_eq!(&b[1..], &a[..], "{from} -> {to} Hz, {channels} ch");
        }
        let mut stereo = Resampler::new(48_000, 16_000, 2).unwrap();
        assert!(stereo.push_samples(&[1, 2, 3], &mut Vec::new()).is_err());
    }
}
