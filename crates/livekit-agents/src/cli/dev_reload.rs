//! `dev` reload: watch the sources, rebuild, restart the agent server after draining its jobs.
//!
//! A Rust program cannot load its own new code, so `dev` splits in two processes:
//!
//! - the **supervisor** (the process `cargo run -- dev` started) watches the package's sources
//!   (`notify`: `.rs` files and `Cargo.toml`, not `target/` nor hidden directories), waits until
//!   they are quiet for [`ReloadOptions::debounce`], and runs `cargo build` for the same binary
//!   while the old server keeps serving;
//! - the **server** is a child process running the same executable (the path it had when the
//!   supervisor started, which `cargo build` replaces) with the same arguments and
//!   [`CHILD_ENV`] set, so it runs `dev` as a plain agent server.
//!
//! When a build succeeds the supervisor sends the server SIGTERM: it drains its running jobs
//! like on any SIGTERM (bounded by `--drain-timeout`), then the new build starts. A failed
//! build leaves the old server running; changes made during a build trigger one more build.
//! If the server exits by itself it is started again at the next successful build. Ctrl-C
//! reaches only the supervisor (the server has its own process group), which drains the server
//! and stops; a second Ctrl-C kills it.
//!
//! What to build: `cargo run` tells the program its package (`CARGO_PKG_NAME`) and manifest
//! directory; the binary or example and the profile are read from the executable's path.
//! Cargo features cannot be known that way: pass the exact command with `dev --build "cargo
//! build --example my_agent --features room"` when they matter. Without `cargo run` and without
//! `--build`, `dev` runs without reload.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

/// Set in the server process `dev` starts (it then runs the server instead of supervising).
pub(crate) const CHILD_ENV: &str = "LIVEKIT_AGENTS_DEV_CHILD";

/// Why reloading cannot run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The file watcher could not start.
    #[error("cannot watch {path}: {message}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The server process could not start.
    #[error("cannot start the agent server process: {0}")]
    Launch(String),
}

/// A failed build.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BuildError(pub(crate) String);

/// Where file changes come from.
#[async_trait]
pub(crate) trait ChangeSource: Send {
    /// The next changed paths; `None` once no more can come.
    async fn next_change(&mut self) -> Option<Vec<PathBuf>>;
}

/// Rebuilds the program.
#[async_trait]
pub(crate) trait Builder: Send {
    /// Builds; the new executable is in place when this returns `Ok`.
    async fn build(&mut self) -> Result<(), BuildError>;
}

/// A running agent server.
#[async_trait]
pub(crate) trait ServerProcess: Send {
    /// Asks it to drain its jobs and stop, and waits until it did.
    async fn drain(&mut self);
    /// Resolves when it exited by itself (how, for the log).
    async fn exited(&mut self) -> String;
}

/// Starts agent servers.
pub(crate) trait Launcher: Send {
    /// Starts one from the current build.
    fn launch(&mut self) -> Result<Box<dyn ServerProcess>, ReloadError>;
}

/// Reload tuning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReloadOptions {
    /// Quiet time after a change before building (editors save in bursts).
    pub debounce: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(300),
        }
    }
}

/// What the supervisor did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReloadSummary {
    /// Builds run.
    pub builds: u32,
    /// Builds that failed (the old server kept running).
    pub failed_builds: u32,
    /// Servers started (the first included).
    pub launches: u32,
}

/// Waits for the next change and the quiet time after it; `None` when the source ended.
async fn next_batch(changes: &mut dyn ChangeSource, debounce: Duration) -> Option<Vec<PathBuf>> {
    let mut paths = changes.next_change().await?;
    loop {
        tokio::select! {
            more = changes.next_change() => match more {
                Some(more) => paths.extend(more),
                None => return Some(paths),
            },
            _ = tokio::time::sleep(debounce) => return Some(paths),
        }
    }
}

/// Runs the supervisor until `shutdown` resolves: start a server, then on each quiet batch of
/// changes build, and on success drain the old server and start a new one.
pub(crate) async fn supervise(
    changes: &mut dyn ChangeSource,
    builder: &mut dyn Builder,
    launcher: &mut dyn Launcher,
    options: ReloadOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<ReloadSummary, ReloadError> {
    tokio::pin!(shutdown);
    let mut summary = ReloadSummary::default();
    let mut server = Some(launcher.launch()?);
    summary.launches += 1;
    let mut watching = true;
    loop {
        let batch = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            batch = next_batch(changes, options.debounce), if watching => batch,
            how = async {
                match server.as_mut() {
                    Some(s) => s.exited().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::warn!(%how, "the agent server stopped; it starts again after the next successful build");
                server = None;
                continue;
            }
        };
        let Some(paths) = batch else {
            tracing::warn!("the file watcher stopped: no more reloads");
            watching = false;
            continue;
        };
        tracing::info!(
            changed = paths.len(),
            first = %paths.first().map(|p| p.display().to_string()).unwrap_or_default(),
            "sources changed: rebuilding"
        );
        summary.builds += 1;
        let built = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            built = builder.build() => built,
        };
        match built {
            Ok(()) => {
                if let Some(mut old) = server.take() {
                    tracing::info!("build done: draining the running agent server");
                    old.drain().await;
                }
                server = Some(launcher.launch()?);
                summary.launches += 1;
                tracing::info!("agent server restarted");
            }
            Err(e) => {
                summary.failed_builds += 1;
                tracing::error!(error = %e, "build failed: the running agent server stays");
            }
        }
    }
    if let Some(mut s) = server.take() {
        s.drain().await;
    }
    Ok(summary)
}

// ---- the real parts ----

/// Whether a changed path (relative to the watched directory) should trigger a rebuild: Rust
/// sources and manifests, outside `target/` and hidden directories.
pub(crate) fn is_source_change(path: &Path) -> bool {
    let relevant = match path.extension().and_then(|e| e.to_str()) {
        Some("rs") => true,
        _ => path.file_name().and_then(|n| n.to_str()) == Some("Cargo.toml"),
    };
    relevant
        && !path.components().any(|c| match c {
            std::path::Component::Normal(name) => {
                let name = name.to_string_lossy();
                name == "target" || name.starts_with('.')
            }
            _ => false,
        })
}

/// File changes from `notify`, filtered by [`is_source_change`].
pub(crate) struct NotifyChanges {
    rx: tokio::sync::mpsc::Receiver<Vec<PathBuf>>,
    _watcher: notify::RecommendedWatcher,
}

impl NotifyChanges {
    /// Watches `dirs` recursively.
    pub(crate) fn new(dirs: &[PathBuf]) -> Result<Self, ReloadError> {
        use notify::Watcher as _;
        // A full queue already holds a pending change: dropping more loses nothing.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        // Paths are judged below the watched directory (which may itself be hidden, like a
        // temporary directory).
        let roots: Vec<PathBuf> = dirs
            .iter()
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
            .collect();
        let relevant = move |path: &Path| {
            let relative = roots
                .iter()
                .find_map(|r| path.strip_prefix(r).ok())
                .unwrap_or(path);
            is_source_change(relative)
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if !matches!(
                    event.kind,
                    notify::EventKind::Create(_)
                        | notify::EventKind::Modify(_)
                        | notify::EventKind::Remove(_)
                ) {
                    return;
                }
                let paths: Vec<PathBuf> = event.paths.into_iter().filter(|p| relevant(p)).collect();
                if !paths.is_empty() {
                    let _ = tx.try_send(paths);
                }
            })
            .map_err(|e| ReloadError::Watch {
                path: dirs.first().cloned().unwrap_or_default(),
                message: e.to_string(),
            })?;
        for dir in dirs {
            watcher
                .watch(dir, notify::RecursiveMode::Recursive)
                .map_err(|e| ReloadError::Watch {
                    path: dir.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(Self {
            rx,
            _watcher: watcher,
        })
    }
}

#[async_trait]
impl ChangeSource for NotifyChanges {
    async fn next_change(&mut self) -> Option<Vec<PathBuf>> {
        self.rx.recv().await
    }
}

/// Runs a build command (`cargo build …`); its output goes to the terminal.
pub(crate) struct CommandBuilder {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) dir: Option<PathBuf>,
}

#[async_trait]
impl Builder for CommandBuilder {
    async fn build(&mut self) -> Result<(), BuildError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args).stdin(std::process::Stdio::null());
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        let status = cmd
            .status()
            .await
            .map_err(|e| BuildError(format!("cannot run {}: {e}", self.program)))?;
        if status.success() {
            Ok(())
        } else {
            Err(BuildError(format!(
                "{} {} failed ({status})",
                self.program,
                self.args.join(" ")
            )))
        }
    }
}

/// The cargo command that rebuilds the running executable `exe` of package `package`:
/// `cargo build -p PKG --bin NAME` (or `--example NAME`), `--release` for a release build.
pub(crate) fn cargo_build_args(package: &str, exe: &Path) -> Vec<String> {
    let name = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = exe.parent();
    let is_example =
        parent.and_then(|p| p.file_name()).and_then(|n| n.to_str()) == Some("examples");
    let profile_dir = if is_example {
        parent.and_then(Path::parent)
    } else {
        parent
    };
    let mut args = vec!["build".to_owned(), "-p".to_owned(), package.to_owned()];
    args.push(if is_example { "--example" } else { "--bin" }.to_owned());
    args.push(name);
    if profile_dir
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        == Some("release")
    {
        args.push("--release".to_owned());
    }
    args
}

/// Starts the server as a child process of the same executable.
pub(crate) struct ChildLauncher {
    pub(crate) exe: PathBuf,
    pub(crate) args: Vec<std::ffi::OsString>,
    /// How long a drain may take before the server is killed.
    pub(crate) drain_timeout: Duration,
}

impl Launcher for ChildLauncher {
    fn launch(&mut self) -> Result<Box<dyn ServerProcess>, ReloadError> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(&self.args)
            .env(CHILD_ENV, "1")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // Ctrl-C in the terminal goes to the supervisor only; it drains the server.
        #[cfg(unix)]
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| ReloadError::Launch(format!("{}: {e}", self.exe.display())))?;
        Ok(Box::new(ChildServer {
            child,
            drain_timeout: self.drain_timeout,
        }))
    }
}

struct ChildServer {
    child: tokio::process::Child,
    drain_timeout: Duration,
}

#[async_trait]
impl ServerProcess for ChildServer {
    async fn drain(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        #[cfg(not(unix))]
        let _ = self.child.start_kill();
        // A little more than the server's own drain bound; a second Ctrl-C ends it now.
        let limit = self.drain_timeout.saturating_add(Duration::from_secs(10));
        tokio::select! {
            _ = self.child.wait() => {}
            _ = tokio::time::sleep(limit) => {
                tracing::warn!("the agent server did not stop in time: killing it");
            }
            _ = super::shutdown_signal() => {
                tracing::warn!("second signal: killing the agent server");
            }
        }
        let _ = self.child.kill().await;
    }

    async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }
}

/// How `dev` reloads, from the environment `cargo run` sets and the `dev` flags; `None` when
/// it cannot (not started by `cargo run` and no `--build`).
pub(crate) struct ReloadPlan {
    pub(crate) builder: CommandBuilder,
    pub(crate) watch: Vec<PathBuf>,
    pub(crate) exe: PathBuf,
}

impl ReloadPlan {
    pub(crate) fn from_env(build: Option<&str>, watch: &[PathBuf]) -> Option<Self> {
        let exe = std::env::current_exe().ok()?;
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
        let builder = match build {
            Some(cmd) => {
                let mut words = cmd.split_whitespace().map(str::to_owned);
                let program = words.next()?;
                CommandBuilder {
                    program,
                    args: words.collect(),
                    dir: None,
                }
            }
            None => {
                let package = std::env::var("CARGO_PKG_NAME").ok()?;
                CommandBuilder {
                    program: std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()),
                    args: cargo_build_args(&package, &exe),
                    dir: manifest_dir.clone(),
                }
            }
        };
        let watch = if watch.is_empty() {
            vec![manifest_dir.or_else(|| std::env::current_dir().ok())?]
        } else {
            watch.to_vec()
        };
        Some(Self {
            builder,
            watch,
            exe,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use parking_lot::Mutex;
    use std::sync::Arc;

    type Log = Arc<Mutex<Vec<String>>>;

    struct ScriptedChanges(tokio::sync::mpsc::UnboundedReceiver<Vec<PathBuf>>);

    #[async_trait]
    impl ChangeSource for ScriptedChanges {
        async fn next_change(&mut self) -> Option<Vec<PathBuf>> {
            self.0.recv().await
        }
    }

    /// Builds take 5 s; results are scripted (true = success), then succeed.
    struct FakeBuilder {
        log: Log,
        results: Vec<bool>,
    }

    #[async_trait]
    impl Builder for FakeBuilder {
        async fn build(&mut self) -> Result<(), BuildError> {
            self.log.lock().push("build".into());
            tokio::time::sleep(Duration::from_secs(5)).await;
            let ok = if self.results.is_empty() {
                true
            } else {
                self.results.remove(0)
            };
            self.log
                .lock()
                .push(if ok { "built" } else { "build failed" }.into());
            if ok {
                Ok(())
            } else {
                Err(BuildError("compile error".into()))
            }
        }
    }

    /// Each server has a job that takes 2 s to drain; `crash` makes server N exit by itself.
    struct FakeLauncher {
        log: Log,
        n: u32,
        crash: Option<u32>,
    }

    struct FakeServer {
        log: Log,
        n: u32,
        crash: bool,
    }

    impl Launcher for FakeLauncher {
        fn launch(&mut self) -> Result<Box<dyn ServerProcess>, ReloadError> {
            self.n += 1;
            self.log.lock().push(format!("launch {}", self.n));
            Ok(Box::new(FakeServer {
                log: self.log.clone(),
                n: self.n,
                crash: self.crash == Some(self.n),
            }))
        }
    }

    #[async_trait]
    impl ServerProcess for FakeServer {
        async fn drain(&mut self) {
            self.log.lock().push(format!("drain {}", self.n));
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.log.lock().push(format!("drained {}", self.n));
        }
        async fn exited(&mut self) -> String {
            if self.crash {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.crash = false;
                self.log.lock().push(format!("exited {}", self.n));
                "exit status: 1".into()
            } else {
                std::future::pending().await
            }
        }
    }

    fn change(name: &str) -> Vec<PathBuf> {
        vec![PathBuf::from(format!("/src/{name}"))]
    }

    struct Run {
        log: Log,
        changes: tokio::sync::mpsc::UnboundedSender<Vec<PathBuf>>,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<ReloadSummary, ReloadError>>,
    }

    fn start(results: Vec<bool>, crash: Option<u32>) -> Run {
        let log: Log = Arc::default();
        let (changes, rx) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                let mut source = ScriptedChanges(rx);
                let mut builder = FakeBuilder {
                    log: log.clone(),
                    results,
                };
                let mut launcher = FakeLauncher { log, n: 0, crash };
                supervise(
                    &mut source,
                    &mut builder,
                    &mut launcher,
                    ReloadOptions::default(),
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await
            })
        };
        Run {
            log,
            changes,
            stop,
            task,
        }
    }

    async fn after(secs: f64) {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_rebuilds_then_drains_the_old_server_then_starts_the_new_one() {
        let run = start(vec![], None);
        after(1.0).await;
        // A burst of saves is one build.
        run.changes.send(change("a.rs")).unwrap();
        after(0.1).await;
        run.changes.send(change("b.rs")).unwrap();
        after(20.0).await;
        run.stop.send(()).unwrap();
        let summary = run.task.await.unwrap().unwrap();
        assert_eq!(
            *run.log.lock(),
            [
                "launch 1",
                "build",
                "built",
                "drain 1",
                "drained 1",
                "launch 2",
                "drain 2",
                "drained 2"
            ]
        );
        assert_eq!(
            summary,
            ReloadSummary {
                builds: 1,
                failed_builds: 0,
                launches: 2
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_build_keeps_the_old_server_and_the_next_change_retries() {
        let run = start(vec![false], None);
        after(1.0).await;
        run.changes.send(change("a.rs")).unwrap();
        after(10.0).await;
        run.changes.send(change("a.rs")).unwrap();
        after(20.0).await;
        run.stop.send(()).unwrap();
        let summary = run.task.await.unwrap().unwrap();
        assert_eq!(
            *run.log.lock(),
            [
                "launch 1",
                "build",
                "build failed",
                "build",
                "built",
                "drain 1",
                "drained 1",
                "launch 2",
                "drain 2",
                "drained 2"
            ]
        );
        assert_eq!(summary.failed_builds, 1);
        assert_eq!(summary.launches, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_during_a_build_make_one_more_build() {
        let run = start(vec![], None);
        after(1.0).await;
        run.changes.send(change("a.rs")).unwrap();
        after(2.0).await; // the build runs (5 s)
        run.changes.send(change("b.rs")).unwrap();
        run.changes.send(change("c.rs")).unwrap();
        after(30.0).await;
        run.stop.send(()).unwrap();
        let summary = run.task.await.unwrap().unwrap();
        assert_eq!(summary.builds, 2, "{:?}", run.log.lock());
        assert_eq!(summary.launches, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_exits_is_started_again_by_the_next_build() {
        let run = start(vec![], Some(1));
        after(5.0).await;
        run.changes.send(change("a.rs")).unwrap();
        after(20.0).await;
        run.stop.send(()).unwrap();
        run.task.await.unwrap().unwrap();
        assert_eq!(
            *run.log.lock(),
            [
                "launch 1",
                "exited 1",
                "build",
                "built",
                "launch 2",
                "drain 2",
                "drained 2"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_build_drains_the_running_server() {
        let run = start(vec![], None);
        after(1.0).await;
        run.changes.send(change("a.rs")).unwrap();
        after(2.0).await;
        run.stop.send(()).unwrap();
        let summary = run.task.await.unwrap().unwrap();
        assert_eq!(
            *run.log.lock(),
            ["launch 1", "build", "drain 1", "drained 1"]
        );
        assert_eq!(summary.launches, 1);
    }

    #[test]
    fn only_sources_outside_target_and_hidden_dirs_count() {
        assert!(is_source_change(Path::new("src/main.rs")));
        assert!(is_source_change(Path::new("Cargo.toml")));
        assert!(!is_source_change(Path::new("target/debug/build/x/out.rs")));
        assert!(!is_source_change(Path::new(".git/index")));
        assert!(!is_source_change(Path::new("src/.main.rs.swp")));
        assert!(!is_source_change(Path::new("README.md")));
    }

    #[test]
    fn the_build_command_follows_the_executable() {
        let bin = cargo_build_args("my-agent", Path::new("/w/target/debug/my-agent"));
        assert_eq!(bin, ["build", "-p", "my-agent", "--bin", "my-agent"]);
        let example = cargo_build_args("examples", Path::new("/w/target/release/examples/voice"));
        assert_eq!(
            example,
            ["build", "-p", "examples", "--example", "voice", "--release"]
        );
    }

    /// The real watcher on a temporary directory: a saved source file is reported, a file in
    /// `target/` is not. (Real file-system events: bounded by a timeout, not timed.)
    #[tokio::test]
    async fn the_notify_watcher_reports_source_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("target")).unwrap();
        let mut changes = NotifyChanges::new(std::slice::from_ref(&root)).unwrap();
        std::fs::write(root.join("target/generated.rs"), "// build output").unwrap();
        std::fs::write(root.join("src/lib.rs"), "pub fn f() {}").unwrap();
        let paths = tokio::time::timeout(Duration::from_secs(30), changes.next_change())
            .await
            .expect("no change reported within 30 s")
            .unwrap();
        assert!(
            paths.iter().all(|p| !p.starts_with(root.join("target"))),
            "{paths:?}"
        );
        assert!(paths.iter().any(|p| p.ends_with("src/lib.rs")), "{paths:?}");
    }
}
