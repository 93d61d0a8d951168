//! Per-turn latency computed from the session spans: a `tracing` layer ([`layer`]) that times
//! the spans of [`crate::telemetry`] and, when an `agent_turn` span closes, publishes the
//! turn's stages as a [`TurnLatency`] to [`subscribe`]rs. The console shows them
//! (`[latency] eou … | llm ttft … | tts ttfb … | first frame …`).
//!
//! Stages are offsets from the turn's start: when the user stopped speaking (the end-of-turn
//! decision less `lk.end_of_turn_delay`, the decision being when `eou_detection`'s attributes
//! were recorded less `lk.on_user_turn_completed_delay`; the VAD's end-of-speech report when
//! those are missing), or, for a turn without user speech (typed text, `say`), the creation of
//! the speech (the `agent_turn` span opens). `first_frame` of a user turn is therefore the
//! end-to-end latency of the `Turn` metrics, measured from the spans.
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
    /// When the TTS's first audio came, from the turn's start (its ttfb after its first text:
    /// the LLM's first token, or the TTS request's start when later).
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

/// The user's end of turn as the spans tell it.
#[derive(Default, Clone)]
struct UserEnd {
    /// When the VAD reported the end of speech (`eou_detection` opened).
    reported: Option<Instant>,
    /// `lk.end_of_turn_delay`: from the user's last speech to the decision.
    end_of_turn_delay: Option<Duration>,
    /// When the decision was made (the end-of-turn metrics' time less the
    /// `on_user_turn_completed` hook's delay).
    decided: Option<Instant>,
}

/// Kept on the `agent_session` span: the user's last end of turn, not yet claimed by an agent
/// turn, and the LLM requests started before their turn (preemptive generation).
#[derive(Default)]
struct SessionData {
    user: Option<UserEnd>,
    /// The `agent_turn` that took the last end of turn (late end-of-turn attributes go to it).
    claimed_by: Option<Id>,
    /// `llm_request`s whose speech had no `agent_turn` yet (at most `MAX_EARLY_LLM`).
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

/// Most early LLM requests kept per session (one a turn takes over is dropped when its span
/// closes; this bounds the others, e.g. discarded preemptive generations).
const MAX_EARLY_LLM: usize = 64;

/// Kept on `llm_request` and `tts_request`: when it opened, and its speech.
struct Opened(Instant, Option<String>);

/// Kept on `agent_turn`: the raw times; the stages are computed when it closes.
struct TurnData {
    created: Instant,
    user: Option<UserEnd>,
    llm: Option<(Instant, Duration)>,
    tts: Option<(Instant, Duration)>,
    first_frame: Option<Instant>,
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

impl UserEnd {
    /// Applies end-of-turn attributes recorded at `now`.
    fn record(&mut self, fields: &Fields, now: Instant) {
        if let Some(d) = fields.f64("lk.end_of_turn_delay") {
            self.end_of_turn_delay = Some(d);
            self.decided.get_or_insert(now);
        }
        if let Some(hook) = fields.f64("lk.on_user_turn_completed_delay") {
            // The metrics come after the hook ran: the decision was that much earlier.
            self.decided = Some(now.checked_sub(hook).unwrap_or(now));
        }
    }

    /// When the user stopped speaking: the decision less the end-of-turn delay, or the VAD's
    /// report when those are not known.
    fn stopped(&self) -> Option<Instant> {
        match (self.decided, self.end_of_turn_delay) {
            (Some(decided), Some(delay)) => decided.checked_sub(delay).or(self.reported),
            _ => self.reported,
        }
    }
}

impl TurnData {
    /// The stages, once the turn is over, from the user's end of speech (or the speech's
    /// creation). The TTS's first text is the LLM's first token, or the TTS request's start
    /// when later.
    fn finish(self) -> TurnLatency {
        let mut latency = self.latency;
        let stopped = self.user.as_ref().and_then(UserEnd::stopped);
        let start = stopped.unwrap_or(self.created);
        latency.from_user_speech = stopped.is_some();
        latency.end_of_turn = self
            .user
            .as_ref()
            .and_then(|u| u.decided)
            .filter(|_| stopped.is_some())
            .map(|d| since(start, d));
        let llm_token = self.llm.and_then(|(opened, ttft)| opened.checked_add(ttft));
        latency.llm_ttft = self.llm.map(|(_, ttft)| ttft);
        latency.llm_first_token = llm_token.map(|t| since(start, t));
        latency.tts_ttfb = self.tts.map(|(_, ttfb)| ttfb);
        latency.tts_first_byte = self.tts.and_then(|(opened, ttfb)| {
            let first_text = llm_token.map_or(opened, |t| t.max(opened));
            first_text.checked_add(ttfb).map(|t| since(start, t))
        });
        latency.first_frame = self.first_frame.map(|t| since(start, t));
        latency
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
                if let Some(root) = root {
                    if let Some(data) = root.extensions_mut().get_mut::<SessionData>() {
                        data.user = Some(UserEnd {
                            reported: Some(now),
                            ..Default::default()
                        });
                        data.claimed_by = None;
                    }
                }
            }
            "agent_turn" => {
                let mut fields = Fields::default();
                attrs.record(&mut fields);
                let mut turn = TurnData {
                    created: now,
                    user: None,
                    llm: None,
                    tts: None,
                    first_frame: None,
                    latency: TurnLatency {
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
                    },
                };
                if let Some(root) = root {
                    if let Some(data) = root.extensions_mut().get_mut::<SessionData>() {
                        if let Some(user) = data.user.take() {
                            turn.user = Some(user);
                            data.claimed_by = Some(id.clone());
                        }
                        if let Some(e) = data
                            .early_llm
                            .iter_mut()
                            .find(|e| e.speech_id == turn.latency.speech_id && e.turn.is_none())
                        {
                            e.turn = Some(id.clone());
                            turn.llm = e.ttft.map(|ttft| (e.opened, ttft));
                        }
                    }
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
                        turn.first_frame.get_or_insert(now);
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
        let now = Instant::now();
        match span.name() {
            "eou_detection" => {
                let Some(root) = span.scope().from_root().next() else {
                    return;
                };
                let claimed = {
                    let mut ext = root.extensions_mut();
                    let Some(data) = ext.get_mut::<SessionData>() else {
                        return;
                    };
                    match data.user.as_mut() {
                        Some(user) => {
                            user.record(&fields, now);
                            None
                        }
                        None => data.claimed_by.clone(),
                    }
                };
                if let Some(turn) = claimed.and_then(|t| ctx.span(&t)) {
                    if let Some(turn) = turn.extensions_mut().get_mut::<TurnData>() {
                        if let Some(user) = turn.user.as_mut() {
                            user.record(&fields, now);
                        }
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
                        turn.llm.get_or_insert((opened, first));
                    } else {
                        turn.tts.get_or_insert((opened, first));
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
                        turn.llm.get_or_insert((opened, first));
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
                    let _ = hub().send(turn.finish());
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
