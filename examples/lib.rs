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

/// What the examples' tests share: a started text session on a scripted model, and a scripted
/// run of an example's worker through `console --text` (the same code path as
/// `cargo run --example NAME -- console --text`, with typed lines from a script).
pub mod console_test {
    use std::sync::Arc;
    use std::time::Duration;

    use livekit_agents::cli::{run_console, ConsoleOptions, ConsoleReport};
    use livekit_agents::io::memory::MemoryTextOutput;
    use livekit_agents::testing::FakeLlm;
    use livekit_agents::voice::{Agent, AgentSession, SessionIo};
    use livekit_agents::worker::WorkerOptions;

    /// Starts `agent` in a session on `llm` whose replies go to the returned text output.
    pub async fn text_session(llm: FakeLlm, agent: Agent) -> (AgentSession, MemoryTextOutput) {
        let session = AgentSession::builder().llm(Arc::new(llm)).build();
        let text = MemoryTextOutput::new();
        let io = SessionIo {
            text_output: Some(Arc::new(text.clone())),
            ..Default::default()
        };
        if let Err(e) = session.start(agent, io).await {
            panic!("the session did not start: {e}");
        }
        (session, text)
    }

    /// A console display keeping what it was shown (printed when a run does not end).
    #[derive(Clone, Default)]
    struct Captured(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// How long a scripted console run may take (on the paused clock) before the test fails.
    pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

    /// Runs `worker` in `console --text` mode with `lines` typed one by one (`delay` before
    /// the first, as a caller who speaks a moment after the call connected), and returns the
    /// console's report once the job ended. The input stays open after the last line (no
    /// Ctrl-D): the agent has to end the call. Panics after [`SCRIPT_TIMEOUT`].
    pub async fn run_script(
        worker: WorkerOptions,
        lines: &[&str],
        delay: Duration,
    ) -> ConsoleReport {
        let script: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let typist = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tokio::time::sleep(delay).await;
            let _ = writer.write_all(script.as_bytes()).await;
            std::future::pending::<()>().await;
        });
        let display = Captured::default();
        let options = ConsoleOptions::default()
            .with_text(true)
            .with_text_input(Box::new(tokio::io::BufReader::new(reader)))
            .with_display(Box::new(display.clone()));
        let run = tokio::time::timeout(SCRIPT_TIMEOUT, run_console(worker, options)).await;
        typist.abort();
        match run {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => panic!("the console run failed: {e}"),
            Err(_) => panic!(
                "the console run did not end within {SCRIPT_TIMEOUT:?}; it showed:\n{}",
                String::from_utf8_lossy(&display.0.lock())
            ),
        }
    }

    /// The conversation lines of a console report (`user: ...`, `agent: ...`, `[tool] ...`).
    pub fn conversation(report: &ConsoleReport) -> Vec<String> {
        report
            .lines
            .iter()
            .filter(|l| {
                l.starts_with("user:") || l.starts_with("agent:") || l.starts_with("[tool]")
            })
            .cloned()
            .collect()
    }

    /// The line saying why the session closed (`[session closed] CallEnded`), if any.
    pub fn close_line(report: &ConsoleReport) -> Option<&str> {
        report
            .lines
            .iter()
            .map(String::as_str)
            .find(|l| l.starts_with("[session closed]"))
    }
}
