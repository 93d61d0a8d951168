//! Fallback adapters over providers built on the core stream drivers: the per-provider retry
//! policy comes from the adapter's options, then the adapter switches provider. Paused clock.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::time::Instant;

use livekit_agents::audio::AudioFrame;
use livekit_agents::llm::{
    self, ChatChunk, ChatContext, ChatRequest, ChunkSender, Llm, LlmStream, LlmStreamTask,
};
use livekit_agents::stt::{
    self, SpeechData, SpeechEvent, SpeechEventSender, SpeechEventType, SpeechStream, Stt,
    SttCapabilities, SttInput, SttInputReceiver, SttStreamTask,
};
use livekit_agents::tts::{
    self, AudioEmitter, ChunkedStream, ChunkedTtsTask, Tts, TtsCapabilities,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};

/// Attempt start times (since `start`) per provider label.
#[derive(Clone)]
struct Log {
    start: Instant,
    entries: Arc<Mutex<Vec<(&'static str, Duration)>>>,
}

impl Log {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            entries: Arc::default(),
        }
    }

    fn record(&self, who: &'static str) {
        self.entries.lock().push((who, self.start.elapsed()));
    }

    fn entries(&self) -> Vec<(&'static str, Duration)> {
        self.entries.lock().clone()
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// ------------------------------------------------------------------- LLM

struct DriverLlm {
    name: &'static str,
    healthy: bool,
    log: Log,
}

struct DriverLlmTask {
    name: &'static str,
    healthy: bool,
    log: Log,
}

#[async_trait]
impl LlmStreamTask for DriverLlmTask {
    async fn run(&mut self, out: &ChunkSender) -> Result<(), ApiError> {
        self.log.record(self.name);
        if !self.healthy {
            return Err(ApiError::status(503, "overloaded"));
        }
        out.send(ChatChunk::text("r", self.name)).await;
        Ok(())
    }
}

#[async_trait]
impl Llm for DriverLlm {
    fn label(&self) -> String {
        self.name.into()
    }
    fn model(&self) -> String {
        String::new()
    }
    fn provider(&self) -> String {
        String::new()
    }
    fn chat(&self, request: ChatRequest) -> LlmStream {
        LlmStream::spawn(
            self.name,
            request.conn,
            DriverLlmTask {
                name: self.name,
                healthy: self.healthy,
                log: self.log.clone(),
            },
        )
    }
}

#[tokio::test(start_paused = true)]
async fn llm_fallback_retries_per_provider_then_switches() {
    let log = Log::new();
    let a = Arc::new(DriverLlm {
        name: "a",
        healthy: false,
        log: log.clone(),
    });
    let b = Arc::new(DriverLlm {
        name: "b",
        healthy: true,
        log: log.clone(),
    });
    let options = llm::LlmFallbackOptions::default().with_max_retry_per_llm(1);
    let adapter = llm::FallbackAdapter::with_options(vec![a, b], options).unwrap();
    let mut ctx = ChatContext::new();
    ctx.add_message(llm::ChatRole::User, "hi");
    let resp = adapter.chat(ChatRequest::new(ctx)).collect().await.unwrap();
    assert_eq!(resp.text, "b");
    // a: first attempt, one retry after 0.1 s; then b. (a's recovery probe follows later.)
    assert_eq!(
        log.entries()[..3],
        [("a", ms(0)), ("a", ms(100)), ("b", ms(100))]
    );
}

// ------------------------------------------------------------------- STT

struct DriverStt {
    name: &'static str,
    healthy: bool,
    log: Log,
}

struct DriverSttTask {
    name: &'static str,
    healthy: bool,
    log: Log,
}

#[async_trait]
impl SttStreamTask for DriverSttTask {
    async fn run(
        &mut self,
        input: &mut SttInputReceiver,
        events: &SpeechEventSender,
    ) -> Result<(), ApiError> {
        self.log.record(self.name);
        if !self.healthy {
            return Err(ApiError::connection("refused"));
        }
        while let Some(item) = input.recv().await {
            if let SttInput::Frame(_) = item {
                let ev = SpeechEvent::transcript(
                    SpeechEventType::FinalTranscript,
                    SpeechData {
                        text: self.name.into(),
                        ..Default::default()
                    },
                );
                events.send(ev).await;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Stt for DriverStt {
    fn label(&self) -> String {
        self.name.into()
    }
    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            streaming: true,
            ..Default::default()
        }
    }
    fn stream(
        &self,
        _language: Option<String>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        Ok(SpeechStream::spawn(
            self.name,
            conn,
            DriverSttTask {
                name: self.name,
                healthy: self.healthy,
                log: self.log.clone(),
            },
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn stt_fallback_uses_reference_retry_defaults_then_switches() {
    let log = Log::new();
    let a = Arc::new(DriverStt {
        name: "a",
        healthy: false,
        log: log.clone(),
    });
    let b = Arc::new(DriverStt {
        name: "b",
        healthy: true,
        log: log.clone(),
    });
    let adapter = stt::FallbackAdapter::new(vec![a, b]).unwrap();
    let mut stream = adapter.stream(None, ApiConnectOptions::default()).unwrap();
    stream.push_frame(AudioFrame::silence(16_000, 1, 160));
    let ev = stream.next_event().await.unwrap().unwrap();
    assert_eq!(ev.text(), "b");
    // max_retry_per_stt = 1 (first retry after 0.1 s), then b; the frame pushed meanwhile is
    // replayed to b.
    assert_eq!(
        log.entries()[..3],
        [("a", ms(0)), ("a", ms(100)), ("b", ms(100))]
    );
    assert_eq!(adapter.availability(), [false, true]);
}

// ------------------------------------------------------------------- TTS

struct DriverTts {
    name: &'static str,
    rate: u32,
    healthy: bool,
    log: Log,
}

struct DriverTtsTask {
    name: &'static str,
    healthy: bool,
    log: Log,
}

#[async_trait]
impl ChunkedTtsTask for DriverTtsTask {
    async fn run(&mut self, emitter: &AudioEmitter) -> Result<(), ApiError> {
        self.log.record(self.name);
        if !self.healthy {
            return Err(ApiError::Timeout(Duration::from_secs(10)));
        }
        // 100 ms of audio.
        emitter
            .push_samples(&vec![7; emitter.sample_rate() as usize / 10])
            .await;
        Ok(())
    }
}

#[async_trait]
impl Tts for DriverTts {
    fn label(&self) -> String {
        self.name.into()
    }
    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities::default()
    }
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn synthesize(&self, _text: &str, conn: ApiConnectOptions) -> ChunkedStream {
        ChunkedStream::spawn(
            self.name,
            conn,
            self.rate,
            1,
            DriverTtsTask {
                name: self.name,
                healthy: self.healthy,
                log: self.log.clone(),
            },
        )
    }
}

#[tokio::test(start_paused = true)]
async fn tts_fallback_retries_twice_then_switches_and_resamples() {
    let log = Log::new();
    let a = Arc::new(DriverTts {
        name: "a",
        rate: 48_000,
        healthy: false,
        log: log.clone(),
    });
    let b = Arc::new(DriverTts {
        name: "b",
        rate: 16_000,
        healthy: true,
        log: log.clone(),
    });
    let adapter = tts::FallbackAdapter::new(vec![a, b]).unwrap();
    assert_eq!(adapter.sample_rate(), 48_000);
    let mut audio = adapter.synthesize("Hello.", ApiConnectOptions::default());
    let mut samples = 0;
    while let Some(item) = audio.next().await {
        let item = item.unwrap();
        assert_eq!(item.frame.sample_rate, 48_000);
        samples += item.frame.samples_per_channel;
    }
    // b's 100 ms at 16 kHz, resampled to 48 kHz.
    assert_eq!(samples, 4_800);
    // max_retry_per_tts = 2 with the caller's 2 s interval: a at 0, 0.1 s, 2.1 s; then b.
    assert_eq!(
        log.entries()[..4],
        [
            ("a", ms(0)),
            ("a", ms(100)),
            ("a", ms(2100)),
            ("b", ms(2100))
        ]
    );
}
