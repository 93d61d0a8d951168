//! `cargo xtask bench turn-detector`: cost of one end-of-turn prediction, for the English and
//! the multilingual model.
//!
//! For each model: preprocessing (chat template + tokenizer, per call), the ONNX inference, and
//! the round trip through the shared inference pool, on a six-message conversation. The files
//! come from `--input <folder>` (one model's folder, e.g. `<cache>/turn-detector/v0.4.1-intl`),
//! else the download cache, else the tiny generated test model in
//! `plugins/turn-detector/testdata` (the report says so: its inference time says nothing about
//! the real models). `--passes N` runs `10 * N` timed predictions per model.

use anyhow::Context;
use livekit_plugins_turn_detector::bench::{self, BenchOptions};
use livekit_plugins_turn_detector::ModelKind;

use super::BenchArgs;

/// Runs the benchmark for both models (only the one whose files `--input` holds, if given).
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let kinds: Vec<ModelKind> = match &args.input {
        Some(dir) => {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let kind = if name == ModelKind::English.revision() {
                ModelKind::English
            } else {
                ModelKind::Multilingual
            };
            vec![kind]
        }
        None => vec![ModelKind::English, ModelKind::Multilingual],
    };
    for kind in kinds {
        let report = bench::run(&BenchOptions {
            kind,
            model_dir: args.input.clone(),
            iterations: args.passes.max(1) * 10,
            warmup: 10,
        })
        .with_context(|| format!("turn detector benchmark ({})", kind.label()))?;
        println!("{report}\n");
    }
    Ok(())
}
