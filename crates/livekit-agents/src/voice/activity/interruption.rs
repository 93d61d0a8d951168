//! Recognition hooks: user speech pauses or interrupts the agent; false interruptions resume.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use super::super::events::{AgentState, SessionEvent};
use super::super::options::TurnDetection;
use super::{Activity, PausedSpeech};

impl Activity {
    // ---- recognition hooks ----

    pub(crate) fn on_start_of_speech(&self) {
        self.inner
            .session
            .set_user_state(crate::voice::events::UserState::Speaking);
        let mut st = self.inner.state.lock();
        if let Some(p) = st.paused.as_mut() {
            p.timer = None;
        }
    }

    pub(crate) fn on_end_of_speech(&self) {
        self.inner
            .session
            .set_user_state(crate::voice::events::UserState::Listening);
        self.start_false_interruption_timer();
    }

    /// VAD says the user has spoken for `speech_duration`; `words` is the current transcript's
    /// word count.
    pub(crate) fn on_vad_inference(
        &self,
        speech_duration: Duration,
        words: usize,
        stt_enabled: bool,
    ) {
        let opts = self.inner.session.options().turn_handling.interruption;
        if speech_duration >= opts.min_duration {
            self.interrupt_by_audio(words, stt_enabled);
        }
    }

    /// A transcript arrived and there is no VAD.
    pub(crate) fn on_transcript_activity(&self, words: usize) {
        if words > 0 {
            self.interrupt_by_audio(words, true);
        }
    }

    pub(super) fn interrupt_by_audio(&self, words: usize, stt_enabled: bool) {
        let opts = self.inner.session.options().turn_handling.interruption;
        // With server-side turn detection the realtime model decides interruptions.
        if !opts.enabled
            || matches!(
                self.inner.session.turn_detection(),
                TurnDetection::RealtimeLlm
            )
        {
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
        let output = self.inner.session.audio_output();
        let can_pause = opts.resume_false_interruption
            && opts.false_interruption_timeout.is_some()
            && output.as_ref().is_some_and(|o| o.can_pause());
        if can_pause {
            let mut st = self.inner.state.lock();
            if st.paused.as_ref().is_some_and(|p| p.handle == current) {
                return;
            }
            st.paused = Some(PausedSpeech {
                handle: current,
                timer: None,
            });
            drop(st);
            if let Some(o) = output {
                o.pause();
                self.inner.output_paused.send_replace(true);
            }
            self.inner.session.set_agent_state(AgentState::Listening);
        } else {
            let _ = current.interrupt();
        }
    }

    pub(super) fn start_false_interruption_timer(&self) {
        let Some(timeout) = self
            .inner
            .session
            .options()
            .turn_handling
            .interruption
            .false_interruption_timeout
        else {
            return;
        };
        let this = self.clone();
        let mut st = self.inner.state.lock();
        let Some(paused) = st.paused.as_mut() else {
            return;
        };
        let handle = paused.handle.clone();
        paused.timer = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let resumed = {
                let mut st = this.inner.state.lock();
                match st.paused.as_ref() {
                    Some(p) if p.handle == handle => {
                        // The timer is this task: take it out without aborting ourselves.
                        if let Some(mut p) = st.paused.take() {
                            if let Some(t) = p.timer.take() {
                                t.detach();
                            }
                        }
                        true
                    }
                    _ => false,
                }
            };
            if !resumed {
                return;
            }
            if handle.done() || handle.interrupted() {
                return;
            }
            this.resume_output();
            this.inner.session.set_agent_state(AgentState::Speaking);
            this.inner
                .session
                .emit(SessionEvent::AgentFalseInterruption { resumed: true });
        })));
    }

    /// Resumes the audio output if this activity paused it.
    pub(crate) fn resume_output(&self) {
        if let Some(o) = self.inner.session.audio_output() {
            o.resume();
        }
        self.inner.output_paused.send_replace(false);
    }

    /// Whether the output is paused by a possible false interruption (the transcript clock
    /// stops meanwhile).
    pub(crate) fn output_paused(&self) -> watch::Receiver<bool> {
        self.inner.output_paused.subscribe()
    }

    /// Interrupts the paused speech for real (the user did say something).
    ///
    /// The output is cleared and resumed from here, not only by the speech's playout: a writer
    /// waiting in `capture_frame` on the paused output is released either way.
    pub(super) fn cancel_pause_and_interrupt(&self) {
        let paused = self.inner.state.lock().paused.take();
        if let Some(p) = paused {
            drop(p.timer);
            p.handle.interrupt_force();
            self.release_paused_output();
        }
    }

    /// Clears and resumes the audio output if this activity paused it (the paused speech was
    /// interrupted, or the activity closes).
    pub(super) fn release_paused_output(&self) {
        if !*self.inner.output_paused.borrow() {
            return;
        }
        if let Some(o) = self.inner.session.audio_output() {
            o.clear_buffer();
        }
        self.resume_output();
    }

    pub(crate) fn on_final_transcript(&self, transcript: &str) {
        if !transcript.trim().is_empty() {
            self.cancel_pause_and_interrupt();
        }
    }

    /// Whether user audio should be replaced by silence before the STT (uninterruptible speech).
    pub(crate) fn discard_stt_audio(&self) -> bool {
        let opts = self.inner.session.options().turn_handling.interruption;
        opts.discard_audio_if_uninterruptible
            && self
                .current_speech()
                .is_some_and(|s| !s.done() && !s.allow_interruptions())
    }
}
