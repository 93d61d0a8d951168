//! One-shot HTTP requests to a provider: send within a timeout, turn error statuses into
//! [`ApiError`]s, stream a raw PCM body into a TTS [`AudioEmitter`].

use std::time::Duration;

use futures::StreamExt;

use super::ws::{summarize_body, Provider};
use crate::tts::AudioEmitter;
use crate::types::ApiError;

/// At most this much of an error response's body is read (64 KiB): only a summary of it goes
/// into the error, and a hostile or broken server may send an endless body.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// How long reading an error body may take before what arrived is used (5 s).
pub const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads at most `limit` bytes of `response`'s body, for at most `timeout`, as (lossy UTF-8)
/// text; the rest of the body is never read. For error bodies, which are only summarized.
pub async fn read_body_prefix(
    response: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> String {
    let mut body = response.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = body.next().await {
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if buf.len() >= limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads the whole body of `response` if it has at most `limit` bytes, waiting at most
/// `timeout` in all. A longer body is an [`ApiError::Protocol`] (nothing past `limit` is kept),
/// a timeout [`ApiError::Timeout`], a transport failure a retryable connection error.
pub async fn read_body_limited(
    provider: &str,
    response: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let mut body = response.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::connection(format!("{provider} response failed: {}", e.without_url()))
            })?;
            if buf.len().saturating_add(chunk.len()) > limit {
                return Err(ApiError::protocol(format!(
                    "{provider} response body larger than {limit} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::Timeout(timeout))??;
    Ok(buf)
}

impl Provider {
    /// Sends `request`, waiting at most `timeout` for the response headers. An expired timeout
    /// becomes [`ApiError::Timeout`], a transport failure a retryable connection error (without
    /// the URL, which may carry query parameters). The response is returned whatever its
    /// status: see [`Provider::check_status`].
    pub async fn send_http(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, ApiError> {
        tokio::time::timeout(timeout, request.send())
            .await
            .map_err(|_| ApiError::Timeout(timeout))?
            .map_err(|e| {
                ApiError::connection(format!(
                    "{} request failed: {}",
                    self.name(),
                    e.without_url()
                ))
            })
    }

    /// `response` when its status is 2xx; otherwise [`Provider::status_error`] with the
    /// summarized body (at most [`MAX_ERROR_BODY_BYTES`] of it read) and the request id.
    pub async fn check_status(
        &self,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ApiError> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let request_id = self.request_id(response.headers());
        let text = read_body_prefix(response, MAX_ERROR_BODY_BYTES, ERROR_BODY_TIMEOUT).await;
        Err(self.status_error(status, &summarize_body(&text), request_id))
    }

    /// Pushes a raw little-endian 16-bit PCM body to `emitter` as it arrives, waiting at most
    /// `timeout` for each chunk. Ends early (successfully) when the emitter's consumer is gone.
    pub async fn stream_pcm_body(
        &self,
        response: reqwest::Response,
        timeout: Duration,
        emitter: &AudioEmitter,
    ) -> Result<(), ApiError> {
        let mut body = response.bytes_stream();
        loop {
            let chunk = tokio::time::timeout(timeout, body.next())
                .await
                .map_err(|_| ApiError::Timeout(timeout))?;
            match chunk {
                None => return Ok(()),
                Some(Err(e)) => {
                    return Err(ApiError::connection(format!(
                        "{} audio stream failed: {}",
                        self.name(),
                        e.without_url()
                    )))
                }
                Some(Ok(bytes)) => {
                    if !emitter.push_pcm_bytes(&bytes).await {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;

    const ACME: Provider = Provider::new("Acme", "x-request-id");

    /// A server on 127.0.0.1: `/busy` refuses with 503, `/pcm` answers 4 samples of PCM.
    async fn serve() -> String {
        let app = Router::new()
            .route(
                "/busy",
                post(|| async {
                    let mut headers = HeaderMap::new();
                    headers.insert("x-request-id", "req-9".parse().unwrap());
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        headers,
                        r#"{"message":"try later"}"#,
                    )
                }),
            )
            .route("/pcm", post(|| async { vec![1u8, 0, 2, 0, 3, 0, 4, 0] }))
            .route(
                "/endless",
                post(|| async {
                    // An error body that never ends (1 MiB pieces).
                    let piece = bytes::Bytes::from(vec![b'x'; 1 << 20]);
                    let body = futures::stream::repeat_with(move || {
                        Ok::<_, std::io::Error>(piece.clone())
                    });
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        axum::body::Body::from_stream(body),
                    )
                }),
            )
            .route("/big", post(|| async { vec![b'{'; 2 * 1024 * 1024] }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn error_statuses_and_pcm_bodies() {
        let base = serve().await;
        let http = reqwest::Client::new();
        let timeout = Duration::from_secs(10);

        let response = ACME
            .send_http(http.post(format!("{base}/busy")), timeout)
            .await
            .unwrap();
        let err = ACME.check_status(response).await.unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(
            err.to_string(),
            "Acme refused the request (HTTP 503): try later (status 503, request req-9)"
        );

        let response = ACME
            .send_http(http.post(format!("{base}/pcm")), timeout)
            .await
            .unwrap();
        let response = ACME.check_status(response).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let emitter = AudioEmitter::new(tx, 1000, 1, 2);
        ACME.stream_pcm_body(response, timeout, &emitter)
            .await
            .unwrap();
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.frame.data, vec![1, 2]);
    }

    /// Issue 15 item 7: an endless (or 300 MB) error body is read only up to
    /// `MAX_ERROR_BODY_BYTES`; a success body past its limit is refused.
    #[tokio::test]
    async fn bodies_are_read_within_bounds() {
        let base = serve().await;
        let http = reqwest::Client::new();
        let timeout = Duration::from_secs(10);
        let response = ACME
            .send_http(http.post(format!("{base}/endless")), timeout)
            .await
            .unwrap();
        // The guard only fires on failure (an unbounded read never ends).
        let err = tokio::time::timeout(Duration::from_secs(60), ACME.check_status(response))
            .await
            .expect("error body read without bound")
            .unwrap_err();
        assert!(err.to_string().contains("HTTP 500"), "{err}");

        let response = ACME
            .send_http(http.post(format!("{base}/big")), timeout)
            .await
            .unwrap();
        let err = read_body_limited("Acme", response, 1024 * 1024, timeout)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Protocol { .. }), "{err}");
        let response = ACME
            .send_http(http.post(format!("{base}/big")), timeout)
            .await
            .unwrap();
        let body = read_body_limited("Acme", response, 4 * 1024 * 1024, timeout)
            .await
            .unwrap();
        assert_eq!(body.len(), 2 * 1024 * 1024);
    }

    #[tokio::test]
    async fn transport_failures_are_retryable_connection_errors() {
        // A port nothing listens on (bound, then released).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = ACME
            .send_http(
                reqwest::Client::new().post(format!("http://{addr}/x?token=secret")),
                Duration::from_secs(10),
            )
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert!(err.to_string().contains("Acme request failed"), "{err}");
        assert!(!err.to_string().contains("secret"));
    }
}
