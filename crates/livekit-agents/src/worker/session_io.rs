//! The seam between a job and its voice session: [`JobContext::session_io`] gives the session
//! the ports of the mode the job runs in (console ports in `console` mode, room ports when
//! joined to a LiveKit room) and wires the mode's events to the session, so one entrypoint
//! works in every mode.

use crate::room_logic::RoomOptions;
use crate::voice::{AgentSession, SessionIo};

use super::job::{JobContext, JobError};

impl JobContext {
    /// The session's ports for this job with the default [`RoomOptions`]; see
    /// [`JobContext::session_io_with`].
    ///
    /// ```no_run
    /// use livekit_agents::voice::{Agent, AgentSession};
    /// use livekit_agents::worker::JobContext;
    ///
    /// async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    ///     let session = AgentSession::builder().build(); // plus .stt(..).llm(..).tts(..).vad(..)
    ///     let io = ctx.session_io(&session).await?;
    ///     session.start(Agent::new("You are a helpful voice assistant."), io).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn session_io(&self, session: &AgentSession) -> Result<SessionIo, JobError> {
        self.session_io_with(session, RoomOptions::default()).await
    }

    /// The session's ports for this job. In console mode: the console's (files, terminal,
    /// microphone). Otherwise (with the `room` feature): connects to the room if needed, starts
    /// RoomIO with `options`, and wires it to `session`: chat text becomes user turns, the agent
    /// state goes to `lk.agent.state`, user transcripts go out on `lk.transcription`, a linked
    /// participant leaving for good closes the session, and closing the session ends the job
    /// (deleting the room first with `delete_room_on_close`).
    pub async fn session_io_with(
        &self,
        session: &AgentSession,
        options: RoomOptions,
    ) -> Result<SessionIo, JobError> {
        forward_metrics(self, session);
        let io = match &self.inner.console {
            Some(console) => crate::cli::console::console_session_io(self, console, session),
            None => self.room_session_io(session, options).await,
        }?;
        // SessionOptions::ivr_detection: phone-menu navigation once the session runs.
        crate::telephony::ivr::start_for_session_option(self, session);
        Ok(io)
    }

    #[cfg(not(feature = "room"))]
    async fn room_session_io(
        &self,
        _session: &AgentSession,
        _options: RoomOptions,
    ) -> Result<SessionIo, JobError> {
        Err(JobError::NoIo {
            reason: "joining a LiveKit room needs the `room` cargo feature (livekit-agents/room)"
                .into(),
        })
    }

    #[cfg(feature = "room")]
    async fn room_session_io(
        &self,
        session: &AgentSession,
        mut options: RoomOptions,
    ) -> Result<SessionIo, JobError> {
        use crate::room::{RoomInputEvent, RoomIo};
        use crate::voice::{ReplyOptions, SessionEvent};

        let room = self.connect().await?;
        if options.participant_identity.is_none() {
            options.participant_identity = self.publisher_identity().map(str::to_owned);
        }
        let delete_room_on_close = options.delete_room_on_close;
        let (room_io, ports) = RoomIo::start(room, options)
            .await
            .map_err(|e| JobError::NoIo {
                reason: e.to_string(),
            })?;

        // As the reference: the user cannot be "away" before they can hear the agent.
        let io = room_io.clone();
        session.hold_user_away_timer_until(async move {
            io.wait_for_audio_subscription().await;
        });

        // Live video (RoomOptions::video_input): sampled frames go with the user's turns.
        if let Some(video) = ports.video_input {
            session.forward_video(tokio_stream::wrappers::ReceiverStream::new(video));
        }

        // Room -> session.
        let mut room_events = ports.events;
        let s = session.clone();
        let ctx = self.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = ctx.wait_for_shutdown() => break,
                    ev = room_events.recv() => match ev { Some(ev) => ev, None => break },
                };
                match ev {
                    RoomInputEvent::UserText { text, .. } => {
                        s.interrupt();
                        if let Err(e) = s.generate_reply(ReplyOptions {
                            user_input: Some(text),
                            ..Default::default()
                        }) {
                            tracing::warn!(error = %e, "cannot answer chat text");
                        }
                    }
                    RoomInputEvent::SipDtmf {
                        code,
                        digit,
                        participant_identity,
                    } => s.push_sip_dtmf(code, digit, participant_identity),
                    RoomInputEvent::LinkedParticipantChanged(p) => {
                        tracing::debug!(participant = ?p, "linked participant changed");
                    }
                    RoomInputEvent::CloseRequested { reason } => {
                        tracing::info!(reason, "closing the session");
                        s.close().await;
                        break;
                    }
                }
            }
        });

        // Session -> room.
        let mut session_events = session.subscribe();
        let ctx = self.clone();
        let io = room_io.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let ev = match session_events.recv().await {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                match ev {
                    SessionEvent::AgentStateChanged { new_state, .. } => {
                        if let Err(e) = io.set_agent_state(new_state.as_str()).await {
                            tracing::warn!(error = %e, "cannot publish the agent state");
                        }
                    }
                    SessionEvent::UserInputTranscribed {
                        transcript,
                        is_final,
                        ..
                    } => {
                        if let Err(e) = io.publish_user_transcript(&transcript, is_final).await {
                            tracing::debug!(error = %e, "cannot publish a user transcript");
                        }
                    }
                    SessionEvent::Close { .. } => break,
                    _ => {}
                }
            }
            io.close();
            if delete_room_on_close {
                if let Err(e) = ctx.delete_room().await {
                    tracing::warn!(error = %e, "cannot delete the room");
                }
            }
            ctx.shutdown("session closed");
        });

        // Overload protection: a session that falls behind its microphone sheds the oldest
        // audio instead of queueing it without bound (issue 15 item 8).
        let audio_input = ports.audio_input.map(|input| {
            crate::io::bounded::bounded_audio_input(
                input,
                crate::io::bounded::DEFAULT_MAX_BUFFERED_INPUT,
            )
            .0
        });
        Ok(SessionIo {
            audio_input,
            audio_output: ports.audio_output,
            text_output: ports.text_output,
        })
    }
}

/// Feeds the session's metrics events into the worker's `/metrics` histograms.
fn forward_metrics(ctx: &JobContext, session: &AgentSession) {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = session.subscribe();
    let ctx = ctx.clone();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = ctx.wait_for_shutdown() => break,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(crate::voice::SessionEvent::MetricsCollected { metrics }) => {
                    super::metrics::observe_agent_metrics(&metrics);
                }
                Ok(crate::voice::SessionEvent::Close { .. }) | Err(RecvError::Closed) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
            }
        }
    });
}
