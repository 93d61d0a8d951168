//! The Hugging Face base URL is overridable by `LIVEKIT_AGENTS_HF_URL` (own test binary: it sets
//! a process-wide environment variable).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{download_options, temp_cache, HfServer};
use livekit_agents::download::HF_URL_ENV;
use livekit_agents::turn_detector::TurnDetector;
use livekit_plugins_turn_detector::{files, ModelKind, MultilingualModel, TurnDetectorOptions};

#[tokio::test]
async fn declared_files_follow_the_base_url_override() {
    if !common::onnx_runtime() {
        return;
    }
    let server = HfServer::start(&[]).await;
    std::env::set_var(HF_URL_ENV, &server.base_url);
    let specs = ModelKind::Multilingual.files();
    assert!(
        specs[0].url().starts_with(&server.base_url),
        "{}",
        specs[0].url()
    );

    let cache = temp_cache("env");
    files::download_specs(&specs, &download_options(&cache))
        .await
        .unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);

    let model = MultilingualModel::load_with(TurnDetectorOptions {
        model_dir: Some(ModelKind::Multilingual.dir_in(&cache).unwrap()),
        timeout: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(model.supports_language(Some("fr-CA")));
    let mut ctx = livekit_agents::llm::ChatContext::new();
    ctx.add_message(livekit_agents::llm::ChatRole::User, "Bonjour, merci");
    assert_eq!(
        model.predict_end_of_turn(&ctx, Some("fr")).await.unwrap(),
        0.97
    );
}
