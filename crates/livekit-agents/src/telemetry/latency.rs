//! Per-turn latency computed from the session spans: a `tracing` layer ([`layer`]) that times
//! the spans of [`crate::telemetry`] and, when an `agent_turn` span closes, publishes the
//! turn's stages as a [`TurnLatency`] to [`subscribe`]rs. The console shows them
//! (`[latency] eou … | llm ttft … | tts ttfb … | first frame …`).
//!
//! Stages are offsets from the turn's start: the end of the user's speech (when the VAD reported
//! it: the `eou_detection` span opens), or, for a turn without user speech (typed text, `say`),
//! the creation of the speech (the `agent_turn` span opens).
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(livekit_agents::telemetry::latency::layer())
//!     .init();
//! let mut turns = livekit_agents::telemetry::latency::subscribe();
//! # drop(turns);
//! ```
//!
//! The layer has its own filter (the session spans at INFO), so it works whatever level the
//! other layers log at. Times come from tokio's clock (`tokio::time::Instant`), so a test on
//! the paused clock gets exact stages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The target of the session spans.
const TARGET: &str = "livekit_agents::telemetry";

/// How many finished turns wait for slow [`subscribe`]rs before the oldest are dropped.
const HUB_CAPACITY: usize = 256;

/// The stages of one agent turn, from its spans. Offsets are from the turn's start (see the
/// [module docs](self)); a stage is `None` when the turn did not have it (no LLM for `say`, no
/// audio output, an interruption before the first frame).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TurnLatency {
    /// The id of the session's root span (`agent_session`), to tell sessions apart.
    pub session_span: Option<u64>,
    /// The speech (`lk.speech_id`).
    pub speech_id: String,
    /// Whether the turn started at the end of the user's speech (else at the speech's creation).
    pub from_user_speech: bool,
    /// End of speech → end of turn decided (`lk.end_of_turn_delay` of `eou_detection`).
    pub end_of_turn: Option<Duration>,
    /// The LLM's time to first token (`lk.response.ttft`).
    pub llm_ttft: Option<Duration>,
    /// When the LLM's first token came, from the turn's start.
    pub llm_first_token: Option<Duration>,
    /// The TTS's time to first byte (`lk.response.ttfb`).
    pub tts_ttfb: Option<Duration>,
    /// When the TTS's first audio came, from the turn's start.
    pub tts_first_byte: Option<Duration>,
    /// When the first frame played (`agent_speaking` opens), from the turn's start: the
    /// end-to-end latency for a turn that started with the user's speech.
    pub first_frame: Option<Duration>,
    /// The speech was interrupted (`lk.interrupted`).
    pub interrupted: bool,
}

impl TurnLatency {
    /// One line: `eou 0.500 s | llm ttft 0.300 s | tts ttfb 0.150 s | first frame 1.102 s`
    /// (stages the turn did not have are left out).
    pub fn summary(&self) -> String {
        let secs = |d: Duration| format!("{:.3} s", d.as_secs_f64());
        let mut parts = Vec::new();
        if let Some(d) = self.end_of_turn {
            parts.push(format!("eou {}", secs(d)));
        }
        if let Some(d) = self.llm_ttft {
            parts.push(format!("llm ttft {}", secs(d)));
        }
        if let Some(d) = self.tts_ttfb {
            parts.push(format!("tts ttfb {}", secs(d)));
        }
        if let Some(d) = self.first_frame {
            let from = if self.from_user_speech {
                "first frame"
            } else {
                "first frame (from the reply's start)"
            };
            parts.push(format!("{from} {}", secs(d)));
        }
        if self.interrupted {
            parts.push("interrupted".into());
        }
        parts.join(" | ")
    }
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

fn hub() -> &'static broadcast::Sender<TurnLatency> {
    static HUB: OnceLock<broadcast::Sender<TurnLatency>> = OnceLock::new();
    HUB.get_or_init(|| broadcast::channel(HUB_CAPACITY).0)
}

/// Finished turns from now on, from every session of the process (tell them apart with
/// [`TurnLatency::session_span`]). Nothing arrives unless [`layer`] is installed.
pub fn subscribe() -> broadcast::Receiver<TurnLatency> {
    hub().subscribe()
}

/// Whether a [`layer`] was added to a subscriber in this process.
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// The layer, filtered to the session spans at INFO (add it to your subscriber).
pub fn layer<S>() -> Filtered<TurnLatencyLayer, Targets, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    Layer::<S>::with_filter(
        TurnLatencyLayer { _private: () },
        Targets::new().with_target(TARGET, tracing::Level::INFO),
    )
}

/// Installs a global subscriber with only the [`layer`] when none is installed yet (the
/// console does so when it runs outside [`run_app`](crate::cli::run_app)). Returns whether
/// the layer is in place.
pub fn ensure_installed() -> bool {
    use tracing_subscriber::layer::SubscriberExt as _;
    static TRIED: OnceLock<bool> = OnceLock::new();
    is_installed()
        || *TRIED.get_or_init(|| {
            let subscriber = tracing_subscriber::registry().with(layer());
            tracing::subscriber::set_global_default(subscriber).is_ok()
        })
        || is_installed()
}

/// Times the session spans; see the [module docs](self). Build it with [`layer`].
#[derive(Debug)]
pub struct TurnLatencyLayer {
    _private: (),
}

/// Kept on the `agent_session` span: the user's last end of speech, not yet claimed by a turn,
/// and the LLM requests started before their turn (preemptive generation).
#[derive(Default)]
struct SessionData {
    end_of_speech: Option<Instant>,
    end_of_turn: Option<Duration>,
    /// The `agent_turn` that took the last end of speech (a late `lk.end_of_turn_delay` goes
    /// to it).
    claimed_by: Option<Id>,
    /// Open `llm_request`s whose speech had no `agent_turn` yet (at most `MAX_EARLY_LLM`).
    early_llm: Vec<EarlyLlm>,
}

/// An LLM request started before its speech's turn.
struct EarlyLlm {
    speech_id: String,
    opened: Instant,
    ttft: Option<Duration>,
    /// The turn that took it over.
    turn: Option<Id>,
}

/// Most early LLM requests kept per session (cancelled preemptive generations are dropped
/// with their span; this bounds the rest).
const MAX_EARLY_LLM: usize = 64;

/// Kept on `eou_detection`, `llm_request` and `tts_request`: when it opened, and its speech.
struct Opened(Instant, Option<String>);

/// Kept on `agent_turn`.
struct TurnData {
    start: Instant,
    latency: TurnLatency,
}

/// Reads the fields the layer needs.
#[derive(Default)]
struct Fields {
    speech_id: Option<String>,
    f64s: Vec<(&'static str, f64)>,
    interrupted: Option<bool>,
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.f64s.push((field.name(), value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "lk.interrupted" {
            self.interrupted = Some(value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "lk.speech_id" {
            self.speech_id = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl Fields {
    fn f64(&self, name: &str) -> Option<Duration> {
        self.f64s
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| Duration::try_from_secs_f64(*v).ok())
    }
}

fn since(start: Instant, at: Instant) -> Duration {
    at.saturating_duration_since(start)
}

impl TurnData {
    /// The turn's LLM request opened at `opened` and its first token came `ttft` later.
    fn llm_started(&mut self, opened: Instant, ttft: Duration) {
        self.latency.llm_ttft.get_or_insert(ttft);
        if let Some(at) = opened.checked_add(ttft) {
            self.latency
                .llm_first_token
                .get_or_insert(since(self.start, at));
        }
    }

    /// The turn's TTS request opened at `opened` and its first audio came `ttfb` later.
    fn tts_started(&mut self, opened: Instant, ttfb: Duration) {
        self.latency.tts_ttfb.get_or_insert(ttfb);
        if let Some(at) = opened.checked_add(ttfb) {
            self.latency
                .tts_first_byte
                .get_or_insert(since(self.start, at));
        }
    }
}

impl<S> Layer<S> for TurnLatencyLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        INSTALLED.store(true, Ordering::Relaxed);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let now = Instant::now();
        let root = span.scope().from_root().next();
        match span.name() {
            "agent_session" => {
                span.extensions_mut().insert(SessionData::default());
            }
            "eou_detection" => {
                span.extensions_mut().insert(Opened(now, None));
                if let Some(root) = root {
                    if let Some(data) = root.extensions_mut().get_mut::<SessionData>() {
                        *data = SessionData {
                            end_of_speech: Some(now),
                            ..Default::default()
                        };
                    }
                }
            }
            "agent_turn" => {
                let mut fields = Fields::default();
                attrs.record(&mut fields);
                let mut start = now;
                let mut latency = TurnLatency {
                    session_span: root.as_ref().map(|r| r.id().into_u64()),
                    speech_id: fields.speech_id.unwrap_or_default(),
                    from_user_speech: false,
                    end_of_turn: None,
                    llm_ttft: None,
                    llm_first_token: None,
                    tts_ttfb: None,
                    tts_first_byte: None,
                    first_frame: None,
                    interrupted: false,
                };
                let mut early = None;
                if let Some(root) = root {
                    if let Some(data) = root.extensions_mut().get_mut::<SessionData>() {
                        if let Some(eos) = data.end_of_speech.take() {
                            start = eos;
                            latency.from_user_speech = true;
                            latency.end_of_turn = data.end_of_turn.take();
                            data.claimed_by = Some(id.clone());
                        }
                        if let Some(e) = data
                            .early_llm
                            .iter_mut()
                            .find(|e| e.speech_id == latency.speech_id && e.turn.is_none())
                        {
                            e.turn = Some(id.clone());
                            early = Some((e.opened, e.ttft));
                        }
                    }
                }
                let mut turn = TurnData { start, latency };
                if let Some((opened, Some(ttft))) = early {
                    turn.llm_started(opened, ttft);
                }
                span.extensions_mut().insert(turn);
            }
            "llm_request" | "tts_request" => {
                let mut fields = Fields::default();
                attrs.record(&mut fields);
                let early = span.name() == "llm_request"
                    && span
                        .parent()
                        .is_some_and(|p| p.extensions().get::<TurnData>().is_none());
                if early {
                    if let Some(root) = root {
                        if let Some(data) = root.extensions_mut().get_mut::<SessionData>() {
                            if data.early_llm.len() >= MAX_EARLY_LLM {
                                data.early_llm.remove(0);
                            }
                            data.early_llm.push(EarlyLlm {
                                speech_id: fields.speech_id.clone().unwrap_or_default(),
                                opened: now,
                                ttft: None,
                                turn: None,
                            });
                        }
                    }
                }
                span.extensions_mut().insert(Opened(now, fields.speech_id));
            }
            "agent_speaking" => {
                if let Some(parent) = span.parent() {
                    if let Some(turn) = parent.extensions_mut().get_mut::<TurnData>() {
                        let at = since(turn.start, now);
                        turn.latency.first_frame.get_or_insert(at);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        match span.name() {
            "eou_detection" => {
                let Some(delay) = fields.f64("lk.end_of_turn_delay") else {
                    return;
                };
                let Some(root) = span.scope().from_root().next() else {
                    return;
                };
                let claimed = {
                    let mut ext = root.extensions_mut();
                    let Some(data) = ext.get_mut::<SessionData>() else {
                        return;
                    };
                    if data.end_of_speech.is_some() {
                        data.end_of_turn = Some(delay);
                        None
                    } else {
                        data.claimed_by.clone()
                    }
                };
                if let Some(turn) = claimed.and_then(|t| ctx.span(&t)) {
                    if let Some(turn) = turn.extensions_mut().get_mut::<TurnData>() {
                        turn.latency.end_of_turn.get_or_insert(delay);
                    }
                }
            }
            name @ ("llm_request" | "tts_request") => {
                let llm = name == "llm_request";
                let field = if llm {
                    "lk.response.ttft"
                } else {
                    "lk.response.ttfb"
                };
                let Some(first) = fields.f64(field) else {
                    return;
                };
                let Some((opened, speech_id)) = span
                    .extensions()
                    .get::<Opened>()
                    .map(|o| (o.0, o.1.clone()))
                else {
                    return;
                };
                let Some(parent) = span.parent() else { return };
                let mut ext = parent.extensions_mut();
                if let Some(turn) = ext.get_mut::<TurnData>() {
                    if llm {
                        turn.llm_started(opened, first);
                    } else {
                        turn.tts_started(opened, first);
                    }
                    return;
                }
                // An early LLM request (its parent is the session).
                let Some(data) = ext.get_mut::<SessionData>() else {
                    return;
                };
                let speech_id = speech_id.unwrap_or_default();
                let Some(early) = data
                    .early_llm
                    .iter_mut()
                    .find(|e| e.speech_id == speech_id && e.opened == opened)
                else {
                    return;
                };
                early.ttft = Some(first);
                let owner = early.turn.clone();
                drop(ext);
                if let Some(turn) = owner.and_then(|t| ctx.span(&t)) {
                    if let Some(turn) = turn.extensions_mut().get_mut::<TurnData>() {
                        turn.llm_started(opened, first);
                    }
                }
            }
            "agent_turn" => {
                if let Some(interrupted) = fields.interrupted {
                    if let Some(turn) = span.extensions_mut().get_mut::<TurnData>() {
                        turn.latency.interrupted = interrupted;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        match span.name() {
            "agent_turn" => {
                let turn = span.extensions_mut().remove::<TurnData>();
                if let Some(turn) = turn {
                    let _ = hub().send(turn.latency);
                }
            }
            "llm_request" => {
                // An early request a turn took over is forgotten when it closes (one still
                // waiting for its turn stays, within `MAX_EARLY_LLM`).
                let opened = span.extensions().get::<Opened>().map(|o| o.0);
                if let (Some(opened), Some(parent)) = (opened, span.parent()) {
                    if let Some(data) = parent.extensions_mut().get_mut::<SessionData>() {
                        data.early_llm
                            .retain(|e| !(e.opened == opened && e.turn.is_some()));
                    }
                }
            }
            _ => {}
        }
    }
}
