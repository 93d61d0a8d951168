//! ONNX Runtime provisioning and shared sessions for livekit-agents plugins.
//!
//! The `ort` crate is built with `load-dynamic`: nothing is linked at build time and the ONNX
//! Runtime shared library is loaded when the process first needs it. This crate finds that
//! library without the user setting anything:
//!
//! 1. `ORT_DYLIB_PATH`, if set (it must point at an existing file);
//! 2. the project cache, where `download-files` puts the library extracted from PyPI's
//!    `onnxruntime` wheel ([`runtime_files`]);
//! 3. a system library (`libonnxruntime.so` / `.dylib` / `onnxruntime.dll` on the loader path).
//!
//! If none works, [`ensure_runtime`] returns [`OnnxError::RuntimeNotFound`], whose message names
//! the command to run.
//!
//! Plugins then build sessions with [`build_session`] or share a model between every stream of
//! the process with a [`SessionPool`]. Inference longer than a fraction of a millisecond
//! belongs off the async runtime's threads: [`run_blocking`].
//!
//! ```no_run
//! use livekit_agents_onnx::{ensure_runtime, SessionOptions, SessionPool};
//!
//! # fn main() -> Result<(), livekit_agents_onnx::OnnxError> {
//! ensure_runtime()?; // once per process; later calls return the cached outcome
//! let pool = SessionPool::load("model.onnx".as_ref(), SessionOptions::default())?;
//! let mut session = pool.get()?; // exclusive use of one session until dropped
//! println!("inputs: {:?}", session.inputs().iter().map(|i| i.name()).collect::<Vec<_>>());
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use livekit_agents::download::{FileSpec, Source, DOWNLOAD_COMMAND_HINT};
use parking_lot::{Condvar, Mutex};

pub use ort;
use ort::environment::Environment;
use ort::session::Session;

/// The ONNX Runtime version [`runtime_files`] provisions.
pub const ORT_VERSION: &str = "1.31.1";

/// Environment variable naming the ONNX Runtime library to load (honoured first).
pub const ORT_DYLIB_PATH_ENV: &str = "ORT_DYLIB_PATH";

/// Why the runtime, a model or an inference failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnnxError {
    /// No ONNX Runtime library was found.
    #[error("ONNX Runtime library not found (looked at: {}); {hint}", searched.join("; "), hint = DOWNLOAD_COMMAND_HINT)]
    RuntimeNotFound {
        /// Each place looked at, with what was wrong there.
        searched: Vec<String>,
    },
    /// A library was found but could not be loaded or initialised.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    RuntimeLoad {
        /// The library path.
        path: String,
        /// The loader's message.
        message: String,
    },
    /// The model file could not be read or ONNX Runtime rejected it.
    #[error("cannot load model {path}: {message}")]
    Model {
        /// The model path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Configuring a session failed.
    #[error("cannot configure ONNX Runtime session: {0}")]
    Session(String),
    /// Running the model failed or it returned something unexpected.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl OnnxError {
    /// Wraps any error as [`OnnxError::Inference`].
    pub fn inference(err: impl std::fmt::Display) -> Self {
        Self::Inference(err.to_string())
    }
}

/// The ONNX Runtime library file for `os` and `arch` (values of `std::env::consts::{OS, ARCH}`),
/// extracted from the PyPI `onnxruntime` wheel, or `None` if no wheel is pinned for the platform.
pub fn runtime_file_for(os: &str, arch: &str) -> Option<FileSpec> {
    // (wheel path on files.pythonhosted.org, wheel sha256, wheel size,
    //  library inside the wheel, library sha256, library size)
    let (wheel, wheel_sha, wheel_size, member, member_sha, member_size) = match (os, arch) {
        ("linux", "x86_64") => (
            "packages/b4/1d/0f85ee31a3d93f2243a5cc29252becf858f53ac5cfa6c9c15d9ffe107eea/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
            "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
            23_753_652,
            "onnxruntime/capi/libonnxruntime.so.1.31.1",
            "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
            29_352_200,
        ),
        ("linux", "aarch64") => (
            "packages/02/ee/b173a49293b146b54bd057bf8681a015aef764d8f56d999ad8c6e53ab18d/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl",
            "da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3",
            21_413_526,
            "onnxruntime/capi/libonnxruntime.so.1.31.1",
            "8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467",
            25_265_040,
        ),
        ("macos", "aarch64") => (
            "packages/fa/44/e9e04a60f726d16ba3abe30ab267e1569e061f7f6f0e175ee103661e1780/onnxruntime-1.31.1-cp311-cp311-macosx_14_0_arm64.whl",
            "60b6b69bfe580eab576cacc5d132a0e9cf2a37fcfd18d46dd191042b1d1ed0d7",
            20_871_676,
            "onnxruntime/capi/libonnxruntime.1.31.1.dylib",
            "f8b06155feece624e55e49124340eea279da812529ae6fbc46a9f2be9c9cad2e",
            33_037_336,
        ),
        ("windows", "x86_64") => (
            "packages/69/82/2e2bf967ade9567d77c307533566ef56a19c32e2114fc062a405703def88/onnxruntime-1.31.1-cp311-cp311-win_amd64.whl",
            "c3d91b5de31e2fc82d71bd65b2b22bddee8b49057a3a36338e9a868e0ea90c05",
            14_885_761,
            "onnxruntime/capi/onnxruntime.dll",
            "8482d2ee174e28504f99730fb01d6861575870283de4ed3a897ad39170d9a9b9",
            19_288_888,
        ),
        _ => return None,
    };
    let library = member.rsplit('/').next().unwrap_or(member);
    Some(
        FileSpec::new(
            format!("onnxruntime/{ORT_VERSION}/{os}-{arch}/{library}"),
            Source::pypi(wheel),
        )
        .with_sha256(wheel_sha)
        .with_size(wheel_size)
        .with_zip_member(member, Some(member_sha), Some(member_size))
        .with_license("MIT (ONNX Runtime, Microsoft)"),
    )
}

/// The files the host platform needs for ONNX Runtime (empty where no wheel is pinned; such
/// hosts use `ORT_DYLIB_PATH` or a system library).
pub fn runtime_files() -> Vec<FileSpec> {
    runtime_file_for(std::env::consts::OS, std::env::consts::ARCH)
        .into_iter()
        .collect()
}

/// Declares [`runtime_files`] in the core download registry under the name `onnxruntime`.
pub fn register_files() {
    livekit_agents::download::register_files("onnxruntime", runtime_files());
}

static ENVIRONMENT: OnceLock<Result<Environment, OnnxError>> = OnceLock::new();

/// Finds and loads ONNX Runtime and creates the process-wide environment, once per process.
/// Later calls return the first call's outcome.
pub fn ensure_runtime() -> Result<(), OnnxError> {
    environment().map(|_| ())
}

/// The process-wide ONNX Runtime environment (loading the runtime on first use).
pub fn environment() -> Result<&'static Environment, OnnxError> {
    ENVIRONMENT
        .get_or_init(init_environment)
        .as_ref()
        .map_err(Clone::clone)
}

/// The library path the runtime was loaded from, once loaded.
pub fn loaded_runtime_path() -> Option<&'static str> {
    LOADED_FROM.get().map(String::as_str)
}

static LOADED_FROM: OnceLock<String> = OnceLock::new();

fn init_environment() -> Result<Environment, OnnxError> {
    let (path, builder) = load_library()?;
    let environment =
        builder
            .with_name("livekit-agents")
            .build()
            .map_err(|e| OnnxError::RuntimeLoad {
                path: path.clone(),
                message: e.to_string(),
            })?;
    tracing::info!(library = %path, "ONNX Runtime loaded");
    let _ = LOADED_FROM.set(path);
    Ok(environment)
}

/// Tries `ORT_DYLIB_PATH`, the cache, then the system library.
fn load_library() -> Result<(String, ort::environment::EnvironmentBuilder), OnnxError> {
    let load = |path: &Path| {
        ort::init_from(path).map_err(|e| OnnxError::RuntimeLoad {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let mut searched = Vec::new();

    match std::env::var_os(ORT_DYLIB_PATH_ENV) {
        Some(value) if !value.is_empty() => {
            let path = PathBuf::from(value);
            // An explicit choice that does not work is an error, not a reason to look elsewhere.
            if !path.exists() {
                return Err(OnnxError::RuntimeLoad {
                    path: path.display().to_string(),
                    message: format!("{ORT_DYLIB_PATH_ENV} points at a file that does not exist"),
                });
            }
            return load(&path).map(|b| (path.display().to_string(), b));
        }
        _ => searched.push(format!("${ORT_DYLIB_PATH_ENV} (unset)")),
    }

    let files = runtime_files();
    if files.is_empty() {
        searched.push(format!(
            "the cache (no ONNX Runtime download is pinned for {}-{})",
            std::env::consts::OS,
            std::env::consts::ARCH
        ));
    }
    for file in &files {
        match file.find_cached() {
            Ok(path) => return load(&path).map(|b| (path.display().to_string(), b)),
            Err(missing) => {
                searched.push(format!("{} ({})", missing.path.display(), missing.problem))
            }
        }
    }

    let system = format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    match ort::init_from(&system) {
        Ok(builder) => Ok((system, builder)),
        Err(err) => {
            searched.push(format!("system library {system} ({err})"));
            Err(OnnxError::RuntimeNotFound { searched })
        }
    }
}

/// How sessions are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// Threads used inside one operator (default 1: the calling thread, no pool).
    pub intra_op_threads: usize,
    /// Threads running independent operators (default 1).
    pub inter_op_threads: usize,
    /// Most sessions a [`SessionPool`] creates, i.e. how many inferences run at once (default:
    /// the number of CPUs, at most 8). Sessions are created on demand.
    pub max_sessions: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            intra_op_threads: 1,
            inter_op_threads: 1,
            max_sessions: cpus.clamp(1, 8),
        }
    }
}

/// Builds a CPU session for the model at `model_path` (loading the runtime if needed).
///
/// Options match the reference plugins: sequential execution, no thread spinning (spinning
/// burns CPU between the short inferences of a realtime stream).
pub fn build_session(model_path: &Path, options: &SessionOptions) -> Result<Session, OnnxError> {
    let bytes = std::fs::read(model_path).map_err(|e| OnnxError::Model {
        path: model_path.to_path_buf(),
        message: e.to_string(),
    })?;
    build_session_from_memory(model_path, &bytes, options)
}

fn build_session_from_memory(
    model_path: &Path,
    bytes: &[u8],
    options: &SessionOptions,
) -> Result<Session, OnnxError> {
    let env = environment()?;
    let config =
        |e: ort::Error<ort::session::builder::SessionBuilder>| OnnxError::Session(e.to_string());
    Session::builder(env)
        .map_err(|e| OnnxError::Session(e.to_string()))?
        .with_intra_threads(options.intra_op_threads.max(1))
        .map_err(config)?
        .with_inter_threads(options.inter_op_threads.max(1))
        .map_err(config)?
        .with_parallel_execution(false)
        .map_err(config)?
        .with_intra_op_spinning(false)
        .map_err(config)?
        .with_inter_op_spinning(false)
        .map_err(config)?
        .commit_from_memory(bytes)
        .map_err(|e| OnnxError::Model {
            path: model_path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Checks that a session has the named inputs and outputs (a wrong model file gives a clear
/// error instead of a failed inference later).
pub fn check_signature(
    session: &Session,
    model_path: &Path,
    inputs: &[&str],
    outputs: &[&str],
) -> Result<(), OnnxError> {
    let has_input = |name: &&str| session.inputs().iter().any(|i| i.name() == *name);
    let has_output = |name: &&str| session.outputs().iter().any(|o| o.name() == *name);
    let missing: Vec<String> = inputs
        .iter()
        .filter(|n| !has_input(n))
        .map(|n| format!("input `{n}`"))
        .chain(
            outputs
                .iter()
                .filter(|n| !has_output(n))
                .map(|n| format!("output `{n}`")),
        )
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(OnnxError::Model {
            path: model_path.to_path_buf(),
            message: format!("not the expected model: missing {}", missing.join(", ")),
        })
    }
}

/// One model loaded once and shared by every stream of the process.
///
/// `ort` sessions need exclusive access to run, so the pool hands out sessions one caller at a
/// time ([`SessionPool::get`]) and creates more (from the same in-memory model bytes) when all
/// are busy, up to [`SessionOptions::max_sessions`]; beyond that callers wait. Per-stream state
/// (recurrent state, context) belongs to the caller, not to the session.
pub struct SessionPool {
    model_path: PathBuf,
    model_bytes: Arc<[u8]>,
    options: SessionOptions,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    created: usize,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SessionPool")
            .field("model_path", &self.model_path)
            .field("options", &self.options)
            .field("created", &state.created)
            .field("idle", &state.idle.len())
            .finish()
    }
}

impl SessionPool {
    /// Reads the model, loads the runtime if needed, and creates the first session (so a bad
    /// model fails here, not at the first inference).
    pub fn load(model_path: &Path, options: SessionOptions) -> Result<Self, OnnxError> {
        let bytes = std::fs::read(model_path).map_err(|e| OnnxError::Model {
            path: model_path.to_path_buf(),
            message: e.to_string(),
        })?;
        let first = build_session_from_memory(model_path, &bytes, &options)?;
        Ok(Self {
            model_path: model_path.to_path_buf(),
            model_bytes: bytes.into(),
            options,
            state: Mutex::new(PoolState {
                idle: vec![first],
                created: 1,
            }),
            returned: Condvar::new(),
        })
    }

    /// The model file this pool was loaded from.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Sessions created so far.
    pub fn sessions_created(&self) -> usize {
        self.state.lock().created
    }

    /// Takes a session for exclusive use; it returns to the pool when the guard drops. Blocks
    /// while all [`SessionOptions::max_sessions`] sessions are in use. Holders only run an
    /// inference (they never wait on anything else while holding a session), so that wait is
    /// bounded by one inference: short single inferences may run on an async task, longer work
    /// belongs on the blocking pool (see [`run_blocking`]).
    pub fn get(&self) -> Result<PooledSession<'_>, OnnxError> {
        let mut state = self.state.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(PooledSession {
                    pool: self,
                    session: Some(session),
                });
            }
            if state.created < self.options.max_sessions.max(1) {
                state.created += 1;
                drop(state);
                return match build_session_from_memory(
                    &self.model_path,
                    &self.model_bytes,
                    &self.options,
                ) {
                    Ok(session) => Ok(PooledSession {
                        pool: self,
                        session: Some(session),
                    }),
                    Err(err) => {
                        self.state.lock().created -= 1;
                        Err(err)
                    }
                };
            }
            self.returned.wait(&mut state);
        }
    }

    /// Creates the sessions not created yet, up to [`SessionOptions::max_sessions`], and runs
    /// `warm` once on each (e.g. one inference on zeros), so a realtime stream's first
    /// inferences neither build a session (tens of milliseconds) nor pay ONNX Runtime's
    /// first-run allocations. Call it once after [`SessionPool::load`], before the pool is
    /// shared.
    pub fn prewarm(
        &self,
        mut warm: impl FnMut(&mut Session) -> Result<(), OnnxError>,
    ) -> Result<(), OnnxError> {
        let mut sessions = Vec::with_capacity(self.options.max_sessions.max(1));
        for _ in 0..self.options.max_sessions.max(1) {
            // Holding every guard makes the next `get` create a new session.
            sessions.push(self.get()?);
        }
        for session in &mut sessions {
            warm(session)?;
        }
        Ok(())
    }

    /// The first session's inputs and outputs as `(name, type)` strings, for diagnostics.
    pub fn signature(&self) -> Result<Vec<String>, OnnxError> {
        let session = self.get()?;
        Ok(session
            .inputs()
            .iter()
            .map(|i| format!("input {} {}", i.name(), i.dtype()))
            .chain(
                session
                    .outputs()
                    .iter()
                    .map(|o| format!("output {} {}", o.name(), o.dtype())),
            )
            .collect())
    }
}

/// A session borrowed from a [`SessionPool`]; dereferences to [`Session`].
pub struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
}

impl std::ops::Deref for PooledSession<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        // Invariant: `session` is `Some` until `drop`.
        match &self.session {
            Some(session) => session,
            None => unreachable!("pooled session used after drop"),
        }
    }
}

impl std::ops::DerefMut for PooledSession<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        match &mut self.session {
            Some(session) => session,
            None => unreachable!("pooled session used after drop"),
        }
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.state.lock().idle.push(session);
            self.pool.returned.notify_one();
        }
    }
}

/// Runs `f` on tokio's blocking pool (inference must not stall the async runtime's threads).
pub async fn run_blocking<R, F>(f: F) -> Result<R, OnnxError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OnnxError::Inference(format!("inference task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_files_are_pinned_for_common_platforms() {
        for (os, arch, suffix) in [
            ("linux", "x86_64", "libonnxruntime.so.1.31.1"),
            ("linux", "aarch64", "libonnxruntime.so.1.31.1"),
            ("macos", "aarch64", "libonnxruntime.1.31.1.dylib"),
            ("windows", "x86_64", "onnxruntime.dll"),
        ] {
            let spec = runtime_file_for(os, arch).unwrap();
            assert!(spec.file_name.ends_with(suffix), "{}", spec.file_name);
            assert!(spec.file_name.starts_with("onnxruntime/1.31.1/"));
            assert!(spec.url().contains("onnxruntime-1.31.1-"), "{}", spec.url());
            let member = spec.zip_member.as_ref().unwrap();
            assert_eq!(member.sha256.as_ref().unwrap().len(), 64);
            assert_eq!(spec.sha256.as_ref().unwrap().len(), 64);
            assert!(member.size.is_some() && spec.size.is_some());
        }
        assert!(runtime_file_for("freebsd", "x86_64").is_none());
    }

    #[test]
    fn missing_runtime_error_names_the_command() {
        let err = OnnxError::RuntimeNotFound {
            searched: vec!["$ORT_DYLIB_PATH (unset)".into()],
        };
        let text = err.to_string();
        assert!(text.contains("cargo xtask download-files"), "{text}");
        assert!(text.contains("ORT_DYLIB_PATH"), "{text}");
    }

    #[test]
    fn default_options_use_one_intra_op_thread() {
        let options = SessionOptions::default();
        assert_eq!(options.intra_op_threads, 1);
        assert_eq!(options.inter_op_threads, 1);
        assert!(options.max_sessions >= 1 && options.max_sessions <= 8);
    }
}
