//! The synchronous heart of a VAD stream: audio in, events out.
//!
//! [`Detector`] converts input frames to mono at the model rate, cuts 32 ms windows, asks a
//! [`SpeechProbability`] source for each window's probability, smooths it, and runs the
//! reference plugin's state machine (activation/deactivation thresholds, minimum speech and
//! silence durations, prefix padding, bounded speech buffer). It does no I/O and no async, so the
//! state machine is tested with scripted probabilities, and the stream task runs it (see
//! `vad.rs`).

use livekit_agents::audio::resample::Resampler;
use livekit_agents::audio::AudioFrame;
use livekit_agents::vad::{VadEvent, VadEventType};

use crate::model::SpeechProbability;
use crate::{ModelSampleRate, SileroError, VadOptions, VadOptionsUpdate};

/// Smoothing of the reference plugin: `ExpFilter(alpha=0.35)`.
const SMOOTHING_ALPHA: f64 = 0.35;
/// An inference slower than this is logged (as the reference's `SLOW_INFERENCE_THRESHOLD`).
const SLOW_INFERENCE_SECS: f64 = 0.2;

/// Exponential smoothing `f = a*f + (1-a)*p`, initialised by the first sample.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExpFilter {
    filtered: Option<f64>,
}

impl ExpFilter {
    pub(crate) fn apply(&mut self, sample: f64) -> f64 {
        let next = match self.filtered {
            None => sample,
            Some(f) => SMOOTHING_ALPHA * f + (1.0 - SMOOTHING_ALPHA) * sample,
        };
        self.filtered = Some(next);
        next
    }
}

/// VAD state for one stream.
pub(crate) struct Detector<P> {
    source: P,
    options: VadOptions,
    activation: f64,
    deactivation: f64,
    rate: ModelSampleRate,
    filter: ExpFilter,

    /// Input rate, fixed by the first frame.
    input_rate: Option<u32>,
    /// Mono input rate -> model rate, when they differ.
    resampler: Option<Resampler>,
    /// Mono input-rate samples not yet attributed to a window.
    input_pending: Vec<i16>,
    /// Mono model-rate samples not yet inferred.
    model_pending: Vec<i16>,
    /// The current frame down-mixed to mono (reused).
    mono_scratch: Vec<i16>,
    window: Vec<f32>,
    copy_fraction: f64,

    /// Audio of the current utterance (input rate, mono), with prefix padding.
    speech_buffer: Vec<i16>,
    speech_buffer_limit: usize,
    speech_buffer_max_reached: bool,
    prefix_padding_samples: usize,

    speaking: bool,
    speech_duration: f64,
    silence_duration: f64,
    input_samples: u64,
    timestamp: f64,
    speech_threshold_duration: f64,
    silence_threshold_duration: f64,
    extra_inference_time: f64,
    warned_other_rate: bool,
}

impl<P: SpeechProbability> Detector<P> {
    /// A detector with validated `options` (the deactivation threshold resolved).
    pub(crate) fn new(source: P, options: VadOptions) -> Self {
        let rate = options.sample_rate;
        Self {
            source,
            activation: options.activation_threshold,
            deactivation: options.effective_deactivation_threshold(),
            options,
            rate,
            filter: ExpFilter::default(),
            input_rate: None,
            resampler: None,
            input_pending: Vec::new(),
            model_pending: Vec::new(),
            mono_scratch: Vec::new(),
            window: vec![0.0; rate.window_samples()],
            copy_fraction: 0.0,
            speech_buffer: Vec::new(),
            speech_buffer_limit: 0,
            speech_buffer_max_reached: false,
            prefix_padding_samples: 0,
            speaking: false,
            speech_duration: 0.0,
            silence_duration: 0.0,
            input_samples: 0,
            timestamp: 0.0,
            speech_threshold_duration: 0.0,
            silence_threshold_duration: 0.0,
            extra_inference_time: 0.0,
            warned_other_rate: false,
        }
    }

    /// The options in effect.
    #[cfg(test)]
    pub(crate) fn options(&self) -> &VadOptions {
        &self.options
    }

    /// Changes options mid-stream, like the reference's `VADStream.update_options`: thresholds
    /// and durations apply from the next window; the speech buffer is resized (keeping what
    /// fits).
    pub(crate) fn update_options(&mut self, update: &VadOptionsUpdate) -> Result<(), SileroError> {
        let old_max_buffered = self.options.max_buffered_speech;
        let mut next = self.options.clone();
        next.deactivation_threshold = Some(self.deactivation);
        next.apply(update)?;
        self.activation = next.activation_threshold;
        self.deactivation = next.effective_deactivation_threshold();
        self.options = next;
        if let Some(input_rate) = self.input_rate {
            self.size_speech_buffer(input_rate);
            self.speech_buffer.truncate(self.speech_buffer_limit);
            if self.options.max_buffered_speech > old_max_buffered {
                self.speech_buffer_max_reached = false;
            }
        }
        Ok(())
    }

    fn size_speech_buffer(&mut self, input_rate: u32) {
        self.prefix_padding_samples =
            (self.options.prefix_padding_duration * f64::from(input_rate)) as usize;
        self.speech_buffer_limit = (self.options.max_buffered_speech * f64::from(input_rate))
            as usize
            + self.prefix_padding_samples;
    }

    /// Resets everything except the options and the input rate (the reference's flush).
    pub(crate) fn flush(&mut self) {
        self.source.reset();
        self.filter = ExpFilter::default();
        self.speech_buffer.clear();
        self.speech_buffer_max_reached = false;
        self.speaking = false;
        self.speech_duration = 0.0;
        self.silence_duration = 0.0;
        self.input_samples = 0;
        self.timestamp = 0.0;
        self.speech_threshold_duration = 0.0;
        self.silence_threshold_duration = 0.0;
        self.input_pending.clear();
        self.model_pending.clear();
        self.copy_fraction = 0.0;
        self.extra_inference_time = 0.0;
        if let Some(input_rate) = self.input_rate {
            self.resampler = self.new_resampler(input_rate);
        }
    }

    /// Switches to frames at `new` Hz: the model keeps its state (its input stays at the
    /// model rate), the partial window of the old rate is dropped, and the speech held for the
    /// current utterance is converted so the event's audio has one rate.
    fn change_input_rate(&mut self, old: u32, new: u32) {
        tracing::warn!(
            from = old,
            to = new,
            "VAD input sample rate changed; following the new rate"
        );
        self.input_pending.clear();
        self.model_pending.clear();
        self.copy_fraction = 0.0;
        if !self.speech_buffer.is_empty() {
            let data = std::mem::take(&mut self.speech_buffer);
            let held = self.mono_frame(data);
            match livekit_agents::audio::resample::resample_frame(&held, new) {
                Ok(converted) => self.speech_buffer = converted.data,
                Err(err) => tracing::warn!(error = %err, "dropping the buffered speech"),
            }
        }
        self.input_rate = Some(new);
        self.size_speech_buffer(new);
        self.speech_buffer.truncate(self.speech_buffer_limit);
        self.resampler = self.new_resampler(new);
    }

    fn new_resampler(&self, input_rate: u32) -> Option<Resampler> {
        if input_rate == self.rate.hz() {
            return None;
        }
        match Resampler::new(input_rate, self.rate.hz(), 1) {
            Ok(resampler) => Some(resampler),
            Err(err) => {
                // Only zero rates fail, and those frames are rejected before we get here.
                tracing::error!(error = %err, input_rate, "cannot resample VAD input");
                None
            }
        }
    }

    /// Processes one frame (any size, rate and channel count), appending events to `events`.
    /// A frame at another rate than the previous one switches the detector to that rate (the
    /// reference drops it, which made a pre-connect recording at the client's rate lock the
    /// VAD out of the live audio). Only an inference failure is an error.
    #[cfg(test)]
    pub(crate) fn push_frame(
        &mut self,
        frame: &AudioFrame,
        events: &mut Vec<VadEvent>,
    ) -> Result<(), SileroError> {
        self.ingest(frame);
        self.run_some_windows(events, usize::MAX)
    }

    /// Whole windows waiting for inference.
    pub(crate) fn pending_windows(&self) -> usize {
        self.model_pending.len() / self.rate.window_samples()
    }

    /// Takes a frame in (down-mix, resample, buffer) without running inference: cheap enough
    /// for the async task, which runs inference only when [`Self::pending_windows`] is not zero.
    pub(crate) fn ingest(&mut self, frame: &AudioFrame) {
        if frame.sample_rate == 0 || frame.num_channels == 0 {
            tracing::error!(
                ?frame,
                "dropping an audio frame with no sample rate or channels"
            );
            return;
        }
        if frame.sample_rate != self.rate.hz()
            && livekit_agents::audio::check_sample_rate(frame.sample_rate).is_err()
        {
            if !self.warned_other_rate {
                tracing::error!(
                    got = frame.sample_rate,
                    "dropping audio frames at an unsupported sample rate"
                );
                self.warned_other_rate = true;
            }
            return;
        }
        match self.input_rate {
            None => {
                self.input_rate = Some(frame.sample_rate);
                self.size_speech_buffer(frame.sample_rate);
                self.resampler = self.new_resampler(frame.sample_rate);
            }
            Some(rate) if rate != frame.sample_rate => {
                // The input rate changed (e.g. pre-connect audio at the client's rate, then the
                // live track): follow it rather than drop every frame from now on.
                self.change_input_rate(rate, frame.sample_rate);
            }
            Some(_) => {}
        }
        // Down-mix into a buffer kept across frames (mono input is used as it is), and
        // resample straight into the pending model audio: no allocation per frame.
        let mono: &[i16] = if frame.num_channels == 1 {
            &frame.data
        } else {
            let channels = usize::from(frame.num_channels);
            self.mono_scratch.clear();
            self.mono_scratch.extend(
                frame.data.chunks_exact(channels).map(|c| {
                    (c.iter().map(|&s| i32::from(s)).sum::<i32>() / channels as i32) as i16
                }),
            );
            &self.mono_scratch
        };
        match &mut self.resampler {
            Some(resampler) => {
                if let Err(err) = resampler.push_samples(mono, &mut self.model_pending) {
                    tracing::error!(error = %err, "dropping a frame the resampler rejected");
                }
            }
            None => self.model_pending.extend_from_slice(mono),
        }
        self.input_pending.extend_from_slice(mono);
    }

    /// Runs at most `limit` of the whole windows waiting, appending events to `events`.
    #[cfg(test)]
    pub(crate) fn run_some_windows(
        &mut self,
        events: &mut Vec<VadEvent>,
        limit: usize,
    ) -> Result<(), SileroError> {
        for _ in 0..limit {
            let started = std::time::Instant::now();
            let Some((source, window)) = self.next_window() else {
                break;
            };
            let raw = source.probability(window)?;
            self.finish_window(raw, started.elapsed().as_secs_f64(), events);
        }
        Ok(())
    }

    /// Takes the next whole window off the pending audio and scales it for the model; returns
    /// the probability source and the window to run it on, then [`Self::finish_window`] takes
    /// the result. `None` when no whole window waits.
    pub(crate) fn next_window(&mut self) -> Option<(&mut P, &[f32])> {
        let window_samples = self.rate.window_samples();
        if self.input_rate.is_none() || self.model_pending.len() < window_samples {
            return None;
        }
        for (dst, &s) in self.window.iter_mut().zip(&self.model_pending) {
            // The reference divides by i16::MAX (32767), not 32768.
            *dst = f32::from(s) / 32767.0;
        }
        self.model_pending.drain(..window_samples);
        Some((&mut self.source, &self.window))
    }

    /// Runs the state machine on the raw probability of the window [`Self::next_window`] took
    /// (its inference having taken `inference_duration` seconds), appending events to `events`.
    pub(crate) fn finish_window(
        &mut self,
        raw: f32,
        inference_duration: f64,
        events: &mut Vec<VadEvent>,
    ) {
        let window_samples = self.rate.window_samples();
        let window_duration = self.rate.window_duration();
        let Some(input_rate) = self.input_rate else {
            return;
        };
        let p = self.filter.apply(f64::from(raw));

        self.timestamp += window_duration;
        // Input samples covered by this window; the fraction carries over so long inputs at
        // non-integer ratios do not drift.
        let to_copy = window_samples as f64 * f64::from(input_rate) / f64::from(self.rate.hz())
            + self.copy_fraction;
        let to_copy_int = to_copy as usize;
        self.copy_fraction = to_copy - to_copy_int as f64;
        let window_input_len = to_copy_int.min(self.input_pending.len());
        self.input_samples += to_copy_int as u64;

        let space = self
            .speech_buffer_limit
            .saturating_sub(self.speech_buffer.len());
        let to_buffer = window_input_len.min(space);
        if to_buffer > 0 {
            self.speech_buffer
                .extend_from_slice(&self.input_pending[..to_buffer]);
        } else if !self.speech_buffer_max_reached {
            self.speech_buffer_max_reached = true;
            tracing::warn!(
                "max_buffered_speech reached, ignoring further data for the current speech input"
            );
        }

        self.extra_inference_time =
            (self.extra_inference_time + inference_duration - window_duration).max(0.0);
        if inference_duration > SLOW_INFERENCE_SECS {
            tracing::warn!(
                delay = self.extra_inference_time,
                "VAD inference is slower than realtime"
            );
        }

        if self.speaking {
            self.speech_duration += window_duration;
        } else {
            self.silence_duration += window_duration;
        }
        let mut done = self.event(VadEventType::InferenceDone);
        done.probability = p as f32;
        done.inference_duration = inference_duration;
        done.raw_accumulated_silence = self.silence_threshold_duration;
        done.raw_accumulated_speech = self.speech_threshold_duration;
        done.frames = vec![self.mono_frame(self.input_pending[..window_input_len].to_vec())];
        events.push(done);

        if p >= self.activation || (self.speaking && p > self.deactivation) {
            self.speech_threshold_duration += window_duration;
            self.silence_threshold_duration = 0.0;
            if !self.speaking && self.speech_threshold_duration >= self.options.min_speech_duration
            {
                self.speaking = true;
                self.silence_duration = 0.0;
                self.speech_duration = self.speech_threshold_duration;
                let mut start = self.event(VadEventType::StartOfSpeech);
                start.probability = p as f32;
                start.frames = vec![self.mono_frame(self.speech_buffer.clone())];
                events.push(start);
            }
        } else {
            self.silence_threshold_duration += window_duration;
            self.speech_threshold_duration = 0.0;
            if !self.speaking {
                self.reset_write_cursor();
            }
            if self.speaking && self.silence_threshold_duration >= self.options.min_silence_duration
            {
                self.speaking = false;
                self.silence_duration = self.silence_threshold_duration;
                let mut end = self.event(VadEventType::EndOfSpeech);
                end.probability = p as f32;
                end.speech_duration =
                    (self.speech_duration - self.silence_threshold_duration).max(0.0);
                end.frames = vec![self.mono_frame(self.speech_buffer.clone())];
                events.push(end);
                self.speech_duration = 0.0;
                self.reset_write_cursor();
            }
        }
        self.input_pending.drain(..window_input_len);
    }

    /// Keeps only the last `prefix_padding` of the speech buffer (while not speaking).
    fn reset_write_cursor(&mut self) {
        let len = self.speech_buffer.len();
        if len <= self.prefix_padding_samples {
            return;
        }
        self.speech_buffer_max_reached = false;
        self.speech_buffer
            .drain(..len - self.prefix_padding_samples);
    }

    fn event(&self, kind: VadEventType) -> VadEvent {
        let mut event = VadEvent::new(kind);
        event.samples_index = self.input_samples;
        event.timestamp = self.timestamp;
        event.speech_duration = self.speech_duration;
        event.silence_duration = self.silence_duration;
        event.speaking = self.speaking;
        event
    }

    fn mono_frame(&self, data: Vec<i16>) -> AudioFrame {
        let rate = self.input_rate.unwrap_or(self.rate.hz());
        AudioFrame {
            samples_per_channel: data.len(),
            data,
            sample_rate: rate,
            num_channels: 1,
        }
    }
}

#[cfg(test)]
mod tests;
