//! The ONNX Runtime side: one session per model, `input_ids` in, last probability out.

use std::path::Path;

use livekit_agents_onnx::ort::session::Session;
use livekit_agents_onnx::ort::value::TensorRef;
use livekit_agents_onnx::SessionOptions;
use parking_lot::Mutex;

use crate::error::LoadError;
use crate::inference::EouBackend;

/// Name of the model's only input.
pub const INPUT_NAME: &str = "input_ids";

/// An ONNX end-of-turn model: input `input_ids` int64 `[1, seq]`, output 0 a per-position
/// probability (`[1, seq]` or any shape whose last element is the last position's).
pub(crate) struct OnnxBackend {
    // `Session::run` needs `&mut`; one inference at a time uses ONNX Runtime's intra-op
    // threads, and the pool's other thread prepares the next request meanwhile.
    session: Mutex<Session>,
}

impl OnnxBackend {
    /// Loads `model_path` on the process's ONNX Runtime (found and loaded on first use by
    /// `livekit-agents-onnx`).
    pub(crate) fn load(model_path: &Path, intra_op_threads: usize) -> Result<Self, LoadError> {
        let options = SessionOptions {
            intra_op_threads: intra_op_threads.max(1),
            inter_op_threads: 1,
            max_sessions: 1,
        };
        let onnx = |e: livekit_agents_onnx::OnnxError| LoadError::Onnx(e.to_string());
        let session = livekit_agents_onnx::build_session(model_path, &options).map_err(onnx)?;
        livekit_agents_onnx::check_signature(&session, model_path, &[INPUT_NAME], &[])
            .map_err(onnx)?;
        if session.outputs().is_empty() {
            return Err(LoadError::Onnx(format!(
                "{}: the model has no output",
                model_path.display()
            )));
        }
        Ok(Self {
            session: Mutex::new(session),
        })
    }
}

impl EouBackend for OnnxBackend {
    fn predict(&self, input_ids: &[i64]) -> Result<f32, String> {
        let input = TensorRef::from_array_view(([1usize, input_ids.len()], input_ids))
            .map_err(|e| e.to_string())?;
        let mut session = self.session.lock();
        let outputs = session
            .run(livekit_agents_onnx::ort::inputs![INPUT_NAME => input])
            .map_err(|e| e.to_string())?;
        let (_, probs) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        probs
            .last()
            .copied()
            .ok_or_else(|| "the model returned an empty output".to_owned())
    }
}
