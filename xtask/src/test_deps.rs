//! `cargo xtask install-test-deps`: the packages some tests run against, from their registries,
//! at pinned versions, into `.test-deps/` at the workspace root (git-ignored).
//!
//! - npm `@modelcontextprotocol/server-everything` (the MCP reference test server), for
//!   `crates/livekit-agents/tests/mcp.rs`; needs Node.js and npm on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The MCP reference server, pinned.
pub const MCP_EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";

/// Options of `cargo xtask install-test-deps`.
#[derive(clap::Args)]
pub struct TestDepsArgs {
    /// Install again even if present.
    #[arg(long)]
    pub force: bool,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Installs the test packages (skipping those already present unless `force`).
pub fn run(args: TestDepsArgs) -> anyhow::Result<()> {
    let dir = workspace_root().join(".test-deps/mcp");
    let marker = dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if marker.exists() && !args.force {
        eprintln!("{MCP_EVERYTHING}: already in {}", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("installing {MCP_EVERYTHING} into {}", dir.display());
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(MCP_EVERYTHING)
        .status()
        .context("could not run npm (the MCP tests need Node.js and npm installed)")?;
    if !status.success() || !marker.exists() {
        bail!("npm install {MCP_EVERYTHING} failed ({status})");
    }
    Ok(())
}
