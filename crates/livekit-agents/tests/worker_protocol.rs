//! Agent server against a fake LiveKit server on 127.0.0.1 speaking the agent WebSocket
//! protocol (binary `livekit-protocol` messages).
//!
//! These tests use real sockets, so they run on the real clock; the server options use short
//! intervals and every wait has a generous guard timeout that only fires on failure.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use livekit_agents::worker::{
    AcceptArgs, AgentServer, JobContext, ReconnectPolicy, ServerType, WorkerError, WorkerOptions,
    WorkerPermissions,
};
use livekit_protocol as proto;
use livekit_protocol::{server_message, worker_message};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

const GUARD: Duration = Duration::from_secs(30);

struct FakeServer {
    listener: TcpListener,
    url: String,
}

struct Conn {
    ws: WebSocketStream<TcpStream>,
    auth: Option<String>,
    path: String,
}

impl FakeServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self { listener, url }
    }

    async fn accept(&self) -> Conn {
        let (tcp, _) = tokio::time::timeout(GUARD, self.listener.accept())
            .await
            .expect("worker did not connect")
            .unwrap();
        let mut auth = None;
        let mut path = String::new();
        let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
            auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            path = req.uri().path().to_owned();
            Ok(resp)
        })
        .await
        .unwrap();
        Conn { ws, auth, path }
    }

    /// Accepts a connection and completes registration.
    async fn accept_registered(&self, worker_id: &str) -> (Conn, proto::RegisterWorkerRequest) {
        let mut conn = self.accept().await;
        let reg = conn.expect_register().await;
        conn.send(server_message::Message::Register(
            proto::RegisterWorkerResponse {
                worker_id: worker_id.to_owned(),
                ..Default::default()
            },
        ))
        .await;
        (conn, reg)
    }
}

impl Conn {
    async fn recv(&mut self) -> Option<worker_message::Message> {
        loop {
            let frame = tokio::time::timeout(GUARD, self.ws.next())
                .await
                .expect("no message from the worker")?;
            match frame {
                Ok(WsMessage::Binary(b)) => {
                    return proto::WorkerMessage::decode(&*b).unwrap().message;
                }
                Ok(WsMessage::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Next message that is not a periodic status update or ping.
    async fn recv_event(&mut self) -> worker_message::Message {
        loop {
            match self.recv().await.expect("connection closed") {
                worker_message::Message::UpdateWorker(_) | worker_message::Message::Ping(_) => {}
                m => return m,
            }
        }
    }

    /// Next worker status update matching `pred`.
    async fn recv_status(
        &mut self,
        pred: impl Fn(&proto::UpdateWorkerStatus) -> bool,
    ) -> proto::UpdateWorkerStatus {
        loop {
            if let worker_message::Message::UpdateWorker(s) =
                self.recv().await.expect("connection closed")
            {
                if pred(&s) {
                    return s;
                }
            }
        }
    }

    async fn expect_register(&mut self) -> proto::RegisterWorkerRequest {
        match self.recv().await {
            Some(worker_message::Message::Register(r)) => r,
            other => panic!("expected register, got {other:?}"),
        }
    }

    async fn send(&mut self, msg: server_message::Message) {
        let msg = proto::ServerMessage { message: Some(msg) };
        self.ws
            .send(WsMessage::Binary(msg.encode_to_vec().into()))
            .await
            .unwrap();
    }

    async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
    }

    async fn offer(&mut self, job_id: &str) -> proto::AvailabilityResponse {
        self.send(server_message::Message::Availability(
            proto::AvailabilityRequest {
                job: Some(job(job_id)),
                resuming: false,
            },
        ))
        .await;
        match self.recv_event().await {
            worker_message::Message::Availability(a) => {
                assert_eq!(a.job_id, job_id);
                a
            }
            other => panic!("expected availability, got {other:?}"),
        }
    }

    async fn assign(&mut self, job_id: &str) {
        self.send(server_message::Message::Assignment(proto::JobAssignment {
            job: Some(job(job_id)),
            url: Some("ws://room-server.test".into()),
            token: format!("token-{job_id}"),
        }))
        .await;
    }

    async fn expect_job_status(&mut self, job_id: &str) -> proto::UpdateJobStatus {
        match self.recv_event().await {
            worker_message::Message::UpdateJob(u) => {
                assert_eq!(u.job_id, job_id);
                u
            }
            other => panic!("expected job status, got {other:?}"),
        }
    }

    async fn terminate(&mut self, job_id: &str) {
        self.send(server_message::Message::Termination(
            proto::JobTermination {
                job_id: job_id.to_owned(),
            },
        ))
        .await;
    }
}

fn job(id: &str) -> proto::Job {
    proto::Job {
        id: id.to_owned(),
        r#type: proto::JobType::JtRoom as i32,
        room: Some(proto::Room {
            sid: "RM_1".into(),
            name: "room-1".into(),
            ..Default::default()
        }),
        metadata: r#"{"k":"v"}"#.into(),
        ..Default::default()
    }
}

fn base_options(opts: WorkerOptions, url: &str) -> WorkerOptions {
    // The default load is the CPU use of the machine's container, which other processes can
    // fill up; tests about load set their own function after this one.
    let mut opts = opts
        .with_credentials(url, "devkey", "devsecret-devsecret-devsecret-000")
        .with_load_fn(|_| 0.0);
    opts.http_addr = None;
    opts.status_interval = Duration::from_millis(50);
    opts.load_interval = Duration::from_millis(20);
    opts.ping_interval = Duration::from_secs(3600);
    opts.reconnect = ReconnectPolicy {
        max_retry: 3,
        step: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    };
    opts
}

/// An entrypoint that reports its context and stays alive until the job is shut down.
fn waiting_entrypoint(tx: mpsc::UnboundedSender<JobContext>) -> WorkerOptions {
    WorkerOptions::new(move |ctx: JobContext| {
        let tx = tx.clone();
        async move {
            ctx.keep_alive();
            tx.send(ctx).unwrap();
            Ok(())
        }
    })
}

fn spawn_server(
    opts: WorkerOptions,
) -> (
    AgentServer,
    tokio::task::JoinHandle<Result<(), WorkerError>>,
) {
    let server = AgentServer::new(opts);
    let s = server.clone();
    let handle = tokio::spawn(async move { s.run().await });
    (server, handle)
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    tcp.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn registers_with_agent_grant_and_options() {
    let fake = FakeServer::start().await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut opts = base_options(waiting_entrypoint(tx), &fake.url).with_agent_name("support-bot");
    opts.server_type = ServerType::Publisher;
    opts.namespace = Some("ns-1".into());
    opts.permissions = WorkerPermissions {
        hidden: true,
        ..Default::default()
    };
    opts.http_addr = Some("127.0.0.1:0".parse().unwrap());
    let (server, handle) = spawn_server(opts);

    let (mut conn, reg) = fake.accept_registered("AW_test").await;
    assert_eq!(conn.path, "/agent");
    let token = conn
        .auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("bearer token");
    let claims = livekit_api::access_token::Claims::from_unverified(token).unwrap();
    assert!(claims.video.agent);
    assert_eq!(claims.iss, "devkey");

    assert_eq!(reg.r#type, proto::JobType::JtPublisher as i32);
    assert_eq!(reg.agent_name, "support-bot");
    assert_eq!(reg.namespace.as_deref(), Some("ns-1"));
    assert_eq!(reg.version, env!("CARGO_PKG_VERSION"));
    let perms = reg.allowed_permissions.expect("permissions");
    assert!(perms.hidden && perms.can_publish && perms.can_subscribe);

    // First status right after registration: available, no jobs.
    let st = conn.recv_status(|_| true).await;
    assert_eq!(st.status, Some(proto::WorkerStatus::WsAvailable as i32));
    assert_eq!(st.job_count, 0);
    assert_eq!(server.worker_id().as_deref(), Some("AW_test"));

    // Health and metrics.
    let addr = server.http_addr().expect("http server bound");
    let (code, body) = http_get(addr, "/").await;
    assert_eq!((code, body.as_str()), (200, "OK"));
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("livekit_agents_jobs_running 0"), "{body}");
    assert!(body.contains("livekit_agents_worker_connected 1"), "{body}");
    // The bounded inputs' overload counters (issue 15 item 8).
    assert!(
        body.contains("\nlivekit_agents_input_dropped_frames_total 0\n"),
        "{body}"
    );
    assert!(
        body.contains("\nlivekit_agents_inputs_shedding 0\n"),
        "{body}"
    );
    let (code, body) = http_get(addr, "/worker").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"agent_name\":\"support-bot\""), "{body}");

    // After the server goes away for good, health turns 503.
    drop(conn);
    drop(fake);
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (code, _) = http_get(addr, "/").await;
        if code == 503 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "health stayed 200");
        tokio::task::yield_now().await;
    }
    let res = tokio::time::timeout(GUARD, handle).await.unwrap().unwrap();
    assert!(
        matches!(res, Err(WorkerError::ConnectionFailed { .. })),
        "{res:?}"
    );
}

#[tokio::test]
async fn accepts_runs_and_reports_a_job() {
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (server, _handle) = spawn_server(base_options(waiting_entrypoint(tx), &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_1").await;

    let avail = conn.offer("AJ_1").await;
    assert!(avail.available);
    assert_eq!(avail.participant_identity, "agent-AJ_1");
    conn.assign("AJ_1").await;

    let running = conn.expect_job_status("AJ_1").await;
    assert_eq!(running.status, proto::JobStatus::JsRunning as i32);
    let ctx = tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.job_id(), "AJ_1");
    assert_eq!(ctx.room_name(), "room-1");
    assert_eq!(ctx.metadata(), r#"{"k":"v"}"#);
    assert_eq!(ctx.url(), "ws://room-server.test");
    assert_eq!(ctx.token(), "token-AJ_1");
    assert_eq!(ctx.worker_id(), "AW_1");
    assert_eq!(ctx.accept_args().identity, "agent-AJ_1");
    assert!(
        !format!("{ctx:?}").contains("token-AJ_1"),
        "token leaked in Debug"
    );
    assert_eq!(server.active_job_count(), 1);

    let (cb_tx, mut cb_rx) = mpsc::unbounded_channel();
    ctx.add_shutdown_callback(move |reason| async move {
        cb_tx.send(reason).unwrap();
    });
    conn.terminate("AJ_1").await;
    let done = conn.expect_job_status("AJ_1").await;
    assert_eq!(done.status, proto::JobStatus::JsSuccess as i32);
    assert_eq!(cb_rx.recv().await.unwrap(), "job terminated by the server");
    assert_eq!(server.active_job_count(), 0);
    server.aclose().await;
}

#[tokio::test]
async fn request_handler_accepts_with_identity_or_rejects() {
    let fake = FakeServer::start().await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let opts = base_options(waiting_entrypoint(tx), &fake.url)
        .with_agent_name("named")
        .with_request_handler(|req| async move {
            if req.id().starts_with("reject") {
                req.reject();
            } else if req.id().starts_with("silent") {
                // Dropping the request without an answer rejects it.
            } else {
                req.accept(AcceptArgs {
                    name: "Assistant".into(),
                    identity: "assistant-1".into(),
                    metadata: "meta".into(),
                    attributes: HashMap::from([("myagent".into(), "rocks".into())]),
                });
            }
        });
    let (server, _handle) = spawn_server(opts);
    let (mut conn, _) = fake.accept_registered("AW_2").await;

    let a = conn.offer("reject-1").await;
    assert!(!a.available);
    let a = conn.offer("silent-1").await;
    assert!(!a.available);
    let a = conn.offer("ok-1").await;
    assert!(a.available);
    assert_eq!(a.participant_name, "Assistant");
    assert_eq!(a.participant_identity, "assistant-1");
    assert_eq!(a.participant_metadata, "meta");
    assert_eq!(
        a.participant_attributes.get("myagent").map(String::as_str),
        Some("rocks")
    );
    assert_eq!(
        a.participant_attributes
            .get("lk.agent.name")
            .map(String::as_str),
        Some("named")
    );
    server.aclose().await;
}

#[tokio::test]
async fn reports_load_and_full_status_while_jobs_run() {
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut opts = base_options(waiting_entrypoint(tx), &fake.url)
        .with_load_fn(|ctx| ctx.active_jobs as f32 / 2.0);
    opts.load_threshold = 0.9;
    let (server, _handle) = spawn_server(opts);
    let (mut conn, _) = fake.accept_registered("AW_3").await;

    assert!(conn.offer("AJ_a").await.available);
    conn.assign("AJ_a").await;
    conn.expect_job_status("AJ_a").await;
    let _ctx_a = rx.recv().await.unwrap();
    let st = conn.recv_status(|s| s.job_count == 1).await;
    assert_eq!(st.load, 0.5);
    assert_eq!(st.status, Some(proto::WorkerStatus::WsAvailable as i32));

    assert!(conn.offer("AJ_b").await.available);
    conn.assign("AJ_b").await;
    conn.expect_job_status("AJ_b").await;
    let _ctx_b = rx.recv().await.unwrap();
    let st = conn.recv_status(|s| s.job_count == 2).await;
    assert_eq!(st.load, 1.0);
    assert_eq!(st.status, Some(proto::WorkerStatus::WsFull as i32));

    // Over the threshold: the next offer is declined without asking the handler.
    assert!(!conn.offer("AJ_c").await.available);

    conn.terminate("AJ_a").await;
    assert_eq!(
        conn.expect_job_status("AJ_a").await.status,
        proto::JobStatus::JsSuccess as i32
    );
    let st = conn.recv_status(|s| s.job_count == 1).await;
    assert_eq!(st.status, Some(proto::WorkerStatus::WsAvailable as i32));
    server.aclose().await;
}

#[tokio::test]
async fn max_concurrent_jobs_caps_availability() {
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut opts = base_options(waiting_entrypoint(tx), &fake.url).with_load_fn(|_| 0.0);
    opts.max_concurrent_jobs = Some(1);
    let (server, _handle) = spawn_server(opts);
    let (mut conn, _) = fake.accept_registered("AW_4").await;
    assert!(conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    conn.expect_job_status("AJ_1").await;
    rx.recv().await.unwrap();
    assert!(!conn.offer("AJ_2").await.available);
    server.aclose().await;
}

#[tokio::test]
async fn failing_and_panicking_entrypoints_are_reported_and_contained() {
    let fake = FakeServer::start().await;
    let opts = WorkerOptions::new(|ctx: JobContext| async move {
        match ctx.job_id() {
            "panic" => panic!("boom in entrypoint"),
            "fail" => anyhow::bail!("model not found"),
            _ => Ok(()),
        }
    });
    let (server, _handle) = spawn_server(base_options(opts, &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_5").await;

    for (id, expected) in [
        ("panic", Some("boom in entrypoint")),
        ("fail", Some("model not found")),
        ("ok", None),
    ] {
        assert!(conn.offer(id).await.available);
        conn.assign(id).await;
        assert_eq!(
            conn.expect_job_status(id).await.status,
            proto::JobStatus::JsRunning as i32
        );
        let done = conn.expect_job_status(id).await;
        match expected {
            Some(msg) => {
                assert_eq!(done.status, proto::JobStatus::JsFailed as i32);
                assert!(done.error.contains(msg), "{}", done.error);
            }
            None => assert_eq!(done.status, proto::JobStatus::JsSuccess as i32),
        }
    }
    assert!(server.is_connected());
    server.aclose().await;
}

#[tokio::test]
async fn drain_reports_full_and_waits_for_jobs() {
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opts = base_options(waiting_entrypoint(tx), &fake.url).with_load_fn(|_| 0.0);
    let (server, handle) = spawn_server(opts);
    let (mut conn, _) = fake.accept_registered("AW_6").await;
    assert!(conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    conn.expect_job_status("AJ_1").await;
    let ctx = rx.recv().await.unwrap();

    let s = server.clone();
    let drain = tokio::spawn(async move {
        s.drain(Some(Duration::from_secs(60))).await;
        s.aclose().await;
    });
    let st = conn.recv_status(|s| s.draining).await;
    assert_eq!(st.status, Some(proto::WorkerStatus::WsFull as i32));
    assert!(!conn.offer("AJ_2").await.available);
    assert!(!drain.is_finished());

    // The running job ends on its own: drain completes, the server closes cleanly.
    ctx.shutdown("user hung up");
    assert_eq!(
        conn.expect_job_status("AJ_1").await.status,
        proto::JobStatus::JsSuccess as i32
    );
    tokio::time::timeout(GUARD, drain).await.unwrap().unwrap();
    let res = tokio::time::timeout(GUARD, handle).await.unwrap().unwrap();
    assert!(res.is_ok(), "{res:?}");
}

/// A real SIGTERM (the test signals its own process) drains the server the way `start` and
/// `dev` do: it reports full, lets the running job finish, then `run_until` returns `Ok`.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_then_stops() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use tokio::signal::unix::{signal, SignalKind};

    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opts = base_options(waiting_entrypoint(tx), &fake.url).with_load_fn(|_| 0.0);
    let server = AgentServer::new(opts);
    // Listening before the signal is sent: SIGTERM then reaches this stream instead of ending
    // the test process.
    let mut term = signal(SignalKind::terminate()).unwrap();
    let s = server.clone();
    let handle = tokio::spawn(async move {
        s.run_until(async move {
            term.recv().await;
        })
        .await
    });
    let (mut conn, _) = fake.accept_registered("AW_TERM").await;
    assert!(conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    conn.expect_job_status("AJ_1").await;
    let ctx = rx.recv().await.unwrap();

    kill(Pid::this(), Signal::SIGTERM).unwrap();
    let st = conn.recv_status(|s| s.draining).await;
    assert_eq!(st.status, Some(proto::WorkerStatus::WsFull as i32));
    assert!(!conn.offer("AJ_2").await.available);
    assert!(!handle.is_finished(), "the running job holds the drain");

    ctx.shutdown("user hung up");
    assert_eq!(
        conn.expect_job_status("AJ_1").await.status,
        proto::JobStatus::JsSuccess as i32
    );
    let res = tokio::time::timeout(GUARD, handle).await.unwrap().unwrap();
    assert!(res.is_ok(), "{res:?}");
}

#[tokio::test]
async fn drain_timeout_shuts_down_remaining_jobs() {
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opts = base_options(waiting_entrypoint(tx), &fake.url).with_load_fn(|_| 0.0);
    let (server, _handle) = spawn_server(opts);
    let (mut conn, _) = fake.accept_registered("AW_7").await;
    assert!(conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    conn.expect_job_status("AJ_1").await;
    let ctx = rx.recv().await.unwrap();
    let (cb_tx, mut cb_rx) = mpsc::unbounded_channel();
    ctx.add_shutdown_callback(move |reason| async move {
        cb_tx.send(reason).unwrap();
    });
    server.drain(Some(Duration::from_millis(100))).await;
    assert_eq!(cb_rx.recv().await.unwrap(), "drain timeout");
    assert_eq!(server.active_job_count(), 0);
    server.aclose().await;
}

#[tokio::test]
async fn reconnects_after_socket_drop_and_jobs_survive() {
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opts = base_options(waiting_entrypoint(tx), &fake.url).with_load_fn(|_| 0.0);
    let (server, _handle) = spawn_server(opts);
    let (mut conn, _) = fake.accept_registered("AW_8").await;
    assert!(conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    conn.expect_job_status("AJ_1").await;
    let ctx = rx.recv().await.unwrap();

    drop(conn); // the server drops the socket
    let (mut conn2, reg) = fake.accept_registered("AW_8b").await;
    assert_eq!(reg.r#type, proto::JobType::JtRoom as i32);
    match conn2.recv_event().await {
        worker_message::Message::MigrateJob(m) => assert_eq!(m.job_ids, vec!["AJ_1".to_owned()]),
        other => panic!("expected migrate_job, got {other:?}"),
    }
    assert!(!ctx.is_shutting_down(), "job must survive the reconnection");
    assert_eq!(server.worker_id().as_deref(), Some("AW_8b"));
    let st = conn2.recv_status(|s| s.job_count == 1).await;
    assert_eq!(st.job_count, 1);

    conn2.terminate("AJ_1").await;
    assert_eq!(
        conn2.expect_job_status("AJ_1").await.status,
        proto::JobStatus::JsSuccess as i32
    );
    server.aclose().await;
}

#[tokio::test]
async fn malformed_server_messages_are_ignored() {
    let fake = FakeServer::start().await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let (server, _handle) = spawn_server(base_options(waiting_entrypoint(tx), &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_9").await;
    conn.send_raw(vec![0xff, 0xff, 0xff, 0x01, 0x02]).await;
    conn.ws.send(WsMessage::Text("hello".into())).await.unwrap();
    conn.send_raw(proto::ServerMessage { message: None }.encode_to_vec())
        .await;
    // An assignment for a job never accepted is ignored too.
    conn.assign("unknown").await;
    // The same connection still works.
    assert!(conn.offer("AJ_1").await.available);
    assert!(server.is_connected());
    assert_eq!(server.worker_id().as_deref(), Some("AW_9"));
    server.aclose().await;
}

#[tokio::test]
async fn assignment_timeout_releases_the_reservation() {
    let fake = FakeServer::start().await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut opts = base_options(waiting_entrypoint(tx), &fake.url);
    opts.assignment_timeout = Duration::from_millis(50);
    opts.max_concurrent_jobs = Some(1);
    let opts = opts.with_load_fn(|_| 0.0);
    let (server, _handle) = spawn_server(opts);
    let (mut conn, _) = fake.accept_registered("AW_10").await;
    assert!(conn.offer("AJ_1").await.available);
    // Never assigned: after the timeout the slot is free again.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let a = conn.offer("AJ_2").await;
        if a.available {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        let _ = conn.recv_status(|_| true).await;
    }
    assert_eq!(server.active_job_count(), 0);
    server.aclose().await;
}

#[tokio::test]
async fn prewarm_runs_once_and_userdata_reaches_jobs() {
    let fake = FakeServer::start().await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opts = waiting_entrypoint(tx).with_prewarm(move |proc| {
        let c = c.clone();
        async move {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            proc.userdata().insert("model", vec![1u8, 2, 3]);
            Ok(())
        }
    });
    let (server, _handle) = spawn_server(base_options(opts, &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_11").await;
    server.prewarm().await.unwrap();
    assert!(conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    let ctx = rx.recv().await.unwrap();
    let model = ctx.proc().userdata().get::<Vec<u8>>("model").unwrap();
    assert_eq!(*model, vec![1, 2, 3]);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.aclose().await;
}

#[tokio::test]
async fn missing_credentials_fail_fast() {
    let opts = WorkerOptions::new(|_ctx: JobContext| async { Ok(()) }).with_credentials(
        "ws://127.0.0.1:1",
        "",
        "",
    );
    let err = AgentServer::new(opts).run().await.unwrap_err();
    assert!(err.to_string().contains("LIVEKIT_API_KEY"), "{err}");
}

#[tokio::test]
async fn go_away_makes_the_worker_reconnect() {
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (server, _handle) = spawn_server(base_options(waiting_entrypoint(tx), &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_12").await;
    assert!(conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    conn.expect_job_status("AJ_1").await;
    let ctx = rx.recv().await.unwrap();
    conn.send(server_message::Message::GoAway(proto::agent_http::GoAway {
        reason: "server draining".into(),
    }))
    .await;
    let (mut conn2, _) = fake.accept_registered("AW_12b").await;
    match conn2.recv_event().await {
        worker_message::Message::MigrateJob(m) => assert_eq!(m.job_ids, vec!["AJ_1".to_owned()]),
        other => panic!("expected migrate_job, got {other:?}"),
    }
    assert!(!ctx.is_shutting_down());
    server.aclose().await;
}

/// Issue 15 item 5: the same job id offered and assigned while it runs is refused, so the job
/// count, the success report and drain keep following the one running job.
#[tokio::test]
async fn a_second_offer_of_a_running_job_id_is_refused() {
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (server, _handle) = spawn_server(base_options(waiting_entrypoint(tx), &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_13").await;
    assert!(conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    conn.expect_job_status("AJ_1").await;
    let first = rx.recv().await.unwrap();

    // The same id again, while the first runs: refused, and an assignment for it is ignored.
    assert!(!conn.offer("AJ_1").await.available);
    conn.assign("AJ_1").await;
    // A fresh id still works (and proves the assignment above was handled first).
    assert!(conn.offer("AJ_2").await.available);
    conn.assign("AJ_2").await;
    assert_eq!(
        conn.expect_job_status("AJ_2").await.status,
        proto::JobStatus::JsRunning as i32
    );
    let second = rx.recv().await.unwrap();
    assert_eq!(second.job_id(), "AJ_2");
    assert_eq!(server.active_job_count(), 2);

    // Ending the first leaves exactly the second running.
    first.shutdown("user hung up");
    assert_eq!(
        conn.expect_job_status("AJ_1").await.status,
        proto::JobStatus::JsSuccess as i32
    );
    assert_eq!(server.active_job_count(), 1);
    assert_eq!(server.active_jobs()[0].job_id, "AJ_2");
    second.shutdown("done");
    conn.expect_job_status("AJ_2").await;
    server.aclose().await;
}

/// Issue 15 item 5: two availability requests for one id before either is assigned: only the
/// first is accepted.
#[tokio::test]
async fn two_offers_of_one_id_accept_only_the_first() {
    let fake = FakeServer::start().await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let (server, _handle) = spawn_server(base_options(waiting_entrypoint(tx), &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_14").await;
    assert!(conn.offer("AJ_1").await.available);
    assert!(!conn.offer("AJ_1").await.available);
    server.aclose().await;
}

/// Issue 15 item 6: a pong with an extreme timestamp (logged at trace level, where the round
/// trip is computed) does not kill the connection.
#[tokio::test]
async fn extreme_pong_timestamps_keep_the_connection() {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::sink)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fake = FakeServer::start().await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let (server, _handle) = spawn_server(base_options(waiting_entrypoint(tx), &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_15").await;
    for ts in [i64::MIN, i64::MAX, -1, 0] {
        conn.send(server_message::Message::Pong(proto::WorkerPong {
            last_timestamp: ts,
            timestamp: ts,
        }))
        .await;
    }
    assert!(conn.offer("AJ_1").await.available);
    assert!(server.is_connected());
    server.aclose().await;
}

/// Issue 17: the job-start metric. A dispatched job's entrypoint sees when its assignment was
/// received; the entrypoint's start and its first session's start are counted in
/// `livekit_agents_job_start_seconds` (a local job has no assignment and is not counted).
#[tokio::test]
async fn job_start_is_measured_from_the_assignment() {
    use livekit_agents::voice::{Agent, AgentSession, SessionIo};
    use livekit_agents::worker::job_start::{job_start_summary, render_job_start_histograms};

    let count = |phase| job_start_summary(phase).unwrap().0;
    let (entry_before, ready_before) = (count("entrypoint"), count("session_ready"));
    let fake = FakeServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opts = WorkerOptions::new(move |ctx: JobContext| {
        let tx = tx.clone();
        async move {
            let assigned_at = ctx.assigned_at();
            let session = AgentSession::builder().build();
            session
                .start(Agent::new("You are a test."), SessionIo::default())
                .await?;
            // A second session of the same job is not counted again.
            let second = AgentSession::builder().build();
            second
                .start(Agent::new("You are a test."), SessionIo::default())
                .await?;
            tx.send(assigned_at).unwrap();
            Ok(())
        }
    });
    let (server, _handle) = spawn_server(base_options(opts, &fake.url));
    let (mut conn, _) = fake.accept_registered("AW_16").await;
    assert!(conn.offer("AJ_start").await.available);
    conn.assign("AJ_start").await;
    let assigned_at = tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        assigned_at.is_some(),
        "a dispatched job knows its assignment time"
    );
    assert_eq!(
        conn.expect_job_status("AJ_start").await.status,
        proto::JobStatus::JsRunning as i32
    );
    assert!(count("entrypoint") > entry_before);
    assert!(count("session_ready") > ready_before);
    let text = render_job_start_histograms();
    assert!(
        text.contains(
            "livekit_agents_job_start_seconds_bucket{phase=\"session_ready\",le=\"0.005\"}"
        ),
        "{text}"
    );

    // A local job (no dispatch) has no assignment time.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let local = AgentServer::new(base_options(
        WorkerOptions::new(move |ctx: JobContext| {
            let tx = tx.clone();
            async move {
                tx.send(ctx.assigned_at()).unwrap();
                Ok(())
            }
        }),
        &fake.url,
    ));
    let outcome = local
        .run_local_job(livekit_agents::worker::JobContextParams {
            job: job("AJ_local"),
            fake_job: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        matches!(outcome, livekit_agents::worker::JobOutcome::Success),
        "{outcome:?}"
    );
    assert_eq!(rx.recv().await.unwrap(), None);
    server.aclose().await;
}
