//! End-of-turn timing: how long to wait after the user stopped speaking before committing the
//! turn (`min_delay`, or `max_delay` when the turn detector says the user will go on), and the
//! dynamic variant that learns the user's pauses.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::options::{EndpointingMode, EndpointingOptions};
use crate::llm::ChatContext;
use crate::turn_detector::TurnDetector;

/// The current `min_delay`: fixed, or an exponential moving average of the user's observed
/// mid-turn pauses clamped to `[min_delay, max_delay]` (dynamic mode).
#[derive(Debug, Clone)]
pub(crate) struct Endpointing {
    opts: EndpointingOptions,
    estimate: f64,
}

impl Endpointing {
    pub(crate) fn new(opts: EndpointingOptions) -> Self {
        Self {
            opts,
            estimate: opts.min_delay.as_secs_f64(),
        }
    }

    pub(crate) fn min_delay(&self) -> Duration {
        match self.opts.mode {
            EndpointingMode::Fixed => self.opts.min_delay,
            EndpointingMode::Dynamic => Duration::from_secs_f64(self.estimate),
        }
    }

    pub(crate) fn max_delay(&self) -> Duration {
        self.opts.max_delay.max(self.min_delay())
    }

    /// The user paused `pause` and went on speaking (within the turn, or right after a turn
    /// was committed): in dynamic mode the next wait moves toward that pause.
    pub(crate) fn observe_pause(&mut self, pause: Duration) {
        if self.opts.mode != EndpointingMode::Dynamic {
            return;
        }
        let (lo, hi) = (
            self.opts.min_delay.as_secs_f64(),
            self.opts.max_delay.as_secs_f64(),
        );
        let alpha = self.opts.alpha.clamp(0.0, 1.0);
        let next = alpha * self.estimate + (1.0 - alpha) * pause.as_secs_f64();
        self.estimate = next.clamp(lo, hi.max(lo));
    }
}

/// What the end-of-turn wait decided.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EouDecision {
    /// The delay used (min or max).
    pub delay: Duration,
    /// The turn detector's probability, if it answered.
    pub probability: Option<f32>,
}

/// Inputs of one end-of-turn wait.
pub(crate) struct EouParams {
    pub detector: Option<Arc<dyn TurnDetector>>,
    pub chat_ctx: ChatContext,
    pub language: Option<String>,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub detector_timeout: Duration,
    /// When the user stopped speaking (silence already elapsed counts toward the delay).
    pub last_speaking_time: Instant,
}

/// Asks the turn detector (bounded by its timeout), then sleeps what remains of the chosen
/// delay. Dropping the future cancels the wait (new speech does that).
pub(crate) async fn wait_end_of_turn(p: EouParams) -> EouDecision {
    let mut delay = p.min_delay;
    let mut probability = None;
    if let Some(detector) = p.detector.as_ref() {
        let lang = p.language.as_deref();
        if detector.supports_language(lang) {
            match tokio::time::timeout(
                p.detector_timeout,
                detector.predict_end_of_turn(&p.chat_ctx, lang),
            )
            .await
            {
                Ok(Ok(prob)) => {
                    probability = Some(prob);
                    if detector.unlikely_threshold(lang).is_some_and(|t| prob < t) {
                        delay = p.max_delay;
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(detector = %detector.label(), %error, "end-of-turn prediction failed; using min_delay");
                }
                Err(_) => {
                    tracing::warn!(
                        detector = %detector.label(),
                        timeout = ?p.detector_timeout,
                        "end-of-turn prediction timed out; using min_delay"
                    );
                }
            }
        }
    }
    let silent_for = Instant::now().saturating_duration_since(p.last_speaking_time);
    let remaining = delay.saturating_sub(silent_for);
    // Usually the VAD's silence already covered the delay. A zero-length tokio sleep still waits
    // for the timer wheel's next millisecond tick, which would add ~1 ms to every such turn.
    if !remaining.is_zero() {
        tokio::time::sleep(remaining).await;
    }
    EouDecision { delay, probability }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_min_delay_follows_pauses_within_bounds() {
        let mut e = Endpointing::new(EndpointingOptions {
            mode: EndpointingMode::Dynamic,
            ..Default::default()
        });
        assert_eq!(e.min_delay(), Duration::from_millis(500));
        for _ in 0..100 {
            e.observe_pause(Duration::from_millis(1500));
        }
        assert!((e.min_delay().as_secs_f64() - 1.5).abs() < 0.01);
        for _ in 0..100 {
            e.observe_pause(Duration::from_secs(10));
        }
        assert_eq!(e.min_delay(), Duration::from_secs(3));
        let mut fixed = Endpointing::new(EndpointingOptions::default());
        fixed.observe_pause(Duration::from_secs(2));
        assert_eq!(fixed.min_delay(), Duration::from_millis(500));
    }
}
