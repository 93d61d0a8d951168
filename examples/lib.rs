//! Helpers shared by the example agents in this package.
//!
//! Each example is a standalone program (`cargo run --example NAME -- console --text`); this
//! library only holds what several of them repeat: loading the Silero VAD once per process
//! (prewarm) and finding it again from a job.

use std::sync::Arc;

use anyhow::Context as _;
use livekit_agents::vad::Vad;
use livekit_agents::worker::{JobContext, JobProcess, UserdataKey};
use livekit_plugins_silero::{SileroVad, VadOptions};

/// The key under which [`prewarm_vad`] stores the VAD in the process userdata.
pub const VAD_KEY: UserdataKey<Arc<dyn Vad>> = UserdataKey::new("vad");

/// Prewarm function: loads the Silero VAD once per process, so every job shares one model.
/// Pass it to [`WorkerOptions::with_prewarm`](livekit_agents::worker::WorkerOptions::with_prewarm).
///
/// Loading reads the model and ONNX Runtime from the download cache; when they are missing the
/// error names the command that fetches them (`download-files`).
pub async fn prewarm_vad(proc: JobProcess) -> anyhow::Result<()> {
    // Loading an ONNX model is blocking work: keep it off the async runtime's threads.
    let vad = tokio::task::spawn_blocking(|| SileroVad::load(VadOptions::default()))
        .await
        .context("the VAD loading task failed")??;
    proc.userdata().set(&VAD_KEY, Arc::new(vad) as Arc<dyn Vad>);
    Ok(())
}

/// The VAD loaded by [`prewarm_vad`] for this job's process.
pub fn shared_vad(ctx: &JobContext) -> anyhow::Result<Arc<dyn Vad>> {
    ctx.proc()
        .userdata()
        .value(&VAD_KEY)
        .map(|vad| (*vad).clone())
        .context("no VAD in the process userdata: set `with_prewarm(examples::prewarm_vad)`")
}
