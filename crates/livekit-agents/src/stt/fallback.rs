//! [`FallbackAdapter`]: an [`Stt`] over several providers that switches to the next one when
//! the current one fails, without ending the stream.
//!
//! A failed provider is marked unavailable ([`AvailabilityChanged`] is sent) and probed in the
//! background: for streams, a probe stream receives a copy of the live audio and the provider
//! is available again once it delivers a non-empty final transcript; for [`Stt::recognize_once`],
//! the same buffer is recognized again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{
    SpeechEvent, SpeechEventType, SpeechStream, StreamAdapter, Stt, SttCapabilities, SttInput,
    SttInputHandle, EVENT_BUFFER,
};
use crate::audio::AudioFrame;
use crate::llm::fallback::ProviderHealth;
pub use crate::llm::fallback::{AvailabilityChanged, NoProviders};
use crate::types::{ApiConnectOptions, ApiError};
use crate::vad::Vad;

/// Options of an STT [`FallbackAdapter`]. Defaults match the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct SttFallbackOptions {
    /// Timeout of one attempt on one provider (its `conn.timeout`; for
    /// [`Stt::recognize_once`] also enforced by the adapter). Default 10 s.
    pub attempt_timeout: Duration,
    /// Retries on the same provider before switching. Default 1.
    pub max_retry_per_stt: u32,
    /// Wait between retries on the same provider (the first retry waits 0.1 s). Default 5 s.
    pub retry_interval: Duration,
    /// Most audio kept for replay: when a provider fails, the audio received since the last
    /// final transcript (up to this much) is sent again to the next one, so the utterance in
    /// progress is not lost. Default 30 s.
    pub max_replay: Duration,
}

impl Default for SttFallbackOptions {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(10),
            max_retry_per_stt: 1,
            retry_interval: Duration::from_secs(5),
            max_replay: Duration::from_secs(30),
        }
    }
}

impl SttFallbackOptions {
    fn member_conn(&self) -> ApiConnectOptions {
        ApiConnectOptions {
            max_retry: self.max_retry_per_stt,
            timeout: self.attempt_timeout,
            retry_interval: self.retry_interval,
        }
    }
}

/// An [`Stt`] over several providers, used in order.
///
/// Non-streaming providers need a VAD to stream: give one with
/// [`with_vad`](FallbackAdapter::with_vad) and they are wrapped in a [`StreamAdapter`].
///
/// ```no_run
/// # use std::sync::Arc;
/// # use livekit_agents::stt::{FallbackAdapter, Stt};
/// # fn demo(deepgram: Arc<dyn Stt>, assemblyai: Arc<dyn Stt>) {
/// let stt = FallbackAdapter::new(vec![deepgram, assemblyai]).expect("providers");
/// assert_eq!(stt.availability(), [true, true]);
/// # }
/// ```
#[derive(Clone)]
pub struct FallbackAdapter {
    stts: Arc<Vec<Arc<dyn Stt>>>,
    options: SttFallbackOptions,
    health: Arc<ProviderHealth>,
}

impl std::fmt::Debug for FallbackAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackAdapter")
            .field("stts", &self.health.labels())
            .field("available", &self.health.availability())
            .field("options", &self.options)
            .finish()
    }
}

impl FallbackAdapter {
    /// An adapter over `stts` (preferred first) with default options.
    pub fn new(stts: Vec<Arc<dyn Stt>>) -> Result<Self, NoProviders> {
        Self::with_options(stts, SttFallbackOptions::default())
    }

    /// An adapter over `stts` (preferred first).
    pub fn with_options(
        stts: Vec<Arc<dyn Stt>>,
        options: SttFallbackOptions,
    ) -> Result<Self, NoProviders> {
        if stts.is_empty() {
            return Err(NoProviders);
        }
        let health = ProviderHealth::new(stts.iter().map(|s| s.label()).collect());
        Ok(Self {
            stts: Arc::new(stts),
            options,
            health,
        })
    }

    /// Wraps the non-streaming providers in a [`StreamAdapter`] with `vad`, so that the
    /// adapter can stream.
    pub fn with_vad(self, vad: Arc<dyn Vad>) -> Self {
        let stts = self
            .stts
            .iter()
            .map(|stt| {
                if stt.capabilities().streaming {
                    stt.clone()
                } else {
                    Arc::new(StreamAdapter::new(stt.clone(), vad.clone())) as Arc<dyn Stt>
                }
            })
            .collect();
        Self {
            stts: Arc::new(stts),
            ..self
        }
    }

    /// Availability changes of the providers (a slow reader gets `Err(Lagged)` for what it
    /// missed).
    pub fn events(&self) -> crate::types::EventStream<AvailabilityChanged> {
        crate::types::EventStream::new(self.health.subscribe())
    }

    /// Current availability of each provider, in order.
    pub fn availability(&self) -> Vec<bool> {
        self.health.availability()
    }

    /// The options.
    pub fn options(&self) -> &SttFallbackOptions {
        &self.options
    }

    /// One recognition on one provider with the adapter's retry policy and enforced timeout.
    async fn recognize_on(
        &self,
        stt: &dyn Stt,
        frames: &[AudioFrame],
        language: Option<&str>,
        conn: ApiConnectOptions,
    ) -> Result<SpeechEvent, ApiError> {
        let mut retries = 0;
        loop {
            let attempt =
                tokio::time::timeout(conn.timeout, stt.recognize_once(frames, language, &conn))
                    .await
                    .unwrap_or(Err(ApiError::Timeout(conn.timeout)));
            match attempt {
                Err(e) if e.is_retryable() && retries < conn.max_retry => {
                    tracing::warn!(stt = %stt.label(), error = %e, "recognition failed, retrying");
                    tokio::time::sleep(conn.interval_for_retry(retries)).await;
                    retries += 1;
                }
                other => return other,
            }
        }
    }

    fn start_recognize_probe(&self, index: usize, frames: &[AudioFrame], language: Option<&str>) {
        let stt = self.stts[index].clone();
        let frames = frames.to_vec();
        let language = language.map(str::to_owned);
        let conn = self.options.member_conn().no_retry();
        self.health.start_probe(index, async move {
            let attempt = stt.recognize_once(&frames, language.as_deref(), &conn);
            matches!(tokio::time::timeout(conn.timeout, attempt).await, Ok(Ok(_)))
        });
    }

    fn start_stream_probe(
        &self,
        index: usize,
        language: Option<String>,
        mirrors: Weak<Mutex<Vec<SttInputHandle>>>,
    ) {
        let stt = self.stts[index].clone();
        let conn = self.options.member_conn().no_retry();
        self.health.start_probe(index, async move {
            let Ok(mut probe) = stt.stream(language, conn) else {
                return false;
            };
            match mirrors.upgrade() {
                Some(m) => m.lock().push(probe.input_handle()),
                None => return false,
            }
            // Only the mirror keeps the probe's input open: it closes with the main stream.
            probe.end_input();
            while let Some(ev) = probe.next_event().await {
                match ev {
                    Ok(ev)
                        if ev.kind == SpeechEventType::FinalTranscript
                            && !ev.text().trim().is_empty() =>
                    {
                        return true
                    }
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
            false
        });
    }
}

#[async_trait]
impl Stt for FallbackAdapter {
    fn label(&self) -> String {
        "stt.FallbackAdapter".into()
    }

    fn model(&self) -> String {
        self.stts[0].model()
    }

    fn provider(&self) -> String {
        self.stts[0].provider()
    }

    fn capabilities(&self) -> SttCapabilities {
        let caps: Vec<SttCapabilities> = self.stts.iter().map(|s| s.capabilities()).collect();
        SttCapabilities {
            streaming: caps.iter().all(|c| c.streaming),
            interim_results: caps.iter().all(|c| c.interim_results),
            diarization: caps.iter().all(|c| c.diarization),
            aligned_transcript: None,
            offline_recognize: caps.iter().all(|c| c.offline_recognize),
        }
    }

    /// Any provider accepts keyterms (the reference); each that does gets them.
    fn supports_keyterms(&self) -> bool {
        self.stts.iter().any(|s| s.supports_keyterms())
    }

    fn update_session_keyterms(&self, keyterms: &[String]) {
        for stt in self.stts.iter().filter(|s| s.supports_keyterms()) {
            stt.update_session_keyterms(keyterms);
        }
    }

    fn supports_chat_context(&self) -> bool {
        self.stts.iter().any(|s| s.supports_chat_context())
    }

    fn push_conversation_item(&self, item: &crate::llm::ChatItem) {
        for stt in self.stts.iter().filter(|s| s.supports_chat_context()) {
            stt.push_conversation_item(item);
        }
    }

    /// Recognizes with the first available provider, switching on failure. The caller's `conn`
    /// is not used: each provider gets the adapter's options. The final error ("all STTs
    /// failed") is not retryable, so [`super::recognize`] does not repeat the whole sweep.
    async fn recognize_once(
        &self,
        frames: &[AudioFrame],
        language: Option<&str>,
        _conn: &ApiConnectOptions,
    ) -> Result<SpeechEvent, ApiError> {
        let candidates = self.health.candidates();
        let mut last_error = None;
        for (index, stt) in self.stts.iter().enumerate() {
            if !candidates.contains(&index) {
                self.start_recognize_probe(index, frames, language);
                continue;
            }
            match self
                .recognize_on(stt.as_ref(), frames, language, self.options.member_conn())
                .await
            {
                Ok(ev) => return Ok(ev),
                Err(error) => {
                    tracing::warn!(stt = %stt.label(), %error, "STT failed, switching to the next one");
                    self.health.set_available(index, false);
                    self.start_recognize_probe(index, frames, language);
                    last_error = Some(error);
                }
            }
        }
        Err(all_failed(&self.health, last_error))
    }

    fn stream(
        &self,
        language: Option<String>,
        _conn: ApiConnectOptions,
    ) -> Result<SpeechStream, ApiError> {
        let (in_tx, in_rx) = crate::model_input::channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
        let adapter = self.clone();
        let task = tokio::spawn(async move { adapter.run_stream(language, in_rx, ev_tx).await });
        Ok(SpeechStream::from_channels(in_tx, ev_rx, Some(task)))
    }

    async fn prewarm(&self) {
        self.stts[0].prewarm().await;
    }
}

fn all_failed(health: &ProviderHealth, last_error: Option<ApiError>) -> ApiError {
    let labels = health.labels().join(", ");
    let message = match last_error {
        Some(e) => format!("all STTs failed ({labels}); last error: {e}"),
        None => format!("all STTs failed ({labels})"),
    };
    ApiError::Connection {
        message,
        retryable: false,
    }
}

/// Audio received since the last final transcript, replayed to the next provider.
struct ReplayBuffer {
    frames: std::collections::VecDeque<AudioFrame>,
    duration: Duration,
    max: Duration,
}

impl ReplayBuffer {
    fn push(&mut self, frame: &AudioFrame) {
        self.duration += frame.duration();
        self.frames.push_back(frame.clone());
        while self.duration > self.max {
            match self.frames.pop_front() {
                Some(old) => self.duration = self.duration.saturating_sub(old.duration()),
                None => break,
            }
        }
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.duration = Duration::ZERO;
    }
}

impl FallbackAdapter {
    async fn run_stream(
        &self,
        language: Option<String>,
        mut input: crate::model_input::InputReceiver<SttInput>,
        events: mpsc::Sender<Result<SpeechEvent, ApiError>>,
    ) {
        let mirrors: Arc<Mutex<Vec<SttInputHandle>>> = Arc::default();
        let mut replay = ReplayBuffer {
            frames: Default::default(),
            duration: Duration::ZERO,
            max: self.options.max_replay,
        };
        // Providers that failed in this stream since the last final transcript.
        let mut failed_here = vec![false; self.stts.len()];
        let mut input_ended = false;
        let mut last_error = None;

        for (index, available) in self.health.availability().into_iter().enumerate() {
            if !available {
                self.start_stream_probe(index, language.clone(), Arc::downgrade(&mirrors));
            }
        }

        loop {
            let availability = self.health.availability();
            let next = (0..self.stts.len())
                .find(|i| availability[*i] && !failed_here[*i])
                .or_else(|| (0..self.stts.len()).find(|i| !failed_here[*i]));
            let Some(index) = next else {
                let _ = events.send(Err(all_failed(&self.health, last_error))).await;
                return;
            };
            let stt = &self.stts[index];

            let mut member = match stt.stream(language.clone(), self.options.member_conn()) {
                Ok(s) => s,
                Err(error) => {
                    tracing::warn!(stt = %stt.label(), %error, "STT stream could not start, switching");
                    failed_here[index] = true;
                    self.health.set_available(index, false);
                    last_error = Some(error);
                    continue;
                }
            };
            for frame in &replay.frames {
                member.push_frame(frame.clone());
            }
            if input_ended {
                member.end_input();
            }

            let error = loop {
                tokio::select! {
                    item = input.recv(), if !input_ended => match item {
                        Some(SttInput::Frame(frame)) => {
                            for m in mirrors.lock().iter() {
                                m.push_frame(frame.clone());
                            }
                            replay.push(&frame);
                            member.push_frame(frame);
                        }
                        Some(SttInput::Flush) => {
                            for m in mirrors.lock().iter() {
                                m.flush();
                            }
                            member.flush();
                        }
                        None => {
                            input_ended = true;
                            member.end_input();
                            // Closing the probes' input ends them.
                            mirrors.lock().clear();
                        }
                    },
                    ev = member.next_event() => match ev {
                        Some(Ok(ev)) => {
                            if ev.kind == SpeechEventType::FinalTranscript {
                                replay.clear();
                                failed_here.iter_mut().for_each(|f| *f = false);
                            }
                            if events.send(Ok(ev)).await.is_err() {
                                return;
                            }
                        }
                        Some(Err(error)) => break error,
                        None => return,
                    },
                }
            };

            tracing::warn!(stt = %stt.label(), %error, "STT stream failed, switching to the next one");
            failed_here[index] = true;
            self.health.set_available(index, false);
            if !input_ended {
                self.start_stream_probe(index, language.clone(), Arc::downgrade(&mirrors));
            }
            last_error = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::stt::SpeechData;

    #[derive(Clone, Copy)]
    enum Behavior {
        /// A final transcript `"<name>:<first sample>"` per frame.
        Echo,
        /// Echo, but fail when the n-th frame (1-based) arrives.
        FailOnFrame(usize),
        /// `stream()` itself fails.
        OpenError,
        /// Recognize: fail with a retryable error.
        RecognizeFail,
        /// Recognize: never answer.
        RecognizeHang,
        /// Recognize: answer `"<name>"`.
        RecognizeOk,
    }

    struct FakeStt {
        name: &'static str,
        script: Mutex<VecDeque<Behavior>>,
        fallback: Behavior,
        streams: AtomicUsize,
        recognizes: AtomicUsize,
        streaming: bool,
    }

    impl FakeStt {
        fn new(name: &'static str, script: Vec<Behavior>, fallback: Behavior) -> Arc<Self> {
            Arc::new(Self {
                name,
                script: Mutex::new(script.into()),
                fallback,
                streams: AtomicUsize::new(0),
                recognizes: AtomicUsize::new(0),
                streaming: true,
            })
        }

        fn next(&self) -> Behavior {
            self.script.lock().pop_front().unwrap_or(self.fallback)
        }
    }

    fn transcript(text: String) -> SpeechEvent {
        SpeechEvent::transcript(
            SpeechEventType::FinalTranscript,
            SpeechData {
                text,
                ..Default::default()
            },
        )
    }

    #[async_trait]
    impl Stt for FakeStt {
        fn label(&self) -> String {
            self.name.into()
        }

        fn capabilities(&self) -> SttCapabilities {
            SttCapabilities {
                streaming: self.streaming,
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
            self.recognizes.fetch_add(1, Ordering::SeqCst);
            match self.next() {
                Behavior::RecognizeHang => std::future::pending().await,
                Behavior::RecognizeOk => Ok(transcript(self.name.into())),
                _ => Err(ApiError::connection("down")),
            }
        }

        fn stream(
            &self,
            _language: Option<String>,
            _conn: ApiConnectOptions,
        ) -> Result<SpeechStream, ApiError> {
            self.streams.fetch_add(1, Ordering::SeqCst);
            let behavior = self.next();
            if let Behavior::OpenError = behavior {
                return Err(ApiError::status(401, "bad key"));
            }
            let name = self.name;
            let (in_tx, mut in_rx) = crate::model_input::channel();
            let (ev_tx, ev_rx) = mpsc::channel(16);
            let task = tokio::spawn(async move {
                let mut n = 0;
                while let Some(item) = in_rx.recv().await {
                    let SttInput::Frame(frame) = item else {
                        continue;
                    };
                    n += 1;
                    if let Behavior::FailOnFrame(k) = behavior {
                        if n == k {
                            let _ = ev_tx.send(Err(ApiError::connection("dropped"))).await;
                            return;
                        }
                    }
                    let id = frame.data.first().copied().unwrap_or(0);
                    if ev_tx
                        .send(Ok(transcript(format!("{name}:{id}"))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            Ok(SpeechStream::from_channels(in_tx, ev_rx, Some(task)))
        }
    }

    fn frame(id: i16) -> AudioFrame {
        AudioFrame::new(vec![id; 160], 16_000, 1).unwrap()
    }

    fn adapter(stts: &[&Arc<FakeStt>]) -> FallbackAdapter {
        FallbackAdapter::new(stts.iter().map(|s| (*s).clone() as Arc<dyn Stt>).collect()).unwrap()
    }

    async fn next_text(stream: &mut SpeechStream) -> String {
        match stream.next_event().await {
            Some(Ok(ev)) => ev.text().to_owned(),
            other => panic!("expected a transcript, got {other:?}"),
        }
    }

    #[test]
    fn reference_defaults() {
        let o = SttFallbackOptions::default();
        assert_eq!(o.attempt_timeout, Duration::from_secs(10));
        assert_eq!(o.max_retry_per_stt, 1);
        assert_eq!(o.retry_interval, Duration::from_secs(5));
        assert!(FallbackAdapter::new(vec![]).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn stream_switches_provider_replays_the_utterance_and_recovers() {
        let a = FakeStt::new("a", vec![Behavior::FailOnFrame(2)], Behavior::Echo);
        let b = FakeStt::new("b", vec![], Behavior::Echo);
        let stt = adapter(&[&a, &b]);
        let mut changes = stt.events();
        let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();

        stream.push_frame(frame(1));
        assert_eq!(next_text(&mut stream).await, "a:1");
        stream.push_frame(frame(2));
        // a fails on frame 2; b gets frame 2 again (nothing final since) and goes on.
        assert_eq!(next_text(&mut stream).await, "b:2");
        let down = changes.recv().await.unwrap().unwrap();
        assert_eq!((down.label.as_str(), down.available), ("a", false));
        assert_eq!(stt.availability(), [false, true]);

        // a's probe stream hears the live audio; its first final transcript brings it back.
        tokio::time::sleep(Duration::from_millis(10)).await;
        stream.push_frame(frame(3));
        assert_eq!(next_text(&mut stream).await, "b:3");
        let up = changes.recv().await.unwrap().unwrap();
        assert_eq!((up.label.as_str(), up.available), ("a", true));
        assert_eq!(a.streams.load(Ordering::SeqCst), 2);

        // The running stream stays on b; a new stream uses a again.
        stream.end_input();
        assert!(stream.next_event().await.is_none());
        let mut again = stt.stream(None, ApiConnectOptions::default()).unwrap();
        again.push_frame(frame(4));
        assert_eq!(next_text(&mut again).await, "a:4");
    }

    #[tokio::test(start_paused = true)]
    async fn stream_ends_with_an_error_when_every_provider_failed() {
        let a = FakeStt::new("a", vec![], Behavior::OpenError);
        let b = FakeStt::new("b", vec![], Behavior::FailOnFrame(1));
        let stt = adapter(&[&a, &b]);
        let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
        stream.push_frame(frame(1));
        match stream.next_event().await {
            Some(Err(e)) => {
                assert!(e.to_string().contains("all STTs failed (a, b)"), "{e}");
                assert!(!e.is_retryable());
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(stream.next_event().await.is_none());
        assert_eq!(stt.availability(), [false, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_providers_are_tried_again_when_all_are_down() {
        let a = FakeStt::new("a", vec![Behavior::OpenError], Behavior::Echo);
        let b = FakeStt::new("b", vec![Behavior::OpenError], Behavior::Echo);
        let stt = adapter(&[&a, &b]);
        let mut first = stt.stream(None, ApiConnectOptions::default()).unwrap();
        first.push_frame(frame(1));
        assert!(matches!(first.next_event().await, Some(Err(_))));
        assert_eq!(stt.availability(), [false, false]);
        let mut second = stt.stream(None, ApiConnectOptions::default()).unwrap();
        second.push_frame(frame(2));
        assert_eq!(next_text(&mut second).await, "a:2");
    }

    #[tokio::test(start_paused = true)]
    async fn recognize_retries_then_switches_and_probes_back() {
        let a = FakeStt::new(
            "a",
            vec![
                Behavior::RecognizeFail,
                Behavior::RecognizeFail,
                Behavior::RecognizeFail,
            ],
            Behavior::RecognizeOk,
        );
        let b = FakeStt::new("b", vec![], Behavior::RecognizeOk);
        let stt = adapter(&[&a, &b]);
        let start = tokio::time::Instant::now();
        let ev = stt
            .recognize_once(&[frame(1)], None, &ApiConnectOptions::default())
            .await;
        assert_eq!(ev.unwrap().text(), "b");
        // max_retry_per_stt = 1: a is tried twice, 0.1 s apart.
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(a.recognizes.load(Ordering::SeqCst), 2);
        assert_eq!(stt.availability(), [false, true]);

        // The probe (third failure) keeps a down; the next call skips a and probes again.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(a.recognizes.load(Ordering::SeqCst), 3);
        assert_eq!(stt.availability(), [false, true]);
        let mut changes = stt.events();
        let ev = stt
            .recognize_once(&[frame(1)], None, &ApiConnectOptions::default())
            .await;
        assert_eq!(ev.unwrap().text(), "b");
        let up = changes.recv().await.unwrap().unwrap();
        assert_eq!((up.index, up.available), (0, true));
        let ev = stt
            .recognize_once(&[frame(1)], None, &ApiConnectOptions::default())
            .await;
        assert_eq!(ev.unwrap().text(), "a");
    }

    #[tokio::test(start_paused = true)]
    async fn recognize_attempt_timeout_is_enforced() {
        let a = FakeStt::new("a", vec![], Behavior::RecognizeHang);
        let b = FakeStt::new("b", vec![], Behavior::RecognizeOk);
        let stt = adapter(&[&a, &b]);
        let start = tokio::time::Instant::now();
        let ev = stt
            .recognize_once(&[frame(1)], None, &ApiConnectOptions::default())
            .await;
        assert_eq!(ev.unwrap().text(), "b");
        // Two 10 s attempts with a 0.1 s pause between them.
        assert_eq!(start.elapsed(), Duration::from_millis(20_100));
    }

    #[test]
    fn with_vad_makes_non_streaming_members_stream() {
        let plain = FakeStt {
            name: "batch",
            script: Mutex::default(),
            fallback: Behavior::RecognizeOk,
            streams: AtomicUsize::new(0),
            recognizes: AtomicUsize::new(0),
            streaming: false,
        };
        let streaming = FakeStt::new("live", vec![], Behavior::Echo);
        let stt = FallbackAdapter::new(vec![Arc::new(plain), streaming]).unwrap();
        assert!(!stt.capabilities().streaming);
        let stt = stt.with_vad(Arc::new(crate::stt::adapter::tests::ThresholdVad));
        assert!(stt.capabilities().streaming);
        assert!(!stt.capabilities().interim_results);
    }
}
