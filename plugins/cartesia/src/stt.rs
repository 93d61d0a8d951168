//! Cartesia speech-to-text (ink-whisper) over `wss://api.cartesia.ai/stt/websocket`.
//!
//! The endpoint transcribes when told to: each flush of the stream sends `finalize`, Cartesia
//! answers with final transcripts and `flush_done`; the end of input sends `close`, answered
//! by `done`. Audio not yet covered by a `flush_done` is kept, so a dropped connection is
//! resumed by resending exactly that audio.

use std::collections::VecDeque;

use async_trait::async_trait;
use livekit_agents::audio::AudioFrame;
use livekit_agents::plugin_support::UsageMeter;
use livekit_agents::stt::{
    self as core_stt, AlignedTranscript, SpeechData, SpeechEvent, SpeechEventSender,
    SpeechEventType, SpeechStream, SttCapabilities, SttInput, SttInputReceiver, SttStreamTask,
};
use livekit_agents::types::{ApiConnectOptions, ApiError, TimedString};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::common::{
    endpoint, parse_base_url, redacted, request_headers, resolve_api_key, resolve_base_url,
    to_le_bytes, ApiKey, Chunker, ConfigError, Dialer, Incoming, ReplayBuffer, WsStream,
    API_VERSION, CARTESIA,
};

/// Cartesia recommends ~100 ms chunks.
const CHUNK_MS: u32 = 100;
/// Bound on audio kept for replay when Cartesia is never asked to finalize.
const MAX_REPLAY_SECS: f64 = 30.0;

/// Options of the Cartesia [`Stt`]. Defaults match the reference plugin.
///
/// ```
/// let opts = livekit_plugins_cartesia::SttOptions::default();
/// assert_eq!(opts.model, "ink-whisper");
/// assert_eq!(opts.language.as_deref(), Some("en"));
/// ```
#[derive(Clone, PartialEq)]
pub struct SttOptions {
    /// Model (`ink-whisper` by default).
    pub model: String,
    /// Language, ISO-639-1 (`en` by default; region subtags are dropped).
    pub language: Option<String>,
    /// Volume threshold below which audio counts as silence (Cartesia's `min_volume`).
    pub min_volume: Option<f32>,
    /// Longest silence, in seconds, before Cartesia finalizes on its own
    /// (`max_silence_duration_secs`).
    pub max_silence_duration_secs: Option<f32>,
    /// The `Cartesia-Version` header ([`API_VERSION`] by default).
    pub api_version: String,
    /// API key; `CARTESIA_API_KEY` when unset. Never printed by `Debug`.
    pub api_key: Option<String>,
}

impl Default for SttOptions {
    fn default() -> Self {
        Self {
            model: "ink-whisper".into(),
            language: Some("en".into()),
            min_volume: None,
            max_silence_duration_secs: None,
            api_version: API_VERSION.into(),
            api_key: None,
        }
    }
}

impl std::fmt::Debug for SttOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SttOptions")
            .field("model", &self.model)
            .field("language", &self.language)
            .field("min_volume", &self.min_volume)
            .field("max_silence_duration_secs", &self.max_silence_duration_secs)
            .field("api_version", &self.api_version)
            .field("api_key", &redacted(&self.api_key))
            .finish()
    }
}

/// Cartesia speech-to-text, the counterpart of the reference's `cartesia.STT`.
///
/// ```no_run
/// use livekit_plugins_cartesia::{Stt, SttOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let stt = Stt::new(SttOptions::default())?; // reads CARTESIA_API_KEY
/// # Ok(()) }
/// ```
pub struct Stt {
    opts: SttOptions,
    api_key: ApiKey,
    base_url: Url,
    dialer: Dialer,
}

impl std::fmt::Debug for Stt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stt")
            .field("options", &self.opts)
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Stt {
    /// Creates the client. The API key comes from `options.api_key` or `CARTESIA_API_KEY`, the
    /// base URL from `CARTESIA_BASE_URL` or `https://api.cartesia.ai`.
    pub fn new(options: SttOptions) -> Result<Self, ConfigError> {
        Ok(Self {
            api_key: resolve_api_key(options.api_key.as_deref())?,
            base_url: resolve_base_url(None)?,
            opts: options,
            dialer: Dialer::Tcp,
        })
    }

    /// Uses another API root (`/stt/websocket` is appended to it).
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.base_url = parse_base_url(base_url)?;
        Ok(self)
    }

    /// The options.
    pub fn options(&self) -> &SttOptions {
        &self.opts
    }

    /// Routes connections through an in-memory pipe (tests on the paused clock).
    #[cfg(test)]
    pub(crate) fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    fn url(&self, language: Option<&str>, sample_rate: u32) -> Url {
        let mut url = endpoint(&self.base_url, "/stt/websocket", true);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("model", &self.opts.model)
                .append_pair("encoding", "pcm_s16le")
                .append_pair("sample_rate", &sample_rate.to_string())
                .append_pair("cartesia_version", &self.opts.api_version);
            if let Some(lang) = language.and_then(livekit_agents::types::base_language) {
                q.append_pair("language", &lang);
            }
            if let Some(v) = self.opts.min_volume {
                q.append_pair("min_volume", &v.to_string());
            }
            if let Some(v) = self.opts.max_silence_duration_secs {
                q.append_pair("max_silence_duration_secs", &v.to_string());
            }
        }
        url
    }
}

#[async_trait]
impl core_stt::Stt for Stt {
    fn label(&self) -> String {
        "cartesia.STT".into()
    }

    fn model(&self) -> String {
        self.opts.model.clone()
    }

    fn provider(&self) -> String {
        "cartesia".into()
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
        let language = language.or_else(|| self.opts.language.clone());
        let task = SttTask {
            stt: Stt {
                opts: self.opts.clone(),
                api_key: self.api_key.clone(),
                base_url: self.base_url.clone(),
                dialer: self.dialer.clone(),
            },
            language,
            conn,
            audio: None,
            finalize_marks: VecDeque::new(),
            speaking: false,
            input_ended: false,
            request_id: String::new(),
            transcribed_until: 0.0,
            usage: UsageMeter::default(),
        };
        Ok(SpeechStream::spawn("cartesia.STT", conn, task))
    }
}

struct AudioState {
    chunker: Chunker,
    replay: ReplayBuffer,
    chunk_len: usize,
}

/// One streaming recognition; its state survives reconnections.
struct SttTask {
    stt: Stt,
    language: Option<String>,
    conn: ApiConnectOptions,
    audio: Option<AudioState>,
    /// Stream positions at which `finalize` was sent, answered in order by `flush_done`.
    finalize_marks: VecDeque<u64>,
    speaking: bool,
    input_ended: bool,
    request_id: String,
    /// End (stream seconds) of the audio covered by transcripts so far: Cartesia's transcript
    /// messages are deltas carrying their audio duration.
    transcribed_until: f64,
    usage: UsageMeter,
}

#[async_trait]
impl SttStreamTask for SttTask {
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        while self.audio.is_none() {
            match input.recv().await {
                None => return Ok(()),
                Some(SttInput::Flush) => continue,
                Some(SttInput::Frame(frame)) => self.accept_frame(&frame)?,
            }
        }
        let Some(audio) = self.audio.as_ref() else {
            return Ok(());
        };
        let url = self
            .stt
            .url(self.language.as_deref(), audio.replay.sample_rate());
        let headers = request_headers(&self.stt.api_key, &self.stt.opts.api_version)?;
        let (mut ws, request_id) = CARTESIA
            .connect_ws(&self.stt.dialer, &url, headers, self.conn.timeout)
            .await?;
        if let Some(id) = request_id {
            self.request_id = id;
        }
        let result = self.session(&mut ws, input, events).await;
        self.usage.flush(&self.request_id, events).await;
        result
    }
}

impl SttTask {
    /// Takes a frame (downmixed to mono: Cartesia transcribes one channel per connection).
    fn accept_frame(&mut self, frame: &AudioFrame) -> Result<(), ApiError> {
        if frame.sample_rate == 0 || frame.num_channels == 0 {
            return Err(ApiError::other(format!("invalid audio frame: {frame:?}")));
        }
        let audio = self.audio.get_or_insert_with(|| AudioState {
            chunker: Chunker::new(frame.sample_rate, 1, CHUNK_MS),
            replay: ReplayBuffer::new(frame.sample_rate, 1, MAX_REPLAY_SECS),
            chunk_len: (frame.sample_rate as usize * CHUNK_MS as usize / 1000).max(1),
        });
        if frame.sample_rate != audio.replay.sample_rate() {
            return Err(ApiError::other(format!(
                "sample rate changed mid-stream: {} Hz after {} Hz; resample before pushing",
                frame.sample_rate,
                audio.replay.sample_rate()
            )));
        }
        if frame.num_channels == 1 {
            audio.chunker.push(&frame.data);
        } else {
            let ch = frame.num_channels as usize;
            let mono: Vec<i16> = frame
                .data
                .chunks(ch)
                .map(|s| (s.iter().map(|&v| v as i32).sum::<i32>() / ch as i32) as i16)
                .collect();
            audio.chunker.push(&mono);
        }
        Ok(())
    }

    async fn session(
        &mut self,
        ws: &mut WsStream,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        let Some(audio) = self.audio.as_ref() else {
            return Ok(());
        };
        let start_pos = audio.replay.start_pos();
        let rate = audio.replay.sample_rate() as f64;
        let offset = start_pos as f64 / rate;
        // Finalize requests of a lost connection will never be answered.
        self.finalize_marks.clear();
        self.transcribed_until = offset;
        for chunk in audio.replay.chunks(audio.chunk_len) {
            self.send_audio(ws, chunk, false).await?;
        }
        self.send_ready(ws).await?;
        let mut close_deadline = None;
        if self.input_ended {
            self.end_input(ws).await?;
            close_deadline = Some(Instant::now() + self.conn.timeout);
        }
        loop {
            tokio::select! {
                incoming = CARTESIA.next_incoming(ws) => match incoming? {
                    Incoming::Text(text) => {
                        match self.handle_message(&text, offset, events).await? {
                            Flow::Continue => {}
                            Flow::Done => return Ok(()),
                        }
                        // An inactivity timeout: time spent waiting for a slow consumer
                        // does not count.
                        if close_deadline.is_some() {
                            close_deadline = Some(Instant::now() + self.conn.timeout);
                        }
                    }
                    Incoming::Binary(data) => {
                        tracing::debug!(len = data.len(), "ignoring unexpected binary frame from Cartesia");
                    }
                    Incoming::Closed(reason) => {
                        let detail = reason.map(|(c, r)| format!(" (code {c}: {r})")).unwrap_or_default();
                        return Err(ApiError::connection(format!("Cartesia closed the connection unexpectedly{detail}")));
                    }
                },
                item = input.recv(), if !self.input_ended => match item {
                    Some(SttInput::Frame(frame)) => {
                        self.accept_frame(&frame)?;
                        self.send_ready(ws).await?;
                    }
                    Some(SttInput::Flush) => {
                        self.send_rest(ws).await?;
                        send_text(ws, "finalize").await?;
                        if let Some(a) = &self.audio {
                            self.finalize_marks.push_back(a.replay.end_pos());
                        }
                    }
                    None => {
                        self.end_input(ws).await?;
                        close_deadline = Some(Instant::now() + self.conn.timeout);
                    }
                },
                _ = sleep_until_opt(close_deadline), if close_deadline.is_some() => {
                    return Err(ApiError::Timeout(self.conn.timeout));
                }
            }
        }
    }

    async fn end_input(&mut self, ws: &mut WsStream) -> Result<(), ApiError> {
        self.send_rest(ws).await?;
        send_text(ws, "close").await?;
        self.input_ended = true;
        Ok(())
    }

    async fn send_ready(&mut self, ws: &mut WsStream) -> Result<(), ApiError> {
        while let Some(chunk) = self.audio.as_mut().and_then(|a| a.chunker.next_full()) {
            self.send_audio(ws, chunk, true).await?;
        }
        Ok(())
    }

    async fn send_rest(&mut self, ws: &mut WsStream) -> Result<(), ApiError> {
        self.send_ready(ws).await?;
        if let Some(rest) = self.audio.as_mut().and_then(|a| a.chunker.take_rest()) {
            self.send_audio(ws, rest, true).await?;
        }
        Ok(())
    }

    async fn send_audio(
        &mut self,
        ws: &mut WsStream,
        samples: Vec<i16>,
        record: bool,
    ) -> Result<(), ApiError> {
        let Some(audio) = self.audio.as_mut() else {
            return Ok(());
        };
        if record {
            audio.replay.push(&samples);
        }
        self.usage
            .add(samples.len() as f64 / audio.replay.sample_rate() as f64);
        CARTESIA.send_binary(ws, to_le_bytes(&samples)).await
    }

    async fn send_event(
        &self,
        events: &SpeechEventSender,
        mut ev: SpeechEvent,
    ) -> Result<Flow, ApiError> {
        ev.request_id = self.request_id.clone();
        Ok(if events.send(ev).await {
            Flow::Continue
        } else {
            Flow::Done
        })
    }

    async fn handle_message(
        &mut self,
        text: &str,
        offset: f64,
        events: &SpeechEventSender,
    ) -> Result<Flow, ApiError> {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "skipping malformed Cartesia STT message");
                return Ok(Flow::Continue);
            }
        };
        if let Some(id) = &message.request_id {
            self.request_id = id.clone();
        }
        match message.kind.as_str() {
            "transcript" => {
                let start = self.transcribed_until;
                let end = start + message.duration.unwrap_or(0.0);
                self.transcribed_until = end;
                let is_final = message.is_final.unwrap_or(false);
                let text = message.text.unwrap_or_default();
                if text.is_empty() && !is_final {
                    return Ok(Flow::Continue);
                }
                if !self.speaking && !text.is_empty() {
                    self.speaking = true;
                    if let Flow::Done = self
                        .send_event(events, SpeechEvent::new(SpeechEventType::StartOfSpeech))
                        .await?
                    {
                        return Ok(Flow::Done);
                    }
                }
                let data = SpeechData {
                    language: message
                        .language
                        .or_else(|| self.language.clone())
                        .unwrap_or_default(),
                    text,
                    confidence: 1.0,
                    start_time: start,
                    end_time: end,
                    words: message
                        .words
                        .iter()
                        .map(|w| TimedString::new(w.word.clone(), w.start + offset, w.end + offset))
                        .collect(),
                    speaker_id: None,
                };
                if !is_final {
                    return self
                        .send_event(
                            events,
                            SpeechEvent::transcript(SpeechEventType::InterimTranscript, data),
                        )
                        .await;
                }
                self.usage.flush(&self.request_id, events).await;
                if !data.text.is_empty()
                    && matches!(
                        self.send_event(
                            events,
                            SpeechEvent::transcript(SpeechEventType::FinalTranscript, data)
                        )
                        .await?,
                        Flow::Done
                    )
                {
                    return Ok(Flow::Done);
                }
                if self.speaking {
                    self.speaking = false;
                    return self
                        .send_event(events, SpeechEvent::new(SpeechEventType::EndOfSpeech))
                        .await;
                }
            }
            "flush_done" => {
                // Everything sent before the matching `finalize` is transcribed for good.
                if let (Some(pos), Some(audio)) =
                    (self.finalize_marks.pop_front(), self.audio.as_mut())
                {
                    audio.replay.drop_before(pos);
                }
            }
            "done" => {
                if self.input_ended {
                    return Ok(Flow::Done);
                }
            }
            "error" => return Err(message.to_error()),
            other => tracing::debug!(kind = other, "ignoring unknown Cartesia STT message"),
        }
        Ok(Flow::Continue)
    }
}

enum Flow {
    Continue,
    Done,
}

async fn send_text(ws: &mut WsStream, command: &str) -> Result<(), ApiError> {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(command))
        .await
        .map_err(|e| ApiError::connection(format!("Cartesia connection lost while sending: {e}")))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, Deserialize)]
struct ServerMessage {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    is_final: Option<bool>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    words: Vec<Word>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl ServerMessage {
    fn to_error(&self) -> ApiError {
        let text = self
            .message
            .clone()
            .or_else(|| self.error.clone())
            .unwrap_or_else(|| "unknown error".into());
        match self.code.or(self.status_code) {
            Some(status) if status >= 400 => {
                ApiError::status(status, format!("Cartesia STT error: {text}"))
            }
            _ => ApiError::Connection {
                message: format!("Cartesia STT error: {text}"),
                retryable: true,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct Word {
    #[serde(default)]
    word: String,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
}

#[cfg(test)]
#[path = "stt_stream_tests.rs"]
mod stream_tests;
