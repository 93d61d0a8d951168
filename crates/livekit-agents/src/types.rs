//! Types shared by every model interface: provider errors, connection options and retry policy.
//!
//! Every provider stream in this crate (STT, TTS, LLM) applies [`ApiConnectOptions`] the same way:
//! a retryable [`ApiError`] is retried up to `max_retry` times, waiting
//! [`ApiConnectOptions::interval_for_retry`] between attempts, but only while the stream has not
//! emitted anything the caller could have acted on (no duplicated speech, no duplicated text).

use std::time::Duration;

/// How a provider request is retried and timed out.
///
/// Defaults match the reference framework: 3 retries, 2 s between retries (the first retry
/// after 0.1 s), 10 s timeout.
///
/// ```
/// use livekit_agents::types::ApiConnectOptions;
/// use std::time::Duration;
///
/// let opts = ApiConnectOptions::default();
/// assert_eq!(opts.max_retry, 3);
/// assert_eq!(opts.interval_for_retry(0), Duration::from_millis(100));
/// assert_eq!(opts.interval_for_retry(1), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct ApiConnectOptions {
    /// How many times a failed attempt is retried (so `max_retry + 1` attempts at most).
    pub max_retry: u32,
    /// Wait between retries (the first retry waits only 0.1 s).
    pub retry_interval: Duration,
    /// Timeout of one attempt's connection / first response.
    pub timeout: Duration,
}

impl Default for ApiConnectOptions {
    fn default() -> Self {
        Self {
            max_retry: 3,
            retry_interval: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

impl ApiConnectOptions {
    /// Options that never retry (used inside fallback adapters, which switch provider instead).
    pub fn no_retry(self) -> Self {
        Self {
            max_retry: 0,
            ..self
        }
    }

    /// How long to wait before retry number `retry` (0-based): 0.1 s for the first, then
    /// `retry_interval`.
    pub fn interval_for_retry(&self, retry: u32) -> Duration {
        if retry == 0 {
            Duration::from_millis(100).min(self.retry_interval)
        } else {
            self.retry_interval
        }
    }
}

/// An error from a provider API (HTTP, WebSocket, or local inference).
///
/// Messages never contain API keys or tokens.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The provider answered with an error status.
    #[error("{message} (status {status}{})", request_id.as_deref().map(|r| format!(", request {r}")).unwrap_or_default())]
    Status {
        /// HTTP (or provider) status code.
        status: u16,
        /// What the provider said, or a summary of it.
        message: String,
        /// Provider request id, when it sent one.
        request_id: Option<String>,
        /// Whether retrying may succeed (429 and 5xx are; 4xx generally are not).
        retryable: bool,
    },
    /// The connection failed or was dropped.
    #[error("connection error: {message}")]
    Connection {
        /// What went wrong.
        message: String,
        /// Whether retrying may succeed.
        retryable: bool,
    },
    /// The provider did not answer in time.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The provider sent something this client could not understand (malformed frame, truncated
    /// stream). Not retried: the same request would likely fail the same way.
    #[error("protocol error: {message}")]
    Protocol {
        /// What was wrong with it.
        message: String,
    },
    /// Anything else (configuration, unsupported operation). Not retried.
    #[error("{message}")]
    Other {
        /// What went wrong.
        message: String,
    },
    /// The provider's stream task panicked (a bug, or input it did not expect). The stream
    /// driver treats it as a failed attempt: retried within the same budget as a dropped
    /// connection, then delivered as an error — never as a clean end of the stream.
    #[error("provider task panicked: {message}")]
    TaskPanicked {
        /// The panic's message.
        message: String,
    },
}

impl ApiError {
    /// A status error whose retryability follows HTTP semantics: 408, 409, 429 and 5xx retry.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        let retryable = matches!(status, 408 | 409 | 429) || status >= 500;
        ApiError::Status {
            status,
            message: message.into(),
            request_id: None,
            retryable,
        }
    }

    /// A [`Protocol`](Self::Protocol) error: the provider sent something unexpected.
    pub fn protocol(message: impl Into<String>) -> Self {
        ApiError::Protocol {
            message: message.into(),
        }
    }

    /// An [`Other`](Self::Other) error (configuration, unsupported operation).
    pub fn other(message: impl Into<String>) -> Self {
        ApiError::Other {
            message: message.into(),
        }
    }

    /// A [`TaskPanicked`](Self::TaskPanicked) error with the panic's message.
    pub fn task_panicked(message: impl Into<String>) -> Self {
        ApiError::TaskPanicked {
            message: message.into(),
        }
    }

    /// A retryable connection error.
    pub fn connection(message: impl Into<String>) -> Self {
        ApiError::Connection {
            message: message.into(),
            retryable: true,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Status { retryable, .. } | ApiError::Connection { retryable, .. } => {
                *retryable
            }
            ApiError::Timeout(_) | ApiError::TaskPanicked { .. } => true,
            ApiError::Protocol { .. } | ApiError::Other { .. } => false,
        }
    }
}

/// Runs one attempt of a provider stream task; a panic inside it becomes
/// [`ApiError::TaskPanicked`] instead of silently ending the stream.
pub(crate) async fn catch_attempt<F>(attempt: F) -> Result<(), ApiError>
where
    F: std::future::Future<Output = Result<(), ApiError>>,
{
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(ApiError::task_panicked(panic_message(payload.as_ref()))),
    }
}

/// The text of a panic payload (`&str` or `String`), or `"unknown panic"`.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// The task producing a model stream's items (the `spawn` and `from_channel(s)` constructors
/// of [`crate::stt::SpeechStream`], [`crate::tts::SynthesizeStream`],
/// [`crate::tts::ChunkedStream`], [`crate::llm::LlmStream`] and [`crate::vad::VadStream`]).
/// Dropping it aborts the task. When the stream's channel is exhausted, the task is awaited: a
/// task that panicked gives one [`ApiError::TaskPanicked`] item, so a panic is never a clean
/// end of the stream.
pub(crate) struct ProducerTask(Option<tokio_util::task::AbortOnDropHandle<()>>);

impl ProducerTask {
    pub(crate) fn new(task: Option<tokio::task::JoinHandle<()>>) -> Self {
        Self(task.map(tokio_util::task::AbortOnDropHandle::new))
    }

    /// Polls `events`; once they are exhausted, an error item if the producer panicked.
    pub(crate) fn poll_recv<T>(
        &mut self,
        events: &mut tokio::sync::mpsc::Receiver<Result<T, ApiError>>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<T, ApiError>>> {
        match events.poll_recv(cx) {
            std::task::Poll::Ready(None) => self.poll_panic(cx).map(|p| p.map(Err)),
            other => other,
        }
    }

    /// Waits for the producer to end (its items are exhausted): `Some` if it panicked.
    pub(crate) fn poll_panic(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<ApiError>> {
        use std::future::Future as _;
        let Some(handle) = self.0.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let std::task::Poll::Ready(result) = std::pin::Pin::new(handle).poll(cx) else {
            return std::task::Poll::Pending;
        };
        self.0 = None;
        std::task::Poll::Ready(match result {
            Err(e) if e.is_panic() => {
                let message = panic_message(e.into_panic().as_ref());
                tracing::error!(panic = %message, "a model stream's task panicked");
                Some(ApiError::task_panicked(message))
            }
            _ => None,
        })
    }
}

/// A string with the time span it covers in the audio it belongs to (a word or a chunk of a
/// transcript aligned by the TTS or the STT). Times are seconds from the start of the stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimedString {
    /// The text (may include surrounding whitespace as the provider sent it).
    pub text: String,
    /// Start of the span, seconds.
    pub start_time: f64,
    /// End of the span, seconds.
    pub end_time: f64,
    /// Recognition confidence in 0..=1 when the provider reports one.
    pub confidence: Option<f32>,
}

impl TimedString {
    /// A timed string without confidence.
    pub fn new(text: impl Into<String>, start_time: f64, end_time: f64) -> Self {
        Self {
            text: text.into(),
            start_time,
            end_time,
            confidence: None,
        }
    }
}

/// Normalizes a language code the way the reference does: lower-case primary subtag, so that
/// `en-US`, `en_us` and `EN` all become `en`. Returns `None` for an empty code.
///
/// ```
/// assert_eq!(livekit_agents::types::base_language("en-US").as_deref(), Some("en"));
/// assert_eq!(livekit_agents::types::base_language("pt_BR").as_deref(), Some("pt"));
/// ```
pub fn base_language(code: &str) -> Option<String> {
    let primary = code.trim().split(['-', '_']).next()?.trim();
    if primary.is_empty() {
        None
    } else {
        Some(primary.to_ascii_lowercase())
    }
}

/// Well-known topic and attribute names shared with LiveKit clients.
pub mod names {
    /// Participant attribute holding the agent state.
    pub const ATTRIBUTE_AGENT_STATE: &str = "lk.agent.state";
    /// Text stream topic for transcriptions.
    pub const TOPIC_TRANSCRIPTION: &str = "lk.transcription";
    /// Text stream topic for chat input.
    pub const TOPIC_CHAT: &str = "lk.chat";
    /// Byte stream topic for the pre-connect audio buffer.
    pub const TOPIC_PRE_CONNECT_AUDIO: &str = "lk.agent.pre-connect-audio-buffer";
    /// Transcription stream attribute: segment id.
    pub const ATTRIBUTE_SEGMENT_ID: &str = "lk.segment_id";
    /// Transcription stream attribute: the transcribed track.
    pub const ATTRIBUTE_TRANSCRIBED_TRACK_ID: &str = "lk.transcribed_track_id";
    /// Transcription stream attribute: whether the segment is final.
    pub const ATTRIBUTE_TRANSCRIPTION_FINAL: &str = "lk.transcription_final";
}

/// Events that a receiver missed because it read too slowly: the item an [`EventStream`]
/// yields in their place, so a gap is never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiver lagged behind and missed {missed} events")]
#[non_exhaustive]
pub struct Lagged {
    /// How many events were lost.
    pub missed: u64,
}

/// A stream of events from a broadcast source (e.g. [`AgentSession::events`]).
///
/// Each receiver has a bounded backlog; one that reads too slowly loses the oldest events and
/// gets `Err(Lagged { missed })` in their place, then the events that follow. It ends (`None`)
/// when the source is gone. It implements [`futures::Stream`], and [`recv`](Self::recv) is
/// the same as `StreamExt::next`.
///
/// [`AgentSession::events`]: crate::voice::AgentSession::events
///
/// ```
/// use livekit_agents::voice::{AgentSession, SessionEvent};
///
/// # async fn demo(session: AgentSession) {
/// let mut events = session.events();
/// while let Some(item) = events.recv().await {
///     match item {
///         Ok(SessionEvent::Close { .. }) => break,
///         Ok(ev) => println!("{}", ev.name()),
///         Err(lagged) => eprintln!("{lagged}"),
///     }
/// }
/// # }
/// ```
pub struct EventStream<T> {
    next: tokio_util::sync::ReusableBoxFuture<'static, Received<T>>,
    ended: bool,
}

type Received<T> = (
    Result<T, tokio::sync::broadcast::error::RecvError>,
    tokio::sync::broadcast::Receiver<T>,
);

async fn receive<T: Clone + Send + 'static>(
    mut rx: tokio::sync::broadcast::Receiver<T>,
) -> Received<T> {
    // Outside tokio's cooperative budget: `try_recv` must see every queued event, not stop
    // after the budget's 128 (`recv` still waits when nothing is queued).
    let result = tokio::task::unconstrained(rx.recv()).await;
    (result, rx)
}

impl<T: Clone + Send + 'static> EventStream<T> {
    pub(crate) fn new(rx: tokio::sync::broadcast::Receiver<T>) -> Self {
        Self {
            next: tokio_util::sync::ReusableBoxFuture::new(receive(rx)),
            ended: false,
        }
    }

    /// The next event, `Err(Lagged)` for events lost since the last one, or `None` once the
    /// source is gone.
    pub async fn recv(&mut self) -> Option<Result<T, Lagged>> {
        futures::StreamExt::next(self).await
    }

    /// The next event if one is ready now (`None` if none is, or the source is gone).
    pub fn try_recv(&mut self) -> Option<Result<T, Lagged>> {
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        match futures::Stream::poll_next(std::pin::Pin::new(self), &mut cx) {
            std::task::Poll::Ready(item) => item,
            std::task::Poll::Pending => None,
        }
    }
}

impl<T: Clone + Send + 'static> futures::Stream for EventStream<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use tokio::sync::broadcast::error::RecvError;
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        let (result, rx) = std::task::ready!(self.next.poll(cx));
        let item = match result {
            Ok(event) => Ok(event),
            Err(RecvError::Lagged(missed)) => Err(Lagged { missed }),
            Err(RecvError::Closed) => {
                self.ended = true;
                return std::task::Poll::Ready(None);
            }
        };
        self.next.set(receive(rx));
        std::task::Poll::Ready(Some(item))
    }
}

impl<T> std::fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
