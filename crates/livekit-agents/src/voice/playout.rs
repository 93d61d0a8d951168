//! Playout of one segment: text → transcription node and TTS (text transforms) → audio output,
//! with the transcript released in step with playback, false-interruption pauses stopping the
//! transcript clock, and interruption.
//!
//! [`speak`] prepares the nodes, then a [`Playout`] owns the loop's state: each `select!` branch
//! of [`Playout::run`] is one method. Interruption wins every poll (biased), and the capture of a
//! frame is polled by the loop rather than awaited inline, so an output that makes the writer
//! wait (a full queue, a paused device) never keeps the loop from seeing an interruption.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::activity::Activity;
use super::agent::ModelSettings;
use super::events::ErrorSource;
use super::generation::TtftSlot;
use super::nodes::{AudioFrameStream, SynthesizedStream, TextStream};
use super::speech_handle::SpeechHandle;
use super::transcription::SegmentSync;
use crate::audio::resample::Resampler;
use crate::audio::AudioFrame;
use crate::io::{AudioOutput, PlaybackEvent, PlaybackFinished, TextOutput};
use crate::llm::chat_context::now_secs;
use crate::metrics::{AgentMetrics, TtsMetrics};
use crate::tokenize::{TextTransform, TransformChain};
use crate::tts::SynthesizedAudio;

/// What was spoken.
pub(crate) struct Spoken {
    /// The text the user heard (all of it unless interrupted).
    pub text: String,
    pub interrupted: bool,
    /// How much audio played (`None` without audio).
    pub played: Option<Duration>,
    /// When the speech started (wall clock, the message's `created_at`): an interrupted reply
    /// is placed before a message the user typed while it played.
    pub started_at: f64,
}

/// Where a segment's audio comes from.
pub(crate) enum AudioSource {
    /// The agent's (or the session's) TTS, fed with the segment's text.
    Tts,
    /// These frames (pre-synthesized `say` audio, a realtime model's audio).
    Frames(AudioFrameStream),
    /// A synthesis started earlier (preemptive TTS, or a segment's synthesis started while
    /// the previous segment played).
    Started(StartedTts),
    /// None: the text is shown only (no TTS, or it failed to start).
    NoAudio,
}

/// A TTS synthesis in progress.
pub(crate) struct StartedTts {
    pub audio: SynthesizedStream,
    pub label: String,
    pub aligned: bool,
    /// When its text started (the TTS metrics' request start).
    pub started: Instant,
}

/// Opens the TTS node on `text` (through the session's TTS text transforms); `None` without a
/// TTS or when it failed (reported).
pub(crate) async fn start_tts(
    activity: &Activity,
    speech_id: &str,
    text: TextStream,
    settings: &ModelSettings,
) -> Option<StartedTts> {
    let session = activity.session();
    let tts = activity.agent().tts().or_else(|| session.tts());
    let label = tts.as_ref().map(|t| t.label()).unwrap_or_default();
    if let Some(t) = &tts {
        session
            .inner
            .telemetry
            .tts_started(speech_id, &t.model(), &t.provider());
    }
    let aligned = tts
        .as_ref()
        .is_some_and(|t| t.capabilities().aligned_transcript);
    let transforms = session.options().tts_text_transforms.clone();
    let chain = Arc::new(Mutex::new(TransformChain::from_kinds(&transforms)));
    let tail = chain.clone();
    let tts_text = text
        .map(move |t| chain.lock().push(&t))
        .chain(futures::stream::once(async move { tail.lock().flush() }))
        .filter(|t| futures::future::ready(!t.is_empty()))
        .boxed();
    let started = Instant::now();
    match activity
        .agent()
        .behavior()
        .tts_node(activity.context(), tts_text, settings.clone())
        .await
    {
        Ok(Some(audio)) => Some(StartedTts {
            audio,
            label,
            aligned,
            started,
        }),
        Ok(None) => None,
        Err(e) => {
            session.report_error(ErrorSource::Tts, e, false);
            None
        }
    }
}

/// Plays (or shows, without audio) one segment of text; returns what the user got.
pub(crate) async fn speak(
    activity: &Activity,
    handle: &SpeechHandle,
    text: TextStream,
    settings: ModelSettings,
    source: AudioSource,
    llm_ttft: Option<TtftSlot>,
) -> Spoken {
    let spoken_at = now_secs();
    let session = activity.session().clone();
    let ctx = activity.context();
    let behavior = activity.agent().behavior();
    let text_output = session.text_output();

    // Unbounded, and bounded by what feeds them: the text of this one reply, which arrives
    // through the LLM stream's bounded channel and ends with the reply; both receivers are
    // dropped (freeing the queue) when the speech is interrupted. Making them bounded is part
    // of the public-API issue's bounded-channels item.
    let (tts_tx, tts_rx) = mpsc::unbounded_channel::<String>();
    let (tr_tx, tr_rx) = mpsc::unbounded_channel::<String>();
    let transcript = behavior
        .transcription_node(
            ctx.clone(),
            UnboundedReceiverStream::new(tr_rx).boxed(),
            settings.clone(),
        )
        .await;

    let output = session.audio_output();
    let mut audio: Option<SynthesizedStream> = None;
    let mut tts_label = String::new();
    let mut aligned = false;
    let mut tts_started = Instant::now();
    let mut tts_tx = Some(tts_tx);
    if output.is_some() {
        match source {
            AudioSource::Frames(frames) => {
                audio = Some(frames.map(|frame| Ok(synthesized(frame))).boxed());
            }
            AudioSource::Tts => {
                if let Some(p) = start_tts(
                    activity,
                    handle.id(),
                    UnboundedReceiverStream::new(tts_rx).boxed(),
                    &settings,
                )
                .await
                {
                    (audio, tts_label, aligned) = (Some(p.audio), p.label, p.aligned);
                }
            }
            AudioSource::Started(p) => {
                // The TTS already has its text (preemptive TTS): only the transcript is fed.
                tts_tx = None;
                tts_started = p.started;
                (audio, tts_label, aligned) = (Some(p.audio), p.label, p.aligned);
            }
            AudioSource::NoAudio => {}
        }
    }
    let (Some(output), Some(audio)) = (output, audio) else {
        return show_text_only(
            activity,
            handle,
            text,
            tr_tx,
            transcript,
            text_output,
            llm_ttft,
        )
        .await;
    };

    let use_timed = session.options().use_tts_aligned_transcript && aligned;
    let paused_rx = activity.output_paused();
    let paused_since = (*paused_rx.borrow()).then(Instant::now);
    let mut playout = Playout {
        activity,
        handle,
        events: output.subscribe(),
        output_rate: output.sample_rate(),
        output,
        // A synchronized output gets words as they are heard (through `sync`); an
        // unsynchronized one gets each piece as soon as the transcription node yields it.
        paced_text: text_output.clone().filter(|t| t.synchronized()),
        immediate_text: text_output.clone().filter(|t| !t.synchronized()),
        text_output,
        sync: SegmentSync::new(use_timed),
        tts_tx,
        tr_tx: Some(tr_tx),
        text_open: true,
        transcript_open: true,
        audio_open: true,
        captured: false,
        started_at: None,
        next_due: None,
        finished: None,
        first_text_at: None,
        tts_metrics: TtsMetrics {
            label: tts_label,
            streamed: true,
            speech_id: Some(handle.id().to_string()),
            ..Default::default()
        },
        tts_started,
        first_audio: false,
        interrupted: false,
        resampler: None,
        paused_rx,
        paused_since,
        paused_total: Duration::ZERO,
        paused_open: true,
        pending_frames: VecDeque::new(),
        capture: None,
        flush_when_captured: false,
        llm_ttft,
    };
    playout.run(text, transcript, audio).await;
    playout.finish(spoken_at).await
}

/// The state of one segment's playout loop.
struct Playout<'a> {
    activity: &'a Activity,
    handle: &'a SpeechHandle,
    output: Arc<dyn AudioOutput>,
    output_rate: Option<u32>,
    events: broadcast::Receiver<PlaybackEvent>,
    text_output: Option<Arc<dyn TextOutput>>,
    paced_text: Option<Arc<dyn TextOutput>>,
    immediate_text: Option<Arc<dyn TextOutput>>,
    sync: SegmentSync,
    /// Text to the TTS and to the transcription node (dropped when the text ends).
    tts_tx: Option<mpsc::UnboundedSender<String>>,
    tr_tx: Option<mpsc::UnboundedSender<String>>,
    text_open: bool,
    transcript_open: bool,
    audio_open: bool,
    /// Audio reached the output (or is being captured).
    captured: bool,
    /// When the output started playing the segment.
    started_at: Option<Instant>,
    /// When (transcript clock, seconds) the next word is due.
    next_due: Option<f64>,
    finished: Option<PlaybackFinished>,
    first_text_at: Option<Instant>,
    tts_metrics: TtsMetrics,
    tts_started: Instant,
    first_audio: bool,
    interrupted: bool,
    resampler: Option<Resampler>,
    /// The transcript clock: playback time minus time spent paused.
    paused_rx: watch::Receiver<bool>,
    paused_since: Option<Instant>,
    paused_total: Duration,
    paused_open: bool,
    /// Frames waiting for the output, and the capture in progress.
    pending_frames: VecDeque<AudioFrame>,
    capture: Option<CaptureFuture>,
    flush_when_captured: bool,
    llm_ttft: Option<TtftSlot>,
}

impl Playout<'_> {
    /// Runs until the segment finished playing or the speech was interrupted.
    async fn run(
        &mut self,
        mut text: TextStream,
        mut transcript: TextStream,
        mut audio: SynthesizedStream,
    ) {
        loop {
            let due_at = self
                .started_at
                .zip(self.next_due)
                .filter(|_| self.paused_since.is_none())
                .map(|(s, t)| s + self.paused_total + super::recognition::provider_secs(t));
            let handle = self.handle;
            tokio::select! {
                biased;
                _ = handle.wait_interrupted() => {
                    self.interrupted = true;
                    break;
                }
                changed = self.paused_rx.changed(), if self.paused_open => {
                    self.on_pause_changed(changed.is_ok());
                }
                ev = self.events.recv() => match ev {
                    Ok(PlaybackEvent::Started) => self.on_started().await,
                    Ok(PlaybackEvent::Finished(f)) => {
                        self.finished = Some(f);
                        break;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                chunk = text.next(), if self.text_open => self.on_text(chunk),
                piece = transcript.next(), if self.transcript_open => self.on_transcript(piece).await,
                _ = poll_capture(&mut self.capture), if self.capture.is_some() => self.on_captured(),
                item = audio.next(), if self.audio_open && self.capture.is_none() => self.on_audio(item),
                _ = sleep_until_opt(due_at), if due_at.is_some() => self.release_due().await,
            }
        }
        // A capture still waiting on the output is dropped (the output's contract: a dropped
        // capture queues nothing, or the whole frame).
        self.capture = None;
        drop(audio);
        if !self.interrupted {
            // Played out: show the rest of the text.
            while self.transcript_open {
                let piece = transcript.next().await;
                if piece.is_none() {
                    self.transcript_open = false;
                } else if let Some(piece) = piece {
                    if let Some(t) = self.immediate_text.as_deref() {
                        t.capture_text(&piece).await;
                    }
                    self.sync.push_text(&piece);
                }
            }
        }
    }

    fn on_pause_changed(&mut self, open: bool) {
        if !open {
            // The activity is gone; nothing will pause again.
            self.paused_open = false;
        }
        let paused = *self.paused_rx.borrow_and_update();
        match (paused, self.paused_since) {
            (true, None) => self.paused_since = Some(Instant::now()),
            (false, Some(since)) => {
                self.paused_total += since.elapsed();
                self.paused_since = None;
            }
            _ => {}
        }
    }

    async fn on_started(&mut self) {
        if self.started_at.is_some() {
            return;
        }
        self.started_at = Some(Instant::now());
        let ttfb = self.first_audio.then_some(self.tts_metrics.ttfb);
        on_playback_started(self.activity, self.handle, self.llm_ttft.as_ref(), ttfb);
        self.next_due = release_due(&mut self.sync, 0.0, self.paced_text.as_deref()).await;
    }

    fn on_text(&mut self, chunk: Option<String>) {
        match chunk {
            Some(chunk) => {
                self.first_text_at.get_or_insert_with(Instant::now);
                self.tts_metrics.characters_count += chunk.chars().count();
                if let Some(tx) = &self.tts_tx {
                    let _ = tx.send(chunk.clone());
                }
                if let Some(tx) = &self.tr_tx {
                    let _ = tx.send(chunk);
                }
            }
            None => {
                self.text_open = false;
                self.tts_tx = None;
                self.tr_tx = None;
            }
        }
    }

    async fn on_transcript(&mut self, piece: Option<String>) {
        match piece {
            Some(piece) => {
                if let Some(t) = self.immediate_text.as_deref() {
                    t.capture_text(&piece).await;
                }
                self.sync.push_text(&piece);
                self.release_due().await;
            }
            None => {
                self.transcript_open = false;
                self.sync.end_text();
            }
        }
    }

    /// Sends the words due now (transcript clock) to a synchronized text output.
    async fn release_due(&mut self) {
        if let Some(s) = self.started_at {
            let elapsed = s.elapsed().saturating_sub(self.paused_total).as_secs_f64();
            self.next_due = release_due(&mut self.sync, elapsed, self.paced_text.as_deref()).await;
        }
    }

    fn on_captured(&mut self) {
        self.capture = next_capture(&self.output, &mut self.pending_frames);
        if self.capture.is_none() && self.flush_when_captured {
            self.flush_when_captured = false;
            self.output.flush();
        }
    }

    fn on_audio(&mut self, item: Option<Result<SynthesizedAudio, crate::types::ApiError>>) {
        match item {
            Some(Ok(sa)) => {
                if !self.first_audio {
                    self.first_audio = true;
                    let from = self.first_text_at.unwrap_or(self.tts_started);
                    self.tts_metrics.ttfb = Instant::now().saturating_duration_since(from);
                }
                self.tts_metrics.audio_duration += sa.frame.duration();
                self.sync
                    .push_audio(sa.frame.duration_secs(), &sa.timed_words);
                let frames = resample_for(&mut self.resampler, self.output_rate, sa.frame);
                self.pending_frames.extend(frames);
                self.captured |= !self.pending_frames.is_empty();
                self.capture = next_capture(&self.output, &mut self.pending_frames);
            }
            Some(Err(e)) => {
                self.activity
                    .session()
                    .report_error(ErrorSource::Tts, e, false);
                self.audio_open = false;
                self.sync.end_audio();
                self.output.flush();
            }
            None => {
                self.audio_open = false;
                self.sync.end_audio();
                if let Some(rs) = self.resampler.as_mut() {
                    self.pending_frames.extend(rs.flush());
                    self.captured |= !self.pending_frames.is_empty();
                }
                self.capture = next_capture(&self.output, &mut self.pending_frames);
                if self.capture.is_none() {
                    self.output.flush();
                } else {
                    self.flush_when_captured = true;
                }
            }
        }
    }

    /// Metrics, and what the user heard: everything when played out; on interruption, the
    /// output is cleared (and resumed if paused) and the playback position gives the text.
    async fn finish(mut self, spoken_at: f64) -> Spoken {
        let session = self.activity.session().clone();
        self.tts_metrics.duration = self.tts_started.elapsed();
        self.tts_metrics.cancelled = self.interrupted;
        session.emit_metrics(AgentMetrics::Tts(std::mem::take(&mut self.tts_metrics)));

        let mut played = self.finished.map(|f| f.playback_position);
        let text = if self.interrupted {
            let position = if self.finished.is_some() {
                None
            } else if self.captured || !self.audio_open {
                self.output.clear_buffer();
                self.activity.resume_output();
                tokio::time::timeout(
                    Duration::from_secs(1),
                    crate::io::wait_for_finished(&mut self.events),
                )
                .await
                .ok()
                .flatten()
                .map(|f| f.playback_position)
            } else {
                // Nothing reached the output; it may still be paused for this speech.
                self.activity.resume_output();
                Some(Duration::ZERO)
            };
            if position.is_some() {
                played = position;
            }
            match position {
                Some(p) => self.sync.heard_text(p.as_secs_f64()),
                None => self.sync.full_text().trim().to_string(),
            }
        } else {
            if let Some(t) = self.paced_text.as_deref() {
                let rest = self.sync.take_rest();
                if !rest.is_empty() {
                    t.capture_text(&rest).await;
                }
            }
            self.sync.full_text().trim().to_string()
        };
        if let Some(t) = self.text_output.as_deref() {
            t.flush();
        }
        Spoken {
            text,
            interrupted: self.interrupted,
            played,
            started_at: spoken_at,
        }
    }
}

type CaptureFuture = futures::future::BoxFuture<'static, ()>;

/// Starts capturing the next pending frame, if any.
fn next_capture(
    output: &Arc<dyn crate::io::AudioOutput>,
    pending: &mut VecDeque<crate::audio::AudioFrame>,
) -> Option<CaptureFuture> {
    let frame = pending.pop_front()?;
    let output = output.clone();
    Some(Box::pin(async move { output.capture_frame(frame).await }))
}

async fn poll_capture(capture: &mut Option<CaptureFuture>) {
    match capture {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Converts `frame` to the output's rate (when it wants one); empty frames are dropped.
fn resample_for(
    resampler: &mut Option<Resampler>,
    output_rate: Option<u32>,
    frame: crate::audio::AudioFrame,
) -> Vec<crate::audio::AudioFrame> {
    if frame.is_empty() {
        return Vec::new();
    }
    let Some(rate) = output_rate.filter(|r| *r != frame.sample_rate) else {
        return vec![frame];
    };
    if resampler.is_none() {
        match Resampler::new(frame.sample_rate, rate, frame.num_channels) {
            Ok(rs) => *resampler = Some(rs),
            Err(e) => {
                tracing::warn!(error = %e, "cannot resample agent audio; playing it as is");
                return vec![frame];
            }
        }
    }
    match resampler.as_mut().map(|rs| rs.push(&frame)) {
        Some(Ok(frames)) => frames,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "resampling failed; dropping a frame");
            Vec::new()
        }
        None => vec![frame],
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends the words due at `elapsed` to the text output; returns when the next one is due.
async fn release_due(
    sync: &mut SegmentSync,
    elapsed: f64,
    text_output: Option<&dyn crate::io::TextOutput>,
) -> Option<f64> {
    let (due, next) = sync.take_due(elapsed);
    if let Some(t) = text_output {
        if !due.is_empty() {
            t.capture_text(&due).await;
        }
    }
    next
}

fn synthesized(frame: crate::audio::AudioFrame) -> SynthesizedAudio {
    SynthesizedAudio {
        frame,
        request_id: String::new(),
        segment_id: String::new(),
        is_final: false,
        delta_text: String::new(),
        timed_words: Vec::new(),
    }
}

fn on_playback_started(
    activity: &Activity,
    handle: &SpeechHandle,
    llm_ttft: Option<&TtftSlot>,
    tts_ttfb: Option<Duration>,
) {
    activity.send(super::activity::ActivityEvent::PlaybackStarted {
        handle: handle.clone(),
        llm_ttft: llm_ttft.and_then(|t| *t.lock()),
        tts_ttfb,
    });
}

/// No audio output (or no TTS): the text goes straight to the text output.
async fn show_text_only(
    activity: &Activity,
    handle: &SpeechHandle,
    mut text: TextStream,
    tr_tx: mpsc::UnboundedSender<String>,
    mut transcript: TextStream,
    text_output: Option<std::sync::Arc<dyn crate::io::TextOutput>>,
    llm_ttft: Option<TtftSlot>,
) -> Spoken {
    let started_at = now_secs();
    let mut tr_tx = Some(tr_tx);
    let mut shown = String::new();
    let mut text_open = true;
    let mut interrupted = false;
    let mut started = false;
    loop {
        tokio::select! {
            biased;
            _ = handle.wait_interrupted() => {
                interrupted = true;
                break;
            }
            chunk = text.next(), if text_open => match chunk {
                Some(chunk) => {
                    if let Some(tx) = &tr_tx { let _ = tx.send(chunk); }
                }
                None => {
                    text_open = false;
                    tr_tx = None;
                }
            },
            piece = transcript.next() => match piece {
                Some(piece) => {
                    if !started {
                        started = true;
                        on_playback_started(activity, handle, llm_ttft.as_ref(), None);
                    }
                    if let Some(t) = text_output.as_deref() {
                        t.capture_text(&piece).await;
                    }
                    shown.push_str(&piece);
                }
                None => break,
            },
        }
    }
    if let Some(t) = text_output.as_deref() {
        t.flush();
    }
    Spoken {
        text: shown.trim().to_string(),
        interrupted,
        played: None,
        started_at,
    }
}
