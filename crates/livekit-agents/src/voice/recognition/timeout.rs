//! `SessionOptions::transcription_timeout`: the VAD heard the user, but no transcript came.
//!
//! As the reference's audio recognition: the clock starts at the VAD's end of speech (minus the
//! silence the VAD waited and its inference time, so it counts from when the speech really
//! ended), stops at the next start of speech (the following end of speech restarts it, adding
//! the new speech to the turn's), and is satisfied for the rest of the turn by a non-empty final
//! transcript. A committed or cleared turn resets it. The recognition task polls
//! [`TranscriptionTimer::deadline`] and reports a fired timer to the activity, whose loop emits
//! `SessionEvent::UserTranscriptionTimeout`.

use std::time::Duration;

use tokio::time::Instant;

/// The timer of the current user turn.
#[derive(Debug, Default)]
pub(super) struct TranscriptionTimer {
    deadline: Option<Instant>,
    /// VAD speech in the turn so far.
    speech: Duration,
    /// A non-empty final transcript arrived in this turn.
    transcribed: bool,
}

impl TranscriptionTimer {
    /// When the timer fires, if armed.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The user speaks again: the clock stops (the turn's speech is kept).
    pub(super) fn cancel(&mut self) {
        self.deadline = None;
    }

    /// A non-empty final transcript: the turn needs no timer any more.
    pub(super) fn mark_transcribed(&mut self) {
        self.transcribed = true;
        self.deadline = None;
    }

    /// The turn was committed or cleared: a new turn starts from nothing.
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }

    /// The VAD's end of speech: `speech` more speech, noticed `noticed_after` after it ended.
    /// Arms the timer (`timeout` from the end of the speech) unless the option is off or the
    /// turn is transcribed.
    pub(super) fn arm(
        &mut self,
        timeout: Option<Duration>,
        speech: Duration,
        noticed_after: Duration,
    ) {
        let Some(timeout) = timeout else {
            return;
        };
        if self.transcribed {
            return;
        }
        self.speech = self.speech.saturating_add(speech);
        let remaining = timeout.saturating_sub(noticed_after);
        self.deadline = Some(Instant::now() + remaining);
    }

    /// The deadline passed: the turn's untranscribed speech to report (`None` if a transcript
    /// arrived meanwhile).
    pub(super) fn fire(&mut self) -> Option<Duration> {
        self.deadline = None;
        (!self.transcribed).then_some(self.speech)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_counts_from_the_end_of_speech_and_accumulates_the_turn() {
        let mut t = TranscriptionTimer::default();
        let start = Instant::now();
        t.arm(None, ms(1000), ms(300));
        assert_eq!(t.deadline(), None, "off without the option");
        t.arm(Some(ms(1000)), ms(1000), ms(300));
        assert_eq!(t.deadline(), Some(start + ms(700)));
        t.cancel();
        assert_eq!(t.deadline(), None);
        t.arm(Some(ms(1000)), ms(500), ms(1200));
        // Noticed after more than the timeout: fires at once.
        assert_eq!(t.deadline(), Some(start));
        assert_eq!(t.fire(), Some(ms(1500)));
        t.mark_transcribed();
        t.arm(Some(ms(1000)), ms(500), ms(0));
        assert_eq!(t.deadline(), None, "a transcribed turn needs no timer");
        assert_eq!(t.fire(), None);
        t.reset();
        t.arm(Some(ms(1000)), ms(200), ms(0));
        assert_eq!(t.fire(), Some(ms(200)));
    }
}
