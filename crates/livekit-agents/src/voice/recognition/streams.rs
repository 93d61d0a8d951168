//! Streams and numbers recognition reads: opening the STT node, polling optional streams and
//! timers, and durations declared by models and providers (never panicking).

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::super::agent::{AgentContext, ModelSettings};
use super::super::endpointing::EouDecision;
use super::super::events::ErrorSource;
use super::super::session::AgentSession;
use super::EouFuture;
use crate::audio::AudioFrame;
use crate::stt::SpeechEvent;
use crate::types::ApiError;
use crate::vad::{VadEvent, VadStream};

pub(super) type SttEvents = BoxStream<'static, Result<SpeechEvent, ApiError>>;

/// Opens `agent`'s STT node on a fresh audio channel.
pub(super) async fn open_stt(
    session: &AgentSession,
    agent: super::super::agent::Agent,
) -> (Option<mpsc::UnboundedSender<AudioFrame>>, Option<SttEvents>) {
    // Unbounded: it carries the user's audio in real time (at most the input's rate), and the
    // input in front of it is bounded in the room path (`io::bounded`, 5 s, oldest shed). A
    // stalled STT node still lets it grow with time until the stream is reopened or dropped;
    // bounding it is part of the public-API issue's bounded-channels item.
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = AgentContext {
        session: session.clone(),
        agent: agent.clone(),
    };
    match agent
        .behavior()
        .stt_node(
            ctx,
            UnboundedReceiverStream::new(rx).boxed(),
            ModelSettings::default(),
        )
        .await
    {
        Ok(Some(events)) => (Some(tx), Some(events)),
        Ok(None) => (None, None),
        Err(e) => {
            session.report_error(ErrorSource::Stt, e, false);
            (None, None)
        }
    }
}

/// The longest duration taken from a model's or provider's numbers (a day): anything longer
/// is garbage, and capping keeps sums of such durations (usage, metrics) from overflowing.
pub(super) const MAX_PROVIDER_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Seconds declared by a model or a provider as a `Duration`, never panicking: negative or
/// NaN is zero, too large (1e300, infinity) is capped at [`MAX_PROVIDER_DURATION`].
pub(crate) fn provider_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs)
        .unwrap_or(MAX_PROVIDER_DURATION)
        .min(MAX_PROVIDER_DURATION)
}

pub(super) fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

pub(super) async fn next_vad(vad: &mut Option<VadStream>) -> Option<VadEvent> {
    match vad {
        Some(v) => v.next_event().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn next_stt(
    stt: &mut Option<BoxStream<'static, Result<SpeechEvent, ApiError>>>,
) -> Option<Result<SpeechEvent, ApiError>> {
    match stt {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn poll_eou(eou: &mut Option<EouFuture>) -> EouDecision {
    match eou {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_durations_never_panic() {
        assert_eq!(provider_secs(1.5), Duration::from_millis(1500));
        assert_eq!(provider_secs(1e300), MAX_PROVIDER_DURATION);
        assert_eq!(provider_secs(f64::INFINITY), MAX_PROVIDER_DURATION);
        assert_eq!(provider_secs(-3.0), Duration::ZERO);
        assert_eq!(provider_secs(f64::NAN), Duration::ZERO);
        assert_eq!(provider_secs(f64::NEG_INFINITY), Duration::ZERO);
    }
}
