//! Options of the Silero VAD, with the reference plugin's defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::SileroError;

/// The rate the model runs at. Input at any other rate is resampled to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ModelSampleRate {
    /// 8 kHz: 256-sample windows with 32 samples of context.
    Hz8000,
    /// 16 kHz (default): 512-sample windows with 64 samples of context.
    #[default]
    Hz16000,
}

impl ModelSampleRate {
    /// Samples per second.
    pub fn hz(self) -> u32 {
        match self {
            Self::Hz8000 => 8000,
            Self::Hz16000 => 16000,
        }
    }

    /// Samples per inference window (32 ms).
    pub fn window_samples(self) -> usize {
        match self {
            Self::Hz8000 => 256,
            Self::Hz16000 => 512,
        }
    }

    /// Samples of the previous window prepended to each window.
    pub fn context_samples(self) -> usize {
        match self {
            Self::Hz8000 => 32,
            Self::Hz16000 => 64,
        }
    }

    /// Seconds per window (0.032 at both rates).
    pub fn window_duration(self) -> f64 {
        self.window_samples() as f64 / self.hz() as f64
    }
}

impl TryFrom<u32> for ModelSampleRate {
    type Error = SileroError;

    fn try_from(hz: u32) -> Result<Self, SileroError> {
        match hz {
            8000 => Ok(Self::Hz8000),
            16000 => Ok(Self::Hz16000),
            other => Err(SileroError::InvalidOption(format!(
                "sample_rate must be 8000 or 16000, not {other}"
            ))),
        }
    }
}

/// Largest accepted [`BatchOptions::max_batch`].
pub const MAX_BATCH_LIMIT: usize = 256;

/// Options of [`SileroVad`](crate::SileroVad). Defaults match `silero.VAD.load()` of the Python
/// plugin.
///
/// ```
/// use livekit_plugins_silero::VadOptions;
///
/// let options = VadOptions {
///     min_silence_duration: 0.3,
///     ..VadOptions::default()
/// };
/// assert_eq!(options.effective_deactivation_threshold(), 0.35);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VadOptions {
    /// Seconds of speech needed to start a speech segment (default 0.05).
    pub min_speech_duration: f64,
    /// Seconds of silence needed to end a speech segment (default 0.55).
    pub min_silence_duration: f64,
    /// Seconds of audio before the detected start included in the start-of-speech frames
    /// (default 0.5).
    pub prefix_padding_duration: f64,
    /// Most seconds of speech buffered for the end-of-speech frames (default 60).
    pub max_buffered_speech: f64,
    /// Smoothed probability at or above which a window is speech (default 0.5).
    pub activation_threshold: f64,
    /// While speaking, a window stays speech while its probability is above this. `None`
    /// (default) means `max(activation_threshold - 0.15, 0.01)`, fixed when the VAD is loaded
    /// (as in the reference, updating the activation threshold later does not move it).
    pub deactivation_threshold: Option<f64>,
    /// Rate the model runs at (default 16 kHz).
    pub sample_rate: ModelSampleRate,
    /// Run on the CPU (default true). This build only ships the CPU execution provider, so
    /// `false` also runs on the CPU; the option exists for parity with the reference.
    pub force_cpu: bool,
    /// Model file; `None` (default) uses `silero/silero_vad.onnx` from the download cache.
    pub model_path: Option<PathBuf>,
    /// ONNX Runtime threads per inference (default 1).
    pub intra_op_threads: usize,
    /// Cross-stream batching of inference (default: on, at most 16 windows per batch, at most
    /// 1 ms of collecting). Not an option of the reference plugin, which runs one process per
    /// job and so one stream per model.
    pub batching: BatchOptions,
}

/// How the streams of one [`SileroVad`](crate::SileroVad) share inference.
///
/// With batching on, the windows that fall due in several streams at about the same time run as
/// one ONNX Runtime call (the model takes a batch, with each stream's recurrent state in its own
/// row), which costs much less per window than one call each. There is no timer: a stream whose
/// window is due queues it and lets the other tasks that are ready to run queue theirs (it yields
/// to the async scheduler a few times, for at most [`BatchOptions::max_wait`]), then runs
/// everything queued as one batch; streams whose windows another stream ran just take their
/// results. A stream that is the only one open runs its window at once. Each stream's events are
/// the same as without batching (`tests/batching.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    /// Batch windows across streams (default true). `false` runs every window on its own
    /// stream's task, one inference per window.
    pub enabled: bool,
    /// Most windows in one batch (default 16, at least 1). Larger batches cost less per window
    /// but hold one async worker thread longer (about 40-60 µs per window).
    pub max_batch: usize,
    /// Longest a stream spends collecting other streams' windows before running its batch
    /// (default 1 ms). Collecting stops earlier as soon as a yield brings no new window.
    pub max_wait: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            max_batch: 16,
            max_wait: Duration::from_millis(1),
        }
    }
}

impl BatchOptions {
    /// No batching: one inference per window on the stream's own task.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

impl Default for VadOptions {
    fn default() -> Self {
        Self {
            min_speech_duration: 0.05,
            min_silence_duration: 0.55,
            prefix_padding_duration: 0.5,
            max_buffered_speech: 60.0,
            activation_threshold: 0.5,
            deactivation_threshold: None,
            sample_rate: ModelSampleRate::Hz16000,
            force_cpu: true,
            model_path: None,
            intra_op_threads: 1,
            batching: BatchOptions::default(),
        }
    }
}

impl VadOptions {
    /// The deactivation threshold in effect.
    pub fn effective_deactivation_threshold(&self) -> f64 {
        self.deactivation_threshold
            .unwrap_or_else(|| (self.activation_threshold - 0.15).max(0.01))
    }

    /// Checks every option's range.
    pub fn validate(&self) -> Result<(), SileroError> {
        let invalid = |msg: String| Err(SileroError::InvalidOption(msg));
        for (name, value) in [
            ("min_speech_duration", self.min_speech_duration),
            ("min_silence_duration", self.min_silence_duration),
            ("prefix_padding_duration", self.prefix_padding_duration),
            ("max_buffered_speech", self.max_buffered_speech),
        ] {
            if !value.is_finite() || value < 0.0 {
                return invalid(format!("{name} must be a finite number >= 0, not {value}"));
            }
        }
        if !(self.activation_threshold > 0.0 && self.activation_threshold <= 1.0) {
            return invalid(format!(
                "activation_threshold must be in (0, 1], not {}",
                self.activation_threshold
            ));
        }
        let deactivation = self.effective_deactivation_threshold();
        if !(deactivation > 0.0 && deactivation <= 1.0) {
            return invalid(format!(
                "deactivation_threshold must be in (0, 1], not {deactivation}"
            ));
        }
        if self.intra_op_threads == 0 {
            return invalid("intra_op_threads must be at least 1".into());
        }
        if self.batching.max_batch == 0 || self.batching.max_batch > MAX_BATCH_LIMIT {
            return invalid(format!(
                "batching.max_batch must be in 1..={MAX_BATCH_LIMIT}, not {}",
                self.batching.max_batch
            ));
        }
        if self.batching.max_wait > Duration::from_millis(100) {
            return invalid(format!(
                "batching.max_wait must be at most 100 ms, not {:?}",
                self.batching.max_wait
            ));
        }
        Ok(())
    }

    /// Applies an update (the fields it sets), then validates.
    pub fn apply(&mut self, update: &VadOptionsUpdate) -> Result<(), SileroError> {
        let mut next = self.clone();
        if let Some(v) = update.min_speech_duration {
            next.min_speech_duration = v;
        }
        if let Some(v) = update.min_silence_duration {
            next.min_silence_duration = v;
        }
        if let Some(v) = update.prefix_padding_duration {
            next.prefix_padding_duration = v;
        }
        if let Some(v) = update.max_buffered_speech {
            next.max_buffered_speech = v;
        }
        if let Some(v) = update.activation_threshold {
            next.activation_threshold = v;
        }
        if let Some(v) = update.deactivation_threshold {
            next.deactivation_threshold = Some(v);
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

/// Options changed on a live VAD or stream (`update_options`); unset fields keep their value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VadOptionsUpdate {
    /// New [`VadOptions::min_speech_duration`].
    pub min_speech_duration: Option<f64>,
    /// New [`VadOptions::min_silence_duration`].
    pub min_silence_duration: Option<f64>,
    /// New [`VadOptions::prefix_padding_duration`].
    pub prefix_padding_duration: Option<f64>,
    /// New [`VadOptions::max_buffered_speech`].
    pub max_buffered_speech: Option<f64>,
    /// New [`VadOptions::activation_threshold`].
    pub activation_threshold: Option<f64>,
    /// New [`VadOptions::deactivation_threshold`].
    pub deactivation_threshold: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference() {
        let o = VadOptions::default();
        assert_eq!(o.min_speech_duration, 0.05);
        assert_eq!(o.min_silence_duration, 0.55);
        assert_eq!(o.prefix_padding_duration, 0.5);
        assert_eq!(o.max_buffered_speech, 60.0);
        assert_eq!(o.activation_threshold, 0.5);
        assert!((o.effective_deactivation_threshold() - 0.35).abs() < 1e-12);
        assert_eq!(o.sample_rate.hz(), 16000);
        assert!(o.force_cpu);
        assert_eq!(o.intra_op_threads, 1);
        let low = VadOptions {
            activation_threshold: 0.1,
            ..VadOptions::default()
        };
        assert_eq!(low.effective_deactivation_threshold(), 0.01);
    }

    #[test]
    fn window_geometry() {
        assert_eq!(ModelSampleRate::Hz16000.window_samples(), 512);
        assert_eq!(ModelSampleRate::Hz16000.context_samples(), 64);
        assert_eq!(ModelSampleRate::Hz8000.window_samples(), 256);
        assert_eq!(ModelSampleRate::Hz8000.context_samples(), 32);
        assert_eq!(ModelSampleRate::Hz8000.window_duration(), 0.032);
        assert!(ModelSampleRate::try_from(44100).is_err());
        assert_eq!(
            ModelSampleRate::try_from(8000).unwrap(),
            ModelSampleRate::Hz8000
        );
    }

    #[test]
    fn invalid_options_are_rejected_and_updates_are_atomic() {
        let bad = VadOptions {
            activation_threshold: 1.5,
            ..VadOptions::default()
        };
        assert!(bad.validate().is_err());
        let bad = VadOptions {
            min_silence_duration: f64::NAN,
            ..VadOptions::default()
        };
        assert!(bad.validate().is_err());

        let mut o = VadOptions::default();
        let err = o.apply(&VadOptionsUpdate {
            min_silence_duration: Some(0.2),
            deactivation_threshold: Some(0.0),
            ..Default::default()
        });
        assert!(err.is_err());
        assert_eq!(
            o,
            VadOptions::default(),
            "a rejected update changes nothing"
        );
        o.apply(&VadOptionsUpdate {
            min_silence_duration: Some(0.2),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(o.min_silence_duration, 0.2);
    }
}
