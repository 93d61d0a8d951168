//! Re-chunking audio into frames of a fixed size.

use super::{AudioError, AudioFrame};

/// Re-chunks arbitrary runs of PCM (bytes or samples) into frames of exactly
/// `samples_per_channel` samples per channel (the reference's `AudioByteStream`).
///
/// [`flush`](AudioByteStream::flush) returns the shorter remainder at the end of a stream.
///
/// ```
/// use livekit_agents::audio::AudioByteStream;
///
/// // 10 ms mono frames at 16 kHz from a byte stream split anywhere (even mid-sample).
/// let mut stream = AudioByteStream::new(16_000, 1, 160);
/// let bytes = vec![0u8; 2 * 400];
/// let mut frames = stream.push(&bytes[..301]);
/// frames.extend(stream.push(&bytes[301..]));
/// assert_eq!(frames.len(), 2);
/// assert!(frames.iter().all(|f| f.samples_per_channel == 160));
/// assert_eq!(stream.flush()[0].samples_per_channel, 80);
/// ```
#[derive(Debug, Clone)]
pub struct AudioByteStream {
    sample_rate: u32,
    num_channels: u16,
    samples_per_channel: usize,
    pending: Vec<i16>,
    odd_byte: Option<u8>,
}

impl AudioByteStream {
    /// A re-chunker producing frames of `samples_per_channel` (at least 1) per channel.
    /// A channel count of 0 is treated as 1.
    pub fn new(sample_rate: u32, num_channels: u16, samples_per_channel: usize) -> Self {
        Self {
            sample_rate,
            num_channels: num_channels.max(1),
            samples_per_channel: samples_per_channel.max(1),
            pending: Vec::new(),
            odd_byte: None,
        }
    }

    /// A re-chunker producing frames of `frame_ms` milliseconds.
    pub fn with_frame_ms(sample_rate: u32, num_channels: u16, frame_ms: u32) -> Self {
        let spc = (sample_rate as u64 * frame_ms as u64 / 1000) as usize;
        Self::new(sample_rate, num_channels, spc)
    }

    /// Samples per channel of each emitted frame.
    pub fn samples_per_channel(&self) -> usize {
        self.samples_per_channel
    }

    /// Samples per channel currently buffered (less than one frame after each push).
    pub fn buffered_samples_per_channel(&self) -> usize {
        self.pending.len() / self.num_channels as usize
    }

    /// Pushes little-endian 16-bit PCM bytes of any length (an odd trailing byte is kept for
    /// the next push); returns the completed frames.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<AudioFrame> {
        let mut rest = bytes;
        if let Some(b0) = self.odd_byte {
            if let Some((&b1, tail)) = rest.split_first() {
                self.pending.push(i16::from_le_bytes([b0, b1]));
                self.odd_byte = None;
                rest = tail;
            }
        }
        let mut pairs = rest.chunks_exact(2);
        self.pending
            .extend((&mut pairs).map(|b| i16::from_le_bytes([b[0], b[1]])));
        if let [last] = pairs.remainder() {
            self.odd_byte = Some(*last);
        }
        self.drain_full_frames()
    }

    /// Pushes interleaved samples; returns the completed frames.
    pub fn push_samples(&mut self, samples: &[i16]) -> Vec<AudioFrame> {
        self.pending.extend_from_slice(samples);
        self.drain_full_frames()
    }

    /// Pushes a frame, checking that its format matches the stream's.
    pub fn push_frame(&mut self, frame: &AudioFrame) -> Result<Vec<AudioFrame>, AudioError> {
        if frame.sample_rate != self.sample_rate || frame.num_channels != self.num_channels {
            return Err(AudioError::FormatMismatch {
                reason: format!(
                    "AudioByteStream is {} Hz / {} ch, frame is {} Hz / {} ch",
                    self.sample_rate, self.num_channels, frame.sample_rate, frame.num_channels
                ),
            });
        }
        Ok(self.push_samples(&frame.data))
    }

    /// Returns the buffered remainder as one (shorter) frame, or nothing when empty. A dangling
    /// odd byte or partial multi-channel sample is dropped (with a debug log).
    pub fn flush(&mut self) -> Vec<AudioFrame> {
        let channels = self.num_channels as usize;
        let whole = self.pending.len() / channels * channels;
        if self.odd_byte.take().is_some() || whole != self.pending.len() {
            tracing::debug!("AudioByteStream::flush dropped an incomplete sample");
        }
        self.pending.truncate(whole);
        if self.pending.is_empty() {
            return Vec::new();
        }
        let data = std::mem::take(&mut self.pending);
        vec![self.frame(data)]
    }

    /// Drops everything buffered.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.odd_byte = None;
    }

    fn frame(&self, data: Vec<i16>) -> AudioFrame {
        AudioFrame {
            samples_per_channel: data.len() / self.num_channels as usize,
            data,
            sample_rate: self.sample_rate,
            num_channels: self.num_channels,
        }
    }

    fn drain_full_frames(&mut self) -> Vec<AudioFrame> {
        let chunk = self.samples_per_channel * self.num_channels as usize;
        let full = self.pending.len() / chunk;
        if full == 0 {
            return Vec::new();
        }
        let rest = self.pending.split_off(full * chunk);
        let all = std::mem::replace(&mut self.pending, rest);
        all.chunks_exact(chunk)
            .map(|c| self.frame(c.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_split_anywhere_give_the_same_frames() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 - 5000) as i16).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        for split in [0, 1, 2, 3, 159, 321, 999, 1999, 2000] {
            let mut s = AudioByteStream::new(16_000, 2, 160);
            let mut frames = s.push(&bytes[..split]);
            frames.extend(s.push(&bytes[split..]));
            assert_eq!(frames.len(), 3, "split {split}");
            assert!(frames
                .iter()
                .all(|f| f.samples_per_channel == 160 && f.data.len() == 320));
            let tail = s.flush();
            assert_eq!(tail.len(), 1);
            assert_eq!(tail[0].samples_per_channel, 20);
            let mut all: Vec<i16> = frames.iter().flat_map(|f| f.data.clone()).collect();
            all.extend(&tail[0].data);
            assert_eq!(all, samples);
            assert!(s.flush().is_empty());
        }
    }

    #[test]
    fn sample_pushes_and_format_checks() {
        let mut s = AudioByteStream::with_frame_ms(8_000, 1, 20);
        assert_eq!(s.samples_per_channel(), 160);
        assert!(s.push_samples(&[1; 100]).is_empty());
        assert_eq!(s.buffered_samples_per_channel(), 100);
        let out = s.push_samples(&[2; 400]);
        assert_eq!(out.len(), 3);
        assert_eq!(s.buffered_samples_per_channel(), 20);
        let wrong = AudioFrame::silence(16_000, 1, 10);
        assert!(matches!(
            s.push_frame(&wrong),
            Err(AudioError::FormatMismatch { .. })
        ));
        let right = AudioFrame::silence(8_000, 1, 140);
        assert_eq!(s.push_frame(&right).unwrap().len(), 1);
        s.push_samples(&[1, 2, 3]);
        s.clear();
        assert!(s.flush().is_empty());
    }

    #[test]
    fn flush_drops_partial_samples() {
        let mut s = AudioByteStream::new(8_000, 2, 4);
        assert!(s.push(&[1, 0, 2, 0, 3]).is_empty());
        let out = s.flush();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, [1, 2]);
        // A lone sample of a stereo pair is dropped.
        s.push_samples(&[7]);
        assert!(s.flush().is_empty());
    }
}
