//! The whole path on the tiny generated models (`testdata/`, see `testdata/generate.py`):
//! download from a local server through the core download registry, load, format, infer,
//! thresholds, and bad input.
//!
//! The test model's probability is a function of the last token: words like "thanks" give
//! 0.97, words like "and" give 0.002, other known words 0.4.
//!
//! Needs ONNX Runtime (`ORT_DYLIB_PATH`, or `cargo xtask download-files`); without it each test
//! prints SKIP and returns, like the other ONNX plugins' tests.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{download_options, downloaded_model, temp_cache, HfServer};
use livekit_agents::llm::{ChatContext, ChatItem, ChatRole, FunctionCall, FunctionCallOutput};
use livekit_agents::turn_detector::TurnDetector;
use livekit_plugins_turn_detector::{
    files, EnglishModel, LoadError, ModelKind, MultilingualModel, TurnDetectorOptions,
};
use sha2::{Digest, Sha256};

const LIKELY: f32 = 0.97;
const UNLIKELY: f32 = 0.002;
const OTHER: f32 = 0.4;

fn options(dir: &std::path::Path) -> TurnDetectorOptions {
    TurnDetectorOptions {
        model_dir: Some(dir.to_owned()),
        // Generous: the prediction runs on real threads on a busy build machine. Timeouts are
        // tested with a blocked fake model and tokio's paused clock (unit tests).
        timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

fn conversation(messages: &[(ChatRole, &str)]) -> ChatContext {
    let mut ctx = ChatContext::new();
    for (role, text) in messages {
        ctx.add_message(*role, *text);
    }
    ctx
}

fn user(text: &str) -> ChatContext {
    conversation(&[
        (ChatRole::System, "You are a booking assistant."),
        (ChatRole::Assistant, "Hello! How can I help?"),
        (ChatRole::User, text),
    ])
}

#[tokio::test]
async fn english_model_downloads_loads_and_predicts() {
    if !common::onnx_runtime() {
        return;
    }
    let server = HfServer::start(&[]).await;
    let cache = temp_cache("english");
    files::download_specs(&server.specs(ModelKind::English), &download_options(&cache))
        .await
        .unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);
    for path in files::MODEL_FILES {
        assert!(
            cache.join("turn-detector/v1.2.2-en").join(path).is_file(),
            "{path}"
        );
    }

    let dir = ModelKind::English.dir_in(&cache).unwrap();
    let model = EnglishModel::load_with(options(&dir)).await.unwrap();
    assert_eq!(model.label(), "livekit-turn-detector-en");
    assert_eq!(model.timeout(), Duration::from_secs(60));

    // Languages: English only, codes normalized.
    for lang in ["en", "en-US", "EN_gb"] {
        assert!(model.supports_language(Some(lang)), "{lang}");
        assert_eq!(model.unlikely_threshold(Some(lang)), Some(0.0289));
    }
    for lang in [Some("es"), Some(""), None] {
        assert!(!model.supports_language(lang), "{lang:?}");
        assert_eq!(model.unlikely_threshold(lang), None);
    }

    let threshold = model.unlikely_threshold(Some("en")).unwrap();
    let done = model
        .predict_end_of_turn(&user("A table for two, thanks."), Some("en"))
        .await
        .unwrap();
    assert_eq!(done, LIKELY);
    assert!(done >= threshold, "a finished turn is not 'unlikely'");
    let open = model
        .predict_end_of_turn(&user("I want a table for two and"), Some("en"))
        .await
        .unwrap();
    assert_eq!(open, UNLIKELY);
    assert!(open < threshold, "an open turn is 'unlikely' to be over");

    // Timings and token counts come with `predict`.
    let p = model.predict(&user("I want a table")).await.unwrap();
    assert_eq!(p.probability, OTHER);
    // <|im_start|> assistant hello how can i help <|im_end|> <|im_start|> user i want a table
    assert_eq!(p.input_tokens, 14);
}

#[tokio::test]
async fn multilingual_thresholds_and_normalization() {
    if !common::onnx_runtime() {
        return;
    }
    let dir = downloaded_model(ModelKind::Multilingual, "multilingual").await;
    let model = MultilingualModel::load_with(options(&dir)).await.unwrap();
    assert_eq!(
        model.languages().languages(),
        vec!["de", "en", "es", "fr", "pt", "pt-BR", "zh"]
    );
    // Full code first, then base language.
    assert_eq!(model.unlikely_threshold(Some("pt-BR")), Some(0.0135));
    assert_eq!(model.unlikely_threshold(Some("pt_br")), Some(0.0135));
    assert_eq!(model.unlikely_threshold(Some("pt-PT")), Some(0.0120));
    assert_eq!(model.unlikely_threshold(Some("es-MX")), Some(0.0153));
    assert_eq!(model.unlikely_threshold(Some("de")), Some(0.0047));
    // Unsupported languages: the session skips the model.
    assert!(!model.supports_language(Some("ja")));
    assert!(!model.supports_language(Some("ja-JP")));
    assert!(!model.supports_language(None));

    let es = |text: &str| {
        conversation(&[
            (ChatRole::Assistant, "¡Hola! ¿Cómo puedo ayudarte?"),
            (ChatRole::User, text),
        ])
    };
    assert_eq!(
        model
            .predict_end_of_turn(&es("Quiero una mesa y"), Some("es"))
            .await
            .unwrap(),
        UNLIKELY
    );
    assert_eq!(
        model
            .predict_end_of_turn(&es("¡GRACIAS!"), Some("es"))
            .await
            .unwrap(),
        LIKELY,
        "lower-cased, punctuation dropped"
    );
    // "?" is a "likely" token for the test model, but normalization removes it.
    assert_eq!(
        model
            .predict_end_of_turn(&es("¿Una mesa?"), Some("es"))
            .await
            .unwrap(),
        OTHER
    );
    // Adjacent user messages are merged: the last word of the merged turn decides.
    let merged = conversation(&[
        (ChatRole::User, "Hola, quiero una mesa"),
        (ChatRole::User, "y"),
    ]);
    assert_eq!(
        model
            .predict_end_of_turn(&merged, Some("es"))
            .await
            .unwrap(),
        UNLIKELY
    );
}

#[tokio::test]
async fn threshold_override_applies_to_supported_languages_only() {
    if !common::onnx_runtime() {
        return;
    }
    let dir = downloaded_model(ModelKind::Multilingual, "override").await;
    let tuned = MultilingualModel::load_with(options(&dir)).await.unwrap();
    let custom = MultilingualModel::load_with(TurnDetectorOptions {
        unlikely_threshold: Some(0.5),
        ..options(&dir)
    })
    .await
    .unwrap();
    assert!(custom.shares_model_with(&tuned), "one model per process");
    assert_eq!(custom.unlikely_threshold(Some("fr")), Some(0.5));
    assert_eq!(tuned.unlikely_threshold(Some("fr")), Some(0.0211));
    assert_eq!(custom.unlikely_threshold(Some("ja")), None);
    assert!(!custom.supports_language(Some("ja")));

    let bad = MultilingualModel::load_with(TurnDetectorOptions {
        unlikely_threshold: Some(1.5),
        ..options(&dir)
    })
    .await;
    assert!(matches!(bad, Err(LoadError::Options(_))));
}

#[tokio::test]
async fn bad_input() {
    if !common::onnx_runtime() {
        return;
    }
    let dir = downloaded_model(ModelKind::English, "bad-input").await;
    let model = EnglishModel::load_with(options(&dir)).await.unwrap();
    let detector: Arc<dyn TurnDetector> = Arc::new(model.clone());

    // Empty context: nothing to wait for.
    let p = model.predict(&ChatContext::new()).await.unwrap();
    assert_eq!(p.probability, 1.0);
    assert_eq!(p.input_tokens, 0);

    // Only instructions and tool calls: no user/assistant text, same answer.
    let mut tools_only = conversation(&[(ChatRole::System, "Use the tools.")]);
    tools_only.push(ChatItem::FunctionCall(FunctionCall {
        id: "fnc_1".into(),
        call_id: "call_1".into(),
        name: "lookup".into(),
        arguments: "{}".into(),
        created_at: 0.0,
    }));
    tools_only.push(ChatItem::FunctionCallOutput(FunctionCallOutput {
        id: "fnc_1_out".into(),
        call_id: "call_1".into(),
        name: "lookup".into(),
        output: "and".into(),
        is_error: false,
        created_at: 0.0,
    }));
    assert_eq!(
        detector
            .predict_end_of_turn(&tools_only, Some("en"))
            .await
            .unwrap(),
        1.0
    );

    // Text that normalizes to nothing: an empty open user turn goes to the model, as in the
    // reference (its last token is the role, "user": 0.4 in the test model).
    let p = model
        .predict(&conversation(&[(ChatRole::User, "?! ... —")]))
        .await
        .unwrap();
    assert_eq!((p.probability, p.input_tokens), (OTHER, 2));

    // A very long message is cut from the left to 128 tokens; its end decides.
    let long_open = format!("{} and", "i want a table for two ".repeat(2_000));
    let p = model.predict(&user(&long_open)).await.unwrap();
    assert_eq!(p.input_tokens, 128);
    assert_eq!(p.probability, UNLIKELY);
    let long_done = format!("{} thanks", "hello ".repeat(10_000));
    let p = model.predict(&user(&long_done)).await.unwrap();
    assert_eq!(p.input_tokens, 128);
    assert_eq!(p.probability, LIKELY);

    // Words the tokenizer does not know become <unk> (0.4 in the test model), not an error.
    assert_eq!(
        model.predict(&user("zyzzyva")).await.unwrap().probability,
        OTHER
    );

    // Unsupported language: the detector says so (the session then skips it).
    assert!(!detector.supports_language(Some("fr")));
}

#[tokio::test]
async fn missing_and_broken_files_fail_with_clear_errors() {
    if !common::onnx_runtime() {
        return;
    }
    // The server lacks languages.json: the download fails and nothing half-done is used.
    let server = HfServer::start(&["languages.json"]).await;
    let cache = temp_cache("missing");
    let err = files::download_specs(&server.specs(ModelKind::English), &download_options(&cache))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("languages.json"), "{err}");
    let err = ModelKind::English.dir_in(&cache).unwrap_err();
    assert!(err.to_string().contains("download-files"), "{err}");
    let err = EnglishModel::load_with(options(&cache.join("turn-detector/v1.2.2-en")))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::MissingFile { .. }), "{err}");

    // A file that is not a model.
    let dir = downloaded_model(ModelKind::English, "broken-onnx").await;
    std::fs::write(dir.join(files::ONNX_FILE), b"not an onnx model").unwrap();
    let err = EnglishModel::load_with(options(&dir)).await.unwrap_err();
    assert!(matches!(err, LoadError::Onnx(_)), "{err}");

    // A tokenizer config without a chat template.
    let dir = downloaded_model(ModelKind::English, "no-template").await;
    std::fs::write(
        dir.join(files::TOKENIZER_CONFIG_FILE),
        br#"{"eos_token": "<|im_end|>"}"#,
    )
    .unwrap();
    let err = EnglishModel::load_with(options(&dir)).await.unwrap_err();
    assert!(matches!(err, LoadError::Config(_)), "{err}");

    // A broken languages.json.
    let dir = downloaded_model(ModelKind::English, "bad-languages").await;
    std::fs::write(dir.join(files::LANGUAGES_FILE), br#"{"en": 0.1}"#).unwrap();
    let err = EnglishModel::load_with(options(&dir)).await.unwrap_err();
    assert!(matches!(err, LoadError::Languages(_)), "{err}");
}

#[tokio::test]
async fn checksums_are_verified_when_known() {
    if !common::onnx_runtime() {
        return;
    }
    let server = HfServer::start(&[]).await;
    let with_checksums: Vec<_> = server
        .specs(ModelKind::English)
        .into_iter()
        .map(|spec| {
            let rel = spec.file_name.trim_start_matches("turn-detector/");
            let bytes = std::fs::read(common::testdata().join(rel)).unwrap();
            let sha = hex::encode(Sha256::digest(&bytes));
            spec.with_sha256(sha).with_size(bytes.len() as u64)
        })
        .collect();
    let cache = temp_cache("checksums");
    files::download_specs(&with_checksums, &download_options(&cache))
        .await
        .unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);
    // Valid files are not fetched again.
    files::download_specs(&with_checksums, &download_options(&cache))
        .await
        .unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);
    assert!(
        EnglishModel::load_with(options(&ModelKind::English.dir_in(&cache).unwrap()))
            .await
            .is_ok()
    );

    // A served file that does not match its pinned checksum is refused.
    let mut wrong = server.specs(ModelKind::English);
    wrong[0] = wrong[0].clone().with_sha256("00".repeat(32));
    let cache = temp_cache("checksum-mismatch");
    let err = files::download_specs(&wrong, &download_options(&cache))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("model_q8.onnx"), "{err}");
    assert!(ModelKind::English.dir_in(&cache).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_one_model() {
    if !common::onnx_runtime() {
        return;
    }
    let dir = downloaded_model(ModelKind::English, "concurrent").await;
    let first = EnglishModel::load_with(options(&dir)).await.unwrap();
    let second = EnglishModel::load_with(options(&dir)).await.unwrap();
    assert!(first.shares_model_with(&second));

    let mut tasks = Vec::new();
    for i in 0..16 {
        let model = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            let text = if i % 3 == 0 {
                "table for two and"
            } else {
                "table for two thanks"
            };
            let expected = if i % 3 == 0 { UNLIKELY } else { LIKELY };
            let p = model
                .predict_end_of_turn(&user(text), Some("en"))
                .await
                .unwrap();
            assert_eq!(p, expected);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn bench_runs_on_the_test_model() {
    if !common::onnx_runtime() {
        return;
    }
    use livekit_plugins_turn_detector::bench::{self, BenchOptions};
    let report = bench::run(&BenchOptions {
        kind: ModelKind::English,
        model_dir: Some(bench::test_model_dir(ModelKind::English)),
        iterations: 5,
        warmup: 1,
    })
    .unwrap();
    assert!(report.test_model);
    assert!(report.input_tokens > 20, "{report}");
    assert!(report.preprocess.min <= report.preprocess.max);
    let text = report.to_string();
    assert!(text.contains("preprocess (template + tokenize)"), "{text}");
    assert!(text.contains("inference (ONNX)"), "{text}");
}
