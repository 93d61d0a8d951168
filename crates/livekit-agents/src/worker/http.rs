//! Health and metrics HTTP server: `GET /` (200 while registered, 503 otherwise),
//! `GET /worker` (JSON summary) and `GET /metrics` (Prometheus text).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::Inner;

pub(crate) async fn start(inner: Arc<Inner>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let close = inner.close.clone();
    let app = Router::new()
        .route("/", get(health))
        .route("/worker", get(worker_info))
        .route("/metrics", get(prometheus))
        .with_state(inner);
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(close.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "health server stopped");
        }
    });
    Ok(bound)
}

async fn health(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    if inner.connection_failed.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "failed to connect to livekit",
        )
    } else if !inner.connected.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to livekit")
    } else {
        (StatusCode::OK, "OK")
    }
}

async fn worker_info(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    let (jobs, load, worker_id) = {
        let st = inner.state.lock();
        (st.jobs.len(), st.load, st.worker_id.clone())
    };
    Json(serde_json::json!({
        "agent_name": inner.opts.agent_name,
        "worker_type": format!("{:?}", inner.opts.server_type),
        "worker_id": worker_id,
        "active_jobs": jobs,
        "sdk_version": env!("CARGO_PKG_VERSION"),
        "worker_load": load,
        "draining": inner.draining.load(Ordering::SeqCst),
        "protocol_version": 1,
    }))
}

async fn prometheus(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    let (jobs, load) = {
        let st = inner.state.lock();
        (st.jobs.len(), st.load)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP livekit_agents_jobs_running Jobs running in this process."
    );
    let _ = writeln!(out, "# TYPE livekit_agents_jobs_running gauge");
    let _ = writeln!(out, "livekit_agents_jobs_running {jobs}");
    let _ = writeln!(
        out,
        "# HELP livekit_agents_worker_load Load reported to the LiveKit server (0-1)."
    );
    let _ = writeln!(out, "# TYPE livekit_agents_worker_load gauge");
    let _ = writeln!(out, "livekit_agents_worker_load {load}");
    let _ = writeln!(
        out,
        "# HELP livekit_agents_worker_connected 1 while registered with the LiveKit server."
    );
    let _ = writeln!(out, "# TYPE livekit_agents_worker_connected gauge");
    let _ = writeln!(
        out,
        "livekit_agents_worker_connected {}",
        u8::from(inner.connected.load(Ordering::SeqCst))
    );
    out.push_str(&super::metrics::render_stage_histograms());
    out.push_str(&super::metrics::render_overload_metrics());
    out.push_str(&super::job_start::render_job_start_histograms());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
