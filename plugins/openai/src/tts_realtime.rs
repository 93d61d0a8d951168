//! Speech through the Realtime API: the successor OpenAI names for the `/audio/speech` models
//! (`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts` shut down on 2027-01-06; see `docs/providers.md`).
//!
//! [`crate::Tts`] takes this path when its model is a realtime model (`gpt-realtime-2.1-mini`,
//! [`REALTIME_TTS_MODEL`]). Each synthesis opens `wss://…/realtime?model=…`, configures a
//! session for audio output only (no turn detection, no input transcription, instructions to
//! read the text word for word), and asks for one out-of-band response
//! (`"conversation": "none"`) whose only input is the text. The `response.output_audio.delta`
//! events (24 kHz PCM) are the audio; `response.done` ends it.
//!
//! The model is a voice model, not a reader: it may reword a sentence slightly. The transcript
//! of what it said is compared with the text and a difference is logged (debug level).
//!
//! Connections are pooled per `Tts`: a text whose session settings (model, voice, speed) match
//! an idle connection used less than [`POOL_MAX_IDLE`] ago reuses it (no handshake, no
//! `session.update`); a connection is given back only after a completed response.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use futures::{FutureExt, StreamExt};
use livekit_agents::tts::{AudioEmitter, ChunkedTtsTask};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Endpoint;
use crate::ws::{self, event_type, str_field, Incoming, WsStream};

/// An idle connection is reused only if its last response ended less than this long ago.
pub(crate) const POOL_MAX_IDLE: Duration = Duration::from_secs(300);
/// Idle connections kept per `Tts`.
const POOL_MAX_CONNECTIONS: usize = 4;

/// Idle Realtime speech connections of one `Tts`, with the session settings they carry.
#[derive(Default)]
pub(crate) struct SpeechPool {
    idle: Mutex<Vec<(String, WsStream, Instant)>>,
}

impl SpeechPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, WsStream, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle, open connection configured as `key`. Events left from its last response
    /// (e.g. `rate_limits.updated`) are drained; a closed or failed one is dropped.
    fn take(&self, key: &str) -> Option<WsStream> {
        let mut idle = self.lock();
        while let Some(i) = idle.iter().rposition(|(k, _, _)| k == key) {
            let (_, mut socket, returned) = idle.swap_remove(i);
            if returned.elapsed() >= POOL_MAX_IDLE {
                continue;
            }
            let alive = loop {
                match socket.next().now_or_never() {
                    None => break true,
                    Some(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => {}
                    Some(_) => break false,
                }
            };
            if alive {
                return Some(socket);
            }
        }
        None
    }

    fn put(&self, key: String, socket: WsStream) {
        let mut idle = self.lock();
        if idle.len() < POOL_MAX_CONNECTIONS {
            idle.push((key, socket, Instant::now()));
        }
    }

    /// Idle connections (for tests).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The realtime model OpenAI names as the replacement of the `/audio/speech` models.
pub const REALTIME_TTS_MODEL: &str = "gpt-realtime-2.1-mini";

/// Fastest speech the Realtime API accepts (`audio.output.speed`, 0.25 to 1.5).
pub(crate) const MAX_REALTIME_SPEED: f32 = 1.5;

/// What the model is told to do with every text (the caller's `instructions`, if any, are
/// appended as delivery directions).
pub(crate) const READ_ALOUD_INSTRUCTIONS: &str = "You are a text-to-speech engine. Read the text \
the user gives you aloud, exactly as written, word for word, in the language it is written in. \
Do not answer it, comment on it, translate it, or add or leave out anything.";

/// Whether `model` is served through the Realtime API rather than `/audio/speech`.
pub(crate) fn is_realtime_speech_model(model: &str) -> bool {
    model.starts_with("gpt-realtime")
}

/// The session a synthesis runs in: audio out only, nothing listening.
pub(crate) fn session_update(
    model: &str,
    voice: &str,
    speed: f32,
    instructions: Option<&str>,
) -> Value {
    let mut output = json!({"format": crate::realtime::pcm_format(), "voice": voice});
    if (speed - 1.0).abs() > f32::EPSILON {
        output["speed"] = json!(speed);
    }
    json!({"type": "session.update", "session": {
        "type": "realtime",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": full_instructions(instructions),
        "audio": {
            "input": {"turn_detection": null, "transcription": null},
            "output": output,
        },
        "tool_choice": "none",
    }})
}

fn full_instructions(delivery: Option<&str>) -> String {
    match delivery.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => format!("{READ_ALOUD_INSTRUCTIONS}\nDelivery: {d}"),
        None => READ_ALOUD_INSTRUCTIONS.to_string(),
    }
}

/// The out-of-band response that speaks `text`.
pub(crate) fn response_create(event_id: &str, text: &str, instructions: Option<&str>) -> Value {
    json!({"type": "response.create", "event_id": event_id, "response": {
        "conversation": "none",
        "output_modalities": ["audio"],
        "instructions": full_instructions(instructions),
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}],
        "metadata": {"client_event_id": event_id},
    }})
}

/// One synthesis over a Realtime session.
pub(crate) struct RealtimeSpeechTask {
    pub(crate) endpoint: Endpoint,
    pub(crate) model: String,
    pub(crate) voice: String,
    pub(crate) speed: f32,
    pub(crate) instructions: Option<String>,
    pub(crate) text: String,
    pub(crate) conn: ApiConnectOptions,
    pub(crate) pool: std::sync::Arc<SpeechPool>,
}

#[async_trait]
impl ChunkedTtsTask for RealtimeSpeechTask {
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
        let timeout = self.conn.timeout;
        let provider = self.endpoint.provider.clone();
        // The voice cannot change once a session has spoken: it is part of the key.
        let key = format!("{}\n{}\n{}", self.model, self.voice, self.speed);
        let mut socket = match self.pool.take(&key) {
            Some(socket) => socket,
            None => {
                let mut url = self.endpoint.url("realtime", true);
                url.query_pairs_mut().append_pair("model", &self.model);
                let mut socket = ws::connect(&self.endpoint, &url, timeout).await?;
                ws::send_json(
                    &mut socket,
                    &session_update(
                        &self.model,
                        &self.voice,
                        self.speed,
                        self.instructions.as_deref(),
                    ),
                )
                .await?;
                socket
            }
        };
        let event_id = format!(
            "lk_tts_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        ws::send_json(
            &mut socket,
            &response_create(&event_id, &self.text, self.instructions.as_deref()),
        )
        .await?;

        let mut response_id: Option<String> = None;
        let mut transcript = String::new();
        loop {
            let incoming = match tokio::time::timeout(timeout, ws::next_event(&mut socket)).await {
                Err(_) => return Err(ApiError::Timeout(timeout)),
                Ok(r) => r?,
            };
            let ev = match incoming {
                Incoming::Event(ev) => ev,
                Incoming::Closed(reason) => {
                    return Err(ApiError::connection(format!(
                        "{provider} closed the session before the speech was complete{}",
                        reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    )))
                }
            };
            let ours = |ev: &Value| {
                response_id
                    .as_deref()
                    .is_some_and(|id| str_field(ev, "response_id") == id)
            };
            match event_type(&ev) {
                "response.created" => {
                    let Some(response) = ev.get("response") else {
                        continue;
                    };
                    let tagged = response
                        .get("metadata")
                        .map(|m| str_field(m, "client_event_id"))
                        .unwrap_or_default();
                    if tagged == event_id || response_id.is_none() {
                        let id = str_field(response, "id").to_string();
                        emitter.set_request_id(id.clone());
                        response_id = Some(id);
                    }
                }
                "response.output_audio.delta" | "response.audio.delta" if ours(&ev) => {
                    let pcm = base64::engine::general_purpose::STANDARD
                        .decode(str_field(&ev, "delta"))
                        .map_err(|e| {
                            ApiError::protocol(format!("{provider} sent undecodable audio: {e}"))
                        })?;
                    if !emitter.push_pcm_bytes(&pcm).await {
                        let _ = socket.close(None).await;
                        return Ok(());
                    }
                }
                // Bounded by what the model says for one text.
                "response.output_audio_transcript.delta" | "response.audio_transcript.delta"
                    if ours(&ev)
                        && transcript.len()
                            < self.text.len().saturating_mul(4).saturating_add(1024) =>
                {
                    transcript.push_str(str_field(&ev, "delta"));
                }
                "response.done" => {
                    let Some(response) = ev.get("response") else {
                        continue;
                    };
                    if response_id
                        .as_deref()
                        .is_some_and(|id| id != str_field(response, "id"))
                    {
                        continue;
                    }
                    return match str_field(response, "status") {
                        "completed" => {
                            self.pool.put(key, socket);
                            if normalized(&transcript) != normalized(&self.text)
                                && !transcript.is_empty()
                            {
                                tracing::debug!(
                                    text_chars = self.text.len(),
                                    spoken_chars = transcript.len(),
                                    "the realtime voice read the text with different words"
                                );
                            }
                            Ok(())
                        }
                        status => {
                            let _ = socket.close(None).await;
                            let detail = response
                                .get("status_details")
                                .map(Value::to_string)
                                .unwrap_or_default();
                            Err(ApiError::connection(format!(
                                "{provider} speech response ended {status}: {}",
                                crate::client::truncate(&detail, 300)
                            )))
                        }
                    };
                }
                "error" => {
                    let _ = socket.close(None).await;
                    return Err(ws::server_error(&provider, &ev));
                }
                _ => {}
            }
        }
    }
}

/// Lowercase words without punctuation, to tell a reworded reading from an exact one.
fn normalized(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_and_response_speak_only_the_text() {
        let s = session_update(REALTIME_TTS_MODEL, "marin", 1.0, Some("Cheerful."));
        assert_eq!(s["session"]["output_modalities"], json!(["audio"]));
        assert_eq!(
            s["session"]["audio"]["input"]["turn_detection"],
            Value::Null
        );
        assert_eq!(s["session"]["audio"]["output"]["voice"], "marin");
        assert!(s["session"]["audio"]["output"].get("speed").is_none());
        assert!(s["session"]["instructions"]
            .as_str()
            .unwrap()
            .ends_with("Delivery: Cheerful."));
        let r = response_create("ev1", "Hello there.", None);
        assert_eq!(r["response"]["conversation"], "none");
        assert_eq!(
            r["response"]["input"][0]["content"][0],
            json!({"type": "input_text", "text": "Hello there."})
        );
        assert_eq!(r["response"]["metadata"]["client_event_id"], "ev1");
        assert_eq!(
            normalized("Hello, there!"),
            normalized("hello there"),
            "punctuation and case do not count as rewording"
        );
        assert!(is_realtime_speech_model("gpt-realtime-2.1-mini"));
        assert!(!is_realtime_speech_model("gpt-4o-mini-tts"));
    }
}
