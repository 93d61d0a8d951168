//! [`EnglishModel`] and [`MultilingualModel`]: the end-of-turn detectors, sharing one loaded
//! model per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use livekit_agents::llm::ChatContext;
use livekit_agents::turn_detector::{TurnDetector, TurnDetectorError};
use parking_lot::Mutex;

use crate::error::LoadError;
use crate::files::{self, ModelKind};
use crate::inference::{Engine, InferenceOptions, InferencePool, Prediction};
use crate::languages::LanguageThresholds;
use crate::onnx_backend::OnnxBackend;
use crate::preprocess::{turns_from_chat_ctx, ChatTurn, Preprocessor, TurnRole};

/// Default time a caller waits for a prediction before [`TurnDetectorError::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Options of [`EnglishModel::load_with`] and [`MultilingualModel::load_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct TurnDetectorOptions {
    /// Overrides the tuned per-language threshold for every supported language (not
    /// recommended unless you measured the effect). Unsupported languages stay unsupported.
    pub unlikely_threshold: Option<f32>,
    /// How long a prediction may take before the caller gets
    /// [`TurnDetectorError::Timeout`] (default [`DEFAULT_TIMEOUT`], 1 s).
    pub timeout: Duration,
    /// Folder holding the model files (`onnx/model_q8.onnx`, `tokenizer.json`,
    /// `tokenizer_config.json`, `languages.json`). Default: the download cache
    /// ([`ModelKind::cache_dir`]).
    pub model_dir: Option<PathBuf>,
    /// Threads and queue of the process-wide inference pool. Only the first load of a model in
    /// the process uses them; later loads share that model and its pool.
    pub inference: InferenceOptions,
}

impl Default for TurnDetectorOptions {
    fn default() -> Self {
        Self {
            unlikely_threshold: None,
            timeout: DEFAULT_TIMEOUT,
            model_dir: None,
            inference: InferenceOptions::default(),
        }
    }
}

/// A loaded model: tokenizer, template, ONNX session, thresholds and the inference pool.
struct SharedModel {
    kind: ModelKind,
    dir: PathBuf,
    languages: LanguageThresholds,
    engine: Arc<Engine>,
    pool: InferencePool,
}

type RegistryKey = (ModelKind, PathBuf);

/// One model per (kind, folder) per process. Weak, so the model is freed with its last user.
static LOADED: LazyLock<Mutex<HashMap<RegistryKey, Weak<SharedModel>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            LoadError::MissingFile {
                path: path.to_owned(),
            }
        } else {
            LoadError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    String::from_utf8(read_file(path)?).map_err(|e| LoadError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

fn load_model(
    kind: ModelKind,
    dir: &Path,
    options: &InferenceOptions,
) -> Result<SharedModel, LoadError> {
    let languages = LanguageThresholds::from_json(&read_text(&dir.join(files::LANGUAGES_FILE))?)
        .map_err(|e| LoadError::Languages(e.to_string()))?;
    let preprocessor = Preprocessor::from_bytes(
        &read_file(&dir.join(files::TOKENIZER_FILE))?,
        &read_text(&dir.join(files::TOKENIZER_CONFIG_FILE))?,
        kind.normalizes_text(),
    )?;
    let model_path = dir.join(files::ONNX_FILE);
    if !model_path.is_file() {
        return Err(LoadError::MissingFile { path: model_path });
    }
    let backend = OnnxBackend::load(&model_path, options.intra_op_threads)?;
    let engine = Arc::new(Engine {
        preprocessor,
        backend: Box::new(backend),
    });
    // The first run of a session allocates its buffers; pay for it here rather than in the
    // first (time-limited) prediction of a session.
    let warmup = [ChatTurn::new(TurnRole::User, "hello")];
    if let Err(error) = engine.run(&warmup) {
        return Err(LoadError::Onnx(format!(
            "{}: warm-up prediction failed: {error}",
            dir.display()
        )));
    }
    let pool = InferencePool::start(engine.clone(), options, kind.label(), kind.thread_label())?;
    tracing::info!(
        target: "livekit_plugins_turn_detector",
        model = kind.label(),
        dir = %dir.display(),
        languages = languages.len(),
        "turn detector model loaded"
    );
    Ok(SharedModel {
        kind,
        dir: dir.to_owned(),
        languages,
        engine,
        pool,
    })
}

/// Returns the process's model for `(kind, dir)`, loading it on first use.
fn shared_model(
    kind: ModelKind,
    dir: &Path,
    options: &InferenceOptions,
) -> Result<Arc<SharedModel>, LoadError> {
    let key = (kind, dir.canonicalize().unwrap_or_else(|_| dir.to_owned()));
    // Held while loading so concurrent first loads do not load the model twice.
    let mut loaded = LOADED.lock();
    if let Some(model) = loaded.get(&key).and_then(Weak::upgrade) {
        return Ok(model);
    }
    let model = Arc::new(load_model(kind, dir, options)?);
    loaded.retain(|_, m| m.strong_count() > 0);
    loaded.insert(key, Arc::downgrade(&model));
    Ok(model)
}

/// The detector behind [`EnglishModel`] and [`MultilingualModel`].
#[derive(Clone)]
struct Detector {
    model: Arc<SharedModel>,
    unlikely_threshold: Option<f32>,
    timeout: Duration,
}

impl Detector {
    async fn load(kind: ModelKind, options: TurnDetectorOptions) -> Result<Self, LoadError> {
        if let Some(t) = options.unlikely_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(LoadError::Options(format!(
                    "unlikely_threshold must be within 0..=1, got {t}"
                )));
            }
        }
        let dir = match options.model_dir {
            Some(dir) => dir,
            None => kind.cache_dir()?,
        };
        let inference = options.inference;
        let model = tokio::task::spawn_blocking(move || shared_model(kind, &dir, &inference))
            .await
            .map_err(|e| LoadError::Onnx(format!("model loading task failed: {e}")))??;
        Ok(Self {
            model,
            unlikely_threshold: options.unlikely_threshold,
            timeout: options.timeout,
        })
    }

    async fn predict(&self, chat_ctx: &ChatContext) -> Result<Prediction, TurnDetectorError> {
        let turns = turns_from_chat_ctx(chat_ctx);
        let prediction = self.model.pool.predict(turns, self.timeout).await?;
        tracing::debug!(
            target: "livekit_plugins_turn_detector",
            model = self.model.kind.label(),
            eou_probability = prediction.probability,
            input_tokens = prediction.input_tokens,
            preprocess_ms = prediction.preprocess_duration.as_secs_f64() * 1000.0,
            inference_ms = prediction.inference_duration.as_secs_f64() * 1000.0,
            "eou prediction"
        );
        Ok(prediction)
    }

    fn unlikely_threshold(&self, language: Option<&str>) -> Option<f32> {
        let tuned = self.model.languages.threshold(language?)?;
        Some(self.unlikely_threshold.unwrap_or(tuned))
    }
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("kind", &self.model.kind)
            .field("dir", &self.model.dir)
            .field("languages", &self.model.languages.languages())
            .field("unlikely_threshold", &self.unlikely_threshold)
            .field("timeout", &self.timeout)
            .finish()
    }
}

macro_rules! detector_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            inner: Detector,
        }

        impl $name {
            /// Which model this is.
            pub const KIND: ModelKind = $kind;

            /// Loads the model from the download cache with default options (1 s timeout,
            /// tuned thresholds). Run `download-files` first.
            pub async fn load() -> Result<Self, LoadError> {
                Self::load_with(TurnDetectorOptions::default()).await
            }

            /// Loads the model with `options`. The ONNX session, tokenizer and inference
            /// threads are loaded once per process and shared by every detector that loads the
            /// same files, whatever its threshold or timeout.
            pub async fn load_with(options: TurnDetectorOptions) -> Result<Self, LoadError> {
                Ok(Self {
                    inner: Detector::load($kind, options).await?,
                })
            }

            /// Downloads the model files into the cache (see [`files`](crate::files)).
            pub async fn download_files() -> Result<(), LoadError> {
                files::download($kind).await
            }

            /// Predicts with timings (the [`TurnDetector`] method returns the probability only).
            pub async fn predict(
                &self,
                chat_ctx: &ChatContext,
            ) -> Result<Prediction, TurnDetectorError> {
                self.inner.predict(chat_ctx).await
            }

            /// The per-language thresholds of `languages.json`.
            pub fn languages(&self) -> &LanguageThresholds {
                &self.inner.model.languages
            }

            /// The folder the model was loaded from.
            pub fn model_dir(&self) -> &Path {
                &self.inner.model.dir
            }

            /// The prediction timeout.
            pub fn timeout(&self) -> Duration {
                self.inner.timeout
            }

            /// Runs one prediction on the calling thread, bypassing the pool and its timeout
            /// (for benchmarks and tools; sessions use [`TurnDetector`]).
            pub fn predict_blocking(
                &self,
                chat_ctx: &ChatContext,
            ) -> Result<Prediction, TurnDetectorError> {
                self.inner
                    .model
                    .engine
                    .run(&turns_from_chat_ctx(chat_ctx))
                    .map_err(|e| TurnDetectorError::Inference { reason: e })
            }

            /// Whether two detectors share the same loaded model (and inference pool).
            pub fn shares_model_with(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.inner.model, &other.inner.model)
            }
        }

        #[async_trait]
        impl TurnDetector for $name {
            fn label(&self) -> String {
                $kind.label().to_owned()
            }

            async fn predict_end_of_turn(
                &self,
                chat_ctx: &ChatContext,
                _language: Option<&str>,
            ) -> Result<f32, TurnDetectorError> {
                Ok(self.inner.predict(chat_ctx).await?.probability)
            }

            fn supports_language(&self, language: Option<&str>) -> bool {
                self.inner.unlikely_threshold(language).is_some()
            }

            fn unlikely_threshold(&self, language: Option<&str>) -> Option<f32> {
                self.inner.unlikely_threshold(language)
            }
        }
    };
}

detector_type!(
    /// The English end-of-turn model (`livekit/turn-detector`, revision `v1.2.2-en`; about
    /// 200 MB of RAM and ~10 ms per prediction on a server CPU, per the reference).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use livekit_agents::turn_detector::TurnDetector;
    /// use livekit_agents::llm::{ChatContext, ChatRole};
    /// use livekit_plugins_turn_detector::EnglishModel;
    ///
    /// EnglishModel::download_files().await?; // once, e.g. at image build time
    /// let detector = EnglishModel::load().await?;
    /// let mut ctx = ChatContext::new();
    /// ctx.add_message(ChatRole::User, "I'd like to book a table for");
    /// let p = detector.predict_end_of_turn(&ctx, Some("en-US")).await?;
    /// let wait_longer = p < detector.unlikely_threshold(Some("en-US")).unwrap_or(0.0);
    /// # let _ = wait_longer; Ok(()) }
    /// ```
    EnglishModel,
    ModelKind::English
);

detector_type!(
    /// The multilingual end-of-turn model (`livekit/turn-detector`, revision `v0.4.1-intl`;
    /// about 400 MB of RAM and ~25 ms per prediction, per the reference). Messages are
    /// normalized (NFKC, lower case, no punctuation) before the chat template.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use livekit_agents::turn_detector::TurnDetector;
    /// use livekit_plugins_turn_detector::{MultilingualModel, TurnDetectorOptions};
    ///
    /// let detector = MultilingualModel::load_with(TurnDetectorOptions {
    ///     timeout: std::time::Duration::from_millis(500),
    ///     ..Default::default()
    /// })
    /// .await?;
    /// assert!(detector.supports_language(Some("es-MX")) || !detector.supports_language(Some("es")));
    /// # Ok(()) }
    /// ```
    MultilingualModel,
    ModelKind::Multilingual
);
