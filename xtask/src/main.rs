//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: everything CI checks (format, lints, tests, docs, the room feature type-check).
//! - `download-files`: fetch the model files and ONNX Runtime the plugins need.
//! - `bench`: benchmarks (`sessions`, `vad`, `turn-detector`).
//! - `install-test-deps`: the npm packages some tests run against (into `.test-deps/`).
//! - `public-api`: compare the core's public API with its committed snapshot (`--bless`).

mod bench;
mod ci;
mod download;
mod public_api;
mod test_deps;

use clap::{Parser, Subcommand};

/// Counts allocations for `cargo xtask bench vad` (allocations per audio frame); costs one
/// relaxed atomic load per allocation when not counting.
#[global_allocator]
static ALLOCATOR: bench::alloc_count::Counting = bench::alloc_count::Counting;

#[derive(Parser)]
#[command(name = "xtask", about = "livekit-agents project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every CI check: fmt, clippy, tests, docs, room-feature type-check.
    Ci(ci::CiArgs),
    /// Download model files and the ONNX Runtime library into the cache.
    DownloadFiles(download::DownloadArgs),
    /// Run a benchmark.
    Bench(bench::BenchArgs),
    /// Install the packages some tests run against (npm MCP reference server) into .test-deps/.
    InstallTestDeps(test_deps::TestDepsArgs),
    /// Compare livekit-agents' public API with crates/livekit-agents/public-api.txt.
    PublicApi(public_api::PublicApiArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ci(args) => ci::run(args),
        Command::DownloadFiles(args) => download::run(args),
        Command::Bench(args) => bench::run(args),
        Command::InstallTestDeps(args) => test_deps::run(args),
        Command::PublicApi(args) => public_api::run(args),
    }
}
