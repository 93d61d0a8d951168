//! The "no secret at trace level" check every plugin runs: with every log level at trace (as
//! `RUST_LOG=trace` sets it), an API key must never reach the log output, although
//! `tungstenite` logs WebSocket handshakes, headers included, raw at trace level.
//!
//! ```ignore
//! #[tokio::test]
//! async fn the_api_key_is_in_no_log_at_trace_level() {
//!     assert_secret_not_logged(
//!         MARKER,
//!         |capture| {
//!             livekit_agents::cli::logging_subscriber("trace", LogFormat::Pretty, Some("trace"), move || capture.clone())
//!                 .try_init()
//!                 .unwrap()
//!         },
//!         || connect_once_with_the_marker_key(),
//!     )
//!     .await;
//! }
//! ```

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A log writer that keeps everything written to it (clone it into a subscriber's writer).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// Checks that `marker` (an API key the client under test is configured with) reaches no log
/// output of the subscriber `install` sets up as the process-wide default (writing to the
/// [`Capture`] it is given), while `connect` makes one connection with that key.
///
/// The hazard is checked first: under a plain trace-level subscriber (for this thread only)
/// `connect` must show the marker in the logs, so the test fails loudly if the logging it
/// guards against ever goes away instead of passing vacuously. A trace event with target
/// `livekit_plugin_test_support` then proves the installed subscriber captures trace output.
/// Call it once per test binary (the process-wide subscriber can be installed once).
pub async fn assert_secret_not_logged<I, F, Fut>(marker: &str, install: I, connect: F)
where
    I: FnOnce(Capture),
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let safe = Capture::default();
    install(safe.clone());

    let plain = Capture::default();
    {
        let w = plain.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || w.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        connect().await;
    }
    assert!(
        plain.text().contains(marker),
        "the unfiltered handshake log should show the key (is tungstenite still logging it?)"
    );

    connect().await;
    tracing::trace!(target: "livekit_plugin_test_support", "capture probe");
    let out = safe.text();
    assert!(
        out.contains("capture probe"),
        "nothing captured at trace: {out}"
    );
    assert!(!out.contains(marker), "API key in the logs:\n{out}");
}
