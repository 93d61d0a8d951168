//! [`SileroVad`]: the core [`Vad`] trait over the Silero model, and its stream task.

use std::sync::{Arc, Weak};
use std::time::Instant;

use livekit_agents::vad::{Vad, VadCapabilities, VadEvent, VadInput, VadStream};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::batch::{BatchScheduler, BatchStats, OnnxRunner};
use crate::detector::Detector;
use crate::model::{LoadedModel, SpeechProbability};
use crate::{SileroError, VadOptions, VadOptionsUpdate};

/// Events buffered between a stream's task and its reader before the task waits.
const EVENT_CHANNEL_CAPACITY: usize = 256;
/// Input items taken from the stream's input per wake-up, at most.
const MAX_BATCH: usize = 64;

/// Silero voice activity detection. Loading is blocking (it reads the model and, once per
/// process, loads ONNX Runtime): do it at startup (the reference's `prewarm`). One `SileroVad`
/// (cheap to clone) serves every stream of the process with one loaded model.
///
/// ```no_run
/// use futures::StreamExt;
/// use livekit_agents::audio::AudioFrame;
/// use livekit_agents::vad::{Vad, VadEventType};
/// use livekit_plugins_silero::{SileroVad, VadOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let vad = SileroVad::load(VadOptions::default())?; // model from `download-files`
/// let mut stream = vad.stream();
/// stream.push_frame(AudioFrame::silence(48_000, 2, 480)); // any rate, any channel count
/// stream.end_input();
/// while let Some(event) = stream.next().await {
///     if event.kind == VadEventType::StartOfSpeech {
///         println!("speech at {:.3}s", event.timestamp);
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SileroVad {
    inner: Arc<Inner>,
}

struct Inner {
    model: LoadedModel,
    /// Shared by every stream when batching is on ([`crate::BatchOptions`]).
    scheduler: Option<Arc<BatchScheduler>>,
    options: Mutex<VadOptions>,
    streams: Mutex<Vec<Weak<StreamControl>>>,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("model", &self.inner.model.path())
            .field("options", &*self.inner.options.lock())
            .finish()
    }
}

/// Options updates waiting for a stream's task.
#[derive(Default)]
struct StreamControl {
    pending: Mutex<Vec<VadOptionsUpdate>>,
}

/// Changes the options of one live stream (see [`SileroVad::stream_with_handle`]).
#[derive(Clone)]
pub struct StreamOptionsHandle {
    control: Arc<StreamControl>,
    options: VadOptions,
}

impl std::fmt::Debug for StreamOptionsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOptionsHandle")
            .finish_non_exhaustive()
    }
}

impl StreamOptionsHandle {
    /// Updates this stream's options; they apply from the next audio the stream processes.
    /// An invalid update is rejected whole.
    pub fn update_options(&mut self, update: VadOptionsUpdate) -> Result<(), SileroError> {
        self.options.apply(&update)?;
        self.control.pending.lock().push(update);
        Ok(())
    }
}

impl SileroVad {
    /// Validates `options`, loads ONNX Runtime (once per process) and the model (from
    /// `options.model_path` or the download cache). A missing model or runtime gives an error
    /// naming the command that downloads it.
    pub fn load(options: VadOptions) -> Result<Self, SileroError> {
        let mut options = options;
        options.validate()?;
        // Fixed now, as the reference does: later activation updates leave it alone.
        options.deactivation_threshold = Some(options.effective_deactivation_threshold());
        let model = LoadedModel::load(options.model_path.as_deref(), options.intra_op_threads)?;
        let scheduler = if options.batching.enabled {
            model.prewarm_batches(options.sample_rate, options.batching.max_batch)?;
            Some(Arc::new(BatchScheduler::new(
                Arc::new(OnnxRunner {
                    pool: model.pool().clone(),
                    rate: options.sample_rate,
                }),
                options.sample_rate,
                &options.batching,
            )))
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                scheduler,
                options: Mutex::new(options),
                streams: Mutex::new(Vec::new()),
            }),
        })
    }

    /// What the cross-stream batching has done so far (`None` when batching is off).
    pub fn batch_stats(&self) -> Option<BatchStats> {
        self.inner.scheduler.as_ref().map(|s| s.stats())
    }

    /// The options new streams start with.
    pub fn options(&self) -> VadOptions {
        self.inner.options.lock().clone()
    }

    /// Updates the options of this VAD and of every live stream (from the next audio each
    /// processes), like the reference's `VAD.update_options`. An invalid update is rejected
    /// whole.
    pub fn update_options(&self, update: VadOptionsUpdate) -> Result<(), SileroError> {
        self.inner.options.lock().apply(&update)?;
        let mut streams = self.inner.streams.lock();
        streams.retain(|weak| match weak.upgrade() {
            Some(control) => {
                control.pending.lock().push(update.clone());
                true
            }
            None => false,
        });
        Ok(())
    }

    /// Opens a stream and returns a handle that updates only this stream's options.
    ///
    /// Must be called inside a tokio runtime (the stream runs as a task).
    pub fn stream_with_handle(&self) -> (VadStream, StreamOptionsHandle) {
        let options = self.options();
        let control = Arc::new(StreamControl::default());
        {
            let mut streams = self.inner.streams.lock();
            streams.retain(|weak| weak.strong_count() > 0);
            streams.push(Arc::downgrade(&control));
        }
        let stream = match &self.inner.scheduler {
            Some(scheduler) => {
                let detector = Detector::new(scheduler.stream(), options.clone());
                spawn_stream(detector, control.clone())
            }
            None => {
                let runner = self.inner.model.runner(options.sample_rate);
                let detector = Detector::new(runner, options.clone());
                spawn_stream(detector, control.clone())
            }
        };
        (stream, StreamOptionsHandle { control, options })
    }
}

impl Vad for SileroVad {
    fn label(&self) -> String {
        "silero.VAD".to_owned()
    }

    fn capabilities(&self) -> VadCapabilities {
        VadCapabilities {
            update_interval: self.inner.options.lock().sample_rate.window_duration(),
        }
    }

    /// Opens a stream. Must be called inside a tokio runtime (the stream runs as a task).
    fn stream(&self) -> VadStream {
        self.stream_with_handle().0
    }
}

/// Runs `detector` as a stream task: input is batched, windows are inferred on the task (see
/// [`infer`]), and events are sent in order.
fn spawn_stream<P: SpeechProbability>(
    detector: Detector<P>,
    control: Arc<StreamControl>,
) -> VadStream {
    let (input_tx, input_rx) = livekit_agents::model_input::channel();
    let (event_tx, event_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let task = tokio::spawn(run_stream(detector, control, input_rx, event_tx));
    VadStream::from_channels(input_tx, event_rx, Some(task))
}

async fn run_stream<P: SpeechProbability>(
    mut detector: Detector<P>,
    control: Arc<StreamControl>,
    mut input: livekit_agents::model_input::InputReceiver<VadInput>,
    events: mpsc::Sender<VadEvent>,
) {
    // Kept across wake-ups: no allocation per frame in steady state.
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut out = Vec::new();
    while let Some(first) = input.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match input.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        for update in std::mem::take(&mut *control.pending.lock()) {
            if let Err(err) = detector.update_options(&update) {
                tracing::warn!(error = %err, "ignoring invalid VAD options update");
            }
        }
        // Buffering is cheap; inference runs only once whole windows are waiting, so a 20 ms
        // frame that completes no 32 ms window costs nothing more.
        for item in batch.drain(..) {
            match item {
                VadInput::Frame(frame) => detector.ingest(&frame),
                VadInput::Flush => {
                    if !infer(&mut detector, &events, &mut out).await {
                        return;
                    }
                    detector.flush();
                }
            }
        }
        if !infer(&mut detector, &events, &mut out).await {
            return;
        }
    }
}

/// Runs the waiting windows and forwards their events. `false` ends the stream (inference
/// failed, or nobody listens any more).
///
/// Inference runs on the stream's own task (with batching on, possibly together with other
/// streams' windows: [`crate::BatchOptions`]). A stream keeping up with real time has one window
/// (32 ms of audio, 0.1-0.3 ms of inference) at a time; handing it to the blocking pool instead
/// costs two thread hand-offs per window, and waking a parked thread takes from tens of
/// microseconds to milliseconds on a virtual machine, more than the inference itself. A backlog
/// (a stream that fell behind, a flush of buffered audio) yields to the scheduler between
/// windows, so one poll stays short and an overloaded process degrades by running late rather
/// than by piling up blocking threads that all wait for the same few ONNX sessions
/// (`cargo xtask bench sessions`; docs/performance.md).
async fn infer<P: SpeechProbability>(
    detector: &mut Detector<P>,
    events: &mpsc::Sender<VadEvent>,
    out: &mut Vec<VadEvent>,
) -> bool {
    loop {
        let started = Instant::now();
        let Some((source, window)) = detector.next_window() else {
            return true;
        };
        let raw = match source.probability_async(window).await {
            Ok(raw) => raw,
            Err(err) => {
                tracing::error!(error = %err, "VAD inference failed; ending the stream");
                return false;
            }
        };
        detector.finish_window(raw, started.elapsed().as_secs_f64(), out);
        for event in out.drain(..) {
            if events.send(event).await.is_err() {
                return false; // nobody is listening any more
            }
        }
        if detector.pending_windows() > 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Streams driven by a scripted probability source.
    use super::*;

    /// A stream whose detector uses `source`, plus its options handle.
    pub(crate) fn scripted_stream<P: SpeechProbability>(
        source: P,
        options: VadOptions,
    ) -> (VadStream, StreamOptionsHandle) {
        let control = Arc::new(StreamControl::default());
        let detector = Detector::new(source, options.clone());
        let stream = spawn_stream(detector, control.clone());
        (stream, StreamOptionsHandle { control, options })
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};
    use livekit_agents::audio::AudioFrame;
    use livekit_agents::vad::VadEventType;

    use super::testing::scripted_stream;
    use super::*;

    /// Probability 1 for loud windows, 0 for quiet ones.
    struct Loudness;

    impl SpeechProbability for Loudness {
        fn probability(&mut self, window: &[f32]) -> Result<f32, SileroError> {
            let peak = window.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            Ok(if peak > 0.1 { 1.0 } else { 0.0 })
        }
        fn reset(&mut self) {}
    }

    /// Fails on the third window.
    struct Failing(usize);

    impl SpeechProbability for Failing {
        fn probability(&mut self, _: &[f32]) -> Result<f32, SileroError> {
            self.0 += 1;
            if self.0 == 3 {
                Err(livekit_agents_onnx::OnnxError::Inference("boom".into()).into())
            } else {
                Ok(0.0)
            }
        }
        fn reset(&mut self) {}
    }

    fn tone_frames(pattern: &[(bool, usize)]) -> Vec<AudioFrame> {
        // 20 ms frames at 16 kHz; `true` = loud.
        pattern
            .iter()
            .flat_map(|&(loud, n)| {
                (0..n).map(move |_| {
                    let value = if loud { 10_000 } else { 0 };
                    AudioFrame::new(vec![value; 320], 16_000, 1).unwrap()
                })
            })
            .collect()
    }

    fn summary(events: &[VadEvent]) -> Vec<(VadEventType, u64)> {
        events
            .iter()
            .filter(|e| e.kind != VadEventType::InferenceDone)
            .map(|e| (e.kind, e.samples_index))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn stream_emits_events_in_order_and_ends_after_input() {
        let (mut stream, _handle) = scripted_stream(Loudness, VadOptions::default());
        for frame in tone_frames(&[(false, 50), (true, 100), (false, 60)]) {
            stream.push_frame(frame);
        }
        stream.end_input();
        let events: Vec<VadEvent> = stream.by_ref().collect().await;
        let windows = 210 * 320 / 512;
        let done = events
            .iter()
            .filter(|e| e.kind == VadEventType::InferenceDone)
            .count();
        assert_eq!(done, windows);
        let speech = summary(&events);
        assert_eq!(speech.len(), 2, "{speech:?}");
        assert_eq!(speech[0].0, VadEventType::StartOfSpeech);
        assert_eq!(speech[1].0, VadEventType::EndOfSpeech);
        // Events come in position order.
        assert!(events
            .windows(2)
            .all(|w| w[0].samples_index <= w[1].samples_index));
    }

    #[tokio::test(start_paused = true)]
    async fn real_time_pace_and_backlog_give_the_same_events() {
        // Frames pushed one at a time run one window per wake-up; frames pushed in bulk form a
        // backlog that yields between windows. Same audio, same events.
        let frames = tone_frames(&[(false, 30), (true, 60), (false, 40), (true, 10)]);
        let (mut paced, _h) = scripted_stream(Loudness, VadOptions::default());
        let mut paced_events = Vec::new();
        for frame in frames.clone() {
            paced.push_frame(frame);
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            while let Some(Some(event)) = paced.next().now_or_never() {
                paced_events.push(event);
            }
        }
        paced.end_input();
        paced_events.extend(paced.collect::<Vec<_>>().await);

        let (mut bulk, _h) = scripted_stream(Loudness, VadOptions::default());
        for frame in frames {
            bulk.push_frame(frame);
        }
        bulk.end_input();
        let bulk_events: Vec<VadEvent> = bulk.collect().await;

        let key = |e: &VadEvent| (e.kind, e.samples_index, e.speaking);
        assert_eq!(
            paced_events.iter().map(key).collect::<Vec<_>>(),
            bulk_events.iter().map(key).collect::<Vec<_>>()
        );
        assert_eq!(summary(&bulk_events).len(), 3, "start, end, start");
    }

    #[tokio::test(start_paused = true)]
    async fn handle_updates_options_of_a_live_stream() {
        // Pauses of 0.4 s inside speech: with the default 0.55 s minimum silence they do not
        // end speech; after the update to 0.2 s they do.
        let (mut stream, mut handle) = scripted_stream(Loudness, VadOptions::default());
        let pattern = [(false, 25), (true, 50), (false, 20), (true, 50)];
        for frame in tone_frames(&pattern) {
            stream.push_frame(frame);
        }
        let mut before = Vec::new();
        while before.len() < 145 * 320 / 512 {
            let event = stream.next().await.unwrap();
            if event.kind == VadEventType::InferenceDone {
                before.push(event);
            } else {
                assert_eq!(event.kind, VadEventType::StartOfSpeech);
            }
        }
        handle
            .update_options(VadOptionsUpdate {
                min_silence_duration: Some(0.2),
                ..Default::default()
            })
            .unwrap();
        assert!(handle
            .update_options(VadOptionsUpdate {
                activation_threshold: Some(-1.0),
                ..Default::default()
            })
            .is_err());
        for frame in tone_frames(&pattern) {
            stream.push_frame(frame);
        }
        stream.end_input();
        let after: Vec<VadEvent> = stream.collect().await;
        let kinds: Vec<_> = summary(&after).into_iter().map(|e| e.0).collect();
        use VadEventType::{EndOfSpeech as E, StartOfSpeech as S};
        // Speech continued from the first pass; the first pause of the second pass (after the
        // silence that ends pass one) and its inner 0.4 s pause now end speech.
        assert_eq!(kinds, vec![E, S, E, S], "{:?}", summary(&after));
    }

    #[tokio::test(start_paused = true)]
    async fn flush_through_the_stream_restarts_positions() {
        let (mut stream, _handle) = scripted_stream(Loudness, VadOptions::default());
        for frame in tone_frames(&[(false, 10), (true, 20)]) {
            stream.push_frame(frame);
        }
        stream.flush();
        for frame in tone_frames(&[(true, 20)]) {
            stream.push_frame(frame);
        }
        stream.end_input();
        let events: Vec<VadEvent> = stream.collect().await;
        let starts: Vec<_> = summary(&events)
            .into_iter()
            .filter(|e| e.0 == VadEventType::StartOfSpeech)
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(
            starts[1].1,
            2 * 512,
            "after a flush, positions restart at zero"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_inference_error_ends_the_stream_after_earlier_events() {
        let (mut stream, _handle) = scripted_stream(Failing(0), VadOptions::default());
        for frame in tone_frames(&[(false, 20)]) {
            stream.push_frame(frame);
        }
        let events: Vec<VadEvent> = stream.by_ref().take(10).collect().await;
        assert_eq!(
            events.len(),
            2,
            "two windows succeeded, then the stream ended"
        );
        stream.push_frame(AudioFrame::silence(16_000, 1, 320)); // ignored, no panic
    }
}
