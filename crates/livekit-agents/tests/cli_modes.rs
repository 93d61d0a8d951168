//! The agent CLI: mode dispatch, flag handling, the room-feature gate and `download-files`.

#![allow(clippy::unwrap_used)]

use livekit_agents::cli::{run_with_args, CliError};
use livekit_agents::download::{register_files, FileSpec, Source};
use livekit_agents::worker::{JobContext, WorkerOptions};
use sha2::Digest;

fn opts() -> WorkerOptions {
    WorkerOptions::new(|_ctx: JobContext| async { Ok(()) })
}

#[cfg(not(feature = "room"))]
#[tokio::test]
async fn room_modes_need_the_room_feature() {
    for mode in [
        vec!["agent", "dev"],
        vec!["agent", "start"],
        vec!["agent", "connect", "--room", "r"],
    ] {
        let err = run_with_args(opts(), mode.clone()).await.unwrap_err();
        assert!(
            matches!(err, CliError::RoomFeatureMissing { .. }),
            "{mode:?}: {err:?}"
        );
        let line = err.to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(line.contains("`room` cargo feature"), "{line}");
        assert!(line.contains(mode[1]), "{line}");
    }
}

#[tokio::test]
async fn usage_errors_are_reported() {
    let err = run_with_args(opts(), ["agent", "start", "--log-level", "LOUD"])
        .await
        .unwrap_err();
    assert!(matches!(err, CliError::Usage { .. }), "{err:?}");
    assert!(err.to_string().contains("--log-level"));

    let err = run_with_args(opts(), ["agent", "fly"]).await.unwrap_err();
    assert!(matches!(err, CliError::Args(_)), "{err:?}");

    let err = run_with_args(opts(), ["agent", "connect"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--room"), "{err}");
}

/// `download-files` fetches every registered file into the cache (served from 127.0.0.1).
#[tokio::test]
async fn download_files_fetches_registered_files() {
    let body = b"fake model weights".to_vec();
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = body.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/files/model.bin",
            axum::routing::get(move || {
                let b = served.clone();
                async move { b }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });

    let tmp = tempfile::Builder::new()
        .prefix("lk-cli-dl-")
        .tempdir()
        .unwrap();
    let cache = tmp.path();
    std::env::set_var("LIVEKIT_AGENTS_CACHE", cache);
    register_files(
        "cli-test",
        [FileSpec::new(
            "cli-test/model.bin",
            Source::new(format!("http://{addr}"), None, "files/model.bin"),
        )
        .with_sha256(&sha)],
    );
    run_with_args(opts(), ["agent", "download-files"])
        .await
        .unwrap();
    let got = std::fs::read(cache.join("cli-test/model.bin")).unwrap();
    assert_eq!(got, body);
}
