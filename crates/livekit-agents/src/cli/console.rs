//! `console` mode: one local conversation with the agent, no LiveKit server.
//!
//! The job runs in this process like any other (same entrypoint, same [`JobContext`]); its
//! [`JobContext::session_io`] returns console ports instead of room ports:
//!
//! - `--input-wav FILE`: user audio read from a WAV file at real-time pace (2 s of trailing
//!   silence so the last turn ends); the session closes after the last reply.
//! - `--output-wav FILE`: agent audio written to a WAV file at playback pace (24 kHz mono).
//! - `--text`: typed conversation; each line is a user turn, the next line is read once the
//!   reply played (or once a task the reply started, e.g. collecting digits, listens); end of
//!   input (Ctrl-D) ends the session.
//! - with the `console-audio` cargo feature (cpal; needs `libasound2-dev` on Linux): microphone
//!   and speaker when no file or `--text` is given.
//!
//! The terminal shows the conversation (`user:` / `agent:` lines from the session history, so
//! an interrupted reply shows what was heard), agent state changes, tool calls and each turn's
//! stages, computed from the session's spans by [`crate::telemetry::latency`]: `[latency] eou
//! 0.500 s | llm ttft 0.300 s | tts ttfb 0.150 s | first frame 1.102 s` (end of the user's
//! speech to the end-of-turn decision, the LLM's time to first token, the TTS's time to first
//! byte, end of speech to the first frame played). The session's own metrics also reach
//! [`crate::worker::metrics`]'s histograms as in every mode.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::CliError;
use crate::audio::AudioFrame;
use crate::io::wav::{wav_file_input, WavInputOptions};
use crate::io::{AudioInput, AudioOutput, PacedAudioOutput};
use crate::llm::{ChatItem, ChatRole};
use crate::telemetry::latency::TurnLatency;
use crate::voice::{AgentSession, AgentState, ReplyOptions, SessionEvent, SessionIo};
use crate::worker::{
    AgentServer, ApiCredentials, JobContext, JobContextParams, JobError, JobOutcome, WorkerOptions,
};

/// Sample rate of the console's audio output.
pub const CONSOLE_OUTPUT_SAMPLE_RATE: u32 = 24_000;

/// How console mode gets input and shows output.
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct ConsoleOptions {
    /// Read user audio from this WAV file.
    pub input_wav: Option<PathBuf>,
    /// Write agent audio to this WAV file.
    pub output_wav: Option<PathBuf>,
    /// Typed conversation.
    pub text: bool,
    /// Deliver `input_wav` at real-time pace (default true, like a microphone).
    pub realtime_input: bool,
    /// Where typed lines come from (default: stdin).
    pub text_input: Option<Box<dyn AsyncBufRead + Send + Unpin>>,
    /// Where the conversation is shown (default: stdout).
    pub display: Option<Box<dyn Write + Send>>,
    /// Write the session's [`SessionReport`](crate::voice::SessionReport) as JSON to this file
    /// when it ends (`--report FILE`).
    pub report: Option<PathBuf>,
    /// Record the session's provider answers and audio input on a
    /// [`SessionTape`](crate::testing::replay::SessionTape) and save it to this file when it
    /// ends (`--tape FILE`), for [`replay`](crate::testing::replay::replay).
    pub tape: Option<PathBuf>,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            input_wav: None,
            output_wav: None,
            text: false,
            realtime_input: true,
            text_input: None,
            display: None,
            report: None,
            tape: None,
        }
    }
}

impl std::fmt::Debug for ConsoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOptions")
            .field("input_wav", &self.input_wav)
            .field("output_wav", &self.output_wav)
            .field("text", &self.text)
            .field("realtime_input", &self.realtime_input)
            .finish_non_exhaustive()
    }
}

/// What a console run produced.
#[derive(Debug, Clone, Default)]
pub struct ConsoleReport {
    /// Every line shown, in order.
    pub lines: Vec<String>,
    /// Latency of each agent turn that played (end of the user's turn, or the reply's start
    /// for a typed turn, to the first frame played; to the first LLM token without audio
    /// output), from the session's spans.
    pub turn_latencies: Vec<Duration>,
    /// Each agent turn's stages, from the session's spans ([`TurnLatency`]).
    pub turns: Vec<TurnLatency>,
}

/// The console's shared state: options not yet consumed, and what was shown.
struct ConsoleState {
    options: Option<ConsoleOptions>,
    display: Box<dyn Write + Send>,
    report: ConsoleReport,
    wav_writer: Option<Arc<Mutex<WavSink>>>,
    /// The session report being collected and where to write it (`--report`).
    /// The session is held until the report is written: the report reads its history when it
    /// sees the close, which the job's teardown could otherwise outrun.
    session_report: Option<(crate::voice::ReportHandle, PathBuf, AgentSession)>,
    /// Background audio (`background_audio`) is mixed into the audio output through this.
    background_mixer: Option<crate::audio::AudioMixer>,
    /// The session tape being recorded and where to save it (`--tape`).
    tape: Option<(crate::testing::replay::TapeRecorder, PathBuf)>,
}

/// A handle on the console of a console-mode job (carried by its [`JobContextParams`]).
#[derive(Clone)]
pub struct ConsoleHandle {
    state: Arc<Mutex<ConsoleState>>,
}

impl std::fmt::Debug for ConsoleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleHandle").finish_non_exhaustive()
    }
}

impl ConsoleHandle {
    fn new(mut options: ConsoleOptions) -> Self {
        let display = options
            .display
            .take()
            .unwrap_or_else(|| Box::new(std::io::stdout()));
        let tape = options
            .tape
            .clone()
            .map(|path| (crate::testing::replay::TapeRecorder::new(), path));
        Self {
            state: Arc::new(Mutex::new(ConsoleState {
                options: Some(options),
                display,
                report: ConsoleReport::default(),
                wav_writer: None,
                session_report: None,
                background_mixer: None,
                tape,
            })),
        }
    }

    fn show(&self, line: String) {
        let mut st = self.state.lock();
        let _ = writeln!(st.display, "{line}");
        let _ = st.display.flush();
        st.report.lines.push(line);
    }

    /// The mixer of the console's audio output (none without audio output).
    pub(crate) fn background_mixer(&self) -> Option<crate::audio::AudioMixer> {
        self.state.lock().background_mixer.clone()
    }

    /// The recorder of `--tape`, if given.
    pub(crate) fn tape_recorder(&self) -> Option<crate::testing::replay::TapeRecorder> {
        self.state.lock().tape.as_ref().map(|(t, _)| t.clone())
    }

    /// Saves the session tape (`--tape`).
    fn write_tape(&self) -> Result<(), CliError> {
        let Some((tape, path)) = self.state.lock().tape.take() else {
            return Ok(());
        };
        tape.tape().save(&path)?;
        Ok(())
    }

    fn report(&self) -> ConsoleReport {
        self.state.lock().report.clone()
    }

    /// Finishes the output WAV file (its header needs the final length).
    /// Writes the session report (`--report`), waiting up to 5 s for the session's end.
    async fn write_session_report(&self) {
        let Some((report, path, _session)) = self.state.lock().session_report.take() else {
            return;
        };
        let report = tokio::time::timeout(Duration::from_secs(5), report.wait())
            .await
            .ok()
            .flatten();
        match report {
            Some(r) => {
                if let Err(e) = r.write_json(&path) {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the session report");
                }
            }
            None => tracing::warn!("the session did not end; no session report written"),
        }
    }

    fn finish_wav(&self) {
        let sink = self.state.lock().wav_writer.take();
        if let Some(sink) = sink {
            sink.lock().finish();
        }
    }
}

/// Collects played frames into a WAV file.
struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    failed: bool,
}

impl WavSink {
    fn write(&mut self, frame: &AudioFrame) {
        if self.failed {
            return;
        }
        if self.writer.is_none() {
            let spec = hound::WavSpec {
                channels: frame.num_channels,
                sample_rate: frame.sample_rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            match hound::WavWriter::create(&self.path, spec) {
                Ok(w) => self.writer = Some(w),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot create the output WAV");
                    self.failed = true;
                    return;
                }
            }
        }
        if let Some(w) = &mut self.writer {
            for s in &frame.data {
                if w.write_sample(*s).is_err() {
                    self.failed = true;
                    break;
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                tracing::error!(path = %self.path.display(), error = %e, "cannot finish the output WAV");
            }
        } else if !self.failed {
            // Nothing played: still leave a valid, empty file.
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: CONSOLE_OUTPUT_SAMPLE_RATE,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            if let Ok(w) = hound::WavWriter::create(&self.path, spec) {
                let _ = w.finalize();
            }
        }
        // Audio still arriving (background audio plays until its output is dropped) must not
        // start a new file over the finished one.
        self.failed = true;
    }
}

/// Runs one console conversation with the agent of `opts`.
pub async fn run_console(
    opts: WorkerOptions,
    console: ConsoleOptions,
) -> Result<ConsoleReport, CliError> {
    if !console.text && console.input_wav.is_none() && !cfg!(feature = "console-audio") {
        return Err(CliError::Usage { message: "console needs --text or --input-wav FILE (microphone and speaker need the `console-audio` cargo feature)".into(), });
    }
    if let Some(path) = &console.input_wav {
        if !path.is_file() {
            return Err(CliError::Usage {
                message: format!("--input-wav {}: no such file", path.display()),
            });
        }
    }
    let handle = ConsoleHandle::new(console);
    let job = livekit_protocol::Job {
        id: format!("console-job-{}", uuid::Uuid::new_v4().simple()),
        r#type: opts.server_type.to_proto() as i32,
        room: Some(livekit_protocol::Room {
            name: "console-room".into(),
            ..Default::default()
        }),
        agent_name: opts.agent_name.clone(),
        ..Default::default()
    };
    let params = JobContextParams {
        job,
        url: String::new(),
        token: String::new(),
        worker_id: "console".into(),
        accept: crate::worker::AcceptArgs {
            identity: "console-agent".into(),
            ..Default::default()
        },
        api: ApiCredentials {
            url: opts.ws_url.clone(),
            api_key: opts.api_key.clone(),
            api_secret: opts.api_secret.clone(),
        },
        fake_job: true,
        console: Some(handle.clone()),
    };
    let server = AgentServer::new(opts);
    let signals = {
        let server = server.clone();
        tokio::spawn(async move {
            super::shutdown_signal().await;
            server.aclose().await;
        })
    };
    let outcome = server.run_local_job(params).await;
    signals.abort();
    handle.finish_wav();
    handle.write_session_report().await;
    let tape = handle.write_tape();
    let outcome = outcome?;
    tape?;
    match outcome {
        JobOutcome::Success => Ok(handle.report()),
        JobOutcome::Failed(e) => Err(CliError::JobFailed { reason: e }),
    }
}

/// Builds the console ports for `session` and starts the console's display and input tasks.
pub(crate) fn console_session_io(
    ctx: &JobContext,
    handle: &ConsoleHandle,
    session: &AgentSession,
) -> Result<SessionIo, JobError> {
    let options = handle
        .state
        .lock()
        .options
        .take()
        .ok_or_else(|| JobError::NoIo {
            reason: "the console ports were already taken".into(),
        })?;
    ctx.keep_alive();

    let audio_input: Option<AudioInput> = match &options.input_wav {
        Some(path) => Some(
            wav_file_input(
                path,
                WavInputOptions {
                    realtime: options.realtime_input,
                    ..Default::default()
                },
            )
            .map_err(|e| JobError::NoIo {
                reason: e.to_string(),
            })?,
        ),
        None => default_microphone(&options)?,
    };
    let audio_output: Option<Arc<dyn AudioOutput>> = match &options.output_wav {
        Some(path) => {
            let sink = Arc::new(Mutex::new(WavSink {
                path: path.clone(),
                writer: None,
                failed: false,
            }));
            handle.state.lock().wav_writer = Some(sink.clone());
            let mixer = crate::audio::AudioMixer::new(CONSOLE_OUTPUT_SAMPLE_RATE, 1);
            handle.state.lock().background_mixer = Some(mixer.clone());
            Some(Arc::new(PacedAudioOutput::new(
                format!("wav:{}", path.display()),
                Some(CONSOLE_OUTPUT_SAMPLE_RATE),
                mixer.sink(move |frame: &AudioFrame| sink.lock().write(frame)),
            )))
        }
        None => default_speaker(&options, handle)?,
    };
    let has_audio_output = audio_output.is_some();
    if let Some(path) = options.report.clone() {
        let report = session.record_report();
        handle.state.lock().session_report = Some((report, path, session.clone()));
    }

    // Subscribe before the session starts so no event is missed. Turn latencies come from
    // the session's spans (`telemetry::latency`).
    if !crate::telemetry::latency::ensure_installed() {
        tracing::warn!(
            "the console shows no turn latencies: add livekit_agents::telemetry::latency::layer() to your tracing subscriber"
        );
    }
    tokio::spawn(display_task(
        ctx.clone(),
        handle.clone(),
        session.clone(),
        session.subscribe(),
        crate::telemetry::latency::subscribe(),
        has_audio_output,
    ));
    if options.text {
        let reader: Box<dyn AsyncBufRead + Send + Unpin> = match options.text_input {
            Some(r) => r,
            None => Box::new(tokio::io::BufReader::new(tokio::io::stdin())),
        };
        tokio::spawn(text_input_task(
            ctx.clone(),
            session.clone(),
            reader,
            session.subscribe(),
        ));
    }
    Ok(SessionIo {
        audio_input,
        audio_output,
        text_output: None,
    })
}

/// Shows the conversation, state changes, tools and turn latencies; ends the job when the
/// session closes.
async fn display_task(
    ctx: JobContext,
    handle: ConsoleHandle,
    session: AgentSession,
    mut events: tokio::sync::broadcast::Receiver<SessionEvent>,
    mut turns: tokio::sync::broadcast::Receiver<TurnLatency>,
    has_audio_output: bool,
) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    // The session's root span, to pick its turns among the process's.
    let mut root: Option<u64> = None;
    let mut show_turn = |turn: TurnLatency| {
        if root.is_none() {
            root = session.inner.telemetry.root_span_id();
        }
        if root.is_none() || turn.session_span != root {
            return;
        }
        let latency = if has_audio_output {
            turn.first_frame
        } else {
            turn.llm_first_token
        };
        if let Some(latency) = latency {
            handle.state.lock().report.turn_latencies.push(latency);
        }
        handle.show(format!("[latency] {}", turn.summary()));
        handle.state.lock().report.turns.push(turn);
    };
    loop {
        let ev = tokio::select! {
            // What happened before the shutdown (the last reply, the close) is shown first.
            biased;
            turn = turns.recv() => {
                match turn {
                    Ok(turn) => show_turn(turn),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "console latency display fell behind");
                    }
                    Err(RecvError::Closed) => {}
                }
                continue;
            }
            ev = events.recv() => match ev {
                Ok(ev) => ev,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "console display fell behind");
                    continue;
                }
                Err(RecvError::Closed) => break,
            },
            _ = ctx.wait_for_shutdown() => return,
        };
        if matches!(ev, SessionEvent::Close { .. }) {
            // The last turns' spans closed with the session, before its close event.
            loop {
                match turns.try_recv() {
                    Ok(turn) => show_turn(turn),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        }
        match ev {
            SessionEvent::AgentStateChanged { new_state, .. } => {
                handle.show(format!("[state] {}", new_state.as_str()));
            }
            SessionEvent::ConversationItemAdded {
                item: ChatItem::Message(msg),
            } => {
                let text = msg.text_content().unwrap_or_default();
                match msg.role {
                    ChatRole::User => handle.show(format!("user: {text}")),
                    ChatRole::Assistant => {
                        let cut = if msg.interrupted {
                            " [interrupted]"
                        } else {
                            ""
                        };
                        handle.show(format!("agent: {text}{cut}"));
                    }
                    _ => {}
                }
            }
            SessionEvent::FunctionToolsExecuted {
                function_calls,
                function_call_outputs,
            } => {
                for (call, out) in function_calls.iter().zip(function_call_outputs.iter()) {
                    handle.show(format!(
                        "[tool] {}({}) -> {}",
                        call.name, call.arguments, out.output
                    ));
                }
            }
            SessionEvent::Error {
                source,
                error,
                recoverable,
            } => {
                let kind = if recoverable { "warning" } else { "error" };
                handle.show(format!("[{kind}] {source:?}: {error}"));
            }
            SessionEvent::Close { reason, error } => {
                let suffix = error.map(|e| format!(": {e}")).unwrap_or_default();
                handle.show(format!("[session closed] {reason:?}{suffix}"));
                break;
            }
            _ => {}
        }
    }
    ctx.shutdown("console session closed");
}

/// Feeds typed lines as user turns, one at a time; at end of input, lets the last reply
/// finish and closes the session.
async fn text_input_task(
    ctx: JobContext,
    session: AgentSession,
    reader: Box<dyn AsyncBufRead + Send + Unpin>,
    mut events: tokio::sync::broadcast::Receiver<SessionEvent>,
) {
    let mut lines = reader.lines();
    // The entrypoint starts the session after taking the ports: wait until it runs (starting
    // emits a state change).
    while !session.is_running() {
        tokio::select! {
            _ = ctx.wait_for_shutdown() => return,
            ev = events.recv() => {
                if matches!(ev, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
        }
    }
    drop(events);
    loop {
        let line = tokio::select! {
            _ = ctx.wait_for_shutdown() => return,
            line = lines.next_line() => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "console input failed");
                break;
            }
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        // Not interrupting: a reply still running (one that waits for a task, see below) or
        // started by something else answers first; this turn queues behind it.
        let mut events = session.subscribe();
        let agent = session.current_agent().map(|a| a.id().to_owned());
        match session.generate_reply(ReplyOptions {
            user_input: Some(text.to_owned()),
            ..Default::default()
        }) {
            Ok(speech) => {
                tokio::select! {
                    _ = speech.wait_for_playout() => {}
                    // A tool of the reply ran a task (an agent collecting input): its speech
                    // only ends with the task, which needs the next lines.
                    _ = another_agent_listens(&session, &mut events, agent) => {}
                }
                // A task this reply completed is handing back to its parent agent: the next
                // line goes to the agent that is active once that switch is done.
                session.wait_idle().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the session cannot reply");
                break;
            }
        }
    }
    session.drain().await;
}

/// Resolves once an agent other than `agent` is active and listening.
async fn another_agent_listens(
    session: &AgentSession,
    events: &mut tokio::sync::broadcast::Receiver<SessionEvent>,
    agent: Option<String>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(SessionEvent::AgentStateChanged {
                new_state: AgentState::Listening,
                ..
            }) => {
                if session.current_agent().map(|a| a.id().to_owned()) != agent {
                    return;
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

#[cfg(not(feature = "console-audio"))]
fn default_microphone(_options: &ConsoleOptions) -> Result<Option<AudioInput>, JobError> {
    Ok(None)
}

#[cfg(not(feature = "console-audio"))]
fn default_speaker(
    _options: &ConsoleOptions,
    _handle: &ConsoleHandle,
) -> Result<Option<Arc<dyn AudioOutput>>, JobError> {
    Ok(None)
}

#[cfg(feature = "console-audio")]
fn default_microphone(options: &ConsoleOptions) -> Result<Option<AudioInput>, JobError> {
    if options.text {
        return Ok(None);
    }
    super::audio_device::microphone()
        .map(Some)
        .map_err(|e| JobError::NoIo { reason: e })
}

#[cfg(feature = "console-audio")]
fn default_speaker(
    options: &ConsoleOptions,
    handle: &ConsoleHandle,
) -> Result<Option<Arc<dyn AudioOutput>>, JobError> {
    if options.text {
        return Ok(None);
    }
    let speaker = super::audio_device::speaker().map_err(|e| JobError::NoIo { reason: e })?;
    handle.state.lock().background_mixer = Some(speaker.mixer.clone());
    Ok(Some(Arc::new(speaker) as Arc<dyn AudioOutput>))
}
