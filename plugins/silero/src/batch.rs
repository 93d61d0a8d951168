//! Cross-stream batching of Silero inference: one [`BatchScheduler`] per [`SileroVad`] (so one
//! per loaded model and rate), shared by its streams.
//!
//! A stream whose window falls due queues it in the scheduler ([`BatchScheduler::submit`]) and
//! yields to the async scheduler a few times, so the other streams' tasks that are ready to run
//! now (typically: woken by the same burst of network audio) queue theirs too. Collecting stops
//! at the first yield that brings no new window, at [`BatchOptions::max_batch`] windows, or after
//! [`BatchOptions::max_wait`]. The stream then takes everything queued and runs it as one
//! inference on its own thread (it is the batch's "leader"); the streams whose windows it ran
//! find their results when they next look, or are woken with them. Several leaders may run at
//! once on different threads (each takes its own windows out of the queue), up to the ONNX
//! session pool's size.
//!
//! Every stream keeps its own recurrent state and context in its [`Slot`]; a batch copies them
//! into the model's batch rows and back, so a stream's results do not depend on which other
//! windows shared its batch. Each stream has at most one window in flight (its task waits for
//! the result), so its windows run in order. There is no timer: correctness never depends on
//! the clock, only the number of yields spent collecting does.
//!
//! [`SileroVad`]: crate::SileroVad

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use livekit_agents_onnx::{OnnxError, SessionPool};
use parking_lot::Mutex;

use crate::model::{run_batch, shift_in_window, SpeechProbability, STATE_LEN, STATE_WIDTH};
use crate::{BatchOptions, ModelSampleRate, SileroError};

/// Yields a stream spends collecting, at most (each also bounded by `max_wait`).
const MAX_COLLECT_YIELDS: usize = 4;

/// Runs one batch: `input` is `[batch, row]`, `state` `[2, batch, 128]` (replaced by the next
/// state), one probability per row.
pub(crate) trait BatchRunner: Send + Sync + 'static {
    fn run(
        &self,
        batch: usize,
        input: &[f32],
        state: &mut [f32],
        probabilities: &mut [f32],
    ) -> Result<(), SileroError>;
}

/// The real model.
pub(crate) struct OnnxRunner {
    pub(crate) pool: Arc<SessionPool>,
    pub(crate) rate: ModelSampleRate,
}

impl BatchRunner for OnnxRunner {
    fn run(
        &self,
        batch: usize,
        input: &[f32],
        state: &mut [f32],
        probabilities: &mut [f32],
    ) -> Result<(), SileroError> {
        run_batch(&self.pool, self.rate, batch, input, state, probabilities)
    }
}

/// Counters of a scheduler (for benchmarks and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Inferences run.
    pub batches: u64,
    /// Windows inferred (the sum of the batch sizes).
    pub windows: u64,
    /// Batches of exactly one window.
    pub single_window_batches: u64,
    /// The largest batch so far.
    pub largest_batch: u64,
}

impl BatchStats {
    /// Mean windows per inference (0 before the first).
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.windows as f64 / self.batches as f64
        }
    }
}

/// The queue and counters shared by the streams of one model and rate.
pub(crate) struct BatchScheduler {
    runner: Arc<dyn BatchRunner>,
    rate: ModelSampleRate,
    max_batch: usize,
    max_wait: Duration,
    queue: Mutex<VecDeque<Arc<Slot>>>,
    /// Open batched streams (a lone stream skips collecting).
    streams: AtomicUsize,
    /// Reusable batch buffers, one per concurrent leader.
    scratch: Mutex<Vec<Scratch>>,
    batches: AtomicU64,
    windows: AtomicU64,
    single_window_batches: AtomicU64,
    largest_batch: AtomicU64,
}

/// One stream's model state and its window in flight.
pub(crate) struct Slot {
    inner: Mutex<SlotInner>,
}

struct SlotInner {
    /// `[context | window]`.
    input: Vec<f32>,
    /// `[2, 1, 128]`.
    state: Vec<f32>,
    phase: Phase,
    waker: Option<Waker>,
}

enum Phase {
    /// No window in flight.
    Idle,
    /// In the queue, waiting for a leader.
    Queued,
    /// Taken by a leader, being inferred.
    Running,
    /// Inferred; the stream has not taken the result yet.
    Done(Result<f32, SileroError>),
}

#[derive(Default)]
struct Scratch {
    slots: Vec<Arc<Slot>>,
    input: Vec<f32>,
    state: Vec<f32>,
    probabilities: Vec<f32>,
}

impl BatchScheduler {
    pub(crate) fn new(
        runner: Arc<dyn BatchRunner>,
        rate: ModelSampleRate,
        options: &BatchOptions,
    ) -> Self {
        Self {
            runner,
            rate,
            max_batch: options.max_batch.max(1),
            max_wait: options.max_wait,
            queue: Mutex::new(VecDeque::new()),
            streams: AtomicUsize::new(0),
            scratch: Mutex::new(Vec::new()),
            batches: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            single_window_batches: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
        }
    }

    /// A new stream's model handle, with zeroed state.
    pub(crate) fn stream(self: &Arc<Self>) -> BatchedModel {
        self.streams.fetch_add(1, Ordering::Relaxed);
        let row = self.rate.context_samples() + self.rate.window_samples();
        BatchedModel {
            scheduler: self.clone(),
            slot: Arc::new(Slot {
                inner: Mutex::new(SlotInner {
                    input: vec![0.0; row],
                    state: vec![0.0; STATE_LEN],
                    phase: Phase::Idle,
                    waker: None,
                }),
            }),
        }
    }

    pub(crate) fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.batches.load(Ordering::Relaxed),
            windows: self.windows.load(Ordering::Relaxed),
            single_window_batches: self.single_window_batches.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// Infers the window loaded in `slot`, batched with whatever other streams queue meanwhile.
    async fn submit(&self, slot: &Arc<Slot>) -> Result<f32, SileroError> {
        slot.inner.lock().phase = Phase::Queued;
        let queued = {
            let mut queue = self.queue.lock();
            queue.push_back(slot.clone());
            queue.len()
        };
        if self.streams.load(Ordering::Relaxed) > 1 && queued < self.max_batch {
            self.collect(slot, queued).await;
        }
        // Lead batches until ours has run or another leader has taken it.
        while matches!(slot.inner.lock().phase, Phase::Queued) {
            self.run_queued();
        }
        poll_fn(|cx| {
            let mut inner = slot.inner.lock();
            match std::mem::replace(&mut inner.phase, Phase::Idle) {
                Phase::Done(result) => Poll::Ready(result),
                other => {
                    inner.phase = other;
                    match &inner.waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => inner.waker = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Lets the tasks that are ready now queue their windows: yields while each yield brings new
    /// windows, up to `max_batch` queued, `MAX_COLLECT_YIELDS` yields or `max_wait`.
    async fn collect(&self, slot: &Slot, mut seen: usize) {
        let started = Instant::now();
        for _ in 0..MAX_COLLECT_YIELDS {
            tokio::task::yield_now().await;
            if !matches!(slot.inner.lock().phase, Phase::Queued) {
                return; // another stream's batch took ours
            }
            let queued = self.queue.lock().len();
            if queued >= self.max_batch || queued == seen || started.elapsed() >= self.max_wait {
                return;
            }
            seen = queued;
        }
    }

    /// Takes up to `max_batch` queued windows and runs them as one inference.
    fn run_queued(&self) {
        let mut scratch = self.scratch.lock().pop().unwrap_or_default();
        {
            let mut queue = self.queue.lock();
            let take = queue.len().min(self.max_batch);
            scratch.slots.extend(queue.drain(..take));
        }
        if !scratch.slots.is_empty() {
            self.run_slots(&mut scratch);
        }
        self.scratch.lock().push(scratch);
    }

    /// Runs `scratch.slots` as one batch, stores each result in its slot and wakes its stream.
    fn run_slots(&self, scratch: &mut Scratch) {
        let batch = scratch.slots.len();
        let row = self.rate.context_samples() + self.rate.window_samples();
        scratch.input.clear();
        scratch.state.clear();
        scratch.state.resize(batch * STATE_LEN, 0.0);
        scratch.probabilities.clear();
        scratch.probabilities.resize(batch, 0.0);
        let (layer0, layer1) = scratch.state.split_at_mut(batch * STATE_WIDTH);
        for (i, slot) in scratch.slots.iter().enumerate() {
            let mut inner = slot.inner.lock();
            inner.phase = Phase::Running;
            scratch.input.extend_from_slice(&inner.input);
            let rows = i * STATE_WIDTH..(i + 1) * STATE_WIDTH;
            layer0[rows.clone()].copy_from_slice(&inner.state[..STATE_WIDTH]);
            layer1[rows].copy_from_slice(&inner.state[STATE_WIDTH..]);
        }
        debug_assert_eq!(scratch.input.len(), batch * row);
        // A panic inside ONNX Runtime must not leave the other streams waiting forever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.runner.run(
                batch,
                &scratch.input,
                &mut scratch.state,
                &mut scratch.probabilities,
            )
        }))
        .unwrap_or_else(|_| Err(OnnxError::Inference("inference panicked".into()).into()));
        self.record(batch);
        let (layer0, layer1) = scratch.state.split_at(batch * STATE_WIDTH);
        for (i, slot) in scratch.slots.drain(..).enumerate() {
            let waker = {
                let mut inner = slot.inner.lock();
                inner.phase = Phase::Done(match &result {
                    Ok(()) => {
                        let rows = i * STATE_WIDTH..(i + 1) * STATE_WIDTH;
                        inner.state[..STATE_WIDTH].copy_from_slice(&layer0[rows.clone()]);
                        inner.state[STATE_WIDTH..].copy_from_slice(&layer1[rows]);
                        Ok(scratch.probabilities[i])
                    }
                    Err(err) => Err(err.clone()),
                });
                inner.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    fn record(&self, batch: usize) {
        let batch = batch as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.windows.fetch_add(batch, Ordering::Relaxed);
        if batch == 1 {
            self.single_window_batches.fetch_add(1, Ordering::Relaxed);
        }
        self.largest_batch.fetch_max(batch, Ordering::Relaxed);
    }
}

/// One stream's handle on a [`BatchScheduler`]: its [`Slot`] (state and context).
pub(crate) struct BatchedModel {
    scheduler: Arc<BatchScheduler>,
    slot: Arc<Slot>,
}

impl BatchedModel {
    fn load_window(&self, window: &[f32]) -> Result<(), SileroError> {
        let mut inner = self.slot.inner.lock();
        shift_in_window(&mut inner.input, window, self.scheduler.rate)
    }
}

impl SpeechProbability for BatchedModel {
    /// Runs this stream's window alone, at once (the stream task uses
    /// [`SpeechProbability::probability_async`], which batches).
    fn probability(&mut self, window: &[f32]) -> Result<f32, SileroError> {
        self.load_window(window)?;
        let mut scratch = Scratch::default();
        scratch.slots.push(self.slot.clone());
        self.scheduler.run_slots(&mut scratch);
        let mut inner = self.slot.inner.lock();
        match std::mem::replace(&mut inner.phase, Phase::Idle) {
            Phase::Done(result) => result,
            _ => Err(OnnxError::Inference("batch did not run".into()).into()),
        }
    }

    fn reset(&mut self) {
        let mut inner = self.slot.inner.lock();
        inner.input.fill(0.0);
        inner.state.fill(0.0);
    }

    async fn probability_async(&mut self, window: &[f32]) -> Result<f32, SileroError> {
        self.load_window(window)?;
        self.scheduler.submit(&self.slot).await
    }
}

impl Drop for BatchedModel {
    fn drop(&mut self) {
        self.scheduler.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
