//! The streaming loop shared by the v1 (nova) and v2 (Flux) listen APIs: audio chunking, the
//! replay of unfinalized audio after a reconnect, KeepAlive, option updates, and the end of
//! input. What differs between the APIs (URL, flush and keepalive messages, how server
//! messages map to events) is a [`ListenApi`].

use std::time::Duration;

use async_trait::async_trait;
use livekit_agents::audio::AudioFrame;
use livekit_agents::plugin_support::UsageMeter;
use livekit_agents::stt::{
    SpeechEvent, SpeechEventSender, SttInput, SttInputReceiver, SttStreamTask,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use url::Url;

use crate::common::{
    authorization, to_le_bytes, ApiKey, Chunker, Dialer, Incoming, KeepAlive, ReplayBuffer,
    WsStream, DEEPGRAM, KEEPALIVE_INTERVAL,
};

/// Size of the audio chunks sent to Deepgram (the reference sends 50 ms).
const CHUNK_MS: u32 = 50;
/// How much more than the connection's lifetime (or the audio sent) a `Metadata` message may
/// bill before it is taken for garbage.
const BILLING_SLACK_SECS: f64 = 60.0;
/// Unfinalized audio kept for replay after a reconnect. Deepgram finalizes every few seconds,
/// so this is a bound for pathological cases, not a working size.
const MAX_REPLAY_SECS: f64 = 30.0;
/// Usage is reported every this many seconds of audio sent (as the reference does).
const USAGE_REPORT_SECS: f64 = 5.0;

/// What one listen API version does differently.
pub(crate) trait ListenApi: Send + Sync + 'static {
    /// The client's options.
    type Options: Clone + Send + Sync + 'static;
    /// Name for logs.
    const NAME: &'static str;
    /// Whether to send `KeepAlive` after [`KEEPALIVE_INTERVAL`] without audio.
    const KEEPALIVE: bool;
    /// Whether a flush of the stream sends `Finalize`.
    const FINALIZE_ON_FLUSH: bool;
    /// Whether the API takes mono audio only (multi-channel input is downmixed).
    const MONO_ONLY: bool = false;

    /// The socket URL for audio at `sample_rate` with `channels`.
    fn url(opts: &Self::Options, base: &Url, sample_rate: u32, channels: u16) -> Url;
    /// The language the options name (to notice explicit language updates).
    fn language(opts: &Self::Options) -> Option<String>;
    /// Applies the language a stream was opened with.
    fn set_language(opts: &mut Self::Options, language: &str);
    /// Maps a server message to actions. `speaking` is the stream's speaking state, which the
    /// handler updates.
    fn handle(opts: &Self::Options, text: &str, offset: f64, speaking: &mut bool) -> Vec<Action>;
}

/// What a server message asks the stream to do.
pub(crate) enum Action {
    /// Send an event (its request id is filled in).
    Event(SpeechEvent),
    /// The provider finalized the audio up to this many seconds into the connection.
    FinalizedUntil(f64),
    /// The provider's request id.
    RequestId(String),
    /// The provider reports billing this many seconds for the connection.
    Billed(f64),
    /// Fail the attempt.
    Fail(ApiError),
}

/// Audio bookkeeping of a stream, created from the first frame's format.
struct AudioState {
    chunker: Chunker,
    replay: ReplayBuffer,
    chunk_len: usize,
}

/// One streaming recognition. Its fields survive reconnections (the core calls
/// [`SttStreamTask::run`] again after a retryable error), which is what lets a new connection
/// resend the unfinalized audio and keep timestamps and speaking state consistent.
pub(crate) struct ListenTask<A: ListenApi> {
    options: watch::Receiver<A::Options>,
    created_language: Option<String>,
    language_override: Option<String>,
    options_alive: bool,
    api_key: ApiKey,
    base_url: Url,
    dialer: Dialer,
    conn: ApiConnectOptions,
    audio: Option<AudioState>,
    speaking: bool,
    input_ended: bool,
    reconnect_pending: bool,
    request_id: String,
    usage: UsageMeter,
}

impl<A: ListenApi> ListenTask<A> {
    /// How long audio may go unanswered before the connection counts as stalled: twice the
    /// connect timeout (20 s by default; Deepgram answers audio within a few seconds).
    fn stall_timeout(&self) -> Duration {
        self.conn.timeout.saturating_mul(2)
    }

    pub(crate) fn new(
        options: watch::Receiver<A::Options>,
        language: Option<String>,
        api_key: ApiKey,
        base_url: Url,
        dialer: Dialer,
        conn: ApiConnectOptions,
    ) -> Self {
        let created_language = A::language(&options.borrow());
        Self {
            options,
            created_language,
            language_override: language,
            options_alive: true,
            api_key,
            base_url,
            dialer,
            conn,
            audio: None,
            speaking: false,
            input_ended: false,
            reconnect_pending: false,
            request_id: String::new(),
            usage: UsageMeter::default(),
        }
    }
}

/// Per-connection state.
struct Session<O> {
    /// Stream position (samples per channel) at which this connection's time zero lies.
    start_pos: u64,
    /// Seconds of audio sent on this connection (billing reconciliation with `Metadata`).
    audio_secs: f64,
    /// When the connection opened (bounds the billed duration `Metadata` may claim).
    opened_at: Instant,
    keepalive: KeepAlive,
    close_deadline: Option<Instant>,
    /// Set when audio is sent while no server message has come since: Deepgram answers audio
    /// with results, so silence past this deadline is a stalled server (reconnect).
    stall_deadline: Option<Instant>,
    opts: O,
}

enum SessionEnd {
    Done,
    Reconnect,
}

#[async_trait]
impl<A: ListenApi> SttStreamTask for ListenTask<A> {
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        // The stream's format is the first frame's: wait for it before connecting.
        while self.audio.is_none() {
            match input.recv().await {
                None => return Ok(()),
                Some(SttInput::Flush) => continue,
                Some(SttInput::Frame(frame)) => self.accept_frame(&frame)?,
            }
        }
        loop {
            let opts = self.current_options();
            let (rate, channels) = match &self.audio {
                Some(a) => (a.replay.sample_rate(), a.replay.channels()),
                None => return Ok(()),
            };
            let url = A::url(&opts, &self.base_url, rate, channels);
            let headers = vec![(http::header::AUTHORIZATION, authorization(&self.api_key)?)];
            let (mut ws, request_id) = DEEPGRAM
                .connect_ws(&self.dialer, &url, headers, self.conn.timeout)
                .await?;
            if let Some(id) = request_id {
                self.request_id = id;
            }
            tracing::debug!(api = A::NAME, request_id = %self.request_id, "connected to Deepgram");
            let result = self.session(&mut ws, input, events, opts).await;
            self.usage.flush(&self.request_id, events).await;
            match result? {
                SessionEnd::Done => return Ok(()),
                SessionEnd::Reconnect => {
                    tracing::debug!("Deepgram options changed, reconnecting");
                    let _ = ws.close(None).await;
                }
            }
        }
    }
}

impl<A: ListenApi> ListenTask<A> {
    /// The options for the next connection (stream language override applied).
    fn current_options(&mut self) -> A::Options {
        let mut opts = self.options.borrow_and_update().clone();
        self.reconnect_pending = false;
        if A::language(&opts) != self.created_language {
            // An explicit language update replaces the language the stream was opened with.
            self.language_override = None;
        }
        if let Some(lang) = &self.language_override {
            A::set_language(&mut opts, lang);
        }
        opts
    }

    /// Takes a frame into the chunker, checking it matches the stream's format.
    fn accept_frame(&mut self, frame: &AudioFrame) -> Result<(), ApiError> {
        if frame.sample_rate == 0 || frame.num_channels == 0 {
            return Err(ApiError::other(format!("invalid audio frame: {frame:?}")));
        }
        let mono;
        let frame = if A::MONO_ONLY && frame.num_channels > 1 {
            mono = frame.downmix_to_mono();
            &mono
        } else {
            frame
        };
        let audio = self.audio.get_or_insert_with(|| {
            let chunker = Chunker::new(frame.sample_rate, frame.num_channels, CHUNK_MS);
            let chunk_len = (frame.sample_rate as usize * CHUNK_MS as usize / 1000).max(1)
                * frame.num_channels as usize;
            AudioState {
                chunker,
                replay: ReplayBuffer::new(frame.sample_rate, frame.num_channels, MAX_REPLAY_SECS),
                chunk_len,
            }
        });
        let (rate, channels) = (audio.replay.sample_rate(), audio.replay.channels());
        if frame.sample_rate != rate || frame.num_channels != channels {
            return Err(ApiError::other(format!(
                "audio format changed mid-stream: {} Hz x{} after {} Hz x{}; resample before pushing",
                frame.sample_rate, frame.num_channels, rate, channels
            )));
        }
        audio.chunker.push(&frame.data);
        Ok(())
    }

    async fn session(
        &mut self,
        ws: &mut WsStream,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
        opts: A::Options,
    ) -> Result<SessionEnd, ApiError> {
        let Some(audio) = self.audio.as_ref() else {
            return Ok(SessionEnd::Done);
        };
        let mut session = Session {
            start_pos: audio.replay.start_pos(),
            audio_secs: 0.0,
            opened_at: Instant::now(),
            keepalive: KeepAlive::new(KEEPALIVE_INTERVAL, Instant::now()),
            close_deadline: None,
            stall_deadline: None,
            opts,
        };
        // Resend what the previous connection heard but did not finalize.
        let replay = audio.replay.chunks(audio.chunk_len);
        if !replay.is_empty() {
            tracing::debug!(
                secs = audio
                    .replay
                    .end_pos()
                    .saturating_sub(audio.replay.start_pos()) as f64
                    / audio.replay.sample_rate() as f64,
                "resending unfinalized audio to Deepgram"
            );
        }
        for chunk in replay {
            self.send_audio(ws, &mut session, events, chunk, false)
                .await?;
        }
        self.send_ready_chunks(ws, &mut session, events).await?;
        if self.input_ended {
            self.end_input(ws, &mut session, events).await?;
        }

        loop {
            let keepalive_at = session.keepalive.deadline();
            let close_at = session.close_deadline;
            let stall_at = session.stall_deadline;
            tokio::select! {
                incoming = DEEPGRAM.next_incoming(ws) => {
                    let incoming = incoming?;
                    session.stall_deadline = None;
                    match incoming {
                        Incoming::Text(text) => {
                            if !self.handle_message(&text, &mut session, events).await? {
                                return Ok(SessionEnd::Done);
                            }
                            // An inactivity timeout: time spent waiting for a slow consumer
                            // does not count.
                            if session.close_deadline.is_some() {
                                session.close_deadline = Some(Instant::now() + self.conn.timeout);
                            }
                        }
                        Incoming::Binary(data) => {
                            tracing::debug!(len = data.len(), "ignoring unexpected binary frame from Deepgram");
                        }
                        Incoming::Closed(reason) => {
                            // A close frame after CloseStream is the normal end; a socket that
                            // just vanished may have lost results, so retry (which resends
                            // the unfinalized audio).
                            if self.input_ended && reason.is_some() {
                                return Ok(SessionEnd::Done);
                            }
                            return Err(closed_error(reason));
                        }
                    }
                    if self.reconnect_pending && !self.speaking && !self.input_ended {
                        return Ok(SessionEnd::Reconnect);
                    }
                }
                item = input.recv(), if !self.input_ended => {
                    match item {
                        Some(SttInput::Frame(frame)) => {
                            self.accept_frame(&frame)?;
                            self.send_ready_chunks(ws, &mut session, events).await?;
                        }
                        Some(SttInput::Flush) => {
                            self.send_rest(ws, &mut session, events).await?;
                            if A::FINALIZE_ON_FLUSH {
                                DEEPGRAM.send_json(ws, &json!({"type": "Finalize"})).await?;
                            }
                        }
                        None => self.end_input(ws, &mut session, events).await?,
                    }
                }
                _ = tokio::time::sleep_until(keepalive_at), if A::KEEPALIVE && !self.input_ended => {
                    DEEPGRAM.send_json(ws, &json!({"type": "KeepAlive"})).await?;
                    session.keepalive.sent(Instant::now());
                }
                changed = self.options.changed(), if self.options_alive && !self.reconnect_pending => {
                    match changed {
                        Ok(()) if !self.input_ended => {
                            self.reconnect_pending = true;
                            if !self.speaking {
                                return Ok(SessionEnd::Reconnect);
                            }
                        }
                        Ok(()) => {}
                        Err(_) => self.options_alive = false,
                    }
                }
                _ = sleep_until_opt(stall_at), if stall_at.is_some() => {
                    // Audio went unanswered for the stall timeout: the server (or the path to
                    // it) is stuck. Retry, which resends the unfinalized audio.
                    tracing::warn!(
                        api = A::NAME,
                        timeout = ?self.stall_timeout(),
                        "Deepgram sent nothing for audio it was given; reconnecting"
                    );
                    return Err(ApiError::Timeout(self.stall_timeout()));
                }
                _ = sleep_until_opt(close_at), if close_at.is_some() => {
                    // Deepgram did not close after CloseStream: retry, which resends the
                    // unfinalized audio on a new connection.
                    return Err(ApiError::Timeout(self.conn.timeout));
                }
            }
        }
    }

    /// Input ended: send the partial chunk and `CloseStream`, then wait for Deepgram to send
    /// its last results and close.
    async fn end_input(
        &mut self,
        ws: &mut WsStream,
        session: &mut Session<A::Options>,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        self.send_rest(ws, session, events).await?;
        DEEPGRAM
            .send_json(ws, &json!({"type": "CloseStream"}))
            .await?;
        self.input_ended = true;
        session.close_deadline = Some(Instant::now() + self.conn.timeout);
        Ok(())
    }

    async fn send_ready_chunks(
        &mut self,
        ws: &mut WsStream,
        session: &mut Session<A::Options>,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        while let Some(chunk) = self.audio.as_mut().and_then(|a| a.chunker.next_full()) {
            self.send_audio(ws, session, events, chunk, true).await?;
        }
        Ok(())
    }

    async fn send_rest(
        &mut self,
        ws: &mut WsStream,
        session: &mut Session<A::Options>,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        self.send_ready_chunks(ws, session, events).await?;
        if let Some(rest) = self.audio.as_mut().and_then(|a| a.chunker.take_rest()) {
            self.send_audio(ws, session, events, rest, true).await?;
        }
        Ok(())
    }

    /// Sends audio; `record` adds it to the replay buffer (false when resending from it).
    async fn send_audio(
        &mut self,
        ws: &mut WsStream,
        session: &mut Session<A::Options>,
        events: &SpeechEventSender,
        samples: Vec<i16>,
        record: bool,
    ) -> Result<(), ApiError> {
        let Some(audio) = self.audio.as_mut() else {
            return Ok(());
        };
        if record {
            // Recorded before sending: if the send fails, the next connection resends it.
            audio.replay.push(&samples);
        }
        let secs = samples.len() as f64
            / audio.replay.channels() as f64
            / audio.replay.sample_rate() as f64;
        DEEPGRAM.send_binary(ws, to_le_bytes(&samples)).await?;
        session.keepalive.sent(Instant::now());
        if session.stall_deadline.is_none() {
            session.stall_deadline = Some(Instant::now() + self.stall_timeout());
        }
        session.audio_secs += secs;
        self.usage.add(secs);
        if self.usage.unreported() >= USAGE_REPORT_SECS {
            self.usage.flush(&self.request_id, events).await;
        }
        Ok(())
    }

    /// Handles one server message. Returns `Ok(false)` once the consumer is gone.
    async fn handle_message(
        &mut self,
        text: &str,
        session: &mut Session<A::Options>,
        events: &SpeechEventSender,
    ) -> Result<bool, ApiError> {
        let offset = match &self.audio {
            Some(a) => session.start_pos as f64 / a.replay.sample_rate() as f64,
            None => 0.0,
        };
        for action in A::handle(&session.opts, text, offset, &mut self.speaking) {
            match action {
                Action::Event(mut ev) => {
                    ev.request_id = self.request_id.clone();
                    if !events.send(ev).await {
                        return Ok(false);
                    }
                }
                Action::FinalizedUntil(secs) => {
                    if let Some(audio) = self.audio.as_mut() {
                        audio.replay.finalize_until(session.start_pos, secs);
                    }
                }
                Action::RequestId(id) => self.request_id = id,
                Action::Billed(duration) => {
                    // The provider bills more than the audio sent (e.g. connection time): add
                    // what the per-chunk accounting has not covered. It cannot bill more than
                    // the connection lived or the audio sent: a number beyond that (1e300,
                    // inf) is garbage and ignored.
                    let plausible = session
                        .audio_secs
                        .max(session.opened_at.elapsed().as_secs_f64())
                        + BILLING_SLACK_SECS;
                    let extra = duration - session.audio_secs;
                    if !(duration.is_finite() && duration <= plausible) {
                        tracing::warn!(
                            duration,
                            "Deepgram Metadata with an implausible billed duration; ignored"
                        );
                    } else if extra > 1e-6 {
                        self.usage.add(extra);
                        session.audio_secs = duration;
                    }
                    self.usage.flush(&self.request_id, events).await;
                }
                Action::Fail(error) => return Err(error),
            }
        }
        Ok(true)
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The error for a socket the server closed while input was still flowing.
pub(crate) fn closed_error(reason: Option<(u16, String)>) -> ApiError {
    // Deepgram closes with 1002/DATA-0000 for audio it cannot decode and 1008 for a request it
    // refuses: retrying sends the same thing again. 1011 (NET-0000/NET-0001: nothing
    // received or sent in time) and a dropped socket are transient.
    let retryable = match &reason {
        Some((code, text)) => {
            let text = text.to_ascii_uppercase();
            !matches!(code, 1002 | 1003 | 1007 | 1008)
                && !crate::stt::NON_RETRYABLE_MARKERS
                    .iter()
                    .any(|m| text.contains(m))
        }
        None => true,
    };
    let message = match reason {
        Some((code, reason)) if !reason.is_empty() => {
            format!("Deepgram closed the connection unexpectedly (code {code}: {reason})")
        }
        Some((code, _)) => format!("Deepgram closed the connection unexpectedly (code {code})"),
        None => "Deepgram connection dropped".to_string(),
    };
    ApiError::Connection { message, retryable }
}
