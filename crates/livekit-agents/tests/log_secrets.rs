//! Issue 15 item 9: with every log level at trace (`RUST_LOG=trace`), the worker's agent token
//! (valid for hours) never reaches the log output. The WebSocket handshake, which `tungstenite`
//! logs raw at trace level, carries it in the `Authorization` header.
#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livekit_agents::cli::{logging_subscriber, LogFormat};
use livekit_agents::worker::{AgentServer, JobContext, WorkerOptions};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tracing_subscriber::util::SubscriberInitExt as _;

const API_SECRET: &str = "MARKERworkerSECRET-0123456789-abcdef";

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

/// Starts an agent server against a local fake, accepts its WebSocket handshake and returns
/// the bearer token it sent.
async fn connect_once() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut opts = WorkerOptions::new(|_ctx: JobContext| async { Ok(()) })
        .with_credentials(&url, "devkey", API_SECRET);
    opts.http_addr = None;
    let server = AgentServer::new(opts);
    let s = server.clone();
    let run = tokio::spawn(async move { s.run().await });
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("worker did not connect")
        .unwrap();
    let mut auth = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        auth = req.headers()["authorization"].to_str().unwrap().to_owned();
        Ok(resp)
    })
    .await
    .unwrap();
    drop(ws);
    server.aclose().await;
    let _ = run.await;
    auth.strip_prefix("Bearer ").unwrap().to_owned()
}

#[tokio::test]
async fn the_agent_token_is_in_no_log_at_trace_level() {
    let safe = Capture::default();
    let w = safe.clone();
    logging_subscriber("trace", LogFormat::Pretty, Some("trace"), move || w.clone())
        .try_init()
        .unwrap();

    // The hazard is real: a plain trace subscriber shows the token.
    let plain = Capture::default();
    let token = {
        let w = plain.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || w.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(sub);
        connect_once().await
    };
    assert!(
        plain.text().contains(&token),
        "the unfiltered handshake log should show the token (is tungstenite still logging it?)"
    );

    let token = connect_once().await;
    tracing::trace!(target: "livekit_agents", "capture probe");
    let out = safe.text();
    assert!(
        out.contains("capture probe"),
        "nothing captured at trace: {out}"
    );
    assert!(!out.contains(&token), "agent token in the logs:\n{out}");
    assert!(!out.contains(API_SECRET), "API secret in the logs:\n{out}");
}
