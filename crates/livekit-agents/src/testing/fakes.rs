//! Scripted fakes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::audio::AudioFrame;
use crate::llm::{
    ChatChunk, ChatContext, ChatRequest, CompletionUsage, FunctionToolCall, Llm, LlmStream,
};
use crate::stt::{SpeechData, SpeechEvent, SpeechEventType, SpeechStream, Stt, SttCapabilities};
use crate::tts::{
    ChunkedStream, SynthesizeStream, SynthesizedAudio, Tts, TtsCapabilities, TtsInput,
};
use crate::turn_detector::{TurnDetector, TurnDetectorError};
use crate::types::{ApiConnectOptions, ApiError};
use crate::vad::{Vad, VadCapabilities, VadEvent, VadEventType, VadStream};

/// One user utterance on the timeline (seconds from the session start).
#[derive(Debug, Clone, PartialEq)]
pub struct UserSpeech {
    /// Speech starts.
    pub start: f64,
    /// Speech ends.
    pub end: f64,
    /// What the STT transcribes (empty: noise, no transcript).
    pub transcript: String,
    /// Seconds after `end` at which the final transcript arrives.
    pub stt_delay: f64,
}

impl UserSpeech {
    /// Speech from `start` to `end` saying `transcript`, transcribed 0.2 s after the end.
    pub fn new(start: f64, end: f64, transcript: impl Into<String>) -> Self {
        Self {
            start,
            end,
            transcript: transcript.into(),
            stt_delay: 0.2,
        }
    }

    /// Sets the transcript delay.
    pub fn stt_delay(mut self, secs: f64) -> Self {
        self.stt_delay = secs;
        self
    }
}

async fn sleep_until_secs(t0: Instant, secs: f64) {
    tokio::time::sleep_until(t0 + Duration::from_secs_f64(secs.max(0.0))).await;
}

/// A VAD that reports the scripted speeches: start of speech at `start`, an inference every
/// 32 ms while speaking, end of speech `min_silence` after `end` (with `silence_duration` set so
/// the session knows speech ended at `end`). It ignores the audio.
#[derive(Debug, Clone)]
pub struct FakeVad {
    speeches: Vec<UserSpeech>,
    min_silence: f64,
}

impl FakeVad {
    /// A VAD for `speeches`, with 0.3 s of silence before end of speech.
    pub fn new(speeches: Vec<UserSpeech>) -> Self {
        Self {
            speeches,
            min_silence: 0.3,
        }
    }
}

impl Vad for FakeVad {
    fn label(&self) -> String {
        "fake.VAD".into()
    }
    fn capabilities(&self) -> VadCapabilities {
        VadCapabilities {
            update_interval: 0.032,
        }
    }
    fn stream(&self) -> VadStream {
        let (in_tx, mut in_rx) = crate::model_input::channel();
        let (tx, rx) = mpsc::channel(1024);
        let speeches = self.speeches.clone();
        let min_silence = self.min_silence;
        let task = tokio::spawn(async move {
            // Drain input so pushes never pile up; the stream ends once the input ended and
            // the timeline played.
            let drain = tokio::spawn(async move { while in_rx.recv().await.is_some() {} });
            let t0 = Instant::now();
            for s in speeches {
                sleep_until_secs(t0, s.start).await;
                let mut ev = VadEvent::new(VadEventType::StartOfSpeech);
                ev.speaking = true;
                ev.timestamp = s.start;
                if tx.send(ev).await.is_err() {
                    return;
                }
                let mut t = s.start + 0.032;
                while t < s.end {
                    sleep_until_secs(t0, t).await;
                    let mut ev = VadEvent::new(VadEventType::InferenceDone);
                    ev.speaking = true;
                    ev.timestamp = t;
                    ev.speech_duration = t - s.start;
                    ev.raw_accumulated_speech = t - s.start;
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                    t += 0.032;
                }
                sleep_until_secs(t0, s.end + min_silence).await;
                let mut ev = VadEvent::new(VadEventType::EndOfSpeech);
                ev.timestamp = s.end + min_silence;
                ev.speech_duration = s.end - s.start;
                ev.silence_duration = min_silence;
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            let _ = drain.await;
        });
        VadStream::from_channels(in_tx, rx, Some(task))
    }
}

/// A streaming STT that reports the scripted speeches: start/end of speech at `start`/`end`,
/// a final transcript `stt_delay` after `end` (none for an empty transcript).
#[derive(Debug, Clone)]
pub struct FakeStt {
    speeches: Vec<UserSpeech>,
    language: String,
    received: Arc<Mutex<ReceivedAudio>>,
    opened: Arc<std::sync::atomic::AtomicUsize>,
    /// The timeline's zero: when the first stream opened (reopened streams share it).
    origin: Arc<Mutex<Option<Instant>>>,
    fail_at: Option<f64>,
    fail_with: Option<ApiError>,
    /// Whether it claims to accept keyterms / conversation context, and what it got.
    context: Arc<Mutex<FakeSttContext>>,
}

#[derive(Debug, Default)]
struct FakeSttContext {
    keyterms_supported: bool,
    chat_context_supported: bool,
    keyterms: Vec<String>,
    items: Vec<crate::llm::ChatItem>,
}

/// Audio an STT stream received.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceivedAudio {
    /// All audio.
    pub total: Duration,
    /// Audio with at least one non-zero sample.
    pub non_silent: Duration,
}

impl FakeStt {
    /// An STT for `speeches` reporting language `en`.
    pub fn new(speeches: Vec<UserSpeech>) -> Self {
        Self {
            speeches,
            language: "en".into(),
            received: Arc::default(),
            opened: Arc::default(),
            origin: Arc::default(),
            fail_at: None,
            fail_with: None,
            context: Arc::default(),
        }
    }

    /// Claims to accept session keyterms (see [`session_keyterms`](Self::session_keyterms)).
    pub fn with_keyterms_support(self) -> Self {
        self.context.lock().keyterms_supported = true;
        self
    }

    /// Claims to consume conversation context (see
    /// [`conversation_items`](Self::conversation_items)).
    pub fn with_chat_context_support(self) -> Self {
        self.context.lock().chat_context_supported = true;
        self
    }

    /// The session keyterms last given.
    pub fn session_keyterms(&self) -> Vec<String> {
        self.context.lock().keyterms.clone()
    }

    /// The conversation items forwarded so far.
    pub fn conversation_items(&self) -> Vec<crate::llm::ChatItem> {
        self.context.lock().items.clone()
    }

    /// Makes the first stream fail (non-retryable) at `secs`; streams opened later follow the
    /// same timeline from where it is.
    pub fn failing_at(mut self, secs: f64) -> Self {
        self.fail_at = Some(secs);
        self
    }

    /// Like [`failing_at`](Self::failing_at), with `error` instead of a lost connection.
    pub fn failing_with(mut self, secs: f64, error: ApiError) -> Self {
        self.fail_at = Some(secs);
        self.fail_with = Some(error);
        self
    }

    /// How many streams were opened (a handoff keeps the stream: stays 1).
    pub fn streams_opened(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What the streams received so far (to check that audio was replaced by silence).
    pub fn received(&self) -> ReceivedAudio {
        *self.received.lock()
    }
}

#[async_trait]
impl Stt for FakeStt {
    fn label(&self) -> String {
        "fake.STT".into()
    }
    fn supports_keyterms(&self) -> bool {
        self.context.lock().keyterms_supported
    }
    fn update_session_keyterms(&self, keyterms: &[String]) {
        self.context.lock().keyterms = keyterms.to_vec();
    }
    fn supports_chat_context(&self) -> bool {
        self.context.lock().chat_context_supported
    }
    fn push_conversation_item(&self, item: &crate::llm::ChatItem) {
        let mut ctx = self.context.lock();
        // Bounded: a test never needs more.
        if ctx.items.len() < 1000 {
            ctx.items.push(item.clone());
        }
    }
    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            streaming: true,
            interim_results: false,
            ..Default::default()
        }
    }
    fn stream(
        &self,
        _language: Option<String>,
        _conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        let first = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            == 0;
        let t0 = *self.origin.lock().get_or_insert_with(Instant::now);
        let fail_at = if first { self.fail_at } else { None };
        let fail_with = self.fail_with.clone();
        let (in_tx, mut in_rx) = crate::model_input::channel();
        let (tx, rx) = mpsc::channel(1024);
        let speeches = self.speeches.clone();
        let language = self.language.clone();
        let received = self.received.clone();
        let task = tokio::spawn(async move {
            tokio::spawn(async move {
                while let Some(input) = in_rx.recv().await {
                    if let crate::stt::SttInput::Frame(frame) = input {
                        let mut r = received.lock();
                        r.total += frame.duration();
                        if frame.data.iter().any(|&x| x != 0) {
                            r.non_silent += frame.duration();
                        }
                    }
                }
            });
            let mut timeline: Vec<(f64, SpeechEvent)> = Vec::new();
            for s in speeches {
                timeline.push((s.start, SpeechEvent::new(SpeechEventType::StartOfSpeech)));
                timeline.push((s.end, SpeechEvent::new(SpeechEventType::EndOfSpeech)));
                if !s.transcript.is_empty() {
                    let data = SpeechData {
                        language: language.clone(),
                        text: s.transcript.clone(),
                        confidence: 1.0,
                        start_time: s.start,
                        end_time: s.end,
                        ..Default::default()
                    };
                    timeline.push((
                        s.end + s.stt_delay,
                        SpeechEvent::transcript(SpeechEventType::FinalTranscript, data),
                    ));
                }
            }
            timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
            let now = t0.elapsed().as_secs_f64();
            for (at, ev) in timeline.into_iter().filter(|(at, _)| *at >= now) {
                if fail_at.is_some_and(|f| f <= at) {
                    break; // the connection is lost before this event
                }
                sleep_until_secs(t0, at).await;
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if let Some(f) = fail_at {
                sleep_until_secs(t0, f).await;
                let error = fail_with.unwrap_or_else(|| ApiError::Connection {
                    message: "fake STT connection lost".into(),
                    retryable: false,
                });
                let _ = tx.send(Err(error)).await;
                return;
            }
            std::future::pending::<()>().await;
        });
        Ok(SpeechStream::from_channels(in_tx, rx, Some(task)))
    }
}

/// One scripted LLM reply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FakeLlmResponse {
    /// Text of the reply.
    pub text: String,
    /// Tool calls (name, JSON arguments).
    pub tool_calls: Vec<(String, String)>,
    /// Time to the first chunk.
    pub ttft: Duration,
    /// Time from the first to the last chunk (text is spread over it word by word).
    pub duration: Duration,
    /// Fail with this (non-retryable) error after `ttft` instead of answering.
    pub error: Option<String>,
}

impl FakeLlmResponse {
    /// A text reply after `ttft`.
    pub fn text(text: impl Into<String>, ttft: Duration) -> Self {
        Self {
            text: text.into(),
            ttft,
            ..Default::default()
        }
    }

    /// A non-retryable failure after `ttft`.
    pub fn error(message: impl Into<String>, ttft: Duration) -> Self {
        Self {
            error: Some(message.into()),
            ttft,
            ..Default::default()
        }
    }

    /// A tool call after `ttft`.
    pub fn tool_call(
        name: impl Into<String>,
        arguments: impl Into<String>,
        ttft: Duration,
    ) -> Self {
        Self {
            tool_calls: vec![(name.into(), arguments.into())],
            ttft,
            ..Default::default()
        }
    }
}

/// How many of its latest requests a [`FakeLlm`] keeps by default (32): a long test must not
/// keep every chat context it sent (each one holds the whole conversation so far).
pub const FAKE_LLM_REQUEST_RETENTION: usize = 32;

struct LlmScript {
    queue: std::collections::VecDeque<FakeLlmResponse>,
    fallback: Option<FakeLlmResponse>,
    /// The latest requests with their start times, at most `retention`.
    requests: std::collections::VecDeque<(ChatRequest, Instant)>,
    retention: usize,
    request_count: usize,
}

impl Default for LlmScript {
    fn default() -> Self {
        Self {
            queue: Default::default(),
            fallback: None,
            requests: Default::default(),
            retention: FAKE_LLM_REQUEST_RETENTION,
            request_count: 0,
        }
    }
}

/// An LLM replying from a script: queued responses in order, then the fallback. It records
/// the latest requests ([`FAKE_LLM_REQUEST_RETENTION`] by default, see
/// [`FakeLlm::with_request_retention`]) and counts all of them, and drops scripted tool calls
/// when the request's tool choice is `None`.
#[derive(Clone, Default)]
pub struct FakeLlm {
    script: Arc<Mutex<LlmScript>>,
}

impl std::fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLlm").finish_non_exhaustive()
    }
}

impl FakeLlm {
    /// An LLM answering with `responses` in order (an empty reply after them).
    pub fn new(responses: Vec<FakeLlmResponse>) -> Self {
        let llm = Self::default();
        llm.script.lock().queue = responses.into();
        llm
    }

    /// The reply used once the queue is empty.
    pub fn with_fallback(self, response: FakeLlmResponse) -> Self {
        self.script.lock().fallback = Some(response);
        self
    }

    /// Keep the latest `limit` requests (and their start times) instead of
    /// [`FAKE_LLM_REQUEST_RETENTION`]; `usize::MAX` keeps all of them.
    pub fn with_request_retention(self, limit: usize) -> Self {
        {
            let mut s = self.script.lock();
            s.retention = limit;
            while s.requests.len() > limit {
                s.requests.pop_front();
            }
        }
        self
    }

    /// The latest requests received, oldest first (at most the retention limit).
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.script
            .lock()
            .requests
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// When each of [`FakeLlm::requests`] started.
    pub fn request_times(&self) -> Vec<Instant> {
        self.script
            .lock()
            .requests
            .iter()
            .map(|(_, t)| *t)
            .collect()
    }

    /// How many requests were received in all (including those no longer kept).
    pub fn request_count(&self) -> usize {
        self.script.lock().request_count
    }
}

#[async_trait]
impl Llm for FakeLlm {
    fn label(&self) -> String {
        "fake.LLM".into()
    }
    fn model(&self) -> String {
        "fake".into()
    }
    fn provider(&self) -> String {
        "fake".into()
    }
    fn chat(&self, request: ChatRequest) -> LlmStream {
        // Like a real provider, no tool calls when the request forbids them.
        let tools_allowed = request.tool_choice != Some(crate::llm::ToolChoice::None);
        let response = {
            let mut s = self.script.lock();
            s.request_count += 1;
            if s.retention > 0 {
                if s.requests.len() >= s.retention {
                    s.requests.pop_front();
                }
                s.requests.push_back((request, Instant::now()));
            }
            let fallback = s.fallback.clone();
            s.queue.pop_front().or(fallback).unwrap_or_default()
        };
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(async move {
            tokio::time::sleep(response.ttft).await;
            if let Some(message) = response.error {
                let _ = tx.send(Err(ApiError::other(message))).await;
                return;
            }
            let words: Vec<String> = split_keep_space(&response.text);
            let step = if words.len() > 1 {
                response.duration / (words.len() as u32 - 1).max(1)
            } else {
                Duration::ZERO
            };
            for (i, w) in words.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(step).await;
                }
                if tx
                    .send(Ok(ChatChunk::text("fake", w.clone())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if tools_allowed && !response.tool_calls.is_empty() {
                let calls = response
                    .tool_calls
                    .iter()
                    .enumerate()
                    .map(|(i, (name, args))| FunctionToolCall {
                        call_id: format!("call_{}_{i}", uuid::Uuid::new_v4().simple()),
                        name: name.clone(),
                        arguments: args.clone(),
                    })
                    .collect();
                if tx
                    .send(Ok(ChatChunk::tool_calls("fake", calls)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let usage = ChatChunk {
                id: "fake".into(),
                delta: None,
                usage: Some(CompletionUsage {
                    completion_tokens: words.len() as u32,
                    prompt_tokens: 10,
                    prompt_cached_tokens: 0,
                    total_tokens: 10 + words.len() as u32,
                }),
            };
            let _ = tx.send(Ok(usage)).await;
        });
        LlmStream::from_channel(rx, Some(task))
    }
}

fn split_keep_space(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_whitespace() && !cur.trim().is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A streaming TTS producing `audio_duration` of silence per segment, `ttfb` after its first
/// text (all frames at once; the output paces playback).
#[derive(Debug, Clone)]
pub struct FakeTts {
    ttfb: Duration,
    audio_duration: Duration,
    sample_rate: u32,
    /// Requests made (`synthesize` calls and `stream` opens), shared by clones.
    requests: Arc<std::sync::atomic::AtomicUsize>,
    /// Value of every sample (0: silence).
    amplitude: i16,
}

impl FakeTts {
    /// A TTS at 24 kHz.
    pub fn new(ttfb: Duration, audio_duration: Duration) -> Self {
        Self {
            ttfb,
            audio_duration,
            sample_rate: 24_000,
            requests: Arc::default(),
            amplitude: 0,
        }
    }

    /// Audio whose every sample is `amplitude` instead of silence (so a recording can tell it
    /// from silence).
    pub fn with_amplitude(mut self, amplitude: i16) -> Self {
        self.amplitude = amplitude;
        self
    }

    /// How many requests were made: `synthesize` calls plus `stream` opens (clones count
    /// together).
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn frames(&self) -> Vec<SynthesizedAudio> {
        let per_frame = (self.sample_rate / 100) as usize; // 10 ms
        let count = (self.audio_duration.as_secs_f64() * 100.0).round() as usize;
        (0..count)
            .map(|i| SynthesizedAudio {
                frame: {
                    let mut f = AudioFrame::silence(self.sample_rate, 1, per_frame);
                    f.data.fill(self.amplitude);
                    f
                },
                request_id: "fake".into(),
                segment_id: "fake".into(),
                is_final: i + 1 == count,
                delta_text: String::new(),
                timed_words: Vec::new(),
            })
            .collect()
    }
}

#[async_trait]
impl Tts for FakeTts {
    fn label(&self) -> String {
        "fake.TTS".into()
    }
    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            aligned_transcript: false,
        }
    }
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
    fn synthesize(&self, _text: &str, _conn: ApiConnectOptions) -> ChunkedStream {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(4096);
        let frames = self.frames();
        let ttfb = self.ttfb;
        let task = tokio::spawn(async move {
            tokio::time::sleep(ttfb).await;
            for f in frames {
                if tx.send(Ok(f)).await.is_err() {
                    return;
                }
            }
        });
        ChunkedStream::from_channel(rx, Some(task))
    }
    fn stream(&self, _conn: ApiConnectOptions) -> Result<SynthesizeStream, ApiError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (in_tx, mut in_rx) = crate::model_input::channel::<TtsInput>();
        let (tx, rx) = mpsc::channel(4096);
        let frames = self.frames();
        let ttfb = self.ttfb;
        let task = tokio::spawn(async move {
            let mut sent = false;
            while let Some(input) = in_rx.recv().await {
                if let TtsInput::Text(t) = input {
                    if !sent && !t.trim().is_empty() {
                        sent = true;
                        tokio::time::sleep(ttfb).await;
                        for f in frames.clone() {
                            if tx.send(Ok(f)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(SynthesizeStream::from_channels(in_tx, rx, Some(task)))
    }
}

/// A turn detector answering a fixed probability after `delay`.
#[derive(Debug, Clone)]
pub struct FakeTurnDetector {
    /// The probability returned.
    pub probability: f32,
    /// The "unlikely" threshold.
    pub threshold: f32,
    /// Inference time.
    pub delay: Duration,
}

#[async_trait]
impl TurnDetector for FakeTurnDetector {
    fn label(&self) -> String {
        "fake.TurnDetector".into()
    }
    async fn predict_end_of_turn(
        &self,
        _chat_ctx: &ChatContext,
        _language: Option<&str>,
    ) -> Result<f32, TurnDetectorError> {
        tokio::time::sleep(self.delay).await;
        Ok(self.probability)
    }
    fn supports_language(&self, _language: Option<&str>) -> bool {
        true
    }
    fn unlikely_threshold(&self, _language: Option<&str>) -> Option<f32> {
        Some(self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ChatContext, ChatRequest, ChatRole};

    /// Issue 15 item 12: a long test does not keep every request (each holds the whole chat).
    #[tokio::test(start_paused = true)]
    async fn fake_llm_keeps_only_the_latest_requests() {
        let llm = FakeLlm::new(Vec::new());
        let mut ctx = ChatContext::new();
        for i in 0..200 {
            ctx.add_message(ChatRole::User, format!("turn {i}"));
            drop(llm.chat(ChatRequest::new(ctx.clone())));
        }
        assert_eq!(llm.request_count(), 200);
        let kept = llm.requests();
        assert_eq!(kept.len(), FAKE_LLM_REQUEST_RETENTION);
        assert_eq!(llm.request_times().len(), FAKE_LLM_REQUEST_RETENTION);
        // The latest ones, oldest first.
        assert_eq!(kept.last().map(|r| r.chat_ctx.items().len()), Some(200));
        assert_eq!(
            kept[0].chat_ctx.items().len(),
            200 - FAKE_LLM_REQUEST_RETENTION + 1
        );

        let all = FakeLlm::new(Vec::new()).with_request_retention(usize::MAX);
        for _ in 0..50 {
            drop(all.chat(ChatRequest::default()));
        }
        assert_eq!(all.requests().len(), 50);
        let none = FakeLlm::new(Vec::new()).with_request_retention(0);
        drop(none.chat(ChatRequest::default()));
        assert!(none.requests().is_empty());
        assert_eq!(none.request_count(), 1);
    }
}
