//! Runs the turn detector benchmark (what `cargo xtask bench turn-detector` reports):
//!
//! ```text
//! cargo run --release -p livekit-plugins-turn-detector --example bench -- [en|multilingual] [model dir] [iterations]
//! ```
//!
//! Without a folder it uses the downloaded model, else the tiny test model in `testdata/`.

use livekit_plugins_turn_detector::bench::{self, BenchOptions};
use livekit_plugins_turn_detector::ModelKind;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let kind = match args.next().as_deref() {
        None | Some("multilingual") => ModelKind::Multilingual,
        Some("en") | Some("english") => ModelKind::English,
        Some(other) => return Err(format!("unknown model `{other}` (en | multilingual)").into()),
    };
    let model_dir = args.next().filter(|s| s != "-").map(Into::into);
    let iterations = match args.next() {
        Some(n) => n.parse()?,
        None => BenchOptions::default().iterations,
    };
    let report = bench::run(&BenchOptions {
        kind,
        model_dir,
        iterations,
        ..BenchOptions::default()
    })?;
    println!("{report}");
    Ok(())
}
