//! Deepgram speech-to-text on the v1 listen API: streaming over `wss://…/v1/listen` and
//! one-shot recognition over `POST …/v1/listen`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use livekit_agents::audio::AudioFrame;
use livekit_agents::stt::{
    self as core_stt, AlignedTranscript, SpeechData, SpeechEvent, SpeechEventType, SpeechStream,
    SttCapabilities,
};
use livekit_agents::types::{ApiConnectOptions, ApiError, TimedString};
use serde::Deserialize;
use tokio::sync::watch;
use url::Url;

use crate::common::{
    authorization, endpoint, redacted, resolve_api_key, resolve_base_url, summarize_body,
    to_le_bytes, ApiKey, ConfigError, Dialer, Query, DEEPGRAM,
};
use crate::listen::{Action, ListenApi, ListenTask};

/// The largest pre-recorded transcription response read (64 MiB).
const MAX_PRERECORDED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Options of the Deepgram [`Stt`]. Defaults match the reference plugin.
///
/// ```
/// use livekit_plugins_deepgram::SttOptions;
///
/// let opts = SttOptions {
///     model: "nova-3".into(),
///     keyterms: vec!["LiveKit".into()],
///     ..Default::default()
/// };
/// assert_eq!(opts.endpointing_ms, 25);
/// assert!(opts.interim_results);
/// ```
#[derive(Clone, PartialEq)]
pub struct SttOptions {
    /// Model, e.g. `nova-3` (default), `nova-2-phonecall`.
    pub model: String,
    /// Language (`en-US` by default; `multi` for multilingual nova-3). Ignored when
    /// `detect_language` is set.
    pub language: Option<String>,
    /// Let Deepgram detect the language (batch recognition).
    pub detect_language: bool,
    /// Stream interim transcripts (default `true`).
    pub interim_results: bool,
    /// Add punctuation and capitalization (default `true`).
    pub punctuate: bool,
    /// Format numbers, dates, etc. (default `false`).
    pub smart_format: bool,
    /// Do not wait for more audio before sending results (default `true`).
    pub no_delay: bool,
    /// Silence, in milliseconds, after which Deepgram marks an endpoint (`speech_final`).
    /// Default 25; 0 disables endpointing.
    pub endpointing_ms: u32,
    /// Keep filler words such as "uh" and "um" (default `true`).
    pub filler_words: bool,
    /// Key terms to boost (nova-3 models only; sent as repeated `keyterm`).
    pub keyterms: Vec<String>,
    /// Key terms the agent session manages (its `stt_context_options.keyterms`), sent after
    /// `keyterms` (duplicates dropped). Set through `Stt::update_session_keyterms`.
    pub session_keyterms: Vec<String>,
    /// Keywords with intensifiers (models other than nova-3; sent as `keywords=word:boost`).
    pub keywords: Vec<(String, f32)>,
    /// Mask profanity (default `false`).
    pub profanity_filter: bool,
    /// Convert spoken numbers to digits (default `false`).
    pub numerals: bool,
    /// Speaker diarization; results carry `S<n>` speaker ids (default `false`).
    pub diarize: bool,
    /// Ask for `SpeechStarted` events (default `true`).
    pub vad_events: bool,
    /// Silence in milliseconds after which Deepgram sends `UtteranceEnd` (unset by default).
    pub utterance_end_ms: Option<u32>,
    /// Opt out of the Deepgram model improvement program (default `false`).
    pub mip_opt_out: bool,
    /// Tags for usage reporting.
    pub tags: Vec<String>,
    /// API key; `DEEPGRAM_API_KEY` when unset. Never printed by `Debug`.
    pub api_key: Option<String>,
}

impl Default for SttOptions {
    fn default() -> Self {
        Self {
            model: "nova-3".into(),
            language: Some("en-US".into()),
            detect_language: false,
            interim_results: true,
            punctuate: true,
            smart_format: false,
            no_delay: true,
            endpointing_ms: 25,
            filler_words: true,
            keyterms: Vec::new(),
            session_keyterms: Vec::new(),
            keywords: Vec::new(),
            profanity_filter: false,
            numerals: false,
            diarize: false,
            vad_events: true,
            utterance_end_ms: None,
            mip_opt_out: false,
            tags: Vec::new(),
            api_key: None,
        }
    }
}

impl std::fmt::Debug for SttOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SttOptions")
            .field("model", &self.model)
            .field("language", &self.language)
            .field("detect_language", &self.detect_language)
            .field("interim_results", &self.interim_results)
            .field("punctuate", &self.punctuate)
            .field("smart_format", &self.smart_format)
            .field("no_delay", &self.no_delay)
            .field("endpointing_ms", &self.endpointing_ms)
            .field("filler_words", &self.filler_words)
            .field("keyterms", &self.keyterms)
            .field("session_keyterms", &self.session_keyterms)
            .field("keywords", &self.keywords)
            .field("profanity_filter", &self.profanity_filter)
            .field("numerals", &self.numerals)
            .field("diarize", &self.diarize)
            .field("vad_events", &self.vad_events)
            .field("utterance_end_ms", &self.utterance_end_ms)
            .field("mip_opt_out", &self.mip_opt_out)
            .field("tags", &self.tags)
            .field("api_key", &redacted(&self.api_key))
            .finish()
    }
}

/// `configured` then the `session` terms not already in it.
pub(crate) fn merged_keyterms<'a>(
    configured: &'a [String],
    session: &'a [String],
) -> Vec<&'a String> {
    let mut out: Vec<&String> = Vec::with_capacity(configured.len() + session.len());
    for k in configured.iter().chain(session) {
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

impl SttOptions {
    fn is_nova3(&self) -> bool {
        self.model.starts_with("nova-3")
    }

    /// The language sent to Deepgram (none when detecting).
    fn effective_language(&self) -> Option<&str> {
        if self.detect_language {
            None
        } else {
            self.language.as_deref()
        }
    }

    /// Query parameters shared by streaming and batch recognition.
    fn common_query(&self) -> Query {
        let mut q = Query::default();
        q.push("model", &self.model)
            .push("punctuate", self.punctuate)
            .push("smart_format", self.smart_format)
            .push("profanity_filter", self.profanity_filter)
            .push("numerals", self.numerals)
            .push("mip_opt_out", self.mip_opt_out);
        if self.is_nova3() {
            for k in merged_keyterms(&self.keyterms, &self.session_keyterms) {
                q.push("keyterm", k);
            }
        } else {
            for (word, boost) in &self.keywords {
                q.push("keywords", format!("{word}:{boost}"));
            }
        }
        if let Some(lang) = self.effective_language() {
            q.push("language", lang);
        }
        for tag in &self.tags {
            q.push("tag", tag);
        }
        q
    }

    /// The streaming URL for audio at `sample_rate` with `channels`.
    fn stream_url(&self, base: &Url, sample_rate: u32, channels: u16) -> Url {
        let mut q = self.common_query();
        q.push("encoding", "linear16")
            .push("sample_rate", sample_rate)
            .push("channels", channels)
            .push("interim_results", self.interim_results)
            .push("no_delay", self.no_delay)
            .push("vad_events", self.vad_events)
            .push("filler_words", self.filler_words);
        if self.endpointing_ms == 0 {
            q.push("endpointing", false);
        } else {
            q.push("endpointing", self.endpointing_ms);
        }
        if self.diarize {
            q.push("diarize", true);
        }
        if let Some(ms) = self.utterance_end_ms {
            q.push("utterance_end_ms", ms);
        }
        let mut url = endpoint(base, "/v1/listen", true);
        q.apply(&mut url);
        url
    }

    fn warn_incompatible(&self) {
        if !self.is_nova3() && !self.keyterms.is_empty() {
            tracing::warn!(model = %self.model, "Deepgram keyterms are supported by nova-3 models only; ignoring them");
        }
        if self.is_nova3() && !self.keywords.is_empty() {
            tracing::warn!(model = %self.model, "Deepgram keywords are not supported by nova-3 models (use keyterms); ignoring them");
        }
    }
}

/// Deepgram speech-to-text (streaming and batch), the counterpart of the reference's
/// `deepgram.STT`.
///
/// ```no_run
/// use livekit_plugins_deepgram::{Stt, SttOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Reads DEEPGRAM_API_KEY (and DEEPGRAM_BASE_URL, if set).
/// let stt = Stt::new(SttOptions::default())?;
/// // Later, e.g. when the conversation needs new vocabulary:
/// stt.update_options(|o| o.keyterms = vec!["LiveKit".into()]);
/// # Ok(()) }
/// ```
pub struct Stt {
    options: watch::Sender<SttOptions>,
    api_key: ApiKey,
    base_url: Url,
    http: reqwest::Client,
    dialer: Dialer,
}

impl std::fmt::Debug for Stt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stt")
            .field("options", &*self.options.borrow())
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Stt {
    /// Creates the client. The API key comes from `options.api_key` or `DEEPGRAM_API_KEY`, the
    /// base URL from `DEEPGRAM_BASE_URL` or `https://api.deepgram.com`.
    pub fn new(options: SttOptions) -> Result<Self, ConfigError> {
        let api_key = resolve_api_key(options.api_key.as_deref())?;
        let base_url = resolve_base_url(None)?;
        options.warn_incompatible();
        Ok(Self {
            options: watch::Sender::new(options),
            api_key,
            base_url,
            http: reqwest::Client::new(),
            dialer: Dialer::Tcp,
        })
    }

    /// Routes connections through an in-memory pipe (tests on the paused clock).
    #[cfg(test)]
    pub(crate) fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    /// Uses another API root (`https://…`, `http://…`, `wss://…`; paths such as `/v1/listen`
    /// are appended to it).
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.base_url = crate::common::parse_base_url(base_url)?;
        Ok(self)
    }

    /// The current options.
    pub fn options(&self) -> SttOptions {
        self.options.borrow().clone()
    }

    /// Changes options. New streams use them at once; live streams reconnect with them (after
    /// the current utterance ends, so no speech is cut) and resend the audio Deepgram has not
    /// finalized, so nothing is lost.
    pub fn update_options(&self, update: impl FnOnce(&mut SttOptions)) {
        self.options.send_modify(|o| {
            update(o);
            o.warn_incompatible();
        });
    }

    async fn recognize_impl(
        &self,
        frames: &[AudioFrame],
        language: Option<&str>,
        conn: &ApiConnectOptions,
    ) -> Result<SpeechEvent, ApiError> {
        let mut opts = self.options();
        if let Some(lang) = language {
            opts.language = Some(lang.to_string());
            opts.detect_language = false;
        }
        let (samples, rate, channels) = merge_frames(frames)?;
        let mut q = opts.common_query();
        if opts.detect_language {
            q.push("detect_language", true);
        }
        let mut url = endpoint(&self.base_url, "/v1/listen", false);
        q.apply(&mut url);
        let body = wav_bytes(&samples, rate, channels);
        let request = self
            .http
            .post(url)
            .header(http::header::AUTHORIZATION, authorization(&self.api_key)?)
            .header(http::header::CONTENT_TYPE, "audio/wav")
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        let response = DEEPGRAM.send_http(request, conn.timeout).await?;
        let status = response.status().as_u16();
        let request_id = DEEPGRAM.request_id(response.headers());
        // Batch transcription of long audio takes a while: allow more than the connect timeout.
        let read_timeout = conn.timeout.max(Duration::from_secs(30));
        if !(200..300).contains(&status) {
            let text = livekit_agents::plugin_support::read_body_prefix(
                response,
                livekit_agents::plugin_support::MAX_ERROR_BODY_BYTES,
                livekit_agents::plugin_support::ERROR_BODY_TIMEOUT,
            )
            .await;
            return Err(DEEPGRAM.status_error(status, &summarize_body(&text), request_id));
        }
        // A transcript with word timings is large, but not this large.
        let text = livekit_agents::plugin_support::read_body_limited(
            "Deepgram",
            response,
            MAX_PRERECORDED_RESPONSE_BYTES,
            read_timeout,
        )
        .await?;
        let parsed: PrerecordedResponse = serde_json::from_slice(&text)
            .map_err(|e| ApiError::protocol(format!("unexpected Deepgram response: {e}")))?;
        Ok(prerecorded_to_event(parsed, &opts, request_id))
    }
}

#[async_trait]
impl core_stt::Stt for Stt {
    fn label(&self) -> String {
        "deepgram.STT".into()
    }

    fn model(&self) -> String {
        self.options.borrow().model.clone()
    }

    fn provider(&self) -> String {
        "deepgram".into()
    }

    /// nova-3 models take keyterms (the session's are merged with the configured ones).
    fn supports_keyterms(&self) -> bool {
        self.options.borrow().is_nova3()
    }

    /// Live streams reconnect with the new terms after the current utterance, as for
    /// [`Stt::update_options`].
    fn update_session_keyterms(&self, keyterms: &[String]) {
        if self.options.borrow().session_keyterms == keyterms {
            return;
        }
        self.update_options(|o| o.session_keyterms = keyterms.to_vec());
    }

    fn capabilities(&self) -> SttCapabilities {
        let o = self.options.borrow();
        SttCapabilities {
            streaming: true,
            interim_results: o.interim_results,
            diarization: o.diarize,
            aligned_transcript: Some(AlignedTranscript::Word),
            offline_recognize: true,
        }
    }

    async fn recognize_once(
        &self,
        frames: &[AudioFrame],
        language: Option<&str>,
        conn: &ApiConnectOptions,
    ) -> Result<SpeechEvent, ApiError> {
        self.recognize_impl(frames, language, conn).await
    }

    fn stream(
        &self,
        language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        let task = ListenTask::<V1>::new(
            self.options.subscribe(),
            language,
            self.api_key.clone(),
            self.base_url.clone(),
            self.dialer.clone(),
            conn,
        );
        Ok(SpeechStream::spawn("deepgram.STT", conn, task))
    }
}

/// The v1 listen API (nova models).
pub(crate) struct V1;

impl ListenApi for V1 {
    type Options = SttOptions;
    const NAME: &'static str = "v1/listen";
    const KEEPALIVE: bool = true;
    const FINALIZE_ON_FLUSH: bool = true;

    fn url(opts: &SttOptions, base: &Url, sample_rate: u32, channels: u16) -> Url {
        opts.stream_url(base, sample_rate, channels)
    }

    fn language(opts: &SttOptions) -> Option<String> {
        opts.language.clone()
    }

    fn set_language(opts: &mut SttOptions, language: &str) {
        opts.language = Some(language.to_string());
    }

    fn handle(opts: &SttOptions, text: &str, offset: f64, speaking: &mut bool) -> Vec<Action> {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "skipping malformed Deepgram message");
                return Vec::new();
            }
        };
        let mut actions = Vec::new();
        match message {
            ServerMessage::SpeechStarted {} => {
                if !*speaking {
                    *speaking = true;
                    actions.push(Action::Event(SpeechEvent::new(
                        SpeechEventType::StartOfSpeech,
                    )));
                }
            }
            ServerMessage::Results(results) => {
                if let Some(id) = results.metadata.as_ref().and_then(|m| m.request_id.clone()) {
                    actions.push(Action::RequestId(id));
                }
                if results.is_final {
                    actions.push(Action::FinalizedUntil(results.start + results.duration));
                }
                let alternatives = live_speech_data(&results, opts, offset);
                if alternatives.first().is_some_and(|a| !a.text.is_empty()) {
                    if !*speaking {
                        // Deepgram sometimes sends a transcript without SpeechStarted.
                        *speaking = true;
                        actions.push(Action::Event(SpeechEvent::new(
                            SpeechEventType::StartOfSpeech,
                        )));
                    }
                    let kind = if results.is_final {
                        SpeechEventType::FinalTranscript
                    } else {
                        SpeechEventType::InterimTranscript
                    };
                    let mut ev = SpeechEvent::new(kind);
                    ev.alternatives = alternatives;
                    actions.push(Action::Event(ev));
                }
                if results.speech_final && *speaking {
                    *speaking = false;
                    actions.push(Action::Event(SpeechEvent::new(
                        SpeechEventType::EndOfSpeech,
                    )));
                }
            }
            ServerMessage::UtteranceEnd {} => {
                if *speaking {
                    *speaking = false;
                    actions.push(Action::Event(SpeechEvent::new(
                        SpeechEventType::EndOfSpeech,
                    )));
                }
            }
            ServerMessage::Metadata(meta) => {
                if let Some(id) = meta.request_id {
                    actions.push(Action::RequestId(id));
                }
                // Deepgram bills the whole stream duration it reports here.
                if let Some(duration) = meta.duration {
                    actions.push(Action::Billed(duration));
                }
            }
            ServerMessage::Error(err) => actions.push(Action::Fail(ApiError::Connection {
                message: format!("Deepgram error: {}", err.describe()),
                retryable: err.retryable(),
            })),
            ServerMessage::Unknown => tracing::debug!("ignoring unknown Deepgram message"),
        }
        actions
    }
}

/// Messages of the v1 listen socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum ServerMessage {
    Results(ResultsMessage),
    SpeechStarted {},
    UtteranceEnd {},
    Metadata(MetadataMessage),
    Error(ErrorMessage),
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct ResultsMessage {
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    speech_final: bool,
    /// Start of the transcribed window, seconds from the connection start.
    #[serde(default)]
    start: f64,
    /// Length of the transcribed window.
    #[serde(default)]
    duration: f64,
    channel: ChannelMessage,
    #[serde(default)]
    metadata: Option<ResultsMetadata>,
}

#[derive(Debug, Deserialize)]
struct ResultsMetadata {
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ChannelMessage {
    #[serde(default)]
    alternatives: Vec<Alternative>,
    #[serde(default)]
    detected_language: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    confidence: f32,
    #[serde(default)]
    words: Vec<Word>,
    #[serde(default)]
    languages: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Word {
    #[serde(default)]
    word: String,
    #[serde(default)]
    punctuated_word: Option<String>,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
    #[serde(default)]
    confidence: Option<f32>,
    #[serde(default)]
    speaker: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct MetadataMessage {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
}

/// Words in a Deepgram error that mark a problem with the request itself (see
/// [`ErrorMessage::retryable`]).
pub(crate) const NON_RETRYABLE_MARKERS: &[&str] = &[
    "DATA-",
    "INVALID",
    "UNSUPPORTED",
    "BAD REQUEST",
    "BAD_REQUEST",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "INSUFFICIENT",
    "CORRUPT",
    "COULD NOT PROCESS AUDIO",
    "NO SUCH MODEL",
];

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorMessage {
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) code: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl ErrorMessage {
    /// Whether reconnecting can help. Errors about the request itself never clear by
    /// retrying: undecodable audio (`DATA-*`), invalid or unsupported parameters, refused
    /// credentials or credit. Network and internal errors (`NET-*`, timeouts) are retried.
    pub(crate) fn retryable(&self) -> bool {
        let text = format!(
            "{} {} {} {}",
            self.code
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            self.variant.as_deref().unwrap_or_default(),
            self.description.as_deref().unwrap_or_default(),
            self.message.as_deref().unwrap_or_default(),
        )
        .to_ascii_uppercase();
        !NON_RETRYABLE_MARKERS.iter().any(|m| text.contains(m))
    }

    pub(crate) fn describe(&self) -> String {
        let text = self
            .description
            .clone()
            .or_else(|| self.message.clone())
            .unwrap_or_else(|| "unknown error".into());
        match (&self.code, &self.variant) {
            (Some(code), _) => format!("{text} ({code})"),
            (None, Some(variant)) => format!("{text} ({variant})"),
            (None, None) => text,
        }
    }
}

/// The word text matching the transcript's formatting.
fn word_text(word: &Word, formatted: bool) -> String {
    match (&word.punctuated_word, formatted) {
        (Some(p), true) if !p.is_empty() => p.clone(),
        _ => word.word.clone(),
    }
}

/// Alternatives of a live `Results` message, with times shifted by `offset` seconds.
fn live_speech_data(results: &ResultsMessage, opts: &SttOptions, offset: f64) -> Vec<SpeechData> {
    let formatted = opts.punctuate || opts.smart_format;
    results
        .channel
        .alternatives
        .iter()
        .map(|alt| {
            let speaker_id = if results.is_final && opts.diarize {
                most_common_speaker(&alt.words)
            } else {
                None
            };
            let language = match (opts.language.as_deref(), alt.languages.first()) {
                (Some("multi"), Some(detected)) => detected.clone(),
                (lang, _) => lang.unwrap_or_default().to_string(),
            };
            speech_data(alt, language, formatted, offset, results.start, speaker_id)
        })
        .collect()
}

fn speech_data(
    alt: &Alternative,
    language: String,
    formatted: bool,
    offset: f64,
    window_start: f64,
    speaker_id: Option<String>,
) -> SpeechData {
    let start = alt.words.first().map(|w| w.start).unwrap_or(window_start);
    let end = alt.words.last().map(|w| w.end).unwrap_or(window_start);
    SpeechData {
        language,
        text: alt.transcript.clone(),
        confidence: alt.confidence,
        start_time: start + offset,
        end_time: end + offset,
        words: alt
            .words
            .iter()
            .map(|w| TimedString {
                text: word_text(w, formatted),
                start_time: w.start + offset,
                end_time: w.end + offset,
                confidence: w.confidence,
            })
            .collect(),
        speaker_id,
    }
}

/// The speaker of most words, as `S<n>`.
fn most_common_speaker(words: &[Word]) -> Option<String> {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for s in words.iter().filter_map(|w| w.speaker) {
        *counts.entry(s).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(speaker, n)| (n, std::cmp::Reverse(speaker)))
        .map(|(s, _)| format!("S{s}"))
}

#[derive(Debug, Deserialize)]
struct PrerecordedResponse {
    #[serde(default)]
    metadata: Option<ResultsMetadata>,
    results: PrerecordedResults,
}

#[derive(Debug, Deserialize)]
struct PrerecordedResults {
    #[serde(default)]
    channels: Vec<ChannelMessage>,
}

fn prerecorded_to_event(
    response: PrerecordedResponse,
    opts: &SttOptions,
    header_request_id: Option<String>,
) -> SpeechEvent {
    let request_id = response
        .metadata
        .and_then(|m| m.request_id)
        .or(header_request_id)
        .unwrap_or_default();
    let formatted = opts.punctuate || opts.smart_format;
    let channel = response
        .results
        .channels
        .into_iter()
        .next()
        .unwrap_or_default();
    let language = opts
        .effective_language()
        .map(str::to_string)
        .or(channel.detected_language.clone())
        .unwrap_or_default();
    let mut ev = SpeechEvent::new(SpeechEventType::FinalTranscript);
    ev.request_id = request_id;
    ev.alternatives = channel
        .alternatives
        .iter()
        .map(|alt| speech_data(alt, language.clone(), formatted, 0.0, 0.0, None))
        .collect();
    ev
}

/// Concatenates frames that share one format.
fn merge_frames(frames: &[AudioFrame]) -> Result<(Vec<i16>, u32, u16), ApiError> {
    let Some(first) = frames.iter().find(|f| !f.is_empty()) else {
        return Err(ApiError::other("no audio to recognize"));
    };
    let (rate, channels) = (first.sample_rate, first.num_channels);
    if rate == 0 || channels == 0 {
        return Err(ApiError::other(format!("invalid audio frame: {first:?}")));
    }
    let mut samples = Vec::new();
    for f in frames.iter().filter(|f| !f.is_empty()) {
        if f.sample_rate != rate || f.num_channels != channels {
            return Err(ApiError::other(format!(
                "frames mix formats ({} Hz x{} and {} Hz x{}); resample before recognizing",
                rate, channels, f.sample_rate, f.num_channels
            )));
        }
        samples.extend_from_slice(&f.data);
    }
    Ok((samples, rate, channels))
}

/// A 16-bit PCM WAV file.
pub(crate) fn wav_bytes(samples: &[i16], sample_rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let byte_rate = sample_rate * channels as u32 * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&to_le_bytes(samples));
    out
}

#[cfg(test)]
#[path = "stt_stream_tests.rs"]
mod stream_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn session_keyterms_follow_the_configured_ones_without_duplicates() {
        use livekit_agents::stt::Stt as _;
        let base = Url::parse("https://api.deepgram.com").unwrap();
        let stt = Stt::new(SttOptions {
            keyterms: vec!["LiveKit".into()],
            api_key: Some("k".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(stt.supports_keyterms());
        stt.update_session_keyterms(&["Acme".into(), "LiveKit".into()]);
        let url = stt.options().stream_url(&base, 16_000, 1);
        let keyterms: Vec<String> = pairs(&url)
            .into_iter()
            .filter(|(k, _)| k == "keyterm")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(keyterms, vec!["LiveKit", "Acme"]);
        // A model without keyterm support does not claim it.
        stt.update_options(|o| o.model = "nova-2".into());
        assert!(!stt.supports_keyterms());
    }

    #[test]
    fn stream_url_follows_reference_defaults() {
        let base = Url::parse("https://api.deepgram.com").unwrap();
        let opts = SttOptions {
            keyterms: vec!["LiveKit".into(), "Rust".into()],
            keywords: vec![("ignored".into(), 2.0)],
            ..Default::default()
        };
        let url = opts.stream_url(&base, 48_000, 1);
        assert_eq!(url.scheme(), "wss");
        assert_eq!(url.path(), "/v1/listen");
        let q = pairs(&url);
        for (k, v) in [
            ("model", "nova-3"),
            ("punctuate", "true"),
            ("smart_format", "false"),
            ("no_delay", "true"),
            ("interim_results", "true"),
            ("encoding", "linear16"),
            ("vad_events", "true"),
            ("sample_rate", "48000"),
            ("channels", "1"),
            ("endpointing", "25"),
            ("filler_words", "true"),
            ("profanity_filter", "false"),
            ("numerals", "false"),
            ("mip_opt_out", "false"),
            ("language", "en-US"),
        ] {
            assert!(
                q.contains(&(k.into(), v.into())),
                "missing {k}={v} in {q:?}"
            );
        }
        let keyterms: Vec<_> = q
            .iter()
            .filter(|(k, _)| k == "keyterm")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(keyterms, ["LiveKit", "Rust"]);
        assert!(!q.iter().any(|(k, _)| k == "keywords" || k == "diarize"));
    }

    #[test]
    fn keywords_for_older_models_and_disabled_endpointing() {
        let base = Url::parse("https://api.deepgram.com").unwrap();
        let opts = SttOptions {
            model: "nova-2-phonecall".into(),
            keywords: vec![("LiveKit".into(), 1.5)],
            endpointing_ms: 0,
            diarize: true,
            detect_language: true,
            ..Default::default()
        };
        let q = pairs(&opts.stream_url(&base, 16_000, 2));
        assert!(q.contains(&("keywords".into(), "LiveKit:1.5".into())));
        assert!(q.contains(&("endpointing".into(), "false".into())));
        assert!(q.contains(&("diarize".into(), "true".into())));
        assert!(q.contains(&("channels".into(), "2".into())));
        assert!(!q.iter().any(|(k, _)| k == "language"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let opts = SttOptions {
            api_key: Some("dg-secret".into()),
            ..Default::default()
        };
        let stt = Stt::new(opts.clone()).unwrap();
        assert!(!format!("{opts:?}").contains("dg-secret"));
        assert!(!format!("{stt:?}").contains("dg-secret"));
    }

    #[test]
    fn speaker_is_the_most_common_one() {
        let w = |s| Word {
            word: "x".into(),
            punctuated_word: None,
            start: 0.0,
            end: 0.0,
            confidence: None,
            speaker: Some(s),
        };
        assert_eq!(
            most_common_speaker(&[w(1), w(0), w(1)]).as_deref(),
            Some("S1")
        );
        assert_eq!(most_common_speaker(&[]), None);
    }

    #[test]
    fn wav_header_is_well_formed() {
        let wav = wav_bytes(&[1, -1, 2], 16_000, 1);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]), 6);
        assert_eq!(wav.len(), 50);
    }

    #[test]
    fn default_models_are_in_the_documented_lists() {
        use livekit_plugin_test_support::models::accepts;
        assert!(accepts(
            "deepgram",
            "listen_v1",
            &SttOptions::default().model
        ));
        assert!(accepts(
            "deepgram",
            "listen_v2",
            &crate::flux::FluxOptions::default().model
        ));
        assert!(accepts(
            "deepgram",
            "speak",
            &crate::tts::TtsOptions::default().model
        ));
    }
}
