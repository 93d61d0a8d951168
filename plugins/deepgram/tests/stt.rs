//! Deepgram v1 listen against a local server speaking the same protocol.
#![allow(clippy::unwrap_used)]

mod support;

use livekit_agents::stt::{SpeechEventType, Stt as _};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_plugins_deepgram::{Stt, SttOptions};
use serde_json::{json, Value};

use support::*;

fn client(server: &FakeServer, opts: SttOptions) -> Stt {
    Stt::new(SttOptions {
        api_key: Some("test-key".into()),
        ..opts
    })
    .unwrap()
    .with_base_url(&server.base_url())
    .unwrap()
}

#[tokio::test]
async fn streams_audio_and_maps_results_to_events() {
    let mut server = FakeServer::start()
        .await
        .refusing(models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let end = push_audio(&stream, 0, 1.0);
    stream.flush();

    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, "/v1/listen");
    assert_eq!(conn.headers["authorization"], "Token test-key");
    for (k, v) in [
        ("model", "nova-3"),
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("punctuate", "true"),
        ("smart_format", "false"),
        ("endpointing", "25"),
        ("no_delay", "true"),
        ("filler_words", "true"),
        ("vad_events", "true"),
        ("language", "en-US"),
    ] {
        assert_eq!(conn.param(k), Some(v), "query parameter {k}");
    }

    // 1 s of audio in 50 ms binary chunks, then Finalize for the flush.
    let mut audio = Vec::new();
    loop {
        match conn.recv().await {
            ClientMsg::Binary(b) => {
                assert_eq!(b.len(), CHUNK_BYTES);
                audio.extend(b);
            }
            ClientMsg::Text(t) => {
                assert_eq!(
                    serde_json::from_str::<Value>(&t).unwrap(),
                    json!({"type": "Finalize"})
                );
                break;
            }
            ClientMsg::Closed => panic!("closed early"),
        }
    }
    assert_eq!(audio, ramp_bytes(0, end));

    conn.send_json(json!({"type": "SpeechStarted", "channel": [0], "timestamp": 0.1}))
        .await;
    conn.send_json(results(
        "Hello",
        &[("Hello", 0.1, 0.4)],
        (0.0, 0.5),
        false,
        false,
    ))
    .await;
    conn.send_json(results(
        "Hello world.",
        &[("Hello", 0.1, 0.4), ("world.", 0.45, 0.9)],
        (0.0, 1.0),
        true,
        true,
    ))
    .await;

    assert_eq!(
        next_speech(&mut stream).await.kind,
        SpeechEventType::StartOfSpeech
    );
    let interim = next_speech(&mut stream).await;
    assert_eq!(interim.kind, SpeechEventType::InterimTranscript);
    assert_eq!(interim.text(), "Hello");
    let fin = next_speech(&mut stream).await;
    assert_eq!(fin.kind, SpeechEventType::FinalTranscript);
    assert_eq!(fin.request_id, "req-1");
    let alt = &fin.alternatives[0];
    assert_eq!(alt.text, "Hello world.");
    assert_eq!(alt.language, "en-US");
    assert!((alt.confidence - 0.95).abs() < 1e-6);
    let words: Vec<_> = alt
        .words
        .iter()
        .map(|w| (w.text.as_str(), w.start_time, w.end_time))
        .collect();
    assert_eq!(words, [("Hello", 0.1, 0.4), ("world.", 0.45, 0.9)]);
    assert_eq!(alt.words[0].confidence, Some(0.9));
    assert_eq!((alt.start_time, alt.end_time), (0.1, 0.9));
    assert_eq!(alt.speaker_id, None, "no diarization requested");
    assert_eq!(
        next_speech(&mut stream).await.kind,
        SpeechEventType::EndOfSpeech
    );

    // End of input: CloseStream, then Metadata reconciles usage with what Deepgram bills.
    stream.end_input();
    let (rest, ctrl) = next_control(&mut conn).await;
    assert!(rest.is_empty());
    assert_eq!(ctrl, Some(json!({"type": "CloseStream"})));
    conn.send_json(
        json!({"type": "Metadata", "request_id": "req-1", "duration": 1.5, "channels": 1}),
    )
    .await;
    conn.close().await;

    let mut usage = 0.0;
    while let Some(ev) = stream.next_event().await {
        let ev = ev.unwrap();
        assert_eq!(ev.kind, SpeechEventType::RecognitionUsage);
        usage += ev.recognition_usage.unwrap().audio_duration;
    }
    assert!((usage - 1.5).abs() < 1e-6, "usage {usage}");
}

/// Issue 15 item 3: a `Metadata` message billing an absurd duration (1e300, used to panic the
/// session's recognition task downstream) is ignored: the usage reported stays what was sent.
#[tokio::test]
async fn absurd_billed_durations_are_ignored() {
    let mut server = FakeServer::start().await;
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.1);
    let mut conn = server.next_conn().await;
    conn.recv_audio(2 * CHUNK_BYTES).await;
    stream.end_input();
    let (_, ctrl) = next_control(&mut conn).await;
    assert_eq!(ctrl, Some(json!({"type": "CloseStream"})));
    for duration in [json!(1e300), json!(-5.0), json!(f64::MAX)] {
        conn.send_json(json!({"type": "Metadata", "request_id": "req-1", "duration": duration}))
            .await;
    }
    conn.close().await;
    let mut usage = 0.0;
    while let Some(ev) = stream.next_event().await {
        if let Some(u) = ev.unwrap().recognition_usage {
            usage += u.audio_duration;
        }
    }
    assert!((usage - 0.1).abs() < 1e-6, "usage {usage}");
}

#[tokio::test]
async fn utterance_end_and_transcript_without_speech_started() {
    let mut server = FakeServer::start()
        .await
        .refusing(models::deepgram_handshake);
    let stt = client(
        &server,
        SttOptions {
            utterance_end_ms: Some(1000),
            diarize: true,
            ..Default::default()
        },
    );
    let mut stream = stt
        .stream(Some("fr".into()), ApiConnectOptions::default())
        .unwrap();
    push_audio(&stream, 0, 0.1);
    let mut conn = server.next_conn().await;
    assert_eq!(conn.param("utterance_end_ms"), Some("1000"));
    assert_eq!(conn.param("diarize"), Some("true"));
    assert_eq!(conn.param("language"), Some("fr"));
    conn.recv_audio(2 * CHUNK_BYTES).await;

    // A final transcript with no SpeechStarted still opens the utterance.
    conn.send_json(results(
        "Bonjour.",
        &[("Bonjour.", 0.0, 0.1)],
        (0.0, 0.1),
        true,
        false,
    ))
    .await;
    conn.send_json(json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 0.1}))
        .await;
    // A duplicated UtteranceEnd does not end speech twice.
    conn.send_json(json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 0.1}))
        .await;
    conn.send_json(json!({"type": "SpeechStarted", "channel": [0], "timestamp": 0.2}))
        .await;

    let kinds = [
        SpeechEventType::StartOfSpeech,
        SpeechEventType::FinalTranscript,
        SpeechEventType::EndOfSpeech,
        SpeechEventType::StartOfSpeech,
    ];
    for kind in kinds {
        let ev = next_speech(&mut stream).await;
        assert_eq!(ev.kind, kind);
        if kind == SpeechEventType::FinalTranscript {
            assert_eq!(ev.alternatives[0].language, "fr");
            assert_eq!(ev.alternatives[0].speaker_id.as_deref(), Some("S0"));
        }
    }
}

#[tokio::test]
async fn error_message_fails_the_stream_after_retries() {
    let mut server = FakeServer::start()
        .await
        .refusing(models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let conn_opts = ApiConnectOptions::default().with_max_retry(0);
    let mut stream = stt.stream(None, conn_opts).unwrap();
    push_audio(&stream, 0, 0.05);
    let mut conn = server.next_conn().await;
    conn.recv_audio(CHUNK_BYTES).await;
    conn.send_json(json!({"type": "Error", "description": "audio could not be decoded", "variant": "DATA-0000"}))
        .await;
    // The audio sent so far is still reported as usage before the error.
    let err = loop {
        match stream.next_event().await.unwrap() {
            Ok(ev) => assert_eq!(ev.kind, SpeechEventType::RecognitionUsage),
            Err(e) => break e,
        }
    };
    let msg = err.to_string();
    assert!(
        msg.contains("audio could not be decoded") && msg.contains("DATA-0000"),
        "{msg}"
    );
    assert!(stream.next_event().await.is_none());
}

#[tokio::test]
async fn malformed_messages_are_skipped() {
    let mut server = FakeServer::start()
        .await
        .refusing(models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.05);
    let mut conn = server.next_conn().await;
    conn.recv_audio(CHUNK_BYTES).await;
    conn.send_text("{not json").await;
    conn.send_json(json!({"type": "Results", "channel": "oops"}))
        .await;
    conn.send_json(json!({"type": "SomethingNew"})).await;
    conn.send_json(json!({"type": "SpeechStarted"})).await;
    assert_eq!(
        next_speech(&mut stream).await.kind,
        SpeechEventType::StartOfSpeech
    );
}

#[tokio::test]
async fn unauthorized_handshake_is_not_retried() {
    let server = FakeServer::start()
        .await
        .refusing(models::deepgram_handshake);
    server.reject_next(401);
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.05);
    let err = stream.next_event().await.unwrap().unwrap_err();
    match &err {
        ApiError::Status {
            status,
            retryable,
            message,
            ..
        } => {
            assert_eq!(*status, 401);
            assert!(!retryable);
            assert!(message.contains("rejected with 401"), "{message}");
            assert!(!message.contains("test-key"));
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn live_deepgram_stream() {
    if std::env::var("DEEPGRAM_API_KEY").is_err() {
        println!("skipping live Deepgram test: DEEPGRAM_API_KEY is not set");
        return;
    }
    let stt = Stt::new(SttOptions::default()).unwrap();
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 1.0);
    stream.end_input();
    while let Some(ev) = stream.next_event().await {
        ev.expect("live stream failed");
    }
}

#[tokio::test]
async fn live_deepgram_flux_and_tts_default_models() {
    // The v2 (Flux, `flux-general-en`) and TTS (`aura-2-andromeda-en`) defaults; the v1
    // default (`nova-3`) is exercised by `live_deepgram_stream`.
    if std::env::var("DEEPGRAM_API_KEY").is_err() {
        println!("skipping live Deepgram test: DEEPGRAM_API_KEY is not set");
        return;
    }
    let flux = livekit_plugins_deepgram::SttV2::new(Default::default()).unwrap();
    let mut stream = flux.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 1.0);
    stream.end_input();
    while let Some(ev) = stream.next_event().await {
        ev.expect("live Flux stream failed");
    }
    use livekit_agents::tts::Tts as _;
    let tts = livekit_plugins_deepgram::Tts::new(Default::default()).unwrap();
    let frame = tts
        .synthesize("Hello from the live test.", ApiConnectOptions::default())
        .collect()
        .await
        .expect("live synthesis failed");
    assert!(frame.samples_per_channel > 0);
}
