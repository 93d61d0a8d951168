//! Deepgram Flux: the turn-taking model on the v2 listen API (`wss://…/v2/listen`).
//!
//! Flux decides when the user's turn ends. Its `TurnInfo` events map to speech events:
//! `StartOfTurn` → start of speech (+ interim), `Update` → interim, `EagerEndOfTurn` →
//! preflight transcript (for preemptive generation), `TurnResumed` → interim (the preflight
//! was premature), `EndOfTurn` → final transcript + end of speech. Use it with the session's
//! `turn_detection = "stt"` mode, where the STT's end of speech ends the user's turn.

use async_trait::async_trait;
use livekit_agents::stt::{
    self as core_stt, AlignedTranscript, SpeechData, SpeechEvent, SpeechEventType, SpeechStream,
    SttCapabilities,
};
use livekit_agents::types::{ApiConnectOptions, ApiError, TimedString};
use serde::Deserialize;
use tokio::sync::watch;
use url::Url;

use crate::common::{
    endpoint, parse_base_url, redacted, resolve_api_key, resolve_base_url, ApiKey, ConfigError,
    Dialer, Query,
};
use crate::listen::{Action, ListenApi, ListenTask};
use crate::stt::ErrorMessage;

/// Deepgram's end-of-turn threshold when none is given.
const DEFAULT_EOT_THRESHOLD: f32 = 0.7;

/// Options of [`SttV2`] (Flux). Defaults match the reference plugin: thresholds unset (Deepgram
/// applies its own: `eot_threshold` 0.7, no eager end of turn).
///
/// ```
/// use livekit_plugins_deepgram::FluxOptions;
///
/// let opts = FluxOptions {
///     eager_eot_threshold: Some(0.4), // enables preflight transcripts
///     ..Default::default()
/// };
/// assert_eq!(opts.model, "flux-general-en");
/// ```
#[derive(Clone, PartialEq)]
pub struct FluxOptions {
    /// Model (`flux-general-en` by default; `flux-general-multi` for other languages).
    pub model: String,
    /// Confidence needed to end a turn (0.5-0.9).
    pub eot_threshold: Option<f32>,
    /// Confidence for an early end of turn (0.3-0.9, at most `eot_threshold`); enables
    /// `EagerEndOfTurn`, surfaced as preflight transcripts.
    pub eager_eot_threshold: Option<f32>,
    /// Silence in milliseconds after which a turn ends regardless of confidence.
    pub eot_timeout_ms: Option<u32>,
    /// Key terms to boost (sent as repeated `keyterm`).
    pub keyterms: Vec<String>,
    /// Key terms the agent session manages (its `stt_context_options.keyterms`), sent after
    /// `keyterms` (duplicates dropped). Set through `Stt::update_session_keyterms`.
    pub session_keyterms: Vec<String>,
    /// Language hints (`flux-general-multi` only).
    pub language_hints: Vec<String>,
    /// Tags for usage reporting.
    pub tags: Vec<String>,
    /// Opt out of the Deepgram model improvement program (default `false`).
    pub mip_opt_out: bool,
    /// API key; `DEEPGRAM_API_KEY` when unset. Never printed by `Debug`.
    pub api_key: Option<String>,
}

impl Default for FluxOptions {
    fn default() -> Self {
        Self {
            model: "flux-general-en".into(),
            eot_threshold: None,
            eager_eot_threshold: None,
            eot_timeout_ms: None,
            keyterms: Vec::new(),
            session_keyterms: Vec::new(),
            language_hints: Vec::new(),
            tags: Vec::new(),
            mip_opt_out: false,
            api_key: None,
        }
    }
}

impl std::fmt::Debug for FluxOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluxOptions")
            .field("model", &self.model)
            .field("eot_threshold", &self.eot_threshold)
            .field("eager_eot_threshold", &self.eager_eot_threshold)
            .field("eot_timeout_ms", &self.eot_timeout_ms)
            .field("keyterms", &self.keyterms)
            .field("session_keyterms", &self.session_keyterms)
            .field("language_hints", &self.language_hints)
            .field("tags", &self.tags)
            .field("mip_opt_out", &self.mip_opt_out)
            .field("api_key", &redacted(&self.api_key))
            .finish()
    }
}

impl FluxOptions {
    fn check(&self) -> Result<(), ConfigError> {
        let eot = self.eot_threshold.unwrap_or(DEFAULT_EOT_THRESHOLD);
        if let Some(eager) = self.eager_eot_threshold {
            if eager > eot {
                return Err(ConfigError::InvalidOption(format!(
                    "eager_eot_threshold ({eager}) must not exceed eot_threshold ({eot})"
                )));
            }
        }
        Ok(())
    }

    /// The socket URL. Flux detects the turns of one speaker, so the stream downmixes
    /// multi-channel input ([`ListenApi::MONO_ONLY`]) and sends no `channels` parameter.
    fn stream_url(&self, base: &Url, sample_rate: u32) -> Url {
        let mut q = Query::default();
        q.push("model", &self.model)
            .push("encoding", "linear16")
            .push("sample_rate", sample_rate)
            .push("mip_opt_out", self.mip_opt_out);
        if let Some(v) = self.eot_threshold {
            q.push("eot_threshold", v);
        }
        if let Some(v) = self.eager_eot_threshold {
            q.push("eager_eot_threshold", v);
        }
        if let Some(v) = self.eot_timeout_ms {
            q.push("eot_timeout_ms", v);
        }
        for k in crate::stt::merged_keyterms(&self.keyterms, &self.session_keyterms) {
            q.push("keyterm", k);
        }
        for l in &self.language_hints {
            q.push("language_hint", l);
        }
        for t in &self.tags {
            q.push("tag", t);
        }
        let mut url = endpoint(base, "/v2/listen", true);
        q.apply(&mut url);
        url
    }
}

/// Deepgram Flux speech-to-text (the reference's `deepgram.STTv2`): streaming only, with
/// model-integrated end-of-turn detection.
///
/// ```no_run
/// use livekit_plugins_deepgram::{FluxOptions, SttV2};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let stt = SttV2::new(FluxOptions {
///     eager_eot_threshold: Some(0.4),
///     ..Default::default()
/// })?;
/// # Ok(()) }
/// ```
pub struct SttV2 {
    options: watch::Sender<FluxOptions>,
    api_key: ApiKey,
    base_url: Url,
    dialer: Dialer,
}

impl std::fmt::Debug for SttV2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SttV2")
            .field("options", &*self.options.borrow())
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl SttV2 {
    /// Creates the client (API key from the options or `DEEPGRAM_API_KEY`, base URL from
    /// `DEEPGRAM_BASE_URL` or `https://api.deepgram.com`).
    pub fn new(options: FluxOptions) -> Result<Self, ConfigError> {
        options.check()?;
        Ok(Self {
            api_key: resolve_api_key(options.api_key.as_deref())?,
            base_url: resolve_base_url(None)?,
            options: watch::Sender::new(options),
            dialer: Dialer::Tcp,
        })
    }

    /// Uses another API root (`/v2/listen` is appended to it).
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.base_url = parse_base_url(base_url)?;
        Ok(self)
    }

    /// The current options.
    pub fn options(&self) -> FluxOptions {
        self.options.borrow().clone()
    }

    /// Changes options. Live streams reconnect with them once the current turn ended, resending
    /// the audio of the unfinished turn.
    pub fn update_options(&self, update: impl FnOnce(&mut FluxOptions)) -> Result<(), ConfigError> {
        let mut next = self.options();
        update(&mut next);
        next.check()?;
        self.options.send_replace(next);
        Ok(())
    }

    /// Routes connections through an in-memory pipe (tests on the paused clock).
    #[cfg(test)]
    pub(crate) fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }
}

#[async_trait]
impl core_stt::Stt for SttV2 {
    fn label(&self) -> String {
        "deepgram.STTv2".into()
    }

    fn model(&self) -> String {
        self.options.borrow().model.clone()
    }

    fn provider(&self) -> String {
        "deepgram".into()
    }

    /// Flux takes keyterms (the session's are merged with the configured ones).
    fn supports_keyterms(&self) -> bool {
        true
    }

    /// Live streams reconnect with the new terms once the current turn ended.
    fn update_session_keyterms(&self, keyterms: &[String]) {
        if self.options.borrow().session_keyterms == keyterms {
            return;
        }
        let mut next = self.options();
        next.session_keyterms = keyterms.to_vec();
        self.options.send_replace(next);
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            streaming: true,
            interim_results: true,
            diarization: false,
            aligned_transcript: Some(AlignedTranscript::Word),
            offline_recognize: false,
        }
    }

    fn stream(
        &self,
        language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        let task = ListenTask::<Flux>::new(
            self.options.subscribe(),
            language,
            self.api_key.clone(),
            self.base_url.clone(),
            self.dialer.clone(),
            conn,
        );
        Ok(SpeechStream::spawn("deepgram.STTv2", conn, task))
    }
}

/// The v2 listen API.
pub(crate) struct Flux;

impl ListenApi for Flux {
    type Options = FluxOptions;
    const NAME: &'static str = "v2/listen";
    // The reference does not send KeepAlive on v2; Flux needs continuous audio anyway.
    const KEEPALIVE: bool = false;
    // Flux ends turns itself; a flush only pushes out the partial audio chunk.
    const FINALIZE_ON_FLUSH: bool = false;
    // Flux follows one speaker's turns: stereo input is downmixed before it is sent (mono is
    // always accepted; Deepgram's Channels page also lists Flux, so `channels` would be read).
    const MONO_ONLY: bool = true;

    fn url(opts: &FluxOptions, base: &Url, sample_rate: u32, channels: u16) -> Url {
        debug_assert_eq!(channels, 1, "Flux audio is downmixed to mono");
        opts.stream_url(base, sample_rate)
    }

    fn language(_opts: &FluxOptions) -> Option<String> {
        None
    }

    fn set_language(opts: &mut FluxOptions, language: &str) {
        // Flux picks the language itself; a stream language becomes a hint for the
        // multilingual model.
        if opts.model.contains("multi") && !opts.language_hints.iter().any(|l| l == language) {
            opts.language_hints.push(language.to_string());
        }
    }

    fn handle(_opts: &FluxOptions, text: &str, offset: f64, speaking: &mut bool) -> Vec<Action> {
        let message: FluxMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "skipping malformed Deepgram Flux message");
                return Vec::new();
            }
        };
        let mut actions = Vec::new();
        match message {
            FluxMessage::Connected { request_id } => {
                if let Some(id) = request_id {
                    actions.push(Action::RequestId(id));
                }
            }
            FluxMessage::TurnInfo(turn) => {
                if let Some(id) = turn.request_id.clone() {
                    actions.push(Action::RequestId(id));
                }
                let transcript = |kind| {
                    turn.speech_data(offset)
                        .map(|data| Action::Event(SpeechEvent::transcript(kind, data)))
                };
                match turn.event.as_str() {
                    "StartOfTurn" => {
                        if !*speaking {
                            *speaking = true;
                            actions.push(Action::Event(SpeechEvent::new(
                                SpeechEventType::StartOfSpeech,
                            )));
                            actions.extend(transcript(SpeechEventType::InterimTranscript));
                        }
                    }
                    "Update" => {
                        if *speaking {
                            actions.extend(transcript(SpeechEventType::InterimTranscript));
                        }
                    }
                    "EagerEndOfTurn" => {
                        if *speaking {
                            actions.extend(transcript(SpeechEventType::PreflightTranscript));
                        }
                    }
                    // An interim cancels the preflight.
                    "TurnResumed" => actions.extend(transcript(SpeechEventType::InterimTranscript)),
                    "EndOfTurn" => {
                        actions.push(Action::FinalizedUntil(turn.audio_window_end));
                        if *speaking {
                            *speaking = false;
                            actions.extend(transcript(SpeechEventType::FinalTranscript));
                            actions.push(Action::Event(SpeechEvent::new(
                                SpeechEventType::EndOfSpeech,
                            )));
                        }
                    }
                    other => tracing::debug!(event = other, "ignoring unknown Flux turn event"),
                }
            }
            FluxMessage::ConfigureSuccess {} => tracing::debug!("Deepgram applied Configure"),
            FluxMessage::ConfigureFailure {} => tracing::warn!("Deepgram rejected Configure"),
            FluxMessage::Error(err) => actions.push(Action::Fail(ApiError::Connection {
                message: format!("Deepgram Flux error: {}", err.describe()),
                retryable: err.retryable(),
            })),
            FluxMessage::Unknown => tracing::debug!("ignoring unknown Deepgram Flux message"),
        }
        actions
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum FluxMessage {
    Connected {
        #[serde(default)]
        request_id: Option<String>,
    },
    TurnInfo(TurnInfo),
    ConfigureSuccess {},
    ConfigureFailure {},
    Error(ErrorMessage),
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct TurnInfo {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    event: String,
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    words: Vec<FluxWord>,
    #[serde(default)]
    audio_window_start: f64,
    #[serde(default)]
    audio_window_end: f64,
    #[serde(default)]
    languages: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct FluxWord {
    #[serde(default)]
    word: String,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
    #[serde(default)]
    confidence: f32,
}

impl TurnInfo {
    /// The turn's transcript so far, or `None` while no word was recognized.
    fn speech_data(&self, offset: f64) -> Option<SpeechData> {
        if self.words.is_empty() {
            return None;
        }
        let confidence =
            self.words.iter().map(|w| w.confidence).sum::<f32>() / self.words.len() as f32;
        Some(SpeechData {
            language: self
                .languages
                .first()
                .cloned()
                .unwrap_or_else(|| "en".into()),
            text: self.transcript.clone(),
            confidence,
            start_time: self.audio_window_start + offset,
            end_time: self.audio_window_end + offset,
            words: self
                .words
                .iter()
                .map(|w| TimedString {
                    text: w.word.clone(),
                    start_time: w.start + offset,
                    end_time: w.end + offset,
                    confidence: Some(w.confidence),
                })
                .collect(),
            speaker_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keyterms_are_merged_into_the_flux_url() {
        use core_stt::Stt as _;
        let stt = SttV2::new(FluxOptions {
            keyterms: vec!["LiveKit".into()],
            api_key: Some("k".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(stt.supports_keyterms());
        stt.update_session_keyterms(&["LiveKit".into(), "Flux".into()]);
        let url = stt
            .options()
            .stream_url(&Url::parse("https://api.deepgram.com").unwrap(), 16_000);
        let keyterms: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "keyterm")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(keyterms, vec!["LiveKit", "Flux"]);
    }

    #[test]
    fn eager_threshold_must_not_exceed_eot() {
        let bad = FluxOptions {
            eager_eot_threshold: Some(0.8),
            api_key: Some("k".into()),
            ..Default::default()
        };
        assert!(matches!(
            SttV2::new(bad),
            Err(ConfigError::InvalidOption(_))
        ));
        let ok = FluxOptions {
            eager_eot_threshold: Some(0.8),
            eot_threshold: Some(0.9),
            api_key: Some("k".into()),
            ..Default::default()
        };
        assert!(SttV2::new(ok).is_ok());
    }

    #[test]
    fn turn_events_map_to_speech_events() {
        let opts = FluxOptions::default();
        let mut speaking = false;
        let turn = |event: &str, transcript: &str| {
            serde_json::json!({"type": "TurnInfo", "event": event, "turn_index": 0,
                "audio_window_start": 0.0, "audio_window_end": 1.5, "transcript": transcript,
                "words": if transcript.is_empty() { serde_json::json!([]) } else {
                    serde_json::json!([{"word": transcript, "start": 0.2, "end": 0.6, "confidence": 0.8}]) },
                "end_of_turn_confidence": 0.5})
            .to_string()
        };
        let kinds = |actions: Vec<Action>| -> Vec<SpeechEventType> {
            actions
                .into_iter()
                .filter_map(|a| match a {
                    Action::Event(ev) => Some(ev.kind),
                    _ => None,
                })
                .collect()
        };
        use SpeechEventType::*;
        assert_eq!(
            kinds(Flux::handle(
                &opts,
                &turn("StartOfTurn", ""),
                2.0,
                &mut speaking
            )),
            [StartOfSpeech]
        );
        assert_eq!(
            kinds(Flux::handle(
                &opts,
                &turn("Update", "hi"),
                2.0,
                &mut speaking
            )),
            [InterimTranscript]
        );
        assert_eq!(
            kinds(Flux::handle(
                &opts,
                &turn("EagerEndOfTurn", "hi"),
                2.0,
                &mut speaking
            )),
            [PreflightTranscript]
        );
        assert_eq!(
            kinds(Flux::handle(
                &opts,
                &turn("TurnResumed", "hi"),
                2.0,
                &mut speaking
            )),
            [InterimTranscript]
        );
        let end = Flux::handle(&opts, &turn("EndOfTurn", "hi"), 2.0, &mut speaking);
        assert!(matches!(end[0], Action::FinalizedUntil(t) if (t - 1.5).abs() < 1e-9));
        assert_eq!(kinds(end), [FinalTranscript, EndOfSpeech]);
        assert!(!speaking);
        // Words are shifted by the connection offset.
        let update = Flux::handle(&opts, &turn("StartOfTurn", "yo"), 2.0, &mut speaking);
        let Some(Action::Event(ev)) = update.into_iter().last() else {
            panic!("expected an interim")
        };
        assert_eq!(ev.alternatives[0].words[0].start_time, 2.2);
        assert_eq!(ev.alternatives[0].start_time, 2.0);
    }
}
