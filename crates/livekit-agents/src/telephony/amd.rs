//! Answering-machine detection (AMD), the reference 1.8.9's `AMD`: who answered an outbound
//! call, a person, a phone menu, a voicemail box, or a mailbox that takes no message.
//!
//! - [`Amd`] watches a session (speech start/end, final transcripts, committed user turns)
//!   and returns an [`AmdPrediction`]. Meanwhile the agent's speech is held; on a machine the
//!   held speech is interrupted and the machine's turns get no automatic reply, on a phone menu
//!   it starts [`IvrDetection`]; a person's held reply then plays.
//! - [`AmdClassifier`] is its timing logic as a pure state machine (the reference's rules:
//!   a short greeting followed by silence is a person; longer greetings go to the model and
//!   the verdict waits for post-speech silence, and for a machine also for the end of the
//!   turn; no speech or a too long detection ends `uncertain`; the model may postpone).
//! - [`classify_greeting`] is the one-shot model call on a transcript.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::ivr::{IvrDetection, IvrOptions};
use super::tools::DtmfSender;
use crate::llm::{ChatContext, ChatRequest, ChatRole, Llm, ToolChoice, ToolDefinition};
use crate::voice::hooks::SessionHook;
use crate::voice::{AgentSession, SessionEvent, TimedSessionEvent, UserState};

/// What answered the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AmdCategory {
    /// A person.
    #[serde(rename = "human")]
    Human,
    /// A phone menu ("press 1 ...") or a call-screening prompt.
    #[serde(rename = "machine-ivr")]
    MachineIvr,
    /// A voicemail greeting that takes a message.
    #[serde(rename = "machine-vm")]
    MachineVm,
    /// A machine where no message can be left (mailbox full or not set up).
    #[serde(rename = "machine-unavailable")]
    MachineUnavailable,
    /// Not enough to tell.
    #[serde(rename = "uncertain")]
    Uncertain,
}

impl AmdCategory {
    /// A person answered.
    pub fn is_human(self) -> bool {
        self == AmdCategory::Human
    }

    /// A machine answered.
    pub fn is_machine(self) -> bool {
        matches!(
            self,
            AmdCategory::MachineIvr | AmdCategory::MachineVm | AmdCategory::MachineUnavailable
        )
    }
}

/// The classification prompt (the reference's categories and examples).
pub const AMD_PROMPT: &str = r#"Task:
Classify the call greeting transcript into exactly one of these categories:

human: A person answered (e.g., "Hello?", "This is John.").
machine-ivr: A prompt to press a key (e.g., "Press 1 to continue").
machine-vm: A voicemail greeting where leaving a message IS possible.
machine-unavailable: Any greeting indicating it's NOT possible to leave message, eg because mailbox is full, not setup, etc.
uncertain: For partial transcripts that are ambiguous.

Examples:
Input: "The person you called has a voice mailbox that hasn't been set up yet. Goodbye."
Output: machine-unavailable

Input: "Please state your name and why you're calling, and I will check if the person is available"
Output: machine-ivr
Note: this should apply for any call screening prompts.

Input: "I'm away from my desk. If you leave a message, I will get back to you."
Output: machine-vm

Input: "Hello, this is Lisa."
Output: human"#;

/// Longest greeting sent to the model, in characters.
const MAX_GREETING_CHARS: usize = 4000;

/// The classification could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmdError {
    /// The model request failed.
    #[error("answering-machine detection failed: {reason}")]
    Llm {
        /// The LLM's error.
        reason: String,
    },
    /// The detector cannot run (e.g. no LLM).
    #[error("answering-machine detection: {reason}")]
    Config {
        /// What is missing.
        reason: String,
    },
    /// The detector stopped before a verdict.
    #[error("answering-machine detection ended before a verdict")]
    Closed,
}

/// The reference's bound on `postpone_termination` calls per detection.
pub const MAX_EXTENSIONS: u32 = 3;
/// The longest postponement the model may ask for.
pub const MAX_EXTENSION: Duration = Duration::from_secs(10);

/// The classification request: the prompt, the transcript, `save_prediction` and (while
/// extensions are left) `postpone_termination`, with a required tool choice.
fn amd_request(prompt: &str, transcript: &str, allow_postpone: bool) -> ChatRequest {
    let transcript: String = transcript.chars().take(MAX_GREETING_CHARS).collect();
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, prompt);
    ctx.add_message(ChatRole::User, transcript);
    let mut request = ChatRequest::new(ctx);
    request.tools = vec![ToolDefinition {
        name: "save_prediction".into(),
        description: "Save the prediction to the verdict.".into(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "label": {
                    "type": "string",
                    "enum": ["human", "machine-ivr", "machine-vm", "machine-unavailable", "uncertain"]
                }
            },
            "required": ["label"]
        }),
    }];
    if allow_postpone {
        request.tools.push(ToolDefinition {
            name: "postpone_termination".into(),
            description: "Postpone the termination of the classification task.\nUse when the \
                          transcript is ambiguous and more audio is expected."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "seconds": {
                        "type": "number",
                        "description": "Additional seconds to wait (max 10)."
                    }
                },
                "required": ["seconds"]
            }),
        });
    }
    request.tool_choice = Some(ToolChoice::Required);
    request.options.temperature = Some(0.0);
    request
}

/// What the model answered to one classification request.
#[derive(Debug, Clone, PartialEq)]
enum ModelAction {
    Label(AmdCategory),
    Postpone(f64),
}

async fn ask_model(
    llm: &dyn Llm,
    prompt: &str,
    transcript: &str,
    allow_postpone: bool,
) -> Result<Vec<ModelAction>, AmdError> {
    let response = llm
        .chat(amd_request(prompt, transcript, allow_postpone))
        .collect()
        .await
        .map_err(|e| AmdError::Llm {
            reason: e.to_string(),
        })?;
    #[derive(serde::Deserialize)]
    struct Label {
        label: AmdCategory,
    }
    #[derive(serde::Deserialize)]
    struct Postpone {
        seconds: f64,
    }
    Ok(response
        .tool_calls
        .iter()
        .filter_map(|c| match c.name.as_str() {
            "save_prediction" => serde_json::from_str::<Label>(&c.arguments)
                .ok()
                .map(|l| ModelAction::Label(l.label)),
            "postpone_termination" if allow_postpone => {
                serde_json::from_str::<Postpone>(&c.arguments)
                    .ok()
                    .map(|p| ModelAction::Postpone(p.seconds))
            }
            _ => None,
        })
        .collect())
}

/// Asks `llm` what answered, from the greeting `transcript` (a `save_prediction` tool call
/// with a required tool choice). A reply without a valid label is [`AmdCategory::Uncertain`].
/// No timing rules: see [`Amd`] for the detector.
pub async fn classify_greeting(llm: &dyn Llm, transcript: &str) -> Result<AmdCategory, AmdError> {
    let actions = ask_model(llm, AMD_PROMPT, transcript, false).await?;
    Ok(actions
        .into_iter()
        .find_map(|a| match a {
            ModelAction::Label(l) => Some(l),
            ModelAction::Postpone(_) => None,
        })
        .unwrap_or(AmdCategory::Uncertain))
}

/// Why the detector decided (the reference's `reason` strings, see [`AmdReason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmdReason {
    /// The model labelled the transcript.
    Llm,
    /// A short greeting followed by silence: a person ("Hello?").
    ShortGreeting,
    /// No speech within `no_speech_threshold`.
    NoSpeechTimeout,
    /// No verdict within `timeout`.
    DetectionTimeout,
    /// The call (the session) ended before a verdict.
    ParticipantMissing,
}

impl AmdReason {
    /// The reference's name (`"llm"`, `"short_greeting"`, `"no_speech_timeout"`,
    /// `"detection_timeout"`, `"participant_missing"`).
    pub fn as_str(self) -> &'static str {
        match self {
            AmdReason::Llm => "llm",
            AmdReason::ShortGreeting => "short_greeting",
            AmdReason::NoSpeechTimeout => "no_speech_timeout",
            AmdReason::DetectionTimeout => "detection_timeout",
            AmdReason::ParticipantMissing => "participant_missing",
        }
    }
}

/// The detector's verdict (the reference's `AMDPredictionEvent`).
#[derive(Debug, Clone, PartialEq)]
pub struct AmdPrediction {
    /// What answered.
    pub category: AmdCategory,
    /// Why.
    pub reason: AmdReason,
    /// How long the greeting was spoken.
    pub speech_duration: Duration,
    /// What was heard (the transcript the model classified, for [`AmdReason::Llm`]).
    pub transcript: String,
    /// From the end of the greeting to the verdict.
    pub delay: Duration,
}

impl AmdPrediction {
    /// A person answered.
    pub fn is_human(&self) -> bool {
        self.category.is_human()
    }

    /// A machine answered.
    pub fn is_machine(&self) -> bool {
        self.category.is_machine()
    }
}

/// Options of [`Amd`] (the reference's `DetectionOptions` and constructor flags, same
/// defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct AmdOptions {
    /// A greeting up to this long, followed by silence, is a person (default 2.5 s).
    pub human_speech_threshold: Duration,
    /// Silence after a short greeting before the person verdict (default 0.5 s).
    pub human_silence_threshold: Duration,
    /// Silence after a longer greeting before a verdict is released (default 1.5 s).
    pub machine_silence_threshold: Duration,
    /// No speech this long after listening started: `uncertain` (default 10 s).
    pub no_speech_threshold: Duration,
    /// The whole detection's budget: `uncertain` after it (default 20 s).
    pub timeout: Duration,
    /// End-of-turn backstop after speech or text when the session commits no turn (default:
    /// the session's `endpointing.max_delay`, 3 s).
    pub max_endpointing_delay: Option<Duration>,
    /// The classification prompt (default [`AMD_PROMPT`]).
    pub prompt: String,
    /// Once speech was heard, `timeout` no longer cuts the greeting short: the verdict waits
    /// for the end of the turn (default true).
    pub wait_until_finished: bool,
    /// Interrupt the agent's speech when a machine answered (default true).
    pub interrupt_on_machine: bool,
    /// Start [`IvrDetection`] on a phone menu (default true; needs a
    /// DTMF sender, see [`Amd::start`]).
    pub ivr_detection: bool,
}

impl Default for AmdOptions {
    fn default() -> Self {
        Self {
            human_speech_threshold: Duration::from_millis(2500),
            human_silence_threshold: Duration::from_millis(500),
            machine_silence_threshold: Duration::from_millis(1500),
            no_speech_threshold: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
            max_endpointing_delay: None,
            prompt: AMD_PROMPT.to_owned(),
            wait_until_finished: true,
            interrupt_on_machine: true,
            ivr_detection: true,
        }
    }
}

/// The default end-of-turn backstop when neither the options nor a session give one.
const DEFAULT_MAX_ENDPOINTING_DELAY: Duration = Duration::from_secs(3);

/// What the post-speech silence timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SilenceTimer {
    /// A short greeting without transcript: a person.
    ShortGreeting { speech_duration: Duration },
    /// The silence gate opens.
    SilenceReached,
    /// A postponement elapsed: the gate opens and the model is asked again.
    Postponed,
}

/// The reference's AMD timing rules as a state machine on explicit instants (drive it with
/// `tokio::time::Instant::now()`; [`Amd`] does). Feed it speech start/end, final
/// transcripts, end-of-turn signals and the model's answers; call
/// [`on_deadline`](Self::on_deadline) at [`next_deadline`](Self::next_deadline); take
/// classification requests with [`take_classification`](Self::take_classification); read the
/// verdict with [`verdict`](Self::verdict).
///
/// The rules: listening arms the no-speech timer and the detection timeout. A greeting of at
/// most `human_speech_threshold` followed by `human_silence_threshold` of silence without any
/// transcript is a person (`short_greeting`). Transcripts go to the model (each new one
/// restarts the classification with the whole transcript). A verdict is released once the
/// post-speech silence (`machine_silence_threshold`) passed, and, except for a person, once
/// the turn ended (the session's end of turn, or `max_endpointing_delay` after the last
/// speech or text). Timeouts settle on `uncertain`; with `wait_until_finished`, a timeout
/// after speech still waits for the end of the turn. The model may postpone up to
/// [`MAX_EXTENSIONS`] times, by at most [`MAX_EXTENSION`] each.
#[derive(Debug, Clone)]
pub struct AmdClassifier {
    options: AmdOptions,
    max_endpointing_delay: Duration,
    listening: bool,
    closed: bool,
    emitted: bool,
    speech_started_at: Option<Instant>,
    speech_ended_at: Option<Instant>,
    speech_active: bool,
    silence_reached: bool,
    eot_reached: bool,
    transcript: String,
    verdict: Option<AmdPrediction>,
    no_speech_at: Option<Instant>,
    silence_at: Option<(Instant, SilenceTimer)>,
    detection_at: Option<Instant>,
    eot_at: Option<Instant>,
    extensions: u32,
    classification: Option<String>,
}

impl AmdClassifier {
    /// A classifier with `options`; the end-of-turn backstop is
    /// `options.max_endpointing_delay` or 3 s.
    pub fn new(options: AmdOptions) -> Self {
        let max_endpointing_delay = options
            .max_endpointing_delay
            .unwrap_or(DEFAULT_MAX_ENDPOINTING_DELAY);
        Self {
            options,
            max_endpointing_delay,
            listening: false,
            closed: false,
            emitted: false,
            speech_started_at: None,
            speech_ended_at: None,
            speech_active: false,
            silence_reached: false,
            eot_reached: false,
            transcript: String::new(),
            verdict: None,
            no_speech_at: None,
            silence_at: None,
            detection_at: None,
            eot_at: None,
            extensions: 0,
            classification: None,
        }
    }

    /// Starts listening: the detection timeout and the no-speech timer run from `now`. Input
    /// before this is ignored (e.g. ringback before the answer).
    pub fn start(&mut self, now: Instant) {
        if self.closed || self.emitted || self.listening {
            return;
        }
        self.detection_at = Some(now + self.options.timeout);
        self.listening = true;
        self.no_speech_at = Some(now + self.options.no_speech_threshold);
    }

    /// Whether input is taken.
    pub fn is_listening(&self) -> bool {
        self.listening && !self.closed
    }

    /// The released verdict, once there is one.
    pub fn verdict(&self) -> Option<&AmdPrediction> {
        self.emitted.then_some(self.verdict.as_ref()).flatten()
    }

    /// The transcript so far.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Whether the model may still postpone.
    pub fn can_postpone(&self) -> bool {
        self.extensions < MAX_EXTENSIONS
    }

    /// The transcript to (re)classify, if the model should be asked (again); a previous
    /// request still running should be dropped.
    pub fn take_classification(&mut self) -> Option<String> {
        self.classification.take()
    }

    /// How long the greeting was spoken, at `now`.
    pub fn speech_duration(&self, now: Instant) -> Duration {
        match self.speech_started_at {
            Some(start) => self
                .speech_ended_at
                .unwrap_or(now)
                .saturating_duration_since(start),
            None => Duration::ZERO,
        }
    }

    /// The user (the callee's line) started speaking.
    pub fn on_speech_started(&mut self, now: Instant) {
        if !self.is_listening() {
            return;
        }
        self.silence_at = None;
        self.no_speech_at = None;
        self.eot_at = None;
        self.speech_started_at.get_or_insert(now);
        self.speech_active = true;
        self.silence_reached = false;
        self.eot_reached = false;
    }

    /// The user stopped speaking `silence` ago (the VAD's end-of-speech delay; zero if
    /// unknown).
    pub fn on_speech_ended(&mut self, now: Instant, silence: Duration) {
        if !self.is_listening() {
            return;
        }
        let Some(started) = self.speech_started_at else {
            tracing::debug!("AMD: speech ended before it started");
            return;
        };
        let ended = now.checked_sub(silence).unwrap_or(now).max(started);
        self.speech_ended_at = Some(ended);
        let speech_duration = ended.saturating_duration_since(started);
        self.speech_active = false;
        self.arm_eot(
            now,
            Some(self.max_endpointing_delay.saturating_sub(silence)),
        );
        let timer = if speech_duration <= self.options.human_speech_threshold
            && self.transcript.is_empty()
        {
            (
                now + self.options.human_silence_threshold.saturating_sub(silence),
                SilenceTimer::ShortGreeting { speech_duration },
            )
        } else {
            (
                now + self
                    .options
                    .machine_silence_threshold
                    .saturating_sub(silence),
                SilenceTimer::SilenceReached,
            )
        };
        self.silence_at = Some(timer);
    }

    /// The session committed a user turn (its turn detector or endpointing decided).
    pub fn on_end_of_turn(&mut self) {
        if self.closed {
            return;
        }
        self.eot_reached_now();
    }

    /// A final transcript of the line.
    pub fn push_text(&mut self, now: Instant, text: &str) {
        let text = text.trim();
        if !self.is_listening() || self.emitted || text.is_empty() {
            return;
        }
        self.arm_eot(now, None);
        if let Some((_, SilenceTimer::ShortGreeting { .. })) = self.silence_at {
            // Words came: not a bare "Hello?" any more; wait the machine silence from the
            // end of speech.
            let from = self.speech_ended_at.unwrap_or(now);
            let at = (from + self.options.machine_silence_threshold).max(now);
            self.silence_at = Some((at, SilenceTimer::SilenceReached));
        }
        self.no_speech_at = None;
        let room = MAX_GREETING_CHARS.saturating_sub(self.transcript.chars().count());
        if room > 0 {
            if !self.transcript.is_empty() {
                self.transcript.push(' ');
            }
            self.transcript.extend(text.chars().take(room));
        }
        self.classification = Some(self.transcript.clone());
    }

    /// The model labelled `transcript`. `uncertain` labels are not verdicts (more input may
    /// come).
    pub fn on_model_label(&mut self, now: Instant, label: AmdCategory, transcript: &str) {
        if self.closed || self.emitted || label == AmdCategory::Uncertain {
            return;
        }
        let prediction = AmdPrediction {
            category: label,
            reason: AmdReason::Llm,
            speech_duration: self.speech_duration(now),
            transcript: transcript.to_owned(),
            delay: self.delay(now),
        };
        self.verdict = Some(prediction);
        self.try_emit();
    }

    /// The model asked to wait `seconds` more (clamped to [`MAX_EXTENSION`]); returns what
    /// the tool answers.
    pub fn on_model_postpone(&mut self, now: Instant, seconds: f64) -> String {
        let wait = if seconds.is_finite() && seconds > 0.0 {
            Duration::from_secs_f64(seconds.min(MAX_EXTENSION.as_secs_f64()))
        } else {
            Duration::ZERO
        };
        self.extensions = self.extensions.saturating_add(1);
        self.silence_at = Some((now + wait, SilenceTimer::Postponed));
        format!("waiting {:.1}s for more audio", wait.as_secs_f64())
    }

    /// Settles on `category` (a timeout or a missing participant): the verdict is released
    /// as soon as the gates allow.
    pub fn settle(
        &mut self,
        now: Instant,
        category: AmdCategory,
        reason: AmdReason,
        speech_duration: Option<Duration>,
    ) {
        if self.closed {
            return;
        }
        self.silence_at = None;
        self.silence_reached = true;
        let has_speech = self.speech_started_at.is_some() || !self.transcript.is_empty();
        if !(self.options.wait_until_finished && has_speech) {
            self.eot_reached = true;
        }
        if self.verdict.is_none() {
            self.verdict = Some(AmdPrediction {
                category,
                reason,
                speech_duration: speech_duration.unwrap_or_else(|| self.speech_duration(now)),
                transcript: self.transcript.clone(),
                delay: self.delay(now),
            });
        }
        self.try_emit();
    }

    /// The call ended before a verdict: `uncertain` (`participant_missing`) at once.
    pub fn settle_call_ended(&mut self, now: Instant) {
        if self.closed || self.emitted {
            return;
        }
        self.verdict = Some(AmdPrediction {
            category: AmdCategory::Uncertain,
            reason: AmdReason::ParticipantMissing,
            speech_duration: self.speech_duration(now),
            transcript: self.transcript.clone(),
            delay: self.delay(now),
        });
        self.silence_reached = true;
        self.eot_reached = true;
        self.try_emit();
    }

    /// Stops everything (no verdict after this).
    pub fn close(&mut self) {
        self.closed = true;
        self.listening = false;
        self.no_speech_at = None;
        self.silence_at = None;
        self.detection_at = None;
        self.eot_at = None;
        self.classification = None;
    }

    /// When [`on_deadline`](Self::on_deadline) must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed || self.emitted {
            return None;
        }
        [
            self.no_speech_at,
            self.silence_at.map(|(at, _)| at),
            self.detection_at,
            self.eot_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers due at `now`, earliest first.
    pub fn on_deadline(&mut self, now: Instant) {
        while let Some(at) = self.next_deadline().filter(|at| *at <= now) {
            if self.eot_at == Some(at) {
                self.eot_reached_now();
            } else if let Some((t, timer)) = self.silence_at.filter(|(t, _)| *t == at) {
                debug_assert_eq!(t, at);
                self.silence_at = None;
                match timer {
                    SilenceTimer::ShortGreeting { speech_duration } => self.settle(
                        now,
                        AmdCategory::Human,
                        AmdReason::ShortGreeting,
                        Some(speech_duration),
                    ),
                    SilenceTimer::SilenceReached => {
                        self.silence_reached = true;
                        self.try_emit();
                    }
                    SilenceTimer::Postponed => {
                        // The extension ran out without another one: release what we have,
                        // and ask the model again (it must commit once extensions are gone).
                        self.silence_reached = true;
                        self.classification = Some(self.transcript.clone());
                        self.try_emit();
                    }
                }
            } else if self.no_speech_at == Some(at) {
                self.no_speech_at = None;
                self.settle(
                    now,
                    AmdCategory::Uncertain,
                    AmdReason::NoSpeechTimeout,
                    None,
                );
            } else if self.detection_at == Some(at) {
                self.detection_at = None;
                self.settle(
                    now,
                    AmdCategory::Uncertain,
                    AmdReason::DetectionTimeout,
                    None,
                );
            } else {
                break;
            }
        }
    }

    fn delay(&self, now: Instant) -> Duration {
        self.speech_ended_at
            .map_or(Duration::ZERO, |end| now.saturating_duration_since(end))
    }

    fn arm_eot(&mut self, now: Instant, delay: Option<Duration>) {
        if self.closed || self.speech_active {
            return;
        }
        self.eot_reached = false;
        self.eot_at = Some(now + delay.unwrap_or(self.max_endpointing_delay));
    }

    fn eot_reached_now(&mut self) {
        self.eot_at = None;
        if self.speech_active || self.speech_ended_at.is_none() {
            // No usable end of speech: the end of the turn stands for the silence too.
            self.speech_active = false;
            self.silence_reached = true;
        }
        self.eot_reached = true;
        self.try_emit();
    }

    fn try_emit(&mut self) {
        let Some(verdict) = &self.verdict else {
            return;
        };
        if self.closed || self.emitted {
            return;
        }
        let releasable = self.silence_reached && (verdict.is_human() || self.eot_reached);
        if !releasable {
            return;
        }
        self.detection_at = None;
        self.no_speech_at = None;
        self.eot_at = None;
        self.listening = false;
        self.emitted = true;
        self.classification = None;
    }
}

/// Answering-machine detection on a session (the reference's `AMD`): start it when the call
/// is answered (right after [`CallControl::dial`](super::CallControl::dial) returned), then
/// [`execute`](Self::execute) gives the verdict.
///
/// It listens to the session's events: the user's speech start and end (the end stamped with
/// when the VAD heard the speech stop, so its silence counts), final transcripts, and the
/// session's committed user turns (end of turn). The model is the one given, else the
/// session's LLM.
///
/// While it detects, the agent's speech is held, as the reference's: replies (to the
/// callee's turns, `say`, `generate_reply`) are generated but nothing plays until the
/// verdict. Then:
/// - on a machine (with [`AmdOptions::interrupt_on_machine`]) every held or playing speech is
///   interrupted, and while this `Amd` lives the callee's turns get no automatic reply (they
///   are recorded in the history): the machine flow (e.g. [`leave_voicemail`](super::leave_voicemail)) speaks
///   instead. A phone menu navigated by IVR (`ivr_detection` with a DTMF sender) keeps its
///   replies: the navigation needs them;
/// - on a phone menu (with [`AmdOptions::ivr_detection`] and a DTMF sender) IVR navigation
///   starts with the greeting as its first transcript, for as long as the session runs;
/// - then the held speech (a person's or an uncertain call's reply) plays.
///
/// These happen when the verdict lands, whether or not [`execute`](Self::execute) is awaited.
/// Dropping the `Amd` stops detecting and releases held speech.
///
/// ```no_run
/// use livekit_agents::telephony::{
///     dtmf_sender_for, leave_voicemail, Amd, AmdCategory, AmdOptions, CallControl, OutboundCall,
///     VoicemailMessage,
/// };
/// use livekit_agents::voice::AgentSession;
/// use livekit_agents::worker::JobContext;
///
/// async fn call(ctx: &JobContext, session: &AgentSession, call: OutboundCall) -> anyhow::Result<()> {
///     ctx.dial(&call).await?;
///     let amd = Amd::start(session, None, AmdOptions::default(), dtmf_sender_for(ctx))?;
///     let verdict = amd.execute().await?;
///     match verdict.category {
///         AmdCategory::MachineVm => {
///             let message = VoicemailMessage::Text("Hi, this is Acme. Call us back.".into());
///             leave_voicemail(session, Some(ctx), &message).await?;
///         }
///         AmdCategory::MachineUnavailable => { /* hang up */ }
///         _ => {} // a person, or a menu being navigated
///     }
///     Ok(())
/// }
/// ```
pub struct Amd {
    result: tokio::sync::watch::Receiver<Option<Result<AmdPrediction, AmdError>>>,
    session: AgentSession,
    options: AmdOptions,
    shared: Arc<AmdShared>,
    hook: u64,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl std::fmt::Debug for Amd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Amd")
            .field("options", &self.options)
            .field("result", &*self.result.borrow())
            .finish_non_exhaustive()
    }
}

/// What the detector shares with its session hook.
struct AmdShared {
    classifier: parking_lot::Mutex<AmdClassifier>,
    /// The hook fed the classifier (an end of turn): the detector looks again.
    changed: tokio::sync::Notify,
    /// The agent's speech waits (until the verdict's actions ran).
    holding: AtomicBool,
    interrupt_on_machine: bool,
    /// A phone menu verdict starts IVR navigation (which answers the menu's turns).
    ivr_navigates: bool,
}

impl AmdShared {
    /// Whether a verdict of `category` takes the callee's turns (no automatic reply).
    fn takes_turns(&self, category: AmdCategory) -> bool {
        self.interrupt_on_machine
            && category.is_machine()
            && !(category == AmdCategory::MachineIvr && self.ivr_navigates)
    }

    /// Lets held speech go.
    fn release(&self, session: &AgentSession) {
        if self.holding.swap(false, Ordering::AcqRel) {
            session.release_held_speech();
        }
    }
}

/// The detector's part in the activity loop: holds speech while detecting; each committed
/// user turn is the classifier's end of turn, and a machine's turns are not answered.
struct AmdHook(Arc<AmdShared>);

impl SessionHook for AmdHook {
    fn holds_speech(&self) -> bool {
        self.0.holding.load(Ordering::Acquire)
    }

    fn takes_user_turn(&self, _transcript: &str) -> bool {
        let category = {
            let mut classifier = self.0.classifier.lock();
            classifier.on_end_of_turn();
            classifier.verdict().map(|v| v.category)
        };
        self.0.changed.notify_one();
        let take = category.is_some_and(|c| self.0.takes_turns(c));
        if take {
            tracing::debug!(
                ?category,
                "skipping the automatic reply: AMD heard a machine"
            );
        }
        take
    }
}

impl Amd {
    /// Starts detecting on `session` with `llm` (default: the session's LLM); the agent's
    /// speech is held from now until the verdict. `dtmf` sends keys for the IVR navigation
    /// started on a phone menu (`options.ivr_detection`). An IVR navigation already running on
    /// the session is stopped: AMD decides when it starts.
    pub fn start(
        session: &AgentSession,
        llm: Option<Arc<dyn Llm>>,
        options: AmdOptions,
        dtmf: Option<Arc<dyn DtmfSender>>,
    ) -> Result<Self, AmdError> {
        let llm = llm
            .or_else(|| session.llm())
            .ok_or_else(|| AmdError::Config {
                reason: "no LLM to classify the greeting with".into(),
            })?;
        if let Some(ivr) = IvrDetection::of(session) {
            tracing::warn!("IVR detection was already started; AMD manages it now");
            ivr.stop();
        }
        let mut classifier_options = options.clone();
        classifier_options.max_endpointing_delay = Some(
            options
                .max_endpointing_delay
                .unwrap_or(session.options().turn_handling.endpointing.max_delay),
        );
        let shared = Arc::new(AmdShared {
            classifier: parking_lot::Mutex::new(AmdClassifier::new(classifier_options)),
            changed: tokio::sync::Notify::new(),
            holding: AtomicBool::new(true),
            interrupt_on_machine: options.interrupt_on_machine,
            ivr_navigates: options.ivr_detection && dtmf.is_some(),
        });
        let hook = session.add_hook(Arc::new(AmdHook(shared.clone())));
        let (tx, result) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(detect(
            session.clone(),
            session.timed_events(),
            llm,
            shared.clone(),
            Actions {
                options: options.clone(),
                dtmf,
            },
            tx,
        ));
        Ok(Self {
            result,
            session: session.clone(),
            options,
            shared,
            hook,
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        })
    }

    /// The verdict, if there is one already.
    pub fn result(&self) -> Option<Result<AmdPrediction, AmdError>> {
        self.result.borrow().clone()
    }

    /// Whether the agent's speech is held (no verdict yet).
    pub fn is_holding_speech(&self) -> bool {
        self.shared.holding.load(Ordering::Acquire)
    }

    /// Waits for the verdict. Its automatic actions (see [`Amd`]) already ran when this
    /// returns: a machine's held speech was interrupted, IVR navigation started on a phone
    /// menu, and the agent may speak again.
    pub async fn execute(&self) -> Result<AmdPrediction, AmdError> {
        let mut rx = self.result.clone();
        let result = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| AmdError::Closed)?
            .clone();
        result.ok_or(AmdError::Closed)?
    }
}

impl Drop for Amd {
    fn drop(&mut self) {
        self.shared.holding.store(false, Ordering::Release);
        // Removing the hook wakes the loop: held speech goes.
        self.session.remove_hook(self.hook);
    }
}

/// What the detector does when the verdict lands.
struct Actions {
    options: AmdOptions,
    dtmf: Option<Arc<dyn DtmfSender>>,
}

impl Actions {
    fn apply(&self, session: &AgentSession, prediction: &AmdPrediction) {
        if prediction.is_machine() && self.options.interrupt_on_machine {
            session.interrupt();
        }
        if prediction.category == AmdCategory::MachineIvr && self.options.ivr_detection {
            match &self.dtmf {
                Some(sender) => IvrDetection::start_for_session(
                    session,
                    sender.clone(),
                    IvrOptions::default(),
                    Some(prediction.transcript.clone()),
                ),
                None => tracing::warn!("AMD: phone menu detected but no DTMF sender was given"),
            }
        }
    }
}

/// A running classification request: (transcript, answer).
type Classification = std::pin::Pin<
    Box<dyn std::future::Future<Output = (String, Result<Vec<ModelAction>, AmdError>)> + Send>,
>;

async fn detect(
    session: AgentSession,
    mut events: crate::types::EventStream<TimedSessionEvent>,
    llm: Arc<dyn Llm>,
    shared: Arc<AmdShared>,
    actions: Actions,
    result: tokio::sync::watch::Sender<Option<Result<AmdPrediction, AmdError>>>,
) {
    let prompt: Arc<str> = {
        let mut classifier = shared.classifier.lock();
        classifier.start(Instant::now());
        classifier.options.prompt.clone().into()
    };
    let mut running: Option<Classification> = None;
    loop {
        let (verdict, classification, can_postpone, deadline) = {
            let mut c = shared.classifier.lock();
            (
                c.verdict().cloned(),
                c.take_classification(),
                c.can_postpone(),
                c.next_deadline(),
            )
        };
        if let Some(verdict) = verdict {
            tracing::info!(
                category = ?verdict.category,
                reason = verdict.reason.as_str(),
                speech_duration = ?verdict.speech_duration,
                delay = ?verdict.delay,
                "amd prediction"
            );
            // Interrupt a machine's held speech before letting speech go.
            actions.apply(&session, &verdict);
            shared.release(&session);
            let _ = result.send(Some(Ok(verdict)));
            return;
        }
        if let Some(transcript) = classification {
            // A newer transcript replaces the request in flight (dropping it cancels it).
            let (llm, prompt) = (llm.clone(), prompt.clone());
            running = Some(Box::pin(async move {
                let answer = ask_model(llm.as_ref(), &prompt, &transcript, can_postpone).await;
                (transcript, answer)
            }));
        }
        tokio::select! {
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => shared.classifier.lock().on_deadline(Instant::now()),
            (transcript, answer) = async {
                match running.as_mut() {
                    Some(r) => r.await,
                    None => std::future::pending().await,
                }
            } => {
                running = None;
                match answer {
                    Ok(model_actions) => {
                        let mut classifier = shared.classifier.lock();
                        for action in model_actions {
                            let now = Instant::now();
                            match action {
                                ModelAction::Label(label) => {
                                    classifier.on_model_label(now, label, &transcript)
                                }
                                ModelAction::Postpone(seconds) => {
                                    let said = classifier.on_model_postpone(now, seconds);
                                    tracing::debug!("AMD: {said}");
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "AMD classification failed"),
                }
            }
            // The session hook saw an end of turn.
            _ = shared.changed.notified() => {}
            ev = events.recv() => {
                let now = Instant::now();
                match ev {
                    Some(Ok(TimedSessionEvent {
                        event: SessionEvent::UserStateChanged { old_state, new_state },
                        instant,
                        ..
                    })) => {
                        let mut classifier = shared.classifier.lock();
                        if new_state == UserState::Speaking {
                            classifier.on_speech_started(now);
                        } else if old_state == UserState::Speaking {
                            // Stamped with when the VAD heard the speech stop: the silence
                            // since then already counts.
                            classifier.on_speech_ended(now, now.saturating_duration_since(instant));
                        }
                    }
                    Some(Ok(TimedSessionEvent {
                        event: SessionEvent::UserInputTranscribed { transcript, is_final: true, .. },
                        ..
                    })) => {
                        shared.classifier.lock().push_text(now, &transcript);
                    }
                    Some(Ok(TimedSessionEvent { event: SessionEvent::Close { .. }, .. })) | None => {
                        let settled = {
                            let mut classifier = shared.classifier.lock();
                            classifier.settle_call_ended(now);
                            classifier.verdict().is_some()
                        };
                        if !settled {
                            shared.release(&session);
                            let _ = result.send(Some(Err(AmdError::Closed)));
                            return;
                        }
                    }
                    // Lost events (a lagging receiver) only delay a verdict.
                    Some(Ok(_)) | Some(Err(_)) => {}
                }
            }
        }
        if !session.is_running() {
            shared.classifier.lock().settle_call_ended(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeLlm, FakeLlmResponse};

    fn at(t0: Instant, secs: f64) -> Instant {
        t0 + Duration::from_secs_f64(secs)
    }

    /// Runs the classifier's timers up to `until`, as the detector's loop does.
    fn advance(c: &mut AmdClassifier, until: Instant) {
        while let Some(d) = c.next_deadline().filter(|d| *d <= until) {
            c.on_deadline(d);
        }
    }

    fn started(options: AmdOptions) -> (AmdClassifier, Instant) {
        let t0 = Instant::now();
        let mut c = AmdClassifier::new(options);
        c.start(t0);
        (c, t0)
    }

    #[test]
    fn a_short_greeting_then_silence_is_a_person() {
        let (mut c, t0) = started(AmdOptions::default());
        c.on_speech_started(at(t0, 1.0));
        c.on_speech_ended(at(t0, 1.8), Duration::ZERO);
        advance(&mut c, at(t0, 2.29));
        assert!(c.verdict().is_none());
        advance(&mut c, at(t0, 2.3));
        let v = c.verdict().unwrap();
        assert_eq!(
            (v.category, v.reason),
            (AmdCategory::Human, AmdReason::ShortGreeting)
        );
        assert_eq!(v.speech_duration, Duration::from_millis(800));
        assert_eq!(c.next_deadline(), None);
        // Nothing changes a released verdict.
        c.push_text(at(t0, 2.5), "press one");
        assert!(c.take_classification().is_none());
    }

    #[test]
    fn the_vad_silence_already_waited_counts() {
        let (mut c, t0) = started(AmdOptions::default());
        c.on_speech_started(at(t0, 1.0));
        // Ended 0.3 s ago: 0.2 s more silence make a person.
        c.on_speech_ended(at(t0, 2.1), Duration::from_millis(300));
        advance(&mut c, at(t0, 2.3));
        let v = c.verdict().unwrap();
        assert_eq!(v.speech_duration, Duration::from_millis(800));
        assert_eq!(v.reason, AmdReason::ShortGreeting);
    }

    #[test]
    fn words_send_a_short_greeting_to_the_model_and_a_person_needs_only_silence() {
        let (mut c, t0) = started(AmdOptions::default());
        c.on_speech_started(at(t0, 1.0));
        c.on_speech_ended(at(t0, 2.0), Duration::ZERO);
        c.push_text(at(t0, 2.2), "Hello?");
        assert_eq!(c.take_classification().as_deref(), Some("Hello?"));
        c.on_model_label(at(t0, 2.4), AmdCategory::Human, "Hello?");
        advance(&mut c, at(t0, 3.49));
        assert!(c.verdict().is_none(), "1.5 s of silence first");
        advance(&mut c, at(t0, 3.5));
        let v = c.verdict().unwrap();
        assert_eq!((v.category, v.reason), (AmdCategory::Human, AmdReason::Llm));
        assert_eq!(v.transcript, "Hello?");
        // From the end of speech to the model's answer.
        assert_eq!(v.delay, Duration::from_millis(400));
    }

    #[test]
    fn a_machine_waits_for_silence_and_the_end_of_the_turn() {
        let greeting = "Hi, you've reached Sam. Leave a message after the beep.";
        for session_eot in [true, false] {
            let (mut c, t0) = started(AmdOptions::default());
            c.on_speech_started(at(t0, 0.5));
            c.on_speech_ended(at(t0, 6.5), Duration::ZERO);
            c.push_text(at(t0, 6.6), greeting);
            assert_eq!(c.take_classification().as_deref(), Some(greeting));
            c.on_model_label(at(t0, 7.0), AmdCategory::MachineVm, greeting);
            advance(&mut c, at(t0, 8.0));
            assert!(c.verdict().is_none(), "silence reached, turn not over");
            if session_eot {
                c.on_end_of_turn();
            } else {
                advance(&mut c, at(t0, 9.59));
                assert!(c.verdict().is_none());
                // The backstop: 3 s after the last text.
                advance(&mut c, at(t0, 9.6));
            }
            let v = c.verdict().unwrap();
            assert_eq!(v.category, AmdCategory::MachineVm);
            assert_eq!(v.speech_duration, Duration::from_secs(6));
        }
    }

    #[test]
    fn no_speech_is_uncertain_after_ten_seconds() {
        let (mut c, t0) = started(AmdOptions::default());
        // Input before listening is dropped.
        let mut idle = AmdClassifier::new(AmdOptions::default());
        idle.push_text(t0, "ring ring");
        assert!(idle.take_classification().is_none());
        assert_eq!(idle.next_deadline(), None);
        advance(&mut c, at(t0, 9.9));
        assert!(c.verdict().is_none());
        advance(&mut c, at(t0, 10.0));
        let v = c.verdict().unwrap();
        assert_eq!(
            (v.category, v.reason),
            (AmdCategory::Uncertain, AmdReason::NoSpeechTimeout)
        );
    }

    #[test]
    fn the_detection_timeout_waits_for_the_end_of_a_greeting_unless_told_not_to() {
        for wait_until_finished in [true, false] {
            let (mut c, t0) = started(AmdOptions {
                wait_until_finished,
                ..Default::default()
            });
            c.on_speech_started(at(t0, 1.0));
            advance(&mut c, at(t0, 20.0));
            if !wait_until_finished {
                let v = c.verdict().unwrap();
                assert_eq!(v.reason, AmdReason::DetectionTimeout);
                continue;
            }
            assert!(c.verdict().is_none(), "still speaking");
            c.on_speech_ended(at(t0, 25.0), Duration::ZERO);
            advance(&mut c, at(t0, 27.9));
            assert!(c.verdict().is_none());
            advance(&mut c, at(t0, 28.0));
            let v = c.verdict().unwrap();
            assert_eq!(
                (v.category, v.reason),
                (AmdCategory::Uncertain, AmdReason::DetectionTimeout)
            );
            // Measured when the timeout settled.
            assert_eq!(v.speech_duration, Duration::from_secs(19));
        }
    }

    #[test]
    fn the_model_may_postpone_three_times_at_most_ten_seconds() {
        let (mut c, t0) = started(AmdOptions::default());
        c.on_speech_started(at(t0, 0.5));
        c.on_speech_ended(at(t0, 4.0), Duration::ZERO);
        c.push_text(at(t0, 4.1), "Thank you for calling Truly Pizza.");
        let _ = c.take_classification();
        // "uncertain" is not a verdict.
        c.on_model_label(at(t0, 4.3), AmdCategory::Uncertain, "Thank you");
        assert_eq!(
            c.on_model_postpone(at(t0, 4.5), 30.0),
            "waiting 10.0s for more audio"
        );
        advance(&mut c, at(t0, 14.4));
        assert!(c.take_classification().is_none());
        advance(&mut c, at(t0, 14.5));
        // Asked again with what was heard.
        assert_eq!(
            c.take_classification().as_deref(),
            Some("Thank you for calling Truly Pizza.")
        );
        assert!(c.can_postpone());
        c.on_model_postpone(at(t0, 14.6), 1.0);
        c.on_model_postpone(at(t0, 14.7), f64::NAN);
        assert!(!c.can_postpone());
        c.on_model_label(at(t0, 15.0), AmdCategory::MachineIvr, "menu");
        advance(&mut c, at(t0, 15.0));
        assert_eq!(c.verdict().unwrap().category, AmdCategory::MachineIvr);
    }

    #[test]
    fn an_ended_call_settles_at_once_and_input_is_bounded() {
        let (mut c, t0) = started(AmdOptions::default());
        c.on_speech_started(at(t0, 0.5));
        for _ in 0..100 {
            c.push_text(at(t0, 1.0), &"word ".repeat(1000));
        }
        assert!(c.transcript().chars().count() <= MAX_GREETING_CHARS);
        c.settle_call_ended(at(t0, 2.0));
        let v = c.verdict().unwrap();
        assert_eq!(
            (v.category, v.reason.as_str()),
            (AmdCategory::Uncertain, "participant_missing")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_model_labels_the_greeting() {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::tool_call(
                "save_prediction",
                r#"{"label": "machine-ivr"}"#,
                Duration::from_millis(10),
            ),
            FakeLlmResponse::tool_call(
                "save_prediction",
                r#"{"label": "robot"}"#,
                Duration::from_millis(10),
            ),
            FakeLlmResponse::text("human", Duration::from_millis(10)),
        ]);
        let menu = "Thanks for calling. For sales press 1.";
        let c = classify_greeting(&llm, menu).await.unwrap();
        assert_eq!(c, AmdCategory::MachineIvr);
        assert!(c.is_machine() && !c.is_human());
        let req = &llm.requests()[0];
        assert_eq!(req.tool_choice, Some(ToolChoice::Required));
        assert_eq!(req.tools[0].name, "save_prediction");
        let text = format!("{:?}", req.chat_ctx);
        assert!(text.contains("machine-unavailable") && text.contains(menu));
        // Garbage labels and replies without the tool are "uncertain".
        assert_eq!(
            classify_greeting(&llm, "hmm").await.unwrap(),
            AmdCategory::Uncertain
        );
        assert_eq!(
            classify_greeting(&llm, "hello").await.unwrap(),
            AmdCategory::Uncertain
        );
        assert_eq!(
            serde_json::to_string(&AmdCategory::MachineVm).unwrap(),
            "\"machine-vm\""
        );
    }
}
