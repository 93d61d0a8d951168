//! Audio bookkeeping of streaming recognizers: fixed-size chunks, the audio to resend after a
//! reconnect, and keepalive deadlines.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Re-chunks interleaved samples into fixed-size chunks (providers recommend 20-100 ms).
#[derive(Debug)]
pub struct Chunker {
    pending: Vec<i16>,
    chunk_len: usize,
}

impl Chunker {
    /// Chunks of `chunk_ms` at `sample_rate` with `channels` interleaved channels.
    pub fn new(sample_rate: u32, channels: u16, chunk_ms: u32) -> Self {
        let per_channel = (sample_rate as usize * chunk_ms as usize / 1000).max(1);
        Self {
            pending: Vec::new(),
            chunk_len: per_channel * channels.max(1) as usize,
        }
    }

    /// Adds samples to the pending audio.
    pub fn push(&mut self, samples: &[i16]) {
        self.pending.extend_from_slice(samples);
    }

    /// The next full chunk, if any.
    pub fn next_full(&mut self) -> Option<Vec<i16>> {
        if self.pending.len() >= self.chunk_len {
            Some(self.pending.drain(..self.chunk_len).collect())
        } else {
            None
        }
    }

    /// Whatever is left (a partial chunk), on flush.
    pub fn take_rest(&mut self) -> Option<Vec<i16>> {
        if self.pending.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pending))
        }
    }
}

/// Little-endian bytes of samples (`linear16` / `pcm_s16le`).
pub fn to_le_bytes(samples: &[i16]) -> Bytes {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    Bytes::from(out)
}

/// The audio a streaming recognizer has sent but the provider has not finalized yet, with the
/// stream positions needed to keep timestamps monotonic across connections.
///
/// Positions are in samples per channel from the start of the stream. Each connection starts
/// by resending the unfinalized audio, so its time zero is [`ReplayBuffer::start_pos`] at
/// connect time; provider timestamps are shifted by that amount.
#[derive(Debug)]
pub struct ReplayBuffer {
    sample_rate: u32,
    channels: u16,
    samples: VecDeque<i16>,
    start_pos: u64,
    max_samples: u64,
}

impl ReplayBuffer {
    /// A buffer keeping at most `max_secs` of audio (older audio is dropped first, so memory
    /// stays bounded even if the provider never finalizes).
    pub fn new(sample_rate: u32, channels: u16, max_secs: f64) -> Self {
        Self {
            sample_rate: sample_rate.max(1),
            channels: channels.max(1),
            samples: VecDeque::new(),
            start_pos: 0,
            max_samples: (max_secs * sample_rate as f64) as u64,
        }
    }

    /// Sample rate of the audio.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Interleaved channels of the audio.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Stream position of the oldest unfinalized sample.
    pub fn start_pos(&self) -> u64 {
        self.start_pos
    }

    /// Stream position just after the last sample sent.
    pub fn end_pos(&self) -> u64 {
        self.start_pos + (self.samples.len() / self.channels as usize) as u64
    }

    /// Records audio just sent.
    pub fn push(&mut self, samples: &[i16]) {
        self.samples.extend(samples.iter().copied());
        let held = (self.samples.len() / self.channels as usize) as u64;
        if held > self.max_samples {
            let excess = held - self.max_samples;
            tracing::debug!(
                dropped_secs = excess as f64 / self.sample_rate as f64,
                "replay buffer full, dropping oldest unfinalized audio"
            );
            self.drop_before(self.start_pos + excess);
        }
    }

    /// Forgets audio before stream position `pos` (the provider finalized it).
    pub fn drop_before(&mut self, pos: u64) {
        if pos <= self.start_pos {
            return;
        }
        let n = (pos.min(self.end_pos()) - self.start_pos) as usize;
        self.samples.drain(..n * self.channels as usize);
        self.start_pos += n as u64;
    }

    /// Forgets audio up to `secs` after `conn_start_pos` (a provider timestamp of the
    /// connection that started at that position). Any `secs` is safe: non-finite or negative
    /// values are ignored, huge ones finalize everything held.
    pub fn finalize_until(&mut self, conn_start_pos: u64, secs: f64) {
        if secs.is_finite() && secs > 0.0 {
            // Provider-supplied: the conversion saturates, and so must the sum.
            let pos =
                conn_start_pos.saturating_add((secs * self.sample_rate as f64).round() as u64);
            self.drop_before(pos);
        }
    }

    /// The unfinalized audio, in chunks of at most `chunk_len` interleaved samples.
    pub fn chunks(&self, chunk_len: usize) -> Vec<Vec<i16>> {
        let all: Vec<i16> = self.samples.iter().copied().collect();
        all.chunks(chunk_len.max(1)).map(<[i16]>::to_vec).collect()
    }
}

/// When the next keepalive message is due: `interval` after the last thing sent (providers
/// close idle sockets, e.g. Deepgram after 10 s without data).
#[derive(Debug, Clone, Copy)]
pub struct KeepAlive {
    interval: Duration,
    deadline: Instant,
}

impl KeepAlive {
    /// The first keepalive is due `interval` after `now`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            deadline: now + interval,
        }
    }

    /// Something was sent at `now`: push the deadline back.
    pub fn sent(&mut self, now: Instant) {
        self.deadline = now + self.interval;
    }

    /// When the next keepalive is due.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunker_splits_and_flushes() {
        let mut c = Chunker::new(1000, 1, 50);
        c.push(&[1; 120]);
        assert_eq!(c.next_full().unwrap().len(), 50);
        assert_eq!(c.next_full().unwrap().len(), 50);
        assert!(c.next_full().is_none());
        assert_eq!(c.take_rest().unwrap().len(), 20);
        assert!(c.take_rest().is_none());
        assert_eq!(Chunker::new(1000, 2, 10).chunk_len, 20);
        assert_eq!(to_le_bytes(&[1, -2]).as_ref(), &[1, 0, 0xfe, 0xff]);
    }

    #[test]
    fn replay_buffer_tracks_positions_and_is_bounded() {
        let mut r = ReplayBuffer::new(100, 1, 1.0);
        r.push(&(0..80).collect::<Vec<i16>>());
        assert_eq!((r.start_pos(), r.end_pos()), (0, 80));
        r.finalize_until(0, 0.5);
        assert_eq!(r.start_pos(), 50);
        assert_eq!(r.chunks(100), vec![(50..80).collect::<Vec<i16>>()]);
        r.push(&(80..200).collect::<Vec<i16>>());
        // Bounded at one second (100 samples).
        assert_eq!((r.start_pos(), r.end_pos()), (100, 200));
        // Timestamps of a connection that started at position 100.
        r.finalize_until(100, 0.25);
        assert_eq!(r.start_pos(), 125);
        r.drop_before(130);
        assert_eq!(r.start_pos(), 130);
        r.finalize_until(0, f64::NAN);
        assert_eq!(r.start_pos(), 130);
        // Issue 15 items 3/4: an absurd final window after a reconnect (connection start > 0)
        // used to overflow the position sum.
        r.finalize_until(100, 1e300);
        assert_eq!((r.start_pos(), r.end_pos()), (200, 200));
        r.finalize_until(u64::MAX, f64::MAX);
        r.finalize_until(u64::MAX, f64::INFINITY);
        assert_eq!(r.start_pos(), 200);
    }

    #[test]
    fn replay_buffer_counts_positions_per_channel() {
        let mut r = ReplayBuffer::new(10, 2, 10.0);
        r.push(&[1, 2, 3, 4, 5, 6]);
        assert_eq!((r.channels(), r.end_pos()), (2, 3));
        r.drop_before(1);
        assert_eq!(r.chunks(4), vec![vec![3, 4, 5, 6]]);
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_deadline_moves_with_each_send() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(5), t0);
        assert_eq!(k.deadline() - t0, Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(3)).await;
        k.sent(Instant::now());
        assert_eq!(k.deadline() - t0, Duration::from_secs(8));
        tokio::time::sleep_until(k.deadline()).await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(8));
    }
}
