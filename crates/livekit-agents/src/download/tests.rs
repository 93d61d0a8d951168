//! Downloader tests against a scripted HTTP server on 127.0.0.1.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// What the server does for a path, per request number (the last entry repeats).
#[derive(Clone)]
enum Reply {
    Ok(Vec<u8>),
    Status(u16),
    /// Announce the full length, send only the first half, then close.
    DropMidBody(Vec<u8>),
}

struct TestServer {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl TestServer {
    async fn start(routes: Vec<(&str, Vec<Reply>)>) -> Self {
        let routes: Arc<HashMap<String, Vec<Reply>>> =
            Arc::new(routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect());
        let hits = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_hits = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                let hits = server_hits.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let n = {
                        let mut hits = hits.lock();
                        let n = hits.entry(path.clone()).or_insert(0);
                        *n += 1;
                        *n - 1
                    };
                    let reply = match routes.get(&path) {
                        Some(replies) => replies[n.min(replies.len() - 1)].clone(),
                        None => Reply::Status(404),
                    };
                    let (status, body, cut) = match reply {
                        Reply::Ok(body) => (200, body, None),
                        Reply::Status(code) => (code, b"error".to_vec(), None),
                        Reply::DropMidBody(body) => {
                            let half = body.len() / 2;
                            (200, body, Some(half))
                        }
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let end = cut.unwrap_or(body.len());
                    let _ = socket.write_all(&body[..end]).await;
                    let _ = socket.flush().await;
                    // Dropping the socket closes the connection (mid-body when cut).
                });
            }
        });
        Self { addr, hits }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().get(path).copied().unwrap_or(0)
    }

    /// A source on this server; the base URL comes from a per-test environment variable, which
    /// also exercises the override.
    fn source(&self, env_var: &str, path: &str) -> Source {
        // SAFETY of the test: every test uses its own variable name, so no test reads a
        // variable another one writes.
        std::env::set_var(env_var, format!("http://{}", self.addr));
        Source::new("http://127.0.0.1:9/unused", Some(env_var), path)
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn options(dir: &Path) -> DownloadOptions {
    DownloadOptions {
        cache_dir: Some(dir.to_path_buf()),
        retries: 2,
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        progress: false,
        ..DownloadOptions::default()
    }
}

/// A fresh folder, deleted with everything in it when dropped (also when the test fails).
struct TempDir(tempfile::TempDir);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

fn temp_dir(name: &str) -> TempDir {
    TempDir(
        tempfile::Builder::new()
            .prefix(&format!("lk-download-test-{name}-"))
            .tempdir()
            .unwrap(),
    )
}

/// Issue 15 item 11: test folders delete themselves.
#[test]
fn temp_dirs_delete_themselves() {
    let dir = temp_dir("self-deleting");
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("a/b/f"), b"x").unwrap();
    let path = dir.to_path_buf();
    drop(dir);
    assert!(!path.exists());
}

/// Every file under `dir`, relative, sorted (to check that nothing partial is left).
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn zip_with(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in members {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[tokio::test]
async fn good_file_is_downloaded_verified_then_skipped() {
    let body = payload(200_000, 1);
    let server = TestServer::start(vec![("/good.bin", vec![Reply::Ok(body.clone())])]).await;
    let dir = temp_dir("good");
    let spec = FileSpec::new(
        "models/good.bin",
        server.source("LK_DL_TEST_GOOD", "good.bin"),
    )
    .with_sha256(sha(&body))
    .with_size(body.len() as u64)
    .with_license("test");

    let report = download_all(std::slice::from_ref(&spec), &options(&dir)).await;
    assert!(report.is_success(), "{report}");
    assert!(matches!(
        report.outcomes[0].status,
        FileStatus::Downloaded {
            bytes: 200_000,
            attempts: 1
        }
    ));
    assert_eq!(std::fs::read(dir.join("models/good.bin")).unwrap(), body);
    assert_eq!(files_under(&dir), vec!["models/good.bin".to_owned()]);
    assert_eq!(spec.find_in(&dir).unwrap(), dir.join("models/good.bin"));

    let again = download_all(std::slice::from_ref(&spec), &options(&dir)).await;
    assert!(matches!(
        again.outcomes[0].status,
        FileStatus::AlreadyPresent
    ));
    assert_eq!(
        server.hits("/good.bin"),
        1,
        "a valid file is not downloaded again"
    );
    let summary = again.to_string();
    assert!(summary.contains("already present"), "{summary}");
    assert!(summary.contains("0 downloaded"), "{summary}");
}

#[tokio::test]
async fn corrupt_file_is_rejected_and_nothing_is_left() {
    let expected = payload(50_000, 2);
    let corrupt = payload(50_000, 3);
    let server = TestServer::start(vec![("/corrupt.bin", vec![Reply::Ok(corrupt)])]).await;
    let dir = temp_dir("corrupt");
    let spec = FileSpec::new(
        "corrupt.bin",
        server.source("LK_DL_TEST_CORRUPT", "corrupt.bin"),
    )
    .with_sha256(sha(&expected));

    let report = download_all(&[spec], &options(&dir)).await;
    assert!(!report.is_success());
    match &report.outcomes[0].status {
        FileStatus::Failed(FileError::Mismatch {
            what, expected: e, ..
        }) => {
            assert!(what.starts_with("sha256"), "{what}");
            assert_eq!(e, &sha(&expected));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(
        files_under(&dir).is_empty(),
        "left: {:?}",
        files_under(&dir)
    );
    assert_eq!(
        server.hits("/corrupt.bin"),
        1,
        "a checksum mismatch is not retried"
    );
    let err = report.into_result().unwrap_err();
    assert_eq!(err.failures.len(), 1);
    assert!(err.to_string().contains("corrupt.bin"));
}

#[tokio::test]
async fn not_found_fails_without_retry() {
    let server = TestServer::start(vec![]).await;
    let dir = temp_dir("404");
    let spec = FileSpec::new(
        "missing.bin",
        server.source("LK_DL_TEST_404", "missing.bin"),
    );
    let report = download_all(&[spec], &options(&dir)).await;
    assert!(matches!(
        report.outcomes[0].status,
        FileStatus::Failed(FileError::Http { status: 404, .. })
    ));
    assert_eq!(server.hits("/missing.bin"), 1);
    assert!(files_under(&dir).is_empty());
}

#[tokio::test]
async fn dropped_connection_is_retried_and_leaves_no_partial_file() {
    let body = payload(300_000, 4);
    let server = TestServer::start(vec![(
        "/drop.bin",
        vec![Reply::DropMidBody(body.clone()), Reply::Ok(body.clone())],
    )])
    .await;
    let dir = temp_dir("drop-once");
    let spec = FileSpec::new("drop.bin", server.source("LK_DL_TEST_DROP", "drop.bin"))
        .with_sha256(sha(&body));
    let report = download_all(&[spec], &options(&dir)).await;
    assert!(report.is_success(), "{report}");
    assert!(matches!(
        report.outcomes[0].status,
        FileStatus::Downloaded { attempts: 2, .. }
    ));
    assert_eq!(server.hits("/drop.bin"), 2);
    assert_eq!(std::fs::read(dir.join("drop.bin")).unwrap(), body);
    assert_eq!(files_under(&dir), vec!["drop.bin".to_owned()]);
}

#[tokio::test]
async fn connection_dropped_every_time_gives_up_after_retries() {
    let body = payload(100_000, 5);
    let server = TestServer::start(vec![(
        "/always.bin",
        vec![Reply::DropMidBody(body.clone())],
    )])
    .await;
    let dir = temp_dir("drop-always");
    let spec = FileSpec::new(
        "always.bin",
        server.source("LK_DL_TEST_ALWAYS", "always.bin"),
    )
    .with_sha256(sha(&body));
    let report = download_all(&[spec], &options(&dir)).await;
    assert!(matches!(
        report.outcomes[0].status,
        FileStatus::Failed(FileError::Network { .. })
    ));
    assert_eq!(server.hits("/always.bin"), 3, "first attempt + 2 retries");
    assert!(
        files_under(&dir).is_empty(),
        "left: {:?}",
        files_under(&dir)
    );
}

#[tokio::test]
async fn server_errors_are_retried() {
    let body = payload(1000, 6);
    let server = TestServer::start(vec![(
        "/flaky.bin",
        vec![
            Reply::Status(503),
            Reply::Status(429),
            Reply::Ok(body.clone()),
        ],
    )])
    .await;
    let dir = temp_dir("flaky");
    let spec = FileSpec::new("flaky.bin", server.source("LK_DL_TEST_FLAKY", "flaky.bin"))
        .with_sha256(sha(&body));
    let report = download_all(&[spec], &options(&dir)).await;
    assert!(matches!(
        report.outcomes[0].status,
        FileStatus::Downloaded { attempts: 3, .. }
    ));
}

#[tokio::test]
async fn zip_member_is_extracted_and_verified() {
    let model = payload(70_000, 7);
    let archive = zip_with(&[
        ("pkg/other.txt", b"hello"),
        ("pkg/resources/model.onnx", &model),
    ]);
    let server = TestServer::start(vec![("/pkg.whl", vec![Reply::Ok(archive.clone())])]).await;
    let dir = temp_dir("zip");
    let spec = FileSpec::new(
        "pkg/model.onnx",
        server.source("LK_DL_TEST_ZIP", "/pkg.whl"),
    )
    .with_sha256(sha(&archive))
    .with_size(archive.len() as u64)
    .with_zip_member(
        "pkg/resources/model.onnx",
        Some(&sha(&model)),
        Some(model.len() as u64),
    );
    let report = download_all(std::slice::from_ref(&spec), &options(&dir)).await;
    assert!(report.is_success(), "{report}");
    assert_eq!(std::fs::read(dir.join("pkg/model.onnx")).unwrap(), model);
    assert_eq!(files_under(&dir), vec!["pkg/model.onnx".to_owned()]);

    // Present and valid (checked against the member's checksum): not fetched again.
    let again = download_all(std::slice::from_ref(&spec), &options(&dir)).await;
    assert!(matches!(
        again.outcomes[0].status,
        FileStatus::AlreadyPresent
    ));
    assert_eq!(server.hits("/pkg.whl"), 1);
}

#[tokio::test]
async fn zip_member_with_wrong_checksum_or_absent_is_rejected() {
    let model = payload(10_000, 8);
    let archive = zip_with(&[("a/model.onnx", &model)]);
    let server = TestServer::start(vec![("/a.whl", vec![Reply::Ok(archive)])]).await;
    let dir = temp_dir("zip-bad");
    let wrong = FileSpec::new("a/model.onnx", server.source("LK_DL_TEST_ZIPBAD", "a.whl"))
        .with_zip_member("a/model.onnx", Some(&sha(b"something else")), None);
    let absent = FileSpec::new("a/absent.onnx", server.source("LK_DL_TEST_ZIPBAD", "a.whl"))
        .with_zip_member("a/absent.onnx", None, None);
    let report = download_all(&[wrong, absent], &options(&dir)).await;
    assert!(matches!(
        report.outcomes[0].status,
        FileStatus::Failed(FileError::Mismatch { .. })
    ));
    assert!(matches!(
        report.outcomes[1].status,
        FileStatus::Failed(FileError::Archive { .. })
    ));
    assert!(
        files_under(&dir).is_empty(),
        "left: {:?}",
        files_under(&dir)
    );
}

#[tokio::test]
async fn invalid_file_present_in_cache_is_replaced() {
    let body = payload(4096, 9);
    let server = TestServer::start(vec![("/r.bin", vec![Reply::Ok(body.clone())])]).await;
    let dir = temp_dir("replace");
    std::fs::write(dir.join("r.bin"), b"stale").unwrap();
    let spec = FileSpec::new("r.bin", server.source("LK_DL_TEST_REPLACE", "r.bin"))
        .with_sha256(sha(&body));
    let report = download_all(&[spec], &options(&dir)).await;
    assert!(matches!(
        report.outcomes[0].status,
        FileStatus::Downloaded { .. }
    ));
    assert_eq!(std::fs::read(dir.join("r.bin")).unwrap(), body);
}

#[tokio::test]
async fn file_names_escaping_the_cache_are_refused() {
    let dir = temp_dir("escape");
    let spec = FileSpec::new(
        "../escape.bin",
        Source::new("http://127.0.0.1:9", None, "x"),
    );
    let report = download_all(&[spec], &options(&dir)).await;
    assert!(matches!(
        report.outcomes[0].status,
        FileStatus::Failed(FileError::InvalidSpec { .. })
    ));
}

#[test]
fn missing_file_error_names_the_command() {
    let dir = temp_dir("missing");
    let spec = FileSpec::new("x/model.onnx", Source::pypi("packages/x.whl")).with_zip_member(
        "m",
        None,
        Some(10),
    );
    let err = spec.find_in(&dir).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cargo xtask download-files"), "{text}");
    assert!(text.contains("x/model.onnx"), "{text}");

    std::fs::create_dir_all(dir.join("x")).unwrap();
    std::fs::write(dir.join("x/model.onnx"), b"short").unwrap();
    let err = spec.find_in(&dir).unwrap_err();
    assert!(
        err.problem.contains("5 bytes instead of 10"),
        "{}",
        err.problem
    );
}

#[test]
fn source_urls_join_and_honour_overrides() {
    let source = Source::new(
        "https://example.com/",
        Some("LK_DL_TEST_URL_UNSET_XYZ"),
        "/a/b",
    );
    assert_eq!(source.url(), "https://example.com/a/b");
    std::env::set_var("LK_DL_TEST_URL_SET", "http://127.0.0.1:1234/mirror/");
    let source = Source::new("https://example.com", Some("LK_DL_TEST_URL_SET"), "a/b");
    assert_eq!(source.url(), "http://127.0.0.1:1234/mirror/a/b");
    assert_eq!(
        Source::pypi("p").base_url_env.as_deref(),
        Some(PYPI_URL_ENV)
    );
    assert_eq!(
        Source::hugging_face("p").base_url_env.as_deref(),
        Some(HF_URL_ENV)
    );
}

#[test]
fn registry_keeps_the_first_declaration_of_a_file() {
    let a = FileSpec::new("registry-test/a.bin", Source::pypi("a"));
    let b = FileSpec::new("registry-test/a.bin", Source::pypi("b"));
    register_files("plugin-a", [a.clone()]);
    register_files("plugin-b", [b]);
    let found: Vec<_> = registered_files_by_plugin()
        .into_iter()
        .filter(|(_, f)| f.file_name == "registry-test/a.bin")
        .collect();
    assert_eq!(found, vec![("plugin-a".to_owned(), a)]);
    assert!(registered_files()
        .iter()
        .any(|f| f.file_name == "registry-test/a.bin"));
}

#[tokio::test]
async fn unpinned_file_is_downloaded_once_then_kept() {
    // Files whose checksum cannot be pinned (no sha256, no size) are still fetched only once:
    // a present file got there by an atomic rename, so it is complete.
    let body = payload(5_000, 7);
    let server = TestServer::start(vec![("/unpinned.bin", vec![Reply::Ok(body.clone())])]).await;
    let dir = temp_dir("unpinned");
    let spec = FileSpec::new(
        "models/unpinned.bin",
        server.source("LK_DL_TEST_UNPINNED", "unpinned.bin"),
    );

    let first = download_all(std::slice::from_ref(&spec), &options(&dir)).await;
    assert!(first.is_success(), "{first}");
    let again = download_all(std::slice::from_ref(&spec), &options(&dir)).await;
    assert!(matches!(
        again.outcomes[0].status,
        FileStatus::AlreadyPresent
    ));
    assert_eq!(server.hits("/unpinned.bin"), 1);

    // An empty file (never written by the downloader) is not trusted.
    std::fs::write(dir.join("models/unpinned.bin"), b"").unwrap();
    let third = download_all(std::slice::from_ref(&spec), &options(&dir)).await;
    assert!(matches!(
        third.outcomes[0].status,
        FileStatus::Downloaded { .. }
    ));
    assert_eq!(
        std::fs::read(dir.join("models/unpinned.bin")).unwrap(),
        body
    );
}
