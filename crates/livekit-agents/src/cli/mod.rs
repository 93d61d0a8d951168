//! The agent program's command line: [`run_app`].
//!
//! ```text
//! my-agent console --text            talk to the agent locally (also --input-wav/--output-wav)
//! my-agent start                     production: JSON logs, load threshold 0.7, health on :8081
//! my-agent dev                       development: debug logs, no load threshold
//! my-agent connect --room NAME       run one job in a room, without dispatch
//! my-agent download-files            fetch the model files plugins declared
//! ```
//!
//! Global flags (each also read from the environment): `--url` (`LIVEKIT_URL`), `--api-key`
//! (`LIVEKIT_API_KEY`), `--api-secret` (`LIVEKIT_API_SECRET`), `--log-level`
//! (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`). `.env.local` and then `.env` in the
//! working directory are loaded first; variables already set in the process win, and
//! `.env.local` wins over `.env`.
//!
//! `dev`, `start` and `connect` join LiveKit rooms and need the `room` cargo feature; without it
//! they stop at once with a one-line error naming the feature.
//!
//! Restart on source change: `cargo run -- dev` watches the package's sources, rebuilds the
//! binary with cargo when they change, drains the running agent server's jobs and starts the
//! new build (the server runs in a child process; see `dev_reload.rs` for the design and its
//! limits). `dev --no-reload` turns it off; `--build "cargo build …"` gives the exact build
//! command (e.g. with features), `--watch DIR` what to watch.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::worker::{AgentServer, WorkerError, WorkerOptions};

#[cfg(feature = "console-audio")]
mod audio_device;
pub(crate) mod console;
mod dev_reload;

pub use console::{run_console, ConsoleOptions, ConsoleReport};
pub use console::{ConsoleHandle, CONSOLE_OUTPUT_SAMPLE_RATE};

/// Why the program stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The mode joins rooms but the binary was built without the `room` feature.
    #[error(
        "`{mode}` joins LiveKit rooms: rebuild with the `room` cargo feature (livekit-agents/room)"
    )]
    RoomFeatureMissing {
        /// The subcommand.
        mode: &'static str,
    },
    /// The command line is invalid, or help/version was asked for (clap renders it).
    #[error("{0}")]
    Args(#[from] clap::Error),
    /// An argument value is invalid.
    #[error("{message}")]
    Usage {
        /// What is wrong with the arguments.
        message: String,
    },
    /// A required setting is missing.
    #[error("missing {0}: pass it as a flag or set it in the environment")]
    MissingConfig(&'static str),
    /// The agent server stopped with an error.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// Some files could not be downloaded.
    #[error(transparent)]
    Download(#[from] crate::download::DownloadError),
    /// The job failed (connect mode).
    #[error("job failed: {reason}")]
    JobFailed {
        /// Why.
        reason: String,
    },
    /// The async runtime could not start.
    #[error("could not start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The session tape (`console --tape`) could not be saved.
    #[error(transparent)]
    Tape(#[from] crate::testing::replay::TapeError),
}

/// Realtime voice agent
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Args)]
struct GlobalArgs {
    /// LiveKit server URL
    #[arg(long, env = "LIVEKIT_URL", global = true)]
    url: Option<String>,
    /// LiveKit API key
    #[arg(long, env = "LIVEKIT_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
    /// LiveKit API secret
    #[arg(
        long,
        env = "LIVEKIT_API_SECRET",
        global = true,
        hide_env_values = true
    )]
    api_secret: Option<String>,
    /// Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO; DEBUG in dev)
    #[arg(long, global = true)]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Talk to the agent locally: microphone/speaker, WAV files or typed text
    Console(ConsoleArgs),
    /// Production mode: register with the LiveKit server, JSON logs
    Start(ServerArgs),
    /// Development mode: debug logs, no load threshold, rebuild and restart on source change
    Dev(DevArgs),
    /// Run one job directly in a room (no dispatch)
    Connect(ConnectArgs),
    /// Download the model files registered by plugins
    DownloadFiles,
}

#[derive(Debug, Clone, Args)]
struct ServerArgs {
    /// Port of the health and metrics HTTP server (default 8081 in start, random in dev)
    #[arg(long)]
    http_port: Option<u16>,
    /// How long to wait for running jobs on SIGTERM/SIGINT, in seconds (default 1800)
    #[arg(long)]
    drain_timeout: Option<u64>,
}

#[derive(Debug, Clone, Args)]
struct DevArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Do not watch the sources, rebuild and restart on change
    #[arg(long)]
    no_reload: bool,
    /// Directory to watch (repeatable; default: the package's, from `cargo run`)
    #[arg(long, value_name = "DIR")]
    watch: Vec<std::path::PathBuf>,
    /// Build command run on change (default: `cargo build` of this binary, without features)
    #[arg(long, value_name = "COMMAND")]
    build: Option<String>,
}

#[derive(Debug, Clone, Args)]
struct ConsoleArgs {
    /// Read user audio from a WAV file (16-bit PCM)
    #[arg(long, value_name = "FILE")]
    input_wav: Option<std::path::PathBuf>,
    /// Write agent audio to a WAV file
    #[arg(long, value_name = "FILE")]
    output_wav: Option<std::path::PathBuf>,
    /// Typed conversation: each line of input is a user turn
    #[arg(long)]
    text: bool,
    /// Write the session report (history, events, metrics, usage) as JSON to FILE
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// Record the session (user audio, STT/LLM/TTS answers with their timing) to FILE, for
    /// testing::replay
    #[arg(long, value_name = "FILE")]
    tape: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
struct ConnectArgs {
    /// Room to join
    #[arg(long)]
    room: String,
    /// Participant to link to (also the job's publisher)
    #[arg(long)]
    participant_identity: Option<String>,
}

/// Log output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Maps a reference log level name (case-insensitive) to a `tracing` level directive.
///
/// ```
/// use livekit_agents::cli::parse_log_level;
/// assert_eq!(parse_log_level("WARNING").unwrap(), "warn");
/// assert_eq!(parse_log_level("critical").unwrap(), "error");
/// assert!(parse_log_level("loud").is_err());
/// ```
pub fn parse_log_level(level: &str) -> Result<&'static str, CliError> {
    Ok(match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" | "CRITICAL" => "error",
        other => {
            return Err(CliError::Usage {
                message: format!(
                    "invalid --log-level {other:?} (use DEBUG, INFO, WARNING, ERROR or CRITICAL)"
                ),
            })
        }
    })
}

/// The `tracing` filter for `level`: our crates (`livekit_agents*`, `livekit_plugins*`) follow
/// `level`; at debug/trace the chatty transport crates stay at info. Directives match target
/// prefixes, so a cap like `livekit=info` would also raise or lower `livekit_agents`: our crates
/// are therefore named explicitly (the longer prefix wins).
fn default_log_filter(level: &str) -> String {
    let ours = format!("livekit_agents={level},livekit_plugins={level}");
    if matches!(level, "debug" | "trace") {
        let quiet = "tungstenite=info,tokio_tungstenite=info,hyper=info,hyper_util=info,h2=info,\
                     rustls=info,reqwest=info,livekit=info,libwebrtc=info";
        format!("{level},{quiet},{ours}")
    } else {
        format!("{level},{ours}")
    }
}

/// Dependencies that write request lines, URLs or headers (API keys, bearer tokens, the
/// worker's agent token) in their debug and trace logs: `tungstenite` logs the raw WebSocket
/// handshake, `hyper`/`h2`/`reqwest` requests, `livekit` the signalling URL with its token. The
/// crate's log setup never lets them log below INFO, whatever the level or `RUST_LOG` asks.
pub const SECRET_LOGGING_TARGETS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "livekit",
    "livekit_api",
    "libwebrtc",
];

/// Whether `target` belongs to one of [`SECRET_LOGGING_TARGETS`] (the crate itself or one of
/// its modules; `livekit_agents` is not `livekit`).
fn is_secret_logging_target(target: &str) -> bool {
    SECRET_LOGGING_TARGETS.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The subscriber [`init_logging`] installs, writing to `writer`: `rust_log` (the value of
/// `RUST_LOG`, if set and valid) or the default filter for `level`, then a cap that keeps
/// [`SECRET_LOGGING_TARGETS`] at INFO and above in every case.
pub fn logging_subscriber<W>(
    level: &str,
    format: LogFormat,
    rust_log: Option<&str>,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    logging_subscriber_with(level, format, rust_log, writer, false)
}

/// [`logging_subscriber`], plus the per-turn latency layer ([`crate::telemetry::latency`])
/// when `turn_latency` is set. Each layer has its own filter: the log filter does not hide the
/// session spans from the latency layer.
fn logging_subscriber_with<W>(
    level: &str,
    format: LogFormat,
    rust_log: Option<&str>,
    writer: W,
    turn_latency: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{fmt, EnvFilter, Layer as _, Registry};
    let filter = rust_log
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new(default_log_filter(level)));
    let cap = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || !is_secret_logging_target(meta.target())
    });
    let layer: Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync> = match format {
        LogFormat::Pretty => fmt::layer().with_target(true).with_writer(writer).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(writer)
            .boxed(),
    };
    let logs = tracing_subscriber::registry().with(layer.with_filter(filter).with_filter(cap));
    if turn_latency {
        Box::new(logs.with(crate::telemetry::latency::layer()))
    } else {
        Box::new(logs)
    }
}

/// Installs the global `tracing` subscriber (ignored if one is already installed), writing to
/// stderr. `RUST_LOG`, when set, overrides `level`; either way the dependencies that log
/// credentials ([`SECRET_LOGGING_TARGETS`]) stay at INFO and above.
pub fn init_logging(level: &str, format: LogFormat) {
    init_logging_with(level, format, false);
}

fn init_logging_with(level: &str, format: LogFormat, turn_latency: bool) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let rust_log = std::env::var("RUST_LOG").ok();
    let _ = logging_subscriber_with(
        level,
        format,
        rust_log.as_deref(),
        std::io::stderr,
        turn_latency,
    )
    .try_init();
}

/// Loads `.env.local` then `.env` from `dir`. Variables already in the environment are kept, so
/// the process environment wins over `.env.local`, which wins over `.env`. Returns the files
/// loaded.
pub fn load_env_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut loaded = Vec::new();
    for name in [".env.local", ".env"] {
        let path = dir.join(name);
        if path.is_file() {
            match dotenvy::from_path(&path) {
                Ok(()) => loaded.push(path),
                Err(e) => eprintln!("warning: could not load {}: {e}", path.display()),
            }
        }
    }
    loaded
}

/// Parses the process arguments and runs the agent program; returns the exit code (0 on a
/// clean stop, 1 on error, 2 on a usage error). Builds its own multi-threaded tokio runtime: call
/// it from a plain `fn main`.
///
/// ```no_run
/// use livekit_agents::worker::{JobContext, WorkerOptions};
///
/// async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
///     tracing::info!(room = ctx.room_name(), "job started");
///     Ok(())
/// }
///
/// fn main() -> std::process::ExitCode {
///     livekit_agents::cli::run_app(WorkerOptions::new(entrypoint))
/// }
/// ```
pub fn run_app(opts: WorkerOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {}", CliError::Runtime(e));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_app_async(opts))
}

/// [`run_app`] for programs that already run inside a tokio runtime.
pub async fn run_app_async(opts: WorkerOptions) -> ExitCode {
    if let Ok(cwd) = std::env::current_dir() {
        load_env_files(&cwd);
    }
    match run_with_args(opts, std::env::args_os()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Args(e)) => {
            // Help and version go to stdout with code 0, usage errors to stderr with code 2.
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
        Err(e @ CliError::Usage { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the program with explicit arguments (the first one is the program name). Does not load
/// `.env` files (see [`load_env_files`]).
pub async fn run_with_args<I, T>(mut opts: WorkerOptions, args: I) -> Result<(), CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let g = &cli.global;
    if let Some(url) = &g.url {
        opts.ws_url = url.clone();
    }
    if let Some(key) = &g.api_key {
        opts.api_key = key.clone();
    }
    if let Some(secret) = &g.api_secret {
        opts.api_secret = secret.clone();
    }
    let level = |default: &'static str| -> Result<&'static str, CliError> {
        g.log_level
            .as_deref()
            .map(parse_log_level)
            .unwrap_or(Ok(default))
    };
    match cli.command {
        Command::Console(args) => {
            // Logs go to stderr below the conversation; keep them to warnings by default. The
            // latency layer times the session spans for the per-turn stages shown.
            init_logging_with(level("warn")?, LogFormat::Pretty, true);
            let report = run_console(
                opts,
                ConsoleOptions {
                    input_wav: args.input_wav,
                    output_wav: args.output_wav,
                    text: args.text,
                    report: args.report,
                    tape: args.tape,
                    ..Default::default()
                },
            )
            .await?;
            if !report.turn_latencies.is_empty() {
                let n = report.turn_latencies.len() as f64;
                let mean = report
                    .turn_latencies
                    .iter()
                    .map(|d| d.as_secs_f64())
                    .sum::<f64>()
                    / n;
                println!("[summary] {} turns, mean latency {mean:.3} s", n as usize);
            }
            Ok(())
        }
        Command::Start(args) => {
            let level = level("info")?;
            require_room_feature("start")?;
            init_logging(level, LogFormat::Json);
            apply_server_args(&mut opts, &args, false);
            run_server(opts).await
        }
        Command::Dev(args) => {
            let level = level("debug")?;
            require_room_feature("dev")?;
            init_logging(level, LogFormat::Pretty);
            opts = opts.dev_mode();
            apply_server_args(&mut opts, &args.server, true);
            if !args.no_reload && std::env::var_os(dev_reload::CHILD_ENV).is_none() {
                match dev_reload::ReloadPlan::from_env(args.build.as_deref(), &args.watch) {
                    Some(plan) => return run_dev_supervisor(plan, opts.drain_timeout).await,
                    None => tracing::info!(
                        "dev: not started by `cargo run` and no --build: no reload on source change"
                    ),
                }
            }
            run_server(opts).await
        }
        Command::Connect(args) => {
            let level = level("debug")?;
            require_room_feature("connect")?;
            init_logging(level, LogFormat::Pretty);
            run_connect(opts, args).await
        }
        Command::DownloadFiles => {
            init_logging(level("info")?, LogFormat::Pretty);
            let files = crate::download::registered_files();
            if files.is_empty() {
                println!("no files to download: no plugin registered any");
                return Ok(());
            }
            let report =
                crate::download::download_all(&files, &crate::download::DownloadOptions::default())
                    .await;
            println!("{report}");
            report.into_result()?;
            Ok(())
        }
    }
}

fn require_room_feature(mode: &'static str) -> Result<(), CliError> {
    if cfg!(feature = "room") {
        Ok(())
    } else {
        Err(CliError::RoomFeatureMissing { mode })
    }
}

fn apply_server_args(opts: &mut WorkerOptions, args: &ServerArgs, dev: bool) {
    if let Some(port) = args.http_port {
        let host = if dev { [127, 0, 0, 1] } else { [0, 0, 0, 0] };
        opts.http_addr = Some(std::net::SocketAddr::from((host, port)));
    }
    if let Some(secs) = args.drain_timeout {
        opts.drain_timeout = Duration::from_secs(secs);
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `dev` with reload: this process watches and rebuilds; the server runs in a child process
/// (see [`dev_reload`]).
async fn run_dev_supervisor(
    plan: dev_reload::ReloadPlan,
    drain_timeout: Duration,
) -> Result<(), CliError> {
    let reload = |e: dev_reload::ReloadError| CliError::Usage {
        message: format!("dev reload: {e}"),
    };
    let mut changes = dev_reload::NotifyChanges::new(&plan.watch).map_err(reload)?;
    let mut builder = plan.builder;
    let mut launcher = dev_reload::ChildLauncher {
        exe: plan.exe,
        args: std::env::args_os().skip(1).collect(),
        drain_timeout,
    };
    tracing::info!(
        watch = ?plan.watch,
        build = %format!("{} {}", builder.program, builder.args.join(" ")),
        "dev: rebuilding and restarting on source change (--no-reload to turn off)"
    );
    let summary = dev_reload::supervise(
        &mut changes,
        &mut builder,
        &mut launcher,
        dev_reload::ReloadOptions::default(),
        async {
            shutdown_signal().await;
            tracing::info!(
                "shutdown signal received, draining the agent server (signal again to kill it)"
            );
        },
    )
    .await
    .map_err(reload)?;
    tracing::debug!(
        builds = summary.builds,
        failed_builds = summary.failed_builds,
        launches = summary.launches,
        "dev supervisor stopped"
    );
    Ok(())
}

/// Runs the server; the first SIGINT/SIGTERM drains then stops it (exit 0), a second one exits
/// at once.
async fn run_server(opts: WorkerOptions) -> Result<(), CliError> {
    let server = AgentServer::new(opts);
    let shutdown = async {
        shutdown_signal().await;
        tracing::info!("shutdown signal received, draining (signal again to force exit)");
        tokio::spawn(async {
            shutdown_signal().await;
            eprintln!("second signal: exiting now");
            std::process::exit(1);
        });
    };
    server.run_until(shutdown).await.map_err(CliError::from)
}

/// The token a `connect`-mode job joins its room with.
fn connect_token(
    opts: &WorkerOptions,
    room: &str,
    identity: &str,
    name: &str,
) -> Result<String, CliError> {
    use livekit_api::access_token::{AccessToken, VideoGrants};
    let p = &opts.permissions;
    AccessToken::with_api_key(&opts.api_key, &opts.api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_kind("agent")
        .with_grants(VideoGrants {
            room_join: true,
            room: room.to_owned(),
            agent: true,
            can_publish: Some(p.can_publish),
            can_subscribe: Some(p.can_subscribe),
            can_publish_data: Some(p.can_publish_data),
            can_update_own_metadata: Some(p.can_update_metadata),
            hidden: p.hidden,
            ..Default::default()
        })
        .to_jwt()
        .map_err(|e| {
            CliError::Worker(WorkerError::Token {
                reason: e.to_string(),
            })
        })
}

/// The job a `connect` run executes: a simulated dispatch into `room`.
fn connect_job(opts: &WorkerOptions, args: &ConnectArgs) -> livekit_protocol::Job {
    livekit_protocol::Job {
        id: format!("simulated-job-{}", uuid::Uuid::new_v4().simple()),
        r#type: opts.server_type.to_proto() as i32,
        room: Some(livekit_protocol::Room {
            name: args.room.clone(),
            ..Default::default()
        }),
        participant: args.participant_identity.as_ref().map(|identity| {
            livekit_protocol::ParticipantInfo {
                identity: identity.clone(),
                ..Default::default()
            }
        }),
        agent_name: opts.agent_name.clone(),
        ..Default::default()
    }
}

async fn run_connect(opts: WorkerOptions, args: ConnectArgs) -> Result<(), CliError> {
    if opts.ws_url.is_empty() {
        return Err(CliError::MissingConfig("LiveKit URL (--url / LIVEKIT_URL)"));
    }
    if opts.api_key.is_empty() || opts.api_secret.is_empty() {
        return Err(CliError::MissingConfig(
            "API key and secret (--api-key / LIVEKIT_API_KEY, --api-secret / LIVEKIT_API_SECRET)",
        ));
    }
    let job = connect_job(&opts, &args);
    let identity = format!("agent-{}", job.id);
    let token = connect_token(&opts, &args.room, &identity, &opts.agent_name)?;
    let params = crate::worker::JobContextParams {
        job,
        url: opts.ws_url.clone(),
        token,
        worker_id: "local".to_owned(),
        accept: crate::worker::AcceptArgs {
            identity,
            name: opts.agent_name.clone(),
            ..Default::default()
        },
        api: crate::worker::ApiCredentials {
            url: opts.ws_url.clone(),
            api_key: opts.api_key.clone(),
            api_secret: opts.api_secret.clone(),
        },
        fake_job: false,
        console: None,
    };
    let server = AgentServer::new(opts);
    let signals = {
        let server = server.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown signal received, ending the job");
            server.aclose().await;
        })
    };
    tracing::info!(room = args.room, "running one job in the room");
    let outcome = server.run_local_job(params).await?;
    signals.abort();
    match outcome {
        crate::worker::JobOutcome::Success => Ok(()),
        crate::worker::JobOutcome::Failed(e) => Err(CliError::JobFailed { reason: e }),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn log_filter_keeps_our_crates_at_the_requested_level() {
        let warn = default_log_filter("warn");
        assert!(!warn.contains("livekit=info"), "{warn}");
        assert!(
            warn.ends_with("livekit_agents=warn,livekit_plugins=warn"),
            "{warn}"
        );
        let debug = default_log_filter("debug");
        assert!(debug.contains("hyper=info"), "{debug}");
        assert!(
            debug.ends_with("livekit_agents=debug,livekit_plugins=debug"),
            "{debug}"
        );
        tracing_subscriber::EnvFilter::try_new(&debug).unwrap();
    }

    #[test]
    fn secret_logging_targets_match_whole_crate_names() {
        for t in [
            "tungstenite::handshake::client",
            "hyper",
            "livekit::rtc_engine",
            "h2::proto",
        ] {
            assert!(is_secret_logging_target(t), "{t}");
        }
        for t in [
            "livekit_agents::worker",
            "livekit_plugins_deepgram",
            "hyperx",
            "my_app",
        ] {
            assert!(!is_secret_logging_target(t), "{t}");
        }
    }
    use super::*;
    use crate::worker::JobContext;

    fn opts() -> WorkerOptions {
        WorkerOptions::new(|_ctx: JobContext| async { Ok(()) }).with_credentials(
            "ws://localhost:7880",
            "key",
            "secret-secret-secret-secret-000",
        )
    }

    #[test]
    fn parses_modes_and_global_flags() {
        let cli = Cli::try_parse_from([
            "agent",
            "connect",
            "--room",
            "r1",
            "--participant-identity",
            "u1",
            "--log-level",
            "debug",
        ])
        .unwrap();
        assert_eq!(cli.global.log_level.as_deref(), Some("debug"));
        match cli.command {
            Command::Connect(a) => {
                assert_eq!(a.room, "r1");
                assert_eq!(a.participant_identity.as_deref(), Some("u1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["agent", "connect"]).is_err());
        assert!(Cli::try_parse_from(["agent", "download-files"]).is_ok());
        let cli = Cli::try_parse_from(["agent", "dev", "--http-port", "9000"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Dev(DevArgs {
                server: ServerArgs {
                    http_port: Some(9000),
                    ..
                },
                no_reload: false,
                ..
            })
        ));
    }

    #[test]
    fn connect_job_and_token_carry_room_and_participant() {
        let o = opts();
        let args = ConnectArgs {
            room: "room-x".into(),
            participant_identity: Some("caller".into()),
        };
        let job = connect_job(&o, &args);
        assert!(job.id.starts_with("simulated-job-"));
        assert_eq!(job.room.as_ref().map(|r| r.name.as_str()), Some("room-x"));
        assert_eq!(
            job.participant.as_ref().map(|p| p.identity.as_str()),
            Some("caller")
        );
        let token = connect_token(&o, "room-x", "agent-1", "").unwrap();
        let claims = livekit_api::access_token::Claims::from_unverified(&token).unwrap();
        assert_eq!(claims.sub, "agent-1");
        assert_eq!(claims.kind, "agent");
        assert!(claims.video.room_join && claims.video.agent);
        assert_eq!(claims.video.room, "room-x");
    }

    #[test]
    fn env_files_are_loaded_with_local_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(
            dir.join(".env"),
            "LK_CLI_UNIT_A=from-env\nLK_CLI_UNIT_B=from-env\n",
        )
        .unwrap();
        std::fs::write(dir.join(".env.local"), "LK_CLI_UNIT_A=from-local\n").unwrap();
        let loaded = load_env_files(dir);
        assert_eq!(loaded.len(), 2);
        assert_eq!(std::env::var("LK_CLI_UNIT_A").unwrap(), "from-local");
        assert_eq!(std::env::var("LK_CLI_UNIT_B").unwrap(), "from-env");
    }
}
