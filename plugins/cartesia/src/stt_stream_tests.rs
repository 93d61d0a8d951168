//! The STT WebSocket protocol against a scripted server over in-memory connections, on
//! tokio's paused clock.
#![allow(clippy::unwrap_used)]

use crate::test_support::*;
use livekit_agents::stt::{SpeechEvent, SpeechEventType, SpeechStream, Stt as _};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use serde_json::json;

use super::{Stt, SttOptions};
use crate::common::Dialer;

const RATE: u32 = 16_000;
/// Bytes of one 100 ms chunk at 16 kHz mono.
const CHUNK_BYTES: usize = 3_200;

fn client(server: &FakeServer) -> Stt {
    Stt::new(SttOptions {
        api_key: Some("test-key".into()),
        min_volume: Some(0.1),
        ..Default::default()
    })
    .unwrap()
    .with_base_url("http://127.0.0.1:9")
    .unwrap()
    .with_dialer(Dialer::Memory(server.connector()))
}

fn push_audio(stream: &SpeechStream, start: usize, secs: f64) -> usize {
    let total = (secs * RATE as f64) as usize;
    let mut pos = start;
    while pos < start + total {
        let n = 320.min(start + total - pos);
        stream.push_frame(ramp_frame(pos, n, RATE));
        pos += n;
    }
    pos
}

async fn next_speech(stream: &mut SpeechStream) -> SpeechEvent {
    loop {
        let ev = stream.next_event().await.unwrap().unwrap();
        if ev.kind != SpeechEventType::RecognitionUsage {
            return ev;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn finalize_on_flush_and_close_at_the_end() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let stt = client(&server);
    let mut stream = stt
        .stream(Some("en-US".into()), ApiConnectOptions::default())
        .unwrap();
    let end = push_audio(&stream, 0, 0.5);
    stream.flush();

    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, "/stt/websocket");
    for (k, v) in [
        ("model", "ink-whisper"),
        ("encoding", "pcm_s16le"),
        ("sample_rate", "16000"),
        ("language", "en"),
        ("min_volume", "0.1"),
        ("cartesia_version", "2026-03-01"),
    ] {
        assert_eq!(conn.param(k), Some(v), "query parameter {k}");
    }
    assert_eq!(conn.headers["x-api-key"], "test-key");
    let (audio, text) = conn.recv_until_text().await;
    assert_eq!(audio, ramp_bytes(0, end));
    assert_eq!(text.as_deref(), Some("finalize"));

    conn.send_json(json!({"type": "transcript", "is_final": false, "request_id": "r1", "text": "How are",
        "duration": 0.3, "words": [{"word": "How", "start": 0.0, "end": 0.12}, {"word": "are", "start": 0.15, "end": 0.25}]})).await;
    conn.send_json(json!({"type": "transcript", "is_final": true, "request_id": "r1", "text": "How are you?",
        "duration": 0.5, "language": "en", "words": [{"word": "you?", "start": 0.28, "end": 0.45}]})).await;
    conn.send_json(json!({"type": "flush_done", "request_id": "r1"}))
        .await;

    assert_eq!(
        next_speech(&mut stream).await.kind,
        SpeechEventType::StartOfSpeech
    );
    let interim = next_speech(&mut stream).await;
    assert_eq!(
        (interim.kind, interim.text()),
        (SpeechEventType::InterimTranscript, "How are")
    );
    assert_eq!(interim.alternatives[0].words[1].text, "are");
    // The audio sent so far is reported just before the final transcript.
    let usage = stream.next_event().await.unwrap().unwrap();
    assert_eq!(usage.kind, SpeechEventType::RecognitionUsage);
    assert!((usage.recognition_usage.unwrap().audio_duration - 0.5).abs() < 1e-9);
    let fin = next_speech(&mut stream).await;
    assert_eq!(
        (fin.kind, fin.text()),
        (SpeechEventType::FinalTranscript, "How are you?")
    );
    assert_eq!(fin.request_id, "r1");
    assert_eq!(
        next_speech(&mut stream).await.kind,
        SpeechEventType::EndOfSpeech
    );

    stream.end_input();
    let (rest, text) = conn.recv_until_text().await;
    assert!(rest.is_empty());
    assert_eq!(text.as_deref(), Some("close"));
    conn.send_json(json!({"type": "done", "request_id": "r1"}))
        .await;
    assert!(
        stream.next_event().await.is_none(),
        "the stream ends after done"
    );
}

#[tokio::test(start_paused = true)]
async fn reconnect_resends_audio_after_the_last_flush_done() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let stt = client(&server);
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let end1 = push_audio(&stream, 0, 0.4);
    stream.flush();
    let mut conn1 = server.next_conn().await;
    let (audio, text) = conn1.recv_until_text().await;
    assert_eq!((audio.len(), text.as_deref()), (end1 * 2, Some("finalize")));
    conn1
        .send_json(
            json!({"type": "transcript", "is_final": true, "text": "First.", "duration": 0.4}),
        )
        .await;
    conn1.send_json(json!({"type": "flush_done"})).await;
    let first = loop {
        let ev = next_speech(&mut stream).await;
        if ev.kind == SpeechEventType::FinalTranscript {
            break ev;
        }
    };
    assert_eq!(first.text(), "First.");
    let end2 = push_audio(&stream, end1, 0.3);
    assert_eq!(
        conn1.recv_audio(3 * CHUNK_BYTES).await,
        ramp_bytes(end1, end2)
    );
    conn1.drop_abruptly();

    // Only the audio after the finalized 0.4 s is resent.
    let mut conn2 = server.next_conn().await;
    assert_eq!(
        conn2.recv_audio(3 * CHUNK_BYTES).await,
        ramp_bytes(end1, end2)
    );
    stream.flush();
    assert_eq!(conn2.recv_until_text().await.1.as_deref(), Some("finalize"));
    conn2
        .send_json(
            json!({"type": "transcript", "is_final": true, "text": "Second.", "duration": 0.3,
        "words": [{"word": "Second.", "start": 0.05, "end": 0.25}]}),
        )
        .await;
    let second = loop {
        let ev = next_speech(&mut stream).await;
        if ev.kind == SpeechEventType::FinalTranscript {
            break ev;
        }
    };
    let alt = &second.alternatives[0];
    assert_eq!(alt.text, "Second.");
    assert!((alt.start_time - 0.4).abs() < 1e-9 && (alt.end_time - 0.7).abs() < 1e-9);
    assert!((alt.words[0].start_time - 0.45).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn error_message_fails_the_stream() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::cartesia_handshake);
    let stt = client(&server);
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.1);
    let mut conn = server.next_conn().await;
    conn.recv_audio(CHUNK_BYTES).await;
    conn.send_json(json!({"type": "error", "code": 400, "message": "unsupported sample rate"}))
        .await;
    let err = loop {
        match stream.next_event().await.unwrap() {
            Ok(ev) => assert_eq!(ev.kind, SpeechEventType::RecognitionUsage),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            &err,
            ApiError::Status {
                status: 400,
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("unsupported sample rate"));
    assert_eq!(server.accepted(), 1);
}
