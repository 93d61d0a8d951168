//! The retry policy shared by every provider stream (`ApiConnectOptions`), checked on tokio's
//! paused clock with scripted fake providers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use livekit_agents::audio::AudioFrame;
use livekit_agents::llm::{ChatChunk, ChunkSender, LlmStream, LlmStreamTask};
use livekit_agents::stt::{
    self, SpeechData, SpeechEvent, SpeechEventSender, SpeechEventType, SpeechStream, Stt,
    SttCapabilities, SttInput, SttInputReceiver, SttStreamTask,
};
use livekit_agents::tts::{
    AudioEmitter, ChunkedStream, ChunkedTtsTask, SynthesizeStream, TtsInput, TtsInputReceiver,
    TtsStreamTask,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};

fn opts(max_retry: u32, retry_interval_secs: u64) -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(max_retry)
        .with_retry_interval(Duration::from_secs(retry_interval_secs))
        .with_timeout(Duration::from_secs(10))
}

fn retryable() -> ApiError {
    ApiError::connection("reset by peer")
}

fn fatal() -> ApiError {
    ApiError::status(401, "bad key")
}

/// Records when each attempt started, relative to the test start.
#[derive(Clone)]
struct Attempts {
    start: Instant,
    at: Arc<Mutex<Vec<Duration>>>,
}

impl Attempts {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            at: Arc::default(),
        }
    }

    /// Records an attempt and returns its 0-based number.
    fn record(&self) -> usize {
        let mut at = self.at.lock();
        at.push(self.start.elapsed());
        at.len() - 1
    }

    fn times(&self) -> Vec<Duration> {
        self.at.lock().clone()
    }

    fn count(&self) -> usize {
        self.at.lock().len()
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// ---------------------------------------------------------------- STT recognize

struct FlakyRecognizer {
    attempts: Attempts,
    /// Errors returned by the first attempts; then success.
    errors: Mutex<VecDeque<ApiError>>,
}

#[async_trait]
impl Stt for FlakyRecognizer {
    fn label(&self) -> String {
        "fake.STT".into()
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            offline_recognize: true,
            ..Default::default()
        }
    }

    async fn recognize_once(
        &self,
        _frames: &[AudioFrame],
        _language: Option<&str>,
        _conn: &ApiConnectOptions,
    ) -> Result<SpeechEvent, ApiError> {
        self.attempts.record();
        match self.errors.lock().pop_front() {
            Some(e) => Err(e),
            None => Ok(final_event("hello")),
        }
    }
}

fn final_event(text: &str) -> SpeechEvent {
    SpeechEvent::transcript(
        SpeechEventType::FinalTranscript,
        SpeechData {
            text: text.into(),
            ..Default::default()
        },
    )
}

#[tokio::test(start_paused = true)]
async fn recognize_retries_with_short_then_regular_interval() {
    let stt = FlakyRecognizer {
        attempts: Attempts::new(),
        errors: Mutex::new([retryable(), retryable(), retryable()].into()),
    };
    let ev = stt::recognize(&stt, &[], None, opts(3, 2)).await.unwrap();
    assert_eq!(ev.text(), "hello");
    assert_eq!(stt.attempts.times(), [ms(0), ms(100), ms(2100), ms(4100)]);
}

#[tokio::test(start_paused = true)]
async fn recognize_gives_up_after_max_retry() {
    let stt = FlakyRecognizer {
        attempts: Attempts::new(),
        errors: Mutex::new(std::iter::repeat_with(retryable).take(10).collect()),
    };
    let err = stt::recognize(&stt, &[], None, opts(2, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Connection { .. }));
    assert_eq!(stt.attempts.times(), [ms(0), ms(100), ms(1100)]);
}

#[tokio::test(start_paused = true)]
async fn recognize_does_not_retry_non_retryable_errors() {
    let stt = FlakyRecognizer {
        attempts: Attempts::new(),
        errors: Mutex::new([fatal(), retryable()].into()),
    };
    let err = stt::recognize(&stt, &[], None, opts(3, 2))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Status { status: 401, .. }));
    assert_eq!(stt.attempts.count(), 1);
    // Protocol errors are not retried either.
    let stt = FlakyRecognizer {
        attempts: Attempts::new(),
        errors: Mutex::new([ApiError::protocol("garbled")].into()),
    };
    assert!(stt::recognize(&stt, &[], None, opts(3, 2)).await.is_err());
    assert_eq!(stt.attempts.count(), 1);
}

// ---------------------------------------------------------------- STT stream

/// What one streaming attempt does.
#[derive(Clone)]
enum SttStep {
    /// Reads one input item; a frame is answered with a final transcript of `text`.
    ReadAndFinal(&'static str),
    /// Fails.
    Fail(ApiError),
    /// Reads until input ends, then returns Ok.
    Drain,
    /// Panics (a provider bug, e.g. arithmetic on a number the provider sent).
    Panic,
}

struct ScriptedSttTask {
    attempts: Attempts,
    scripts: VecDeque<Vec<SttStep>>,
}

#[async_trait]
impl SttStreamTask for ScriptedSttTask {
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        self.attempts.record();
        let script = self.scripts.pop_front().unwrap_or(vec![SttStep::Drain]);
        for step in script {
            match step {
                SttStep::ReadAndFinal(text) => {
                    if let Some(SttInput::Frame(_)) = input.recv().await {
                        events.send(final_event(text)).await;
                    }
                }
                SttStep::Fail(e) => return Err(e),
                SttStep::Drain => while input.recv().await.is_some() {},
                SttStep::Panic => panic!("absurd final window"),
            }
        }
        Ok(())
    }
}

async fn drain_stt(stream: &mut SpeechStream) -> (Vec<String>, Option<ApiError>) {
    let mut texts = Vec::new();
    while let Some(ev) = stream.next_event().await {
        match ev {
            Ok(ev) => texts.push(ev.text().to_owned()),
            Err(e) => return (texts, Some(e)),
        }
    }
    (texts, None)
}

#[tokio::test(start_paused = true)]
async fn speech_stream_reconnects_and_keeps_input() {
    let attempts = Attempts::new();
    let task = ScriptedSttTask {
        attempts: attempts.clone(),
        scripts: [
            vec![SttStep::Fail(retryable())],
            vec![SttStep::Fail(retryable())],
            vec![SttStep::ReadAndFinal("one"), SttStep::Drain],
        ]
        .into(),
    };
    let mut stream = SpeechStream::spawn("fake.STT", opts(3, 2), task);
    stream.push_frame(AudioFrame::silence(16_000, 1, 160));
    stream.end_input();
    let (texts, err) = drain_stt(&mut stream).await;
    assert_eq!(texts, ["one"]);
    assert!(err.is_none());
    assert_eq!(attempts.times(), [ms(0), ms(100), ms(2100)]);
}

#[tokio::test(start_paused = true)]
async fn speech_stream_retry_counter_resets_after_final_transcript() {
    // max_retry = 1: without the reset, the third failure would end the stream.
    let attempts = Attempts::new();
    let task = ScriptedSttTask {
        attempts: attempts.clone(),
        scripts: [
            vec![SttStep::Fail(retryable())],
            vec![SttStep::ReadAndFinal("a"), SttStep::Fail(retryable())],
            vec![SttStep::ReadAndFinal("b"), SttStep::Fail(retryable())],
            vec![SttStep::Drain],
        ]
        .into(),
    };
    let mut stream = SpeechStream::spawn("fake.STT", opts(1, 2), task);
    stream.push_frame(AudioFrame::silence(16_000, 1, 160));
    stream.push_frame(AudioFrame::silence(16_000, 1, 160));
    stream.end_input();
    let (texts, err) = drain_stt(&mut stream).await;
    assert_eq!(texts, ["a", "b"]);
    assert!(err.is_none(), "{err:?}");
    // Every retry is a "first" retry again (0.1 s) because a final came in between.
    assert_eq!(attempts.times(), [ms(0), ms(100), ms(200), ms(300)]);
}

#[tokio::test(start_paused = true)]
async fn speech_stream_ends_with_error_after_max_retry() {
    let attempts = Attempts::new();
    let task = ScriptedSttTask {
        attempts: attempts.clone(),
        scripts: std::iter::repeat_n(vec![SttStep::Fail(retryable())], 5).collect(),
    };
    let mut stream = SpeechStream::spawn("fake.STT", opts(2, 3), task);
    let (texts, err) = drain_stt(&mut stream).await;
    assert!(texts.is_empty());
    assert!(err.is_some_and(|e| e.is_retryable()));
    assert_eq!(attempts.times(), [ms(0), ms(100), ms(3100)]);
}

#[tokio::test(start_paused = true)]
async fn speech_stream_does_not_retry_fatal_errors() {
    let attempts = Attempts::new();
    let task = ScriptedSttTask {
        attempts: attempts.clone(),
        scripts: [vec![SttStep::Fail(fatal())]].into(),
    };
    let mut stream = SpeechStream::spawn("fake.STT", opts(3, 2), task);
    let (_, err) = drain_stt(&mut stream).await;
    assert!(matches!(err, Some(ApiError::Status { status: 401, .. })));
    assert_eq!(attempts.count(), 1);
}

/// Issue 15 item 4: a panicked attempt is a failed attempt: the stream is reopened (it used to
/// end as if the provider had finished).
#[tokio::test(start_paused = true)]
async fn speech_stream_reopens_after_a_panicked_attempt() {
    let attempts = Attempts::new();
    let task = ScriptedSttTask {
        attempts: attempts.clone(),
        scripts: [
            vec![SttStep::Panic],
            vec![SttStep::ReadAndFinal("one"), SttStep::Drain],
        ]
        .into(),
    };
    let mut stream = SpeechStream::spawn("fake.STT", opts(3, 2), task);
    stream.push_frame(AudioFrame::silence(16_000, 1, 160));
    stream.end_input();
    let (texts, err) = drain_stt(&mut stream).await;
    assert_eq!(texts, ["one"]);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(attempts.count(), 2);
}

/// Issue 15 item 4: panics past the retry budget end the stream with an error, not cleanly.
#[tokio::test(start_paused = true)]
async fn speech_stream_ends_with_an_error_when_attempts_keep_panicking() {
    let attempts = Attempts::new();
    let task = ScriptedSttTask {
        attempts: attempts.clone(),
        scripts: std::iter::repeat_n(vec![SttStep::Panic], 5).collect(),
    };
    let mut stream = SpeechStream::spawn("fake.STT", opts(1, 2), task);
    let (_, err) = drain_stt(&mut stream).await;
    assert!(
        matches!(&err, Some(ApiError::TaskPanicked { message: m }) if m.contains("absurd final window")),
        "{err:?}"
    );
    assert_eq!(attempts.count(), 2);
}

// ---------------------------------------------------------------- LLM

struct ScriptedLlm {
    attempts: Attempts,
    /// Per attempt: text chunks to send, then the error to fail with (if any).
    scripts: VecDeque<(Vec<&'static str>, Option<ApiError>)>,
}

#[async_trait]
impl LlmStreamTask for ScriptedLlm {
    async fn run(&mut self, out: &ChunkSender) -> Result<(), ApiError> {
        self.attempts.record();
        let (chunks, error) = self.scripts.pop_front().unwrap_or_default();
        for c in chunks {
            out.send(ChatChunk::text("resp", c)).await;
        }
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn llm_retries_before_content() {
    let attempts = Attempts::new();
    let task = ScriptedLlm {
        attempts: attempts.clone(),
        scripts: [
            (vec![], Some(retryable())),
            (vec![], Some(ApiError::Timeout(Duration::from_secs(10)))),
            (vec!["Hello", " there"], None),
        ]
        .into(),
    };
    let resp = LlmStream::spawn("fake.LLM", opts(3, 2), task)
        .collect()
        .await
        .unwrap();
    assert_eq!(resp.text, "Hello there");
    assert_eq!(attempts.times(), [ms(0), ms(100), ms(2100)]);
}

#[tokio::test(start_paused = true)]
async fn llm_is_not_retried_after_content() {
    let attempts = Attempts::new();
    let task = ScriptedLlm {
        attempts: attempts.clone(),
        scripts: [(vec!["Hel"], Some(retryable())), (vec!["Hello"], None)].into(),
    };
    let mut stream = LlmStream::spawn("fake.LLM", opts(3, 2), task);
    let first = stream.next_chunk().await.unwrap().unwrap();
    assert!(first.has_content());
    assert!(matches!(
        stream.next_chunk().await,
        Some(Err(ApiError::Connection { .. }))
    ));
    assert!(stream.next_chunk().await.is_none());
    assert_eq!(attempts.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn llm_does_not_retry_fatal_errors() {
    let attempts = Attempts::new();
    let task = ScriptedLlm {
        attempts: attempts.clone(),
        scripts: [(vec![], Some(ApiError::status(400, "bad request")))].into(),
    };
    assert!(LlmStream::spawn("fake.LLM", opts(3, 2), task)
        .collect()
        .await
        .is_err());
    assert_eq!(attempts.count(), 1);
}

/// An LLM attempt that sends `before` then panics (like a tool-call index near `usize::MAX`).
struct PanickingLlm {
    attempts: Attempts,
    before: Vec<&'static str>,
    panics: usize,
}

#[async_trait]
impl LlmStreamTask for PanickingLlm {
    async fn run(&mut self, out: &ChunkSender) -> Result<(), ApiError> {
        self.attempts.record();
        for c in &self.before {
            out.send(ChatChunk::text("resp", *c)).await;
        }
        if self.panics > 0 {
            self.panics -= 1;
            panic!("tool call index overflow");
        }
        out.send(ChatChunk::text("resp", "done")).await;
        Ok(())
    }
}

/// Issue 15 item 4: a panic after content is an error, never `Ok` with partial text.
#[tokio::test(start_paused = true)]
async fn llm_panic_after_content_is_an_error() {
    let attempts = Attempts::new();
    let task = PanickingLlm {
        attempts: attempts.clone(),
        before: vec!["Hel"],
        panics: 1,
    };
    let mut stream = LlmStream::spawn("fake.LLM", opts(3, 2), task);
    assert!(stream.next_chunk().await.unwrap().unwrap().has_content());
    assert!(matches!(
        stream.next_chunk().await,
        Some(Err(ApiError::TaskPanicked { .. }))
    ));
    assert!(stream.next_chunk().await.is_none());
    assert_eq!(attempts.count(), 1);
}

/// Issue 15 item 4: a panic before any content is retried like a dropped connection.
#[tokio::test(start_paused = true)]
async fn llm_panic_before_content_is_retried() {
    let attempts = Attempts::new();
    let task = PanickingLlm {
        attempts: attempts.clone(),
        before: vec![],
        panics: 1,
    };
    let resp = LlmStream::spawn("fake.LLM", opts(3, 2), task)
        .collect()
        .await
        .unwrap();
    assert_eq!(resp.text, "done");
    assert_eq!(attempts.count(), 2);
}

// ---------------------------------------------------------------- TTS chunked

struct ScriptedChunked {
    attempts: Attempts,
    /// Per attempt: samples to push, then the error to fail with (if any).
    scripts: VecDeque<(usize, Option<ApiError>)>,
}

#[async_trait]
impl ChunkedTtsTask for ScriptedChunked {
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
        self.attempts.record();
        let (samples, error) = self.scripts.pop_front().unwrap_or((0, None));
        if samples > 0 {
            emitter.push_samples(&vec![1i16; samples]).await;
        }
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn chunked_tts_retries_before_audio() {
    let attempts = Attempts::new();
    let task = ScriptedChunked {
        attempts: attempts.clone(),
        scripts: [(0, Some(retryable())), (0, Some(retryable())), (2400, None)].into(),
    };
    let frame = ChunkedStream::spawn("fake.TTS", opts(3, 2), 24_000, 1, task)
        .collect()
        .await
        .unwrap();
    assert_eq!(frame.samples_per_channel, 2400);
    assert_eq!(attempts.times(), [ms(0), ms(100), ms(2100)]);
}

#[tokio::test(start_paused = true)]
async fn chunked_tts_is_not_retried_after_audio() {
    let attempts = Attempts::new();
    let task = ScriptedChunked {
        attempts: attempts.clone(),
        scripts: [(2400, Some(retryable())), (2400, None)].into(),
    };
    let err = ChunkedStream::spawn("fake.TTS", opts(3, 2), 24_000, 1, task)
        .collect()
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(attempts.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn chunked_tts_gives_up_after_max_retry() {
    let attempts = Attempts::new();
    let task = ScriptedChunked {
        attempts: attempts.clone(),
        scripts: std::iter::repeat_with(|| (0, Some(retryable())))
            .take(5)
            .collect(),
    };
    let result = ChunkedStream::spawn("fake.TTS", opts(1, 2), 24_000, 1, task)
        .collect()
        .await;
    assert!(result.is_err());
    assert_eq!(attempts.times(), [ms(0), ms(100)]);
}

// ---------------------------------------------------------------- TTS stream

/// Each attempt reads the whole input, records it, and fails or answers each segment with
/// audio.
struct ScriptedTtsStream {
    attempts: Attempts,
    seen: Arc<Mutex<Vec<Vec<TtsInput>>>>,
    /// Per attempt: push audio for the first segment before failing with this error.
    scripts: VecDeque<(bool, Option<ApiError>)>,
}

#[async_trait]
impl TtsStreamTask for ScriptedTtsStream {
    async fn run(
        &mut self,
        input: &mut TtsInputReceiver,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError> {
        self.attempts.record();
        let (audio_first, error) = self.scripts.pop_front().unwrap_or((true, None));
        let mut seen = Vec::new();
        while let Some(item) = input.recv().await {
            let is_flush = item == TtsInput::Flush;
            seen.push(item);
            if is_flush {
                if audio_first || error.is_none() {
                    emitter.start_segment("seg");
                    emitter.push_samples(&[1i16; 1200]).await;
                    emitter.end_segment().await;
                }
                if let Some(e) = error.clone() {
                    self.seen.lock().push(seen);
                    return Err(e);
                }
            }
        }
        self.seen.lock().push(seen);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn tts_stream_replays_pushed_text_on_retry() {
    let attempts = Attempts::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let task = ScriptedTtsStream {
        attempts: attempts.clone(),
        seen: seen.clone(),
        scripts: [(false, Some(retryable())), (false, None)].into(),
    };
    let mut stream = SynthesizeStream::spawn("fake.TTS", opts(3, 2), 24_000, 1, task);
    stream.push_text("Hello ");
    stream.push_text("world.");
    stream.end_input();
    let mut samples = 0;
    while let Some(audio) = stream.next_audio().await {
        samples += audio.unwrap().frame.samples_per_channel;
    }
    assert_eq!(samples, 1200);
    assert_eq!(attempts.times(), [ms(0), ms(100)]);
    let expected = vec![
        TtsInput::Text("Hello ".into()),
        TtsInput::Text("world.".into()),
        TtsInput::Flush,
    ];
    assert_eq!(*seen.lock(), [expected.clone(), expected]);
}

#[tokio::test(start_paused = true)]
async fn tts_stream_is_not_retried_after_audio() {
    let attempts = Attempts::new();
    let task = ScriptedTtsStream {
        attempts: attempts.clone(),
        seen: Arc::default(),
        scripts: [(true, Some(retryable()))].into(),
    };
    let mut stream = SynthesizeStream::spawn("fake.TTS", opts(3, 2), 24_000, 1, task);
    stream.push_text("Hi.");
    stream.end_input();
    let mut got_audio = false;
    let mut got_error = false;
    while let Some(item) = stream.next_audio().await {
        match item {
            Ok(_) => got_audio = true,
            Err(e) => {
                assert!(e.is_retryable());
                got_error = true;
            }
        }
    }
    assert!(got_audio && got_error);
    assert_eq!(attempts.count(), 1);
}

/// A chunked synthesis that pushes audio, then panics.
struct PanickingChunked;

#[async_trait]
impl ChunkedTtsTask for PanickingChunked {
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
        emitter.push_samples(&[1i16; 2400]).await;
        panic!("decoder bug");
    }
}

/// Issue 15 item 4 (TTS too): a panic after audio ends the synthesis with an error.
#[tokio::test(start_paused = true)]
async fn chunked_tts_panic_is_an_error() {
    let result = ChunkedStream::spawn("fake.TTS", opts(3, 2), 24_000, 1, PanickingChunked)
        .collect()
        .await;
    assert!(
        matches!(result, Err(ApiError::TaskPanicked { .. })),
        "{result:?}"
    );
}
