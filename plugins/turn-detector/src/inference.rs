//! The inference pool: dedicated threads that format, tokenize and run the model, fed by a
//! bounded queue.
//!
//! Every session of the process shares one pool per model. Nothing here runs on the async
//! runtime, so a slow prediction never stalls audio processing. The queue is bounded: when it
//! is full a caller fails at once with an "overloaded" error instead of waiting behind other
//! sessions. A caller that gives up (timeout, cancellation) drops its reply channel, and the
//! pool skips its request if it has not started yet, so abandoned requests cost nothing.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_agents::turn_detector::TurnDetectorError;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::LoadError;
use crate::preprocess::{ChatTurn, Preprocessor};

/// Runs the end-of-turn model on token ids.
pub(crate) trait EouBackend: Send + Sync + 'static {
    /// The end-of-turn probability of the last position of `input_ids`.
    fn predict(&self, input_ids: &[i64]) -> Result<f32, String>;
}

/// The outcome of one prediction, with timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// End-of-turn probability of the last user turn, 0..=1.
    pub probability: f32,
    /// Number of tokens the model read (0 when there was no text and the model did not run).
    pub input_tokens: usize,
    /// Time spent in the chat template and the tokenizer.
    pub preprocess_duration: Duration,
    /// Time spent in the model.
    pub inference_duration: Duration,
}

/// Probability reported when the conversation has no user/assistant text: there is nothing to
/// wait for, so the turn counts as finished (the session then uses `min_delay`). The reference
/// errors out of its inference process in that case and ends up on the same `min_delay` path
/// after logging; answering directly avoids a warning on every tool-only turn.
pub const NO_TEXT_PROBABILITY: f32 = 1.0;

/// Preprocessor plus model: everything a prediction needs, runnable on any thread.
pub(crate) struct Engine {
    pub(crate) preprocessor: Preprocessor,
    pub(crate) backend: Box<dyn EouBackend>,
}

impl Engine {
    /// Formats, tokenizes and runs the model, on the calling thread.
    pub(crate) fn run(&self, turns: &[ChatTurn]) -> Result<Prediction, String> {
        let started = Instant::now();
        let prepared = self
            .preprocessor
            .prepare(turns)
            .map_err(|e| e.to_string())?;
        let preprocess_duration = started.elapsed();
        let Some(prepared) = prepared else {
            return Ok(Prediction {
                probability: NO_TEXT_PROBABILITY,
                input_tokens: 0,
                preprocess_duration,
                inference_duration: Duration::ZERO,
            });
        };
        if prepared.input_ids.is_empty() {
            return Err("the tokenizer produced no tokens".into());
        }
        let started = Instant::now();
        let probability = self.backend.predict(&prepared.input_ids)?;
        let inference_duration = started.elapsed();
        if !probability.is_finite() {
            return Err(format!(
                "the model returned a non-finite probability ({probability})"
            ));
        }
        Ok(Prediction {
            probability: probability.clamp(0.0, 1.0),
            input_tokens: prepared.input_ids.len(),
            preprocess_duration,
            inference_duration,
        })
    }
}

/// Sizes of the process-wide inference pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceOptions {
    /// Threads that take requests from the queue (default 2: one can tokenize while another
    /// runs the model).
    pub worker_threads: usize,
    /// ONNX Runtime intra-op threads for one inference (default: half the CPUs, 1 to 4, like
    /// the reference).
    pub intra_op_threads: usize,
    /// Requests that may wait in the queue; beyond that callers fail fast (default 64).
    pub queue_capacity: usize,
}

impl Default for InferenceOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            worker_threads: 2,
            intra_op_threads: (cpus / 2).clamp(1, 4),
            queue_capacity: 64,
        }
    }
}

struct Job {
    turns: Vec<ChatTurn>,
    reply: oneshot::Sender<Result<Prediction, String>>,
}

/// Dedicated threads in front of an [`Engine`], with a bounded queue.
pub(crate) struct InferencePool {
    queue: SyncSender<Job>,
    capacity: usize,
    label: String,
}

impl InferencePool {
    /// Starts `options.worker_threads` threads named `<thread_prefix>-<n>`; `label` names the
    /// model in errors and logs.
    pub(crate) fn start(
        engine: Arc<Engine>,
        options: &InferenceOptions,
        label: &str,
        thread_prefix: &str,
    ) -> Result<Self, LoadError> {
        if options.worker_threads == 0 || options.queue_capacity == 0 {
            return Err(LoadError::Options(
                "worker_threads and queue_capacity must be at least 1".into(),
            ));
        }
        let (queue, rx) = mpsc::sync_channel::<Job>(options.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..options.worker_threads {
            let engine = engine.clone();
            let rx = rx.clone();
            let thread_label = label.to_owned();
            std::thread::Builder::new()
                .name(format!("{thread_prefix}-{n}"))
                .spawn(move || worker_loop(&engine, &rx, &thread_label))
                .map_err(|e| LoadError::Options(format!("cannot start inference thread: {e}")))?;
        }
        Ok(Self {
            queue,
            capacity: options.queue_capacity,
            label: label.to_owned(),
        })
    }

    /// Queues a prediction and waits for it at most `timeout`.
    pub(crate) async fn predict(
        &self,
        turns: Vec<ChatTurn>,
        timeout: Duration,
    ) -> Result<Prediction, TurnDetectorError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { turns, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(TurnDetectorError::Inference {
                    reason: format!(
                        "{} is overloaded: {} requests already queued",
                        self.label, self.capacity
                    ),
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(TurnDetectorError::Inference {
                    reason: format!("{} inference threads have stopped", self.label),
                })
            }
        }
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(TurnDetectorError::Timeout(timeout)),
            Ok(Err(_)) => Err(TurnDetectorError::Inference {
                reason: format!("{} dropped the request", self.label),
            }),
            Ok(Ok(result)) => result.map_err(|e| TurnDetectorError::Inference { reason: e }),
        }
    }
}

fn worker_loop(engine: &Engine, rx: &Mutex<Receiver<Job>>, label: &str) {
    loop {
        // Holding the lock while waiting is fine: exactly one idle thread waits for the next
        // job, the others wait for the lock.
        let job = match rx.lock().recv() {
            Ok(job) => job,
            Err(_) => break, // the pool was dropped
        };
        if job.reply.is_closed() {
            tracing::debug!(target: "livekit_plugins_turn_detector", model = label, "skipping a request its caller gave up on");
            continue;
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| engine.run(&job.turns)))
            .unwrap_or_else(|_| Err("inference panicked".into()));
        if let Err(err) = &result {
            tracing::warn!(target: "livekit_plugins_turn_detector", model = label, error = %err, "end-of-turn prediction failed");
        }
        // The caller may have timed out meanwhile; then nobody needs the answer.
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::preprocess::TurnRole;

    /// Probability = last id / 100; blocks while `gate` says so and reports each start.
    struct GatedBackend {
        calls: AtomicUsize,
        started: Mutex<std_mpsc::Sender<Vec<i64>>>,
        gate: Mutex<Option<std_mpsc::Receiver<()>>>,
    }

    impl EouBackend for Arc<GatedBackend> {
        fn predict(&self, input_ids: &[i64]) -> Result<f32, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _ = self.started.lock().send(input_ids.to_vec());
            if let Some(gate) = self.gate.lock().as_ref() {
                let _ = gate.recv();
            }
            let last = *input_ids.last().ok_or("empty")?;
            if last < 0 {
                panic!("negative id");
            }
            Ok(last as f32 / 100.0)
        }
    }

    const TOKENIZER: &str = r#"{
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<|im_start|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                         {"id": 1, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<|im_start|>": 0, "<|im_end|>": 1, "user": 2, "assistant": 3, "a": 10, "b": 50, "c": 90, "<unk>": 4}, "unk_token": "<unk>"}
    }"#;
    const CONFIG: &str = r#"{"chat_template": "{% for m in messages %}<|im_start|>{{ m.role }} {{ m.content }}<|im_end|>{% endfor %}"}"#;

    struct Harness {
        backend: Arc<GatedBackend>,
        started: std_mpsc::Receiver<Vec<i64>>,
        release: Option<std_mpsc::Sender<()>>,
        pool: InferencePool,
    }

    fn harness(gated: bool, options: InferenceOptions) -> Harness {
        let (started_tx, started) = std_mpsc::channel();
        let (release, gate) = std_mpsc::channel();
        let backend = Arc::new(GatedBackend {
            calls: AtomicUsize::new(0),
            started: Mutex::new(started_tx),
            gate: Mutex::new(gated.then_some(gate)),
        });
        let engine = Engine {
            preprocessor: Preprocessor::from_bytes(TOKENIZER.as_bytes(), CONFIG, true).unwrap(),
            backend: Box::new(backend.clone()),
        };
        let pool =
            InferencePool::start(Arc::new(engine), &options, "test-eou", "eou-test").unwrap();
        Harness {
            backend,
            started,
            release: gated.then_some(release),
            pool,
        }
    }

    fn user(text: &str) -> Vec<ChatTurn> {
        vec![ChatTurn::new(TurnRole::User, text)]
    }

    fn one_thread(queue: usize) -> InferenceOptions {
        InferenceOptions {
            worker_threads: 1,
            intra_op_threads: 1,
            queue_capacity: queue,
        }
    }

    #[tokio::test]
    async fn predicts_on_pool_threads() {
        let h = harness(false, one_thread(4));
        let p = h
            .pool
            .predict(user("a b"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(p.probability, 0.5);
        assert_eq!(p.input_tokens, 4); // <|im_start|> user a b
        assert_eq!(h.started.recv().unwrap(), vec![0, 2, 10, 50]);
        let p = h
            .pool
            .predict(user("B A C"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(p.probability, 0.9);
    }

    #[tokio::test]
    async fn no_text_gives_finished_turn_without_running_the_model() {
        let h = harness(false, one_thread(4));
        let p = h
            .pool
            .predict(Vec::new(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(p.probability, NO_TEXT_PROBABILITY);
        assert_eq!(p.input_tokens, 0);
        let p = h
            .pool
            .predict(user(""), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(p.probability, NO_TEXT_PROBABILITY);
        assert_eq!(h.backend.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_model_times_out_and_abandoned_requests_are_skipped() {
        let mut h = harness(true, one_thread(8));
        // Session A's request occupies the only thread.
        let first = h.pool.predict(user("a"), Duration::from_secs(1));
        tokio::pin!(first);
        assert!(futures::poll!(&mut first).is_pending());
        h.started.recv().unwrap(); // the model is busy (a real thread, not the clock)
        let first = first.await;
        assert!(matches!(first, Err(TurnDetectorError::Timeout(d)) if d == Duration::from_secs(1)));
        // Two more of A's requests time out while still queued.
        for _ in 0..2 {
            let r = h.pool.predict(user("b"), Duration::from_millis(300)).await;
            assert!(matches!(r, Err(TurnDetectorError::Timeout(_))));
        }
        // Unblock the model: the queued, abandoned requests are skipped and session B is
        // answered. The answer comes from another thread, so let the clock run for real.
        tokio::time::resume();
        drop(h.release.take());
        let p = h
            .pool
            .predict(user("c"), Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(p.probability, 0.9);
        assert_eq!(
            h.backend.calls.load(Ordering::SeqCst),
            2,
            "only A's first and B's ran"
        );
    }

    #[tokio::test]
    async fn full_queue_fails_fast() {
        let mut h = harness(true, one_thread(1));
        let long = Duration::from_secs(3600);
        let busy = h.pool.predict(user("a"), long);
        tokio::pin!(busy);
        assert!(futures::poll!(&mut busy).is_pending());
        h.started.recv().unwrap(); // the thread is busy with the first request
        let queued = h.pool.predict(user("b"), long);
        tokio::pin!(queued);
        assert!(futures::poll!(&mut queued).is_pending()); // now in the queue (capacity 1)
        let refused = h.pool.predict(user("c"), long).await.unwrap_err();
        assert!(refused.to_string().contains("overloaded"), "{refused}");
        drop(h.release.take());
        assert_eq!(busy.await.unwrap().probability, 0.1);
        assert_eq!(queued.await.unwrap().probability, 0.5);
    }

    #[tokio::test]
    async fn model_panic_is_an_error_and_the_thread_survives() {
        struct Panicky;
        impl EouBackend for Panicky {
            fn predict(&self, input_ids: &[i64]) -> Result<f32, String> {
                if input_ids.len() > 3 {
                    panic!("boom");
                }
                Ok(0.25)
            }
        }
        let engine = Engine {
            preprocessor: Preprocessor::from_bytes(TOKENIZER.as_bytes(), CONFIG, true).unwrap(),
            backend: Box::new(Panicky),
        };
        let pool =
            InferencePool::start(Arc::new(engine), &one_thread(2), "panicky", "eou-test").unwrap();
        let err = pool
            .predict(user("a b"), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TurnDetectorError::Inference { reason: ref m } if m.contains("panicked"))
        );
        let p = pool
            .predict(user("a"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(p.probability, 0.25);
    }

    #[test]
    fn rejects_empty_pool() {
        let engine = Engine {
            preprocessor: Preprocessor::from_bytes(TOKENIZER.as_bytes(), CONFIG, true).unwrap(),
            backend: Box::new(Arc::new(GatedBackend {
                calls: AtomicUsize::new(0),
                started: Mutex::new(std_mpsc::channel().0),
                gate: Mutex::new(None),
            })),
        };
        let options = InferenceOptions {
            worker_threads: 0,
            ..one_thread(1)
        };
        assert!(InferencePool::start(Arc::new(engine), &options, "x", "eou-test").is_err());
    }
}
