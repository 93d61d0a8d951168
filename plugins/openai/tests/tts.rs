//! The TTS against a local server streaming PCM from `/audio/speech`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Reply, Server, StreamEnd};
use livekit_agents::tts::Tts as _;
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_plugins_openai::{Tts, TtsOptions};

fn conn() -> ApiConnectOptions {
    ApiConnectOptions {
        max_retry: 2,
        retry_interval: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    }
}

/// `ms` of a ramp at 24 kHz as little-endian bytes, split into `parts` pieces of odd sizes
/// (so samples straddle pieces).
fn pcm_parts(ms: usize, parts: usize) -> (Vec<i16>, Vec<Vec<u8>>) {
    let samples: Vec<i16> = (0..ms * 24).map(|i| (i % 1000) as i16 - 500).collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let size = bytes.len() / parts + 1;
    (samples, bytes.chunks(size).map(<[u8]>::to_vec).collect())
}

fn pcm_reply(parts: Vec<Vec<u8>>) -> Reply {
    Reply::Stream {
        content_type: "audio/pcm",
        parts,
        pause: Duration::ZERO,
        end: StreamEnd::Close,
    }
}

fn tts(server: &Server, opts: TtsOptions) -> Tts {
    Tts::new(TtsOptions {
        api_key: Some("sk-tts".into()),
        base_url: Some(server.base_url()),
        ..opts
    })
    .unwrap()
}

#[tokio::test]
async fn synthesizes_pcm_and_sends_the_expected_request() {
    let (samples, parts) = pcm_parts(230, 7);
    let server = Server::start(vec![pcm_reply(parts)]).await;
    let t = tts(
        &server,
        TtsOptions {
            voice: "coral".into(),
            speed: 1.25,
            instructions: Some("Speak warmly.".into()),
            ..Default::default()
        },
    );
    assert_eq!(t.sample_rate(), 24_000);
    let frame = t
        .synthesize("Hello there!", conn())
        .collect()
        .await
        .unwrap();
    assert_eq!(frame.sample_rate, 24_000);
    assert_eq!(frame.num_channels, 1);
    assert_eq!(frame.data, samples, "every sample arrives, in order");

    let r = &server.requests().await[0];
    assert_eq!(r.path, "/v1/audio/speech");
    assert_eq!(r.header("authorization").unwrap(), "Bearer sk-tts");
    assert_eq!(
        r.json(),
        serde_json::json!({
            "model": "gpt-4o-mini-tts",
            "input": "Hello there!",
            "voice": "coral",
            "response_format": "pcm",
            "speed": 1.25,
            "instructions": "Speak warmly.",
        })
    );
}

#[tokio::test]
async fn audio_is_emitted_as_it_arrives() {
    // 200 ms of audio, then the server holds the response open.
    let (_, parts) = pcm_parts(200, 2);
    let server = Server::start(vec![pcm_reply(parts).ending(StreamEnd::Hang)]).await;
    let t = tts(&server, TtsOptions::default());
    let mut stream = t.synthesize("A long sentence.", conn());
    let mut got = 0;
    while got < 24 * 200 {
        let audio = tokio::time::timeout(
            Duration::from_secs(30),
            futures::StreamExt::next(&mut stream),
        )
        .await
        .expect("audio before the response ends")
        .unwrap()
        .unwrap();
        assert!(!audio.is_final, "the response is still open");
        got += audio.frame.samples_per_channel;
    }
    assert_eq!(got, 24 * 200);
    assert_eq!(server.state.delivered.load(Ordering::SeqCst), 2);
    drop(stream);
    tokio::time::timeout(Duration::from_secs(30), server.state.client_gone.notified())
        .await
        .expect("dropping the stream closes the connection");
}

#[tokio::test]
async fn errors_are_typed_and_retried_by_status() {
    let (samples, parts) = pcm_parts(50, 1);
    let server = Server::start(vec![
        Reply::Status(500, r#"{"error":{"message":"overloaded"}}"#.into()),
        pcm_reply(parts),
        Reply::Status(401, r#"{"error":{"message":"bad key"}}"#.into()),
    ])
    .await;
    let t = tts(&server, TtsOptions::default());
    let frame = t.synthesize("retry me", conn()).collect().await.unwrap();
    assert_eq!(frame.data, samples);
    assert_eq!(server.requests().await.len(), 2);

    let err = t.synthesize("no key", conn()).collect().await.unwrap_err();
    assert!(matches!(
        err,
        ApiError::Status {
            status: 401,
            retryable: false,
            ..
        }
    ));
    assert!(!err.to_string().contains("sk-tts"));
    assert_eq!(server.requests().await.len(), 3);
}

#[tokio::test]
async fn live_openai_speech() {
    if std::env::var("OPENAI_API_KEY").is_err() {
        println!("skipping live OpenAI TTS test: OPENAI_API_KEY is not set");
        return;
    }
    let t = Tts::new(TtsOptions::default()).unwrap();
    let frame = t
        .synthesize("Hello.", ApiConnectOptions::default())
        .collect()
        .await
        .unwrap();
    assert!(frame.samples_per_channel > 2400);
}

#[tokio::test]
async fn azure_speech_uses_the_deployment_path_and_api_key() {
    let (samples, parts) = pcm_parts(20, 1);
    let server = Server::start(vec![pcm_reply(parts)]).await;
    let t = Tts::with_azure(
        livekit_plugins_openai::AzureConnection {
            azure_endpoint: Some(format!("http://{}", server.addr)),
            azure_deployment: Some("tts-dep".into()),
            api_key: Some("az-tts".into()),
            api_version: Some("2025-03-01-preview".into()),
            ..Default::default()
        },
        TtsOptions::default(),
    )
    .unwrap();
    assert!(!format!("{t:?}").contains("az-tts"));
    assert_eq!(
        t.synthesize("hi", conn()).collect().await.unwrap().data,
        samples
    );
    let r = &server.requests().await[0];
    assert_eq!(r.path, "/openai/deployments/tts-dep/audio/speech");
    assert_eq!(r.query.as_deref(), Some("api-version=2025-03-01-preview"));
    assert_eq!(r.header("api-key").unwrap(), "az-tts");
    assert!(r.header("authorization").is_none());
}
