//! A local Hugging Face look-alike serving `testdata/`, and helpers to download and load the
//! tiny generated models through the core download registry.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use livekit_agents::download::{DownloadOptions, FileSpec};
use livekit_plugins_turn_detector::{files, ModelKind};

pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

#[derive(Clone)]
struct ServerState {
    root: PathBuf,
    hidden: Vec<String>,
    requests: Arc<AtomicUsize>,
}

/// Serves `GET /livekit/turn-detector/resolve/<revision>/<path>` from `testdata/<revision>/<path>`
/// on 127.0.0.1; paths listed in `hidden` answer 404.
pub struct HfServer {
    pub base_url: String,
    pub requests: Arc<AtomicUsize>,
}

async fn serve_file(
    State(state): State<ServerState>,
    UrlPath((revision, path)): UrlPath<(String, String)>,
) -> Result<Vec<u8>, StatusCode> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if path.contains("..") || revision.contains("..") || state.hidden.contains(&path) {
        return Err(StatusCode::NOT_FOUND);
    }
    std::fs::read(state.root.join(&revision).join(&path)).map_err(|_| StatusCode::NOT_FOUND)
}

impl HfServer {
    pub async fn start(hidden: &[&str]) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let state = ServerState {
            root: testdata(),
            hidden: hidden.iter().map(|s| s.to_string()).collect(),
            requests: requests.clone(),
        };
        let app = Router::new()
            .route(
                "/livekit/turn-detector/resolve/{revision}/{*path}",
                get(serve_file),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{addr}"),
            requests,
        }
    }

    /// `kind`'s declared files, pointed at this server instead of Hugging Face.
    pub fn specs(&self, kind: ModelKind) -> Vec<FileSpec> {
        kind.files()
            .into_iter()
            .map(|mut spec| {
                spec.source.default_base_url = self.base_url.clone();
                spec.source.base_url_env = None;
                spec
            })
            .collect()
    }
}

/// A folder that is deleted with everything in it when dropped (also when the test fails);
/// derefs to its path.
pub struct TempPath {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl std::ops::Deref for TempPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// A fresh, empty cache folder for one test.
pub fn temp_cache(name: &str) -> TempPath {
    let dir = tempfile::Builder::new()
        .prefix(&format!("lk-turn-detector-{name}-"))
        .tempdir()
        .unwrap();
    TempPath {
        path: dir.path().to_owned(),
        _dir: dir,
    }
}

pub fn download_options(cache: &Path) -> DownloadOptions {
    DownloadOptions::default()
        .with_cache_dir(cache.to_owned())
        .with_progress(false)
        .with_retries(0)
}

/// Downloads `kind`'s files from a fresh local server into a fresh cache; returns the model
/// folder (the cache is deleted when it is dropped).
pub async fn downloaded_model(kind: ModelKind, name: &str) -> TempPath {
    let server = HfServer::start(&[]).await;
    let cache = temp_cache(name);
    files::download_specs(&server.specs(kind), &download_options(&cache))
        .await
        .unwrap();
    TempPath {
        path: kind.dir_in(&cache).unwrap(),
        _dir: cache._dir,
    }
}

/// Whether ONNX Runtime can be loaded (`ORT_DYLIB_PATH`, the cache filled by
/// `cargo xtask download-files`, or a system library). Without it the model tests print SKIP and
/// return, like the other ONNX plugins' tests (`cargo xtask ci --no-download`).
pub fn onnx_runtime() -> bool {
    match livekit_agents_onnx::ensure_runtime() {
        Ok(()) => true,
        Err(err) => {
            eprintln!("SKIP: ONNX Runtime not available: {err}");
            false
        }
    }
}
