//! The Silero model: loading it once per process and running it with per-stream state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use livekit_agents::download::{FileSpec, Source};
use livekit_agents_onnx::ort::value::TensorRef;
use livekit_agents_onnx::{OnnxError, SessionOptions, SessionPool};

use crate::{ModelSampleRate, SileroError};

/// Where `download-files` puts the model, relative to the cache directory.
pub const MODEL_FILE_NAME: &str = "silero/silero_vad.onnx";

/// The model file: `silero_vad.onnx` (Silero VAD v5) taken from the PyPI
/// `livekit-plugins-silero` 1.8.9 wheel.
pub fn model_file() -> FileSpec {
    FileSpec::new(
        MODEL_FILE_NAME,
        Source::pypi(
            "packages/8b/58/a26b4a9ffe19e9426e25223ec6e5d8f3cf0d0a8dd7ebdff59d688fc239e2/livekit_plugins_silero-1.8.9-py3-none-any.whl",
        ),
    )
    .with_sha256("afd32a25eab346a5258714edbadd13a56f8ad902ee4c1d8f928eeb1d971a64cf")
    .with_size(3_903_174)
    .with_zip_member(
        "livekit/plugins/silero/resources/silero_vad.onnx",
        Some("1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
        Some(2_327_524),
    )
    .with_license("MIT (Silero VAD, silero-team); wheel Apache-2.0 (LiveKit)")
}

/// A source of speech probabilities, one per window of model-rate samples. The real one is
/// [`SileroModel`]; tests drive the detector with scripted ones.
pub trait SpeechProbability: Send + 'static {
    /// The speech probability of `window` (`window_samples` values in `[-1, 1]`).
    fn probability(&mut self, window: &[f32]) -> Result<f32, SileroError>;
    /// Forgets the recurrent state (a new, unrelated audio segment follows).
    fn reset(&mut self);
    /// The speech probability of `window`, as the stream task asks for it: a source may wait
    /// here for other streams' windows and run them together (the batching runner does). The
    /// default computes [`SpeechProbability::probability`] at once.
    fn probability_async(
        &mut self,
        window: &[f32],
    ) -> impl std::future::Future<Output = Result<f32, SileroError>> + Send {
        std::future::ready(self.probability(window))
    }
}

/// The Silero model loaded once; cheap to clone and shared by every stream.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pool: Arc<SessionPool>,
    path: PathBuf,
}

impl LoadedModel {
    /// Loads ONNX Runtime (once per process) and the model at `path` (or the cached download),
    /// checking that it is a Silero VAD model.
    pub fn load(path: Option<&Path>, intra_op_threads: usize) -> Result<Self, SileroError> {
        let path = match path {
            Some(path) => path.to_path_buf(),
            None => model_file().find_cached()?,
        };
        livekit_agents_onnx::ensure_runtime()?;
        let options = SessionOptions {
            intra_op_threads,
            ..SessionOptions::default()
        };
        let pool = SessionPool::load(&path, options)?;
        {
            let session = pool.get()?;
            livekit_agents_onnx::check_signature(
                &session,
                &path,
                &["input", "state", "sr"],
                &["output", "stateN"],
            )?;
            // Inputs are passed by position (no name map per inference).
            let order: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
            if order != ["input", "state", "sr"] {
                return Err(OnnxError::Model {
                    path: path.clone(),
                    message: format!("inputs in unexpected order {order:?}"),
                }
                .into());
            }
        }
        // Every session the pool will use, created and run once now rather than during the
        // first conversations (a session takes tens of milliseconds to build).
        let rate = ModelSampleRate::Hz16000;
        let input = vec![0.0f32; rate.context_samples() + rate.window_samples()];
        let state = vec![0.0f32; STATE_LEN];
        let sr = [i64::from(rate.hz())];
        pool.prewarm(|session| {
            session
                .run(ort_inputs(1, &input, &state, &sr)?)
                .map(drop)
                .map_err(OnnxError::inference)
        })?;
        Ok(Self {
            pool: Arc::new(pool),
            path,
        })
    }

    /// The model file in use.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A per-stream runner at `rate`, with zeroed state.
    pub fn runner(&self, rate: ModelSampleRate) -> SileroModel {
        SileroModel::new(self.pool.clone(), rate)
    }

    /// Runs every pooled session once on a batch of `max_batch` zero windows at `rate`, so the
    /// first large batch of a live process does not pay ONNX Runtime's first allocations for
    /// that shape.
    pub(crate) fn prewarm_batches(
        &self,
        rate: ModelSampleRate,
        max_batch: usize,
    ) -> Result<(), SileroError> {
        let batch = max_batch.max(1);
        let row = rate.context_samples() + rate.window_samples();
        let input = vec![0.0f32; batch * row];
        let state = vec![0.0f32; batch * STATE_LEN];
        let sr = [i64::from(rate.hz())];
        self.pool.prewarm(|session| {
            session
                .run(ort_inputs(batch, &input, &state, &sr)?)
                .map(drop)
                .map_err(OnnxError::inference)
        })?;
        Ok(())
    }

    /// The pool of sessions (shared by every stream and the batch scheduler).
    pub(crate) fn pool(&self) -> &Arc<SessionPool> {
        &self.pool
    }
}

/// Per-stream model state: the recurrent state and the previous window's tail (context).
pub struct SileroModel {
    pool: Arc<SessionPool>,
    rate: ModelSampleRate,
    /// `[context | window]`, the model input.
    input: Vec<f32>,
    /// `[2, 1, 128]` recurrent state.
    state: Vec<f32>,
}

/// Values of one stream's recurrent state (`[2, 1, 128]`).
pub(crate) const STATE_LEN: usize = 2 * STATE_WIDTH;
/// Values of one layer of one stream's state.
pub(crate) const STATE_WIDTH: usize = 128;

impl SileroModel {
    fn new(pool: Arc<SessionPool>, rate: ModelSampleRate) -> Self {
        Self {
            pool,
            rate,
            input: vec![0.0; rate.context_samples() + rate.window_samples()],
            state: vec![0.0; STATE_LEN],
        }
    }
}

/// Moves the context (the last `ctx` samples of the previous input, at the end of `input`) to
/// the front and appends `window`: `input` becomes `[context | window]`.
pub(crate) fn shift_in_window(
    input: &mut [f32],
    window: &[f32],
    rate: ModelSampleRate,
) -> Result<(), SileroError> {
    let ctx = rate.context_samples();
    if window.len() != rate.window_samples() || input.len() != ctx + window.len() {
        return Err(OnnxError::Inference(format!(
            "window of {} samples, expected {}",
            window.len(),
            rate.window_samples()
        ))
        .into());
    }
    let len = input.len();
    input.copy_within(len - ctx.., 0);
    input[ctx..].copy_from_slice(window);
    Ok(())
}

impl SpeechProbability for SileroModel {
    fn probability(&mut self, window: &[f32]) -> Result<f32, SileroError> {
        shift_in_window(&mut self.input, window, self.rate)?;
        let mut probability = [0.0f32];
        run_batch(
            &self.pool,
            self.rate,
            1,
            &self.input,
            &mut self.state,
            &mut probability,
        )?;
        Ok(probability[0])
    }

    fn reset(&mut self) {
        self.input.fill(0.0);
        self.state.fill(0.0);
    }
}

impl LoadedModel {
    /// Runs `batch` windows of independent streams as one inference.
    ///
    /// `input` holds `batch` rows of `[context | window]` (`context_samples + window_samples`
    /// values each, in `[-1, 1]`); `state` is the `[2, batch, 128]` recurrent state (layer-major:
    /// all rows of layer 0, then all rows of layer 1), replaced by the next state; the speech
    /// probability of row `i` goes to `probabilities[i]`. Streams opened through
    /// [`SileroVad`](crate::SileroVad) batch on their own (see
    /// [`BatchOptions`](crate::BatchOptions)); this is the primitive they use, for benchmarks
    /// and custom schedulers.
    pub fn infer_batch(
        &self,
        rate: ModelSampleRate,
        batch: usize,
        input: &[f32],
        state: &mut [f32],
        probabilities: &mut [f32],
    ) -> Result<(), SileroError> {
        run_batch(&self.pool, rate, batch, input, state, probabilities)
    }
}

/// One inference of `batch` rows (see [`LoadedModel::infer_batch`]).
pub(crate) fn run_batch(
    pool: &SessionPool,
    rate: ModelSampleRate,
    batch: usize,
    input: &[f32],
    state: &mut [f32],
    probabilities: &mut [f32],
) -> Result<(), SileroError> {
    let row = rate.context_samples() + rate.window_samples();
    if batch == 0
        || input.len() != batch * row
        || state.len() != batch * STATE_LEN
        || probabilities.len() != batch
    {
        return Err(OnnxError::Inference(format!(
            "batch of {batch}: {} input values, {} state values, {} probabilities (expected {}, {}, {batch})",
            input.len(),
            state.len(),
            probabilities.len(),
            batch * row,
            batch * STATE_LEN
        ))
        .into());
    }
    let sr = [i64::from(rate.hz())];
    let mut session = pool.get()?;
    let outputs = session
        .run(ort_inputs(batch, input, state, &sr)?)
        .map_err(OnnxError::inference)?;
    let (_, output) = outputs["output"]
        .try_extract_tensor::<f32>()
        .map_err(OnnxError::inference)?;
    if output.len() != batch {
        return Err(OnnxError::Inference(format!(
            "`output` has {} values, expected {batch}",
            output.len()
        ))
        .into());
    }
    let (_, next_state) = outputs["stateN"]
        .try_extract_tensor::<f32>()
        .map_err(OnnxError::inference)?;
    if next_state.len() != state.len() {
        return Err(OnnxError::Inference(format!(
            "`stateN` has {} values, expected {}",
            next_state.len(),
            state.len()
        ))
        .into());
    }
    probabilities.copy_from_slice(output);
    state.copy_from_slice(next_state);
    Ok(())
}

/// The model's inputs, by position (`input`, `state`, `sr`: the order checked at load).
fn ort_inputs<'a>(
    batch: usize,
    input: &'a [f32],
    state: &'a [f32],
    sr: &'a [i64; 1],
) -> Result<[livekit_agents_onnx::ort::session::SessionInputValue<'a>; 3], OnnxError> {
    let row = input.len() / batch.max(1);
    let input = TensorRef::from_array_view(([batch, row], input)).map_err(OnnxError::inference)?;
    let state = TensorRef::from_array_view(([2usize, batch, STATE_WIDTH], state))
        .map_err(OnnxError::inference)?;
    let sr = TensorRef::from_array_view(([0usize; 0], &sr[..])).map_err(OnnxError::inference)?;
    Ok([input.into(), state.into(), sr.into()])
}
