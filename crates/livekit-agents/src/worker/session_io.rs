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
        use crate::room::LiveKitRoom;
        use crate::room_logic::RoomIo;

        let room = self.connect().await?;
        if options.participant_identity.is_none() {
            options.participant_identity = self.publisher_identity().map(str::to_owned);
        }
        let ctx = self.clone();
        let backend = LiveKitRoom::new(room).with_room_deletion(move || {
            let ctx = ctx.clone();
            async move { ctx.delete_room().await.map_err(|e| e.to_string()) }
        });
        let (room_io, io) =
            RoomIo::start_for_session(std::sync::Arc::new(backend), options, session)
                .await
                .map_err(|e| JobError::NoIo {
                    reason: e.to_string(),
                })?;

        // Closing the session ends the job (after RoomIO deleted the room, if asked); the job
        // shutting down stops RoomIO.
        let ctx = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = room_io.wait_closed() => ctx.shutdown("session closed"),
                _ = ctx.wait_for_shutdown() => room_io.close(),
            }
        });

        // Overload protection: a session that falls behind its microphone sheds the oldest
        // audio instead of queueing it without bound (issue 15 item 8).
        let audio_input = io.audio_input.map(|input| {
            crate::io::bounded::bounded_audio_input(
                input,
                crate::io::bounded::DEFAULT_MAX_BUFFERED_INPUT,
            )
            .0
        });
        Ok(SessionIo { audio_input, ..io })
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
