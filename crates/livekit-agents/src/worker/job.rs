//! Job-side types: [`JobRequest`] (accept or reject a dispatch), [`JobContext`] (what an
//! entrypoint gets) and [`JobProcess`] (per-process shared state from prewarm).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use livekit_protocol as proto;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::options::redact;
use crate::llm::tool::UserdataError;

pub use livekit_api::services::LiveKitApi;

/// Per-process state shared by every job: what prewarm loaded.
///
/// ```
/// use livekit_agents::worker::JobProcess;
///
/// let proc = JobProcess::new();
/// proc.userdata().insert("greeting", String::from("hello"));
/// let g = proc.userdata().get::<String>("greeting").unwrap();
/// assert_eq!(g.as_str(), "hello");
/// assert!(proc.userdata().get::<u32>("greeting").is_err());
/// ```
#[derive(Clone, Default)]
pub struct JobProcess {
    userdata: ProcessUserdata,
}

impl fmt::Debug for JobProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobProcess")
            .field("pid", &std::process::id())
            .field("userdata_keys", &self.userdata.keys())
            .finish()
    }
}

impl JobProcess {
    /// An empty process state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's typed key-value store.
    pub fn userdata(&self) -> &ProcessUserdata {
        &self.userdata
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// The process's store of shared values (the reference's `proc.userdata` dict): what a
/// prewarm function loads once (models) for every job of the process. Not the session's
/// [`Userdata`](crate::llm::Userdata), which holds one conversation's state.
///
/// Values are reached by a typed [`UserdataKey`] (the type is checked at compile time) or by a
/// string key and a type; a missing value or another type is a typed
/// [`UserdataError`], not a silent `None`.
///
/// ```
/// use livekit_agents::worker::{JobProcess, UserdataKey};
///
/// const GREETING: UserdataKey<String> = UserdataKey::new("greeting");
/// let proc = JobProcess::new();
/// proc.userdata().set(&GREETING, String::from("hello"));
/// assert_eq!(proc.userdata().value(&GREETING).unwrap().as_str(), "hello");
/// // By name, the type is checked at run time:
/// assert!(proc.userdata().get::<u32>("greeting").is_err());
/// ```
#[derive(Clone, Default)]
pub struct ProcessUserdata {
    map: Arc<RwLock<HashMap<String, Stored>>>,
}

type Stored = (Arc<dyn Any + Send + Sync>, &'static str);

/// A typed key of the [`ProcessUserdata`]: `const VAD: UserdataKey<Arc<dyn Vad>> =
/// UserdataKey::new("vad");` then `set(&VAD, ..)` / `value(&VAD)`.
pub struct UserdataKey<T> {
    name: &'static str,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T> UserdataKey<T> {
    /// A key named `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: std::marker::PhantomData,
        }
    }

    /// The key's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> fmt::Debug for UserdataKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UserdataKey<{}>({:?})",
            std::any::type_name::<T>(),
            self.name
        )
    }
}

impl ProcessUserdata {
    /// Stores `value` under `key`, replacing any previous value.
    pub fn insert<T: Any + Send + Sync>(&self, key: impl Into<String>, value: T) {
        self.map
            .write()
            .insert(key.into(), (Arc::new(value), std::any::type_name::<T>()));
    }

    /// The value under `key` as a `T`, or why not.
    pub fn get<T: Any + Send + Sync>(&self, key: &str) -> Result<Arc<T>, UserdataError> {
        let expected = std::any::type_name::<T>();
        let (value, actual) =
            self.map
                .read()
                .get(key)
                .cloned()
                .ok_or_else(|| UserdataError::MissingKey {
                    key: key.to_owned(),
                    expected,
                })?;
        value
            .downcast::<T>()
            .map_err(|_| UserdataError::WrongType { expected, actual })
    }

    /// Stores `value` under a typed key.
    pub fn set<T: Any + Send + Sync>(&self, key: &UserdataKey<T>, value: T) {
        self.insert(key.name, value);
    }

    /// The value under a typed key (an error only when it was never set, or was replaced
    /// through the string API with another type).
    pub fn value<T: Any + Send + Sync>(
        &self,
        key: &UserdataKey<T>,
    ) -> Result<Arc<T>, UserdataError> {
        self.get::<T>(key.name)
    }

    /// The keys present.
    pub fn keys(&self) -> Vec<String> {
        self.map.read().keys().cloned().collect()
    }
}

impl fmt::Debug for ProcessUserdata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessUserdata")
            .field("keys", &self.keys())
            .finish()
    }
}

/// How the agent joins the room when a job is accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptArgs {
    /// Participant name (default empty).
    pub name: String,
    /// Participant identity (default `agent-<job id>`).
    pub identity: String,
    /// Participant metadata.
    pub metadata: String,
    /// Participant attributes set on join.
    pub attributes: HashMap<String, String>,
}

pub(crate) enum RequestAnswer {
    Accept(AcceptArgs),
    Reject,
}

/// A dispatch offer: the request handler accepts or rejects it. Dropping it unanswered rejects.
pub struct JobRequest {
    job: proto::Job,
    resuming: bool,
    answer: Option<oneshot::Sender<RequestAnswer>>,
}

impl fmt::Debug for JobRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRequest")
            .field("job_id", &self.job.id)
            .field("room", &self.room_name())
            .field("agent_name", &self.job.agent_name)
            .field("resuming", &self.resuming)
            .finish()
    }
}

impl JobRequest {
    pub(crate) fn new(job: proto::Job, resuming: bool) -> (Self, oneshot::Receiver<RequestAnswer>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                job,
                resuming,
                answer: Some(tx),
            },
            rx,
        )
    }

    /// The job offered.
    pub fn job(&self) -> &proto::Job {
        &self.job
    }

    /// The job id.
    pub fn id(&self) -> &str {
        &self.job.id
    }

    /// The room's name.
    pub fn room_name(&self) -> &str {
        self.job
            .room
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or("")
    }

    /// The publisher for publisher jobs.
    pub fn publisher(&self) -> Option<&proto::ParticipantInfo> {
        self.job.participant.as_ref()
    }

    /// The agent name the job was dispatched to.
    pub fn agent_name(&self) -> &str {
        &self.job.agent_name
    }

    /// Whether the server is resuming a job after a worker reconnect.
    pub fn resuming(&self) -> bool {
        self.resuming
    }

    /// Takes the job. An empty identity becomes `agent-<job id>`.
    pub fn accept(mut self, args: AcceptArgs) {
        if let Some(tx) = self.answer.take() {
            let _ = tx.send(RequestAnswer::Accept(args));
        }
    }

    /// Declines the job; the server offers it to another agent server.
    pub fn reject(mut self) {
        if let Some(tx) = self.answer.take() {
            let _ = tx.send(RequestAnswer::Reject);
        }
    }
}

/// LiveKit server URL and API credentials, for calling the server API (room service, egress,
/// ingress, SIP, dispatch) from a job; [`JobContext::api`] is the client built from them. The
/// secret is redacted from `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiCredentials {
    /// Server URL as configured.
    pub url: String,
    /// API key.
    pub api_key: String,
    /// API secret.
    pub api_secret: String,
}

impl fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("url", &self.url)
            .field("api_key", &redact(&self.api_key))
            .field("api_secret", &redact(&self.api_secret))
            .finish()
    }
}

type ShutdownCallback = Box<dyn FnOnce(String) -> BoxFuture<'static, ()> + Send>;

pub(crate) struct JobContextInner {
    pub(crate) job: proto::Job,
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) worker_id: String,
    pub(crate) accept: AcceptArgs,
    pub(crate) api: ApiCredentials,
    /// The server API client, built from `api` on first use.
    pub(crate) api_client: std::sync::OnceLock<LiveKitApi>,
    pub(crate) proc: JobProcess,
    pub(crate) fake_job: bool,
    pub(crate) shutdown: CancellationToken,
    pub(crate) shutdown_reason: Mutex<Option<String>>,
    pub(crate) callbacks: Mutex<Vec<ShutdownCallback>>,
    /// Set once the job holds a resource that outlives its entrypoint (a room connection, a
    /// console session): the job then runs until [`JobContext::shutdown`].
    pub(crate) keep_alive: AtomicBool,
    #[cfg(feature = "room")]
    pub(crate) room: tokio::sync::OnceCell<std::sync::Arc<livekit::Room>>,
    #[cfg(feature = "room")]
    pub(crate) participant_entrypoints:
        super::participants::ParticipantEntrypoints<livekit::prelude::RemoteParticipant>,
    pub(crate) console: Option<crate::cli::console::ConsoleHandle>,
    /// When the server's assignment of this job was received (dispatched jobs only).
    pub(crate) assigned_at: std::sync::OnceLock<std::time::Instant>,
    /// Whether the job-start metric has counted this job's first ready session.
    pub(crate) session_ready_counted: AtomicBool,
}

tokio::task_local! {
    static CURRENT_JOB: JobContext;
}

/// Everything a job's entrypoint needs: the job, the room, credentials, process userdata and
/// the job's lifetime (shutdown callbacks and [`JobContext::shutdown`]). Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub(crate) inner: Arc<JobContextInner>,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job_id", &self.inner.job.id)
            .field("room", &self.room_name())
            .field("url", &self.inner.url)
            .field("token", &redact(&self.inner.token))
            .field("worker_id", &self.inner.worker_id)
            .field("fake_job", &self.inner.fake_job)
            .finish_non_exhaustive()
    }
}

/// Parameters to build a [`JobContext`] (used by the server, the CLI and tests).
#[derive(Debug, Clone, Default)]
pub struct JobContextParams {
    /// The job.
    pub job: proto::Job,
    /// Room server URL to connect to.
    pub url: String,
    /// Room join token.
    pub token: String,
    /// Id of the agent server that runs the job.
    pub worker_id: String,
    /// Answer given when the job was accepted.
    pub accept: AcceptArgs,
    /// API credentials.
    pub api: ApiCredentials,
    /// True for local jobs not dispatched by a server (console).
    pub fake_job: bool,
    /// The console, for console-mode jobs.
    pub console: Option<crate::cli::console::ConsoleHandle>,
}

impl JobContext {
    /// A context for `params`, sharing `proc`.
    pub fn new(params: JobContextParams, proc: JobProcess) -> Self {
        Self {
            inner: Arc::new(JobContextInner {
                job: params.job,
                url: params.url,
                token: params.token,
                worker_id: params.worker_id,
                accept: params.accept,
                api: params.api,
                api_client: std::sync::OnceLock::new(),
                proc,
                fake_job: params.fake_job,
                shutdown: CancellationToken::new(),
                shutdown_reason: Mutex::new(None),
                callbacks: Mutex::new(Vec::new()),
                keep_alive: AtomicBool::new(false),
                #[cfg(feature = "room")]
                room: tokio::sync::OnceCell::new(),
                #[cfg(feature = "room")]
                participant_entrypoints: Default::default(),
                console: params.console,
                assigned_at: std::sync::OnceLock::new(),
                session_ready_counted: AtomicBool::new(false),
            }),
        }
    }

    /// When the server's assignment of this job reached this process; `None` for local jobs
    /// (`console`, `connect`). The job-start metric ([`crate::worker::job_start`]) counts from
    /// here.
    pub fn assigned_at(&self) -> Option<std::time::Instant> {
        self.inner.assigned_at.get().copied()
    }

    pub(crate) fn set_assigned_at(&self, at: std::time::Instant) {
        let _ = self.inner.assigned_at.set(at);
    }

    /// Called when an [`AgentSession`](crate::voice::AgentSession) has started: if it runs in
    /// a dispatched job's entrypoint and is the job's first, records the job's
    /// `session_ready` start time.
    pub(crate) fn note_session_started() {
        let Some(ctx) = Self::current() else {
            return;
        };
        let Some(at) = ctx.assigned_at() else {
            return;
        };
        if !ctx
            .inner
            .session_ready_counted
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            super::job_start::observe("session_ready", at.elapsed().as_secs_f64());
        }
    }

    /// The context of the job whose entrypoint is running on this task, if any (the
    /// reference's `get_job_context()`). Tasks spawned by the entrypoint do not inherit it.
    pub fn current() -> Option<JobContext> {
        CURRENT_JOB.try_with(|c| c.clone()).ok()
    }

    pub(crate) async fn scope<F: Future>(self, f: F) -> F::Output {
        CURRENT_JOB.scope(self, f).await
    }

    /// The job as dispatched.
    pub fn job(&self) -> &proto::Job {
        &self.inner.job
    }

    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.inner.job.id
    }

    /// The job metadata (JSON recommended).
    pub fn metadata(&self) -> &str {
        &self.inner.job.metadata
    }

    /// The room's name.
    pub fn room_name(&self) -> &str {
        self.inner
            .job
            .room
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or("")
    }

    /// For publisher jobs (or `connect --participant-identity`), the participant the job is for.
    pub fn publisher_identity(&self) -> Option<&str> {
        self.inner
            .job
            .participant
            .as_ref()
            .map(|p| p.identity.as_str())
    }

    /// The URL of the LiveKit server hosting the room.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The room join token for the agent participant.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The agent server's id.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// How the agent participant was accepted (name, identity, attributes).
    pub fn accept_args(&self) -> &AcceptArgs {
        &self.inner.accept
    }

    /// Server URL and API credentials for server API calls.
    pub fn api_credentials(&self) -> &ApiCredentials {
        &self.inner.api
    }

    /// The LiveKit server API (the reference's `ctx.api`), built from the job's server URL and
    /// API key/secret on first use: [`LiveKitApi::room`] (rooms, participants, tracks, data),
    /// [`LiveKitApi::egress`], [`LiveKitApi::ingress`], [`LiveKitApi::sip`] and
    /// [`LiveKitApi::agent_dispatch`]. Each call signs a short-lived token with just the grants
    /// it needs. A `ws(s)://` URL is called over `http(s)://`.
    ///
    /// ```no_run
    /// use livekit_agents::worker::JobContext;
    ///
    /// async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    ///     let people = ctx.api().room().list_participants(ctx.room_name()).await?;
    ///     tracing::info!(count = people.len(), "participants in the room");
    ///     Ok(())
    /// }
    /// ```
    pub fn api(&self) -> &LiveKitApi {
        self.inner.api_client.get_or_init(|| {
            let creds = &self.inner.api;
            LiveKitApi::with_api_key(&creds.url, &creds.api_key, &creds.api_secret)
        })
    }

    /// Process state filled by prewarm.
    pub fn proc(&self) -> &JobProcess {
        &self.inner.proc
    }

    /// True for local jobs with no LiveKit server (console mode).
    pub fn is_fake_job(&self) -> bool {
        self.inner.fake_job
    }

    /// The console of a console-mode job (background audio mixes into its output).
    pub(crate) fn console_handle(&self) -> Option<&crate::cli::console::ConsoleHandle> {
        self.inner.console.as_ref()
    }

    /// The recorder of `console --tape FILE`, which sessions built in this job record on.
    pub(crate) fn tape_recorder(&self) -> Option<crate::testing::replay::TapeRecorder> {
        self.inner.console.as_ref().and_then(|c| c.tape_recorder())
    }

    /// Registers `callback(reason)` to run when the job shuts down (after the entrypoint), in
    /// registration order, bounded by the server's `shutdown_process_timeout`.
    pub fn add_shutdown_callback<F, Fut>(&self, callback: F)
    where
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .callbacks
            .lock()
            .push(Box::new(move |reason| callback(reason).boxed()));
    }

    /// Ends the job: stops the entrypoint if still running, runs shutdown callbacks, and
    /// disconnects from the room. The first reason given wins.
    pub fn shutdown(&self, reason: impl Into<String>) {
        {
            let mut r = self.inner.shutdown_reason.lock();
            if r.is_none() {
                *r = Some(reason.into());
            }
        }
        self.inner.shutdown.cancel();
    }

    /// Whether [`JobContext::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Resolves when the job is asked to shut down, with the reason.
    pub async fn wait_for_shutdown(&self) -> String {
        self.inner.shutdown.cancelled().await;
        self.shutdown_reason()
    }

    pub(crate) fn shutdown_reason(&self) -> String {
        self.inner
            .shutdown_reason
            .lock()
            .clone()
            .unwrap_or_default()
    }

    /// Keeps the job running after the entrypoint returns, until [`JobContext::shutdown`]
    /// (done automatically when connecting to a room or running in console mode).
    pub fn keep_alive(&self) {
        self.inner.keep_alive.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_kept_alive(&self) -> bool {
        self.inner.keep_alive.load(Ordering::SeqCst)
    }

    pub(crate) fn take_callbacks(&self) -> Vec<ShutdownCallback> {
        std::mem::take(&mut *self.inner.callbacks.lock())
    }

    /// Deletes the job's room on the LiveKit server (everyone is disconnected), through the
    /// server API (`RoomService.DeleteRoom`, Twirp over HTTP).
    pub async fn delete_room(&self) -> Result<(), JobError> {
        self.api()
            .room()
            .delete_room(self.room_name())
            .await
            .map_err(|e| JobError::Api {
                call: "RoomService.DeleteRoom",
                message: e.to_string(),
            })
    }

    /// Connects the agent participant to the job's room (once; later calls return the same
    /// room) and keeps the job alive until it is shut down. The job shuts down when the room
    /// disconnects.
    #[cfg(feature = "room")]
    pub async fn connect(&self) -> Result<Arc<livekit::Room>, JobError> {
        let room = self
            .inner
            .room
            .get_or_try_init(|| async {
                let mut options = livekit::RoomOptions::default();
                options.auto_subscribe = true;
                let (room, mut events) = livekit::Room::connect(self.url(), self.token(), options)
                    .await
                    .map_err(|e| JobError::Connect {
                        reason: e.to_string(),
                    })?;
                tracing::info!(
                    room = self.room_name(),
                    job_id = self.job_id(),
                    "connected to the room"
                );
                // Participants present now; later joins arrive as events (a participant in both
                // is deduplicated by its sid).
                for p in room.remote_participants().into_values() {
                    self.participant_available(p);
                }
                let ctx = self.clone();
                tokio::spawn(async move {
                    while let Some(ev) = events.recv().await {
                        match ev {
                            livekit::RoomEvent::ParticipantConnected(p) => {
                                ctx.participant_available(p)
                            }
                            livekit::RoomEvent::ParticipantDisconnected(p) => ctx
                                .inner
                                .participant_entrypoints
                                .participant_disconnected(p.identity().as_str()),
                            livekit::RoomEvent::Disconnected { reason } => {
                                ctx.shutdown(format!("room disconnected: {reason:?}"));
                                break;
                            }
                            _ => {}
                        }
                    }
                });
                Ok::<_, JobError>(Arc::new(room))
            })
            .await?
            .clone();
        self.keep_alive();
        Ok(room)
    }

    /// Runs `entrypoint(ctx, participant)` for every remote participant of one of `kinds`
    /// (empty: [`crate::room_logic::DEFAULT_PARTICIPANT_KINDS`], i.e. connector, SIP and
    /// standard): those present when the room is connected (or at once if it already is) and
    /// those joining later, each once per participant session, in parallel (the reference's
    /// `add_participant_entrypoint`). Errors are logged; running entrypoints are aborted when
    /// the job shuts down. `name` identifies the entrypoint in logs. Unlike the reference,
    /// which refuses the same function twice, each call registers one more entrypoint (closures
    /// cannot be compared), and one added after the room is connected also runs for the
    /// participants already there.
    ///
    /// ```no_run
    /// use livekit_agents::worker::JobContext;
    ///
    /// async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    ///     ctx.add_participant_entrypoint("log-joins", vec![], |_ctx, p| async move {
    ///         tracing::info!(identity = %p.identity(), "participant present");
    ///         Ok(())
    ///     });
    ///     ctx.connect().await?;
    ///     Ok(())
    /// }
    /// ```
    #[cfg(feature = "room")]
    pub fn add_participant_entrypoint<F, Fut>(
        &self,
        name: impl Into<String>,
        kinds: Vec<crate::room_logic::ParticipantKind>,
        entrypoint: F,
    ) where
        F: Fn(JobContext, livekit::prelude::RemoteParticipant) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.inner
            .participant_entrypoints
            .add(self, name, kinds, entrypoint);
    }

    #[cfg(feature = "room")]
    fn participant_available(&self, p: livekit::prelude::RemoteParticipant) {
        let who = super::participants::ParticipantRef {
            identity: p.identity().to_string(),
            sid: p.sid().to_string(),
            kind: crate::room::kind_of(p.kind()),
        };
        self.inner
            .participant_entrypoints
            .participant_connected(self, who, p);
    }

    /// Connects if needed, then waits for a remote participant: `identity` if given, else the
    /// first connector, SIP or standard participant (already present or joining).
    #[cfg(feature = "room")]
    pub async fn wait_for_participant(
        &self,
        identity: Option<&str>,
    ) -> Result<livekit::prelude::RemoteParticipant, JobError> {
        use livekit::prelude::RemoteParticipant;
        let room = self.connect().await?;
        let mut events = room.subscribe();
        let wanted = |p: &RemoteParticipant| match identity {
            Some(id) => p.identity().as_str() == id,
            None => crate::room_logic::DEFAULT_PARTICIPANT_KINDS
                .contains(&crate::room::kind_of(p.kind())),
        };
        if let Some(p) = room.remote_participants().into_values().find(|p| wanted(p)) {
            return Ok(p);
        }
        while let Some(ev) = events.recv().await {
            if let livekit::RoomEvent::ParticipantConnected(p) = ev {
                if wanted(&p) {
                    return Ok(p);
                }
            }
        }
        Err(JobError::Connect {
            reason: "the room closed before a participant joined".into(),
        })
    }

    /// The room, once [`JobContext::connect`] succeeded.
    #[cfg(feature = "room")]
    pub fn room(&self) -> Option<Arc<livekit::Room>> {
        self.inner.room.get().cloned()
    }
}

/// Errors of job-side operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Connecting to the room failed.
    #[error("could not connect to the room: {reason}")]
    Connect {
        /// The room's error.
        reason: String,
    },
    /// A server API call failed.
    #[error("server API call {call} failed: {message}")]
    Api {
        /// The call, e.g. `RoomService.DeleteRoom`.
        call: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The session's ports cannot be created in this mode.
    #[error("{reason}")]
    NoIo {
        /// Why.
        reason: String,
    },
}

/// Outcome of one job run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// The entrypoint finished (and the job was shut down if it was kept alive).
    Success,
    /// The entrypoint returned an error or panicked.
    Failed(String),
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// Runs a job to completion: the entrypoint on its own task (so a panic is contained), then,
/// if the job was kept alive, waits for shutdown; then runs the shutdown callbacks.
pub(crate) async fn run_job(
    ctx: JobContext,
    entrypoint: super::options::Entrypoint,
    callback_timeout: Duration,
) -> JobOutcome {
    let assigned_at = ctx.assigned_at();
    let user = entrypoint(ctx.clone());
    let fut = ctx.clone().scope(async move {
        if let Some(at) = assigned_at {
            super::job_start::observe("entrypoint", at.elapsed().as_secs_f64());
        }
        user.await
    });
    let mut handle = tokio::spawn(fut);
    let outcome = tokio::select! {
        res = &mut handle => match res {
            Ok(Ok(())) => {
                if ctx.is_kept_alive() {
                    ctx.inner.shutdown.cancelled().await;
                }
                JobOutcome::Success
            }
            Ok(Err(e)) => JobOutcome::Failed(format!("{e:#}")),
            Err(join) if join.is_panic() => {
                JobOutcome::Failed(format!("entrypoint panicked: {}", panic_message(join.into_panic())))
            }
            Err(_) => JobOutcome::Failed("entrypoint cancelled".to_owned()),
        },
        _ = ctx.inner.shutdown.cancelled() => {
            handle.abort();
            let _ = handle.await;
            JobOutcome::Success
        }
    };
    if !ctx.is_shutting_down() {
        let reason = match &outcome {
            JobOutcome::Success => "entrypoint finished".to_owned(),
            JobOutcome::Failed(e) => e.clone(),
        };
        ctx.shutdown(reason);
    }
    let reason = ctx.shutdown_reason();
    let callbacks = ctx.take_callbacks();
    if !callbacks.is_empty() {
        let run_all = async {
            for cb in callbacks {
                // Each callback on its own task so that a panicking callback does not stop the rest.
                if let Err(e) = tokio::spawn(cb(reason.clone())).await {
                    tracing::error!(job_id = ctx.job_id(), error = %e, "shutdown callback failed");
                }
            }
        };
        if tokio::time::timeout(callback_timeout, run_all)
            .await
            .is_err()
        {
            tracing::warn!(
                job_id = ctx.job_id(),
                timeout = ?callback_timeout,
                "shutdown callbacks did not finish in time"
            );
        }
    }
    #[cfg(feature = "room")]
    if let Some(room) = ctx.inner.room.get() {
        if let Err(e) = room.close().await {
            tracing::debug!(job_id = ctx.job_id(), error = %e, "room close failed");
        }
    }
    outcome
}
