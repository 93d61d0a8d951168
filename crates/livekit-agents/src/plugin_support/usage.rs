//! Recognition usage: audio seconds sent to a streaming recognizer, reported in
//! `RecognitionUsage` events.

use crate::stt::{RecognitionUsage, SpeechEvent, SpeechEventSender, SpeechEventType};

/// Seconds of audio sent to a recognizer that no `RecognitionUsage` event has reported yet.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct UsageMeter {
    unreported: f64,
}

impl UsageMeter {
    /// Counts `secs` more audio. A non-finite or negative amount (a provider's garbage) is
    /// ignored, so the reported usage stays a finite, non-negative number.
    pub fn add(&mut self, secs: f64) {
        if secs.is_finite() && secs > 0.0 {
            let sum = self.unreported + secs;
            if sum.is_finite() {
                self.unreported = sum;
            }
        }
    }

    /// Seconds not reported yet.
    pub fn unreported(&self) -> f64 {
        self.unreported
    }

    /// Sends one `RecognitionUsage` event for the unreported seconds, tagged with
    /// `request_id`, and starts counting again; sends nothing when there is nothing to report.
    pub async fn flush(&mut self, request_id: &str, events: &SpeechEventSender) {
        if self.unreported <= 0.0 {
            return;
        }
        let mut ev = SpeechEvent::new(SpeechEventType::RecognitionUsage);
        ev.request_id = request_id.to_string();
        ev.recognition_usage = Some(RecognitionUsage {
            audio_duration: self.unreported,
            ..Default::default()
        });
        self.unreported = 0.0;
        events.send(ev).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flush_reports_once_and_resets() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let events = SpeechEventSender::new(tx);
        let mut usage = UsageMeter::default();
        usage.flush("r0", &events).await;
        usage.add(0.25);
        usage.add(0.5);
        assert_eq!(usage.unreported(), 0.75);
        usage.flush("r1", &events).await;
        usage.flush("r1", &events).await;
        drop(events);
        let ev = rx.recv().await.unwrap().unwrap();
        assert_eq!(ev.kind, SpeechEventType::RecognitionUsage);
        assert_eq!(ev.request_id, "r1");
        assert_eq!(ev.recognition_usage.unwrap().audio_duration, 0.75);
        assert!(rx.recv().await.is_none());
        assert_eq!(usage.unreported(), 0.0);
    }

    #[test]
    fn garbage_amounts_are_ignored() {
        let mut usage = UsageMeter::default();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
            usage.add(bad);
        }
        assert_eq!(usage.unreported(), 0.0);
        usage.add(f64::MAX);
        usage.add(f64::MAX);
        assert_eq!(usage.unreported(), f64::MAX);
    }
}
