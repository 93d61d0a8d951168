//! The production TLS path (rustls with the platform roots, as shipped) against a local
//! Deepgram server behind TLS, whose self-signed certificate this test process trusts through
//! `SSL_CERT_FILE` (its own binary, so no other test shares the changed root store); and the
//! refusal of models Deepgram does not serve.

#![allow(clippy::unwrap_used)]

mod support;

use livekit_agents::stt::Stt as _;
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_plugins_deepgram::{Stt, SttOptions};
use support::*;

#[tokio::test]
async fn streaming_over_wss() {
    let _ = tls::TestTls::shared();
    let mut server = FakeServer::start_tls()
        .await
        .refusing(models::deepgram_handshake);
    assert!(server.base_url().starts_with("https://127.0.0.1:"));
    let stt = Stt::new(SttOptions {
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&server.base_url())
    .unwrap();
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let end = push_audio(&stream, 0, 0.1);
    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, "/v1/listen");
    assert_eq!(conn.param("model"), Some("nova-3"));
    assert_eq!(conn.recv_audio(end * 2).await, ramp_bytes(0, end));
    conn.send_json(results(
        "Hello.",
        &[("Hello.", 0.0, 0.1)],
        (0.0, 0.1),
        true,
        true,
    ))
    .await;
    let text = loop {
        let ev = next_speech(&mut stream).await;
        if ev.kind == livekit_agents::stt::SpeechEventType::FinalTranscript {
            break ev.text().to_string();
        }
    };
    assert_eq!(text, "Hello.");
    stream.end_input();
    let _ = conn.recv_until_text().await;
    conn.close().await;
    while let Some(ev) = stream.next_event().await {
        ev.unwrap();
    }
}

#[tokio::test]
async fn a_model_deepgram_does_not_serve_is_refused_and_not_retried() {
    let server = FakeServer::start_tls()
        .await
        .refusing(models::deepgram_handshake);
    let stt = Stt::new(SttOptions {
        api_key: Some("test-key".into()),
        model: "nova-1-retired".into(),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&server.base_url())
    .unwrap();
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.05);
    let err = stream.next_event().await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Status {
                status: 400,
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("No such model"), "{err}");
    assert_eq!(server.accepted(), 1);
}
