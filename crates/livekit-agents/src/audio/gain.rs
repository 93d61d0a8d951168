//! Click-free volume: [`GainRamp`] (a gain that moves to a new value linearly over a short
//! ramp instead of jumping) and [`GainAudioOutput`], an [`AudioOutput`] wrapper that applies a
//! run-time adjustable gain to the agent's speech.
//!
//! Gains are linear factors (`1.0` unchanged, `0.5` about -6 dB, `0.0` silence); the reference's
//! volume tool works on 0-100, which is `volume / 100.0` here. Samples are scaled in `f32`,
//! rounded to the nearest integer and clamped to the 16-bit range, so a gain of exactly `1.0`
//! leaves every sample untouched and the result of a steady gain is exact
//! (`round(sample * gain)`).

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::AudioFrame;
use crate::io::{AudioOutput, PlaybackEvent};

/// How long a volume change takes by default: 20 ms, short enough to feel immediate, long enough
/// that the step does not click.
pub const DEFAULT_GAIN_RAMP: std::time::Duration = std::time::Duration::from_millis(20);

/// A gain that ramps linearly (per sample) to a new target instead of jumping.
///
/// ```
/// use livekit_agents::audio::GainRamp;
///
/// let mut gain = GainRamp::new(1.0);
/// gain.set_target(0.0, 4); // reach 0.0 over 4 samples
/// let mut samples = [1000i16; 6];
/// gain.apply(&mut samples, 1);
/// assert_eq!(samples, [750, 500, 250, 0, 0, 0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GainRamp {
    current: f32,
    target: f32,
    /// Change per sample while ramping.
    step: f32,
    /// Samples (per channel) left in the ramp.
    remaining: u32,
}

impl GainRamp {
    /// A steady gain of `gain` (negative or non-finite values become `0.0`).
    pub fn new(gain: f32) -> Self {
        let gain = sanitize(gain);
        Self {
            current: gain,
            target: gain,
            step: 0.0,
            remaining: 0,
        }
    }

    /// The gain the ramp is heading to (or holds).
    pub fn target(&self) -> f32 {
        self.target
    }

    /// The gain of the next sample.
    pub fn current(&self) -> f32 {
        self.current
    }

    /// Whether the gain is steady at exactly `1.0` (samples pass untouched).
    pub fn is_unity(&self) -> bool {
        self.remaining == 0 && self.current == 1.0
    }

    /// Moves to `gain` over `ramp_samples` samples per channel (`0`: at once).
    pub fn set_target(&mut self, gain: f32, ramp_samples: u32) {
        let gain = sanitize(gain);
        self.target = gain;
        if ramp_samples == 0 || gain == self.current {
            self.current = gain;
            self.remaining = 0;
            self.step = 0.0;
        } else {
            self.step = (gain - self.current) / ramp_samples as f32;
            self.remaining = ramp_samples;
        }
    }

    /// The gain for the next sample (per channel), advancing the ramp.
    pub fn next_gain(&mut self) -> f32 {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.current = if self.remaining == 0 {
                self.target
            } else {
                self.current + self.step
            };
        }
        self.current
    }

    /// Scales interleaved `samples` of `num_channels` channels in place, advancing the ramp by
    /// one step per multi-channel sample.
    pub fn apply(&mut self, samples: &mut [i16], num_channels: u16) {
        if self.is_unity() {
            return;
        }
        let channels = num_channels.max(1) as usize;
        for chunk in samples.chunks_mut(channels) {
            let g = self.next_gain();
            for s in chunk.iter_mut() {
                *s = scale(*s, g);
            }
        }
    }
}

/// `round(sample * gain)` clamped to the 16-bit range.
pub(crate) fn scale(sample: i16, gain: f32) -> i16 {
    if gain == 1.0 {
        return sample;
    }
    (sample as f32 * gain)
        .round()
        .clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

fn sanitize(gain: f32) -> f32 {
    if gain.is_finite() && gain > 0.0 {
        gain
    } else {
        0.0
    }
}

/// Samples (per channel) of `ramp` at `sample_rate`.
pub(crate) fn ramp_samples(ramp: std::time::Duration, sample_rate: u32) -> u32 {
    let n = ramp.as_secs_f64() * sample_rate as f64;
    n.round().clamp(0.0, u32::MAX as f64) as u32
}

/// A handle that changes the gain of a [`GainAudioOutput`] at run time (cheap to clone; every
/// clone controls the same output).
#[derive(Debug, Clone)]
pub struct GainControl {
    shared: Arc<Mutex<GainState>>,
}

#[derive(Debug)]
struct GainState {
    /// The volume asked for, applied at the next captured frame.
    requested: f32,
    ramp: std::time::Duration,
    gain: GainRamp,
    /// The rate the current ramp was computed for.
    rate: u32,
}

impl GainControl {
    /// Sets the gain (linear factor; `1.0` unchanged); the change ramps over the output's ramp
    /// time so it does not click.
    pub fn set_volume(&self, gain: f32) {
        self.shared.lock().requested = sanitize(gain);
    }

    /// The gain last asked for.
    pub fn volume(&self) -> f32 {
        self.shared.lock().requested
    }
}

/// An [`AudioOutput`] that scales the agent's speech by a gain changeable at run time (through
/// its [`GainControl`]), ramping every change so it does not click.
///
/// The gain is applied when a frame is captured, so a change affects the audio captured after
/// it; what is already queued in the inner output plays at the old gain.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use livekit_agents::audio::GainAudioOutput;
/// use livekit_agents::io::{memory::MemoryAudioOutput, AudioOutput};
///
/// let speaker = MemoryAudioOutput::new();
/// let output = GainAudioOutput::new(Arc::new(speaker.clone()), 0.5);
/// let volume = output.control();
/// // ... give `output` to the session; later, e.g. from a tool:
/// volume.set_volume(0.8);
/// # }
/// ```
pub struct GainAudioOutput {
    inner: Arc<dyn AudioOutput>,
    control: GainControl,
}

impl std::fmt::Debug for GainAudioOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GainAudioOutput")
            .field("inner", &self.inner.label())
            .field("volume", &self.control.volume())
            .finish()
    }
}

impl GainAudioOutput {
    /// Wraps `inner` with a starting gain of `gain` and the default 20 ms ramp.
    pub fn new(inner: Arc<dyn AudioOutput>, gain: f32) -> Self {
        Self::with_ramp(inner, gain, DEFAULT_GAIN_RAMP)
    }

    /// Wraps `inner` with a starting gain and a ramp time for changes.
    pub fn with_ramp(inner: Arc<dyn AudioOutput>, gain: f32, ramp: std::time::Duration) -> Self {
        let gain = sanitize(gain);
        Self {
            inner,
            control: GainControl {
                shared: Arc::new(Mutex::new(GainState {
                    requested: gain,
                    ramp,
                    gain: GainRamp::new(gain),
                    rate: 0,
                })),
            },
        }
    }

    /// The handle that changes the gain.
    pub fn control(&self) -> GainControl {
        self.control.clone()
    }
}

#[async_trait]
impl AudioOutput for GainAudioOutput {
    fn label(&self) -> String {
        format!("gain({})", self.inner.label())
    }
    fn sample_rate(&self) -> Option<u32> {
        self.inner.sample_rate()
    }
    fn can_pause(&self) -> bool {
        self.inner.can_pause()
    }
    async fn capture_frame(&self, mut frame: AudioFrame) {
        {
            let mut st = self.control.shared.lock();
            let st = &mut *st;
            st.rate = frame.sample_rate;
            if st.requested != st.gain.target() {
                let n = ramp_samples(st.ramp, st.rate);
                st.gain.set_target(st.requested, n);
            }
            st.gain.apply(&mut frame.data, frame.num_channels);
        }
        self.inner.capture_frame(frame).await
    }
    fn flush(&self) {
        self.inner.flush()
    }
    fn clear_buffer(&self) {
        self.inner.clear_buffer()
    }
    fn pause(&self) {
        self.inner.pause()
    }
    fn resume(&self) {
        self.inner.resume()
    }
    fn subscribe(&self) -> broadcast::Receiver<PlaybackEvent> {
        self.inner.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::memory::MemoryAudioOutput;

    #[test]
    fn steady_gain_is_exact_and_unity_is_untouched() {
        let mut g = GainRamp::new(0.5);
        let mut s = [1001i16, -1001, 32767, -32768, 3];
        g.apply(&mut s, 1);
        assert_eq!(s, [501, -501, 16384, -16384, 2]);
        let mut unity = GainRamp::new(1.0);
        let mut s = [7i16, -7, i16::MAX, i16::MIN];
        unity.apply(&mut s, 2);
        assert_eq!(s, [7, -7, i16::MAX, i16::MIN]);
    }

    #[test]
    fn ramp_is_per_sample_and_per_frame_of_all_channels() {
        let mut g = GainRamp::new(0.0);
        g.set_target(1.0, 4);
        let mut s = [400i16; 12]; // 6 stereo samples
        g.apply(&mut s, 2);
        assert_eq!(
            s,
            [100, 100, 200, 200, 300, 300, 400, 400, 400, 400, 400, 400]
        );
        assert!(g.is_unity());
        // Over-range gains saturate instead of wrapping; bad values mean silence.
        let mut loud = GainRamp::new(4.0);
        let mut s = [20_000i16, -20_000];
        loud.apply(&mut s, 1);
        assert_eq!(s, [i16::MAX, i16::MIN]);
        assert_eq!(GainRamp::new(f32::NAN).target(), 0.0);
        assert_eq!(GainRamp::new(-1.0).target(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn output_gain_changes_ramp_at_run_time_sample_exactly() {
        let speaker = MemoryAudioOutput::new();
        // 4-sample ramp at 1 kHz = 4 ms.
        let out = GainAudioOutput::with_ramp(
            Arc::new(speaker.clone()),
            1.0,
            std::time::Duration::from_millis(4),
        );
        let control = out.control();
        let frame = |v: i16| AudioFrame::new(vec![v; 8], 1_000, 1).unwrap();
        out.capture_frame(frame(1000)).await;
        control.set_volume(0.5);
        assert_eq!(control.volume(), 0.5);
        out.capture_frame(frame(1000)).await;
        out.capture_frame(frame(1000)).await;
        out.flush();
        let mut events = out.subscribe();
        crate::io::wait_for_finished(&mut events).await;
        let played: Vec<i16> = speaker
            .played()
            .iter()
            .flat_map(|p| p.frame.data.clone())
            .collect();
        assert_eq!(&played[..8], &[1000; 8]);
        assert_eq!(&played[8..16], &[875, 750, 625, 500, 500, 500, 500, 500]);
        assert_eq!(&played[16..], &[500; 8]);
    }
}
