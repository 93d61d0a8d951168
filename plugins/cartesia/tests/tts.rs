//! Cartesia TTS against local servers speaking the same protocol.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use livekit_agents::tts::Tts as _;
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_plugins_cartesia::{Tts, TtsOptions};
use serde_json::{json, Value};
use support::*;

type Captured = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A `/tts/bytes` endpoint answering with `status` and 0.2 s of 24 kHz PCM (a ramp).
async fn bytes_server(status: StatusCode) -> (String, Captured) {
    let captured: Captured = Arc::default();
    async fn handler(
        State((captured, status)): State<(Captured, StatusCode)>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> impl IntoResponse {
        let version_ok = headers
            .get("cartesia-version")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| models::accepts("cartesia", "api_versions", v));
        let refusal = models::cartesia_tts_refusal(&body);
        captured.lock().unwrap().push((headers, body));
        if !version_ok {
            return (StatusCode::BAD_REQUEST, r#"{"error_code":"invalid_api_version","title":"Invalid API version","message":"unsupported Cartesia-Version"}"#.as_bytes().to_vec()).into_response();
        }
        if let Some(err) = refusal {
            let status = err["status_code"]
                .as_u64()
                .and_then(|s| StatusCode::from_u16(s as u16).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            return (status, err.to_string().into_bytes()).into_response();
        }
        if status != StatusCode::OK {
            return (status, r#"{"error":"invalid api key"}"#.as_bytes().to_vec()).into_response();
        }
        let pcm: Vec<u8> = (0..4_800i16).flat_map(|s| s.to_le_bytes()).collect();
        (StatusCode::OK, [("content-type", "audio/pcm")], pcm).into_response()
    }
    let app = Router::new()
        .route("/tts/bytes", post(handler))
        .with_state((captured.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), captured)
}

fn client(base_url: &str) -> Tts {
    Tts::new(TtsOptions {
        api_key: Some("test-key".into()),
        speed: Some(1.1),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(base_url)
    .unwrap()
}

#[tokio::test]
async fn synthesize_posts_to_bytes_and_streams_pcm() {
    let (url, captured) = bytes_server(StatusCode::OK).await;
    let tts = client(&url);
    let frame = tts
        .synthesize(
            "Hello from the bytes endpoint.",
            ApiConnectOptions::default(),
        )
        .collect()
        .await
        .unwrap();
    assert_eq!(frame.sample_rate, 24_000);
    assert_eq!(frame.data, (0..4_800i16).collect::<Vec<_>>());

    let (headers, body) = captured.lock().unwrap().pop().unwrap();
    assert_eq!(headers["x-api-key"], "test-key");
    assert_eq!(headers["cartesia-version"], "2026-03-01");
    assert_eq!(body["transcript"], "Hello from the bytes endpoint.");
    assert_eq!(body["model_id"], "sonic-3.5");
    assert_eq!(body["voice"]["mode"], "id");
    assert_eq!(
        body["output_format"],
        json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000})
    );
    assert!((body["generation_config"]["speed"].as_f64().unwrap() - 1.1).abs() < 1e-6);
}

#[tokio::test]
async fn synthesize_unauthorized_is_not_retried() {
    let (url, captured) = bytes_server(StatusCode::UNAUTHORIZED).await;
    let tts = client(&url);
    let err = tts
        .synthesize("Hello.", ApiConnectOptions::default())
        .collect()
        .await
        .unwrap_err();
    match err {
        ApiError::Status {
            status,
            retryable,
            message,
            ..
        } => {
            assert_eq!(status, 401);
            assert!(!retryable);
            assert!(message.contains("invalid api key"));
            assert!(!message.contains("test-key"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(captured.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn websocket_over_tcp() {
    let mut server = FakeServer::start()
        .await
        .refusing(models::cartesia_handshake);
    let tts = client(&server.base_url());
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("Over a real socket this time.");
    stream.end_input();
    let mut conn = server.next_conn().await;
    let context_id = loop {
        let ClientMsg::Text(t) = conn.recv().await else {
            panic!("expected a request")
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["continue"] == false {
            break v["context_id"].as_str().unwrap().to_string();
        }
    };
    let pcm: Vec<u8> = [3i16; 480].iter().flat_map(|s| s.to_le_bytes()).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(pcm);
    conn.send_json(json!({"type": "chunk", "data": data, "done": false, "context_id": context_id}))
        .await;
    conn.send_json(json!({"type": "done", "done": true, "context_id": context_id}))
        .await;
    let mut samples = Vec::new();
    while let Some(audio) = stream.next_audio().await {
        samples.extend(audio.unwrap().frame.data);
    }
    assert_eq!(samples, vec![3; 480]);
}

#[tokio::test]
async fn a_sunsetted_model_is_refused_and_not_retried() {
    let (url, captured) = bytes_server(StatusCode::OK).await;
    let tts = Tts::new(TtsOptions {
        api_key: Some("test-key".into()),
        model: "sonic-2".into(),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&url)
    .unwrap();
    let err = tts
        .synthesize("Hello.", ApiConnectOptions::default())
        .collect()
        .await
        .unwrap_err();
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
    assert!(err.to_string().contains("sunsetted"), "{err}");
    assert_eq!(captured.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn live_cartesia_tts() {
    if std::env::var("CARTESIA_API_KEY").is_err() {
        println!("skipping live Cartesia test: CARTESIA_API_KEY is not set");
        return;
    }
    let tts = Tts::new(TtsOptions::default()).unwrap();
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("Hello from the live test.");
    stream.end_input();
    let mut samples = 0;
    while let Some(audio) = stream.next_audio().await {
        samples += audio
            .expect("live synthesis failed")
            .frame
            .samples_per_channel;
    }
    assert!(samples > 0);
}

#[tokio::test]
async fn live_cartesia_stt() {
    // The STT default model (`ink-whisper`) on the live API.
    if std::env::var("CARTESIA_API_KEY").is_err() {
        println!("skipping live Cartesia STT test: CARTESIA_API_KEY is not set");
        return;
    }
    use livekit_agents::stt::Stt as _;
    let stt = livekit_plugins_cartesia::Stt::new(Default::default()).unwrap();
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    for _ in 0..100 {
        stream.push_frame(livekit_agents::audio::AudioFrame::silence(16_000, 1, 160));
    }
    stream.end_input();
    while let Some(ev) = stream.next_event().await {
        ev.expect("live Cartesia STT stream failed");
    }
}
