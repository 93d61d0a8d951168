//! `cargo xtask download-files`: fetch every file the workspace's plugins declare (model weights,
//! the ONNX Runtime library) into the cache, verifying checksums.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use livekit_agents::download::{self, DownloadOptions, FileSpec};

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
    /// Only the files of these plugins (onnxruntime, silero, ...); repeatable.
    #[arg(long = "only")]
    pub only: Vec<String>,
    /// List the files and their URLs without downloading.
    #[arg(long)]
    pub list: bool,
}

/// Every file the workspace's plugins declare, with the declaring plugin, deduplicated.
pub fn workspace_files() -> Vec<(String, FileSpec)> {
    let mut files: Vec<(String, FileSpec)> = Vec::new();
    let mut add = |plugin: &str, specs: Vec<FileSpec>| {
        for spec in specs {
            if !files.iter().any(|(_, f)| f.file_name == spec.file_name) {
                files.push((plugin.to_owned(), spec));
            }
        }
    };
    add("onnxruntime", livekit_agents_onnx::runtime_files());
    add("silero", vec![livekit_plugins_silero::model_file()]);
    // Files registered at run time by other plugins (none in this binary unless registered).
    for (plugin, spec) in download::registered_files_by_plugin() {
        add(&plugin, vec![spec]);
    }
    files
}

/// Downloads the files every plugin in the workspace declares.
pub fn run(args: DownloadArgs) -> anyhow::Result<()> {
    let files: Vec<FileSpec> = workspace_files()
        .into_iter()
        .filter(|(plugin, _)| args.only.is_empty() || args.only.contains(plugin))
        .map(|(_, spec)| spec)
        .collect();
    let options = DownloadOptions {
        cache_dir: args.cache_dir.clone(),
        retries: args.retries,
        progress: !args.no_progress,
        force: args.force,
        initial_backoff: Duration::from_millis(500),
        ..DownloadOptions::default()
    };
    if args.list {
        let dir = options
            .cache_dir
            .clone()
            .unwrap_or_else(download::cache_dir);
        for spec in &files {
            println!(
                "{} <- {}{}",
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
    report.into_result()?;
    Ok(())
}
