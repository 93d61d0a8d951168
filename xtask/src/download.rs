//! `cargo xtask download-files`.

/// Options of `cargo xtask download-files`.
#[derive(clap::Args)]
pub struct DownloadArgs {}

/// Downloads the files every plugin in the workspace declares.
pub fn run(_args: DownloadArgs) -> anyhow::Result<()> {
    eprintln!("download-files: no plugin declares files yet");
    Ok(())
}
