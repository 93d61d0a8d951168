//! Agent server options and their reference defaults.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use livekit_protocol as proto;

use super::job::{JobContext, JobProcess, JobRequest};

/// The user's job entrypoint: runs once per job with its [`JobContext`].
pub type Entrypoint =
    Arc<dyn Fn(JobContext) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;
/// Runs once per process before any job (load models into [`JobProcess::userdata`]).
pub type PrewarmFn =
    Arc<dyn Fn(JobProcess) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;
/// Decides whether to take a job: call [`JobRequest::accept`] or [`JobRequest::reject`].
/// Returning without answering rejects the job.
pub type RequestFn = Arc<dyn Fn(JobRequest) -> BoxFuture<'static, ()> + Send + Sync>;
/// Computes the server load in `[0, 1]` from a [`LoadContext`].
pub type LoadFn = Arc<dyn Fn(&LoadContext) -> f32 + Send + Sync>;

/// What a load function sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadContext {
    /// Jobs running now.
    pub active_jobs: usize,
    /// The default measure: CPU use of this process (or its container) over the last 5 s, in
    /// `[0, 1]`.
    pub cpu_load: f32,
}

/// The kind of jobs the server takes (the protocol's `JobType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerType {
    /// One job per room (default).
    #[default]
    Room,
    /// One job per publisher in a room; [`JobContext::publisher_identity`] names it.
    Publisher,
}

impl ServerType {
    pub(crate) fn to_proto(self) -> proto::JobType {
        match self {
            ServerType::Room => proto::JobType::JtRoom,
            ServerType::Publisher => proto::JobType::JtPublisher,
        }
    }
}

/// Permissions the agent participant is granted in the rooms it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPermissions {
    /// May publish tracks (default true).
    pub can_publish: bool,
    /// May subscribe to tracks (default true).
    pub can_subscribe: bool,
    /// May publish data and text/byte streams (default true).
    pub can_publish_data: bool,
    /// May update its own metadata and attributes (default true; needed for `lk.agent.state`).
    pub can_update_metadata: bool,
    /// Hidden from other participants (default false); a hidden agent cannot publish.
    pub hidden: bool,
}

impl Default for WorkerPermissions {
    fn default() -> Self {
        Self {
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
            can_update_metadata: true,
            hidden: false,
        }
    }
}

impl WorkerPermissions {
    // `agent` is deprecated in the protocol in favour of participant kinds, but the reference
    // still sets it and servers still read it.
    #[allow(deprecated)]
    pub(crate) fn to_proto(&self) -> proto::ParticipantPermission {
        proto::ParticipantPermission {
            can_subscribe: self.can_subscribe,
            can_publish: self.can_publish,
            can_publish_data: self.can_publish_data,
            can_update_metadata: self.can_update_metadata,
            hidden: self.hidden,
            agent: true,
            ..Default::default()
        }
    }
}

/// Reconnection schedule after the server connection fails: the n-th consecutive failure waits
/// `min(n * step, max_delay)` (the first retry is immediate), giving up after `max_retry`
/// failures in a row. Reference: step 2 s, max 10 s, 16 tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Failures in a row before [`super::AgentServer::run`] returns an error.
    pub max_retry: u32,
    /// Added delay per failure.
    pub step: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            max_retry: 16,
            step: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl ReconnectPolicy {
    /// The wait before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        self.step.saturating_mul(retry).min(self.max_delay)
    }
}

/// Options of an [`super::AgentServer`]. [`WorkerOptions::new`] fills the reference defaults
/// and reads `LIVEKIT_URL`, `LIVEKIT_API_KEY` and `LIVEKIT_API_SECRET` from the environment.
///
/// ```
/// use livekit_agents::worker::{JobContext, WorkerOptions};
///
/// async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
///     tracing::info!(room = ctx.room_name(), "job started");
///     Ok(())
/// }
///
/// let opts = WorkerOptions::new(entrypoint).with_agent_name("my-agent");
/// assert_eq!(opts.load_threshold, 0.7);
/// ```
#[derive(Clone)]
pub struct WorkerOptions {
    pub(crate) entrypoint: Entrypoint,
    pub(crate) prewarm: Option<PrewarmFn>,
    pub(crate) request_fnc: Option<RequestFn>,
    pub(crate) load_fnc: Option<LoadFn>,
    /// Name for explicit dispatch; empty means automatic dispatch to every new room.
    pub agent_name: String,
    /// Kind of jobs taken.
    pub server_type: ServerType,
    /// Load at or above which the server reports itself full (0.7; infinite in dev mode).
    pub load_threshold: f32,
    /// Hard cap on concurrent jobs, on top of the load threshold (`None` = no cap).
    pub max_concurrent_jobs: Option<usize>,
    /// How long draining waits for running jobs before shutting them down (30 min).
    pub drain_timeout: Duration,
    /// How long a job's shutdown callbacks may take (60 s).
    pub shutdown_process_timeout: Duration,
    /// Permissions of the agent participant.
    pub permissions: WorkerPermissions,
    /// Optional namespace sent at registration.
    pub namespace: Option<String>,
    /// Version string sent at registration (this crate's version by default).
    pub version: String,
    /// LiveKit server URL (`ws(s)://` or `http(s)://`).
    pub ws_url: String,
    /// API key.
    pub api_key: String,
    /// API secret (never logged).
    pub api_secret: String,
    /// Address of the health/metrics HTTP server (`0.0.0.0:8081`); `None` disables it.
    pub http_addr: Option<SocketAddr>,
    /// Interval of worker status (load) reports (2.5 s).
    pub status_interval: Duration,
    /// Interval of load sampling (0.5 s).
    pub load_interval: Duration,
    /// Interval of protocol `WorkerPing`s (30 s).
    pub ping_interval: Duration,
    /// How long an accepted job waits for its assignment (7.5 s).
    pub assignment_timeout: Duration,
    /// How long to wait for the server's registration answer (10 s).
    pub register_timeout: Duration,
    /// Reconnection schedule.
    pub reconnect: ReconnectPolicy,
    /// Warn when the process RSS exceeds this many MiB per running job (1000; 0 disables).
    pub job_memory_warn_mb: u64,
}

impl fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("agent_name", &self.agent_name)
            .field("server_type", &self.server_type)
            .field("load_threshold", &self.load_threshold)
            .field("max_concurrent_jobs", &self.max_concurrent_jobs)
            .field("drain_timeout", &self.drain_timeout)
            .field("shutdown_process_timeout", &self.shutdown_process_timeout)
            .field("permissions", &self.permissions)
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("ws_url", &self.ws_url)
            .field("api_key", &redact(&self.api_key))
            .field("api_secret", &redact(&self.api_secret))
            .field("http_addr", &self.http_addr)
            .field("status_interval", &self.status_interval)
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

pub(crate) fn redact(secret: &str) -> &'static str {
    if secret.is_empty() {
        "<unset>"
    } else {
        "<redacted>"
    }
}

impl WorkerOptions {
    /// Options running `entrypoint` for each job, with the reference defaults.
    pub fn new<F, Fut>(entrypoint: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        Self {
            entrypoint: Arc::new(move |ctx| entrypoint(ctx).boxed()),
            prewarm: None,
            request_fnc: None,
            load_fnc: None,
            agent_name: String::new(),
            server_type: ServerType::Room,
            load_threshold: 0.7,
            max_concurrent_jobs: None,
            drain_timeout: Duration::from_secs(30 * 60),
            shutdown_process_timeout: Duration::from_secs(60),
            permissions: WorkerPermissions::default(),
            namespace: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ws_url: env("LIVEKIT_URL"),
            api_key: env("LIVEKIT_API_KEY"),
            api_secret: env("LIVEKIT_API_SECRET"),
            http_addr: Some(SocketAddr::from(([0, 0, 0, 0], 8081))),
            status_interval: Duration::from_millis(2500),
            load_interval: Duration::from_millis(500),
            ping_interval: Duration::from_secs(30),
            assignment_timeout: Duration::from_millis(7500),
            register_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
            job_memory_warn_mb: 1000,
        }
    }

    /// Sets a per-process warm-up function (e.g. load the VAD model into userdata once).
    pub fn with_prewarm<F, Fut>(mut self, prewarm: F) -> Self
    where
        F: Fn(JobProcess) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.prewarm = Some(Arc::new(move |p| prewarm(p).boxed()));
        self
    }

    /// Sets the request handler (default: accept every job).
    pub fn with_request_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(JobRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.request_fnc = Some(Arc::new(move |r| handler(r).boxed()));
        self
    }

    /// Sets the load function (default: [`LoadContext::cpu_load`]).
    pub fn with_load_fn<F>(mut self, load: F) -> Self
    where
        F: Fn(&LoadContext) -> f32 + Send + Sync + 'static,
    {
        self.load_fnc = Some(Arc::new(load));
        self
    }

    /// Sets the agent name (explicit dispatch only).
    pub fn with_agent_name(mut self, name: impl Into<String>) -> Self {
        self.agent_name = name.into();
        self
    }

    /// Sets URL and credentials.
    pub fn with_credentials(
        mut self,
        url: impl Into<String>,
        api_key: impl Into<String>,
        api_secret: impl Into<String>,
    ) -> Self {
        self.ws_url = url.into();
        self.api_key = api_key.into();
        self.api_secret = api_secret.into();
        self
    }

    /// Development defaults: no load threshold, health server on a random local port.
    pub fn dev_mode(mut self) -> Self {
        self.load_threshold = f32::INFINITY;
        self.http_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }
}
