//! [`FallbackAdapter`]: an [`Llm`] that switches to the next provider when one fails, and the
//! provider health tracking shared with the STT and TTS fallback adapters.
//!
//! A provider that fails is marked unavailable (an [`AvailabilityChanged`] event is sent) and
//! later requests skip it. A background probe re-runs a request on it; when the probe succeeds
//! the provider is available again and takes its place back in the order.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};
use tokio_util::task::AbortOnDropHandle;

use super::{ChatRequest, Llm, LlmStream};
use crate::stt::EVENT_BUFFER;
use crate::types::{ApiConnectOptions, ApiError};

/// A provider of a fallback adapter became available or unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityChanged {
    /// Position of the provider in the adapter's list (0 is the preferred one).
    pub index: usize,
    /// The provider's label.
    pub label: String,
    /// Whether it is available now.
    pub available: bool,
}

/// A fallback adapter was built without providers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fallback adapter needs at least one provider")]
pub struct NoProviders;

/// How many availability events a subscriber may lag behind before missing some.
const AVAILABILITY_EVENTS: usize = 32;

struct ProviderSlot {
    label: String,
    available: bool,
    probe: Option<AbortOnDropHandle<()>>,
}

/// Availability of the providers of a fallback adapter, and their recovery probes.
///
/// Probes run as tasks owned by this value: they stop when the adapter is dropped.
pub(crate) struct ProviderHealth {
    slots: Mutex<Vec<ProviderSlot>>,
    events: broadcast::Sender<AvailabilityChanged>,
}

impl ProviderHealth {
    pub(crate) fn new(labels: Vec<String>) -> Arc<Self> {
        let (events, _) = broadcast::channel(AVAILABILITY_EVENTS);
        Arc::new(Self {
            slots: Mutex::new(
                labels
                    .into_iter()
                    .map(|label| ProviderSlot {
                        label,
                        available: true,
                        probe: None,
                    })
                    .collect(),
            ),
            events,
        })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AvailabilityChanged> {
        self.events.subscribe()
    }

    pub(crate) fn availability(&self) -> Vec<bool> {
        self.slots.lock().iter().map(|s| s.available).collect()
    }

    pub(crate) fn labels(&self) -> Vec<String> {
        self.slots.lock().iter().map(|s| s.label.clone()).collect()
    }

    pub(crate) fn set_available(&self, index: usize, available: bool) {
        let event = {
            let mut slots = self.slots.lock();
            let Some(slot) = slots.get_mut(index) else {
                return;
            };
            if slot.available == available {
                return;
            }
            slot.available = available;
            AvailabilityChanged {
                index,
                label: slot.label.clone(),
                available,
            }
        };
        if available {
            tracing::info!(provider = %event.label, "provider recovered");
        } else {
            tracing::warn!(provider = %event.label, "provider marked unavailable");
        }
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    /// Starts `probe` for the provider unless one is already running; the provider becomes
    /// available again when it returns `true`.
    pub(crate) fn start_probe<F>(self: &Arc<Self>, index: usize, probe: F)
    where
        F: Future<Output = bool> + Send + 'static,
    {
        let mut slots = self.slots.lock();
        let Some(slot) = slots.get_mut(index) else {
            return;
        };
        if slot.available || slot.probe.as_ref().is_some_and(|p| !p.is_finished()) {
            return;
        }
        // The task holds a weak reference: dropping the adapter aborts it (see `probe`).
        let health: Weak<Self> = Arc::downgrade(self);
        let label = slot.label.clone();
        slot.probe = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            tracing::debug!(provider = %label, "probing unavailable provider");
            let ok = probe.await;
            if let Some(health) = health.upgrade() {
                if ok {
                    health.set_available(index, true);
                } else {
                    tracing::debug!(provider = %label, "recovery probe failed");
                }
            }
        })));
    }

    /// Indexes to try for one request, best first: the available providers in order, or all of
    /// them when none is available (the reference's "all failed, retrying" sweep).
    pub(crate) fn candidates(&self) -> Vec<usize> {
        let availability = self.availability();
        if availability.iter().all(|a| !a) {
            tracing::error!("all providers are unavailable, trying them all again");
            (0..availability.len()).collect()
        } else {
            (0..availability.len())
                .filter(|i| availability[*i])
                .collect()
        }
    }
}

/// Options of an LLM [`FallbackAdapter`]. Defaults match the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct LlmFallbackOptions {
    /// Timeout of one attempt on one provider (passed as its `conn.timeout`; also the longest
    /// wait for the next chunk before the adapter gives up on the provider). Default 5 s.
    pub attempt_timeout: Duration,
    /// Retries on the same provider before switching. Default 0 (switch right away).
    pub max_retry_per_llm: u32,
    /// Wait between retries on the same provider. Default 0.5 s.
    pub retry_interval: Duration,
    /// Switch provider even after the failing one already streamed text or tool calls (the
    /// listener may then hear a sentence restart). Default `false`: the error is returned.
    pub retry_on_chunk_sent: bool,
}

impl Default for LlmFallbackOptions {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(5),
            max_retry_per_llm: 0,
            retry_interval: Duration::from_millis(500),
            retry_on_chunk_sent: false,
        }
    }
}

impl LlmFallbackOptions {
    fn member_conn(&self) -> ApiConnectOptions {
        ApiConnectOptions {
            max_retry: self.max_retry_per_llm,
            timeout: self.attempt_timeout,
            retry_interval: self.retry_interval,
        }
    }

    /// The longest silence accepted from a provider: every attempt's timeout plus the waits
    /// between them. Guards against providers that ignore `conn.timeout`.
    fn chunk_deadline(&self) -> Duration {
        self.attempt_timeout * (self.max_retry_per_llm + 1)
            + self.retry_interval * self.max_retry_per_llm
    }
}

/// An [`Llm`] over several providers, used in order: when one fails, the request moves on to
/// the next (unless the failing one already streamed content, see
/// [`LlmFallbackOptions::retry_on_chunk_sent`]).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use livekit_agents::llm::{FallbackAdapter, Llm};
/// # fn demo(primary: Arc<dyn Llm>, backup: Arc<dyn Llm>) {
/// let llm = FallbackAdapter::new(vec![primary, backup]).expect("two providers");
/// let mut changes = llm.events();
/// tokio::spawn(async move {
///     while let Some(Ok(ev)) = changes.recv().await {
///         println!("{} available: {}", ev.label, ev.available);
///     }
/// });
/// # }
/// ```
#[derive(Clone)]
pub struct FallbackAdapter {
    llms: Arc<Vec<Arc<dyn Llm>>>,
    options: LlmFallbackOptions,
    health: Arc<ProviderHealth>,
}

impl std::fmt::Debug for FallbackAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackAdapter")
            .field("llms", &self.health.labels())
            .field("available", &self.health.availability())
            .field("options", &self.options)
            .finish()
    }
}

impl FallbackAdapter {
    /// An adapter over `llms` (preferred first) with default options.
    pub fn new(llms: Vec<Arc<dyn Llm>>) -> Result<Self, NoProviders> {
        Self::with_options(llms, LlmFallbackOptions::default())
    }

    /// An adapter over `llms` (preferred first).
    pub fn with_options(
        llms: Vec<Arc<dyn Llm>>,
        options: LlmFallbackOptions,
    ) -> Result<Self, NoProviders> {
        if llms.is_empty() {
            return Err(NoProviders);
        }
        let health = ProviderHealth::new(llms.iter().map(|l| l.label()).collect());
        Ok(Self {
            llms: Arc::new(llms),
            options,
            health,
        })
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
    pub fn options(&self) -> &LlmFallbackOptions {
        &self.options
    }

    /// The provider that would serve the next request.
    fn next_provider(&self) -> &Arc<dyn Llm> {
        let first = self
            .health
            .availability()
            .iter()
            .position(|a| *a)
            .unwrap_or(0);
        &self.llms[first.min(self.llms.len() - 1)]
    }

    fn start_probe(&self, index: usize, request: &ChatRequest) {
        let llm = self.llms[index].clone();
        let mut request = request.clone();
        request.conn = self.options.member_conn().no_retry();
        let deadline = self.options.attempt_timeout;
        self.health.start_probe(index, async move {
            let mut stream = llm.chat(request);
            loop {
                match tokio::time::timeout(deadline, stream.next_chunk()).await {
                    Ok(Some(Ok(_))) => {}
                    Ok(None) => return true,
                    Ok(Some(Err(_))) | Err(_) => return false,
                }
            }
        });
    }
}

#[async_trait]
impl Llm for FallbackAdapter {
    fn label(&self) -> String {
        "llm.FallbackAdapter".into()
    }

    /// The model of the provider that would serve the next request.
    fn model(&self) -> String {
        self.next_provider().model()
    }

    /// The provider that would serve the next request.
    fn provider(&self) -> String {
        self.next_provider().provider()
    }

    fn chat(&self, request: ChatRequest) -> LlmStream {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let adapter = self.clone();
        let task = tokio::spawn(async move { adapter.run_chat(request, tx).await });
        LlmStream::from_channel(rx, Some(task))
    }

    /// Prewarms the preferred provider only (the others serve only when it fails).
    async fn prewarm(&self) {
        self.llms[0].prewarm().await;
    }
}

enum AttemptEnd {
    /// The provider finished the response (or the consumer left).
    Done,
    /// The provider failed.
    Failed { error: ApiError, sent_content: bool },
}

impl FallbackAdapter {
    async fn run_chat(
        &self,
        request: ChatRequest,
        tx: mpsc::Sender<Result<super::ChatChunk, ApiError>>,
    ) {
        let candidates = self.health.candidates();
        let mut last_error = None;
        for (index, llm) in self.llms.iter().enumerate() {
            if !candidates.contains(&index) {
                self.start_probe(index, &request);
                continue;
            }
            match self.attempt(llm.as_ref(), &request, &tx).await {
                AttemptEnd::Done => return,
                AttemptEnd::Failed {
                    error,
                    sent_content,
                } => {
                    tracing::warn!(llm = %llm.label(), %error, "LLM failed, switching to the next one");
                    self.health.set_available(index, false);
                    self.start_probe(index, &request);
                    if sent_content && !self.options.retry_on_chunk_sent {
                        tracing::error!(
                            llm = %llm.label(),
                            "LLM failed after streaming content; not switching (see retry_on_chunk_sent)"
                        );
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                    last_error = Some(error);
                }
            }
        }
        let labels = self.health.labels().join(", ");
        let message = match last_error {
            Some(e) => format!("all LLMs failed ({labels}); last error: {e}"),
            None => format!("all LLMs failed ({labels})"),
        };
        let _ = tx
            .send(Err(ApiError::Connection {
                message,
                retryable: false,
            }))
            .await;
    }

    async fn attempt(
        &self,
        llm: &dyn Llm,
        request: &ChatRequest,
        tx: &mpsc::Sender<Result<super::ChatChunk, ApiError>>,
    ) -> AttemptEnd {
        let mut member_request = request.clone();
        member_request.conn = self.options.member_conn();
        let mut stream = llm.chat(member_request);
        let deadline = self.options.chunk_deadline();
        let mut sent_content = false;
        loop {
            match tokio::time::timeout(deadline, stream.next_chunk()).await {
                Ok(Some(Ok(chunk))) => {
                    sent_content |= chunk.has_content();
                    if tx.send(Ok(chunk)).await.is_err() {
                        return AttemptEnd::Done;
                    }
                }
                Ok(None) => return AttemptEnd::Done,
                Ok(Some(Err(error))) => {
                    return AttemptEnd::Failed {
                        error,
                        sent_content,
                    }
                }
                Err(_) => {
                    return AttemptEnd::Failed {
                        error: ApiError::Timeout(deadline),
                        sent_content,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::llm::{ChatChunk, ChatContext, ChatRole};

    #[derive(Clone)]
    enum Reply {
        Text(&'static str),
        Fail(ApiError),
        TextThenFail(&'static str, ApiError),
        Hang,
    }

    struct FakeLlm {
        name: &'static str,
        script: Mutex<VecDeque<Reply>>,
        fallback: Reply,
        calls: AtomicUsize,
    }

    impl FakeLlm {
        fn new(name: &'static str, script: Vec<Reply>, fallback: Reply) -> Arc<Self> {
            Arc::new(Self {
                name,
                script: Mutex::new(script.into()),
                fallback,
                calls: AtomicUsize::new(0),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Llm for FakeLlm {
        fn label(&self) -> String {
            self.name.into()
        }
        fn model(&self) -> String {
            format!("{}-model", self.name)
        }
        fn provider(&self) -> String {
            self.name.into()
        }
        fn chat(&self, _request: ChatRequest) -> LlmStream {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let reply = self
                .script
                .lock()
                .pop_front()
                .unwrap_or_else(|| self.fallback.clone());
            let (tx, rx) = mpsc::channel(8);
            let task = tokio::spawn(async move {
                match reply {
                    Reply::Text(t) => {
                        let _ = tx.send(Ok(ChatChunk::text("r", t))).await;
                    }
                    Reply::Fail(e) => {
                        let _ = tx.send(Err(e)).await;
                    }
                    Reply::TextThenFail(t, e) => {
                        let _ = tx.send(Ok(ChatChunk::text("r", t))).await;
                        let _ = tx.send(Err(e)).await;
                    }
                    Reply::Hang => std::future::pending::<()>().await,
                }
            });
            LlmStream::from_channel(rx, Some(task))
        }
    }

    fn request() -> ChatRequest {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::User, "hi");
        ChatRequest::new(ctx)
    }

    fn err() -> ApiError {
        ApiError::status(503, "overloaded")
    }

    fn adapter(llms: &[&Arc<FakeLlm>], options: LlmFallbackOptions) -> FallbackAdapter {
        let llms: Vec<Arc<dyn Llm>> = llms.iter().map(|l| (*l).clone() as Arc<dyn Llm>).collect();
        FallbackAdapter::with_options(llms, options).unwrap()
    }

    #[test]
    fn needs_a_provider_and_has_reference_defaults() {
        assert!(FallbackAdapter::new(vec![]).is_err());
        let o = LlmFallbackOptions::default();
        assert_eq!(o.attempt_timeout, Duration::from_secs(5));
        assert_eq!(o.max_retry_per_llm, 0);
        assert_eq!(o.retry_interval, Duration::from_millis(500));
        assert!(!o.retry_on_chunk_sent);
    }

    #[tokio::test(start_paused = true)]
    async fn switches_to_the_next_provider_on_failure() {
        let a = FakeLlm::new("a", vec![], Reply::Fail(err()));
        let b = FakeLlm::new("b", vec![], Reply::Text("from b"));
        let llm = adapter(&[&a, &b], LlmFallbackOptions::default());
        let mut events = llm.events();
        assert_eq!(llm.model(), "a-model");

        let resp = llm.chat(request()).collect().await.unwrap();
        assert_eq!(resp.text, "from b");
        assert_eq!(
            events.recv().await.unwrap().unwrap(),
            AvailabilityChanged {
                index: 0,
                label: "a".into(),
                available: false
            }
        );
        assert_eq!(llm.availability(), [false, true]);
        assert_eq!(llm.model(), "b-model");

        // The next request goes straight to b (a is only probed in the background).
        let resp = llm.chat(request()).collect().await.unwrap();
        assert_eq!(resp.text, "from b");
        assert_eq!(b.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn recovers_after_a_successful_probe() {
        // a fails once; its probe (the same request, re-run) succeeds.
        let a = FakeLlm::new("a", vec![Reply::Fail(err())], Reply::Text("from a"));
        let b = FakeLlm::new("b", vec![], Reply::Text("from b"));
        let llm = adapter(&[&a, &b], LlmFallbackOptions::default());
        let mut events = llm.events();

        assert_eq!(llm.chat(request()).collect().await.unwrap().text, "from b");
        assert!(!events.recv().await.unwrap().unwrap().available);
        let recovered = events.recv().await.unwrap().unwrap();
        assert_eq!((recovered.index, recovered.available), (0, true));
        assert_eq!(a.calls(), 2);
        assert_eq!(llm.availability(), [true, true]);
        assert_eq!(llm.chat(request()).collect().await.unwrap().text, "from a");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_keeps_the_provider_unavailable() {
        let a = FakeLlm::new("a", vec![], Reply::Fail(err()));
        let b = FakeLlm::new("b", vec![], Reply::Text("from b"));
        let llm = adapter(&[&a, &b], LlmFallbackOptions::default());
        llm.chat(request()).collect().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(a.calls(), 2, "one attempt and one probe");
        assert_eq!(llm.availability(), [false, true]);
        // Another request starts another probe.
        llm.chat(request()).collect().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(a.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_switch_after_content_was_sent() {
        let a = FakeLlm::new("a", vec![], Reply::TextThenFail("Hel", err()));
        let b = FakeLlm::new("b", vec![], Reply::Text("from b"));
        let llm = adapter(&[&a, &b], LlmFallbackOptions::default());
        let mut stream = llm.chat(request());
        let first = stream.next_chunk().await.unwrap().unwrap();
        assert!(first.has_content());
        assert!(matches!(
            stream.next_chunk().await,
            Some(Err(ApiError::Status { status: 503, .. }))
        ));
        assert!(stream.next_chunk().await.is_none());
        assert_eq!(b.calls(), 0);
        assert_eq!(llm.availability(), [false, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn switches_after_content_when_allowed() {
        let a = FakeLlm::new("a", vec![], Reply::TextThenFail("Hel", err()));
        let b = FakeLlm::new("b", vec![], Reply::Text("Hello"));
        let options = LlmFallbackOptions {
            retry_on_chunk_sent: true,
            ..Default::default()
        };
        let llm = adapter(&[&a, &b], options);
        let resp = llm.chat(request()).collect().await.unwrap();
        assert_eq!(resp.text, "HelHello");
        assert_eq!(b.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_provider_times_out_after_attempt_timeout() {
        let a = FakeLlm::new("a", vec![], Reply::Hang);
        let b = FakeLlm::new("b", vec![], Reply::Text("from b"));
        let llm = adapter(&[&a, &b], LlmFallbackOptions::default());
        let start = tokio::time::Instant::now();
        let mut stream = llm.chat(request());
        let chunk = stream.next_chunk().await.unwrap().unwrap();
        assert_eq!(
            chunk.delta.and_then(|d| d.content).as_deref(),
            Some("from b")
        );
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn all_failing_is_an_error_and_all_unavailable_are_tried_again() {
        let a = FakeLlm::new("a", vec![], Reply::Fail(err()));
        let b = FakeLlm::new("b", vec![Reply::Fail(err())], Reply::Text("b is back"));
        let llm = adapter(&[&a, &b], LlmFallbackOptions::default());
        let e = llm.chat(request()).collect().await.unwrap_err();
        assert!(e.to_string().contains("all LLMs failed (a, b)"), "{e}");
        assert!(!e.is_retryable());
        // b's probe succeeded meanwhile; force both down to check the sweep.
        llm.health.set_available(1, false);
        assert_eq!(llm.availability(), [false, false]);
        let resp = llm.chat(request()).collect().await.unwrap();
        assert_eq!(resp.text, "b is back");
    }

    #[tokio::test(start_paused = true)]
    async fn member_requests_use_the_fallback_connection_options() {
        struct ConnSpy(Mutex<Vec<ApiConnectOptions>>);
        #[async_trait]
        impl Llm for ConnSpy {
            fn label(&self) -> String {
                "spy".into()
            }
            fn model(&self) -> String {
                String::new()
            }
            fn provider(&self) -> String {
                String::new()
            }
            fn chat(&self, request: ChatRequest) -> LlmStream {
                self.0.lock().push(request.conn);
                let (tx, rx) = mpsc::channel(1);
                drop(tx);
                LlmStream::from_channel(rx, None)
            }
        }
        let spy = Arc::new(ConnSpy(Mutex::default()));
        let llm = FallbackAdapter::new(vec![spy.clone() as Arc<dyn Llm>]).unwrap();
        llm.chat(request()).collect().await.unwrap();
        assert_eq!(
            spy.0.lock()[0],
            ApiConnectOptions {
                max_retry: 0,
                timeout: Duration::from_secs(5),
                retry_interval: Duration::from_millis(500),
            }
        );
    }
}
