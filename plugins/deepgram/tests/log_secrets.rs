//! Issue 15 item 9: with every log level at trace (`RUST_LOG=trace`), the Deepgram API key
//! never reaches the log output. The WebSocket handshake, which `tungstenite` logs raw at trace
//! level, carries it in the `Authorization` header.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use livekit_agents::cli::{logging_subscriber, LogFormat};
use livekit_agents::stt::Stt as _;
use livekit_agents::types::ApiConnectOptions;
use livekit_plugins_deepgram::{Stt, SttOptions};
use tracing_subscriber::util::SubscriberInitExt as _;

use support::*;

const MARKER: &str = "MARKERdeepgramSECRET0123456789";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// One streaming connection with the marker key, up to the server seeing the handshake.
async fn connect_once() {
    let mut server = FakeServer::start().await;
    let stt = Stt::new(SttOptions {
        api_key: Some(MARKER.into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&server.base_url())
    .unwrap();
    let stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.1);
    let mut conn = server.next_conn().await;
    assert_eq!(conn.headers["authorization"], format!("Token {MARKER}"));
    conn.recv_audio(2 * CHUNK_BYTES).await;
    drop(stream);
}

#[tokio::test]
async fn the_api_key_is_in_no_log_at_trace_level() {
    // The process-wide subscriber of the crate's log setup, as `RUST_LOG=trace` configures it
    // (this also routes the `log` records of tungstenite into tracing).
    let safe = Capture::default();
    let w = safe.clone();
    logging_subscriber("trace", LogFormat::Pretty, Some("trace"), move || w.clone())
        .try_init()
        .unwrap();

    // The hazard is real: a plain trace subscriber shows the key.
    let plain = Capture::default();
    {
        let w = plain.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || w.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(sub);
        connect_once().await;
    }
    assert!(
        plain.text().contains(MARKER),
        "the unfiltered handshake log should show the key (is tungstenite still logging it?)"
    );

    connect_once().await;
    tracing::trace!(target: "livekit_plugins_deepgram", "capture probe");
    let out = safe.text();
    assert!(
        out.contains("capture probe"),
        "nothing captured at trace: {out}"
    );
    assert!(!out.contains(MARKER), "API key in the logs:\n{out}");
}
