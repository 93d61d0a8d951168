//! Issue 15 item 9: with every log level at trace (`RUST_LOG=trace`), the Deepgram API key
//! never reaches the log output. The WebSocket handshake, which `tungstenite` logs raw at trace
//! level, carries it in the `Authorization` header.
#![allow(clippy::unwrap_used)]

mod support;

use livekit_agents::cli::{logging_subscriber, LogFormat};
use livekit_agents::stt::Stt as _;
use livekit_agents::types::ApiConnectOptions;
use livekit_plugin_test_support::log_secrets::assert_secret_not_logged;
use livekit_plugins_deepgram::{Stt, SttOptions};
use tracing_subscriber::util::SubscriberInitExt as _;

use support::*;

const MARKER: &str = "MARKERdeepgramSECRET0123456789";

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
    assert_secret_not_logged(
        MARKER,
        |capture| {
            logging_subscriber("trace", LogFormat::Pretty, Some("trace"), move || {
                capture.clone()
            })
            .try_init()
            .unwrap()
        },
        connect_once,
    )
    .await;
}
