//! Deepgram's REST endpoints (`POST /v1/listen`, `POST /v1/speak`) against a local server.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use livekit_agents::audio::AudioFrame;
use livekit_agents::stt::{self, SpeechEventType, Stt as _};
use livekit_agents::tts::Tts as _;
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_plugins_deepgram::{Stt, SttOptions, Tts, TtsOptions};
use serde_json::json;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

/// Query, headers and body of one request.
type Request = (HashMap<String, String>, HeaderMap, Bytes);

async fn serve(status: Arc<Mutex<Vec<StatusCode>>>) -> (String, Seen) {
    let seen = Seen::default();
    async fn listen(
        State((seen, status)): State<(Seen, Arc<Mutex<Vec<StatusCode>>>)>,
        Query(q): Query<HashMap<String, String>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl IntoResponse {
        seen.0.lock().unwrap().push((q, headers, body));
        let code = status.lock().unwrap().pop().unwrap_or(StatusCode::OK);
        if code != StatusCode::OK {
            return (code, r#"{"err_code":"X","err_msg":"try later"}"#).into_response();
        }
        axum::Json(json!({
            "metadata": {"request_id": "rest-1", "duration": 1.0},
            "results": {"channels": [{"alternatives": [{
                "transcript": "hello world", "confidence": 0.97,
                "words": [
                    {"word": "hello", "punctuated_word": "Hello", "start": 0.1, "end": 0.4, "confidence": 0.99},
                    {"word": "world", "punctuated_word": "world.", "start": 0.5, "end": 0.9, "confidence": 0.95}
                ]}]}]}
        }))
        .into_response()
    }
    async fn speak(
        State((seen, _)): State<(Seen, Arc<Mutex<Vec<StatusCode>>>)>,
        Query(q): Query<HashMap<String, String>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl IntoResponse {
        seen.0.lock().unwrap().push((q, headers, body));
        let pcm: Vec<u8> = (0..2_400i16).flat_map(|s| s.to_le_bytes()).collect();
        (StatusCode::OK, [("content-type", "audio/l16")], pcm)
    }
    let app = Router::new()
        .route("/v1/listen", post(listen))
        .route("/v1/speak", post(speak))
        .with_state((seen.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn recognize_posts_wav_and_parses_words() {
    let (url, seen) = serve(Arc::default()).await;
    let stt = Stt::new(SttOptions {
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&url)
    .unwrap();
    let frames = vec![
        AudioFrame::new(vec![1; 160], 16_000, 1).unwrap(),
        AudioFrame::new(vec![2; 160], 16_000, 1).unwrap(),
    ];
    let ev = stt::recognize(&stt, &frames, Some("en"), ApiConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(ev.kind, SpeechEventType::FinalTranscript);
    assert_eq!(ev.request_id, "rest-1");
    let alt = &ev.alternatives[0];
    assert_eq!(
        (alt.text.as_str(), alt.language.as_str()),
        ("hello world", "en")
    );
    let words: Vec<_> = alt.words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(words, ["Hello", "world."]);
    assert_eq!((alt.start_time, alt.end_time), (0.1, 0.9));

    let (q, headers, body) = seen.0.lock().unwrap().pop().unwrap();
    assert_eq!(q["model"], "nova-3");
    assert_eq!(q["language"], "en");
    assert_eq!(q["punctuate"], "true");
    assert_eq!(headers["authorization"], "Token test-key");
    assert_eq!(headers["content-type"], "audio/wav");
    assert_eq!(&body[..4], b"RIFF");
    assert_eq!(body.len(), 44 + 320 * 2);
    assert_eq!(
        u32::from_le_bytes([body[24], body[25], body[26], body[27]]),
        16_000
    );
}

#[tokio::test]
async fn recognize_retries_server_errors() {
    let statuses = Arc::new(Mutex::new(vec![StatusCode::SERVICE_UNAVAILABLE]));
    let (url, seen) = serve(statuses).await;
    let stt = Stt::new(SttOptions {
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&url)
    .unwrap();
    let frames = vec![AudioFrame::new(vec![0; 160], 16_000, 1).unwrap()];
    // Real sockets on a real clock: keep the retry wait to a millisecond.
    let conn =
        ApiConnectOptions::default().with_retry_interval(std::time::Duration::from_millis(1));
    let ev = stt::recognize(&stt, &frames, None, conn).await.unwrap();
    assert_eq!(ev.text(), "hello world");
    assert_eq!(seen.0.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn recognize_rejects_mixed_formats() {
    let stt = Stt::new(SttOptions {
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .unwrap();
    let frames = vec![
        AudioFrame::new(vec![0; 160], 16_000, 1).unwrap(),
        AudioFrame::new(vec![0; 480], 48_000, 1).unwrap(),
    ];
    let err = stt
        .recognize_once(&frames, None, &ApiConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Other { message: ref m } if m.contains("mix formats")),
        "{err:?}"
    );
}

#[tokio::test]
async fn synthesize_posts_text_and_streams_pcm() {
    let (url, seen) = serve(Arc::default()).await;
    let tts = Tts::new(TtsOptions {
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&url)
    .unwrap();
    let frame = tts
        .synthesize("Hello there.", ApiConnectOptions::default())
        .collect()
        .await
        .unwrap();
    assert_eq!(frame.sample_rate, 24_000);
    assert_eq!(frame.data, (0..2_400i16).collect::<Vec<_>>());
    let (q, headers, body) = seen.0.lock().unwrap().pop().unwrap();
    assert_eq!(q["model"], "aura-2-andromeda-en");
    assert_eq!(q["encoding"], "linear16");
    assert_eq!(q["sample_rate"], "24000");
    assert_eq!(q["container"], "none");
    assert_eq!(headers["authorization"], "Token test-key");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        json!({"text": "Hello there."})
    );
}
