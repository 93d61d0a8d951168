//! Recognition events in the loop: user speech pauses or interrupts the agent; false
//! interruptions resume.

use std::time::Duration;

use tokio::time::Instant;

use super::super::events::{AgentState, SessionEvent, UserState};
use super::super::options::TurnDetection;
use super::event_loop::{ActivityLoop, PausedSpeech};

impl ActivityLoop {
    pub(super) fn on_start_of_speech(&mut self) {
        self.session().set_user_state(UserState::Speaking);
        if let Some(p) = self.paused.as_mut() {
            p.resume_at = None;
        }
    }

    pub(super) fn on_end_of_speech(&mut self) {
        self.session().set_user_state(UserState::Listening);
        self.start_false_interruption_timer();
    }

    /// VAD says the user has spoken for `speech_duration`; `words` is the current transcript's
    /// word count.
    pub(super) fn on_vad_inference(
        &mut self,
        speech_duration: Duration,
        words: usize,
        stt_enabled: bool,
    ) {
        let opts = self.session().options().turn_handling.interruption;
        if speech_duration >= opts.min_duration {
            self.interrupt_by_audio(words, stt_enabled);
        }
    }

    /// `transcription_timeout`: the user spoke but no transcript came (the reference only
    /// reports it; the application decides, e.g. asks the user to repeat).
    pub(super) fn on_transcription_timeout(
        &mut self,
        speech_duration: Duration,
        speech_started_at: Instant,
    ) {
        if self.closed {
            return;
        }
        let ago = Instant::now().saturating_duration_since(speech_started_at);
        let now = std::time::SystemTime::now();
        tracing::debug!(?speech_duration, "no transcript for the user's speech");
        self.session().emit(SessionEvent::UserTranscriptionTimeout {
            speech_duration,
            vad_speech_started_at: now.checked_sub(ago).unwrap_or(now),
        });
    }

    /// The realtime model heard the user: its own turn detection interrupts the agent.
    pub(super) fn on_realtime_speech_started(&mut self) {
        self.on_start_of_speech();
        if let Some(current) = self.current_speech() {
            if self.activity.allow_interruptions(None) {
                let _ = current.interrupt();
            }
        }
    }

    pub(super) fn interrupt_by_audio(&mut self, words: usize, stt_enabled: bool) {
        let session = self.session().clone();
        let opts = session.options().turn_handling.interruption;
        // With server-side turn detection the realtime model decides interruptions.
        if !self.activity.allow_interruptions(None)
            || matches!(session.turn_detection(), TurnDetection::RealtimeLlm)
        {
            return;
        }
        if session.aec_warmup_active() {
            // The agent may be hearing itself before echo cancellation adapted.
            return;
        }
        let Some(current) = self.current_speech() else {
            return;
        };
        if current.done() || current.interrupted() || !current.allow_interruptions() {
            return;
        }
        if stt_enabled && opts.min_words > 0 && words < opts.min_words {
            return;
        }
        let output = session.audio_output();
        let can_pause = opts.resume_false_interruption
            && opts.false_interruption_timeout.is_some()
            && output.as_ref().is_some_and(|o| o.can_pause());
        if can_pause {
            if self.paused.as_ref().is_some_and(|p| p.handle == current) {
                return;
            }
            self.paused = Some(PausedSpeech {
                handle: current,
                resume_at: None,
            });
            if let Some(o) = output {
                o.pause();
                self.activity.inner.output_paused.send_replace(true);
            }
            session.set_agent_state(AgentState::Listening);
        } else {
            let _ = current.interrupt();
        }
    }

    /// Arms the false-interruption timer of the paused speech (the user stopped speaking).
    fn start_false_interruption_timer(&mut self) {
        let Some(timeout) = self
            .session()
            .options()
            .turn_handling
            .interruption
            .false_interruption_timeout
        else {
            return;
        };
        if let Some(paused) = self.paused.as_mut() {
            paused.resume_at = Some(Instant::now() + timeout);
        }
    }

    /// The user said nothing after pausing the agent: it resumes.
    pub(super) fn on_false_interruption_timeout(&mut self) {
        let Some(paused) = self.paused.take() else {
            return;
        };
        if paused.handle.done() || paused.handle.interrupted() {
            return;
        }
        self.activity.resume_output();
        self.session().set_agent_state(AgentState::Speaking);
        self.session()
            .emit(SessionEvent::AgentFalseInterruption { resumed: true });
    }

    /// Interrupts the paused speech for real (the user did say something).
    ///
    /// The output is cleared and resumed from here, not only by the speech's playout: a writer
    /// waiting in `capture_frame` on the paused output is released either way.
    pub(super) fn cancel_pause_and_interrupt(&mut self) {
        if let Some(p) = self.paused.take() {
            p.handle.interrupt_force();
            self.release_paused_output();
        }
    }

    /// Clears and resumes the audio output if this activity paused it (the paused speech was
    /// interrupted, or the activity closes).
    pub(super) fn release_paused_output(&self) {
        if !*self.activity.inner.output_paused.borrow() {
            return;
        }
        if let Some(o) = self.session().audio_output() {
            o.clear_buffer();
        }
        self.activity.resume_output();
    }
}
