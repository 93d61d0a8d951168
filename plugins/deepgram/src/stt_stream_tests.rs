//! Stream timing and recovery on tokio's paused clock, over in-memory connections (no real
//! sockets, so the clock only advances when every task is blocked).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::test_support::*;
use livekit_agents::stt::{SpeechEventType, Stt as _};
use livekit_agents::types::ApiConnectOptions;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{Stt, SttOptions};
use crate::common::Dialer;
use crate::flux::{FluxOptions, SttV2};

fn client(server: &FakeServer, opts: SttOptions) -> Stt {
    Stt::new(SttOptions {
        api_key: Some("test-key".into()),
        ..opts
    })
    .unwrap()
    .with_base_url("ws://127.0.0.1:9")
    .unwrap()
    .with_dialer(Dialer::Memory(server.connector()))
}

#[tokio::test(start_paused = true)]
async fn keepalive_only_after_five_seconds_without_audio() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let mut pos = push_audio(&stream, 0, 0.1);
    let mut conn = server.next_conn().await;
    conn.recv_audio(2 * CHUNK_BYTES).await;
    let last_audio = Instant::now();

    // Nothing is sent: the only pending timer is the keepalive, due 5 s after the last audio.
    match conn.recv().await {
        ClientMsg::Text(t) => assert_eq!(
            serde_json::from_str::<Value>(&t).unwrap(),
            json!({"type": "KeepAlive"})
        ),
        other => panic!("expected KeepAlive, got {other:?}"),
    }
    assert_eq!(Instant::now() - last_audio, Duration::from_secs(5));

    // Audio every 2 s keeps the socket busy: no KeepAlive for 8 s.
    let t0 = Instant::now();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        pos = push_audio(&stream, pos, 0.05);
        conn.recv_audio(CHUNK_BYTES).await;
    }
    assert_eq!(Instant::now() - t0, Duration::from_secs(8));
    let last_audio = Instant::now();
    match conn.recv().await {
        ClientMsg::Text(t) => assert!(t.contains("KeepAlive")),
        other => panic!("expected KeepAlive, got {other:?}"),
    }
    assert_eq!(Instant::now() - last_audio, Duration::from_secs(5));
    drop(stream);
}

#[tokio::test(start_paused = true)]
async fn dropped_socket_reconnects_and_resends_only_unfinalized_audio() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let end1 = push_audio(&stream, 0, 1.0);

    let mut conn1 = server.next_conn().await;
    assert_eq!(
        conn1.recv_audio(20 * CHUNK_BYTES).await,
        ramp_bytes(0, end1)
    );
    // Deepgram finalized the first 0.6 s, then the socket dies.
    conn1
        .send_json(results(
            "One.",
            &[("One.", 0.1, 0.5)],
            (0.0, 0.6),
            true,
            true,
        ))
        .await;
    assert_eq!(
        next_speech(&mut stream).await.kind,
        SpeechEventType::StartOfSpeech
    );
    let first = next_speech(&mut stream).await;
    assert_eq!(
        (first.text(), first.kind),
        ("One.", SpeechEventType::FinalTranscript)
    );
    assert_eq!(
        next_speech(&mut stream).await.kind,
        SpeechEventType::EndOfSpeech
    );
    conn1.drop_abruptly();

    // The new connection first gets exactly the 0.4 s Deepgram had not finalized.
    let mut conn2 = server.next_conn().await;
    let finalized = (0.6 * RATE as f64) as usize;
    assert_eq!(
        conn2.recv_audio((end1 - finalized) * 2).await,
        ramp_bytes(finalized, end1)
    );
    let end2 = push_audio(&stream, end1, 0.5);
    stream.end_input();
    let (audio, ctrl) = next_control(&mut conn2).await;
    assert_eq!(audio, ramp_bytes(end1, end2));
    assert_eq!(ctrl, Some(json!({"type": "CloseStream"})));
    // Timestamps of the new connection start at the resent audio: 0.6 s into the stream.
    conn2
        .send_json(results(
            "Two.",
            &[("Two.", 0.2, 0.7)],
            (0.0, 0.9),
            true,
            true,
        ))
        .await;
    conn2.close().await;

    let mut finals = vec![first];
    while let Some(ev) = stream.next_event().await {
        let ev = ev.unwrap();
        if ev.kind == SpeechEventType::FinalTranscript {
            finals.push(ev);
        }
    }
    let texts: Vec<_> = finals.iter().map(|f| f.text().to_string()).collect();
    assert_eq!(texts, ["One.", "Two."], "no transcript lost or duplicated");
    let w = &finals[1].alternatives[0].words[0];
    assert!(
        (w.start_time - 0.8).abs() < 1e-9 && (w.end_time - 1.3).abs() < 1e-9,
        "{w:?}"
    );
    assert_eq!(server.accepted(), 2);
}

#[tokio::test(start_paused = true)]
async fn update_options_reconnects_after_the_utterance() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let end1 = push_audio(&stream, 0, 0.5);
    let mut conn1 = server.next_conn().await;
    assert!(conn1.params("keyterm").is_empty());
    conn1.recv_audio(10 * CHUNK_BYTES).await;
    conn1
        .send_json(json!({"type": "SpeechStarted", "channel": [0], "timestamp": 0.0}))
        .await;
    // Let the client see SpeechStarted before the update.
    tokio::time::sleep(Duration::from_millis(10)).await;

    stt.update_options(|o| o.keyterms = vec!["LiveKit".into(), "Deepgram".into()]);
    // Mid-utterance, the old connection keeps receiving audio.
    let end2 = push_audio(&stream, end1, 0.2);
    assert_eq!(
        conn1.recv_audio(4 * CHUNK_BYTES).await,
        ramp_bytes(end1, end2)
    );
    conn1
        .send_json(results("Hi.", &[("Hi.", 0.1, 0.3)], (0.0, 0.4), true, true))
        .await;

    // After the end of speech the client reconnects with the new options and resends the
    // audio after the finalized 0.4 s.
    let mut conn2 = server.next_conn().await;
    assert_eq!(conn2.params("keyterm"), ["LiveKit", "Deepgram"]);
    let finalized = (0.4 * RATE as f64) as usize;
    assert_eq!(
        conn2.recv_audio((end2 - finalized) * 2).await,
        ramp_bytes(finalized, end2)
    );
    let end3 = push_audio(&stream, end2, 0.1);
    assert_eq!(
        conn2.recv_audio(2 * CHUNK_BYTES).await,
        ramp_bytes(end2, end3)
    );
    assert_eq!(stt.options().keyterms.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn server_error_status_is_retried() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    server.reject_next(503);
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let end = push_audio(&stream, 0, 0.1);
    let mut conn = server.next_conn().await;
    assert_eq!(conn.recv_audio(end * 2).await, ramp_bytes(0, end));
    conn.send_json(json!({"type": "SpeechStarted"})).await;
    assert_eq!(
        next_speech(&mut stream).await.kind,
        SpeechEventType::StartOfSpeech
    );
    assert_eq!(server.accepted(), 2);
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_applies_backpressure_without_loss() {
    const N: usize = 1_000;
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.05);
    let mut conn = server.next_conn().await;
    conn.recv_audio(CHUNK_BYTES).await;

    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent_by_server = sent.clone();
    let padding = "x".repeat(4_000);
    let server_task = tokio::spawn(async move {
        for i in 0..N {
            let mut msg = results(&format!("w{i}"), &[], (0.0, 0.0), false, false);
            msg["padding"] = json!(padding);
            conn.send_json(msg).await;
            sent_by_server.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        conn
    });

    // The consumer reads nothing for a minute: once everything is blocked the paused clock
    // jumps here. A plugin buffering without bound would have let the server send it all.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let sent_while_stalled = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent_while_stalled < N,
        "server sent all {N} messages to a stalled consumer"
    );

    // Draining delivers every interim, in order.
    let mut expected = 0;
    while expected < N {
        let ev = next_speech(&mut stream).await;
        if ev.kind == SpeechEventType::InterimTranscript {
            assert_eq!(ev.text(), format!("w{expected}"));
            expected += 1;
        }
    }
    let _conn = server_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn flux_turns_become_preflight_final_and_end_of_speech() {
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    let stt = SttV2::new(FluxOptions {
        api_key: Some("test-key".into()),
        eager_eot_threshold: Some(0.4),
        keyterms: vec!["LiveKit".into()],
        ..Default::default()
    })
    .unwrap()
    .with_base_url("ws://127.0.0.1:9")
    .unwrap()
    .with_dialer(Dialer::Memory(server.connector()));
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let end = push_audio(&stream, 0, 0.5);
    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, "/v2/listen");
    assert_eq!(conn.headers["authorization"], "Token test-key");
    for (k, v) in [
        ("model", "flux-general-en"),
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("eager_eot_threshold", "0.4"),
        ("keyterm", "LiveKit"),
    ] {
        assert_eq!(conn.param(k), Some(v), "query parameter {k}");
    }
    assert_eq!(conn.recv_audio(end * 2).await, ramp_bytes(0, end));

    let turn = |event: &str, transcript: &str, window_end: f64| {
        json!({"type": "TurnInfo", "request_id": "flux-1", "sequence_id": 1, "event": event,
            "turn_index": 0, "audio_window_start": 0.0, "audio_window_end": window_end,
            "transcript": transcript, "end_of_turn_confidence": 0.5,
            "words": transcript.split_whitespace().enumerate().map(|(i, w)| json!({
                "word": w, "start": 0.1 * i as f64, "end": 0.1 * i as f64 + 0.08, "confidence": 0.9}))
                .collect::<Vec<_>>()})
    };
    conn.send_json(json!({"type": "Connected", "request_id": "flux-1", "sequence_id": 0}))
        .await;
    conn.send_json(turn("StartOfTurn", "", 0.1)).await;
    conn.send_json(turn("Update", "book a", 0.3)).await;
    conn.send_json(turn("EagerEndOfTurn", "book a table", 0.45))
        .await;
    conn.send_json(turn("TurnResumed", "book a table", 0.45))
        .await;
    conn.send_json(turn("EagerEndOfTurn", "book a table for two", 0.5))
        .await;
    conn.send_json(turn("EndOfTurn", "book a table for two", 0.5))
        .await;

    use SpeechEventType::*;
    let expected = [
        (StartOfSpeech, ""),
        (InterimTranscript, "book a"),
        (PreflightTranscript, "book a table"),
        (InterimTranscript, "book a table"),
        (PreflightTranscript, "book a table for two"),
        (FinalTranscript, "book a table for two"),
        (EndOfSpeech, ""),
    ];
    for (kind, text) in expected {
        let ev = next_speech(&mut stream).await;
        assert_eq!((ev.kind, ev.text()), (kind, text));
        assert_eq!(ev.request_id, "flux-1");
    }

    // No Finalize on flush and no KeepAlive on v2: the next message is CloseStream.
    stream.flush();
    stream.end_input();
    let (audio, text) = conn.recv_until_text().await;
    assert!(audio.is_empty());
    assert_eq!(
        serde_json::from_str::<Value>(&text.unwrap()).unwrap(),
        json!({"type": "CloseStream"})
    );
    conn.close().await;
    while let Some(ev) = stream.next_event().await {
        assert_eq!(ev.unwrap().kind, RecognitionUsage);
    }
}

fn flux_client(server: &FakeServer) -> SttV2 {
    SttV2::new(FluxOptions {
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url("ws://127.0.0.1:9")
    .unwrap()
    .with_dialer(Dialer::Memory(server.connector()))
}

#[tokio::test(start_paused = true)]
async fn flux_downmixes_stereo_instead_of_sending_channels() {
    // Flux turns follow one speaker: stereo input is downmixed to mono before it is sent,
    // and no `channels` parameter goes out.
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    let stt = flux_client(&server);
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let samples = 8_000; // 0.5 s
    let mono = ramp_frame(0, samples, RATE);
    let stereo: Vec<i16> = mono.data.iter().flat_map(|s| [*s, *s]).collect();
    stream.push_frame(livekit_agents::audio::AudioFrame::new(stereo, RATE, 2).unwrap());
    let mut conn = server.next_conn().await;
    assert_eq!(conn.param("channels"), None);
    assert_eq!(conn.param("sample_rate"), Some("16000"));
    assert_eq!(conn.recv_audio(samples * 2).await, ramp_bytes(0, samples));
    stream.end_input();
    let (_, text) = conn.recv_until_text().await;
    assert_eq!(
        serde_json::from_str::<Value>(&text.unwrap()).unwrap(),
        json!({"type": "CloseStream"})
    );
    conn.close().await;
    while let Some(ev) = stream.next_event().await {
        ev.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn undecodable_audio_is_not_retried_but_network_timeouts_are() {
    // 1002 DATA-0000: Deepgram cannot decode the audio; sending it again cannot succeed.
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.2);
    let conn = server.next_conn().await;
    conn.close_with(
        1002,
        "DATA-0000: The payload cannot be decoded as audio. It is either not audio data or is a codec unsupported by Deepgram.",
    )
    .await;
    let err = loop {
        match stream.next_event().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the stream must fail"),
        }
    };
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("DATA-0000"), "{err}");
    assert_eq!(server.accepted(), 1, "no reconnection");

    // 1011 NET-0001: nothing arrived in time; a new connection can succeed.
    let mut server = FakeServer::start_memory()
        .refusing(livekit_plugin_test_support::models::deepgram_handshake);
    let stt = client(&server, SttOptions::default());
    let mut stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    push_audio(&stream, 0, 0.2);
    let conn = server.next_conn().await;
    conn.close_with(
        1011,
        "NET-0001: Deepgram did not receive audio data or a text message within the timeout window.",
    )
    .await;
    let mut second = server.next_conn().await;
    stream.end_input();
    let (_, text) = second.recv_until_text().await;
    assert!(text.unwrap().contains("CloseStream"));
    second.close().await;
    while let Some(ev) = stream.next_event().await {
        ev.unwrap();
    }
}

#[test]
fn error_messages_about_the_request_are_not_retryable() {
    let parse = |v: Value| serde_json::from_value::<super::ErrorMessage>(v).unwrap();
    assert!(
        !parse(json!({"description": "Failed to decode audio", "variant": "DATA-0000"}))
            .retryable()
    );
    assert!(!parse(json!({"code": "INVALID_QUERY_PARAMETER", "description": "bad"})).retryable());
    assert!(parse(json!({"description": "internal error", "variant": "NET-0000"})).retryable());
    assert!(parse(json!({"description": "timeout"})).retryable());
}

/// Issue 15 item 7: a server that takes audio but never answers is noticed (twice the connect
/// timeout after the first unanswered audio) and the stream reconnects, resending what was not
/// finalized.
#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_audio_is_reconnected() {
    let mut server = FakeServer::start_memory();
    let stt = client(&server, SttOptions::default());
    let stream = stt.stream(None, ApiConnectOptions::default()).unwrap();
    let mut pos = push_audio(&stream, 0, 0.1);
    let mut conn = server.next_conn().await;
    conn.recv_audio(2 * CHUNK_BYTES).await;
    // The stalled server reads everything and says nothing.
    let drain =
        tokio::spawn(async move { while !matches!(conn.recv().await, ClientMsg::Closed) {} });
    // Audio keeps coming once a second; without stall detection nothing ever reconnects.
    let mut conn2 = None;
    for _ in 0..60 {
        tokio::select! {
            c = server.next_conn() => {
                conn2 = Some(c);
                break;
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                pos = push_audio(&stream, pos, 0.05);
            }
        }
    }
    let mut conn2 = conn2.expect("the stalled connection was never replaced");
    // The new connection starts with the unfinalized audio.
    match conn2.recv().await {
        ClientMsg::Binary(b) => assert_eq!(b.len(), CHUNK_BYTES),
        other => panic!("expected resent audio, got {other:?}"),
    }
    drop(stream);
    let _ = drain.await;
}
