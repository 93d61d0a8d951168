//! A reply's text split into segments at the `llm_node`'s segment breaks
//! ([`ChatChunk::flush`](crate::llm::ChatChunk::flush), the reference's `FlushSentinel`).
//!
//! Each segment is played as its own segment of the audio output with its own TTS stream, one
//! after the other. As the reference: one synthesis at a time, and the next segment's
//! synthesis starts as soon as the previous one finished (usually while it still plays), so the
//! next segment is ready when the previous one played out. Without a break a reply is one
//! segment.
//!
//! The first segment's synthesis starts when the [`Segmenter`] is opened: at once for a
//! preemptive TTS, else when the speech has the floor (as a reply without breaks always did).

use std::task::Poll;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::task::AbortOnDropHandle;

use super::activity::Activity;
use super::agent::ModelSettings;
use super::nodes::TextStream;
use super::playout::{start_tts, AudioSource, StartedTts};

/// A piece of an LLM step's text output.
pub(crate) enum LlmText {
    /// Text to speak.
    Text(String),
    /// A segment break.
    Flush,
}

/// One segment: its text (to the transcript, and to the TTS unless it is already being
/// synthesized) and where its audio comes from.
pub(crate) struct Segment {
    pub text: TextStream,
    pub audio: AudioSource,
}

/// Splits one LLM step's text into [`Segment`]s (a task; dropped with the step).
pub(crate) struct Segmenter {
    segments: mpsc::UnboundedReceiver<Segment>,
    /// Opens the first segment's synthesis (`true`) or says there is no audio (`false`).
    gate: Option<oneshot::Sender<bool>>,
    _task: AbortOnDropHandle<()>,
}

impl Segmenter {
    pub(crate) fn spawn(
        activity: &Activity,
        speech_id: &str,
        settings: &ModelSettings,
        text: mpsc::UnboundedReceiver<LlmText>,
    ) -> Self {
        // Unbounded: one segment per break of one reply.
        let (tx, segments) = mpsc::unbounded_channel();
        let (gate, gate_rx) = oneshot::channel();
        let task = tokio::spawn(split(
            activity.clone(),
            speech_id.to_string(),
            settings.clone(),
            text,
            tx,
            gate_rx,
        ));
        Self {
            segments,
            gate: Some(gate),
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// Lets segments be made: synthesized with the agent's TTS when `synthesize` (an audio
    /// output is there), else text only (the playout then decides). Later calls do nothing.
    pub(crate) fn open(&mut self, synthesize: bool) {
        if let Some(gate) = self.gate.take() {
            let _ = gate.send(synthesize);
        }
    }

    /// The next segment; `None` once the reply's text ended.
    pub(crate) async fn next(&mut self) -> Option<Segment> {
        self.segments.recv().await
    }
}

/// The senders of the segment being filled: its text, and its TTS input.
struct Open {
    text: mpsc::UnboundedSender<String>,
    tts: Option<mpsc::UnboundedSender<String>>,
}

async fn split(
    activity: Activity,
    speech_id: String,
    settings: ModelSettings,
    mut text: mpsc::UnboundedReceiver<LlmText>,
    segments: mpsc::UnboundedSender<Segment>,
    gate: oneshot::Receiver<bool>,
) {
    let mut gate = Some(gate);
    let mut synthesize = false;
    let mut previous_tts: Option<oneshot::Receiver<()>> = None;
    let mut open: Option<Open> = None;
    while let Some(piece) = text.recv().await {
        let piece = match piece {
            LlmText::Flush => {
                // Dropping the senders ends the segment's text (and lets its TTS finish).
                open = None;
                continue;
            }
            LlmText::Text(t) if t.is_empty() => continue,
            LlmText::Text(t) => t,
        };
        if open.is_none() {
            if let Some(gate) = gate.take() {
                synthesize = gate.await.unwrap_or(false);
            }
            // Unbounded: one segment's text (part of one reply).
            let (text_tx, text_rx) = mpsc::unbounded_channel();
            let mut tts = None;
            let audio = if synthesize {
                // One synthesis at a time: the previous segment's must have finished.
                if let Some(done) = previous_tts.take() {
                    let _ = done.await;
                }
                // Unbounded: the same segment's text, teed to its TTS stream.
                let (tts_tx, tts_rx) = mpsc::unbounded_channel();
                tts = Some(tts_tx);
                let input = UnboundedReceiverStream::new(tts_rx).boxed();
                match start_tts(&activity, &speech_id, input, &settings).await {
                    Some(started) => {
                        let (started, done) = notify_on_end(started);
                        previous_tts = Some(done);
                        AudioSource::Started(started)
                    }
                    // No TTS, or it failed (reported): the segment is shown as text.
                    None => AudioSource::NoAudio,
                }
            } else {
                AudioSource::Tts
            };
            let segment = Segment {
                text: UnboundedReceiverStream::new(text_rx).boxed(),
                audio,
            };
            if segments.send(segment).is_err() {
                return;
            }
            open = Some(Open { text: text_tx, tts });
        }
        if let Some(open) = &open {
            if let Some(tts) = &open.tts {
                let _ = tts.send(piece.clone());
            }
            let _ = open.text.send(piece);
        }
    }
}

/// `started` with a signal when its audio ended (or the stream was dropped): the synthesis is
/// over.
fn notify_on_end(mut started: StartedTts) -> (StartedTts, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let mut tx = Some(tx);
    let mut audio = started.audio;
    started.audio = futures::stream::poll_fn(move |cx| {
        let item = std::task::ready!(audio.poll_next_unpin(cx));
        if item.is_none() {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        }
        Poll::Ready(item)
    })
    .boxed();
    (started, rx)
}
