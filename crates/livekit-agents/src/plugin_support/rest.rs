//! One-shot HTTP requests to a provider: send within a timeout, turn error statuses into
//! [`ApiError`]s, stream a raw PCM body into a TTS [`AudioEmitter`].

use std::time::Duration;

use futures::StreamExt;

use super::ws::{summarize_body, Provider};
use crate::tts::AudioEmitter;
use crate::types::ApiError;

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
    /// summarized body and the request id.
    pub async fn check_status(
        &self,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ApiError> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let request_id = self.request_id(response.headers());
        let text = response.text().await.unwrap_or_default();
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
            .route("/pcm", post(|| async { vec![1u8, 0, 2, 0, 3, 0, 4, 0] }));
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
