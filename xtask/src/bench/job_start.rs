//! `cargo xtask bench job-start`: how long a dispatched job takes to start.
//!
//! A real [`AgentServer`] registers with a fake LiveKit server on 127.0.0.1 (the agent
//! WebSocket protocol: binary `livekit-protocol` messages, as in the worker tests) which
//! dispatches `--jobs` jobs one after the other: availability request, the server's answer,
//! assignment. Each job's entrypoint builds an [`AgentSession`] with the process's shared Silero
//! VAD (loaded once, as a prewarm function would), starts it on an in-memory audio input, and
//! stays alive, so job `k` starts while `k - 1` sessions run. Reported, p50/p95/p99/max:
//!
//! - assignment received -> entrypoint running (the `entrypoint` phase of
//!   `livekit_agents_job_start_seconds`);
//! - assignment received -> session ready (`session_ready`: `AgentSession::start` returned);
//! - assignment sent by the fake server -> session ready (adds the loopback WebSocket hop).
//!
//! The first two come from the entrypoint (`JobContext::assigned_at`); the metric's own counts
//! are checked against them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use livekit_agents::io::memory::{audio_input_channel, AudioInputSender};
use livekit_agents::voice::{Agent, AgentSession, SessionIo, SessionOptions, TurnDetection};
use livekit_agents::worker::job_start::job_start_summary;
use livekit_agents::worker::{AgentServer, JobContext, WorkerOptions};
use livekit_plugins_silero::{SileroVad, VadOptions};
use livekit_protocol as proto;
use livekit_protocol::{server_message, worker_message};
use prost::Message as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::{load_average, quantile, BenchArgs};

/// Guard on every wait for the worker (only fires when something is broken).
const GUARD: Duration = Duration::from_secs(20);

/// What one job's entrypoint measured, seconds after the assignment was received.
struct JobTimes {
    job: usize,
    entrypoint: f64,
    session_ready: f64,
    /// When the session was ready (to compare with the fake server's send time).
    ready_at: Instant,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(bench(args.jobs.max(1)))
}

async fn bench(jobs: usize) -> anyhow::Result<()> {
    let vad = SileroVad::load(VadOptions::default())
        .context("load Silero (run `cargo xtask download-files` first)")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (times_tx, mut times_rx) = mpsc::unbounded_channel::<JobTimes>();
    let sessions: Arc<Held> = Arc::default();
    let held = sessions.clone();
    let opts = WorkerOptions::new(move |ctx: JobContext| {
        let vad = vad.clone();
        let times_tx = times_tx.clone();
        let held = held.clone();
        async move {
            let entered = ctx.assigned_at().map(|at| at.elapsed().as_secs_f64());
            let mut options = SessionOptions::default();
            options.turn_handling.turn_detection = TurnDetection::Vad;
            let session = AgentSession::builder()
                .options(options)
                .vad(Arc::new(vad))
                .build();
            let (sender, audio_input) = audio_input_channel();
            session
                .start(
                    Agent::new("You are a helpful voice assistant."),
                    SessionIo {
                        audio_input: Some(audio_input),
                        ..SessionIo::default()
                    },
                )
                .await?;
            let ready_at = Instant::now();
            let ready = ctx.assigned_at().map(|at| at.elapsed().as_secs_f64());
            let job: usize = ctx
                .job_id()
                .strip_prefix("AJ_bench_")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            if let (Some(entrypoint), Some(session_ready)) = (entered, ready) {
                let _ = times_tx.send(JobTimes {
                    job,
                    entrypoint,
                    session_ready,
                    ready_at,
                });
            }
            // The job stays alive with its session until the bench ends.
            held.push(session, sender);
            ctx.keep_alive();
            Ok(())
        }
    })
    .with_credentials(&url, "devkey", "devsecret-devsecret-devsecret-000")
    .with_load_fn(|_| 0.0);
    let mut opts = opts;
    opts.http_addr = None;
    opts.load_threshold = f32::INFINITY;
    let server = AgentServer::new(opts);
    let runner = server.clone();
    let handle = tokio::spawn(async move { runner.run().await });

    let (tcp, _) = tokio::time::timeout(GUARD, listener.accept())
        .await
        .context("the agent server did not connect")??;
    let mut conn = Conn {
        ws: tokio_tungstenite::accept_async(tcp).await?,
    };
    match conn.recv().await? {
        worker_message::Message::Register(_) => {}
        other => bail!("expected registration, got {other:?}"),
    }
    conn.send(server_message::Message::Register(
        proto::RegisterWorkerResponse {
            worker_id: "AW_bench".into(),
            ..Default::default()
        },
    ))
    .await?;

    let (entry0, ready0) = (
        job_start_summary("entrypoint").map_or(0, |s| s.0),
        job_start_summary("session_ready").map_or(0, |s| s.0),
    );
    println!(
        "job start: {jobs} jobs dispatched one after the other by a fake LiveKit server on 127.0.0.1; each starts an AgentSession with the shared Silero VAD and stays alive (load average {})",
        load_average()
    );
    let mut sent_at = Vec::with_capacity(jobs);
    let mut times = Vec::with_capacity(jobs);
    for k in 0..jobs {
        let job_id = format!("AJ_bench_{k}");
        conn.send(server_message::Message::Availability(
            proto::AvailabilityRequest {
                job: Some(job(&job_id)),
                resuming: false,
            },
        ))
        .await?;
        loop {
            match conn.recv().await? {
                worker_message::Message::Availability(a) if a.job_id == job_id => {
                    if !a.available {
                        bail!("the agent server declined job {job_id}");
                    }
                    break;
                }
                _ => {}
            }
        }
        sent_at.push(Instant::now());
        conn.send(server_message::Message::Assignment(proto::JobAssignment {
            job: Some(job(&job_id)),
            url: Some("ws://room-server.invalid".into()),
            token: format!("token-{job_id}"),
        }))
        .await?;
        let t = tokio::time::timeout(GUARD, times_rx.recv())
            .await
            .context("the job's entrypoint did not report")?
            .context("entrypoint channel closed")?;
        times.push(t);
    }
    let entry_count = job_start_summary("entrypoint").map_or(0, |s| s.0) - entry0;
    let ready_count = job_start_summary("session_ready").map_or(0, |s| s.0) - ready0;

    let mut entry: Vec<f64> = times.iter().map(|t| t.entrypoint * 1e3).collect();
    let mut ready: Vec<f64> = times.iter().map(|t| t.session_ready * 1e3).collect();
    let mut from_send: Vec<f64> = times
        .iter()
        .filter_map(|t| {
            let sent = sent_at.get(t.job)?;
            Some(t.ready_at.saturating_duration_since(*sent).as_secs_f64() * 1e3)
        })
        .collect();
    for v in [&mut entry, &mut ready, &mut from_send] {
        v.sort_by(f64::total_cmp);
    }
    let row = |name: &str, v: &[f64]| {
        println!(
            "  {name:<48} p50 {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms",
            quantile(v, 0.5),
            quantile(v, 0.95),
            quantile(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN)
        );
    };
    row("assignment received -> entrypoint running", &entry);
    row("assignment received -> session ready", &ready);
    row("assignment sent (fake server) -> session ready", &from_send);
    println!(
        "  /metrics livekit_agents_job_start_seconds counted {entry_count} entrypoints and {ready_count} ready sessions for {jobs} jobs (target: session ready p99 <= 5 ms); load average at end {}",
        load_average()
    );
    let json = serde_json::json!({
        "bench": "job-start",
        "jobs": jobs,
        "entrypoint_ms": {"p50": quantile(&entry, 0.5), "p99": quantile(&entry, 0.99), "max": entry.last()},
        "session_ready_ms": {"p50": quantile(&ready, 0.5), "p99": quantile(&ready, 0.99), "max": ready.last()},
        "sent_to_ready_ms": {"p50": quantile(&from_send, 0.5), "p99": quantile(&from_send, 0.99), "max": from_send.last()},
        "load_average": load_average(),
    });
    println!("{json}");
    server.aclose().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
    drop(sessions);
    Ok(())
}

/// Keeps the jobs' sessions (and their audio senders) alive until the bench ends.
#[derive(Default)]
struct Held(std::sync::Mutex<Vec<(AgentSession, AudioInputSender)>>);

impl Held {
    fn push(&self, session: AgentSession, sender: AudioInputSender) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((session, sender));
    }
}

struct Conn {
    ws: WebSocketStream<TcpStream>,
}

impl Conn {
    async fn recv(&mut self) -> anyhow::Result<worker_message::Message> {
        loop {
            let frame = tokio::time::timeout(GUARD, self.ws.next())
                .await
                .context("no message from the agent server")?
                .context("the agent server closed the connection")??;
            if let WsMessage::Binary(bytes) = frame {
                if let Some(message) = proto::WorkerMessage::decode(&*bytes)?.message {
                    return Ok(message);
                }
            }
        }
    }

    async fn send(&mut self, message: server_message::Message) -> anyhow::Result<()> {
        let message = proto::ServerMessage {
            message: Some(message),
        };
        self.ws
            .send(WsMessage::Binary(message.encode_to_vec().into()))
            .await?;
        Ok(())
    }
}

fn job(id: &str) -> proto::Job {
    proto::Job {
        id: id.to_owned(),
        r#type: proto::JobType::JtRoom as i32,
        room: Some(proto::Room {
            sid: "RM_bench".into(),
            name: format!("room-{id}"),
            ..Default::default()
        }),
        ..Default::default()
    }
}
