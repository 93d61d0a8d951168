//! LiveKit Inference TTS: the gateway's `/tts` WebSocket.
//!
//! Connections are pooled per [`Tts`], as the reference does: an utterance takes an idle
//! connection (already past its handshake and `session.create`) when one is open and was last
//! taken less than [`POOL_MAX_AGE`] ago, and gives it back when its audio is complete; a
//! connection that failed is dropped, not reused.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::time::Instant;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::{Descriptor, Gateway, GatewayOptions, InferenceError};
use crate::plugin_support::{Incoming, Provider, WsStream};
use crate::tokenize::TokenStream;
use crate::tokenize::{SentenceStream, SentenceTokenizerOptions};
use crate::tts::{
    AudioEmitter, ChunkedStream, SynthesizeStream, TtsCapabilities, TtsInput, TtsInputReceiver,
    TtsStreamTask,
};
use crate::types::{ApiConnectOptions, ApiError, TimedString};

const GATEWAY: Provider = Provider::new("LiveKit Inference TTS", "x-livekit-request-id");
/// A pooled connection is reused only if it was last taken less than this long ago (the
/// reference's `max_session_duration`, refreshed on each use).
pub const POOL_MAX_AGE: Duration = Duration::from_secs(300);
/// Idle connections kept per [`Tts`] (more are closed when given back).
const POOL_MAX_IDLE: usize = 4;

/// A fallback model the gateway switches to when the primary model fails (LiveKit
/// Inference's server-side fallback; the reference's `FallbackModel`).
#[derive(Debug, Clone, PartialEq)]
pub struct TtsFallbackModel {
    /// `provider/model`, e.g. `inworld/inworld-tts-1`.
    pub model: String,
    /// Voice for this model (empty: the model's default, as the reference sends it).
    pub voice: String,
    /// Provider options for this model (`extra`).
    pub extra: Map<String, Value>,
}

impl TtsFallbackModel {
    /// A fallback from a descriptor `provider/model[:voice]`.
    pub fn from_descriptor(descriptor: &str) -> Result<Self, InferenceError> {
        let d = Descriptor::tts(descriptor)?;
        Ok(Self {
            model: d.model,
            voice: d.suffix.unwrap_or_default(),
            extra: Map::new(),
        })
    }
}

/// Options of [`Tts`].
#[derive(Debug, Clone)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct TtsOptions {
    /// `provider/model`, e.g. `cartesia/sonic-3`.
    pub model: String,
    /// Voice id (provider-specific); `None` uses the model's default.
    pub voice: Option<String>,
    /// Language code.
    pub language: Option<String>,
    /// Output sample rate (default 24000).
    pub sample_rate: u32,
    /// Provider options (`extra`).
    pub extra: Map<String, Value>,
    /// Models the gateway falls back to, in order, when the primary model fails.
    pub fallback: Vec<TtsFallbackModel>,
    /// Gateway URL and credentials.
    pub gateway: GatewayOptions,
}

impl TtsOptions {
    /// Options for `model` with everything else default.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            voice: None,
            language: None,
            sample_rate: 24_000,
            extra: Map::new(),
            fallback: Vec::new(),
            gateway: GatewayOptions::default(),
        }
    }
}

/// A LiveKit Inference streaming TTS.
pub struct Tts {
    opts: TtsOptions,
    gateway: Gateway,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Tts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("inference::Tts")
            .field("model", &self.opts.model)
            .field("voice", &self.opts.voice)
            .finish_non_exhaustive()
    }
}

impl Tts {
    /// A TTS with these options (credentials resolved now).
    pub fn new(opts: TtsOptions) -> Result<Self, InferenceError> {
        Descriptor::tts(&opts.model)?;
        for f in &opts.fallback {
            Descriptor::tts(&f.model)?;
        }
        let gateway = Gateway::resolve(&opts.gateway)?;
        Ok(Self {
            opts,
            gateway,
            pool: Arc::default(),
        })
    }

    /// A TTS from a descriptor (`cartesia/sonic-3:VOICE`), credentials from the environment.
    pub fn from_descriptor(descriptor: &str) -> Result<Self, InferenceError> {
        let d = Descriptor::tts(descriptor)?;
        let mut opts = TtsOptions::new(d.model);
        opts.voice = d.suffix;
        Self::new(opts)
    }

    fn task(&self, conn: &ApiConnectOptions) -> TtsTask {
        TtsTask {
            opts: self.opts.clone(),
            gateway: self.gateway.clone(),
            pool: self.pool.clone(),
            conn: *conn,
        }
    }

    /// Idle pooled connections (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle.lock().len()
    }
}

/// Idle connections of one [`Tts`].
#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<(WsStream, Instant)>>,
}

impl Pool {
    /// The most recently returned connection that is still open and fresh; stale or closed
    /// ones are dropped.
    fn take(&self) -> Option<WsStream> {
        let mut idle = self.idle.lock();
        while let Some((mut ws, taken_at)) = idle.pop() {
            if taken_at.elapsed() >= POOL_MAX_AGE {
                continue;
            }
            // An idle connection has nothing to say: a frame (or its end) means the gateway
            // closed it or it is out of step.
            if futures::StreamExt::next(&mut ws).now_or_never().is_some() {
                tracing::debug!(
                    "dropping a pooled LiveKit Inference TTS connection the gateway closed"
                );
                continue;
            }
            return Some(ws);
        }
        None
    }

    fn put(&self, ws: WsStream, taken_at: Instant) {
        let mut idle = self.idle.lock();
        if idle.len() < POOL_MAX_IDLE {
            idle.push((ws, taken_at));
        }
    }
}

#[async_trait]
impl crate::tts::Tts for Tts {
    fn label(&self) -> String {
        "livekit.inference.TTS".into()
    }
    fn model(&self) -> String {
        self.opts.model.clone()
    }
    fn provider(&self) -> String {
        "livekit".into()
    }
    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            aligned_transcript: false,
        }
    }
    fn sample_rate(&self) -> u32 {
        self.opts.sample_rate
    }
    fn synthesize(&self, text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        // One segment through the streaming protocol (as the reference does).
        let mut stream = SynthesizeStream::spawn(
            self.label(),
            conn,
            self.opts.sample_rate,
            1,
            self.task(&conn),
        );
        stream.push_text(text.to_owned());
        stream.end_input();
        let (tx, rx) = tokio::sync::mpsc::channel(crate::stt::EVENT_BUFFER);
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next_audio().await {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        ChunkedStream::from_channel(rx, Some(task))
    }
    /// Opens one connection ahead of the first utterance and keeps it in the pool.
    async fn prewarm(&self) {
        if !self.pool.idle.lock().is_empty() {
            return;
        }
        let conn = ApiConnectOptions::default();
        let create = session_create(&self.opts, &conn);
        match self
            .gateway
            .open_session(&GATEWAY, "tts", &self.opts.model, &create, conn.timeout)
            .await
        {
            Ok((ws, _)) => self.pool.put(ws, Instant::now()),
            Err(e) => tracing::debug!(error = %e, "prewarming LiveKit Inference TTS failed"),
        }
    }
    fn stream(&self, conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        Ok(SynthesizeStream::spawn(
            self.label(),
            conn,
            self.opts.sample_rate,
            1,
            self.task(&conn),
        ))
    }
}

/// The `session.create` message.
pub(crate) fn session_create(opts: &TtsOptions, conn: &ApiConnectOptions) -> Value {
    let mut msg = json!({
        "type": "session.create",
        "sample_rate": opts.sample_rate.to_string(),
        "encoding": "pcm_s16le",
        "model": opts.model,
        "extra": opts.extra,
        "connection": {"timeout": conn.timeout.as_secs_f64(), "retries": conn.max_retry},
    });
    if let Some(v) = &opts.voice {
        msg["voice"] = json!(v);
    }
    if let Some(l) = &opts.language {
        msg["language"] = json!(l);
    }
    if !opts.fallback.is_empty() {
        let models: Vec<Value> = opts
            .fallback
            .iter()
            .map(|f| json!({"model": f.model, "voice": f.voice, "extra": f.extra}))
            .collect();
        msg["fallback"] = json!({"models": models});
    }
    msg
}

fn transcript_message(opts: &TtsOptions, sentence: &str) -> Value {
    let mut config = json!({"model": opts.model});
    if let Some(v) = &opts.voice {
        config["voice"] = json!(v);
    }
    if let Some(l) = &opts.language {
        config["language"] = json!(l);
    }
    json!({
        "type": "input_transcript",
        "transcript": format!("{sentence} "),
        "generation_config": config,
        "extra": opts.extra,
    })
}

struct TtsTask {
    opts: TtsOptions,
    gateway: Gateway,
    pool: Arc<Pool>,
    conn: ApiConnectOptions,
}

impl TtsTask {
    async fn send_sentences(
        &self,
        ws: &mut WsStream,
        sentences: Vec<String>,
    ) -> Result<(), ApiError> {
        for s in sentences {
            if !s.trim().is_empty() {
                GATEWAY
                    .send_json(ws, &transcript_message(&self.opts, s.trim()))
                    .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TtsStreamTask for TtsTask {
    async fn run(
        &mut self,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError> {
        let taken_at = Instant::now();
        let mut ws = match self.pool.take() {
            Some(ws) => ws,
            None => {
                let (ws, request_id) = self
                    .gateway
                    .open_session(
                        &GATEWAY,
                        "tts",
                        &self.opts.model,
                        &session_create(&self.opts, &self.conn),
                        self.conn.timeout,
                    )
                    .await?;
                if let Some(id) = request_id {
                    emitter.set_request_id(id);
                }
                ws
            }
        };
        let mut sentences = SentenceStream::new(SentenceTokenizerOptions::default());
        // A segment is open from its first text to the gateway's `done`; `flushed` once
        // `session.flush` went out for it (then input waits, so audio never interleaves).
        let mut segment_open = false;
        let mut flushed = false;
        let mut input_ended = false;
        let idle: Duration = self.conn.timeout;
        loop {
            if input_ended && !segment_open {
                // Every segment is complete: the connection is clean, keep it for the next.
                self.pool.put(ws, taken_at);
                return Ok(());
            }
            tokio::select! {
                item = input.recv(), if !input_ended && !flushed => {
                    match item {
                        Some(TtsInput::Text(text)) => {
                            if text.is_empty() {
                                continue;
                            }
                            if !segment_open {
                                emitter.start_segment(uuid::Uuid::new_v4().simple().to_string());
                                segment_open = true;
                            }
                            let done = sentences.push_text(&text);
                            self.send_sentences(&mut ws, done).await?;
                        }
                        Some(TtsInput::Flush) | None => {
                            if item.is_none() {
                                input_ended = true;
                            }
                            if segment_open {
                                let rest = sentences.flush();
                                self.send_sentences(&mut ws, rest).await?;
                                GATEWAY.send_json(&mut ws, &json!({"type": "session.flush"})).await?;
                                flushed = true;
                            }
                        }
                    }
                }
                incoming = tokio::time::timeout(idle, GATEWAY.next_incoming(&mut ws)), if segment_open => {
                    let incoming = match incoming {
                        Ok(r) => r?,
                        // Silence only counts once the segment is complete on our side.
                        Err(_) if flushed => return Err(ApiError::Timeout(idle)),
                        Err(_) => continue,
                    };
                    match incoming {
                        Incoming::Text(text) => {
                            let data: Value = match serde_json::from_str(&text) {
                                Ok(v) => v,
                                Err(e) => {
                                    tracing::warn!(error = %e, "skipping a malformed LiveKit Inference TTS message");
                                    continue;
                                }
                            };
                            match data["type"].as_str().unwrap_or_default() {
                                "output_audio" => {
                                    let Some(b64) = data["audio"].as_str() else { continue };
                                    let pcm = base64::engine::general_purpose::STANDARD
                                        .decode(b64)
                                        .map_err(|e| ApiError::protocol(format!("LiveKit Inference TTS sent invalid audio: {e}")))?;
                                    if !emitter.push_pcm_bytes(&pcm).await {
                                        return Ok(());
                                    }
                                }
                                "output_alignment" => {
                                    let f = |v: &Value| v.as_f64().filter(|x| x.is_finite()).unwrap_or(0.0);
                                    let words: Vec<TimedString> = data["words"]
                                        .as_array()
                                        .map(|ws| ws.iter().map(|w| TimedString::new(
                                            w["word"].as_str().unwrap_or_default(),
                                            f(&w["start"]),
                                            f(&w["end"]),
                                        )).collect())
                                        .unwrap_or_default();
                                    if !words.is_empty() {
                                        emitter.push_timed_transcript(words);
                                    }
                                }
                                "done" => {
                                    if !emitter.end_segment().await {
                                        return Ok(());
                                    }
                                    segment_open = false;
                                    flushed = false;
                                }
                                "error" => {
                                    let message = data["message"].as_str().unwrap_or("unknown error");
                                    return Err(ApiError::Connection {
                                        message: format!("LiveKit Inference TTS error: {message}"),
                                        retryable: true,
                                    });
                                }
                                _ => {}
                            }
                        }
                        Incoming::Binary(_) => {
                            tracing::debug!("ignoring a binary frame from LiveKit Inference TTS");
                        }
                        Incoming::Closed(reason) => {
                            let detail = reason.map(|(c, r)| format!(" (code {c}: {r})")).unwrap_or_default();
                            return Err(ApiError::connection(format!(
                                "LiveKit Inference TTS connection closed before the audio was complete{detail}"
                            )));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_reference() {
        let mut opts = TtsOptions::new("cartesia/sonic-3");
        opts.voice = Some("v1".into());
        let create = session_create(&opts, &ApiConnectOptions::default());
        assert_eq!(create["type"], "session.create");
        assert_eq!(create["sample_rate"], "24000");
        assert_eq!(create["voice"], "v1");
        let t = transcript_message(&opts, "Hello there.");
        assert_eq!(t["type"], "input_transcript");
        assert_eq!(t["transcript"], "Hello there. ");
        assert_eq!(t["generation_config"]["voice"], "v1");
        assert_eq!(t["generation_config"]["model"], "cartesia/sonic-3");
    }
}
