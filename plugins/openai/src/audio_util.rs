//! Conversion of incoming frames to what the Realtime API takes (24 kHz mono 16-bit PCM), and
//! re-chunking into fixed-size `input_audio_buffer.append` payloads.

use base64::Engine;
use livekit_agents::audio::resample::Resampler;
use livekit_agents::audio::AudioFrame;

/// The Realtime API's only PCM rate.
pub(crate) const REALTIME_SAMPLE_RATE: u32 = 24_000;

/// Converts frames of any rate and channel count to 24 kHz mono, resampling with the core
/// resampler (recreated if the input rate changes mid-stream) and cutting the result into
/// chunks of `chunk_ms`.
pub(crate) struct RealtimeAudioInput {
    resampler: Option<Resampler>,
    pending: Vec<i16>,
    chunk_len: usize,
}

impl RealtimeAudioInput {
    /// Chunks of `chunk_ms` milliseconds of 24 kHz audio.
    pub(crate) fn new(chunk_ms: u32) -> Self {
        Self {
            resampler: None,
            pending: Vec::new(),
            chunk_len: (REALTIME_SAMPLE_RATE as usize * chunk_ms as usize / 1000).max(1),
        }
    }

    /// Pushes a frame; returns the complete chunks now available.
    pub(crate) fn push(&mut self, frame: &AudioFrame) -> Vec<Vec<i16>> {
        if frame.sample_rate == 0 || frame.is_empty() {
            return Vec::new();
        }
        let mono = frame.downmix_to_mono();
        if mono.sample_rate == REALTIME_SAMPLE_RATE {
            self.pending.extend_from_slice(&mono.data);
        } else {
            let rate_changed = self
                .resampler
                .as_ref()
                .is_none_or(|r| r.input_rate() != mono.sample_rate);
            if rate_changed {
                // Drain the old resampler so no audio is lost across the switch.
                if let Some(mut old) = self.resampler.take() {
                    for f in old.flush() {
                        self.pending.extend_from_slice(&f.data);
                    }
                }
                match Resampler::new(mono.sample_rate, REALTIME_SAMPLE_RATE, 1) {
                    Ok(r) => self.resampler = Some(r),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot resample input audio; frame dropped");
                        return Vec::new();
                    }
                }
            }
            if let Some(r) = self.resampler.as_mut() {
                match r.push(&mono) {
                    Ok(frames) => {
                        for f in frames {
                            self.pending.extend_from_slice(&f.data);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "resampling failed; frame dropped"),
                }
            }
        }
        let mut out = Vec::new();
        while self.pending.len() >= self.chunk_len {
            out.push(self.pending.drain(..self.chunk_len).collect());
        }
        out
    }

    /// Everything still held (a partial chunk, and the resampler's tail when `drain_filter`).
    pub(crate) fn flush(&mut self, drain_filter: bool) -> Option<Vec<i16>> {
        if drain_filter {
            if let Some(r) = self.resampler.as_mut() {
                for f in r.flush() {
                    self.pending.extend_from_slice(&f.data);
                }
            }
        }
        if self.pending.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pending))
        }
    }

    /// Drops held audio (after `input_audio_buffer.clear`).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }
}

/// Base64 of little-endian samples (the `audio` field of `input_audio_buffer.append`).
pub(crate) fn samples_to_base64(samples: &[i16]) -> String {
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 little-endian PCM into samples (an odd trailing byte is dropped).
pub(crate) fn base64_to_samples(data: &str) -> Result<Vec<i16>, base64::DecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
    Ok(bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_chunks() {
        let mut input = RealtimeAudioInput::new(100);
        // 24 kHz stereo passes through after downmix: 150 ms -> one 100 ms chunk + 50 ms held.
        let stereo = AudioFrame::new(vec![1000; 3600 * 2], 24_000, 2).unwrap();
        let chunks = input.push(&stereo);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].len(), 2400);
        assert_eq!(input.flush(false).unwrap().len(), 1200);

        // 16 kHz is resampled: 1 s in -> 1 s out (within the resampler's block).
        let mut input = RealtimeAudioInput::new(100);
        let mut total = 0;
        for _ in 0..100 {
            let f = AudioFrame::new(vec![0; 160], 16_000, 1).unwrap();
            total += input.push(&f).iter().map(Vec::len).sum::<usize>();
        }
        total += input.flush(true).map_or(0, |r| r.len());
        assert_eq!(total, 24_000);
    }

    #[test]
    fn base64_round_trip() {
        let samples = vec![0i16, 1, -1, i16::MAX, i16::MIN];
        assert_eq!(
            base64_to_samples(&samples_to_base64(&samples)).unwrap(),
            samples
        );
    }
}
