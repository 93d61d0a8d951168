//! The TTS WebSocket protocol against a scripted server over in-memory connections, on
//! tokio's paused clock.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::test_support::*;
use base64::Engine as _;
use livekit_agents::tts::{SynthesizeStream, SynthesizedAudio, Tts as _};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use serde_json::{json, Value};

use super::{Tts, TtsOptions};
use crate::common::Dialer;

fn client(server: &FakeServer) -> Tts {
    Tts::new(TtsOptions {
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url("http://127.0.0.1:9")
    .unwrap()
    .with_dialer(Dialer::Memory(server.connector()))
}

/// Reads generation requests until one with `continue: false`; returns them all.
async fn read_context(conn: &mut FakeConn) -> Vec<Value> {
    let mut requests = Vec::new();
    loop {
        match conn.recv().await {
            ClientMsg::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let last = v["continue"] == false;
                requests.push(v);
                if last {
                    return requests;
                }
            }
            other => panic!("expected a generation request, got {other:?}"),
        }
    }
}

fn pcm(samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn collect(stream: &mut SynthesizeStream) -> Result<Vec<SynthesizedAudio>, ApiError> {
    let mut frames = Vec::new();
    while let Some(item) = stream.next_audio().await {
        frames.push(item?);
    }
    Ok(frames)
}

#[tokio::test(start_paused = true)]
async fn streams_sentences_on_one_context_and_aligns_words() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let tts = client(&server);
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("Hello there, how are");
    stream.push_text(" you today? I am fine.");
    stream.end_input();

    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, "/tts/websocket");
    assert_eq!(conn.param("cartesia_version"), Some("2026-03-01"));
    assert_eq!(conn.headers["x-api-key"], "test-key");
    assert_eq!(conn.headers["cartesia-version"], "2026-03-01");

    let requests = read_context(&mut conn).await;
    let context_id = requests[0]["context_id"].as_str().unwrap().to_string();
    let mut text = String::new();
    for r in &requests {
        assert_eq!(
            r["context_id"],
            context_id.as_str(),
            "one context for the stream"
        );
        assert_eq!(r["model_id"], "sonic-3.5");
        assert_eq!(r["add_timestamps"], true);
        assert_eq!(r["language"], "en");
        assert_eq!(
            r["output_format"],
            json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000})
        );
        text.push_str(r["transcript"].as_str().unwrap());
    }
    assert!(requests[..requests.len() - 1]
        .iter()
        .all(|r| r["continue"] == true));
    assert_eq!(text, "Hello there, how are you today? I am fine.  ");

    // 0.1 s of audio in two chunks, with word timestamps between them.
    let samples: Vec<i16> = (0..2_400).map(|i| i as i16).collect();
    conn.send_json(json!({"type": "chunk", "data": pcm(&samples[..1_000]), "done": false, "status_code": 206, "context_id": context_id})).await;
    conn.send_json(json!({"type": "timestamps", "done": false, "context_id": context_id,
        "word_timestamps": {"words": ["Hello", "there,", "how"], "start": [0.0, 0.3, 0.6], "end": [0.25, 0.55, 0.8]}})).await;
    conn.send_json(json!({"type": "chunk", "data": pcm(&samples[1_000..]), "done": false, "status_code": 206, "context_id": context_id})).await;
    conn.send_json(
        json!({"type": "done", "done": true, "status_code": 206, "context_id": context_id}),
    )
    .await;

    let frames = collect(&mut stream).await.unwrap();
    let audio: Vec<i16> = frames
        .iter()
        .flat_map(|f| f.frame.data.iter().copied())
        .collect();
    assert_eq!(audio, samples);
    assert!(frames.iter().all(|f| f.segment_id == context_id));
    assert!(frames.last().unwrap().is_final);
    assert_eq!(frames.iter().filter(|f| f.is_final).count(), 1);
    let words: Vec<_> = frames.iter().flat_map(|f| f.timed_words.iter()).collect();
    let texts: Vec<_> = words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(texts, ["Hello", " there,", " how"]);
    assert_eq!((words[1].start_time, words[1].end_time), (0.3, 0.55));
}

#[tokio::test(start_paused = true)]
async fn segments_use_one_context_each_in_order() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let tts = client(&server);
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("The first segment is here.");
    stream.flush();
    stream.push_text("And here comes the second one.");
    stream.end_input();

    let mut conn = server.next_conn().await;
    let first = read_context(&mut conn).await;
    let id1 = first[0]["context_id"].as_str().unwrap().to_string();
    conn.send_json(
        json!({"type": "chunk", "data": pcm(&[1; 600]), "done": false, "context_id": id1}),
    )
    .await;
    conn.send_json(json!({"type": "done", "done": true, "context_id": id1}))
        .await;
    // The second context starts only after the first finished, so audio never interleaves.
    let second = read_context(&mut conn).await;
    let id2 = second[0]["context_id"].as_str().unwrap().to_string();
    assert_ne!(id1, id2);
    assert_eq!(second[0]["transcript"], "And here comes the second one. ");
    conn.send_json(
        json!({"type": "chunk", "data": pcm(&[2; 600]), "done": false, "context_id": id2}),
    )
    .await;
    conn.send_json(json!({"type": "done", "done": true, "context_id": id2}))
        .await;

    let frames = collect(&mut stream).await.unwrap();
    let segments: Vec<_> = frames
        .iter()
        .map(|f| (f.segment_id.clone(), f.is_final))
        .collect();
    assert_eq!(segments.first().unwrap().0, id1);
    assert_eq!(segments.iter().filter(|(_, fin)| *fin).count(), 2);
    let split = segments.iter().position(|(id, _)| *id == id2).unwrap();
    assert!(
        segments[split - 1].1,
        "segment 1 ends before segment 2 starts"
    );
    assert!(frames[..split]
        .iter()
        .all(|f| f.frame.data.iter().all(|&s| s == 1)));
    assert!(frames[split..]
        .iter()
        .all(|f| f.frame.data.iter().all(|&s| s == 2)));
}

#[tokio::test(start_paused = true)]
async fn dropped_socket_before_audio_retries_with_the_same_text() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let tts = client(&server);
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("Retry me, please.");
    stream.end_input();

    let mut conn1 = server.next_conn().await;
    let first = read_context(&mut conn1).await;
    conn1.drop_abruptly();

    let mut conn2 = server.next_conn().await;
    let second = read_context(&mut conn2).await;
    let transcripts = |r: &[Value]| {
        r.iter()
            .map(|v| v["transcript"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(transcripts(&first), transcripts(&second));
    let id = second[0]["context_id"].as_str().unwrap().to_string();
    conn2
        .send_json(
            json!({"type": "chunk", "data": pcm(&[7; 1_200]), "done": false, "context_id": id}),
        )
        .await;
    conn2
        .send_json(json!({"type": "done", "done": true, "context_id": id}))
        .await;

    let frames = collect(&mut stream).await.unwrap();
    let audio: Vec<i16> = frames
        .iter()
        .flat_map(|f| f.frame.data.iter().copied())
        .collect();
    assert_eq!(audio, vec![7; 1_200], "audio of one attempt only");
    assert_eq!(server.accepted(), 2);
}

#[tokio::test(start_paused = true)]
async fn error_frame_fails_without_retry_for_client_errors() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let tts = client(&server);
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("Hello there, my friend.");
    stream.end_input();
    let mut conn = server.next_conn().await;
    let requests = read_context(&mut conn).await;
    let id = requests[0]["context_id"].as_str().unwrap().to_string();
    conn.send_json(
        json!({"type": "error", "done": true, "title": "Invalid voice",
        "message": "The voice was not found.", "error_code": "voice_not_found",
        "status_code": 400, "context_id": id}),
    )
    .await;
    let err = collect(&mut stream).await.unwrap_err();
    match err {
        ApiError::Status {
            status,
            retryable,
            message,
            ..
        } => {
            assert_eq!(status, 400);
            assert!(!retryable);
            assert!(message.contains("voice was not found") && message.contains("voice_not_found"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test(start_paused = true)]
async fn silent_server_times_out() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let tts = client(&server);
    let conn_opts = ApiConnectOptions::default()
        .with_max_retry(0)
        .with_timeout(Duration::from_secs(3));
    let mut stream = tts.stream(conn_opts).unwrap();
    stream.push_text("Is anybody out there?");
    stream.end_input();
    let mut conn = server.next_conn().await;
    read_context(&mut conn).await;
    let started = tokio::time::Instant::now();
    let err = collect(&mut stream).await.unwrap_err();
    assert!(
        matches!(err, ApiError::Timeout(d) if d == Duration::from_secs(3)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_applies_backpressure_without_loss() {
    const CHUNKS: usize = 400;
    const PER_CHUNK: usize = 2_400; // 100 ms at 24 kHz
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let tts = client(&server);
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("A long answer that takes a while to say.");
    stream.end_input();
    let mut conn = server.next_conn().await;
    let requests = read_context(&mut conn).await;
    let id = requests[0]["context_id"].as_str().unwrap().to_string();

    let sent = Arc::new(AtomicUsize::new(0));
    let sent_by_server = sent.clone();
    let server_task = tokio::spawn(async move {
        for i in 0..CHUNKS {
            let samples = vec![(i % 100) as i16; PER_CHUNK];
            conn.send_json(
                json!({"type": "chunk", "data": pcm(&samples), "done": false, "context_id": id}),
            )
            .await;
            sent_by_server.fetch_add(1, Ordering::SeqCst);
        }
        conn.send_json(json!({"type": "done", "done": true, "context_id": id}))
            .await;
        conn
    });

    // Nobody reads audio for a minute: the paused clock jumps once every task is blocked.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let while_stalled = sent.load(Ordering::SeqCst);
    assert!(
        while_stalled < CHUNKS,
        "all {CHUNKS} chunks were accepted by a stalled consumer"
    );

    let frames = collect(&mut stream).await.unwrap();
    let total: usize = frames.iter().map(|f| f.frame.samples_per_channel).sum();
    assert_eq!(total, CHUNKS * PER_CHUNK);
    let _conn = server_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn finished_streams_reuse_the_socket_and_prewarm_fills_the_pool() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let tts = client(&server);
    tts.prewarm().await;
    assert_eq!(tts.pool.len(), 1);
    let mut conn = server.next_conn().await;
    for turn in 0..2 {
        let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
        stream.push_text(format!("This is turn number {turn}."));
        stream.end_input();
        let requests = read_context(&mut conn).await;
        let id = requests[0]["context_id"].as_str().unwrap().to_string();
        conn.send_json(
            json!({"type": "chunk", "data": pcm(&[turn; 240]), "done": false, "context_id": id}),
        )
        .await;
        conn.send_json(json!({"type": "done", "done": true, "context_id": id}))
            .await;
        let frames = collect(&mut stream).await.unwrap();
        assert!(frames
            .iter()
            .flat_map(|f| f.frame.data.iter())
            .all(|&s| s == turn));
    }
    assert_eq!(
        server.accepted(),
        1,
        "one socket for the prewarm and both turns"
    );
    assert_eq!(tts.pool.len(), 1);

    // Idle for longer than five minutes: the pooled socket is not reused.
    tokio::time::advance(std::time::Duration::from_secs(301)).await;
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("A fresh socket.");
    stream.end_input();
    let mut conn2 = server.next_conn().await;
    let requests = read_context(&mut conn2).await;
    assert_eq!(requests.last().unwrap()["continue"], false);
    assert_eq!(server.accepted(), 2);
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn a_sunsetted_model_fails_the_stream_without_retry() {
    // The local server answers a retired model the way Cartesia does since 2026-06-01
    // (`model_sunsetted`, status 400); the stream fails at once instead of reconnecting.
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let tts = Tts::new(TtsOptions {
        api_key: Some("test-key".into()),
        model: "sonic-2-2025-03-07".into(),
        ..Default::default()
    })
    .unwrap()
    .with_base_url("ws://127.0.0.1:9")
    .unwrap()
    .with_dialer(Dialer::Memory(server.connector()));
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("Hello there.");
    stream.end_input();
    let mut conn = server.next_conn().await;
    let requests = read_context(&mut conn).await;
    let refusal = livekit_plugin_test_support::models::cartesia_tts_refusal(&requests[0])
        .expect("the local server refuses the retired model");
    conn.send_json(refusal).await;
    let err = collect(&mut stream).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("model_sunsetted"), "{err}");
    assert_eq!(server.accepted(), 1);
    assert!(
        livekit_plugin_test_support::models::cartesia_tts_refusal(&Value::Object(
            TtsOptions::default().request_base()
        ))
        .is_none(),
        "the default model and voice are accepted"
    );
}
