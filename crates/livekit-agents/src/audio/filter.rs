//! Filters on the user's audio, applied before VAD and STT: the [`AudioFilter`] trait, a
//! [`FilterChain`], noise suppression ([`NoiseSuppressor`], feature `noise-suppression`, on by
//! default: `nnnoiseless`, a pure-Rust port of RNNoise) and automatic gain control
//! ([`AutoGainControl`]).
//!
//! A session applies filters through [`SessionOptions::audio_filter`](crate::voice::SessionOptions::audio_filter):
//! an [`AudioFilterFactory`] that builds the filter for the participant the input comes from,
//! so a phone caller (SIP) can get a filter tuned for telephone audio and a browser user another
//! one, as the reference does with `noise_cancellation=lambda params: ...`. Any
//! [`AudioInput`] can also be wrapped directly with [`AudioInput::filtered`].

use std::fmt;
use std::sync::Arc;

use futures::StreamExt;

use super::AudioFrame;
use crate::io::AudioInput;
use crate::room_logic::ParticipantKind;

/// A stage that processes the user's audio (noise suppression, gain control, ...).
///
/// A filter may change the frames' format (the session's stages accept any rate and channel
/// count) and may hold samples back (a filter working in fixed blocks), returning them later or
/// from [`flush`](Self::flush) when the input ends.
pub trait AudioFilter: Send + 'static {
    /// A short name for logs.
    fn label(&self) -> String;
    /// Processes one frame; returns the frames ready now (possibly none).
    fn process(&mut self, frame: AudioFrame) -> Vec<AudioFrame>;
    /// Returns what is held back, at the end of the input.
    fn flush(&mut self) -> Vec<AudioFrame> {
        Vec::new()
    }
}

/// Several filters applied in order.
#[derive(Default)]
pub struct FilterChain {
    stages: Vec<Box<dyn AudioFilter>>,
}

impl fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterChain")
            .field("stages", &self.label())
            .finish()
    }
}

impl FilterChain {
    /// A chain of `stages` (applied first to last).
    pub fn new(stages: Vec<Box<dyn AudioFilter>>) -> Self {
        Self { stages }
    }

    /// Appends a stage.
    pub fn push(mut self, stage: impl AudioFilter) -> Self {
        self.stages.push(Box::new(stage));
        self
    }
}

impl AudioFilter for FilterChain {
    fn label(&self) -> String {
        self.stages
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join("+")
    }

    fn process(&mut self, frame: AudioFrame) -> Vec<AudioFrame> {
        let mut frames = vec![frame];
        for stage in &mut self.stages {
            frames = frames.into_iter().flat_map(|f| stage.process(f)).collect();
        }
        frames
    }

    fn flush(&mut self) -> Vec<AudioFrame> {
        let mut carry: Vec<AudioFrame> = Vec::new();
        for stage in &mut self.stages {
            let mut out: Vec<AudioFrame> =
                carry.into_iter().flat_map(|f| stage.process(f)).collect();
            out.extend(stage.flush());
            carry = out;
        }
        carry
    }
}

/// Who the filtered audio comes from, given to an [`AudioFilterFactory`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterParams {
    /// The participant's identity, when the audio comes from a room.
    pub participant_identity: Option<String>,
    /// The participant's kind (e.g. [`ParticipantKind::Sip`] for a phone caller), when known.
    pub participant_kind: Option<ParticipantKind>,
    /// The participant's attributes when known (a phone call's `sip.*` attributes tell an
    /// inbound call from an outbound one: the session's AEC warm-up depends on it).
    pub participant_attributes: std::collections::HashMap<String, String>,
}

type FactoryFn = dyn Fn(&FilterParams) -> Option<Box<dyn AudioFilter>> + Send + Sync;

/// Builds the filter for an input's participant (`None`: leave that audio unfiltered).
///
/// ```
/// use livekit_agents::audio::AudioFilterFactory;
/// use livekit_agents::audio::{AutoGainControl, AudioFilter, FilterChain};
/// use livekit_agents::room_logic::ParticipantKind;
///
/// // Phone callers get gain control only; everyone else noise suppression and gain control.
/// let factory = AudioFilterFactory::new(|params| {
///     let agc = AutoGainControl::default();
///     let filter: Box<dyn AudioFilter> = if params.participant_kind == Some(ParticipantKind::Sip) {
///         Box::new(agc)
///     } else {
///         # #[cfg(feature = "noise-suppression")]
///         # return Some(Box::new(FilterChain::default()
///         #     .push(livekit_agents::audio::NoiseSuppressor::new()).push(agc)));
///         Box::new(FilterChain::default().push(agc))
///     };
///     Some(filter)
/// });
/// ```
#[derive(Clone)]
pub struct AudioFilterFactory {
    build: Arc<FactoryFn>,
}

impl fmt::Debug for AudioFilterFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AudioFilterFactory")
    }
}

impl AudioFilterFactory {
    /// A factory from a function of the participant.
    pub fn new(
        build: impl Fn(&FilterParams) -> Option<Box<dyn AudioFilter>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            build: Arc::new(build),
        }
    }

    /// The filter for `params`.
    pub fn build(&self, params: &FilterParams) -> Option<Box<dyn AudioFilter>> {
        (self.build)(params)
    }
}

impl AudioInput {
    /// This input with `filter` applied to every frame (held-back audio is flushed when the
    /// input ends).
    pub fn filtered(self, filter: Box<dyn AudioFilter>) -> AudioInput {
        let label = format!("{}+{}", self.label(), filter.label());
        let mut filter = Some(filter);
        self.filter_with(label, move |_| filter.take(), false)
    }

    /// This input filtered by what `factory` builds for its participant; when the input
    /// switches to another participant (a room's linked participant changes), the old filter is
    /// flushed and a new one built. Frames pass unchanged while the factory builds nothing.
    pub fn filtered_by(self, factory: &AudioFilterFactory) -> AudioInput {
        let label = self.label().to_owned();
        let factory = factory.clone();
        self.filter_with(label, move |params| factory.build(params), true)
    }

    fn filter_with(
        self,
        label: String,
        mut build: impl FnMut(&FilterParams) -> Option<Box<dyn AudioFilter>> + Send + 'static,
        follow: bool,
    ) -> AudioInput {
        let mut updates = self.participant_updates();
        let initial = updates.borrow_and_update().clone();
        let filter = build(&initial);
        if let Some(f) = &filter {
            tracing::debug!(filter = %f.label(), input = %self.label(), "filtering user audio");
        }
        let frames = self.into_stream();
        struct St<B> {
            frames: std::pin::Pin<Box<dyn futures::Stream<Item = AudioFrame> + Send>>,
            filter: Option<Box<dyn AudioFilter>>,
            ready: std::collections::VecDeque<AudioFrame>,
            updates: tokio::sync::watch::Receiver<FilterParams>,
            build: B,
            follow: bool,
            ended: bool,
        }
        let state = St {
            frames,
            filter,
            ready: Default::default(),
            updates: updates.clone(),
            build,
            follow,
            ended: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(f) = st.ready.pop_front() {
                    return Some((f, st));
                }
                if st.ended {
                    return None;
                }
                match st.frames.next().await {
                    Some(frame) => {
                        if st.follow && st.updates.has_changed().unwrap_or(false) {
                            let params = st.updates.borrow_and_update().clone();
                            if let Some(mut old) = st.filter.take() {
                                st.ready.extend(old.flush());
                            }
                            st.filter = (st.build)(&params);
                        }
                        match st.filter.as_mut() {
                            Some(stage) => st.ready.extend(stage.process(frame)),
                            None => st.ready.push_back(frame),
                        }
                    }
                    None => {
                        if let Some(mut stage) = st.filter.take() {
                            st.ready.extend(stage.flush());
                        }
                        st.ended = true;
                    }
                }
            }
        });
        AudioInput::from_stream(label, stream).with_participant_updates(updates)
    }
}

/// Settings of [`AutoGainControl`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct AgcOptions {
    /// The speech level aimed at, RMS in dBFS (default -20).
    pub target_dbfs: f32,
    /// The most gain applied, dB (default 24: quiet phone lines are raised up to 16x).
    pub max_gain_db: f32,
    /// The least gain applied, dB (default -12: loud input is lowered up to 4x).
    pub min_gain_db: f32,
    /// Blocks below this RMS (dBFS) are treated as silence: they do not change the level
    /// estimate, so noise between words is not pumped up (default -50).
    pub noise_gate_dbfs: f32,
    /// How fast the gain may rise, dB per second (default 12).
    pub max_rise_db_per_sec: f32,
    /// How fast the gain may fall, dB per second (default 60; loud input is turned down fast).
    pub max_fall_db_per_sec: f32,
}

impl Default for AgcOptions {
    fn default() -> Self {
        Self {
            target_dbfs: -20.0,
            max_gain_db: 24.0,
            min_gain_db: -12.0,
            noise_gate_dbfs: -50.0,
            max_rise_db_per_sec: 12.0,
            max_fall_db_per_sec: 60.0,
        }
    }
}

/// Automatic gain control: brings speech to a steady level ([`AgcOptions::target_dbfs`])
/// whatever the microphone or phone line, like the reference's built-in AGC (on by default in
/// the reference's room input; here opt in through a filter).
///
/// Works in 10 ms blocks: the RMS of each block above the noise gate updates the speech level
/// estimate, the gain moves towards `target / level` within the rise/fall rates (ramped per
/// sample, no clicks) and is limited so that no sample clips. Frames keep their format and
/// length (nothing is held back).
#[derive(Debug, Clone)]
pub struct AutoGainControl {
    options: AgcOptions,
    /// Current gain in dB.
    gain_db: f32,
}

impl Default for AutoGainControl {
    fn default() -> Self {
        Self::new(AgcOptions::default())
    }
}

impl AutoGainControl {
    /// An AGC with `options`, starting at 0 dB.
    pub fn new(options: AgcOptions) -> Self {
        Self {
            options,
            gain_db: 0.0,
        }
    }

    /// The gain applied now, dB.
    pub fn gain_db(&self) -> f32 {
        self.gain_db
    }
}

impl AudioFilter for AutoGainControl {
    fn label(&self) -> String {
        "agc".into()
    }

    fn process(&mut self, mut frame: AudioFrame) -> Vec<AudioFrame> {
        let channels = frame.num_channels.max(1) as usize;
        let block = ((frame.sample_rate / 100).max(1) as usize) * channels;
        let o = self.options;
        let block_secs = 0.01f32;
        for chunk in frame.data.chunks_mut(block) {
            let (sum, peak) = chunk.iter().fold((0f64, 0i32), |(s, p), &x| {
                (s + (x as f64) * (x as f64), p.max((x as i32).abs()))
            });
            let rms = (sum / chunk.len().max(1) as f64).sqrt() as f32 / 32768.0;
            let level_db = 20.0 * rms.max(1e-9).log10();
            let start = 10f32.powf(self.gain_db / 20.0);
            if level_db > o.noise_gate_dbfs {
                let wanted = (o.target_dbfs - level_db).clamp(o.min_gain_db, o.max_gain_db);
                let step = wanted - self.gain_db;
                let step = step.clamp(
                    -o.max_fall_db_per_sec * block_secs,
                    o.max_rise_db_per_sec * block_secs,
                );
                self.gain_db += step;
            }
            let mut end = 10f32.powf(self.gain_db / 20.0);
            // Never clip: cap the gain at what keeps the block's peak below full scale.
            if peak > 0 {
                let limit = 32_000.0 / peak as f32;
                if end > limit {
                    end = limit;
                    self.gain_db = 20.0 * limit.log10();
                }
            }
            let start = start.min(32_000.0 / peak.max(1) as f32);
            let n = (chunk.len() / channels).max(1);
            for (i, frame) in chunk.chunks_mut(channels).enumerate() {
                let g = start + (end - start) * (i + 1) as f32 / n as f32;
                for s in frame.iter_mut() {
                    *s = super::gain::scale(*s, g);
                }
            }
        }
        vec![frame]
    }
}

/// Noise suppression with RNNoise (`nnnoiseless`): removes steady background noise (fans,
/// traffic, keyboard hiss) from speech.
///
/// RNNoise works on 10 ms blocks of 48 kHz mono audio: frames are mixed down to mono and
/// resampled to 48 kHz as needed, and the output is resampled back to the input's rate, so the
/// filter adds 10 ms of delay (plus the resampler's few milliseconds at other rates) and its
/// output is mono.
#[cfg(feature = "noise-suppression")]
pub struct NoiseSuppressor {
    state: Box<nnnoiseless::DenoiseState<'static>>,
    rate: u32,
    to_48k: Option<super::resample::Resampler>,
    from_48k: Option<super::resample::Resampler>,
    pending: Vec<f32>,
    out: Vec<f32>,
}

#[cfg(feature = "noise-suppression")]
impl fmt::Debug for NoiseSuppressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseSuppressor")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "noise-suppression")]
impl Default for NoiseSuppressor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "noise-suppression")]
impl NoiseSuppressor {
    /// A new suppressor (its model is built into the crate; nothing is downloaded).
    pub fn new() -> Self {
        Self {
            state: nnnoiseless::DenoiseState::new(),
            rate: 0,
            to_48k: None,
            from_48k: None,
            pending: Vec::new(),
            out: vec![0.0; nnnoiseless::DenoiseState::FRAME_SIZE],
        }
    }

    fn set_rate(&mut self, rate: u32) {
        if rate == self.rate {
            return;
        }
        self.rate = rate;
        self.pending.clear();
        if rate == 48_000 {
            self.to_48k = None;
            self.from_48k = None;
        } else {
            self.to_48k = super::resample::Resampler::new(rate, 48_000, 1).ok();
            self.from_48k = super::resample::Resampler::new(48_000, rate, 1).ok();
        }
    }

    /// Denoises whole 480-sample blocks of `pending` into 48 kHz frames.
    fn run(&mut self) -> Vec<AudioFrame> {
        const N: usize = nnnoiseless::DenoiseState::FRAME_SIZE;
        let blocks = self.pending.len() / N;
        if blocks == 0 {
            return Vec::new();
        }
        let mut data = Vec::with_capacity(blocks * N);
        for block in self.pending.chunks_exact(N) {
            self.state.process_frame(&mut self.out, block);
            data.extend(
                self.out
                    .iter()
                    .map(|s| s.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16),
            );
        }
        self.pending.drain(..blocks * N);
        vec![AudioFrame {
            samples_per_channel: data.len(),
            data,
            sample_rate: 48_000,
            num_channels: 1,
        }]
    }

    fn back(&mut self, frames: Vec<AudioFrame>) -> Vec<AudioFrame> {
        match self.from_48k.as_mut() {
            None => frames,
            Some(rs) => frames
                .iter()
                .flat_map(|f| rs.push(f).unwrap_or_default())
                .collect(),
        }
    }
}

#[cfg(feature = "noise-suppression")]
impl AudioFilter for NoiseSuppressor {
    fn label(&self) -> String {
        "noise-suppression".into()
    }

    fn process(&mut self, frame: AudioFrame) -> Vec<AudioFrame> {
        if frame.sample_rate == 0 || frame.is_empty() {
            return Vec::new();
        }
        self.set_rate(frame.sample_rate);
        let mono = frame.downmix_to_mono();
        let at_48k = match self.to_48k.as_mut() {
            None => vec![mono],
            Some(rs) => rs.push(&mono).unwrap_or_default(),
        };
        for f in &at_48k {
            self.pending.extend(f.data.iter().map(|&s| s as f32));
        }
        let out = self.run();
        self.back(out)
    }

    fn flush(&mut self) -> Vec<AudioFrame> {
        const N: usize = nnnoiseless::DenoiseState::FRAME_SIZE;
        if let Some(rs) = self.to_48k.as_mut() {
            for f in rs.flush() {
                self.pending.extend(f.data.iter().map(|&s| s as f32));
            }
        }
        let tail = self.pending.len() % N;
        if tail > 0 {
            self.pending.extend(std::iter::repeat_n(0.0, N - tail));
        }
        let out = self.run();
        let mut frames = self.back(out);
        if let Some(rs) = self.from_48k.as_mut() {
            frames.extend(rs.flush());
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "noise-suppression")]
    fn total(frames: &[AudioFrame]) -> usize {
        frames.iter().map(|f| f.samples_per_channel).sum()
    }

    #[test]
    fn agc_raises_quiet_speech_and_lowers_loud_speech_without_clipping() {
        let mut agc = AutoGainControl::default();
        // 5 s of a quiet tone (-37 dBFS RMS) in 20 ms frames.
        let mut last = AudioFrame::default();
        for _ in 0..250 {
            last = agc
                .process(AudioFrame::sine(300.0, 0.02, 16_000, 1, 320))
                .remove(0);
        }
        assert!((last.rms_dbfs() + 20.0).abs() < 1.0, "{}", last.rms_dbfs());
        // Then loud (-3 dBFS RMS): turned down quickly, never clipped.
        let mut agc2 = agc.clone();
        for i in 0..100 {
            let out = agc2
                .process(AudioFrame::sine(300.0, 0.99, 16_000, 1, 320))
                .remove(0);
            assert!(out.peak() < 0.98, "frame {i}: peak {}", out.peak());
            last = out;
        }
        // -3 dBFS would need -17 dB: the gain stops at min_gain_db (-12 dB).
        assert!((last.rms_dbfs() + 15.1).abs() < 0.5, "{}", last.rms_dbfs());
        assert!((agc2.gain_db() + 12.0).abs() < 0.01);
        // Silence is left alone and does not move the gain.
        let g = agc2.gain_db();
        let out = agc2.process(AudioFrame::silence(16_000, 1, 320)).remove(0);
        assert!(out.data.iter().all(|&s| s == 0));
        assert_eq!(agc2.gain_db(), g);
    }

    #[cfg(feature = "noise-suppression")]
    #[test]
    fn noise_suppression_keeps_the_length_and_removes_noise() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = |n: usize| -> Vec<i16> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ((seed >> 40) as i32 % 2000 - 1000) as i16
                })
                .collect()
        };
        for rate in [16_000u32, 48_000] {
            let mut ns = NoiseSuppressor::new();
            let frame_len = rate as usize / 50;
            let mut out = Vec::new();
            let mut input_rms = 0.0;
            for _ in 0..100 {
                let f = AudioFrame::new(noise(frame_len), rate, 1).unwrap();
                input_rms = f.rms();
                out.extend(ns.process(f));
            }
            out.extend(ns.flush());
            let n = total(&out);
            assert!(
                n.abs_diff(100 * frame_len) <= rate as usize / 100,
                "{rate}: {n}"
            );
            assert!(out
                .iter()
                .all(|f| f.sample_rate == rate && f.num_channels == 1));
            // The last second: the noise is mostly gone once RNNoise has adapted.
            let tail = crate::audio::combine_frames(&out[out.len() / 2..]).unwrap();
            assert!(
                tail.rms() < input_rms / 4.0,
                "{rate}: {} vs {}",
                tail.rms(),
                input_rms
            );
        }
    }

    #[tokio::test]
    async fn inputs_are_filtered_and_flushed_per_participant() {
        struct Hold(Vec<i16>);
        impl AudioFilter for Hold {
            fn label(&self) -> String {
                "hold".into()
            }
            fn process(&mut self, frame: AudioFrame) -> Vec<AudioFrame> {
                self.0.extend(frame.data);
                Vec::new()
            }
            fn flush(&mut self) -> Vec<AudioFrame> {
                vec![AudioFrame::new(std::mem::take(&mut self.0), 8_000, 1).unwrap()]
            }
        }
        let factory = AudioFilterFactory::new(|p| {
            (p.participant_kind == Some(ParticipantKind::Sip))
                .then(|| Box::new(Hold(Vec::new())) as Box<dyn AudioFilter>)
        });
        let frames = || {
            futures::stream::iter(vec![
                AudioFrame::new(vec![1, 2], 8_000, 1).unwrap(),
                AudioFrame::new(vec![3], 8_000, 1).unwrap(),
            ])
        };
        let sip = AudioInput::from_stream("room", frames()).with_participant(FilterParams {
            participant_identity: Some("caller".into()),
            participant_kind: Some(ParticipantKind::Sip),
            ..Default::default()
        });
        let out: Vec<AudioFrame> = sip.filtered_by(&factory).into_stream().collect().await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, [1, 2, 3]);
        let web = AudioInput::from_stream("room", frames());
        let filtered = web.filtered_by(&factory);
        assert_eq!(filtered.label(), "room");
        let out: Vec<AudioFrame> = filtered.into_stream().collect().await;
        assert_eq!(out.len(), 2);

        // The participant changes mid-stream (a room links a phone caller): the filter starts.
        let (tx, rx) = tokio::sync::watch::channel(FilterParams::default());
        let (frames_tx, input) = crate::io::memory::audio_input_channel();
        let mut out = input
            .with_participant_updates(rx)
            .filtered_by(&factory)
            .into_stream();
        frames_tx.send(AudioFrame::new(vec![9], 8_000, 1).unwrap());
        assert_eq!(out.next().await.unwrap().data, [9]);
        tx.send_replace(FilterParams {
            participant_identity: Some("caller".into()),
            participant_kind: Some(ParticipantKind::Sip),
            ..Default::default()
        });
        frames_tx.send(AudioFrame::new(vec![4], 8_000, 1).unwrap());
        frames_tx.send(AudioFrame::new(vec![5], 8_000, 1).unwrap());
        drop(frames_tx);
        assert_eq!(out.next().await.unwrap().data, [4, 5]);
        assert!(out.next().await.is_none());
    }
}
