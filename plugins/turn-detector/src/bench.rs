//! The `cargo xtask bench turn-detector` benchmark: preprocessing time (chat template +
//! tokenizer) and model time per prediction, plus the round trip through the inference pool.
//!
//! It runs whichever model files are present: the given folder, else the downloaded models in
//! the cache, else the tiny generated test model in this crate's `testdata/` (whose inference
//! time says nothing about the real models; the report names the folder it used).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use livekit_agents::llm::{ChatContext, ChatRole};

use crate::{
    EnglishModel, LoadError, ModelKind, MultilingualModel, Prediction, TurnDetectorOptions,
};

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Which model.
    pub kind: ModelKind,
    /// Folder with the model files; `None`: the cache, else the crate's test model.
    pub model_dir: Option<PathBuf>,
    /// Timed predictions (after [`BenchOptions::warmup`] untimed ones).
    pub iterations: usize,
    /// Untimed predictions first.
    pub warmup: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            kind: ModelKind::Multilingual,
            model_dir: None,
            iterations: 200,
            warmup: 10,
        }
    }
}

/// Summary of a series of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Fastest.
    pub min: Duration,
    /// Median.
    pub median: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// Slowest.
    pub max: Duration,
    /// Mean.
    pub mean: Duration,
}

impl Stats {
    /// Statistics of `samples` (`None` when empty).
    pub fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let total: Duration = sorted.iter().sum();
        Some(Self {
            min: sorted[0],
            median: at(0.5),
            p90: at(0.9),
            max: sorted[sorted.len() - 1],
            mean: total / sorted.len() as u32,
        })
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        write!(
            f,
            "median {:>9.1} µs  p90 {:>9.1} µs  min {:>9.1} µs  max {:>9.1} µs  mean {:>9.1} µs",
            us(self.median),
            us(self.p90),
            us(self.min),
            us(self.max),
            us(self.mean)
        )
    }
}

/// The benchmark's results.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Which model.
    pub kind: ModelKind,
    /// The folder the files came from.
    pub model_dir: PathBuf,
    /// Whether that folder is the generated test model (timings then say nothing about the
    /// real model's inference).
    pub test_model: bool,
    /// Tokens per prediction in the benchmark conversation.
    pub input_tokens: usize,
    /// Chat template + tokenizer, per prediction.
    pub preprocess: Stats,
    /// Model run, per prediction.
    pub inference: Stats,
    /// Whole call through the inference pool (queue hop, preprocessing, model, reply).
    pub pool_round_trip: Stats,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "turn detector ({}) from {}{}",
            self.kind.label(),
            self.model_dir.display(),
            if self.test_model {
                " [tiny generated test model: inference time is not representative]"
            } else {
                ""
            }
        )?;
        writeln!(f, "  input tokens per call: {}", self.input_tokens)?;
        writeln!(f, "  preprocess (template + tokenize): {}", self.preprocess)?;
        writeln!(f, "  inference (ONNX):                 {}", self.inference)?;
        write!(
            f,
            "  pool round trip:                  {}",
            self.pool_round_trip
        )
    }
}

/// The folder of the generated test model for `kind` in this crate's sources.
pub fn test_model_dir(kind: ModelKind) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(kind.revision())
}

/// A six-message conversation ending in an open user turn.
pub fn sample_conversation() -> ChatContext {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, "You are a friendly restaurant assistant.");
    ctx.add_message(ChatRole::Assistant, "Hello! How can I help you today?");
    ctx.add_message(
        ChatRole::User,
        "Hi, I'd like to book a table for two, please.",
    );
    ctx.add_message(ChatRole::Assistant, "Of course. For which day and time?");
    ctx.add_message(
        ChatRole::User,
        "Saturday evening, around eight if that's possible.",
    );
    ctx.add_message(
        ChatRole::Assistant,
        "Saturday at eight works. Any dietary requirements?",
    );
    ctx.add_message(ChatRole::User, "Yes, one of us is vegetarian and");
    ctx
}

enum AnyModel {
    English(EnglishModel),
    Multilingual(MultilingualModel),
}

impl AnyModel {
    fn predict_blocking(&self, ctx: &ChatContext) -> Result<Prediction, String> {
        match self {
            AnyModel::English(m) => m.predict_blocking(ctx),
            AnyModel::Multilingual(m) => m.predict_blocking(ctx),
        }
        .map_err(|e| e.to_string())
    }

    async fn predict(&self, ctx: &ChatContext) -> Result<Prediction, String> {
        match self {
            AnyModel::English(m) => m.predict(ctx).await,
            AnyModel::Multilingual(m) => m.predict(ctx).await,
        }
        .map_err(|e| e.to_string())
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The model did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A prediction failed.
    #[error("prediction failed: {0}")]
    Predict(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

/// Runs the benchmark (blocking; starts its own small async runtime).
pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let model_dir = match &options.model_dir {
        Some(dir) => dir.clone(),
        None => options
            .kind
            .cache_dir()
            .unwrap_or_else(|_| test_model_dir(options.kind)),
    };
    let test_model = model_dir == test_model_dir(options.kind);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Runtime(e.to_string()))?;
    runtime.block_on(async {
        let load_options = TurnDetectorOptions {
            model_dir: Some(model_dir.clone()),
            timeout: Duration::from_secs(60),
            ..Default::default()
        };
        let model = match options.kind {
            ModelKind::English => AnyModel::English(EnglishModel::load_with(load_options).await?),
            ModelKind::Multilingual => {
                AnyModel::Multilingual(MultilingualModel::load_with(load_options).await?)
            }
        };
        let ctx = sample_conversation();
        for _ in 0..options.warmup {
            model.predict_blocking(&ctx).map_err(BenchError::Predict)?;
        }
        let mut preprocess = Vec::with_capacity(options.iterations);
        let mut inference = Vec::with_capacity(options.iterations);
        let mut input_tokens = 0;
        for _ in 0..options.iterations.max(1) {
            let p = model.predict_blocking(&ctx).map_err(BenchError::Predict)?;
            preprocess.push(p.preprocess_duration);
            inference.push(p.inference_duration);
            input_tokens = p.input_tokens;
        }
        let mut round_trip = Vec::with_capacity(options.iterations);
        for _ in 0..options.iterations.max(1) {
            let started = Instant::now();
            model.predict(&ctx).await.map_err(BenchError::Predict)?;
            round_trip.push(started.elapsed());
        }
        let stats =
            |s: &[Duration]| Stats::of(s).ok_or_else(|| BenchError::Predict("no samples".into()));
        Ok(BenchReport {
            kind: options.kind,
            model_dir,
            test_model,
            input_tokens,
            preprocess: stats(&preprocess)?,
            inference: stats(&inference)?,
            pool_round_trip: stats(&round_trip)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_samples() {
        let samples: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        let s = Stats::of(&samples).unwrap();
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.max, Duration::from_millis(10));
        assert_eq!(s.median, Duration::from_millis(6));
        assert_eq!(s.p90, Duration::from_millis(9));
        assert_eq!(s.mean, Duration::from_micros(5500));
        assert!(Stats::of(&[]).is_none());
    }
}
