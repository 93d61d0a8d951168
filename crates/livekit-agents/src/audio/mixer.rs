//! Mixing background sounds: [`AudioMixer`] sums any number of sources (in-memory clips, looped
//! or not, and streams of frames) with per-source volume and fades, and [`MixingSink`] mixes
//! them into an output's playout.
//!
//! The mixer is *pulled*: whoever plays audio asks it for the next samples
//! ([`AudioMixer::mix_into`], [`AudioMixer::next_block`]). It never waits: a stream source that
//! has not produced its next samples yet contributes silence for them, so mixing cannot delay
//! the audio it is mixed into.
//!
//! Sample arithmetic is exact and documented: each source sample is scaled by its gain
//! (`round(sample * gain)`, untouched at gain 1.0), the sources are summed in 32 bits, the sum is
//! scaled by the master gain the same way, added to the samples mixed into and clamped to the
//! 16-bit range.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::gain::{ramp_samples, scale, GainRamp, DEFAULT_GAIN_RAMP};
use super::resample::Resampler;
use super::AudioFrame;
use crate::io::FrameSink;

/// How much audio a stream source may have buffered ahead of the mixer (per channel).
const STREAM_BUFFER: Duration = Duration::from_millis(500);
/// The block a [`MixingSink`] plays between the agent's frames.
const MIX_BLOCK: Duration = Duration::from_millis(10);

/// How a source is played: volume and fades (the reference's `AudioConfig` fields other than the
/// source and the probability).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct SourceOptions {
    /// Linear gain (0.0-1.0 typically; default 1.0).
    pub volume: f32,
    /// Ramp from silence to `volume` when the source starts (default none).
    pub fade_in: Duration,
    /// Ramp down to silence when the source is stopped (default none: it stops at once).
    pub fade_out: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            volume: 1.0,
            fade_in: Duration::ZERO,
            fade_out: Duration::ZERO,
        }
    }
}

struct HandleShared {
    done: watch::Sender<bool>,
    stop: AtomicBool,
    stop_notify: Notify,
    /// A volume change not yet seen by the mixer.
    volume: Mutex<Option<f32>>,
    fade_out: Duration,
    mixer: std::sync::Weak<MixerShared>,
}

/// A sound being played by an [`AudioMixer`] (or a background audio player): await it (or
/// [`wait_for_playout`](Self::wait_for_playout)) for its end, [`stop`](Self::stop) it early,
/// or change its volume. Clones refer to the same sound.
#[derive(Clone)]
pub struct PlayHandle {
    shared: Arc<HandleShared>,
}

impl std::fmt::Debug for PlayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayHandle")
            .field("done", &self.done())
            .finish()
    }
}

impl PlayHandle {
    fn new(fade_out: Duration, mixer: std::sync::Weak<MixerShared>) -> Self {
        let (done, _) = watch::channel(false);
        Self {
            shared: Arc::new(HandleShared {
                done,
                stop: AtomicBool::new(false),
                stop_notify: Notify::new(),
                volume: Mutex::new(None),
                fade_out,
                mixer,
            }),
        }
    }

    /// A handle that is already done (a weighted choice that chose silence).
    pub fn finished() -> Self {
        let h = Self::new(Duration::ZERO, std::sync::Weak::new());
        h.mark_done();
        h
    }

    /// Whether the sound finished (played out, or stopped).
    pub fn done(&self) -> bool {
        *self.shared.done.borrow()
    }

    /// Stops the sound. With a fade-out the sound ramps down first and the handle is done when
    /// the ramp has played; without one it stops (and is done) at once.
    pub fn stop(&self) {
        if self.done() {
            return;
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.stop_notify.notify_waiters();
        if self.shared.fade_out.is_zero() {
            self.mark_done();
        }
        if let Some(mixer) = self.shared.mixer.upgrade() {
            mixer.activity.notify_one();
        }
    }

    /// Changes the sound's volume (linear gain), ramped over 20 ms so it does not click.
    pub fn set_volume(&self, volume: f32) {
        *self.shared.volume.lock() = Some(volume);
    }

    /// Waits until the sound finished.
    pub async fn wait_for_playout(&self) {
        let mut rx = self.shared.done.subscribe();
        // `wait_for` returns at once if it is already done; an error means the sender is gone,
        // which cannot happen while `self` holds it.
        let _ = rx.wait_for(|d| *d).await;
    }

    fn stop_requested(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    fn mark_done(&self) {
        self.shared.done.send_replace(true);
    }
}

impl IntoFuture for PlayHandle {
    type Output = PlayHandle;
    type IntoFuture = Pin<Box<dyn Future<Output = PlayHandle> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.wait_for_playout().await;
            self
        })
    }
}

enum SourceData {
    Clip {
        samples: Arc<[i16]>,
        pos: usize,
        looped: bool,
    },
    Stream {
        queue: Arc<Mutex<StreamQueue>>,
    },
}

#[derive(Default)]
struct StreamQueue {
    samples: VecDeque<i16>,
    ended: bool,
    /// Samples arrived at least once: before that the source waits (it does not play silence).
    started: bool,
}

struct Source {
    data: SourceData,
    handle: PlayHandle,
    gain: GainRamp,
    /// Multi-channel samples produced so far.
    played: u64,
    fade_in: u64,
    fade_out: u64,
    /// `played` when the stop (with a fade-out) was first seen.
    stop_at: Option<u64>,
}

impl Source {
    /// The next multi-channel sample into `frame`, or `false` when the source is exhausted.
    /// A stream that has nothing buffered yet gives silence.
    fn next(&mut self, frame: &mut [i16]) -> bool {
        match &mut self.data {
            SourceData::Clip {
                samples,
                pos,
                looped,
            } => {
                if *pos + frame.len() > samples.len() {
                    if *looped && samples.len() >= frame.len() {
                        *pos = 0;
                    } else {
                        return false;
                    }
                }
                frame.copy_from_slice(&samples[*pos..*pos + frame.len()]);
                *pos += frame.len();
                true
            }
            SourceData::Stream { queue } => {
                let mut q = queue.lock();
                if !q.started && q.samples.len() < frame.len() {
                    return false;
                }
                q.started = true;
                if q.samples.len() >= frame.len() {
                    for s in frame.iter_mut() {
                        *s = q.samples.pop_front().unwrap_or(0);
                    }
                    true
                } else if q.ended {
                    false
                } else {
                    frame.fill(0);
                    true
                }
            }
        }
    }

    /// The fade envelope of the next sample (equal-power: `sin` in, `cos` out), or `None` when
    /// the fade-out has finished.
    fn envelope(&self) -> Option<f32> {
        let mut env = 1.0f32;
        if self.fade_in > 0 && self.played < self.fade_in {
            let phase = self.played as f32 / self.fade_in as f32;
            env *= (phase * std::f32::consts::FRAC_PI_2).sin();
        }
        if let Some(stop_at) = self.stop_at {
            let elapsed = self.played.saturating_sub(stop_at);
            if elapsed >= self.fade_out {
                return None;
            }
            let phase = elapsed as f32 / self.fade_out as f32;
            env *= (phase * std::f32::consts::FRAC_PI_2).cos();
        }
        Some(env)
    }
}

struct MixerState {
    sources: Vec<Source>,
    master: GainRamp,
    master_requested: f32,
    closed: bool,
}

struct MixerShared {
    sample_rate: u32,
    num_channels: u16,
    state: Mutex<MixerState>,
    /// Woken when a source is added or stopped.
    activity: Notify,
}

/// Sums background sources at a fixed sample rate and channel count (see the module docs).
/// Cheap to clone; clones share the sources.
///
/// ```
/// use std::sync::Arc;
/// use livekit_agents::audio::{AudioMixer, SourceOptions};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mixer = AudioMixer::new(8_000, 1);
/// let clip: Arc<[i16]> = vec![100i16; 4].into();
/// let half = SourceOptions::default().with_volume(0.5);
/// let handle = mixer.play_clip(clip, false, half);
/// let mut speech = [1000i16; 6];
/// mixer.mix_into(&mut speech);
/// assert_eq!(speech, [1050, 1050, 1050, 1050, 1000, 1000]);
/// assert!(handle.done());
/// # }
/// ```
#[derive(Clone)]
pub struct AudioMixer {
    shared: Arc<MixerShared>,
}

impl std::fmt::Debug for AudioMixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioMixer")
            .field("sample_rate", &self.shared.sample_rate)
            .field("num_channels", &self.shared.num_channels)
            .field("sources", &self.shared.state.lock().sources.len())
            .finish()
    }
}

impl AudioMixer {
    /// A mixer producing `sample_rate` Hz with `num_channels` interleaved channels (both are
    /// raised to at least 1).
    pub fn new(sample_rate: u32, num_channels: u16) -> Self {
        Self {
            shared: Arc::new(MixerShared {
                sample_rate: sample_rate.max(1),
                num_channels: num_channels.max(1),
                state: Mutex::new(MixerState {
                    sources: Vec::new(),
                    master: GainRamp::new(1.0),
                    master_requested: 1.0,
                    closed: false,
                }),
                activity: Notify::new(),
            }),
        }
    }

    /// The mixer's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.shared.sample_rate
    }

    /// The mixer's channel count.
    pub fn num_channels(&self) -> u16 {
        self.shared.num_channels
    }

    /// Whether any source is playing (a stream counts from its first samples on).
    pub fn is_active(&self) -> bool {
        let mut st = self.shared.state.lock();
        prune(&mut st.sources, self.shared.num_channels as usize);
        st.sources.iter().any(|s| {
            let waiting = match &s.data {
                SourceData::Stream { queue } => {
                    let q = queue.lock();
                    (!q.started || q.ended) && q.samples.is_empty()
                }
                SourceData::Clip { .. } => false,
            };
            let stopped = s.handle.stop_requested() && s.fade_out == 0;
            !(waiting || stopped || s.handle.done())
        })
    }

    /// Sets the gain of everything the mixer plays (ramped over 20 ms).
    pub fn set_volume(&self, volume: f32) {
        self.shared.state.lock().master_requested = volume;
    }

    /// Plays interleaved samples already at the mixer's rate and channel count, once or looped.
    /// A looped clip shorter than one multi-channel sample plays nothing.
    pub fn play_clip(
        &self,
        samples: Arc<[i16]>,
        looped: bool,
        options: SourceOptions,
    ) -> PlayHandle {
        self.add(
            SourceData::Clip {
                samples,
                pos: 0,
                looped,
            },
            options,
        )
    }

    /// Plays a stream of frames (any rate and channel count: converted to the mixer's) until it
    /// ends or the handle is stopped. Spawns the task that reads the stream, so it must be called
    /// inside a tokio runtime; the task keeps at most 500 ms buffered ahead of the mixer.
    pub fn play_stream(
        &self,
        stream: impl Stream<Item = AudioFrame> + Send + 'static,
        options: SourceOptions,
    ) -> PlayHandle {
        let queue: Arc<Mutex<StreamQueue>> = Arc::default();
        let handle = self.add(
            SourceData::Stream {
                queue: queue.clone(),
            },
            options,
        );
        let rate = self.shared.sample_rate;
        let channels = self.shared.num_channels;
        let cap = (STREAM_BUFFER.as_secs_f64() * rate as f64) as usize * channels as usize;
        let h = handle.clone();
        let mixer = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut converter: Option<Resampler> = None;
            loop {
                // Wait for room in the buffer (the mixer drains it as it plays).
                while queue.lock().samples.len() >= cap {
                    if h.stop_requested() || h.done() || mixer.strong_count() == 0 {
                        break;
                    }
                    tokio::time::sleep(STREAM_BUFFER / 5).await;
                }
                // Registered before the check, so a stop in between is not missed.
                let stopped = h.shared.stop_notify.notified();
                let mut stopped = std::pin::pin!(stopped);
                stopped.as_mut().enable();
                if h.stop_requested() || h.done() || mixer.strong_count() == 0 {
                    break;
                }
                let frame = tokio::select! {
                    f = stream.next() => f,
                    _ = stopped => None,
                };
                let Some(frame) = frame else { break };
                let samples = convert(&frame, rate, channels, &mut converter);
                let first = {
                    let mut q = queue.lock();
                    let first = !q.started && q.samples.is_empty() && !samples.is_empty();
                    q.samples.extend(samples);
                    first
                };
                if first {
                    // The source starts playing now: wake an idle playout loop.
                    if let Some(m) = mixer.upgrade() {
                        m.activity.notify_one();
                    }
                }
            }
            if let Some(rs) = converter.as_mut() {
                let mut q = queue.lock();
                for f in rs.flush() {
                    q.samples
                        .extend(remap_channels(&f.data, f.num_channels, channels));
                }
            }
            queue.lock().ended = true;
        });
        handle
    }

    fn add(&self, data: SourceData, options: SourceOptions) -> PlayHandle {
        let handle = PlayHandle::new(options.fade_out, Arc::downgrade(&self.shared));
        let rate = self.shared.sample_rate;
        let source = Source {
            data,
            handle: handle.clone(),
            gain: GainRamp::new(options.volume),
            played: 0,
            fade_in: ramp_samples(options.fade_in, rate) as u64,
            fade_out: ramp_samples(options.fade_out, rate) as u64,
            stop_at: None,
        };
        {
            let mut st = self.shared.state.lock();
            if st.closed {
                drop(st);
                handle.mark_done();
                return handle;
            }
            st.sources.push(source);
        }
        self.shared.activity.notify_one();
        handle
    }

    /// Adds the next samples of every source into `out` (interleaved, at the mixer's format),
    /// advancing the sources; finished sources are removed and their handles completed.
    pub fn mix_into(&self, out: &mut [i16]) {
        let channels = self.shared.num_channels as usize;
        let rate = self.shared.sample_rate;
        let mut st = self.shared.state.lock();
        let st = &mut *st;
        if st.master_requested != st.master.target() {
            st.master
                .set_target(st.master_requested, ramp_samples(DEFAULT_GAIN_RAMP, rate));
        }
        if st.sources.is_empty() {
            return;
        }
        for src in st.sources.iter_mut() {
            if let Some(v) = src.handle.shared.volume.lock().take() {
                src.gain
                    .set_target(v, ramp_samples(DEFAULT_GAIN_RAMP, rate));
            }
        }
        let mut frame = vec![0i16; channels];
        let mut acc = vec![0i32; channels];
        for out_frame in out.chunks_mut(channels) {
            acc.iter_mut().for_each(|a| *a = 0);
            for src in st.sources.iter_mut() {
                if src.stop_at.is_none() && src.handle.stop_requested() {
                    if src.fade_out == 0 {
                        continue;
                    }
                    src.stop_at = Some(src.played);
                }
                let Some(env) = src.envelope() else { continue };
                if !src.next(&mut frame) {
                    continue;
                }
                let g = src.gain.next_gain() * env;
                for (a, s) in acc.iter_mut().zip(frame.iter()) {
                    *a += scale(*s, g) as i32;
                }
                src.played += 1;
            }
            let m = st.master.next_gain();
            for (o, a) in out_frame.iter_mut().zip(acc.iter()) {
                let bg = if m == 1.0 {
                    *a
                } else {
                    (*a as f32 * m).round() as i32
                };
                *o = (*o as i32 + bg).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            }
        }
        prune(&mut st.sources, channels);
    }

    /// The next `samples_per_channel` of the mix alone, or `None` when nothing plays.
    pub fn next_block(&self, samples_per_channel: usize) -> Option<AudioFrame> {
        if !self.is_active() {
            return None;
        }
        let channels = self.shared.num_channels;
        let mut data = vec![0i16; samples_per_channel * channels as usize];
        self.mix_into(&mut data);
        Some(AudioFrame {
            data,
            sample_rate: self.shared.sample_rate,
            num_channels: channels,
            samples_per_channel,
        })
    }

    /// Waits until a source is added or stopped (used by playout loops that idle while the mixer
    /// is silent).
    pub async fn activity(&self) {
        self.shared.activity.notified().await
    }

    /// Stops every source and refuses new ones (their handles are done at once).
    pub fn close(&self) {
        let sources = {
            let mut st = self.shared.state.lock();
            st.closed = true;
            std::mem::take(&mut st.sources)
        };
        for s in sources {
            s.handle.shared.stop.store(true, Ordering::SeqCst);
            s.handle.shared.stop_notify.notify_waiters();
            s.handle.mark_done();
        }
        self.shared.activity.notify_one();
    }

    /// A [`FrameSink`] that mixes this mixer into `sink`'s playout: see [`MixingSink`].
    pub fn sink(&self, sink: impl FrameSink) -> MixingSink {
        MixingSink::new(self.clone(), sink)
    }
}

/// Removes the sources that finished (played out, stopped, faded out) and completes their
/// handles; a looped clip or a live stream stays.
fn prune(sources: &mut Vec<Source>, channels: usize) {
    sources.retain_mut(|src| {
        let finished = src.handle.done()
            || (src.handle.stop_requested() && (src.fade_out == 0 || src.envelope().is_none()))
            || match &src.data {
                SourceData::Clip {
                    samples,
                    pos,
                    looped,
                } => {
                    let left = samples.len().saturating_sub(*pos);
                    left < channels && !(*looped && samples.len() >= channels)
                }
                SourceData::Stream { queue } => {
                    let q = queue.lock();
                    q.ended && q.samples.len() < channels
                }
            };
        if finished {
            src.handle.mark_done();
        }
        !finished
    });
}

/// Converts a frame to `rate` / `channels` (interleaved samples).
fn convert(
    frame: &AudioFrame,
    rate: u32,
    channels: u16,
    converter: &mut Option<Resampler>,
) -> Vec<i16> {
    // A frame claiming an absurd rate would resample to an absurd size: skip it.
    if !(1_000..=384_000).contains(&frame.sample_rate) {
        tracing::debug!(rate = frame.sample_rate, "background audio: frame skipped");
        return Vec::new();
    }
    let resampled: Vec<AudioFrame> = if frame.sample_rate == rate {
        vec![frame.clone()]
    } else {
        let fits = converter.as_ref().is_some_and(|r| {
            r.input_rate() == frame.sample_rate && r.num_channels() == frame.num_channels
        });
        if !fits {
            *converter = Resampler::new(frame.sample_rate, rate, frame.num_channels).ok();
        }
        match converter.as_mut().map(|r| r.push(frame)) {
            Some(Ok(frames)) => frames,
            _ => Vec::new(),
        }
    };
    let mut out = Vec::new();
    for f in resampled {
        out.extend(remap_channels(&f.data, f.num_channels, channels));
    }
    out
}

/// Interleaved samples of `from` channels as `to` channels: mono is copied to every channel,
/// more channels are averaged down to mono first.
pub(crate) fn remap_channels(samples: &[i16], from: u16, to: u16) -> Vec<i16> {
    let from = from.max(1) as usize;
    let to = to.max(1) as usize;
    if from == to {
        return samples.to_vec();
    }
    let mut out = Vec::with_capacity(samples.len() / from * to);
    for frame in samples.chunks_exact(from) {
        let mono = if from == 1 {
            frame[0]
        } else {
            (frame.iter().map(|&s| s as i32).sum::<i32>() / from as i32) as i16
        };
        out.extend(std::iter::repeat_n(mono, to));
    }
    out
}

/// A [`FrameSink`] that mixes an [`AudioMixer`] into another sink's playout.
///
/// Frames of the agent's speech pass straight through at the moment they start playing, with
/// the mixer's next samples added (sample-exact, see [`AudioMixer::mix_into`]): mixing adds
/// no wait. While no speech plays and the mixer has a source, a task plays 10 ms blocks of the
/// mix alone into the sink on tokio's clock, resuming right where the speech ended. A sink that
/// writes sequentially (a file, a device buffer) can therefore hold one block (10 ms) of
/// background ahead of the first frame of a reply. Frames in another format than the mixer's
/// pass through unmixed.
///
/// With no source playing, the sink behaves exactly as the wrapped one.
pub struct MixingSink {
    mixer: AudioMixer,
    sink: Arc<Mutex<Box<dyn FrameSink>>>,
    speech_until: Arc<Mutex<Option<Instant>>>,
    _ticker: AbortOnDropHandle<()>,
}

impl std::fmt::Debug for MixingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixingSink")
            .field("mixer", &self.mixer)
            .finish_non_exhaustive()
    }
}

impl MixingSink {
    /// Mixes `mixer` into `sink`. Spawns the background playout task (must be called inside a
    /// tokio runtime); it stops when the sink is dropped.
    pub fn new(mixer: AudioMixer, sink: impl FrameSink) -> Self {
        let sink: Arc<Mutex<Box<dyn FrameSink>>> = Arc::new(Mutex::new(Box::new(sink)));
        let speech_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let ticker = tokio::spawn(background_playout(
            mixer.clone(),
            sink.clone(),
            speech_until.clone(),
        ));
        Self {
            mixer,
            sink,
            speech_until,
            _ticker: AbortOnDropHandle::new(ticker),
        }
    }

    /// The mixer.
    pub fn mixer(&self) -> &AudioMixer {
        &self.mixer
    }
}

impl FrameSink for MixingSink {
    fn play(&mut self, frame: &AudioFrame) {
        let now = Instant::now();
        {
            let mut until = self.speech_until.lock();
            let start = until.filter(|u| *u > now).unwrap_or(now);
            *until = Some(start + frame.duration());
        }
        let matches = frame.sample_rate == self.mixer.sample_rate()
            && frame.num_channels == self.mixer.num_channels();
        if matches && self.mixer.is_active() {
            let mut mixed = frame.clone();
            self.mixer.mix_into(&mut mixed.data);
            self.sink.lock().play(&mixed);
        } else {
            self.sink.lock().play(frame);
        }
    }
}

async fn background_playout(
    mixer: AudioMixer,
    sink: Arc<Mutex<Box<dyn FrameSink>>>,
    speech_until: Arc<Mutex<Option<Instant>>>,
) {
    let block = ((mixer.sample_rate() as u128 * MIX_BLOCK.as_millis()) / 1000).max(1) as usize;
    let block_duration = Duration::from_secs_f64(block as f64 / mixer.sample_rate() as f64);
    let mut clock: Option<Instant> = None;
    loop {
        if !mixer.is_active() {
            clock = None;
            mixer.activity().await;
            continue;
        }
        let now = Instant::now();
        // Blocks follow each other back to back; a clock far behind (a stall) restarts now.
        let mut at = clock
            .filter(|c| *c + Duration::from_millis(100) >= now)
            .unwrap_or(now);
        if let Some(until) = *speech_until.lock() {
            at = at.max(until);
        }
        if at > now {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = mixer.activity() => {}
            }
            continue;
        }
        if let Some(frame) = mixer.next_block(block) {
            sink.lock().play(&frame);
        }
        clock = Some(at + block_duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(v: &[i16]) -> Arc<[i16]> {
        v.to_vec().into()
    }

    #[test]
    fn mixing_is_sample_exact_with_gains_and_saturation() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _g = rt.enter();
        let mixer = AudioMixer::new(1_000, 1);
        let a = mixer.play_clip(clip(&[100, 200, 300]), false, SourceOptions::default());
        let b = mixer.play_clip(
            clip(&[1000, -1000, 1001, 5]),
            false,
            SourceOptions {
                volume: 0.5,
                ..Default::default()
            },
        );
        let mut out = [10i16, 20, 30, 32_766, -5];
        mixer.mix_into(&mut out);
        // 10+100+500, 20+200-500, 30+300+501 (round half away from zero), 32766+3 saturates
        assert_eq!(out, [610, -280, 831, i16::MAX, -5]);
        assert!(a.done() && b.done());
        assert!(!mixer.is_active());
        assert!(mixer.next_block(4).is_none());
    }

    #[test]
    fn looped_clips_wrap_and_stop_ends_them() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _g = rt.enter();
        let mixer = AudioMixer::new(1_000, 2);
        let h = mixer.play_clip(clip(&[1, 2, 3, 4]), true, SourceOptions::default());
        let f = mixer.next_block(3).unwrap();
        assert_eq!(f.data, [1, 2, 3, 4, 1, 2]);
        assert_eq!((f.num_channels, f.samples_per_channel), (2, 3));
        h.stop();
        assert!(h.done());
        assert!(mixer.next_block(1).is_none());
        assert!(!mixer.is_active());
    }

    #[test]
    fn fades_are_equal_power_and_the_handle_waits_for_the_fade_out() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _g = rt.enter();
        let mixer = AudioMixer::new(1_000, 1);
        let h = mixer.play_clip(
            clip(&[10_000; 100]),
            true,
            SourceOptions {
                volume: 1.0,
                fade_in: Duration::from_millis(2),
                fade_out: Duration::from_millis(2),
            },
        );
        let f = mixer.next_block(3).unwrap();
        // sin(0), sin(pi/4), then full.
        assert_eq!(f.data, [0, 7071, 10_000]);
        h.stop();
        assert!(!h.done());
        let f = mixer.next_block(3).unwrap();
        assert_eq!(f.data, [10_000, 7071, 0]);
        assert!(h.done());
    }

    #[test]
    fn volume_changes_ramp_and_master_scales_the_sum() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _g = rt.enter();
        let mixer = AudioMixer::new(200, 1); // 20 ms ramp = 4 samples
        let h = mixer.play_clip(clip(&[1000; 50]), true, SourceOptions::default());
        h.set_volume(0.0);
        assert_eq!(mixer.next_block(6).unwrap().data, [750, 500, 250, 0, 0, 0]);
        h.set_volume(1.0);
        mixer.set_volume(0.5);
        assert_eq!(
            mixer.next_block(5).unwrap().data,
            // source 250, 500, 750, 1000, 1000 times master 0.875, 0.75, 0.625, 0.5, 0.5
            [219, 375, 469, 500, 500]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn streams_are_converted_buffered_and_end() {
        let mixer = AudioMixer::new(1_000, 1);
        let frames = vec![
            AudioFrame::new(vec![100, 100, 300, 300], 1_000, 2).unwrap(),
            AudioFrame::new(vec![7; 3], 1_000, 1).unwrap(),
        ];
        let h = mixer.play_stream(futures::stream::iter(frames), SourceOptions::default());
        // Nothing read yet: the source waits for its first samples (it is not active yet).
        assert!(mixer.next_block(1).is_none());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(mixer.next_block(6).unwrap().data, [100, 300, 7, 7, 7, 0]);
        assert!(h.done());

        // Once started, a stream that falls behind gives silence rather than a wait.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let h = mixer.play_stream(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            SourceOptions::default(),
        );
        tx.send(AudioFrame::new(vec![5, 5], 1_000, 1).unwrap())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(mixer.next_block(4).unwrap().data, [5, 5, 0, 0]);
        drop(tx);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(mixer.next_block(1).is_none());
        assert!(h.done());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sink_mixes_speech_and_fills_the_gaps_on_the_clock() {
        let played: Arc<Mutex<Vec<(Duration, AudioFrame)>>> = Arc::default();
        let rec = played.clone();
        let t0 = Instant::now();
        let mixer = AudioMixer::new(1_000, 1);
        let mut sink = mixer.sink(move |f: &AudioFrame| rec.lock().push((t0.elapsed(), f.clone())));
        // Nothing plays: the sink is the wrapped one.
        sink.play(&AudioFrame::new(vec![5; 10], 1_000, 1).unwrap());
        let h = mixer.play_clip(clip(&[1; 1000]), true, SourceOptions::default());
        tokio::time::sleep(Duration::from_millis(35)).await;
        sink.play(&AudioFrame::new(vec![1000; 20], 1_000, 1).unwrap());
        tokio::time::sleep(Duration::from_millis(45)).await;
        h.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let played = played.lock().clone();
        let summary: Vec<(u128, usize, i16)> = played
            .iter()
            .map(|(t, f)| (t.as_millis(), f.samples_per_channel, f.data[0]))
            .collect();
        assert_eq!(
            summary,
            [
                (0, 10, 5),
                // Background blocks start after the speech frame (it plays until 10 ms).
                (10, 10, 1),
                (20, 10, 1),
                (30, 10, 1),
                // Speech at 35 ms, with the background mixed in.
                (35, 20, 1001),
                // Gaps resume where the speech ended.
                (55, 10, 1),
                (65, 10, 1),
                (75, 10, 1),
            ]
        );
        assert!(played
            .iter()
            .all(|(_, f)| f.data.iter().all(|&s| s == f.data[0])));
    }
}
