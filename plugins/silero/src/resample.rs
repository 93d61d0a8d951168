//! Streaming mono resampling of VAD input to the model rate.
//!
//! Common rate pairs (whose ratio needs a chunk of at most 100 ms) use rubato's FFT resampler
//! on 10 ms chunks, with its delay removed so that event times stay aligned with the input.
//! Other pairs fall back to linear interpolation, which is enough for speech detection.

use rubato::{FftFixedInOut, Resampler};

/// Converts a stream of mono `i16` samples from one rate to another.
pub(crate) struct MonoResampler {
    kind: Kind,
}

enum Kind {
    Fft {
        resampler: Box<FftFixedInOut<f32>>,
        pending: Vec<f32>,
        input: Vec<Vec<f32>>,
        output: Vec<Vec<f32>>,
        /// Output samples still to drop to cancel the resampler's delay.
        skip: usize,
    },
    Linear {
        step: f64,
        /// Position of the next output sample, in input samples relative to `last`.
        position: f64,
        last: Option<f32>,
    },
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl MonoResampler {
    /// A resampler from `input_rate` to `output_rate` (both > 0).
    pub(crate) fn new(input_rate: u32, output_rate: u32) -> Self {
        let min_chunk_in = input_rate / gcd(input_rate, output_rate).max(1);
        if min_chunk_in <= input_rate / 10 {
            let chunk = (input_rate / 100).max(min_chunk_in) as usize;
            if let Ok(resampler) =
                FftFixedInOut::<f32>::new(input_rate as usize, output_rate as usize, chunk, 1)
            {
                let chunk_in = resampler.input_frames_next();
                let chunk_out = resampler.output_frames_next();
                let skip = resampler.output_delay();
                return Self {
                    kind: Kind::Fft {
                        resampler: Box::new(resampler),
                        pending: Vec::with_capacity(chunk_in * 2),
                        input: vec![vec![0.0; chunk_in]],
                        output: vec![vec![0.0; chunk_out]],
                        skip,
                    },
                };
            }
        }
        Self {
            kind: Kind::Linear {
                step: f64::from(input_rate) / f64::from(output_rate.max(1)),
                position: 0.0,
                last: None,
            },
        }
    }

    /// Pushes input samples, appending the converted samples available so far to `out`.
    pub(crate) fn push(&mut self, samples: &[i16], out: &mut Vec<i16>) {
        match &mut self.kind {
            Kind::Fft {
                resampler,
                pending,
                input,
                output,
                skip,
            } => {
                pending.extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
                let chunk_in = input[0].len();
                let mut offset = 0;
                while pending.len() - offset >= chunk_in {
                    input[0].copy_from_slice(&pending[offset..offset + chunk_in]);
                    offset += chunk_in;
                    // Buffers are sized from the resampler itself, so this cannot fail; if it
                    // ever did, dropping one chunk of audio beats stopping the stream.
                    let Ok((_, produced)) = resampler.process_into_buffer(input, output, None)
                    else {
                        tracing::warn!("resampler rejected a chunk; skipping it");
                        continue;
                    };
                    let drop_now = (*skip).min(produced);
                    *skip -= drop_now;
                    out.extend(
                        output[0][drop_now..produced]
                            .iter()
                            .map(|&s| livekit_agents::audio::f32_to_i16(s)),
                    );
                }
                pending.drain(..offset);
            }
            Kind::Linear {
                step,
                position,
                last,
            } => {
                for &s in samples {
                    let current = f32::from(s);
                    let previous = last.unwrap_or(current);
                    // Emit every output sample whose position lies in (previous, current].
                    while *position <= 1.0 {
                        let t = *position as f32;
                        let value = previous + (current - previous) * t;
                        out.push(value.round().clamp(-32768.0, 32767.0) as i16);
                        *position += *step;
                    }
                    *position -= 1.0;
                    *last = Some(current);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, seconds: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                ((2.0 * std::f64::consts::PI * hz * t).sin() * 10_000.0) as i16
            })
            .collect()
    }

    fn resample_in_pieces(input: &[i16], from: u32, to: u32, piece: usize) -> Vec<i16> {
        let mut r = MonoResampler::new(from, to);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            r.push(chunk, &mut out);
        }
        out
    }

    #[test]
    fn output_length_follows_the_ratio_for_any_push_size() {
        for (from, to) in [
            (48_000, 16_000),
            (8_000, 16_000),
            (44_100, 16_000),
            (22_050, 8_000),
        ] {
            let input = sine(from, 440.0, 1.0);
            let a = resample_in_pieces(&input, from, to, 7);
            let b = resample_in_pieces(&input, from, to, 480);
            assert_eq!(a, b, "{from}->{to}: result independent of push sizes");
            let expected = i64::from(to);
            let got = a.len() as i64;
            assert!(
                (got - expected).abs() <= i64::from(from / 10 * to / from) + 1,
                "{from}->{to}: {got} samples for 1 s"
            );
        }
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_level() {
        // 48 kHz -> 16 kHz: a 440 Hz tone still crosses zero 880 times a second.
        let out = resample_in_pieces(&sine(48_000, 440.0, 1.0), 48_000, 16_000, 960);
        let body = &out[800..out.len() - 800];
        let crossings = body.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let seconds = body.len() as f64 / 16_000.0;
        let rate = crossings as f64 / seconds;
        assert!((rate - 880.0).abs() < 10.0, "{rate} crossings/s");
        let peak = body.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((9_000..=11_000).contains(&peak), "peak {peak}");
    }

    #[test]
    fn odd_rates_fall_back_to_interpolation() {
        let input = sine(12_347, 300.0, 0.5);
        let out = resample_in_pieces(&input, 12_347, 16_000, 100);
        let expected = input.len() as f64 * 16_000.0 / 12_347.0;
        assert!((out.len() as f64 - expected).abs() <= 2.0, "{}", out.len());
    }
}
