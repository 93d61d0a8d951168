//! The scheduler with a scripted recurrent "model" (no ONNX Runtime): batched streams give the
//! same events as unbatched ones, batches form only among streams that are due together, and
//! failures reach every stream of a batch.

use std::sync::atomic::AtomicBool;

use futures::StreamExt;
use livekit_agents::audio::AudioFrame;
use livekit_agents::vad::{VadEvent, VadStream};

use super::*;
use crate::detector::Detector;
use crate::vad::testing::scripted_stream;
use crate::VadOptions;

/// A recurrent toy model computed row by row: the probability depends on the row's audio
/// (context included) and its state, and the state on both, so mixing rows up or losing state
/// changes the output.
#[derive(Default)]
struct ToyModel {
    batch_sizes: Mutex<Vec<usize>>,
    /// Fail (or panic) from this call on (0-based), when set.
    fail_from: Option<usize>,
    panic: AtomicBool,
}

impl ToyModel {
    fn row(input: &[f32], state0: &mut [f32], state1: &mut [f32]) -> f32 {
        let energy = input.iter().map(|s| s.abs()).sum::<f32>() / input.len() as f32;
        let p = (energy * 8.0 + 0.2 * state0[0]).clamp(0.0, 1.0);
        state0[0] = 0.5 * state0[0] + energy;
        state1[5] += 1.0;
        p
    }

    fn sizes(&self) -> Vec<usize> {
        self.batch_sizes.lock().clone()
    }
}

impl BatchRunner for ToyModel {
    fn run(
        &self,
        batch: usize,
        input: &[f32],
        state: &mut [f32],
        probabilities: &mut [f32],
    ) -> Result<(), SileroError> {
        let call = {
            let mut sizes = self.batch_sizes.lock();
            sizes.push(batch);
            sizes.len() - 1
        };
        if self.fail_from.is_some_and(|from| call >= from) {
            if self.panic.load(Ordering::Relaxed) {
                panic!("toy model panics");
            }
            return Err(OnnxError::Inference("toy model fails".into()).into());
        }
        let row = input.len() / batch;
        let (layer0, layer1) = state.split_at_mut(batch * STATE_WIDTH);
        for i in 0..batch {
            let rows = i * STATE_WIDTH..(i + 1) * STATE_WIDTH;
            probabilities[i] = Self::row(
                &input[i * row..(i + 1) * row],
                &mut layer0[rows.clone()],
                &mut layer1[rows],
            );
        }
        Ok(())
    }
}

/// The toy model without a scheduler: one row per call, its own state.
struct Direct {
    model: Arc<ToyModel>,
    input: Vec<f32>,
    state: Vec<f32>,
}

impl Direct {
    fn new(model: Arc<ToyModel>) -> Self {
        let rate = ModelSampleRate::Hz16000;
        Self {
            model,
            input: vec![0.0; rate.context_samples() + rate.window_samples()],
            state: vec![0.0; STATE_LEN],
        }
    }
}

impl SpeechProbability for Direct {
    fn probability(&mut self, window: &[f32]) -> Result<f32, SileroError> {
        shift_in_window(&mut self.input, window, ModelSampleRate::Hz16000)?;
        let mut p = [0.0];
        self.model.run(1, &self.input, &mut self.state, &mut p)?;
        Ok(p[0])
    }
    fn reset(&mut self) {
        self.input.fill(0.0);
        self.state.fill(0.0);
    }
}

fn scheduler(model: Arc<ToyModel>, max_batch: usize) -> Arc<BatchScheduler> {
    Arc::new(BatchScheduler::new(
        model,
        ModelSampleRate::Hz16000,
        &BatchOptions {
            enabled: true,
            max_batch,
            max_wait: Duration::from_millis(1),
        },
    ))
}

/// Speech-like audio that differs per stream: bursts of a tone whose length and loudness
/// depend on `seed`, separated by silence; 20 ms frames at 16 kHz.
fn audio(seed: usize, frames: usize) -> Vec<AudioFrame> {
    (0..frames)
        .map(|j| {
            let loud = (j + seed * 7) % (40 + seed * 3) < 25 + seed;
            let amplitude = if loud { 3000 + 500 * seed as i32 } else { 0 };
            let data = (0..320)
                .map(|k| (amplitude * if (j * 320 + k) % 40 < 20 { 1 } else { -1 }) as i16)
                .collect();
            AudioFrame::new(data, 16_000, 1).unwrap()
        })
        .collect()
}

/// Every field but the inference time (which measures waiting).
fn comparable(events: Vec<VadEvent>) -> Vec<VadEvent> {
    events
        .into_iter()
        .map(|mut e| {
            e.inference_duration = 0.0;
            e
        })
        .collect()
}

/// Pushes every stream's frames one per "tick" (all streams in the same tick, as a burst of
/// network audio would), letting the tasks run between ticks, and collects each stream's events.
async fn run_streams(
    mut streams: Vec<VadStream>,
    inputs: &[Vec<AudioFrame>],
) -> Vec<Vec<VadEvent>> {
    let ticks = inputs.iter().map(Vec::len).max().unwrap_or(0);
    let mut events: Vec<Vec<VadEvent>> = vec![Vec::new(); streams.len()];
    for tick in 0..ticks {
        for (stream, input) in streams.iter_mut().zip(inputs) {
            if let Some(frame) = input.get(tick) {
                stream.push_frame(frame.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (stream, out) in streams.iter_mut().zip(&mut events) {
            while let Some(Some(event)) = futures::FutureExt::now_or_never(stream.next()) {
                out.push(event);
            }
        }
    }
    for (mut stream, out) in streams.into_iter().zip(&mut events) {
        stream.end_input();
        out.extend(stream.collect::<Vec<_>>().await);
    }
    events.into_iter().map(comparable).collect()
}

fn direct_events(input: &[AudioFrame]) -> Vec<VadEvent> {
    let mut detector = Detector::new(
        Direct::new(Arc::new(ToyModel::default())),
        VadOptions::default(),
    );
    let mut events = Vec::new();
    for frame in input {
        detector.push_frame(frame, &mut events).unwrap();
    }
    comparable(events)
}

#[tokio::test(start_paused = true)]
async fn batched_streams_give_the_events_of_unbatched_ones() {
    let model = Arc::new(ToyModel::default());
    let scheduler = scheduler(model.clone(), 16);
    let inputs: Vec<Vec<AudioFrame>> = (0..8).map(|s| audio(s, 400 + 13 * s)).collect();
    let streams = inputs
        .iter()
        .map(|_| scripted_stream(scheduler.stream(), VadOptions::default()).0)
        .collect();
    let batched = run_streams(streams, &inputs).await;
    for (s, (events, input)) in batched.iter().zip(&inputs).enumerate() {
        let expected = direct_events(input);
        assert!(
            expected.iter().any(|e| e.speaking),
            "stream {s}: the input has speech"
        );
        assert_eq!(events, &expected, "stream {s}");
    }
    // Streams due in the same tick ran together.
    let stats = scheduler.stats();
    assert!(stats.largest_batch > 1, "{stats:?}");
    assert!(stats.mean_batch() > 4.0, "{stats:?}");
    assert_eq!(stats.windows, model.sizes().iter().sum::<usize>() as u64);
    let windows: usize = inputs.iter().map(|i| i.len() * 320 / 512).sum();
    assert_eq!(stats.windows, windows as u64, "every window ran once");
}

#[tokio::test(start_paused = true)]
async fn batches_never_exceed_max_batch() {
    let model = Arc::new(ToyModel::default());
    let scheduler = scheduler(model.clone(), 3);
    let inputs: Vec<Vec<AudioFrame>> = (0..10).map(|s| audio(s, 100)).collect();
    let streams = inputs
        .iter()
        .map(|_| scripted_stream(scheduler.stream(), VadOptions::default()).0)
        .collect();
    let batched = run_streams(streams, &inputs).await;
    for (events, input) in batched.iter().zip(&inputs) {
        assert_eq!(events, &direct_events(input));
    }
    let sizes = model.sizes();
    assert!(sizes.iter().all(|&b| (1..=3).contains(&b)), "{sizes:?}");
    assert!(sizes.contains(&3), "{sizes:?}");
}

#[tokio::test(start_paused = true)]
async fn streams_fed_in_bulk_give_the_same_events() {
    // Whole inputs pushed at once: every stream has a backlog, windows interleave freely.
    let model = Arc::new(ToyModel::default());
    let scheduler = scheduler(model, 16);
    let inputs: Vec<Vec<AudioFrame>> = (0..5).map(|s| audio(s, 300)).collect();
    let mut streams = Vec::new();
    for input in &inputs {
        let (mut stream, _) = scripted_stream(scheduler.stream(), VadOptions::default());
        for frame in input {
            stream.push_frame(frame.clone());
        }
        stream.end_input();
        streams.push(stream);
    }
    for (stream, input) in streams.into_iter().zip(&inputs) {
        let events = comparable(stream.collect().await);
        assert_eq!(events, direct_events(input));
    }
}

#[tokio::test(start_paused = true)]
async fn a_lone_stream_runs_each_window_at_once() {
    let model = Arc::new(ToyModel::default());
    let scheduler = scheduler(model.clone(), 16);
    let input = audio(1, 200);
    let (stream, _) = scripted_stream(scheduler.stream(), VadOptions::default());
    let events = run_streams(vec![stream], std::slice::from_ref(&input)).await;
    assert_eq!(events[0], direct_events(&input));
    let stats = scheduler.stats();
    assert_eq!(stats.single_window_batches, stats.batches);
    assert_eq!(stats.largest_batch, 1);
}

#[tokio::test(start_paused = true)]
async fn closed_streams_stop_counting() {
    let model = Arc::new(ToyModel::default());
    let scheduler = scheduler(model, 16);
    let a = scheduler.stream();
    let b = scheduler.stream();
    assert_eq!(scheduler.streams.load(Ordering::Relaxed), 2);
    drop(a);
    drop(b);
    assert_eq!(scheduler.streams.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_ends_every_stream_in_it() {
    for panic in [false, true] {
        let model = Arc::new(ToyModel {
            fail_from: Some(10),
            panic: AtomicBool::new(panic),
            ..ToyModel::default()
        });
        let scheduler = scheduler(model.clone(), 16);
        let inputs: Vec<Vec<AudioFrame>> = (0..4).map(|s| audio(s, 200)).collect();
        let streams = inputs
            .iter()
            .map(|_| scripted_stream(scheduler.stream(), VadOptions::default()).0)
            .collect();
        // Every stream ends (no one waits forever) after the windows that succeeded.
        let events = run_streams(streams, &inputs).await;
        let succeeded: usize = model.sizes()[..10].iter().sum();
        let done: usize = events
            .iter()
            .map(|e| {
                e.iter()
                    .filter(|e| e.kind == livekit_agents::vad::VadEventType::InferenceDone)
                    .count()
            })
            .sum();
        assert_eq!(done, succeeded, "panic: {panic}");
        assert!(model.sizes().len() <= 11 + 4, "streams stopped submitting");
    }
}

#[test]
fn a_direct_probability_call_runs_the_stream_alone() {
    let model = Arc::new(ToyModel::default());
    let scheduler = scheduler(model.clone(), 16);
    let mut batched = scheduler.stream();
    let mut direct = Direct::new(Arc::new(ToyModel::default()));
    let window: Vec<f32> = (0..512).map(|i| (i as f32 / 512.0) - 0.5).collect();
    for _ in 0..3 {
        assert_eq!(
            batched.probability(&window).unwrap(),
            direct.probability(&window).unwrap()
        );
    }
    batched.reset();
    direct.reset();
    assert_eq!(
        batched.probability(&window).unwrap(),
        direct.probability(&window).unwrap()
    );
    assert!(batched.probability(&window[..100]).is_err());
    assert_eq!(model.sizes(), vec![1; 4]);
}
