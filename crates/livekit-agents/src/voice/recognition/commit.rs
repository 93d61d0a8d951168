//! Ending a turn on request: `commit_user_turn` (manual turns, push-to-talk: wait for the
//! final transcript, then hand the turn to the activity) and the trailing transcript when the
//! session closes (answered, never handed to the activity).

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Recognition;
use crate::audio::AudioFrame;
use crate::voice::session::CommitOptions;

/// A commit waiting for the final transcript.
pub(super) struct PendingCommit {
    skip_reply: bool,
    /// The session is closing: answer the transcript, do not hand it to the activity.
    closing: bool,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<String>,
}

impl Recognition {
    pub(super) fn start_commit(&mut self, options: CommitOptions, reply: oneshot::Sender<String>) {
        self.eou = None;
        if self.last_speaking_time.is_none() || self.speaking {
            self.last_speaking_time = Some(Instant::now());
        }
        // Silence makes the STT finalize what it heard.
        self.flush_stt(options.stt_flush_duration);
        let pending = PendingCommit {
            skip_reply: options.skip_reply,
            closing: false,
            deadline: Instant::now() + options.transcript_timeout,
            reply,
        };
        let waiting_for_final =
            self.stt_events.is_some() && (self.transcript.is_empty() || !self.interim.is_empty());
        self.commit = Some(pending);
        if !waiting_for_final {
            self.finish_commit();
        }
    }

    /// The session closes: answer the transcript at once when the user is not in the middle
    /// of saying something, else after its final transcript (or `timeout`; an interim
    /// transcript then stands in for it).
    pub(super) fn start_trailing(&mut self, timeout: Duration, reply: oneshot::Sender<String>) {
        self.eou = None;
        self.transcription_timer.cancel();
        let in_progress = self.stt_events.is_some()
            && (self.speaking
                || !self.interim.is_empty()
                || (self.speech_started_at.is_some() && self.transcript.is_empty()));
        if let Some(previous) = self.commit.take() {
            let _ = previous.reply.send(String::new());
        }
        self.commit = Some(PendingCommit {
            skip_reply: true,
            closing: true,
            deadline: Instant::now() + timeout,
            reply,
        });
        if in_progress {
            self.flush_stt(Duration::from_secs(2));
        } else {
            self.finish_commit();
        }
    }

    /// Pushes `duration` of silence to the STT so it finalizes what it heard.
    fn flush_stt(&mut self, duration: Duration) {
        if let (Some(stt), Some(last)) = (&self.stt_audio, &self.last_frame) {
            let per_frame = (last.sample_rate / 20).max(1) as usize;
            let frames = (duration.as_secs_f64() * 20.0).ceil().min(2_000.0) as usize;
            for _ in 0..frames {
                let _ = stt.send(AudioFrame::silence(
                    last.sample_rate,
                    last.num_channels,
                    per_frame,
                ));
            }
        }
    }

    pub(super) fn finish_commit(&mut self) {
        let Some(pending) = self.commit.take() else {
            return;
        };
        if pending.closing {
            let mut transcript = self.transcript.clone();
            if !self.interim.trim().is_empty() {
                if !transcript.is_empty() {
                    transcript.push(' ');
                }
                transcript.push_str(self.interim.trim());
            }
            self.reset_turn();
            let _ = pending.reply.send(transcript);
            return;
        }
        let transcript = self.commit_turn(pending.skip_reply);
        self.reset_turn();
        let _ = pending.reply.send(transcript);
    }
}
