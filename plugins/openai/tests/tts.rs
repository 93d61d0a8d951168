//! The TTS against a local server streaming PCM from `/audio/speech`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use common::{recv_json, send_json, Reply, Server, StreamEnd, WsServer};
use livekit_agents::tts::Tts as _;
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_plugin_test_support::models;
use livekit_plugins_openai::{Tts, TtsOptions, REALTIME_TTS_MODEL};
use serde_json::{json, Value};

fn conn() -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(2)
        .with_retry_interval(Duration::from_millis(10))
        .with_timeout(Duration::from_secs(5))
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

/// A fake Realtime API server answering each `response.create` with `samples` as audio
/// deltas (two events), its transcript, and `response.done` with `status`. A session voice the
/// API does not have is refused with an `error` event, as the real API does. Every client
/// event is logged.
async fn realtime_speech_server(
    samples: Vec<i16>,
    status: &'static str,
) -> (WsServer, std::sync::Arc<tokio::sync::Mutex<Vec<Value>>>) {
    let log: std::sync::Arc<tokio::sync::Mutex<Vec<Value>>> = Default::default();
    let l = log.clone();
    let server = WsServer::start(None, move |mut ws| {
        let log = l.clone();
        let samples = samples.clone();
        async move {
            send_json(&mut ws, json!({"type": "session.created", "session": {}})).await;
            while let Some(ev) = recv_json(&mut ws).await {
                log.lock().await.push(ev.clone());
                match ev["type"].as_str().unwrap() {
                    "session.update" => {
                        let voice = ev["session"]["audio"]["output"]["voice"].as_str().unwrap_or("");
                        if !models::accepts("openai", "realtime_voices", voice) {
                            send_json(&mut ws, json!({"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value", "param": "session.audio.output.voice", "message": format!("Invalid value: '{voice}'.")}})).await;
                        } else {
                            send_json(&mut ws, json!({"type": "session.updated", "session": ev["session"]})).await;
                        }
                    }
                    "response.create" => {
                        let metadata = ev["response"]["metadata"].clone();
                        let text = ev["response"]["input"][0]["content"][0]["text"].as_str().unwrap_or("").to_string();
                        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                        let (a, b) = bytes.split_at(bytes.len() / 2 + 1);
                        let b64 = |x: &[u8]| base64::engine::general_purpose::STANDARD.encode(x);
                        for e in [
                            json!({"type": "response.created", "response": {"id": "resp_tts", "status": "in_progress", "conversation_id": null, "metadata": metadata}}),
                            json!({"type": "response.output_item.added", "response_id": "resp_tts", "item": {"id": "item_tts", "type": "message", "role": "assistant"}}),
                            json!({"type": "response.output_audio.delta", "response_id": "resp_tts", "item_id": "item_tts", "delta": b64(a)}),
                            json!({"type": "response.output_audio_transcript.delta", "response_id": "resp_tts", "item_id": "item_tts", "delta": text}),
                            // Another response's audio on the same socket is not ours.
                            json!({"type": "response.output_audio.delta", "response_id": "resp_other", "item_id": "x", "delta": b64(&[1, 2, 3, 4])}),
                            json!({"type": "response.output_audio.delta", "response_id": "resp_tts", "item_id": "item_tts", "delta": b64(b)}),
                            json!({"type": "response.done", "response": {"id": "resp_tts", "status": status, "status_details": if status == "completed" { Value::Null } else { json!({"type": status, "reason": "content_filter"}) }}}),
                            // Sent after each response; left on an idle pooled connection.
                            json!({"type": "rate_limits.updated", "rate_limits": []}),
                        ] {
                            send_json(&mut ws, e).await;
                        }
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    (server, log)
}

/// A TTS on `server` with the realtime speech model (overriding `opts.model`).
fn realtime_tts(server: &WsServer, opts: TtsOptions) -> Tts {
    Tts::new(TtsOptions {
        api_key: Some("sk-tts".into()),
        base_url: Some(server.base_url()),
        model: REALTIME_TTS_MODEL.into(),
        ..opts
    })
    .unwrap()
}

#[tokio::test]
async fn a_realtime_model_speaks_through_the_realtime_api() {
    let (samples, _) = pcm_parts(120, 1);
    let (server, log) = realtime_speech_server(samples.clone(), "completed").await;
    let t = realtime_tts(
        &server,
        TtsOptions {
            voice: "marin".into(),
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
    assert_eq!(
        frame.data, samples,
        "every sample arrives, in order, and only ours"
    );

    let hs = server.handshakes.lock().await[0].clone();
    assert_eq!(hs.path, "/v1/realtime");
    assert_eq!(hs.query.as_deref(), Some("model=gpt-realtime-2.1-mini"));
    assert_eq!(hs.header("authorization").unwrap(), "Bearer sk-tts");
    let first_log = log.lock().await.clone();
    let update = &first_log[0]["session"];
    assert_eq!(update["type"], "realtime");
    assert_eq!(update["output_modalities"], json!(["audio"]));
    assert_eq!(update["audio"]["input"]["turn_detection"], Value::Null);
    assert_eq!(
        update["audio"]["output"],
        json!({"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.25})
    );
    let create = &first_log[1];
    assert_eq!(create["type"], "response.create");
    assert_eq!(
        create["response"]["conversation"], "none",
        "out of band: no conversation grows"
    );
    assert_eq!(
        create["response"]["input"],
        json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there!"}]}])
    );
    let instructions = create["response"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("word for word") && instructions.ends_with("Delivery: Speak warmly.")
    );

    // The next text reuses the pooled connection: no handshake, no second session.update.
    assert_eq!(t.idle_connections(), 1);
    let again = t.synthesize("Again.", conn()).collect().await.unwrap();
    assert_eq!(again.data, samples);
    assert_eq!(server.handshakes.lock().await.len(), 1);
    let log_now = log.lock().await.clone();
    let kinds: Vec<&str> = log_now
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["session.update", "response.create", "response.create"]
    );
    assert_eq!(
        log_now[2]["response"]["input"][0]["content"][0]["text"],
        "Again."
    );
    // Another voice needs its own session (a session's voice is fixed once it has spoken).
    t.update_options(|o| o.voice = "cedar".into());
    t.synthesize("Third.", conn()).collect().await.unwrap();
    assert_eq!(server.handshakes.lock().await.len(), 2);
    assert_eq!(t.idle_connections(), 2);
}

#[tokio::test]
async fn realtime_speech_refusals_are_errors() {
    let (samples, _) = pcm_parts(20, 1);
    // A voice realtime models do not have: the session update is refused.
    let (server, _) = realtime_speech_server(samples.clone(), "completed").await;
    let t = realtime_tts(
        &server,
        TtsOptions {
            voice: "fable".into(),
            ..Default::default()
        },
    );
    let err = t.synthesize("Hi", conn()).collect().await.unwrap_err();
    assert!(err.to_string().contains("invalid_value"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(t.idle_connections(), 0, "a failed connection is not kept");
    assert!(!err.to_string().contains("sk-tts"));

    // A response that ends without completing.
    let (server, _) = realtime_speech_server(samples, "incomplete").await;
    let t = realtime_tts(
        &server,
        TtsOptions {
            voice: "marin".into(),
            ..Default::default()
        },
    );
    let err = t.synthesize("Hi", conn()).collect().await.unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");

    // Realtime models take at most 1.5x speed, and are not served through Azure's speech path.
    assert!(Tts::new(TtsOptions {
        api_key: Some("k".into()),
        model: REALTIME_TTS_MODEL.into(),
        speed: 2.0,
        ..Default::default()
    })
    .is_err());
    // A retired realtime model is refused at the handshake.
    let (server, _) = realtime_speech_server(vec![0; 10], "completed").await;
    let t = Tts::new(TtsOptions {
        api_key: Some("sk-tts".into()),
        base_url: Some(server.base_url()),
        model: "gpt-realtime-1.5".into(),
        ..Default::default()
    })
    .unwrap();
    let err = t.synthesize("Hi", conn()).collect().await.unwrap_err();
    assert!(matches!(err, ApiError::Status { status: 404, .. }), "{err}");
}

#[tokio::test]
async fn live_openai_realtime_speech() {
    if std::env::var("OPENAI_API_KEY").is_err() {
        println!("skipping live OpenAI realtime TTS test: OPENAI_API_KEY is not set");
        return;
    }
    let t = Tts::new(TtsOptions {
        model: REALTIME_TTS_MODEL.into(),
        voice: "marin".into(),
        ..Default::default()
    })
    .unwrap();
    let frame = t
        .synthesize("Hello.", ApiConnectOptions::default())
        .collect()
        .await
        .unwrap();
    assert!(frame.samples_per_channel > 2400);
}
