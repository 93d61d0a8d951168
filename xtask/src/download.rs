//! `cargo xtask download-files`: fetch every file the workspace's plugins declare (model weights,
//! the ONNX Runtime library) into the cache, verifying checksums.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use livekit_agents::download::{self, DownloadOptions, FileSpec, FileStatus};

/// Options of `cargo xtask download-files`.
#[derive(clap::Args)]
pub struct DownloadArgs {
    /// Cache directory (default: $LIVEKIT_AGENTS_CACHE, else the platform cache dir).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Download again even if a valid file is present.
    #[arg(long)]
    pub force: bool,
    /// Retries per file after the first attempt.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Only the files of these plugins (onnxruntime, silero, turn-detector); repeatable.
    #[arg(long = "only")]
    pub only: Vec<String>,
    /// List the files and their URLs without downloading.
    #[arg(long)]
    pub list: bool,
    /// Fail when optional files (the turn detector's, from Hugging Face) cannot be fetched.
    #[arg(long)]
    pub strict: bool,
}

/// A file to fetch, who declares it, and whether failing to fetch it fails the command.
pub struct WorkspaceFile {
    /// The declaring plugin (`onnxruntime`, `silero`, `turn-detector`, ...).
    pub plugin: String,
    /// The file.
    pub spec: FileSpec,
    /// Required files fail the command; optional ones only warn. The turn detector's weights
    /// live on Hugging Face, which some build machines (and CI here) cannot reach, and no test
    /// needs them (tests use a generated model).
    pub required: bool,
}

/// Every file the workspace's plugins declare, deduplicated (first declaration wins).
pub fn workspace_files() -> Vec<WorkspaceFile> {
    let mut files: Vec<WorkspaceFile> = Vec::new();
    let mut add = |plugin: &str, specs: Vec<FileSpec>, required: bool| {
        for spec in specs {
            if !files.iter().any(|f| f.spec.file_name == spec.file_name) {
                files.push(WorkspaceFile {
                    plugin: plugin.to_owned(),
                    spec,
                    required,
                });
            }
        }
    };
    add("onnxruntime", livekit_agents_onnx::runtime_files(), true);
    add("silero", vec![livekit_plugins_silero::model_file()], true);
    add(
        livekit_plugins_turn_detector::files::PLUGIN_NAME,
        livekit_plugins_turn_detector::files::all_files(),
        false,
    );
    // Anything else registered in this process.
    for (plugin, spec) in download::registered_files_by_plugin() {
        add(&plugin, vec![spec], true);
    }
    files
}

/// Downloads the files every plugin in the workspace declares.
pub fn run(args: DownloadArgs) -> anyhow::Result<()> {
    let selected: Vec<WorkspaceFile> = workspace_files()
        .into_iter()
        .filter(|f| args.only.is_empty() || args.only.contains(&f.plugin))
        .collect();
    let files: Vec<FileSpec> = selected.iter().map(|f| f.spec.clone()).collect();
    let mut options = DownloadOptions::default()
        .with_retries(args.retries)
        .with_progress(!args.no_progress)
        .with_force(args.force)
        .with_initial_backoff(Duration::from_millis(500));
    options.cache_dir = args.cache_dir.clone();
    if args.list {
        let dir = options
            .cache_dir
            .clone()
            .unwrap_or_else(download::cache_dir);
        for (spec, file) in files.iter().zip(&selected) {
            println!(
                "[{}{}] {} <- {}{}",
                file.plugin,
                if file.required { "" } else { ", optional" },
                spec.path_in(&dir).display(),
                spec.url(),
                spec.zip_member
                    .as_ref()
                    .map(|m| format!(" (member {})", m.path))
                    .unwrap_or_default()
            );
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(download::download_all(&files, &options));
    eprintln!("{report}");
    let mut required_failures = 0;
    let mut optional_failures: Vec<&str> = Vec::new();
    for (file, outcome) in selected.iter().zip(&report.outcomes) {
        if matches!(outcome.status, FileStatus::Failed(_)) {
            if file.required || args.strict {
                required_failures += 1;
            } else if !optional_failures.contains(&file.plugin.as_str()) {
                optional_failures.push(&file.plugin);
            }
        }
    }
    if !optional_failures.is_empty() {
        eprintln!(
            "warning: optional files of {} could not be downloaded (see above); \
             the plugins that need them will report it when loaded (use --strict to fail here)",
            optional_failures.join(", ")
        );
    }
    if required_failures > 0 {
        report.into_result()?;
    }
    Ok(())
}
