//! IVR (automated phone menu) navigation, the reference's `ivr_detection`: once on, the agent
//! gets the `send_dtmf_events` tool, a reply is requested when the line stays silent
//! (`max_silence_duration`, 5 s), and a repeating menu (TF-IDF loop detection over the final
//! transcripts) triggers an uninterruptible reply so the agent tries something else. Each
//! intervention is reported as an [`IvrEvent`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::tools::{dtmf_sender_for, send_dtmf_events_tool, DtmfSender};
use crate::llm::FunctionTool;
use crate::voice::hooks::SessionHook;
use crate::voice::{AgentSession, AgentState, ReplyOptions, SessionEvent, UserState};
use crate::worker::JobContext;

/// Options of the TF-IDF loop detector (the reference's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopDetectorOptions {
    /// Transcripts compared (default 20).
    pub window_size: usize,
    /// Cosine similarity above which two transcripts are the same prompt (default 0.85).
    pub similarity_threshold: f64,
    /// Consecutive similar transcripts that make a loop (default 3).
    pub consecutive_threshold: usize,
}

impl Default for LoopDetectorOptions {
    fn default() -> Self {
        Self {
            window_size: 20,
            similarity_threshold: 0.85,
            consecutive_threshold: 3,
        }
    }
}

/// Longest transcript chunk kept, in characters (phone-line input is untrusted).
const MAX_CHUNK_CHARS: usize = 4000;

/// Detects a phone menu repeating itself: the last transcript is compared (TF-IDF, cosine
/// similarity) to the previous ones in the window; `consecutive_threshold` similar chunks in a
/// row is a loop (the reference's `TfidfLoopDetector`).
#[derive(Debug, Clone)]
pub struct TfidfLoopDetector {
    options: LoopDetectorOptions,
    chunks: Vec<Vec<String>>,
    consecutive: usize,
}

fn tokens(text: &str) -> Vec<String> {
    // The reference's token pattern `(?u)\b\w\w+\b`: words of two or more word characters.
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect()
}

impl TfidfLoopDetector {
    /// A detector with `options` (zero sizes are raised to 1, the threshold clamped to 0..1).
    pub fn new(options: LoopDetectorOptions) -> Self {
        Self {
            options: LoopDetectorOptions {
                window_size: options.window_size.max(1),
                similarity_threshold: options.similarity_threshold.clamp(0.0, 1.0),
                consecutive_threshold: options.consecutive_threshold.max(1),
            },
            chunks: Vec::new(),
            consecutive: 0,
        }
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.chunks.clear();
        self.consecutive = 0;
    }

    /// Adds a final transcript.
    pub fn add_chunk(&mut self, chunk: &str) {
        let chunk: String = chunk.chars().take(MAX_CHUNK_CHARS).collect();
        self.chunks.push(tokens(&chunk));
        if self.chunks.len() > self.options.window_size {
            let extra = self.chunks.len() - self.options.window_size;
            self.chunks.drain(..extra);
        }
    }

    /// Whether the last chunk completes a loop.
    pub fn check_loop_detection(&mut self) -> bool {
        if self.chunks.len() < 2 {
            return false;
        }
        let mut vocab: HashMap<&str, usize> = HashMap::new();
        for doc in &self.chunks {
            for t in doc {
                let next = vocab.len();
                vocab.entry(t.as_str()).or_insert(next);
            }
        }
        if vocab.is_empty() {
            return false;
        }
        let n = self.chunks.len() as f64;
        let mut df = vec![0f64; vocab.len()];
        let tf: Vec<HashMap<usize, f64>> = self
            .chunks
            .iter()
            .map(|doc| {
                let mut counts = HashMap::new();
                for t in doc {
                    if let Some(&i) = vocab.get(t.as_str()) {
                        *counts.entry(i).or_insert(0.0) += 1.0;
                    }
                }
                for i in counts.keys() {
                    df[*i] += 1.0;
                }
                counts
            })
            .collect();
        let idf: Vec<f64> = df
            .iter()
            .map(|d| ((1.0 + n) / (1.0 + d)).ln() + 1.0)
            .collect();
        let vectors: Vec<HashMap<usize, f64>> = tf
            .into_iter()
            .map(|counts| {
                let mut v: HashMap<usize, f64> =
                    counts.into_iter().map(|(i, c)| (i, c * idf[i])).collect();
                let norm = v.values().map(|x| x * x).sum::<f64>().sqrt();
                let norm = if norm == 0.0 { 1.0 } else { norm };
                v.values_mut().for_each(|x| *x /= norm);
                v
            })
            .collect();
        let Some((last, previous)) = vectors.split_last() else {
            return false;
        };
        let max_similarity = previous
            .iter()
            .map(|p| {
                last.iter()
                    .map(|(i, x)| x * p.get(i).copied().unwrap_or(0.0))
                    .sum::<f64>()
            })
            .fold(f64::MIN, f64::max);
        if max_similarity > self.options.similarity_threshold {
            self.consecutive += 1;
        } else {
            self.consecutive = 0;
        }
        self.consecutive >= self.options.consecutive_threshold
    }
}

/// The silence rule of IVR navigation: when both the user (the phone menu) and the agent are
/// silent, a reply is requested after `max_silence_duration`; it is armed again only after
/// someone spoke.
#[derive(Debug, Clone)]
pub struct SilenceWatch {
    max_silence: Duration,
    user: Option<UserState>,
    agent: Option<AgentState>,
    armed: bool,
    deadline: Option<Instant>,
}

impl SilenceWatch {
    /// A watch firing after `max_silence`.
    pub fn new(max_silence: Duration) -> Self {
        Self {
            max_silence,
            user: None,
            agent: None,
            armed: false,
            deadline: None,
        }
    }

    /// When the silence check fires, if scheduled.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The user state changed.
    pub fn on_user_state(&mut self, state: UserState, now: Instant) {
        self.user = Some(state);
        self.update(now);
    }

    /// The agent state changed.
    pub fn on_agent_state(&mut self, state: AgentState, now: Instant) {
        self.agent = Some(state);
        self.update(now);
    }

    /// Returns true (once) when the deadline passed.
    pub fn on_tick(&mut self, now: Instant) -> bool {
        match self.deadline {
            Some(d) if now >= d => {
                self.deadline = None;
                true
            }
            _ => false,
        }
    }

    fn update(&mut self, now: Instant) {
        let silent = matches!(self.user, Some(UserState::Listening | UserState::Away))
            && matches!(self.agent, Some(AgentState::Idle | AgentState::Listening));
        if silent {
            if !self.armed {
                self.deadline = Some(now + self.max_silence);
            }
        } else {
            self.deadline = None;
        }
        self.armed = silent;
    }
}

/// Options of [`IvrDetection`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IvrOptions {
    /// Silence (user and agent) before a reply is requested (default 5 s).
    pub max_silence_duration: Duration,
    /// Loop detection.
    pub loop_detector: LoopDetectorOptions,
}

impl Default for IvrOptions {
    fn default() -> Self {
        Self {
            max_silence_duration: Duration::from_secs(5),
            loop_detector: LoopDetectorOptions::default(),
        }
    }
}

/// What IVR navigation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrEvent {
    /// Navigation started: the DTMF tool was given to the agent.
    Started,
    /// The menu repeats itself; an uninterruptible reply was requested.
    LoopDetected {
        /// The transcript that completed the loop.
        transcript: String,
    },
    /// The line was silent for `max_silence_duration`; a reply was requested.
    SilenceDetected,
}

/// IVR navigation on a session: the reference's `ivr_detection`. Turn it on for a whole session
/// with [`AgentSessionBuilder::ivr_detection`](crate::voice::AgentSessionBuilder::ivr_detection)
/// (started by [`JobContext::session_io`](crate::worker::JobContext::session_io) once the
/// session runs; find it with [`IvrDetection::of`]), or start it explicitly, e.g. once a
/// greeting was recognised as a phone menu ([`Amd`](super::Amd) does this). Stops when the
/// last handle of an explicit start is dropped, on [`IvrDetection::stop`], or when the session
/// closes. Cheap to clone (a handle).
#[derive(Debug, Clone)]
pub struct IvrDetection {
    inner: Arc<IvrShared>,
}

#[derive(Debug)]
struct IvrShared {
    events: broadcast::Sender<IvrEvent>,
    stop: CancellationToken,
}

impl Drop for IvrShared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The running IVR navigations, by session (to find them with [`IvrDetection::of`]).
static RUNNING: parking_lot::Mutex<Vec<(SessionKey, std::sync::Weak<IvrShared>)>> =
    parking_lot::Mutex::new(Vec::new());

type SessionKey = std::sync::Weak<crate::voice::session::SessionInner>;

fn session_key(session: &AgentSession) -> SessionKey {
    Arc::downgrade(&session.inner)
}

fn running_for(session: &AgentSession) -> Option<Arc<IvrShared>> {
    let key = session_key(session);
    let mut running = RUNNING.lock();
    running.retain(|(s, i)| s.strong_count() > 0 && i.strong_count() > 0);
    running
        .iter()
        .filter(|(s, _)| s.ptr_eq(&key))
        .find_map(|(_, i)| i.upgrade())
        .filter(|i| !i.stop.is_cancelled())
}

/// `send_dtmf_events` for every agent of a session (`SessionOptions::ivr_detection`).
struct DtmfToolHook(FunctionTool);

impl SessionHook for DtmfToolHook {
    fn tools(&self) -> Vec<FunctionTool> {
        vec![self.0.clone()]
    }
}

/// Gives the current agent the `send_dtmf_events` tool if it does not have it.
fn ensure_dtmf_tool(session: &AgentSession, sender: &Arc<dyn DtmfSender>) {
    if let Some(agent) = session.current_agent() {
        let mut tools = agent.tools();
        if !tools.iter().any(|t| t.name() == "send_dtmf_events") {
            tools.push(send_dtmf_events_tool(sender.clone()));
            agent.update_tools(tools);
        }
    }
}

impl IvrDetection {
    /// Starts IVR navigation: adds `send_dtmf_events` (through `sender`) to the current
    /// agent's tools (and to each agent that becomes active later), then watches silence and
    /// loops. `transcript`, if given, is the greeting already heard (fed to the loop detector
    /// first). If navigation already runs on this session, that one is returned.
    pub fn start(
        session: &AgentSession,
        sender: Arc<dyn DtmfSender>,
        options: IvrOptions,
        transcript: Option<String>,
    ) -> Self {
        if let Some(inner) = running_for(session) {
            tracing::warn!("IVR detection already started, skipping");
            return Self { inner };
        }
        let (events, _) = broadcast::channel(32);
        let stop = CancellationToken::new();
        ensure_dtmf_tool(session, &sender);
        let mut detector = TfidfLoopDetector::new(options.loop_detector);
        if let Some(t) = transcript {
            detector.add_chunk(&t);
        }
        let _ = events.send(IvrEvent::Started);
        let inner = Arc::new(IvrShared {
            events: events.clone(),
            stop: stop.clone(),
        });
        RUNNING
            .lock()
            .push((session_key(session), Arc::downgrade(&inner)));
        tokio::spawn(run(
            session.clone(),
            session.events(),
            sender,
            detector,
            SilenceWatch::new(options.max_silence_duration),
            events,
            stop,
        ));
        Self { inner }
    }

    /// Starts navigation (as [`start`](Self::start)) for as long as `session` runs: no handle
    /// to keep; find it with [`of`](Self::of). What [`Amd`](super::Amd) does on a phone menu.
    pub fn start_for_session(
        session: &AgentSession,
        sender: Arc<dyn DtmfSender>,
        options: IvrOptions,
        transcript: Option<String>,
    ) {
        let ivr = Self::start(session, sender, options, transcript);
        let session = session.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = session.wait_closed() => {}
                _ = ivr.inner.stop.cancelled() => {}
            }
            ivr.stop();
        });
    }

    /// The navigation running on `session` (started by the session option or explicitly).
    pub fn of(session: &AgentSession) -> Option<Self> {
        running_for(session).map(|inner| Self { inner })
    }

    /// Events from now on (a receiver that reads too slowly gets `Err(Lagged)` for what it
    /// missed).
    pub fn events(&self) -> crate::types::EventStream<IvrEvent> {
        crate::types::EventStream::new(self.inner.events.subscribe())
    }

    /// Stops watching (the DTMF tool stays with the agent).
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        !self.inner.stop.is_cancelled()
    }
}

/// The call site of [`SessionOptions::ivr_detection`](crate::voice::SessionOptions::ivr_detection):
/// once `session` runs, IVR navigation starts with the job's DTMF sender and lives as long as
/// the session. Nothing when the option is off.
pub(crate) fn start_for_session_option(ctx: &JobContext, session: &AgentSession) {
    if !session.options().ivr_detection {
        return;
    }
    let Some(sender) = dtmf_sender_for(ctx) else {
        tracing::warn!("ivr_detection: the job has no room to send DTMF through");
        return;
    };
    // The DTMF tool is the session's from its first reply on (the reference adds it to the
    // session's tools): a turn at the very start, before the navigation below runs, has it.
    session.add_hook(Arc::new(DtmfToolHook(send_dtmf_events_tool(
        sender.clone(),
    ))));
    let ctx = ctx.clone();
    let session = session.clone();
    let mut rx = session.events();
    tokio::spawn(async move {
        // The session is usually started right after its ports were made.
        while session.current_agent().is_none() {
            tokio::select! {
                _ = ctx.wait_for_shutdown() => return,
                ev = rx.recv() => match ev {
                    Some(Ok(SessionEvent::Close { .. })) | None => return,
                    Some(Ok(_)) | Some(Err(_)) => {}
                }
            }
        }
        if !session.is_running() {
            return;
        }
        tracing::debug!("IVR detection started (session option)");
        IvrDetection::start_for_session(&session, sender, IvrOptions::default(), None);
    });
}

async fn run(
    session: AgentSession,
    mut rx: crate::types::EventStream<SessionEvent>,
    sender: Arc<dyn DtmfSender>,
    mut detector: TfidfLoopDetector,
    mut silence: SilenceWatch,
    events: broadcast::Sender<IvrEvent>,
    stop: CancellationToken,
) {
    let now = Instant::now();
    silence.on_user_state(session.user_state(), now);
    silence.on_agent_state(session.agent_state(), now);
    loop {
        let deadline = silence.deadline();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                if silence.on_tick(Instant::now()) {
                    tracing::debug!("IVR: silence detected; asking for a reply");
                    let _ = events.send(IvrEvent::SilenceDetected);
                    let _ = session.generate_reply(ReplyOptions::default());
                }
            }
            ev = rx.recv() => match ev {
                Some(Ok(SessionEvent::UserStateChanged { new_state, .. })) => {
                    silence.on_user_state(new_state, Instant::now());
                }
                Some(Ok(SessionEvent::AgentStateChanged { new_state, .. })) => {
                    // A handoff brings a new agent: it gets the DTMF tool too.
                    ensure_dtmf_tool(&session, &sender);
                    silence.on_agent_state(new_state, Instant::now());
                }
                Some(Ok(SessionEvent::UserInputTranscribed { transcript, is_final: true, .. })) => {
                    detector.add_chunk(&transcript);
                    if detector.check_loop_detection() {
                        tracing::debug!("IVR: speech loop detected; asking for a reply");
                        let _ = events.send(IvrEvent::LoopDetected { transcript });
                        let _ = session.generate_reply(ReplyOptions {
                            allow_interruptions: Some(false),
                            ..Default::default()
                        });
                        detector.reset();
                    }
                }
                Some(Ok(SessionEvent::Close { .. })) | None => {
                    stop.cancel();
                    return;
                }
                // Lost events (a lagging receiver) only delay a detection.
                Some(Ok(_)) | Some(Err(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_menu_is_a_loop_after_three_repeats() {
        let mut d = TfidfLoopDetector::new(LoopDetectorOptions::default());
        let menu = "For billing press one. For support press two. To repeat this menu press nine.";
        d.add_chunk("Thank you for calling Acme.");
        assert!(!d.check_loop_detection());
        d.add_chunk(menu);
        assert!(!d.check_loop_detection());
        for i in 0..3 {
            d.add_chunk(menu);
            assert_eq!(d.check_loop_detection(), i == 2, "repeat {i}");
        }
        d.reset();
        d.add_chunk(menu);
        assert!(!d.check_loop_detection());
    }

    #[test]
    fn different_prompts_are_not_a_loop_and_input_is_bounded() {
        let mut d = TfidfLoopDetector::new(LoopDetectorOptions::default());
        for text in [
            "Please say your account number.",
            "I did not understand. Please enter your date of birth.",
            "Connecting you to an operator.",
            "a b c",
            "",
        ] {
            d.add_chunk(text);
            assert!(!d.check_loop_detection());
        }
        for _ in 0..100 {
            d.add_chunk(&"word ".repeat(10_000));
        }
        assert_eq!(d.chunks.len(), 20);
        assert!(d.chunks.iter().all(|c| c.len() <= MAX_CHUNK_CHARS));
    }

    #[test]
    fn silence_fires_once_until_someone_speaks() {
        let t0 = Instant::now();
        let s5 = Duration::from_secs(5);
        let mut w = SilenceWatch::new(s5);
        w.on_user_state(UserState::Listening, t0);
        assert_eq!(w.deadline(), None, "agent state unknown");
        w.on_agent_state(AgentState::Listening, t0);
        assert_eq!(w.deadline(), Some(t0 + s5));
        // Still silent: the deadline is not pushed back.
        w.on_user_state(UserState::Away, t0 + Duration::from_secs(1));
        assert_eq!(w.deadline(), Some(t0 + s5));
        assert!(w.on_tick(t0 + s5));
        assert!(!w.on_tick(t0 + s5 * 2));
        w.on_agent_state(AgentState::Speaking, t0 + s5 * 2);
        assert_eq!(w.deadline(), None);
        w.on_agent_state(AgentState::Listening, t0 + s5 * 3);
        assert_eq!(w.deadline(), Some(t0 + s5 * 4));
    }
}
