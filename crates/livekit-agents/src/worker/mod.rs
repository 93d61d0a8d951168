//! The agent server (the reference's "worker"): registers with a LiveKit server over the agent
//! WebSocket (`{LIVEKIT_URL}/agent`, binary protobuf [`livekit_protocol::WorkerMessage`] /
//! [`livekit_protocol::ServerMessage`]), answers availability requests through the user's
//! request handler, runs assigned jobs as tokio tasks in this process, reports job status and
//! load, drains on shutdown and reconnects with backoff while jobs keep running.
//!
//! ```no_run
//! use livekit_agents::worker::{AgentServer, JobContext, WorkerOptions};
//!
//! async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
//!     tracing::info!(room = ctx.room_name(), "joined");
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), livekit_agents::worker::WorkerError> {
//! let server = AgentServer::new(WorkerOptions::new(entrypoint));
//! server.run().await
//! # }
//! ```
//!
//! Jobs run in-process: a job whose entrypoint fails or panics is reported `JS_FAILED` and no
//! other job is affected. Shared resources (models) are loaded once by the prewarm function
//! into [`JobProcess::userdata`].

mod connection;
mod http;
mod job;
pub mod job_start;
pub mod load;
pub mod metrics;
mod options;
mod participants;
mod session_io;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

pub use crate::llm::tool::UserdataError;
pub use job::{
    AcceptArgs, ApiCredentials, JobContext, JobContextParams, JobError, JobOutcome, JobProcess,
    JobRequest, LiveKitApi, ProcessUserdata, UserdataKey,
};
pub use options::{
    Entrypoint, LoadContext, LoadFn, PrewarmFn, ReconnectPolicy, RequestFn, ServerType,
    WorkerOptions, WorkerPermissions,
};
pub use participants::{ParticipantEntrypointFn, ParticipantEntrypoints, ParticipantRef};

use job::RequestAnswer;

/// Errors that stop an agent server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A required setting is empty.
    #[error("missing {0}: pass it as a flag or set it in the environment")]
    MissingConfig(&'static str),
    /// The server URL cannot be turned into the agent WebSocket URL.
    #[error("invalid LiveKit URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The access token could not be created.
    #[error("could not create the access token: {reason}")]
    Token {
        /// Why.
        reason: String,
    },
    /// The prewarm function failed.
    #[error("prewarm failed: {reason}")]
    Prewarm {
        /// The prewarm function's error.
        reason: String,
    },
    /// The health/metrics HTTP server could not bind.
    #[error("health server could not bind {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection to the LiveKit server failed too many times in a row.
    #[error("connection to the LiveKit server failed {attempts} times in a row; last error: {last_error}")]
    ConnectionFailed {
        /// Failures in a row.
        attempts: u32,
        /// The last failure.
        last_error: String,
    },
}

/// A snapshot of one running job.
#[derive(Debug, Clone)]
pub struct RunningJobInfo {
    /// Job id.
    pub job_id: String,
    /// Room name.
    pub room_name: String,
    /// Agent participant identity.
    pub identity: String,
    /// When the job started.
    pub started_at: Instant,
}

struct JobEntry {
    ctx: JobContext,
    started_at: Instant,
}

#[derive(Default)]
struct ServerState {
    /// Running jobs by a key unique in this process (not the job id, which comes from the
    /// server: two jobs with one id must not share an entry).
    jobs: HashMap<u64, JobEntry>,
    next_job_key: u64,
    /// Accepted availability requests still waiting for their assignment.
    reserved: usize,
    worker_id: Option<String>,
    load: f32,
    cpu_load: f32,
}

pub(crate) struct Inner {
    opts: WorkerOptions,
    proc: JobProcess,
    prewarmed: tokio::sync::OnceCell<()>,
    state: Mutex<ServerState>,
    out_tx: mpsc::UnboundedSender<proto::WorkerMessage>,
    out_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<proto::WorkerMessage>>,
    /// Each with the instant its assignment was received (for the job-start metric).
    pending_assignments:
        Mutex<HashMap<String, oneshot::Sender<(proto::JobAssignment, std::time::Instant)>>>,
    job_count: watch::Sender<usize>,
    status_now: Notify,
    draining: AtomicBool,
    connected: AtomicBool,
    connection_failed: AtomicBool,
    close: CancellationToken,
    http_addr: OnceLock<SocketAddr>,
}

/// The agent server. Cheap to clone; all clones drive the same server.
#[derive(Clone)]
pub struct AgentServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AgentServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentServer")
            .field("options", &self.inner.opts)
            .field("worker_id", &self.worker_id())
            .field("active_jobs", &self.active_job_count())
            .finish()
    }
}

impl AgentServer {
    /// A server with `opts`; nothing runs until [`AgentServer::run`].
    pub fn new(opts: WorkerOptions) -> Self {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (job_count, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                opts,
                proc: JobProcess::new(),
                prewarmed: tokio::sync::OnceCell::new(),
                state: Mutex::new(ServerState::default()),
                out_tx,
                out_rx: tokio::sync::Mutex::new(out_rx),
                pending_assignments: Mutex::new(HashMap::new()),
                job_count,
                status_now: Notify::new(),
                draining: AtomicBool::new(false),
                connected: AtomicBool::new(false),
                connection_failed: AtomicBool::new(false),
                close: CancellationToken::new(),
                http_addr: OnceLock::new(),
            }),
        }
    }

    /// The options.
    pub fn options(&self) -> &WorkerOptions {
        &self.inner.opts
    }

    /// The process state shared by all jobs.
    pub fn process(&self) -> &JobProcess {
        &self.inner.proc
    }

    /// The id the LiveKit server gave at registration.
    pub fn worker_id(&self) -> Option<String> {
        self.inner.state.lock().worker_id.clone()
    }

    /// Whether the server connection is up and registered.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::SeqCst)
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// The bound address of the health/metrics HTTP server once running.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inner.http_addr.get().copied()
    }

    /// The last computed load.
    pub fn current_load(&self) -> f32 {
        self.inner.state.lock().load
    }

    /// Number of running jobs.
    pub fn active_job_count(&self) -> usize {
        self.inner.state.lock().jobs.len()
    }

    /// Running jobs.
    pub fn active_jobs(&self) -> Vec<RunningJobInfo> {
        self.inner
            .state
            .lock()
            .jobs
            .values()
            .map(|e| RunningJobInfo {
                job_id: e.ctx.job_id().to_owned(),
                room_name: e.ctx.room_name().to_owned(),
                identity: e.ctx.accept_args().identity.clone(),
                started_at: e.started_at,
            })
            .collect()
    }

    /// Runs prewarm once per process (later calls return at once).
    pub async fn prewarm(&self) -> Result<(), WorkerError> {
        let inner = &self.inner;
        inner
            .prewarmed
            .get_or_try_init(|| async {
                if let Some(prewarm) = &inner.opts.prewarm {
                    let started = Instant::now();
                    prewarm(inner.proc.clone())
                        .await
                        .map_err(|e| WorkerError::Prewarm {
                            reason: format!("{e:#}"),
                        })?;
                    tracing::info!(elapsed = ?started.elapsed(), "prewarm done");
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Registers with the LiveKit server and serves jobs until [`AgentServer::aclose`] (then
    /// returns `Ok`) or until the connection fails `reconnect.max_retry` times in a row.
    pub async fn run(&self) -> Result<(), WorkerError> {
        let inner = &self.inner;
        let endpoint = connection::Endpoint::new(&inner.opts)?;
        self.prewarm().await?;
        if let Some(addr) = inner.opts.http_addr {
            let bound = http::start(inner.clone(), addr)
                .await
                .map_err(|source| WorkerError::Http { addr, source })?;
            let _ = inner.http_addr.set(bound);
            tracing::info!(%bound, "health and metrics server listening");
        }
        tokio::spawn(load_task(inner.clone()));
        let result = connection::connection_loop(inner.clone(), endpoint).await;
        if result.is_err() {
            inner.connection_failed.store(true, Ordering::SeqCst);
        }
        inner.close.cancel();
        self.shutdown_jobs("agent server closing").await;
        result
    }

    /// Runs the server like [`AgentServer::run`] until `shutdown` resolves, then drains (running
    /// jobs finish, up to the `drain_timeout` option) and closes. This is what the `start` and
    /// `dev` modes do with SIGINT/SIGTERM as `shutdown`.
    ///
    /// ```no_run
    /// # use livekit_agents::worker::{AgentServer, WorkerOptions};
    /// # async fn demo(opts: WorkerOptions) -> Result<(), livekit_agents::worker::WorkerError> {
    /// let server = AgentServer::new(opts);
    /// server
    ///     .run_until(async {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn run_until(
        &self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), WorkerError> {
        let server = self.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: draining");
            server.drain(None).await;
            server.aclose().await;
        });
        let result = self.run().await;
        watcher.abort();
        result
    }

    /// Stops taking jobs (reports `WS_FULL`), waits for running jobs to finish up to `timeout`
    /// (default: the `drain_timeout` option), then shuts down the jobs still running.
    pub async fn drain(&self, timeout: Option<Duration>) {
        let inner = &self.inner;
        let timeout = timeout.unwrap_or(inner.opts.drain_timeout);
        inner.draining.store(true, Ordering::SeqCst);
        inner.status_now.notify_one();
        tracing::info!(active_jobs = self.active_job_count(), ?timeout, "draining");
        let mut rx = inner.job_count.subscribe();
        let wait_idle = async {
            loop {
                let idle = {
                    let st = inner.state.lock();
                    st.jobs.is_empty() && st.reserved == 0
                };
                if idle {
                    break;
                }
                // Reservations end without changing the job count: re-check periodically too.
                let _ = tokio::time::timeout(Duration::from_millis(250), rx.changed()).await;
            }
        };
        if tokio::time::timeout(timeout, wait_idle).await.is_err() {
            tracing::warn!("drain timeout reached, shutting down the remaining jobs");
            self.shutdown_jobs("drain timeout").await;
        }
    }

    /// Stops the server: closes the connection and shuts down running jobs (their shutdown
    /// callbacks run). [`AgentServer::run`] then returns.
    pub async fn aclose(&self) {
        self.inner.close.cancel();
        self.shutdown_jobs("agent server closing").await;
    }

    async fn shutdown_jobs(&self, reason: &str) {
        let ctxs: Vec<JobContext> = {
            let st = self.inner.state.lock();
            st.jobs.values().map(|e| e.ctx.clone()).collect()
        };
        for ctx in &ctxs {
            ctx.shutdown(reason);
        }
        let mut rx = self.inner.job_count.subscribe();
        let grace = self.inner.opts.shutdown_process_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, rx.wait_for(|n| *n == 0)).await;
    }

    /// Runs one job in this process without a dispatch (the `connect` and `console` modes):
    /// prewarm if needed, run the job, return its outcome. [`AgentServer::aclose`] or
    /// [`AgentServer::drain`] shut it down like any other job.
    pub async fn run_local_job(&self, params: JobContextParams) -> Result<JobOutcome, WorkerError> {
        self.prewarm().await?;
        let (ctx, done) = launch_job(&self.inner, params, false, None);
        let _ = ctx;
        Ok(done
            .await
            .unwrap_or(JobOutcome::Failed("job task lost".into())))
    }
}

/// Starts a job task; `report` sends job status updates to the server.
/// `assigned_at`: when the server's assignment was received (dispatched jobs), for the
/// job-start metric ([`job_start`]).
fn launch_job(
    inner: &Arc<Inner>,
    params: JobContextParams,
    report: bool,
    assigned_at: Option<std::time::Instant>,
) -> (JobContext, oneshot::Receiver<JobOutcome>) {
    let ctx = JobContext::new(params, inner.proc.clone());
    if let Some(at) = assigned_at {
        ctx.set_assigned_at(at);
    }
    let job_id = ctx.job_id().to_owned();
    let (key, count) = {
        let mut st = inner.state.lock();
        let key = st.next_job_key;
        st.next_job_key += 1;
        st.jobs.insert(
            key,
            JobEntry {
                ctx: ctx.clone(),
                started_at: Instant::now(),
            },
        );
        (key, st.jobs.len())
    };
    inner.job_count.send_replace(count);
    tracing::info!(job_id, room = ctx.room_name(), "job started");
    if report {
        inner.send(update_job(&job_id, proto::JobStatus::JsRunning, ""));
    }
    let (done_tx, done_rx) = oneshot::channel();
    let inner2 = inner.clone();
    let ctx2 = ctx.clone();
    tokio::spawn(async move {
        let outcome = job::run_job(
            ctx2.clone(),
            inner2.opts.entrypoint.clone(),
            inner2.opts.shutdown_process_timeout,
        )
        .await;
        match &outcome {
            JobOutcome::Success => tracing::info!(job_id, "job finished"),
            // A dispatched job's failure is only visible here; a local job (console, connect)
            // returns its outcome to the caller, which reports it once.
            JobOutcome::Failed(e) if report => tracing::error!(job_id, error = %e, "job failed"),
            JobOutcome::Failed(e) => tracing::debug!(job_id, error = %e, "job failed"),
        }
        if report {
            let msg = match &outcome {
                JobOutcome::Success => update_job(&job_id, proto::JobStatus::JsSuccess, ""),
                JobOutcome::Failed(e) => update_job(&job_id, proto::JobStatus::JsFailed, e),
            };
            inner2.send(msg);
        }
        let count = {
            let mut st = inner2.state.lock();
            st.jobs.remove(&key);
            st.jobs.len()
        };
        inner2.job_count.send_replace(count);
        let _ = done_tx.send(outcome);
    });
    (ctx, done_rx)
}

fn update_job(job_id: &str, status: proto::JobStatus, error: &str) -> proto::WorkerMessage {
    proto::WorkerMessage {
        message: Some(proto::worker_message::Message::UpdateJob(
            proto::UpdateJobStatus {
                job_id: job_id.to_owned(),
                status: status as i32,
                error: error.to_owned(),
            },
        )),
    }
}

impl Inner {
    fn send(&self, msg: proto::WorkerMessage) {
        // The receiver lives as long as `Inner`, so this cannot fail while we exist.
        let _ = self.out_tx.send(msg);
    }

    /// Recomputes the load with the user's function (or the CPU measure).
    fn refresh_load(&self) -> f32 {
        let mut st = self.state.lock();
        let ctx = LoadContext {
            active_jobs: st.jobs.len() + st.reserved,
            cpu_load: st.cpu_load,
        };
        let load = match &self.opts.load_fnc {
            Some(f) => f(&ctx),
            None => ctx.cpu_load,
        };
        let load = if load.is_finite() {
            load.clamp(0.0, 1.0)
        } else {
            0.0
        };
        st.load = load;
        load
    }

    fn is_full(&self, load: f32) -> bool {
        if self.draining.load(Ordering::SeqCst) || self.close.is_cancelled() {
            return true;
        }
        let st = self.state.lock();
        if let Some(max) = self.opts.max_concurrent_jobs {
            if st.jobs.len() + st.reserved >= max {
                return true;
            }
        }
        load >= self.opts.load_threshold
    }

    fn status_message(&self) -> proto::WorkerMessage {
        let load = self.refresh_load();
        let full = self.is_full(load);
        let status = if full {
            proto::WorkerStatus::WsFull
        } else {
            proto::WorkerStatus::WsAvailable
        };
        let job_count = self.state.lock().jobs.len() as u32;
        proto::WorkerMessage {
            message: Some(proto::worker_message::Message::UpdateWorker(
                proto::UpdateWorkerStatus {
                    status: Some(status as i32),
                    load,
                    job_count,
                    draining: self.draining.load(Ordering::SeqCst),
                    ..Default::default()
                },
            )),
        }
    }

    fn availability(job_id: &str, args: Option<&AcceptArgs>) -> proto::WorkerMessage {
        let mut resp = proto::AvailabilityResponse {
            job_id: job_id.to_owned(),
            available: args.is_some(),
            ..Default::default()
        };
        if let Some(a) = args {
            resp.participant_name = a.name.clone();
            resp.participant_identity = a.identity.clone();
            resp.participant_metadata = a.metadata.clone();
            resp.participant_attributes = a.attributes.clone();
        }
        proto::WorkerMessage {
            message: Some(proto::worker_message::Message::Availability(resp)),
        }
    }

    /// Answers one availability request: capacity check, the user's request handler, then the
    /// wait for the assignment.
    async fn answer_availability(self: Arc<Self>, req: proto::AvailabilityRequest) {
        let Some(job) = req.job else {
            tracing::warn!("availability request without a job; ignored");
            return;
        };
        let job_id = job.id.clone();
        if self.is_known_job(&job_id) {
            // The server offered a job id this server is already running or waiting for:
            // taking it twice would run two entrypoints under one id.
            tracing::warn!(
                job_id,
                "availability request for a job already running or accepted here; refused"
            );
            self.send(Self::availability(&job_id, None));
            return;
        }
        let load = self.refresh_load();
        if self.is_full(load) {
            tracing::debug!(job_id, load, "not available for job");
            self.send(Self::availability(&job_id, None));
            return;
        }
        self.state.lock().reserved += 1;
        let answer = self.ask_request_handler(job.clone(), req.resuming).await;
        let args = match answer {
            Some(mut args) => {
                if args.identity.is_empty() {
                    args.identity = format!("agent-{job_id}");
                }
                if !self.opts.agent_name.is_empty() {
                    args.attributes
                        .entry("lk.agent.name".to_owned())
                        .or_insert_with(|| self.opts.agent_name.clone());
                }
                args
            }
            None => {
                self.state.lock().reserved -= 1;
                tracing::info!(job_id, "job rejected by the request handler");
                self.send(Self::availability(&job_id, None));
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending_assignments.lock();
            if pending.contains_key(&job_id) || self.job_running(&job_id) {
                // A second request for the same id answered while the handler ran.
                drop(pending);
                self.state.lock().reserved -= 1;
                tracing::warn!(
                    job_id,
                    "availability request for a job already accepted here; refused"
                );
                self.send(Self::availability(&job_id, None));
                return;
            }
            pending.insert(job_id.clone(), tx);
        }
        self.send(Self::availability(&job_id, Some(&args)));
        let assignment = tokio::time::timeout(self.opts.assignment_timeout, rx).await;
        self.pending_assignments.lock().remove(&job_id);
        self.state.lock().reserved -= 1;
        match assignment {
            Ok(Ok((assignment, assigned_at))) => {
                let url = match assignment.url {
                    Some(u) if !u.is_empty() => u,
                    _ => self.opts.ws_url.clone(),
                };
                let params = JobContextParams {
                    job: assignment.job.unwrap_or(job),
                    url,
                    token: assignment.token,
                    worker_id: self.state.lock().worker_id.clone().unwrap_or_default(),
                    accept: args,
                    api: ApiCredentials {
                        url: self.opts.ws_url.clone(),
                        api_key: self.opts.api_key.clone(),
                        api_secret: self.opts.api_secret.clone(),
                    },
                    fake_job: false,
                    console: None,
                };
                let _ = launch_job(&self, params, true, Some(assigned_at));
            }
            _ => {
                tracing::warn!(job_id, timeout = ?self.opts.assignment_timeout, "accepted job was not assigned in time");
            }
        }
    }

    /// Runs the request handler on its own task (a panic there rejects the job).
    async fn ask_request_handler(&self, job: proto::Job, resuming: bool) -> Option<AcceptArgs> {
        let (request, answer) = JobRequest::new(job, resuming);
        match &self.opts.request_fnc {
            Some(handler) => {
                let handler = handler.clone();
                tokio::spawn(async move { handler(request).await });
            }
            None => request.accept(AcceptArgs::default()),
        }
        match answer.await {
            Ok(RequestAnswer::Accept(args)) => Some(args),
            Ok(RequestAnswer::Reject) | Err(_) => None,
        }
    }

    fn on_assignment(&self, assignment: proto::JobAssignment) {
        let received = std::time::Instant::now();
        let Some(job_id) = assignment.job.as_ref().map(|j| j.id.clone()) else {
            tracing::warn!("job assignment without a job; ignored");
            return;
        };
        match self.pending_assignments.lock().remove(&job_id) {
            Some(tx) => {
                let _ = tx.send((assignment, received));
            }
            None => tracing::warn!(
                job_id,
                "assignment for a job this server did not accept; ignored"
            ),
        }
    }

    fn on_termination(&self, job_id: &str) {
        let ctxs: Vec<JobContext> = self
            .state
            .lock()
            .jobs
            .values()
            .filter(|e| e.ctx.job_id() == job_id)
            .map(|e| e.ctx.clone())
            .collect();
        if ctxs.is_empty() {
            tracing::debug!(job_id, "termination for an unknown job");
        }
        for ctx in ctxs {
            tracing::info!(job_id, "job terminated by the server");
            ctx.shutdown("job terminated by the server");
        }
    }

    fn running_job_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .state
            .lock()
            .jobs
            .values()
            .map(|e| e.ctx.job_id().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// A job with `job_id` is running in this server.
    fn job_running(&self, job_id: &str) -> bool {
        self.state
            .lock()
            .jobs
            .values()
            .any(|e| e.ctx.job_id() == job_id)
    }

    /// A job with `job_id` is running or accepted and waiting for its assignment.
    fn is_known_job(&self, job_id: &str) -> bool {
        self.pending_assignments.lock().contains_key(job_id) || self.job_running(job_id)
    }
}

/// Samples CPU and refreshes the load every `load_interval`; warns on high memory use.
async fn load_task(inner: Arc<Inner>) {
    let mut cpu = load::CpuLoad::detect();
    let mut tick = tokio::time::interval(inner.opts.load_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_memory_warning: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = inner.close.cancelled() => break,
            _ = tick.tick() => {}
        }
        let sample = cpu.sample();
        inner.state.lock().cpu_load = sample;
        inner.refresh_load();
        let warn_mb = inner.opts.job_memory_warn_mb;
        let jobs = inner.state.lock().jobs.len() as u64;
        if warn_mb > 0 && jobs > 0 {
            // Jobs share one process, so the per-job budget is checked against the process RSS.
            if let Some(rss) = load::process_rss_mb() {
                let cooled =
                    last_memory_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(120));
                if rss > (warn_mb * jobs) as f64 && cooled {
                    tracing::warn!(
                        rss_mb = rss as u64,
                        jobs,
                        per_job_warn_mb = warn_mb,
                        "process memory above the per-job warning level"
                    );
                    last_memory_warning = Some(Instant::now());
                }
            }
        }
    }
}
