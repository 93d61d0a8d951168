//! Model files: what plugins declare ([`FileSpec`]), where they live (the [cache](cache_dir)),
//! and the downloader behind `download-files` ([`download_all`]).
//!
//! A plugin that needs files (model weights, a tokenizer, the ONNX Runtime library) declares them
//! as [`FileSpec`]s: a [`Source`] (base URL, overridable by an environment variable, plus a path),
//! checksums, sizes and a license note. A file can also be a member of a zip archive (a Python
//! wheel, for example): the archive is downloaded, verified, and only the member is kept.
//!
//! `cargo xtask download-files` and the agent CLI's `download-files` subcommand call
//! [`download_all`], which fetches every file into the cache with a progress bar per file, sha256
//! verification, atomic writes (temporary file + rename), retries with exponential backoff, and
//! skips files already present and valid. At run time plugins call [`FileSpec::find_cached`],
//! whose error names the command to run.
//!
//! ```
//! use livekit_agents::download::{FileSpec, Source};
//!
//! let spec = FileSpec::new(
//!     "example/model.onnx",
//!     Source::pypi("packages/00/11/example-1.0-py3-none-any.whl"),
//! )
//! .with_sha256("1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3")
//! .with_zip_member("example/model.onnx", None, Some(1024))
//! .with_license("MIT");
//! assert!(spec.url().ends_with("/packages/00/11/example-1.0-py3-none-any.whl"));
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Environment variable overriding the cache directory.
pub const CACHE_DIR_ENV: &str = "LIVEKIT_AGENTS_CACHE";
/// Environment variable overriding the base URL of PyPI files ([`Source::pypi`]).
pub const PYPI_URL_ENV: &str = "LIVEKIT_AGENTS_PYPI_URL";
/// Default base URL of PyPI files.
pub const PYPI_DEFAULT_URL: &str = "https://files.pythonhosted.org";
/// Environment variable overriding the base URL of Hugging Face files ([`Source::hugging_face`]).
pub const HF_URL_ENV: &str = "LIVEKIT_AGENTS_HF_URL";
/// Default base URL of Hugging Face files.
pub const HF_DEFAULT_URL: &str = "https://huggingface.co";

/// The command a user runs to fill the cache, quoted in "missing file" errors.
pub const DOWNLOAD_COMMAND_HINT: &str =
    "run `cargo xtask download-files` (or your agent binary's `download-files` subcommand)";

/// The cache directory: `$LIVEKIT_AGENTS_CACHE` if set, else `<platform cache dir>/livekit-agents`
/// (`~/.cache/livekit-agents` on Linux), else `.livekit-agents-cache` in the working directory.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match dirs::cache_dir() {
            Some(dir) => dir.join("livekit-agents"),
            None => PathBuf::from(".livekit-agents-cache"),
        },
    }
}

/// Where a file is downloaded from: a base URL (overridable by an environment variable, so tests
/// and mirrors can redirect it) and a path below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Base URL used when the environment variable is unset, e.g. `https://files.pythonhosted.org`.
    pub default_base_url: String,
    /// Environment variable whose value replaces the base URL when set and non-empty.
    pub base_url_env: Option<String>,
    /// Path appended to the base URL (no leading slash needed).
    pub path: String,
}

impl Source {
    /// A file below any base URL, with an optional environment override.
    pub fn new(
        default_base_url: impl Into<String>,
        base_url_env: Option<&str>,
        path: impl Into<String>,
    ) -> Self {
        Self {
            default_base_url: default_base_url.into(),
            base_url_env: base_url_env.map(str::to_owned),
            path: path.into(),
        }
    }

    /// A file on PyPI's file host (`files.pythonhosted.org`, overridable by
    /// [`PYPI_URL_ENV`]); `path` starts with `packages/`.
    pub fn pypi(path: impl Into<String>) -> Self {
        Self::new(PYPI_DEFAULT_URL, Some(PYPI_URL_ENV), path)
    }

    /// A file on the Hugging Face hub (overridable by [`HF_URL_ENV`]); `path` is like
    /// `livekit/turn-detector/resolve/<revision>/onnx/model_q8.onnx`.
    pub fn hugging_face(path: impl Into<String>) -> Self {
        Self::new(HF_DEFAULT_URL, Some(HF_URL_ENV), path)
    }

    /// The base URL in effect (the environment override if set).
    pub fn base_url(&self) -> String {
        if let Some(var) = &self.base_url_env {
            if let Ok(value) = std::env::var(var) {
                if !value.trim().is_empty() {
                    return value.trim().to_owned();
                }
            }
        }
        self.default_base_url.clone()
    }

    /// The full URL in effect.
    pub fn url(&self) -> String {
        format!(
            "{}/{}",
            self.base_url().trim_end_matches('/'),
            self.path.trim_start_matches('/')
        )
    }
}

/// A member of a zip archive to extract (the downloaded archive itself is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipMember {
    /// Path inside the archive, e.g. `onnxruntime/capi/libonnxruntime.so.1.31.1`.
    pub path: String,
    /// Lowercase hex sha256 of the extracted member, if known.
    pub sha256: Option<String>,
    /// Size of the extracted member in bytes, if known.
    pub size: Option<u64>,
}

/// One file a plugin needs, and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Path of the file relative to the cache directory, e.g. `silero/silero_vad.onnx`.
    pub file_name: String,
    /// Where it is downloaded from.
    pub source: Source,
    /// Lowercase hex sha256 of the downloaded bytes (the archive, for a zip member), if known.
    pub sha256: Option<String>,
    /// Size of the downloaded bytes, if known.
    pub size: Option<u64>,
    /// Keep only this member of the downloaded zip archive.
    pub zip_member: Option<ZipMember>,
    /// License of the file, shown in the summary (e.g. `MIT (Silero VAD)`).
    pub license: String,
}

impl FileSpec {
    /// A file with no checksum, size, archive member or license note yet.
    pub fn new(file_name: impl Into<String>, source: Source) -> Self {
        Self {
            file_name: file_name.into(),
            source,
            sha256: None,
            size: None,
            zip_member: None,
            license: String::new(),
        }
    }

    /// Sets the sha256 (lowercase hex) of the downloaded bytes.
    pub fn with_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.sha256 = Some(sha256.into().to_ascii_lowercase());
        self
    }

    /// Sets the size of the downloaded bytes.
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Keeps only `path` of the downloaded zip archive, checking its sha256 and size if given.
    pub fn with_zip_member(
        mut self,
        path: impl Into<String>,
        sha256: Option<&str>,
        size: Option<u64>,
    ) -> Self {
        self.zip_member = Some(ZipMember {
            path: path.into(),
            sha256: sha256.map(str::to_ascii_lowercase),
            size,
        });
        self
    }

    /// Sets the license note.
    pub fn with_license(mut self, license: impl Into<String>) -> Self {
        self.license = license.into();
        self
    }

    /// The URL in effect (see [`Source::url`]).
    pub fn url(&self) -> String {
        self.source.url()
    }

    /// Where the file lives inside `cache_dir`.
    pub fn path_in(&self, cache_dir: &Path) -> PathBuf {
        cache_dir.join(&self.file_name)
    }

    /// The sha256 and size the file kept in the cache must have (the member's for an archive).
    fn final_checks(&self) -> (Option<&str>, Option<u64>) {
        match &self.zip_member {
            Some(member) => (member.sha256.as_deref(), member.size),
            None => (self.sha256.as_deref(), self.size),
        }
    }

    /// Whether the file name is a plain relative path (no `..`, not absolute).
    fn check_file_name(&self) -> Result<(), FileError> {
        let path = Path::new(&self.file_name);
        let plain = !self.file_name.is_empty()
            && path.components().all(|c| matches!(c, Component::Normal(_)));
        if plain {
            Ok(())
        } else {
            Err(FileError::InvalidSpec {
                reason: format!(
                    "file name `{}` must be a relative path without `..`",
                    self.file_name
                ),
            })
        }
    }

    /// Finds the file in the default [`cache_dir`]; see [`FileSpec::find_in`].
    pub fn find_cached(&self) -> Result<PathBuf, MissingFileError> {
        self.find_in(&cache_dir())
    }

    /// Finds the file in `cache_dir`, checking that it exists and has the declared size (a cheap
    /// check for run time; [`download_all`] verifies checksums). The error says which command
    /// fills the cache.
    pub fn find_in(&self, cache_dir: &Path) -> Result<PathBuf, MissingFileError> {
        let path = self.path_in(cache_dir);
        let (_, size) = self.final_checks();
        let problem = match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => Some("is not a regular file".to_owned()),
            Ok(meta) => match size {
                Some(size) if meta.len() != size => Some(format!(
                    "has {} bytes instead of {size} (incomplete or replaced)",
                    meta.len()
                )),
                _ => None,
            },
            Err(_) => Some("is missing".to_owned()),
        };
        match problem {
            None => Ok(path),
            Some(problem) => Err(MissingFileError {
                file_name: self.file_name.clone(),
                path,
                problem,
            }),
        }
    }
}

/// A file a plugin needs is not in the cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{file_name}` {problem} ({path}); {hint}", path = .path.display(), hint = DOWNLOAD_COMMAND_HINT)]
#[non_exhaustive]
pub struct MissingFileError {
    /// The file's name in the cache.
    pub file_name: String,
    /// Where it was looked for.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

static REGISTRY: Mutex<Vec<(String, FileSpec)>> = Mutex::new(Vec::new());

/// Declares the files `plugin` needs, so [`registered_files`] (and the CLI's `download-files`)
/// include them. Registering the same file name twice keeps the first declaration.
pub fn register_files(plugin: &str, files: impl IntoIterator<Item = FileSpec>) {
    let mut registry = REGISTRY.lock();
    for file in files {
        if !registry.iter().any(|(_, f)| f.file_name == file.file_name) {
            registry.push((plugin.to_owned(), file));
        }
    }
}

/// Every file registered with [`register_files`], in registration order.
pub fn registered_files() -> Vec<FileSpec> {
    REGISTRY.lock().iter().map(|(_, f)| f.clone()).collect()
}

/// The registered files, each with the plugin that declared it.
pub fn registered_files_by_plugin() -> Vec<(String, FileSpec)> {
    REGISTRY.lock().clone()
}

// ---------------------------------------------------------------------------------------------
// Downloader
// ---------------------------------------------------------------------------------------------

/// How [`download_all`] behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct DownloadOptions {
    /// Cache directory; `None` means [`cache_dir()`].
    pub cache_dir: Option<PathBuf>,
    /// Retries after the first attempt for network errors and HTTP 408/429/5xx (default 3).
    pub retries: u32,
    /// Wait before the first retry; doubled on each further retry (default 500 ms).
    pub initial_backoff: Duration,
    /// Upper bound of the wait between retries (default 8 s).
    pub max_backoff: Duration,
    /// TCP connect timeout (default 30 s).
    pub connect_timeout: Duration,
    /// Longest pause between two reads of a response body (default 60 s).
    pub read_timeout: Duration,
    /// Draw progress bars on stderr (default true; nothing is drawn when stderr is not a terminal).
    pub progress: bool,
    /// Download again even if a valid file is present (default false).
    pub force: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            progress: true,
            force: false,
        }
    }
}

/// Why one file could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The spec itself is unusable.
    #[error("invalid file spec: {reason}")]
    InvalidSpec {
        /// What is unusable.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    Http {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// Connecting or reading failed (after all retries).
    #[error("GET {url}: {message}")]
    Network {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The bytes do not match the declared sha256 or size.
    #[error("{what} does not match: expected {expected}, got {actual}")]
    Mismatch {
        /// What was checked, e.g. `sha256 of https://…`.
        what: String,
        /// The declared value.
        expected: String,
        /// The value found.
        actual: String,
    },
    /// The archive could not be read or lacks the member.
    #[error("archive {url}: {message}")]
    Archive {
        /// The archive URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// What happened to one file.
#[derive(Debug)]
pub enum FileStatus {
    /// Downloaded (and extracted) now.
    Downloaded {
        /// Bytes transferred, summed over attempts that reached the body.
        bytes: u64,
        /// Attempts made (1 when the first one succeeded).
        attempts: u32,
    },
    /// Already present with the right checksum (or size); not downloaded.
    AlreadyPresent,
    /// Could not be fetched.
    Failed(FileError),
}

/// The outcome for one file.
#[derive(Debug)]
pub struct FileOutcome {
    /// The spec's file name.
    pub file_name: String,
    /// Where the file is (or would be) in the cache.
    pub path: PathBuf,
    /// The spec's license note.
    pub license: String,
    /// What happened.
    pub status: FileStatus,
}

/// The result of [`download_all`]: one outcome per file, printable as a summary.
#[derive(Debug)]
pub struct DownloadReport {
    /// The cache directory used.
    pub cache_dir: PathBuf,
    /// One entry per requested file, in order.
    pub outcomes: Vec<FileOutcome>,
}

impl DownloadReport {
    /// Whether every file is now present.
    pub fn is_success(&self) -> bool {
        !self
            .outcomes
            .iter()
            .any(|o| matches!(o.status, FileStatus::Failed(_)))
    }

    /// Turns the report into an error if any file failed.
    pub fn into_result(self) -> Result<Self, DownloadError> {
        if self.is_success() {
            return Ok(self);
        }
        let failures = self
            .outcomes
            .into_iter()
            .filter_map(|outcome| match outcome.status {
                FileStatus::Failed(err) => Some((outcome.file_name, err)),
                _ => None,
            })
            .collect();
        Err(DownloadError { failures })
    }
}

impl fmt::Display for DownloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut downloaded, mut present, mut failed, mut bytes) = (0, 0, 0, 0u64);
        writeln!(f, "files in {}:", self.cache_dir.display())?;
        for o in &self.outcomes {
            let status = match &o.status {
                FileStatus::Downloaded { bytes: b, attempts } => {
                    downloaded += 1;
                    bytes += b;
                    let retried = if *attempts > 1 {
                        format!(" after {attempts} attempts")
                    } else {
                        String::new()
                    };
                    format!("downloaded ({}){retried}", human_bytes(*b))
                }
                FileStatus::AlreadyPresent => {
                    present += 1;
                    "already present".to_owned()
                }
                FileStatus::Failed(err) => {
                    failed += 1;
                    format!("FAILED: {err}")
                }
            };
            let license = if o.license.is_empty() {
                String::new()
            } else {
                format!(" [{}]", o.license)
            };
            writeln!(f, "  {:<45} {status}{license}", o.file_name)?;
        }
        write!(
            f,
            "{downloaded} downloaded ({}), {present} already present, {failed} failed",
            human_bytes(bytes)
        )
    }
}

/// Some files could not be fetched.
#[derive(Debug, thiserror::Error)]
#[error("{} file(s) could not be downloaded: {}", failures.len(), summarize_failures(failures))]
#[non_exhaustive]
pub struct DownloadError {
    /// Each failed file with its error.
    pub failures: Vec<(String, FileError)>,
}

fn summarize_failures(failures: &[(String, FileError)]) -> String {
    failures
        .iter()
        .map(|(name, err)| format!("{name}: {err}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Fetches every file in `files` into the cache (one after another), skipping those already
/// present and valid, and returns a report (print it for the summary; use
/// [`DownloadReport::into_result`] to fail on any error).
///
/// Each file: `GET` the source URL with retries and backoff (network errors and HTTP
/// 408/429/5xx are retried; other statuses and checksum mismatches are not), stream the body into
/// a temporary file next to the target while hashing it, check sha256 and size, extract the zip
/// member if any (checking its sha256 and size), then rename into place. On any failure no
/// partial file is left behind.
pub async fn download_all(files: &[FileSpec], options: &DownloadOptions) -> DownloadReport {
    let dir = options.cache_dir.clone().unwrap_or_else(cache_dir);
    let bars = MultiProgress::with_draw_target(if options.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let client = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .user_agent(concat!("livekit-agents-rs/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut outcomes = Vec::with_capacity(files.len());
    for spec in files {
        let status = match &client {
            Ok(client) => fetch_one(client, spec, &dir, options, &bars).await,
            Err(err) => FileStatus::Failed(FileError::Network {
                url: spec.url(),
                message: format!("cannot build HTTP client: {err}"),
            }),
        };
        if let FileStatus::Failed(err) = &status {
            tracing::warn!(file = %spec.file_name, error = %err, "download failed");
        }
        outcomes.push(FileOutcome {
            file_name: spec.file_name.clone(),
            path: spec.path_in(&dir),
            license: spec.license.clone(),
            status,
        });
    }
    DownloadReport {
        cache_dir: dir,
        outcomes,
    }
}

async fn fetch_one(
    client: &reqwest::Client,
    spec: &FileSpec,
    dir: &Path,
    options: &DownloadOptions,
    bars: &MultiProgress,
) -> FileStatus {
    if let Err(err) = spec.check_file_name() {
        return FileStatus::Failed(err);
    }
    let target = spec.path_in(dir);
    if !options.force {
        let check_spec = spec.clone();
        let check_target = target.clone();
        let valid =
            tokio::task::spawn_blocking(move || is_valid_file(&check_target, &check_spec)).await;
        if matches!(valid, Ok(true)) {
            return FileStatus::AlreadyPresent;
        }
    }
    let bar = bars.add(ProgressBar::new(spec.size.unwrap_or(0)));
    bar.set_style(progress_style());
    bar.set_message(spec.file_name.clone());
    let result = fetch_with_retries(client, spec, &target, options, &bar).await;
    match &result {
        Ok(_) => bar.finish_with_message(format!("{} ok", spec.file_name)),
        Err(_) => bar.abandon_with_message(format!("{} failed", spec.file_name)),
    }
    match result {
        Ok((bytes, attempts)) => FileStatus::Downloaded { bytes, attempts },
        Err(err) => FileStatus::Failed(err),
    }
}

fn progress_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg:40!} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// Whether `target` exists and matches the spec's final checksum (or, without one, its size;
/// without either, whether it is non-empty).
fn is_valid_file(target: &Path, spec: &FileSpec) -> bool {
    let (sha256, size) = spec.final_checks();
    let Ok(meta) = std::fs::metadata(target) else {
        return false;
    };
    if !meta.is_file() || size.is_some_and(|s| s != meta.len()) {
        return false;
    }
    match sha256 {
        Some(expected) => match sha256_of_file(target) {
            Ok(actual) => actual == expected,
            Err(_) => false,
        },
        // Without a checksum of the kept file, a size match is all we can check. With neither
        // (files whose checksums cannot be pinned, like the turn detector's), a present file is
        // complete: downloads only ever appear by an atomic rename of a finished temp file.
        None => size.is_some() || meta.len() > 0,
    }
}

fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A temporary file removed on drop unless persisted.
struct TempFile {
    path: Option<PathBuf>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    fn next_to(target: &Path, tag: &str) -> Self {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!(".{name}.{tag}.{}.{n}.part", std::process::id());
        Self {
            path: Some(target.with_file_name(temp_name)),
        }
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    fn persist(mut self, target: &Path) -> Result<(), FileError> {
        let Some(path) = self.path.take() else {
            return Err(FileError::InvalidSpec {
                reason: "temporary file already used".into(),
            });
        };
        std::fs::rename(&path, target).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            FileError::io(format!("cannot move file into {}", target.display()), e)
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A failed attempt, and whether trying again may help.
struct AttemptError {
    error: FileError,
    retryable: bool,
}

async fn fetch_with_retries(
    client: &reqwest::Client,
    spec: &FileSpec,
    target: &Path,
    options: &DownloadOptions,
    bar: &ProgressBar,
) -> Result<(u64, u32), FileError> {
    let parent = target.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| FileError::io(format!("cannot create {}", parent.display()), e))?;
    let url = spec.url();
    let mut total_bytes = 0u64;
    let mut attempt = 0u32;
    let download = loop {
        attempt += 1;
        let temp = TempFile::next_to(target, "download");
        match download_once(client, &url, &temp, bar, &mut total_bytes).await {
            Ok(digest) => break (temp, digest),
            Err(AttemptError { error, retryable }) => {
                drop(temp);
                if !retryable || attempt > options.retries {
                    return Err(error);
                }
                let backoff = options
                    .initial_backoff
                    .saturating_mul(1u32 << (attempt - 1).min(16))
                    .min(options.max_backoff);
                tracing::info!(%url, attempt, error = %error, ?backoff, "download failed, retrying");
                bar.set_message(format!("{} (retry {attempt})", spec.file_name));
                tokio::time::sleep(backoff).await;
            }
        }
    };
    let (temp, (sha256, size)) = download;
    check_value(&format!("size of {url}"), spec.size.as_ref(), &size)?;
    check_value(
        &format!("sha256 of {url}"),
        spec.sha256.as_deref(),
        sha256.as_str(),
    )?;

    match &spec.zip_member {
        None => {
            let target = target.to_path_buf();
            tokio::task::spawn_blocking(move || temp.persist(&target))
                .await
                .map_err(|e| FileError::io("persist task failed", std::io::Error::other(e)))??;
        }
        Some(member) => {
            let member = member.clone();
            let target = target.to_path_buf();
            let url = url.clone();
            tokio::task::spawn_blocking(move || extract_member(temp, &url, &member, &target))
                .await
                .map_err(|e| FileError::io("extract task failed", std::io::Error::other(e)))??;
        }
    }
    Ok((total_bytes, attempt))
}

fn check_value<T: PartialEq + fmt::Display + ?Sized>(
    what: &str,
    expected: Option<&T>,
    actual: &T,
) -> Result<(), FileError> {
    match expected {
        Some(expected) if expected != actual => Err(FileError::Mismatch {
            what: what.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// One GET into `temp`; returns the sha256 and size of the body.
async fn download_once(
    client: &reqwest::Client,
    url: &str,
    temp: &TempFile,
    bar: &ProgressBar,
    total_bytes: &mut u64,
) -> Result<(String, u64), AttemptError> {
    let network = |e: reqwest::Error| AttemptError {
        error: FileError::Network {
            url: url.to_owned(),
            message: error_chain(&e),
        },
        retryable: true,
    };
    let mut response = client.get(url).send().await.map_err(network)?;
    let status = response.status();
    if !status.is_success() {
        let code = status.as_u16();
        return Err(AttemptError {
            error: FileError::Http {
                url: url.to_owned(),
                status: code,
            },
            retryable: code == 408 || code == 429 || status.is_server_error(),
        });
    }
    // Read before the body: afterwards `content_length` reports what is left (zero).
    let announced_len = response.content_length();
    if let Some(len) = announced_len {
        bar.set_length(len);
    }
    bar.set_position(0);
    let io_error = |context: &str, e: std::io::Error| AttemptError {
        error: FileError::io(format!("{context} {}", temp.path().display()), e),
        retryable: false,
    };
    let mut file = tokio::fs::File::create(temp.path())
        .await
        .map_err(|e| io_error("cannot create", e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| io_error("cannot write", e))?;
        size += chunk.len() as u64;
        *total_bytes += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    file.sync_all()
        .await
        .map_err(|e| io_error("cannot sync", e))?;
    if let Some(expected) = announced_len {
        if expected != size {
            return Err(AttemptError {
                error: FileError::Network {
                    url: url.to_owned(),
                    message: format!("body ended after {size} of {expected} bytes"),
                },
                retryable: true,
            });
        }
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

/// Extracts `member` from the downloaded archive into `target` (atomically), checking it.
fn extract_member(
    archive: TempFile,
    url: &str,
    member: &ZipMember,
    target: &Path,
) -> Result<(), FileError> {
    let archive_error = |message: String| FileError::Archive {
        url: url.to_owned(),
        message,
    };
    let file = std::fs::File::open(archive.path())
        .map_err(|e| FileError::io("cannot reopen downloaded archive", e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| archive_error(format!("not a readable zip archive: {e}")))?;
    let mut entry = zip
        .by_name(&member.path)
        .map_err(|e| archive_error(format!("member `{}`: {e}", member.path)))?;
    let out_temp = TempFile::next_to(target, "extract");
    let mut out = std::fs::File::create(out_temp.path())
        .map_err(|e| FileError::io(format!("cannot create {}", out_temp.path().display()), e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| archive_error(format!("member `{}`: {e}", member.path)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| FileError::io(format!("cannot write {}", out_temp.path().display()), e))?;
        size += n as u64;
    }
    out.sync_all()
        .map_err(|e| FileError::io(format!("cannot sync {}", out_temp.path().display()), e))?;
    drop(out);
    let sha256 = hex::encode(hasher.finalize());
    let what = format!("{} in {url}", member.path);
    check_value(&format!("size of {what}"), member.size.as_ref(), &size)?;
    check_value(
        &format!("sha256 of {what}"),
        member.sha256.as_deref(),
        sha256.as_str(),
    )?;
    out_temp.persist(target)?;
    drop(archive);
    Ok(())
}

#[cfg(test)]
mod tests;
