//! Audio recognition: user audio fans out to the VAD and the STT node; VAD events drive the
//! user's speaking state and interruptions; final transcripts accumulate the turn; the end of
//! the turn is decided here (see [`super::endpointing`]) and handed to the active agent's
//! activity.
//!
//! The task lives at session level, so the STT stream survives agent handoffs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::activity::EndOfTurnInfo;
use super::endpointing::{wait_end_of_turn, Endpointing, EouDecision, EouParams};
use super::events::{AgentState, CloseReason, ErrorSource, SessionEvent};
use super::options::TurnDetection;
use super::session::{AgentSession, CommitOptions};
use crate::audio::AudioFrame;
use crate::io::AudioInput;
use crate::llm::ChatRole;
use crate::metrics::{AgentMetrics, SttMetrics, VadMetrics};
use crate::stt::{SpeechEvent, SpeechEventType};
use crate::types::ApiError;
use crate::vad::{VadEvent, VadEventType, VadStream};

/// Wait before opening a new STT stream after one failed (the reference's
/// `_STT_RECONNECT_INTERVAL`).
const STT_REOPEN_INTERVAL: Duration = Duration::from_millis(500);

/// After the audio input ends, how long late transcripts may still arrive.
const INPUT_END_GRACE: Duration = Duration::from_secs(3);

/// Minimum transcript length before its language is trusted.
const MIN_LANGUAGE_DETECTION_LENGTH: usize = 5;

pub(crate) enum RecognitionCommand {
    Commit {
        options: CommitOptions,
        reply: oneshot::Sender<String>,
    },
    Clear,
    /// `AgentSession::update_options`: new endpointing and/or (resolved) turn detection.
    UpdateOptions {
        endpointing: Option<super::options::EndpointingOptions>,
        turn_detection: Option<TurnDetection>,
    },
    /// The active agent changed: reopen the STT if the new agent overrides it.
    AgentChanged(super::agent::Agent),
    /// The session closes: answer what the user was saying (waiting up to `timeout` for its
    /// final transcript if speech is in progress) without handing it to the activity.
    TrailingTranscript {
        timeout: Duration,
        reply: oneshot::Sender<String>,
    },
}

pub(crate) struct RecognitionHandle {
    pub commands: mpsc::UnboundedSender<RecognitionCommand>,
    _task: AbortOnDropHandle<()>,
}

impl RecognitionHandle {
    /// What the user was saying (see [`RecognitionCommand::TrailingTranscript`]); empty if
    /// nothing, or if recognition stopped.
    pub(crate) async fn trailing_transcript(&self, timeout: Duration) -> String {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(RecognitionCommand::TrailingTranscript { timeout, reply: tx })
            .is_err()
        {
            return String::new();
        }
        // Bounded even if the task is stuck: the timeout, plus a little for the STT flush.
        let bound = timeout.saturating_add(Duration::from_millis(500));
        tokio::time::timeout(bound, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }
}

pub(crate) fn spawn(session: AgentSession, input: AudioInput) -> RecognitionHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut r = Recognition::new(session, rx).await;
        r.run(input).await;
    });
    RecognitionHandle {
        commands: tx,
        _task: AbortOnDropHandle::new(task),
    }
}

type EouFuture = Pin<Box<dyn Future<Output = EouDecision> + Send>>;

use commit::PendingCommit;

struct Recognition {
    session: AgentSession,
    commands: mpsc::UnboundedReceiver<RecognitionCommand>,
    vad: Option<VadStream>,
    stt_audio: Option<mpsc::UnboundedSender<AudioFrame>>,
    stt_events: Option<BoxStream<'static, Result<SpeechEvent, ApiError>>>,
    mode: TurnDetection,
    endpointing: Endpointing,
    /// What `endpointing` was built from (rebuilt only when it changes: dynamic endpointing
    /// keeps what it learned across a handoff to an agent with the same values).
    endpointing_opts: super::options::EndpointingOptions,
    speaking: bool,
    speech_started_at: Option<Instant>,
    last_speaking_time: Option<Instant>,
    last_final_at: Option<Instant>,
    transcript: String,
    interim: String,
    language: Option<String>,
    speaker_id: Option<String>,
    eou: Option<EouFuture>,
    commit: Option<PendingCommit>,
    last_frame: Option<AudioFrame>,
    vad_metrics: VadMetrics,
    stt_audio_secs: f64,
    /// When the user stopped speaking in the last committed turn.
    last_committed_end: Option<Instant>,
    /// `transcription_timeout` of the current turn.
    transcription_timer: timeout::TranscriptionTimer,
}

impl Recognition {
    async fn new(
        session: AgentSession,
        commands: mpsc::UnboundedReceiver<RecognitionCommand>,
    ) -> Self {
        let vad = session.vad().map(|v| v.stream());
        let vad_label = session.vad().map(|v| v.label()).unwrap_or_default();
        let agent = session.current_agent();
        // The active agent's own turn detection and endpointing over the session's.
        let (mode, endpointing_opts) = match &agent {
            Some(a) => (session.turn_detection_for(a), session.endpointing_for(a)),
            None => (
                session.turn_detection(),
                session.options().turn_handling.endpointing,
            ),
        };
        let (stt_audio, stt_events) = match agent {
            Some(agent) => open_stt(&session, agent).await,
            None => (None, None),
        };
        let endpointing = Endpointing::new(endpointing_opts);
        Self {
            session,
            commands,
            vad,
            stt_audio,
            stt_events,
            mode,
            endpointing,
            endpointing_opts,
            speaking: false,
            speech_started_at: None,
            last_speaking_time: None,
            last_final_at: None,
            transcript: String::new(),
            interim: String::new(),
            language: None,
            speaker_id: None,
            eou: None,
            commit: None,
            last_frame: None,
            vad_metrics: VadMetrics {
                label: vad_label,
                ..Default::default()
            },
            stt_audio_secs: 0.0,
            last_committed_end: None,
            transcription_timer: timeout::TranscriptionTimer::default(),
        }
    }

    async fn run(&mut self, input: AudioInput) {
        let mut input = input.into_stream();
        let mut input_open = true;
        let mut input_grace: Option<Instant> = None;
        let mut stt_reopen_at: Option<Instant> = None;
        loop {
            let commit_deadline = self.commit.as_ref().map(|c| c.deadline);
            let transcription_deadline = self.transcription_timer.deadline();
            tokio::select! {
                _ = sleep_until_opt(input_grace), if input_grace.is_some_and(|g| Instant::now() < g) => {}
                _ = sleep_until_opt(stt_reopen_at), if stt_reopen_at.is_some() => {
                    stt_reopen_at = None;
                    if input_open && self.session.is_running() {
                        if let Some(agent) = self.session.current_agent() {
                            let (audio, events) = open_stt(&self.session, agent).await;
                            self.stt_audio = audio;
                            self.stt_events = events;
                        }
                    }
                }
                frame = input.next(), if input_open => match frame {
                    Some(frame) => self.push_audio(frame),
                    None => {
                        input_open = false;
                        tracing::debug!("audio input ended");
                        // The VAD finishes what it has; the STT gets a grace period for its
                        // last transcripts (its stream has no end-of-input through the node).
                        if let Some(vad) = self.vad.as_mut() {
                            vad.end_input();
                        }
                        self.stt_audio = None;
                        input_grace = Some(Instant::now() + INPUT_END_GRACE);
                    }
                },
                ev = next_vad(&mut self.vad) => match ev {
                    Some(ev) => self.on_vad_event(ev),
                    None => self.vad = None,
                },
                ev = next_stt(&mut self.stt_events) => match ev {
                    Some(Ok(ev)) => self.on_stt_event(ev),
                    Some(Err(e)) => {
                        // The stream already retried what could be retried. Every such error
                        // counts toward the unrecoverable budget (the session closes past it);
                        // as the reference, only a lost connection opens a new stream shortly.
                        let reopen = matches!(e, ApiError::Connection { .. } | ApiError::Timeout(_));
                        self.session.report_error(ErrorSource::Stt, e.clone(), false);
                        self.stt_events = None;
                        self.stt_audio = None;
                        self.transcription_timer.cancel();
                        if reopen {
                            stt_reopen_at = Some(Instant::now() + STT_REOPEN_INTERVAL);
                        } else {
                            tracing::warn!(error = %e, "the STT stream failed; not reopened (not a connection error)");
                        }
                    }
                    None => {
                        self.stt_events = None;
                        self.stt_audio = None;
                        self.transcription_timer.cancel();
                    }
                },
                cmd = self.commands.recv() => match cmd {
                    Some(RecognitionCommand::Commit { options, reply }) => self.start_commit(options, reply),
                    Some(RecognitionCommand::Clear) => self.clear_turn(),
                    Some(RecognitionCommand::AgentChanged(agent)) => self.on_agent_changed(agent).await,
                    Some(RecognitionCommand::UpdateOptions { endpointing, turn_detection }) => {
                        if let Some(opts) = endpointing {
                            self.endpointing = Endpointing::new(opts);
                            self.endpointing_opts = opts;
                        }
                        if let Some(mode) = turn_detection {
                            self.mode = mode;
                        }
                    }
                    Some(RecognitionCommand::TrailingTranscript { timeout, reply }) => self.start_trailing(timeout, reply),
                    None => break,
                },
                decision = poll_eou(&mut self.eou) => {
                    self.eou = None;
                    self.on_eou_ready(decision);
                }
                _ = sleep_until_opt(commit_deadline), if commit_deadline.is_some() => {
                    self.finish_commit();
                }
                _ = sleep_until_opt(transcription_deadline), if transcription_deadline.is_some() => {
                    self.on_transcription_timeout();
                }
            }
            let grace_over = input_grace.is_some_and(|g| Instant::now() >= g);
            if !input_open && grace_over && self.eou.is_none() && self.commit.is_none() {
                break;
            }
        }
        if !input_open {
            let session = self.session.clone();
            // Let the last reply finish before closing on end of input.
            tokio::spawn(async move {
                session.wait_idle().await;
                session.close_with(CloseReason::InputEnded, None).await;
            });
        }
    }

    fn push_audio(&mut self, frame: AudioFrame) {
        if !self.session.audio_input_enabled() {
            return;
        }
        if let Some(vad) = &self.vad {
            vad.push_frame(frame.clone());
        }
        let discard = self
            .session
            .current_activity()
            .is_some_and(|a| a.discard_stt_audio());
        let for_models = if discard {
            AudioFrame::silence(
                frame.sample_rate,
                frame.num_channels,
                frame.samples_per_channel,
            )
        } else {
            frame.clone()
        };
        if let Some(link) = self.session.realtime_link() {
            link.session.push_audio(&for_models);
        }
        if let Some(stt) = &self.stt_audio {
            self.stt_audio_secs += frame.duration_secs();
            let _ = stt.send(for_models);
        }
        self.last_frame = Some(frame);
    }

    fn on_vad_event(&mut self, ev: VadEvent) {
        let activity = self.session.current_activity();
        let now = Instant::now();
        match ev.kind {
            VadEventType::StartOfSpeech => {
                let started = now
                    .checked_sub(provider_secs(ev.speech_duration + ev.inference_duration))
                    .unwrap_or(now);
                if self.eou.take().is_some() {
                    // A pause inside the turn.
                    if let Some(last) = self.last_speaking_time {
                        self.endpointing
                            .observe_pause(started.saturating_duration_since(last));
                    }
                } else if let Some(end) = self.last_committed_end.take() {
                    // The user went on before the reply to a committed turn started playing:
                    // the end of turn was premature (dynamic endpointing learns from it).
                    let pause = started.saturating_duration_since(end);
                    let reply_not_heard = self.session.agent_state() == AgentState::Thinking;
                    if reply_not_heard && pause <= self.endpointing.max_delay() {
                        self.endpointing.observe_pause(pause);
                    }
                }
                self.speaking = true;
                self.transcription_timer.cancel();
                if self.speech_started_at.is_none() {
                    self.speech_started_at = Some(started);
                }
                if let Some(a) = activity {
                    a.on_start_of_speech();
                }
            }
            VadEventType::InferenceDone => {
                self.vad_metrics.inference_count += 1;
                self.vad_metrics.inference_duration_total = self
                    .vad_metrics
                    .inference_duration_total
                    .saturating_add(provider_secs(ev.inference_duration));
                if self.speaking {
                    if let Some(a) = activity {
                        let words = format!("{} {}", self.transcript, self.interim)
                            .split_whitespace()
                            .count();
                        a.on_vad_inference(
                            provider_secs(ev.speech_duration),
                            words,
                            self.stt_events.is_some(),
                        );
                    }
                }
            }
            VadEventType::EndOfSpeech => {
                self.speaking = false;
                // A turn committed meanwhile has no speech start any more: nothing to time.
                if self.stt_events.is_some() && self.speech_started_at.is_some() {
                    self.transcription_timer.arm(
                        self.session.options().transcription_timeout,
                        provider_secs(ev.speech_duration),
                        provider_secs(ev.silence_duration + ev.inference_duration),
                    );
                }
                self.last_speaking_time = Some(
                    now.checked_sub(provider_secs(ev.silence_duration + ev.inference_duration))
                        .unwrap_or(now),
                );
                if self.vad_metrics.inference_count > 0 {
                    self.session
                        .emit_metrics(AgentMetrics::Vad(std::mem::take(&mut self.vad_metrics)));
                    self.vad_metrics.label =
                        self.session.vad().map(|v| v.label()).unwrap_or_default();
                }
                if let Some(t) = self.last_speaking_time {
                    self.session.note_user_last_spoke(t);
                }
                if let Some(a) = activity {
                    a.on_end_of_speech();
                }
                if matches!(self.mode, TurnDetection::Vad | TurnDetection::Model(_)) {
                    // With an STT, wait for a transcript before deciding (the final transcript
                    // triggers the decision then).
                    if self.stt_events.is_none() || !self.transcript.trim().is_empty() {
                        self.run_eou();
                    }
                }
            }
        }
    }

    fn on_stt_event(&mut self, ev: SpeechEvent) {
        let activity = self.session.current_activity();
        let data = ev.alternatives.first().cloned();
        match ev.kind {
            SpeechEventType::InterimTranscript => {
                let Some(data) = data else { return };
                self.interim = data.text.clone();
                self.interrupt_without_vad(activity.as_ref());
                self.session.emit(SessionEvent::UserInputTranscribed {
                    transcript: data.text,
                    is_final: false,
                    speaker_id: data.speaker_id,
                    language: non_empty(data.language),
                });
            }
            SpeechEventType::FinalTranscript => {
                let Some(data) = data else { return };
                self.interim.clear();
                let text = data.text.trim().to_string();
                self.session.emit(SessionEvent::UserInputTranscribed {
                    transcript: data.text.clone(),
                    is_final: true,
                    speaker_id: data.speaker_id.clone(),
                    language: non_empty(data.language.clone()),
                });
                if text.is_empty() {
                    return;
                }
                self.session.reset_errors(ErrorSource::Stt);
                self.transcription_timer.mark_transcribed();
                self.last_final_at = Some(Instant::now());
                if text.len() >= MIN_LANGUAGE_DETECTION_LENGTH && !data.language.is_empty() {
                    self.language = Some(data.language.clone());
                }
                self.speaker_id = data.speaker_id;
                if !self.transcript.is_empty() {
                    self.transcript.push(' ');
                }
                self.transcript.push_str(&text);
                self.interrupt_without_vad(activity.as_ref());
                if let Some(a) = &activity {
                    a.on_final_transcript(&text);
                    let duration = self
                        .speech_started_at
                        .map(|s| {
                            self.last_speaking_time
                                .unwrap_or_else(Instant::now)
                                .saturating_duration_since(s)
                        })
                        .unwrap_or_default();
                    a.on_preemptive_generation(&self.transcript, duration);
                }
                if self.commit.is_some() {
                    self.finish_commit();
                    return;
                }
                if matches!(self.mode, TurnDetection::Vad | TurnDetection::Model(_))
                    && !self.speaking
                {
                    if self.last_speaking_time.is_none() && self.vad.is_none() {
                        self.last_speaking_time = Some(Instant::now());
                    }
                    if self.last_speaking_time.is_some() {
                        self.run_eou();
                    }
                }
            }
            SpeechEventType::PreflightTranscript => {
                if let (Some(a), Some(data)) = (activity, data) {
                    let text = format!("{} {}", self.transcript, data.text)
                        .trim()
                        .to_string();
                    a.on_preemptive_generation(&text, Duration::ZERO);
                }
            }
            SpeechEventType::StartOfSpeech => {
                if matches!(self.mode, TurnDetection::Stt) {
                    self.eou = None;
                    if self.vad.is_none() {
                        self.speaking = true;
                        self.speech_started_at.get_or_insert_with(Instant::now);
                        if let Some(a) = activity {
                            a.on_start_of_speech();
                        }
                    }
                }
            }
            SpeechEventType::EndOfSpeech => {
                if matches!(self.mode, TurnDetection::Stt) {
                    if self.vad.is_none() {
                        self.speaking = false;
                        if let Some(a) = activity {
                            a.on_end_of_speech();
                        }
                    }
                    self.last_speaking_time = Some(Instant::now());
                    self.run_eou();
                }
            }
            SpeechEventType::RecognitionUsage => {
                if let Some(usage) = ev.recognition_usage {
                    // A non-streaming recognition (through the stream adapter) reports how
                    // long its request took; a stream's usage has no request time.
                    let duration = usage.request_duration.map(provider_secs);
                    self.session.emit_metrics(AgentMetrics::Stt(SttMetrics {
                        label: self.session.stt().map(|s| s.label()).unwrap_or_default(),
                        request_id: ev.request_id,
                        duration: duration.unwrap_or_default(),
                        audio_duration: provider_secs(usage.audio_duration),
                        streamed: duration.is_none(),
                    }));
                }
            }
        }
    }

    /// Applies the new agent's turn detection and endpointing (its own, else the session's);
    /// keeps the STT stream across handoffs unless the new agent brings its own STT.
    async fn on_agent_changed(&mut self, agent: super::agent::Agent) {
        self.mode = self.session.turn_detection_for(&agent);
        let opts = self.session.endpointing_for(&agent);
        if opts != self.endpointing_opts {
            self.endpointing = Endpointing::new(opts);
            self.endpointing_opts = opts;
        }
        if agent.stt().is_none() {
            return;
        }
        let (audio, events) = open_stt(&self.session, agent).await;
        self.stt_audio = audio;
        self.stt_events = events;
    }

    /// Without a VAD, transcripts are the only sign of user speech: they interrupt the agent
    /// (subject to `min_words`).
    fn interrupt_without_vad(&self, activity: Option<&super::activity::Activity>) {
        if self.vad.is_some() {
            return;
        }
        if let Some(a) = activity {
            let words = format!("{} {}", self.transcript, self.interim)
                .split_whitespace()
                .count();
            a.on_transcript_activity(words);
        }
    }

    /// Starts (or restarts) the end-of-turn wait.
    fn run_eou(&mut self) {
        if matches!(self.mode, TurnDetection::Manual) {
            return;
        }
        let Some(last) = self.last_speaking_time else {
            return;
        };
        let detector = match &self.mode {
            TurnDetection::Model(d) => Some(d.clone()),
            _ => None,
        };
        let mut chat_ctx = self
            .session
            .current_agent()
            .map(|a| a.chat_ctx())
            .unwrap_or_default();
        chat_ctx.add_message(ChatRole::User, self.transcript.clone());
        let params = EouParams {
            detector,
            chat_ctx,
            language: self.language.clone(),
            min_delay: self.endpointing.min_delay(),
            max_delay: self.endpointing.max_delay(),
            detector_timeout: self.session.options().turn_detector_timeout,
            last_speaking_time: last,
        };
        self.eou = Some(Box::pin(wait_end_of_turn(params)));
    }

    /// `transcription_timeout` passed without a transcript: the activity reports it.
    fn on_transcription_timeout(&mut self) {
        let Some(speech) = self.transcription_timer.fire() else {
            return;
        };
        let (Some(started), Some(a)) = (self.speech_started_at, self.session.current_activity())
        else {
            return;
        };
        a.on_transcription_timeout(speech, started);
    }

    fn on_eou_ready(&mut self, decision: EouDecision) {
        tracing::debug!(delay = ?decision.delay, probability = ?decision.probability, "end of turn");
        self.commit_turn(false);
    }

    /// Hands the turn to the activity; resets it if committed. Returns the transcript.
    fn commit_turn(&mut self, skip_reply: bool) -> String {
        let now = Instant::now();
        let last = self.last_speaking_time;
        let info = EndOfTurnInfo {
            transcript: self.transcript.clone(),
            skip_reply,
            end_of_utterance_delay: last
                .map(|l| now.saturating_duration_since(l))
                .unwrap_or_default(),
            transcription_delay: match (self.last_final_at, last) {
                (Some(f), Some(l)) => f.saturating_duration_since(l),
                _ => Duration::ZERO,
            },
            speech_duration: match (self.speech_started_at, last) {
                (Some(s), Some(l)) => l.saturating_duration_since(s),
                _ => Duration::ZERO,
            },
            stopped_speaking_at: last,
        };
        let transcript = self.transcript.clone();
        let committed = self
            .session
            .current_activity()
            .is_some_and(|a| a.on_end_of_turn(info));
        if committed {
            self.last_committed_end = last;
        }
        if committed || skip_reply {
            self.reset_turn();
        }
        transcript
    }

    fn reset_turn(&mut self) {
        self.transcription_timer.reset();
        self.transcript.clear();
        self.interim.clear();
        self.speech_started_at = None;
        self.last_final_at = None;
        self.eou = None;
    }

    fn clear_turn(&mut self) {
        self.reset_turn();
        if let Some(c) = self.commit.take() {
            let _ = c.reply.send(String::new());
        }
    }
}

mod commit;
mod streams;
mod timeout;

pub(crate) use streams::provider_secs;
use streams::{next_stt, next_vad, non_empty, open_stt, poll_eou, sleep_until_opt};
