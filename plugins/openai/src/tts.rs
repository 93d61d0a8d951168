//! Text-to-speech ([`Tts`]) over `POST /audio/speech` with `response_format: "pcm"` (24 kHz
//! mono 16-bit little-endian). The body is streamed: audio is pushed to the emitter as bytes
//! arrive, so playback can start before the whole response is in. The provider takes whole
//! texts, so sessions stream through the core `tts::StreamAdapter` (sentence by sentence).
//!
//! With a realtime model (`gpt-realtime-2.1-mini`, [`REALTIME_TTS_MODEL`](crate::REALTIME_TTS_MODEL)) the same [`Tts`]
//! speaks through the Realtime API instead (see `tts_realtime.rs`): OpenAI shuts the
//! `/audio/speech` models down on 2027-01-06 and names that model as their replacement.

use async_trait::async_trait;
use futures::StreamExt;
use livekit_agents::tts::{
    self as core_tts, AudioEmitter, ChunkedStream, ChunkedTtsTask, TtsCapabilities,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use serde_json::{json, Value};

use crate::client::{
    error_from_response, http_client, parse_base_url, redacted, request_id, transport_error,
    ConfigError, Endpoint,
};
use crate::llm::AzureConnection;
use crate::tts_realtime::{
    is_realtime_speech_model, RealtimeSpeechTask, SpeechPool, MAX_REALTIME_SPEED,
};

/// Default speech model (the LiveKit OpenAI TTS docs). **Deprecated by OpenAI:** it shuts down
/// on 2027-01-06 with `tts-1` and `tts-1-hd`; select [`REALTIME_TTS_MODEL`](crate::REALTIME_TTS_MODEL) to speak through the
/// Realtime API instead (see `docs/providers.md`).
pub const DEFAULT_TTS_MODEL: &str = "gpt-4o-mini-tts";
/// Default voice (the LiveKit OpenAI TTS docs).
pub const DEFAULT_TTS_VOICE: &str = "ash";
/// Output sample rate of `pcm` responses.
pub const TTS_SAMPLE_RATE: u32 = 24_000;

/// Options of a [`Tts`]. `Default` gives the documented defaults.
#[derive(Clone, PartialEq)]
pub struct TtsOptions {
    /// Model: `gpt-4o-mini-tts` (default), `tts-1` or `tts-1-hd` through `/audio/speech`
    /// (all three shut down on 2027-01-06), or a realtime model such as
    /// `gpt-realtime-2.1-mini` ([`REALTIME_TTS_MODEL`](crate::REALTIME_TTS_MODEL), their named successor) through the
    /// Realtime API.
    pub model: String,
    /// Voice, e.g. `ash` (default), `alloy`, `ballad`, `coral`, `echo`, `fable`, `nova`,
    /// `onyx`, `sage`, `shimmer`, `verse`, `marin`, `cedar` (realtime models have no `fable`,
    /// `nova` or `onyx`).
    pub voice: String,
    /// Speaking speed, 0.25 to 4.0 (0.25 to 1.5 for realtime models). Default 1.0.
    pub speed: f32,
    /// How to speak (tone, accent, pacing). Not supported by `tts-1`/`tts-1-hd` (not sent to
    /// them). Default empty.
    pub instructions: Option<String>,
    /// API key; `None` reads `OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// API root; `None` reads `OPENAI_BASE_URL`, else `https://api.openai.com/v1`.
    pub base_url: Option<String>,
}

impl Default for TtsOptions {
    fn default() -> Self {
        Self {
            model: DEFAULT_TTS_MODEL.to_string(),
            voice: DEFAULT_TTS_VOICE.to_string(),
            speed: 1.0,
            instructions: None,
            api_key: None,
            base_url: None,
        }
    }
}

impl std::fmt::Debug for TtsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtsOptions")
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("speed", &self.speed)
            .field("instructions", &self.instructions)
            .field("api_key", &redacted(&self.api_key))
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// OpenAI text-to-speech.
///
/// ```no_run
/// use livekit_plugins_openai::{Tts, TtsOptions};
///
/// let tts = Tts::new(TtsOptions {
///     voice: "coral".into(),
///     instructions: Some("Speak cheerfully.".into()),
///     ..Default::default()
/// })?;
/// # Ok::<(), livekit_plugins_openai::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Tts {
    /// Behind a lock so `update_options` works on shared instances.
    opts: std::sync::Arc<std::sync::RwLock<TtsOptions>>,
    endpoint: Endpoint,
    http: reqwest::Client,
    /// Idle Realtime API connections (realtime models only).
    speech_pool: std::sync::Arc<SpeechPool>,
}

impl std::fmt::Debug for Tts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tts")
            .field("base_url", &self.endpoint.base_url.as_str())
            .field("options", &self.options())
            .finish()
    }
}

impl Tts {
    /// An OpenAI TTS (key from the options or `OPENAI_API_KEY`).
    pub fn new(options: TtsOptions) -> Result<Self, ConfigError> {
        if !(0.25..=4.0).contains(&options.speed) {
            return Err(ConfigError::InvalidOption(format!(
                "speed must be between 0.25 and 4.0, got {}",
                options.speed
            )));
        }
        if is_realtime_speech_model(&options.model) && options.speed > MAX_REALTIME_SPEED {
            return Err(ConfigError::InvalidOption(format!(
                "speed must be between 0.25 and {MAX_REALTIME_SPEED} with the realtime model {}, got {}",
                options.model, options.speed
            )));
        }
        let endpoint = Endpoint::openai(
            options.api_key.as_deref(),
            options.base_url.as_deref(),
            "OpenAI",
        )?;
        Ok(Self {
            opts: std::sync::Arc::new(std::sync::RwLock::new(TtsOptions {
                api_key: None,
                ..options
            })),
            endpoint,
            http: http_client(),
            speech_pool: std::sync::Arc::default(),
        })
    }

    /// Idle Realtime API connections kept for the next texts (realtime models only).
    pub fn idle_connections(&self) -> usize {
        self.speech_pool.len()
    }

    /// Azure OpenAI speech: `{azure_endpoint}/openai/deployments/{deployment}/audio/speech
    /// ?api-version=…` (the deployment defaults to the model name).
    /// Realtime models are not available this way (Azure serves them under another path).
    pub fn with_azure(azure: AzureConnection, options: TtsOptions) -> Result<Self, ConfigError> {
        if is_realtime_speech_model(&options.model) {
            return Err(ConfigError::InvalidOption(format!(
                "{} speaks through the Realtime API, which Tts::with_azure does not support",
                options.model
            )));
        }
        let endpoint = azure.endpoint(&options.model)?;
        let tts = Self::new(TtsOptions {
            api_key: Some("unused".into()),
            base_url: Some(endpoint.base_url.to_string()),
            ..options
        })?;
        Ok(Self { endpoint, ..tts })
    }

    /// Sends requests to another API root.
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.endpoint.base_url = parse_base_url(base_url)?;
        Ok(self)
    }

    /// The current options (without the API key).
    pub fn options(&self) -> TtsOptions {
        self.opts.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// Changes options for the next syntheses (e.g. `instructions` per turn, as the reference's
    /// `update_options`). The key and base URL stay as constructed.
    pub fn update_options(&self, update: impl FnOnce(&mut TtsOptions)) {
        if let Ok(mut o) = self.opts.write() {
            update(&mut o);
            o.api_key = None;
            o.base_url = None;
        }
    }

    /// The request body for `text`.
    pub fn request_body(&self, text: &str) -> Value {
        let o = self.options();
        let mut body = json!({
            "model": o.model,
            "input": text,
            "voice": o.voice,
            "response_format": "pcm",
            "speed": o.speed,
        });
        let legacy = o.model == "tts-1" || o.model == "tts-1-hd";
        if let Some(instr) = o.instructions.filter(|i| !i.is_empty()) {
            if legacy {
                tracing::debug!(model = %o.model, "instructions are not supported by this model; not sent");
            } else {
                body["instructions"] = json!(instr);
            }
        }
        body
    }
}

impl core_tts::Tts for Tts {
    fn label(&self) -> String {
        "openai.TTS".to_string()
    }

    fn model(&self) -> String {
        self.options().model
    }

    fn provider(&self) -> String {
        "openai".to_string()
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: false,
            aligned_transcript: false,
        }
    }

    fn sample_rate(&self) -> u32 {
        TTS_SAMPLE_RATE
    }

    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        let o = self.options();
        if is_realtime_speech_model(&o.model) {
            let speed = if o.speed > MAX_REALTIME_SPEED {
                tracing::warn!(speed = o.speed, model = %o.model, "speed above what realtime models accept; using {MAX_REALTIME_SPEED}");
                MAX_REALTIME_SPEED
            } else {
                o.speed
            };
            let task = RealtimeSpeechTask {
                endpoint: self.endpoint.clone(),
                model: o.model,
                voice: o.voice,
                speed,
                instructions: o.instructions,
                text: text.to_string(),
                conn,
                pool: self.speech_pool.clone(),
            };
            return ChunkedStream::spawn("openai.TTS", conn, TTS_SAMPLE_RATE, 1, task);
        }
        let task = SpeechTask {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            body: self.request_body(text),
            timeout: conn.timeout,
        };
        ChunkedStream::spawn("openai.TTS", conn, TTS_SAMPLE_RATE, 1, task)
    }
}

/// One `POST /audio/speech` attempt.
struct SpeechTask {
    http: reqwest::Client,
    endpoint: Endpoint,
    body: Value,
    timeout: std::time::Duration,
}

#[async_trait]
impl ChunkedTtsTask for SpeechTask {
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
        let provider = self.endpoint.provider.clone();
        let request = self
            .endpoint
            .post(&self.http, "audio/speech")?
            .json(&self.body);
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => return Err(ApiError::Timeout(self.timeout)),
            Ok(Err(e)) => return Err(transport_error(&provider, &e, self.timeout)),
            Ok(Ok(r)) => r,
        };
        if !response.status().is_success() {
            return Err(error_from_response(&provider, response).await);
        }
        if let Some(id) = request_id(response.headers()) {
            emitter.set_request_id(id);
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if content_type.starts_with("application/json") || content_type.starts_with("text/") {
            return Err(ApiError::protocol(format!(
                "{provider} answered {content_type} instead of PCM audio"
            )));
        }
        let mut body = response.bytes_stream();
        loop {
            let next = match tokio::time::timeout(self.timeout, body.next()).await {
                Err(_) => return Err(ApiError::Timeout(self.timeout)),
                Ok(next) => next,
            };
            match next {
                None => return Ok(()),
                Some(Ok(bytes)) => {
                    if !emitter.push_pcm_bytes(&bytes).await {
                        return Ok(());
                    }
                }
                Some(Err(e)) => {
                    return Err(ApiError::connection(format!(
                        "{provider} audio stream interrupted: {e}"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tts(opts: TtsOptions) -> Tts {
        Tts::new(TtsOptions {
            api_key: Some("sk-tts".into()),
            base_url: Some("http://127.0.0.1:9/v1".into()),
            ..opts
        })
        .unwrap()
    }

    #[test]
    fn defaults_and_body() {
        let t = tts(TtsOptions::default());
        assert!(!format!("{t:?}").contains("sk-tts"));
        assert_eq!(
            t.request_body("Hi"),
            json!({"model": "gpt-4o-mini-tts", "input": "Hi", "voice": "ash", "response_format": "pcm", "speed": 1.0})
        );
        t.update_options(|o| o.instructions = Some("whisper".into()));
        assert_eq!(t.request_body("Hi")["instructions"], "whisper");
        t.update_options(|o| o.model = "tts-1".into());
        assert!(t.request_body("Hi").get("instructions").is_none());
        assert!(Tts::new(TtsOptions {
            speed: 5.0,
            api_key: Some("k".into()),
            ..Default::default()
        })
        .is_err());
    }
}
