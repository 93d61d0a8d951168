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
        }
        // Every session the pool will use, created and run once now rather than during the
        // first conversations (a session takes tens of milliseconds to build).
        let rate = ModelSampleRate::Hz16000;
        let input = vec![0.0f32; rate.context_samples() + rate.window_samples()];
        let state = vec![0.0f32; STATE_LEN];
        let sr = [i64::from(rate.hz())];
        pool.prewarm(|session| {
            session
                .run(ort_inputs(&input, &state, &sr)?)
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
}

/// Per-stream model state: the recurrent state and the previous window's tail (context).
pub struct SileroModel {
    pool: Arc<SessionPool>,
    rate: ModelSampleRate,
    sr: [i64; 1],
    /// `[context | window]`, the model input.
    input: Vec<f32>,
    /// `[2, 1, 128]` recurrent state.
    state: Vec<f32>,
}

const STATE_LEN: usize = 2 * 128;

impl SileroModel {
    fn new(pool: Arc<SessionPool>, rate: ModelSampleRate) -> Self {
        Self {
            pool,
            rate,
            sr: [i64::from(rate.hz())],
            input: vec![0.0; rate.context_samples() + rate.window_samples()],
            state: vec![0.0; STATE_LEN],
        }
    }
}

impl SpeechProbability for SileroModel {
    fn probability(&mut self, window: &[f32]) -> Result<f32, SileroError> {
        let ctx = self.rate.context_samples();
        if window.len() != self.rate.window_samples() {
            return Err(OnnxError::Inference(format!(
                "window of {} samples, expected {}",
                window.len(),
                self.rate.window_samples()
            ))
            .into());
        }
        // The context (last `ctx` samples of the previous input) is already at the end of
        // `input`; move it to the front, then append the new window.
        let len = self.input.len();
        self.input.copy_within(len - ctx.., 0);
        self.input[ctx..].copy_from_slice(window);

        let mut session = self.pool.get()?;
        let inputs = ort_inputs(&self.input, &self.state, &self.sr)?;
        let outputs = session.run(inputs).map_err(OnnxError::inference)?;
        let (_, probability) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(OnnxError::inference)?;
        let probability = probability
            .first()
            .copied()
            .ok_or_else(|| OnnxError::Inference("empty `output` tensor".into()))?;
        let (_, state) = outputs["stateN"]
            .try_extract_tensor::<f32>()
            .map_err(OnnxError::inference)?;
        if state.len() != STATE_LEN {
            return Err(OnnxError::Inference(format!(
                "`stateN` has {} values, expected {STATE_LEN}",
                state.len()
            ))
            .into());
        }
        self.state.copy_from_slice(state);
        Ok(probability)
    }

    fn reset(&mut self) {
        self.input.fill(0.0);
        self.state.fill(0.0);
    }
}

fn ort_inputs<'a>(
    input: &'a [f32],
    state: &'a [f32],
    sr: &'a [i64; 1],
) -> Result<
    Vec<(
        &'static str,
        livekit_agents_onnx::ort::session::SessionInputValue<'a>,
    )>,
    OnnxError,
> {
    let input =
        TensorRef::from_array_view(([1usize, input.len()], input)).map_err(OnnxError::inference)?;
    let state =
        TensorRef::from_array_view(([2usize, 1, 128], state)).map_err(OnnxError::inference)?;
    let sr = TensorRef::from_array_view(([0usize; 0], &sr[..])).map_err(OnnxError::inference)?;
    Ok(vec![
        ("input", input.into()),
        ("state", state.into()),
        ("sr", sr.into()),
    ])
}
