//! Speech-to-text ([`Stt`]): one-shot recognition over `POST /audio/transcriptions` (a WAV
//! upload; used in sessions through the core `stt::StreamAdapter` with a VAD), and optional
//! streaming recognition over the Realtime API's transcription sessions
//! (`wss://…/realtime?intent=transcription`) with interim deltas and finals.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use livekit_agents::audio::wav::encode_wav;
use livekit_agents::audio::AudioFrame;
use livekit_agents::stt::{
    self as core_stt, SpeechData, SpeechEvent, SpeechEventSender, SpeechEventType, SpeechStream,
    SttCapabilities, SttInput, SttInputReceiver, SttStreamTask,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::audio_util::{samples_to_base64, RealtimeAudioInput};
use crate::client::{
    error_from_response, http_client, parse_base_url, redacted, request_id, transport_error,
    ConfigError, Endpoint,
};
use crate::llm::AzureConnection;
use crate::realtime::{
    iso_639_1, pcm_format, rejects_turn_detection, takes_language_list, NoiseReduction,
    TurnDetection,
};
use crate::ws::{self, event_type, str_field, Incoming};

/// The largest transcription response read (16 MiB; a transcript is far smaller).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Default transcription model: `gpt-transcribe`, OpenAI's named successor of
/// `gpt-4o-transcribe` (which shuts down on 2027-02-26; see `docs/providers.md`). The
/// reference's default was `gpt-4o-transcribe`.
pub const DEFAULT_STT_MODEL: &str = "gpt-transcribe";

/// Options of an [`Stt`]. `Default` gives the documented defaults.
#[derive(Clone, PartialEq)]
pub struct SttOptions {
    /// Model: `gpt-transcribe` (default; recorded audio and committed turns),
    /// `gpt-live-transcribe` (continuous live transcription with `use_realtime`), or the
    /// retiring `gpt-4o-transcribe`, `gpt-4o-mini-transcribe` and `whisper-1`.
    pub model: String,
    /// Language of the audio. Default `en`. Sent as its ISO-639-1 code (`en-US` → `en`),
    /// as `languages: [code]` to `gpt-transcribe`/`gpt-live-transcribe` and as `language` to
    /// the older models.
    pub language: Option<String>,
    /// Let the model detect the language (the language is then not sent).
    pub detect_language: bool,
    /// Prompt guiding the transcription (vocabulary, spelling, style).
    pub prompt: Option<String>,
    /// Offer streaming recognition over a realtime transcription session. Default `false`:
    /// sessions then use the core stream adapter (VAD + one request per utterance), as the
    /// reference does for these models.
    pub use_realtime: bool,
    /// Turn detection of the realtime transcription session (`None` commits only on flush).
    /// Default: server VAD, threshold 0.5, 600 ms prefix padding, 350 ms silence. Never sent
    /// to `gpt-live-transcribe`, which has no server turn detection (turns are committed on
    /// flush).
    pub turn_detection: Option<TurnDetection>,
    /// Input noise reduction of the realtime transcription session.
    pub noise_reduction: Option<NoiseReduction>,
    /// API key; `None` reads `OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// API root; `None` reads `OPENAI_BASE_URL`, else `https://api.openai.com/v1`.
    pub base_url: Option<String>,
}

impl Default for SttOptions {
    fn default() -> Self {
        Self {
            model: DEFAULT_STT_MODEL.to_string(),
            language: Some("en".to_string()),
            detect_language: false,
            prompt: None,
            use_realtime: false,
            turn_detection: Some(TurnDetection::transcription_default()),
            noise_reduction: None,
            api_key: None,
            base_url: None,
        }
    }
}

impl std::fmt::Debug for SttOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SttOptions")
            .field("model", &self.model)
            .field("language", &self.language)
            .field("detect_language", &self.detect_language)
            .field("prompt", &self.prompt)
            .field("use_realtime", &self.use_realtime)
            .field("turn_detection", &self.turn_detection)
            .field("noise_reduction", &self.noise_reduction)
            .field("api_key", &redacted(&self.api_key))
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// OpenAI speech-to-text.
///
/// ```no_run
/// use livekit_plugins_openai::{Stt, SttOptions};
///
/// let stt = Stt::new(SttOptions { model: "whisper-1".into(), ..Default::default() })?;
/// # Ok::<(), livekit_plugins_openai::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Stt {
    opts: SttOptions,
    endpoint: Endpoint,
    http: reqwest::Client,
    /// Keyterms the agent session manages (`stt_context_options.keyterms`), sent as
    /// `keywords` to the models that take them.
    session_keywords: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Stt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stt")
            .field("base_url", &self.endpoint.base_url.as_str())
            .field("options", &self.opts)
            .finish()
    }
}

impl Stt {
    /// An OpenAI STT (key from the options or `OPENAI_API_KEY`).
    pub fn new(options: SttOptions) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::openai(
            options.api_key.as_deref(),
            options.base_url.as_deref(),
            "OpenAI",
        )?;
        Ok(Self {
            opts: SttOptions {
                api_key: None,
                ..options
            },
            endpoint,
            http: http_client(),
            session_keywords: Default::default(),
        })
    }

    /// The session keyterms, for models that take `keywords` (none for others).
    fn keywords(&self) -> Vec<String> {
        if !takes_language_list(&self.opts.model) {
            return Vec::new();
        }
        self.session_keywords
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Azure OpenAI transcription: `{azure_endpoint}/openai/deployments/{deployment}/audio/
    /// transcriptions?api-version=…`. The reference's Azure default model is
    /// `gpt-4o-mini-transcribe`; pass it in `options.model` (the deployment defaults to the
    /// model name). Streaming (`use_realtime`) is not offered for Azure.
    pub fn with_azure(azure: AzureConnection, options: SttOptions) -> Result<Self, ConfigError> {
        let endpoint = azure.endpoint(&options.model)?;
        Ok(Self {
            opts: SttOptions {
                api_key: None,
                base_url: None,
                use_realtime: false,
                ..options
            },
            endpoint,
            http: http_client(),
            session_keywords: Default::default(),
        })
    }

    /// Sends requests to another API root.
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.endpoint.base_url = parse_base_url(base_url)?;
        Ok(self)
    }

    /// The options (without the API key).
    pub fn options(&self) -> &SttOptions {
        &self.opts
    }

    /// The ISO-639-1 code of the language to send (`None` when detecting the language).
    fn language(&self, requested: Option<&str>) -> Option<String> {
        if self.opts.detect_language {
            return None;
        }
        requested
            .or(self.opts.language.as_deref())
            .filter(|l| !l.is_empty())
            .and_then(iso_639_1)
    }
}

/// The language a transcription response reports: `language` (older models) or the first of
/// `languages: [{"code": …}]` (`gpt-transcribe`; may be empty).
fn detected_language(value: &Value) -> Option<String> {
    value
        .get("language")
        .and_then(|l| l.as_str())
        .or_else(|| {
            value
                .get("languages")?
                .as_array()?
                .first()?
                .get("code")?
                .as_str()
        })
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

/// A `multipart/form-data` body (the workspace's reqwest has no multipart feature, and the
/// format is small enough to write out).
struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    fn new() -> Self {
        Self {
            boundary: format!("lk-{}", uuid::Uuid::new_v4().simple()),
            body: Vec::new(),
        }
    }

    fn text(&mut self, name: &str, value: &str) {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
    }

    fn file(&mut self, name: &str, filename: &str, mime: &str, data: &[u8]) {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
    }

    fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

#[async_trait]
impl core_stt::Stt for Stt {
    fn label(&self) -> String {
        "openai.STT".to_string()
    }

    fn model(&self) -> String {
        self.opts.model.clone()
    }

    fn provider(&self) -> String {
        "openai".to_string()
    }

    /// `gpt-transcribe` and `gpt-live-transcribe` take keyterms (as `keywords`), as in the
    /// reference.
    fn supports_keyterms(&self) -> bool {
        takes_language_list(&self.opts.model)
    }

    /// Used by requests and realtime sessions opened from now on (an open realtime session
    /// keeps the keywords it started with).
    fn update_session_keyterms(&self, keyterms: &[String]) {
        *self
            .session_keywords
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keyterms.to_vec();
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            streaming: self.opts.use_realtime,
            interim_results: self.opts.use_realtime,
            diarization: false,
            aligned_transcript: None,
            offline_recognize: true,
        }
    }

    async fn recognize_once(
        &self,
        frames: &[AudioFrame],
        language: Option<&str>,
        conn: &ApiConnectOptions,
    ) -> Result<SpeechEvent, ApiError> {
        let wav = encode_wav(frames)
            .map_err(|e| ApiError::other(format!("cannot encode audio as WAV: {e}")))?;
        let duration: f64 = frames.iter().map(AudioFrame::duration_secs).sum();
        let language = self.language(language);
        let mut form = Multipart::new();
        form.file("file", "audio.wav", "audio/wav", &wav);
        form.text("model", &self.opts.model);
        form.text("response_format", "json");
        if let Some(lang) = language.as_deref() {
            if takes_language_list(&self.opts.model) {
                // The multipart form of a list (as OpenAI's SDKs send arrays).
                form.text("languages[]", lang);
            } else {
                form.text("language", lang);
            }
        }
        if let Some(prompt) = self.opts.prompt.as_deref().filter(|p| !p.is_empty()) {
            form.text("prompt", prompt);
        }
        for keyword in self.keywords() {
            form.text("keywords[]", &keyword);
        }
        let (content_type, body) = form.finish();
        let provider = self.endpoint.provider.as_str();
        let request = self
            .endpoint
            .post(&self.http, "audio/transcriptions")?
            .header(http::header::CONTENT_TYPE, content_type)
            .timeout(conn.timeout)
            .body(body);
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(provider, &e, conn.timeout))?;
        if !response.status().is_success() {
            return Err(error_from_response(provider, response).await);
        }
        let rid = request_id(response.headers()).unwrap_or_default();
        // A transcription is small: a body past the cap is not one.
        let text = livekit_agents::plugin_support::read_body_limited(
            provider,
            response,
            MAX_RESPONSE_BYTES,
            conn.timeout.max(std::time::Duration::from_secs(30)),
        )
        .await?;
        let value: Value = serde_json::from_slice(&text)
            .map_err(|e| ApiError::protocol(format!("malformed transcription response ({e})")))?;
        let transcript = value
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or_else(|| ApiError::protocol("transcription response without `text`"))?;
        let mut event = SpeechEvent::transcript(
            SpeechEventType::FinalTranscript,
            SpeechData {
                language: detected_language(&value).or(language).unwrap_or_default(),
                text: transcript.trim().to_string(),
                confidence: 0.0,
                start_time: 0.0,
                end_time: duration,
                words: Vec::new(),
                speaker_id: None,
            },
        );
        event.request_id = rid;
        Ok(event)
    }

    fn stream(
        &self,
        language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        if !self.opts.use_realtime {
            return Err(ApiError::other(
                "openai.STT streams only with `use_realtime: true`; otherwise wrap it in stt::StreamAdapter with a VAD"
            ));
        }
        let task = TranscriptionTask {
            endpoint: self.endpoint.clone(),
            session: self.transcription_session(language.as_deref()),
            language: self.language(language.as_deref()),
            conn,
        };
        Ok(SpeechStream::spawn("openai.STT", conn, task))
    }
}

impl Stt {
    /// The `session.update` that configures a realtime transcription session.
    fn transcription_session(&self, language: Option<&str>) -> Value {
        let mut transcription = json!({"model": self.opts.model});
        if let Some(lang) = self.language(language) {
            if takes_language_list(&self.opts.model) {
                transcription["languages"] = json!([lang]);
            } else {
                transcription["language"] = json!(lang);
            }
        }
        let turn_detection = if rejects_turn_detection(&self.opts.model) {
            Value::Null
        } else {
            self.opts
                .turn_detection
                .as_ref()
                .map_or(Value::Null, TurnDetection::for_transcription)
        };
        if let Some(prompt) = self.opts.prompt.as_deref().filter(|p| !p.is_empty()) {
            transcription["prompt"] = json!(prompt);
        }
        let keywords = self.keywords();
        if !keywords.is_empty() {
            transcription["keywords"] = json!(keywords);
        }
        let mut input = json!({
            "format": pcm_format(),
            "transcription": transcription,
            "turn_detection": turn_detection,
        });
        if let Some(nr) = self.opts.noise_reduction {
            input["noise_reduction"] = nr.to_json();
        }
        json!({
            "type": "session.update",
            "session": {"type": "transcription", "audio": {"input": input}},
        })
    }
}

/// Audio is appended in 50 ms chunks (the reference's size for transcription).
const TRANSCRIPTION_CHUNK_MS: u32 = 50;

/// One connection of a realtime transcription stream.
struct TranscriptionTask {
    endpoint: Endpoint,
    session: Value,
    language: Option<String>,
    conn: ApiConnectOptions,
}

/// Per-connection state.
#[derive(Default)]
struct TranscriptionState {
    /// Accumulated interim text per item.
    partial: HashMap<String, String>,
    /// Items committed whose transcript has not arrived yet.
    pending: HashSet<String>,
    /// A start of speech was emitted and its end not yet.
    speech_open: bool,
    /// Audio was appended since the last commit.
    uncommitted: bool,
    /// Commits sent whose `committed` (or "empty buffer") answer has not come back. Answers
    /// arrive in order; a commit made by server VAD may be counted against ours, which can
    /// only end the drain early, never hang it.
    commits_in_flight: u32,
    /// Stream time (s) of this connection's first audio.
    offset: f64,
    /// Stream times of the current speech segment.
    speech_start: f64,
    speech_end: f64,
}

#[async_trait]
impl SttStreamTask for TranscriptionTask {
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        let url = self.endpoint.url("realtime", true);
        let mut url = url;
        url.query_pairs_mut().append_pair("intent", "transcription");
        let mut socket = ws::connect(&self.endpoint, &url, self.conn.timeout).await?;
        ws::send_json(&mut socket, &self.session).await?;

        let mut audio = RealtimeAudioInput::new(TRANSCRIPTION_CHUNK_MS);
        let mut st = TranscriptionState {
            offset: input.consumed_secs(),
            ..Default::default()
        };
        let mut input_done = false;
        // After the input ends: wait this long for the last transcripts.
        let mut drain_deadline: Option<Instant> = None;
        let provider = self.endpoint.provider.clone();

        loop {
            let deadline = drain_deadline;
            tokio::select! {
                item = input.recv(), if !input_done => match item {
                    Some(SttInput::Frame(frame)) => {
                        for chunk in audio.push(&frame) {
                            append(&mut socket, &chunk).await?;
                            st.uncommitted = true;
                        }
                    }
                    Some(SttInput::Flush) => {
                        if let Some(rest) = audio.flush(false) {
                            append(&mut socket, &rest).await?;
                            st.uncommitted = true;
                        }
                        if st.uncommitted {
                            ws::send_json(&mut socket, &json!({"type": "input_audio_buffer.commit"})).await?;
                            st.uncommitted = false;
                            st.commits_in_flight += 1;
                        }
                    }
                    None => {
                        // Commit what the server has not committed yet so it is transcribed,
                        // then wait for the outstanding transcripts.
                        input_done = true;
                        if let Some(rest) = audio.flush(true) {
                            append(&mut socket, &rest).await?;
                            st.uncommitted = true;
                        }
                        if st.uncommitted {
                            ws::send_json(&mut socket, &json!({"type": "input_audio_buffer.commit"})).await?;
                            st.uncommitted = false;
                            st.commits_in_flight += 1;
                        }
                        if st.is_drained() {
                            let _ = socket.close(None).await;
                            return Ok(());
                        }
                        drain_deadline = Some(Instant::now() + self.conn.timeout);
                    }
                },
                incoming = ws::next_event(&mut socket) => {
                    match incoming? {
                        Incoming::Event(ev) => {
                            if !self.on_event(&ev, &mut st, events, &provider).await? {
                                return Ok(());
                            }
                            if input_done && st.is_drained() {
                                let _ = socket.close(None).await;
                                return Ok(());
                            }
                        }
                        Incoming::Closed(reason) => {
                            if input_done && st.is_drained() {
                                return Ok(());
                            }
                            return Err(ApiError::connection(format!(
                                "{provider} closed the transcription session{}",
                                reason.map(|r| format!(" ({r})")).unwrap_or_default()
                            )));
                        }
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    tracing::warn!(pending = st.pending.len(), "transcripts still pending at the end of input; closing");
                    let _ = socket.close(None).await;
                    return Ok(());
                }
            }
        }
    }
}

impl TranscriptionState {
    /// Nothing more will be transcribed.
    fn is_drained(&self) -> bool {
        self.commits_in_flight == 0 && self.pending.is_empty()
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures::future::pending().await,
    }
}

async fn append(socket: &mut ws::WsStream, samples: &[i16]) -> Result<(), ApiError> {
    ws::send_json(
        socket,
        &json!({"type": "input_audio_buffer.append", "audio": samples_to_base64(samples)}),
    )
    .await
}

impl TranscriptionTask {
    /// Handles one server event; `false` when the consumer is gone.
    async fn on_event(
        &self,
        ev: &Value,
        st: &mut TranscriptionState,
        events: &SpeechEventSender,
        provider: &str,
    ) -> Result<bool, ApiError> {
        let ms = |key: &str| ev.get(key).and_then(|v| v.as_f64()).map(|v| v / 1000.0);
        let data = |text: String, st: &TranscriptionState| SpeechData {
            language: self.language.clone().unwrap_or_default(),
            text,
            confidence: 0.0,
            start_time: st.speech_start,
            end_time: st.speech_end.max(st.speech_start),
            words: Vec::new(),
            speaker_id: None,
        };
        match event_type(ev) {
            "input_audio_buffer.speech_started" => {
                st.speech_start = st.offset + ms("audio_start_ms").unwrap_or(0.0);
                st.speech_end = st.speech_start;
                if !st.speech_open {
                    st.speech_open = true;
                    return Ok(events
                        .send(SpeechEvent::new(SpeechEventType::StartOfSpeech))
                        .await);
                }
            }
            "input_audio_buffer.speech_stopped" => {
                if let Some(end) = ms("audio_end_ms") {
                    st.speech_end = st.offset + end;
                }
                if st.speech_open {
                    st.speech_open = false;
                    return Ok(events
                        .send(SpeechEvent::new(SpeechEventType::EndOfSpeech))
                        .await);
                }
            }
            "input_audio_buffer.committed" => {
                // Audio appended after the committed point stays `uncommitted`: with server VAD
                // the final commit may then be empty, which the server answers with an error
                // handled below.
                st.commits_in_flight = st.commits_in_flight.saturating_sub(1);
                st.pending.insert(str_field(ev, "item_id").to_string());
            }
            "conversation.item.input_audio_transcription.delta" => {
                let item = str_field(ev, "item_id").to_string();
                let text = st.partial.entry(item).or_default();
                text.push_str(str_field(ev, "delta"));
                let text = text.trim().to_string();
                if !text.is_empty() {
                    return Ok(events
                        .send(SpeechEvent::transcript(
                            SpeechEventType::InterimTranscript,
                            data(text, st),
                        ))
                        .await);
                }
            }
            "conversation.item.input_audio_transcription.completed" => {
                let item = str_field(ev, "item_id");
                st.partial.remove(item);
                st.pending.remove(item);
                let text = str_field(ev, "transcript").trim().to_string();
                if !text.is_empty() {
                    return Ok(events
                        .send(SpeechEvent::transcript(
                            SpeechEventType::FinalTranscript,
                            data(text, st),
                        ))
                        .await);
                }
            }
            "conversation.item.input_audio_transcription.failed" => {
                let item = str_field(ev, "item_id");
                st.partial.remove(item);
                st.pending.remove(item);
                tracing::warn!(error = %ev.get("error").cloned().unwrap_or_default(), "transcription of a turn failed");
            }
            "error" => {
                let code = ev
                    .get("error")
                    .map(|e| str_field(e, "code"))
                    .unwrap_or_default();
                if code == "input_audio_buffer_commit_empty" {
                    st.commits_in_flight = st.commits_in_flight.saturating_sub(1);
                    tracing::debug!("commit of an empty audio buffer ignored");
                } else {
                    return Err(ws::server_error(provider, ev));
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stt(opts: SttOptions) -> Stt {
        Stt::new(SttOptions {
            api_key: Some("sk-x".into()),
            base_url: Some("http://127.0.0.1:9/v1".into()),
            ..opts
        })
        .unwrap()
    }

    #[test]
    fn defaults_match_the_docs() {
        let o = SttOptions::default();
        assert_eq!(o.model, "gpt-transcribe");
        assert_eq!(o.language.as_deref(), Some("en"));
        assert!(!format!("{:?}", stt(o)).contains("sk-x"));
    }

    #[test]
    fn session_keyterms_reach_the_models_that_take_keywords() {
        use livekit_agents::stt::Stt as _;
        let s = stt(SttOptions::default());
        assert!(s.supports_keyterms());
        s.update_session_keyterms(&["LiveKit".into(), "Acme".into()]);
        let update = s.transcription_session(None);
        assert_eq!(
            update["session"]["audio"]["input"]["transcription"]["keywords"],
            json!(["LiveKit", "Acme"])
        );
        let old = stt(SttOptions {
            model: "gpt-4o-transcribe".into(),
            ..Default::default()
        });
        assert!(!old.supports_keyterms());
        old.update_session_keyterms(&["LiveKit".into()]);
        assert!(
            old.transcription_session(None)["session"]["audio"]["input"]["transcription"]
                .get("keywords")
                .is_none()
        );
    }

    #[test]
    fn transcription_session_update() {
        let s = stt(SttOptions {
            model: "gpt-4o-transcribe".into(),
            prompt: Some("LiveKit".into()),
            noise_reduction: Some(NoiseReduction::NearField),
            ..Default::default()
        });
        assert_eq!(
            s.transcription_session(Some("fr-FR")),
            json!({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "fr", "prompt": "LiveKit"},
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 600, "silence_duration_ms": 350},
                "noise_reduction": {"type": "near_field"},
            }}}})
        );
        let detect = stt(SttOptions {
            detect_language: true,
            turn_detection: None,
            ..Default::default()
        });
        let v = detect.transcription_session(Some("fr"));
        assert!(v["session"]["audio"]["input"]["transcription"]
            .get("language")
            .is_none());
        assert_eq!(
            v["session"]["audio"]["input"]["turn_detection"],
            Value::Null
        );
    }

    #[test]
    fn the_successor_models_get_a_language_list_and_live_gets_no_turn_detection() {
        let s = stt(SttOptions {
            model: "gpt-live-transcribe".into(),
            language: Some("en-GB".into()),
            ..Default::default()
        });
        let v = s.transcription_session(None);
        let input = &v["session"]["audio"]["input"];
        assert_eq!(
            input["transcription"],
            json!({"model": "gpt-live-transcribe", "languages": ["en"]})
        );
        assert_eq!(
            input["turn_detection"],
            Value::Null,
            "gpt-live-transcribe supports no server turn detection"
        );
        let s = stt(SttOptions::default());
        let v = s.transcription_session(Some("de-AT"));
        let input = &v["session"]["audio"]["input"];
        assert_eq!(
            input["transcription"],
            json!({"model": "gpt-transcribe", "languages": ["de"]})
        );
        assert_eq!(input["turn_detection"]["type"], "server_vad");
        assert_eq!(
            detected_language(&json!({"text": "x", "languages": [{"code": "fr"}]})).as_deref(),
            Some("fr")
        );
        assert_eq!(
            detected_language(&json!({"text": "x", "languages": []})),
            None
        );
    }
}
