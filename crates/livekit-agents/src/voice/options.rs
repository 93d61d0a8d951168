//! Session options with the reference defaults: turn handling (turn detection, endpointing,
//! interruptions, preemptive generation, user turn limit) and the session-wide settings.

use std::sync::Arc;
use std::time::Duration;

use crate::tokenize::{TextTransformKind, DEFAULT_TTS_TEXT_TRANSFORMS};
use crate::turn_detector::TurnDetector;

/// How the end of the user's turn is decided.
#[derive(Clone, Default)]
pub enum TurnDetection {
    /// Pick automatically: the session's turn detector if one is set, else VAD (else STT).
    #[default]
    Auto,
    /// A turn-detector model on top of VAD/STT endpointing.
    Model(Arc<dyn TurnDetector>),
    /// VAD end of speech plus `min_delay`.
    Vad,
    /// The STT's end-of-speech signal.
    Stt,
    /// The realtime model's server-side detection.
    RealtimeLlm,
    /// The application calls [`AgentSession::commit_user_turn`](super::AgentSession::commit_user_turn).
    Manual,
}

impl std::fmt::Debug for TurnDetection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnDetection::Auto => f.write_str("Auto"),
            TurnDetection::Model(m) => write!(f, "Model({})", m.label()),
            TurnDetection::Vad => f.write_str("Vad"),
            TurnDetection::Stt => f.write_str("Stt"),
            TurnDetection::RealtimeLlm => f.write_str("RealtimeLlm"),
            TurnDetection::Manual => f.write_str("Manual"),
        }
    }
}

/// Fixed or adaptive endpointing delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointingMode {
    /// `min_delay` (or `max_delay` when the turn detector says the user will go on).
    #[default]
    Fixed,
    /// `min_delay` adapts to the user's observed pauses, within `[min_delay, max_delay]`.
    Dynamic,
}

/// How long to wait after the user stops speaking before ending the turn.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct EndpointingOptions {
    /// Fixed or dynamic.
    pub mode: EndpointingMode,
    /// Wait when the turn is likely over (default 0.5 s).
    pub min_delay: Duration,
    /// Wait when the turn detector says the user will likely continue (default 3.0 s).
    pub max_delay: Duration,
    /// Smoothing factor of dynamic endpointing (default 0.9: weight of the previous estimate).
    pub alpha: f64,
}

impl Default for EndpointingOptions {
    fn default() -> Self {
        Self {
            mode: EndpointingMode::Fixed,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
            alpha: 0.9,
        }
    }
}

/// How user speech interrupts the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterruptionMode {
    /// Voice activity of `min_duration` interrupts.
    #[default]
    Vad,
    /// LiveKit Cloud's backchannel-aware classifier. Not available here: the session logs a line
    /// and uses [`InterruptionMode::Vad`].
    Adaptive,
}

/// Interruption settings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct InterruptionOptions {
    /// Whether the user can interrupt the agent (default true).
    pub enabled: bool,
    /// Detection mode (default VAD).
    pub mode: InterruptionMode,
    /// Drop user audio while the agent speaks uninterruptibly (default true).
    pub discard_audio_if_uninterruptible: bool,
    /// Speech needed to interrupt (default 0.5 s).
    pub min_duration: Duration,
    /// Words needed to interrupt when an STT is used (default 0).
    pub min_words: usize,
    /// Silence after an interruption without transcript before it counts as false (default
    /// 2.0 s; `None` disables false-interruption handling).
    pub false_interruption_timeout: Option<Duration>,
    /// Resume the paused speech after a false interruption (default true).
    pub resume_false_interruption: bool,
}

impl Default for InterruptionOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: InterruptionMode::Vad,
            discard_audio_if_uninterruptible: true,
            min_duration: Duration::from_millis(500),
            min_words: 0,
            false_interruption_timeout: Some(Duration::from_secs(2)),
            resume_false_interruption: true,
        }
    }
}

/// Start the LLM on a final transcript before the turn is committed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct PreemptiveGenerationOptions {
    /// Default true.
    pub enabled: bool,
    /// Also start TTS early (default false, the reference's): a reply's synthesis starts on
    /// the LLM output before the speech has the floor (so before the turn is committed, for a
    /// preemptive generation). A preemptive reply is reused under the same conditions as its
    /// LLM output; otherwise its audio is dropped unheard. Needs an audio output.
    pub preemptive_tts: bool,
    /// Skip preemption when the user spoke longer than this (default 10 s).
    pub max_speech_duration: Duration,
    /// Preemptive attempts per user turn (default 3).
    pub max_retries: u32,
}

impl Default for PreemptiveGenerationOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            preemptive_tts: false,
            max_speech_duration: Duration::from_secs(10),
            max_retries: 3,
        }
    }
}

/// Limits on consecutive user turns without an agent reply (both off by default).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct UserTurnLimitOptions {
    /// Words across consecutive user turns.
    pub max_words: Option<usize>,
    /// Speech duration across consecutive user turns.
    pub max_duration: Option<Duration>,
}

/// Everything about turns.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct TurnHandlingOptions {
    /// End-of-turn mode.
    pub turn_detection: TurnDetection,
    /// Endpointing delays.
    pub endpointing: EndpointingOptions,
    /// Interruptions.
    pub interruption: InterruptionOptions,
    /// Preemptive generation.
    pub preemptive_generation: PreemptiveGenerationOptions,
    /// User turn limit.
    pub user_turn_limit: UserTurnLimitOptions,
}

/// Session-wide settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct SessionOptions {
    /// Turn handling.
    pub turn_handling: TurnHandlingOptions,
    /// Consecutive tool steps per reply before tools are disabled (default 3).
    pub max_tool_steps: u32,
    /// Silence (both sides listening) before the user counts as away (default 15 s; `None`
    /// disables).
    pub user_away_timeout: Option<Duration>,
    /// Minimum gap between two agent utterances (default 0).
    pub min_consecutive_speech_delay: Duration,
    /// Transforms of LLM text before TTS (default markdown and emoji filters).
    pub tts_text_transforms: Vec<TextTransformKind>,
    /// Feed TTS word timings to the transcription node (default false).
    pub use_tts_aligned_transcript: bool,
    /// Unrecoverable errors of one kind the session tolerates (default 3: it closes on the
    /// 4th, as the reference). The STT's count resets on a user transcript, the LLM's and the
    /// TTS's when the agent speaks.
    pub max_unrecoverable_errors: u32,
    /// Timeout of one turn-detector prediction (default 1 s).
    pub turn_detector_timeout: Duration,
    /// Retry policy passed to STT, LLM and TTS requests.
    pub conn_options: crate::types::ApiConnectOptions,
    /// Filters on the user's audio before VAD and STT (noise suppression, gain control), built
    /// per participant (default none). See [`AudioFilterFactory`](crate::audio::AudioFilterFactory).
    pub audio_filter: Option<crate::audio::filter::AudioFilterFactory>,
    /// How long `close()` waits for the final transcript of what the user was saying, to
    /// commit it to the history before the close event (default 2 s, the reference's
    /// `session_close_transcript_timeout`).
    pub session_close_transcript_timeout: Duration,
    /// Navigate automated phone menus (the reference's `ivr_detection`, default false): with a
    /// job's ports (`JobContext::session_io`), the agent gets the `send_dtmf_events` tool and
    /// silence and menu loops are handled (`telephony::IvrDetection`, feature `server`).
    pub ivr_detection: bool,
    /// AEC warm-up: for this long after the agent first starts speaking (with an audio
    /// output), user speech does not interrupt it and the STT gets silence while it speaks, so
    /// an agent heard through a speakerphone does not cut itself off before echo cancellation
    /// adapted (the reference's `aec_warmup_duration`). Default [`AecWarmup::Auto`]: 3 s, none
    /// on an outbound SIP call; [`AecWarmup::Off`] disables it, [`AecWarmup::For`] sets it for
    /// every call. Runs once per linked participant, from the agent's first `speaking`.
    pub aec_warmup_duration: AecWarmup,
    /// Emit [`SessionEvent::UserTranscriptionTimeout`](super::SessionEvent::UserTranscriptionTimeout)
    /// when the VAD heard the user during their turn but no non-empty final transcript arrived
    /// within this long after that speech ended (the reference's `transcription_timeout`,
    /// default `None`: off). The time counts from the end of the speech, so the VAD's own
    /// end-of-speech silence is part of it. It can happen because the STT failed or because the
    /// audio was withheld from it (AEC warm-up, uninterruptible speech); use it to ask the user
    /// to repeat. New speech stops the clock (the next end of speech restarts it, counting the
    /// turn's speech so far); a committed or cleared turn
    /// ([`AgentSession::clear_user_turn`](super::AgentSession::clear_user_turn)) resets it.
    /// Needs a VAD and an STT.
    pub transcription_timeout: Option<Duration>,
    /// Keyterms and conversation context for STTs that accept them (the reference's
    /// `stt_context_options`; default: no keyterms, context forwarded).
    pub stt_context_options: crate::stt::SttContextOptions,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            turn_handling: TurnHandlingOptions::default(),
            max_tool_steps: 3,
            user_away_timeout: Some(Duration::from_secs(15)),
            min_consecutive_speech_delay: Duration::ZERO,
            tts_text_transforms: DEFAULT_TTS_TEXT_TRANSFORMS.to_vec(),
            use_tts_aligned_transcript: false,
            max_unrecoverable_errors: 3,
            turn_detector_timeout: Duration::from_secs(1),
            conn_options: crate::types::ApiConnectOptions::default(),
            audio_filter: None,
            session_close_transcript_timeout: Duration::from_secs(2),
            ivr_detection: false,
            aec_warmup_duration: AecWarmup::Auto,
            transcription_timeout: None,
            stt_context_options: crate::stt::SttContextOptions::default(),
        }
    }
}

/// The AEC warm-up setting ([`SessionOptions::aec_warmup_duration`]).
///
/// The reference resolves a warm-up that was not set explicitly per call: 3 s, except on an
/// outbound SIP call (a phone the agent dialed: a SIP participant without the `sip.ruleID`
/// attribute that inbound calls carry), where echo is not expected and the first words of
/// the callee must interrupt at once.
///
/// ```
/// use std::time::Duration;
/// use livekit_agents::voice::AecWarmup;
///
/// assert_eq!(AecWarmup::Auto.duration(false), Some(Duration::from_secs(3)));
/// assert_eq!(AecWarmup::Auto.duration(true), None);
/// assert_eq!(AecWarmup::For(Duration::from_secs(2)).duration(true), Some(Duration::from_secs(2)));
/// assert_eq!(AecWarmup::Off.duration(false), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AecWarmup {
    /// [`AecWarmup::DEFAULT_DURATION`], or none on an outbound SIP call (the reference's
    /// default when `aec_warmup_duration` is not given).
    #[default]
    Auto,
    /// This long on every call (set explicitly: also on outbound SIP calls).
    For(Duration),
    /// No warm-up.
    Off,
}

impl AecWarmup {
    /// The reference's default warm-up (3 s).
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(3);

    /// The warm-up for a call; `outbound_sip`: the linked participant is an outbound SIP
    /// call. `None`: no warm-up.
    pub fn duration(&self, outbound_sip: bool) -> Option<Duration> {
        match self {
            AecWarmup::Auto if outbound_sip => None,
            AecWarmup::Auto => Some(Self::DEFAULT_DURATION),
            AecWarmup::For(d) if d.is_zero() => None,
            AecWarmup::For(d) => Some(*d),
            AecWarmup::Off => None,
        }
    }
}

impl From<Option<Duration>> for AecWarmup {
    /// `Some(d)`: [`AecWarmup::For`], `None`: [`AecWarmup::Off`] (both explicit).
    fn from(value: Option<Duration>) -> Self {
        value.map_or(AecWarmup::Off, AecWarmup::For)
    }
}

/// An agent's own turn handling: each field set overrides the session's value while the agent
/// is active, each `None` uses the session's (the reference's `Agent(turn_handling=..)` and
/// its `turn_detection` / `min_endpointing_delay` / `max_endpointing_delay` /
/// `allow_interruptions` arguments). Set through [`AgentBuilder`](super::AgentBuilder).
///
/// [`AgentSession::update_options`](super::AgentSession::update_options) changes the session's
/// values: they apply at once to the active agent (even over its own values, as the
/// reference's) and, after a handoff, to every agent that does not override them.
#[derive(Debug, Clone, Default)]
pub struct AgentTurnHandling {
    /// End-of-turn mode (resolved like the session's: [`TurnDetection::Auto`] picks from the
    /// models; a mode the models cannot serve falls back to the session's).
    pub turn_detection: Option<TurnDetection>,
    /// Endpointing mode.
    pub endpointing_mode: Option<EndpointingMode>,
    /// Endpointing `min_delay`.
    pub min_endpointing_delay: Option<Duration>,
    /// Endpointing `max_delay`.
    pub max_endpointing_delay: Option<Duration>,
    /// Whether the user may interrupt the agent (the reference's `interruption.enabled`).
    pub allow_interruptions: Option<bool>,
    /// Preemptive generation on or off.
    pub preemptive_generation: Option<bool>,
    /// Preemptive TTS on or off.
    pub preemptive_tts: Option<bool>,
}

impl AgentTurnHandling {
    /// `session`'s endpointing with this agent's values over it.
    pub fn endpointing(&self, session: EndpointingOptions) -> EndpointingOptions {
        EndpointingOptions {
            mode: self.endpointing_mode.unwrap_or(session.mode),
            min_delay: self.min_endpointing_delay.unwrap_or(session.min_delay),
            max_delay: self.max_endpointing_delay.unwrap_or(session.max_delay),
            alpha: session.alpha,
        }
    }

    /// `session`'s preemptive generation with this agent's values over it.
    pub fn preemptive_generation(
        &self,
        session: PreemptiveGenerationOptions,
    ) -> PreemptiveGenerationOptions {
        PreemptiveGenerationOptions {
            enabled: self.preemptive_generation.unwrap_or(session.enabled),
            preemptive_tts: self.preemptive_tts.unwrap_or(session.preemptive_tts),
            ..session
        }
    }
}
