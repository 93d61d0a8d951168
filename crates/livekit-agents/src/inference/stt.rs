//! LiveKit Inference STT: the gateway's `/stt` WebSocket.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::{Descriptor, Gateway, GatewayOptions, InferenceError};
use crate::audio::resample::Resampler;
use crate::audio::AudioFrame;
use crate::plugin_support::{to_le_bytes, Chunker, Incoming, Provider, WsStream};
use crate::stt::{
    RecognitionUsage, SpeechData, SpeechEvent, SpeechEventSender, SpeechEventType, SpeechStream,
    SttCapabilities, SttInput, SttInputReceiver, SttStreamTask,
};
use crate::types::{ApiConnectOptions, ApiError, TimedString};

const GATEWAY: Provider = Provider::new("LiveKit Inference STT", "x-livekit-request-id");
/// After the input ended: at most this long for the last transcripts (reference 30 s) ...
const FINALIZATION_TIMEOUT: Duration = Duration::from_secs(30);
/// ... and this long after the last final transcript (reference 3 s).
const FINAL_INACTIVITY: Duration = Duration::from_secs(3);

/// A fallback model the gateway switches to when the primary model fails (LiveKit
/// Inference's server-side fallback; the reference's `FallbackModel`).
#[derive(Debug, Clone, PartialEq)]
pub struct SttFallbackModel {
    /// `provider/model`, e.g. `assemblyai/universal-streaming`.
    pub model: String,
    /// Provider options for this model (`extra`; sent as `null` when empty, as the reference
    /// does).
    pub extra: Map<String, Value>,
}

impl SttFallbackModel {
    /// A fallback from a descriptor `provider/model[:language]` (the language is dropped, as
    /// the reference does: the gateway uses the session's).
    pub fn from_descriptor(descriptor: &str) -> Result<Self, InferenceError> {
        let d = Descriptor::stt(descriptor)?;
        Ok(Self {
            model: d.model,
            extra: Map::new(),
        })
    }
}

/// The `extra` key a model takes key terms under, or `None` for models without keyterm
/// prompting (as the reference maps them): Deepgram `keyterm`, AssemblyAI `keyterms_prompt`,
/// Speechmatics `additional_vocab` (as `[{"content": term}]`), OpenAI `keywords`.
pub fn keyterms_key(model: &str) -> Option<&'static str> {
    let provider = model.split('/').next().unwrap_or_default();
    match provider {
        "speechmatics" if model.contains('/') => Some("additional_vocab"),
        "deepgram" if model.contains('/') => Some("keyterm"),
        "assemblyai" if model.contains('/') => Some("keyterms_prompt"),
        "openai" => Some("keywords"),
        _ => None,
    }
}

/// The model's keyterm `extra` entry: the user's own terms under that key in `extra` (a bare
/// string counts as one term) followed by `keyterms`, without duplicates. `None` for a model
/// without keyterm prompting or when there is nothing to send.
fn keyterms_entry(
    model: &str,
    extra: &Map<String, Value>,
    keyterms: &[String],
) -> Option<(String, Value)> {
    let key = keyterms_key(model)?;
    let existing = extra.get(key);
    if key == "additional_vocab" {
        let mut entries: Vec<Value> = existing
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for term in keyterms {
            if !entries.iter().any(|e| e["content"].as_str() == Some(term)) {
                entries.push(json!({"content": term}));
            }
        }
        return (!entries.is_empty()).then(|| (key.to_string(), Value::Array(entries)));
    }
    let mut terms: Vec<String> = match existing {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    for term in keyterms {
        if !terms.contains(term) {
            terms.push(term.clone());
        }
    }
    (!terms.is_empty()).then(|| (key.to_string(), json!(terms)))
}

/// Options of [`Stt`].
#[derive(Debug, Clone)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct SttOptions {
    /// `provider/model` or `auto`.
    pub model: String,
    /// Language code (`en`, `multi`, ...); `None` lets the model decide.
    pub language: Option<String>,
    /// Sample rate sent to the gateway (default 16000; OpenAI models need 24000, which is
    /// chosen automatically for `openai/...`).
    pub sample_rate: u32,
    /// Provider options (`settings.extra`).
    pub extra: Map<String, Value>,
    /// Key terms to boost (product names, jargon), sent in `settings.extra` under the model's
    /// key ([`keyterms_key`]); ignored with a warning for models without keyterm prompting.
    /// Change them on a running STT with [`Stt::update_keyterms`].
    pub keyterms: Vec<String>,
    /// Models the gateway falls back to, in order, when the primary model fails.
    pub fallback: Vec<SttFallbackModel>,
    /// Gateway URL and credentials.
    pub gateway: GatewayOptions,
}

impl SttOptions {
    /// Options for `model` with everything else default.
    pub fn new(model: impl Into<String>) -> Self {
        let model = model.into();
        let sample_rate = if model == "openai" || model.starts_with("openai/") {
            24_000
        } else {
            16_000
        };
        Self {
            model,
            language: None,
            sample_rate,
            extra: Map::new(),
            keyterms: Vec::new(),
            fallback: Vec::new(),
            gateway: GatewayOptions::default(),
        }
    }
}

/// A LiveKit Inference streaming STT.
pub struct Stt {
    opts: SttOptions,
    gateway: Gateway,
    /// The current key terms, watched by every open stream.
    keyterms: tokio::sync::watch::Sender<Vec<String>>,
}

impl std::fmt::Debug for Stt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("inference::Stt")
            .field("model", &self.opts.model)
            .field("language", &self.opts.language)
            .finish_non_exhaustive()
    }
}

impl Stt {
    /// An STT with these options (credentials resolved now).
    pub fn new(opts: SttOptions) -> Result<Self, InferenceError> {
        Descriptor::stt(&opts.model)?;
        for f in &opts.fallback {
            Descriptor::stt(&f.model)?;
        }
        if !opts.keyterms.is_empty() && keyterms_key(&opts.model).is_none() {
            tracing::warn!(model = %opts.model, "this LiveKit Inference STT model has no keyterm prompting; keyterms are ignored");
        }
        let gateway = Gateway::resolve(&opts.gateway)?;
        let (keyterms, _) = tokio::sync::watch::channel(opts.keyterms.clone());
        Ok(Self {
            opts,
            gateway,
            keyterms,
        })
    }

    /// Replaces the key terms (as the reference's session keyterms): streams opened later send
    /// them in `session.create`; open streams send them in a `session.update`, at once when
    /// the user is silent, else at the end of the current speech (the gateway may reconnect
    /// upstream on a change).
    pub fn update_keyterms(&self, keyterms: Vec<String>) {
        if keyterms_key(&self.opts.model).is_none() {
            tracing::warn!(model = %self.opts.model, "this LiveKit Inference STT model has no keyterm prompting; keyterms are ignored");
            return;
        }
        self.keyterms.send_replace(keyterms);
    }

    /// An STT from a descriptor (`deepgram/nova-3:multi`), credentials from the environment.
    pub fn from_descriptor(descriptor: &str) -> Result<Self, InferenceError> {
        let d = Descriptor::stt(descriptor)?;
        let mut opts = SttOptions::new(d.model);
        opts.language = d.suffix;
        Self::new(opts)
    }
}

#[async_trait]
impl crate::stt::Stt for Stt {
    fn label(&self) -> String {
        "livekit.inference.STT".into()
    }
    fn model(&self) -> String {
        self.opts.model.clone()
    }
    fn provider(&self) -> String {
        "livekit".into()
    }
    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            streaming: true,
            interim_results: true,
            ..Default::default()
        }
    }
    fn stream(
        &self,
        language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        let mut opts = self.opts.clone();
        if language.is_some() {
            opts.language = language;
        }
        let task = SttTask {
            opts,
            gateway: self.gateway.clone(),
            keyterms: self.keyterms.subscribe(),
            conn,
        };
        Ok(SpeechStream::spawn(self.label(), conn, task))
    }
}

struct SttTask {
    opts: SttOptions,
    gateway: Gateway,
    keyterms: tokio::sync::watch::Receiver<Vec<String>>,
    conn: ApiConnectOptions,
}

/// The `session.create` message.
pub(crate) fn session_create(opts: &SttOptions, conn: &ApiConnectOptions) -> Value {
    let mut msg = json!({
        "type": "session.create",
        "settings": {
            "sample_rate": opts.sample_rate.to_string(),
            "encoding": "pcm_s16le",
            "extra": opts.extra,
        },
        "connection": {"timeout": conn.timeout.as_secs_f64(), "retries": conn.max_retry},
    });
    if opts.model != "auto" {
        msg["model"] = json!(opts.model);
    }
    if let Some(lang) = &opts.language {
        msg["settings"]["language"] = json!(lang);
    }
    if let Some((key, terms)) = keyterms_entry(&opts.model, &opts.extra, &opts.keyterms) {
        msg["settings"]["extra"][key] = terms;
    }
    if !opts.fallback.is_empty() {
        let models: Vec<Value> = opts
            .fallback
            .iter()
            .map(|f| {
                let extra = if f.extra.is_empty() {
                    Value::Null
                } else {
                    Value::Object(f.extra.clone())
                };
                json!({"model": f.model, "extra": extra})
            })
            .collect();
        msg["fallback"] = json!({"models": models});
    }
    msg
}

/// Mono (channels averaged) at the target rate.
struct Conditioner {
    rate: u32,
    resampler: Option<Resampler>,
}

impl Conditioner {
    fn process(&mut self, frame: &AudioFrame) -> Vec<i16> {
        let channels = frame.num_channels.max(1) as usize;
        let mono: Vec<i16> = if channels == 1 {
            frame.data.clone()
        } else {
            frame
                .data
                .chunks(channels)
                .map(|c| (c.iter().map(|&s| s as i32).sum::<i32>() / channels as i32) as i16)
                .collect()
        };
        if frame.sample_rate == self.rate {
            return mono;
        }
        let Ok(mono) = AudioFrame::new(mono, frame.sample_rate, 1) else {
            return Vec::new();
        };
        let resampler = match &mut self.resampler {
            Some(r) if r.input_rate() == frame.sample_rate => r,
            slot => match Resampler::new(frame.sample_rate, self.rate, 1) {
                Ok(r) => slot.insert(r),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot resample audio for LiveKit Inference STT");
                    return Vec::new();
                }
            },
        };
        resampler
            .push(&mono)
            .map(|frames| frames.into_iter().flat_map(|f| f.data).collect())
            .unwrap_or_default()
    }
}

struct Session<'a> {
    opts: &'a SttOptions,
    events: &'a SpeechEventSender,
    offset: f64,
    speaking: bool,
    speech_secs: f64,
    request_id: String,
}

/// What the session loop does after a server message.
enum Step {
    Continue,
    Final,
    Closed,
    Stop,
}

impl Session<'_> {
    fn speech_data(&self, data: &Value) -> SpeechData {
        let f = |v: &Value| v.as_f64().filter(|x| x.is_finite()).unwrap_or(0.0);
        let start = f(&data["start"]);
        SpeechData {
            language: data["language"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| self.opts.language.clone())
                .unwrap_or_else(|| "en".into()),
            text: data["transcript"].as_str().unwrap_or_default().to_owned(),
            confidence: data["confidence"].as_f64().unwrap_or(1.0) as f32,
            start_time: self.offset + start,
            end_time: self.offset + start + f(&data["duration"]),
            words: data["words"]
                .as_array()
                .map(|ws| {
                    ws.iter()
                        .map(|w| TimedString {
                            text: w["word"].as_str().unwrap_or_default().to_owned(),
                            start_time: self.offset + f(&w["start"]),
                            end_time: self.offset + f(&w["end"]),
                            confidence: w["confidence"].as_f64().map(|c| c as f32),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            speaker_id: data["speaker_id"].as_str().map(str::to_owned),
        }
    }

    async fn emit(&self, kind: SpeechEventType, data: Option<SpeechData>) -> bool {
        let mut ev = SpeechEvent::new(kind);
        ev.request_id.clone_from(&self.request_id);
        if let Some(d) = data {
            ev.alternatives.push(d);
        }
        self.events.send(ev).await
    }

    async fn start_of_speech(&mut self) -> bool {
        if self.speaking {
            return true;
        }
        self.speaking = true;
        self.emit(SpeechEventType::StartOfSpeech, None).await
    }

    async fn handle(&mut self, text: &str, input_ended: bool) -> Result<Step, ApiError> {
        let data: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a malformed LiveKit Inference STT message");
                return Ok(Step::Continue);
            }
        };
        if let Some(id) = data["request_id"].as_str() {
            self.request_id = id.to_owned();
        }
        let alive = match data["type"].as_str().unwrap_or_default() {
            "start_of_speech" => self.start_of_speech().await,
            "interim_transcript" => {
                let sd = self.speech_data(&data);
                if sd.text.is_empty() {
                    true
                } else {
                    self.start_of_speech().await
                        && self
                            .emit(SpeechEventType::InterimTranscript, Some(sd))
                            .await
                }
            }
            "preflight_transcript" => {
                let sd = self.speech_data(&data);
                if sd.text.is_empty() || !self.speaking {
                    true
                } else {
                    self.emit(SpeechEventType::PreflightTranscript, Some(sd))
                        .await
                }
            }
            "final_transcript" => {
                let sd = self.speech_data(&data);
                let mut ok = self.start_of_speech().await;
                if ok && self.speech_secs > 0.0 {
                    let mut ev = SpeechEvent::new(SpeechEventType::RecognitionUsage);
                    ev.request_id.clone_from(&self.request_id);
                    ev.recognition_usage = Some(RecognitionUsage {
                        audio_duration: self.speech_secs,
                        ..Default::default()
                    });
                    self.speech_secs = 0.0;
                    ok = self.events.send(ev).await;
                }
                ok = ok && self.emit(SpeechEventType::FinalTranscript, Some(sd)).await;
                if ok && self.speaking {
                    self.speaking = false;
                    ok = self.emit(SpeechEventType::EndOfSpeech, None).await;
                }
                if !ok {
                    return Ok(Step::Stop);
                }
                return Ok(Step::Final);
            }
            "session.closed" => {
                if input_ended {
                    return Ok(Step::Closed);
                }
                return Err(ApiError::connection(
                    "LiveKit Inference STT session closed before the input ended",
                ));
            }
            "error" => {
                let code = data["code"].to_string();
                let message = data["message"].as_str().unwrap_or_default();
                return Err(ApiError::Connection {
                    message: format!("LiveKit Inference STT error (code {code}): {message}"),
                    retryable: !input_ended,
                });
            }
            _ => true,
        };
        Ok(if alive { Step::Continue } else { Step::Stop })
    }
}

async fn send_audio(ws: &mut WsStream, samples: &[i16]) -> Result<(), ApiError> {
    let audio = base64::engine::general_purpose::STANDARD.encode(to_le_bytes(samples));
    GATEWAY
        .send_json(ws, &json!({"type": "input_audio", "audio": audio}))
        .await
}

#[async_trait]
impl SttStreamTask for SttTask {
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        self.opts.keyterms = self.keyterms.borrow_and_update().clone();
        let (mut ws, request_id) = self
            .gateway
            .open_session(
                &GATEWAY,
                "stt",
                &self.opts.model,
                &session_create(&self.opts, &self.conn),
                self.conn.timeout,
            )
            .await?;
        // A keyterm change that arrived while the user spoke, sent at the end of speech.
        let mut pending_update: Option<Value> = None;
        let mut keyterms = self.keyterms.clone();
        let rate = self.opts.sample_rate;
        let mut conditioner = Conditioner {
            rate,
            resampler: None,
        };
        let mut chunker = Chunker::new(rate, 1, 50);
        let mut session = Session {
            opts: &self.opts,
            events,
            offset: input.consumed_secs(),
            speaking: false,
            speech_secs: 0.0,
            request_id: request_id.unwrap_or_default(),
        };
        let mut input_ended = false;
        let mut deadline = Instant::now() + FINALIZATION_TIMEOUT;
        loop {
            tokio::select! {
                item = input.recv(), if !input_ended => {
                    match item {
                        Some(SttInput::Frame(frame)) => {
                            chunker.push(&conditioner.process(&frame));
                            while let Some(chunk) = chunker.next_full() {
                                session.speech_secs += chunk.len() as f64 / rate as f64;
                                send_audio(&mut ws, &chunk).await?;
                            }
                        }
                        Some(SttInput::Flush) | None => {
                            if let Some(rest) = chunker.take_rest() {
                                session.speech_secs += rest.len() as f64 / rate as f64;
                                send_audio(&mut ws, &rest).await?;
                            }
                            GATEWAY.send_json(&mut ws, &json!({"type": "session.finalize"})).await?;
                            if item.is_none() {
                                input_ended = true;
                                deadline = Instant::now() + FINALIZATION_TIMEOUT;
                            }
                        }
                    }
                }
                changed = keyterms.changed(), if !input_ended => {
                    if changed.is_err() {
                        // The STT was dropped; the stream keeps its terms.
                        keyterms = tokio::sync::watch::channel(Vec::new()).1;
                        continue;
                    }
                    let terms = keyterms.borrow_and_update().clone();
                    let entry = keyterms_entry(&self.opts.model, &self.opts.extra, &terms)
                        .unwrap_or_else(|| (keyterms_key(&self.opts.model).unwrap_or("keyterm").to_string(), json!([])));
                    let mut extra = Map::new();
                    extra.insert(entry.0, entry.1);
                    let update = json!({"type": "session.update", "settings": {"extra": extra}});
                    if session.speaking {
                        pending_update = Some(update);
                    } else {
                        GATEWAY.send_json(&mut ws, &update).await?;
                    }
                }
                incoming = GATEWAY.next_incoming(&mut ws) => {
                    match incoming? {
                        Incoming::Text(text) => match session.handle(&text, input_ended).await? {
                            Step::Continue => {}
                            Step::Final => {
                                if !session.speaking {
                                    if let Some(update) = pending_update.take() {
                                        GATEWAY.send_json(&mut ws, &update).await?;
                                    }
                                }
                                if input_ended {
                                    deadline = deadline.min(Instant::now() + FINAL_INACTIVITY);
                                }
                            }
                            Step::Closed => return Ok(()),
                            Step::Stop => {
                                let _ = ws.close(None).await;
                                return Ok(());
                            }
                        },
                        Incoming::Binary(_) => {
                            tracing::debug!("ignoring a binary frame from LiveKit Inference STT");
                        }
                        Incoming::Closed(reason) => {
                            if input_ended {
                                return Ok(());
                            }
                            let detail = reason.map(|(c, r)| format!(" (code {c}: {r})")).unwrap_or_default();
                            return Err(ApiError::connection(format!(
                                "LiveKit Inference STT connection closed unexpectedly{detail}"
                            )));
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline), if input_ended => {
                    let _ = GATEWAY.send_json(&mut ws, &json!({"type": "session.close"})).await;
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_create_follows_the_reference() {
        let mut opts = SttOptions::new("deepgram/nova-3");
        opts.language = Some("multi".into());
        let msg = session_create(&opts, &ApiConnectOptions::default());
        assert_eq!(msg["type"], "session.create");
        assert_eq!(msg["model"], "deepgram/nova-3");
        assert_eq!(msg["settings"]["sample_rate"], "16000");
        assert_eq!(msg["settings"]["encoding"], "pcm_s16le");
        assert_eq!(msg["settings"]["language"], "multi");
        assert_eq!(msg["connection"]["retries"], 3);
        let auto = session_create(&SttOptions::new("auto"), &ApiConnectOptions::default());
        assert!(auto.get("model").is_none());
        assert_eq!(
            SttOptions::new("openai/gpt-4o-transcribe").sample_rate,
            24_000
        );
    }

    #[test]
    fn keyterms_go_under_each_providers_key() {
        let terms = vec!["LiveKit".to_string(), "Rust".to_string()];
        let mut extra = Map::new();
        // Speechmatics keeps the user's entries (they may carry `sounds_like`).
        extra.insert(
            "additional_vocab".into(),
            json!([{"content": "Rust", "sounds_like": ["rust"]}]),
        );
        assert_eq!(
            keyterms_entry("speechmatics/enhanced", &extra, &terms),
            Some((
                "additional_vocab".into(),
                json!([{"content": "Rust", "sounds_like": ["rust"]}, {"content": "LiveKit"}])
            ))
        );
        assert_eq!(
            keyterms_entry("assemblyai/universal-streaming", &Map::new(), &terms),
            Some(("keyterms_prompt".into(), json!(["LiveKit", "Rust"])))
        );
        assert_eq!(
            keyterms_entry("openai/gpt-transcribe", &Map::new(), &terms),
            Some(("keywords".into(), json!(["LiveKit", "Rust"])))
        );
        assert_eq!(
            keyterms_entry("cartesia/ink-whisper", &Map::new(), &terms),
            None
        );
        assert_eq!(keyterms_entry("auto", &Map::new(), &terms), None);
        assert_eq!(keyterms_entry("deepgram/nova-3", &Map::new(), &[]), None);
    }

    #[test]
    fn stereo_48k_becomes_mono_16k() {
        let mut c = Conditioner {
            rate: 16_000,
            resampler: None,
        };
        let frame = AudioFrame::new(vec![100i16; 960 * 2], 48_000, 2).unwrap();
        let mut total = 0;
        for _ in 0..10 {
            total += c.process(&frame).len();
        }
        // 10 x 20 ms at 16 kHz = 3200 samples, minus the resampler's latency.
        assert!(total > 2400 && total <= 3200, "{total}");
    }
}
