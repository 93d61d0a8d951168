//! The STT against local servers: `/audio/transcriptions` (multipart) and a realtime
//! transcription WebSocket.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{recv_json, send_json, Reply, Server, WsServer};
use livekit_agents::audio::AudioFrame;
use livekit_agents::stt::{SpeechEventType, Stt as _};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_plugins_openai::{Stt, SttOptions};
use serde_json::json;
use tokio::sync::Mutex;

fn conn() -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(2)
        .with_retry_interval(Duration::from_millis(10))
        .with_timeout(Duration::from_secs(5))
}

fn speech(ms: usize, rate: u32) -> Vec<AudioFrame> {
    (0..ms / 10)
        .map(|i| {
            let n = rate as usize / 100;
            let data = (0..n)
                .map(|j| (((i * n + j) as f32 * 0.05).sin() * 8000.0) as i16)
                .collect();
            AudioFrame::new(data, rate, 1).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn recognize_uploads_wav_as_multipart_with_model_language_and_prompt() {
    let server = Server::start(vec![Reply::Json(
        r#"{"text":" Hello there. ","usage":{"type":"tokens","input_tokens":10,"output_tokens":3}}"#
            .into(),
    )])
    .await;
    let stt = Stt::new(SttOptions {
        api_key: Some("sk-stt".into()),
        base_url: Some(server.base_url()),
        prompt: Some("Names: LiveKit".into()),
        ..Default::default()
    })
    .unwrap();
    let frames = speech(500, 16_000);
    let ev = stt.recognize_once(&frames, None, &conn()).await.unwrap();
    assert_eq!(ev.kind, SpeechEventType::FinalTranscript);
    assert_eq!(ev.text(), "Hello there.");
    assert_eq!(ev.alternatives[0].language, "en");
    assert!((ev.alternatives[0].end_time - 0.5).abs() < 1e-9);

    let r = &server.requests().await[0];
    assert_eq!(r.path, "/v1/audio/transcriptions");
    assert_eq!(r.header("authorization").unwrap(), "Bearer sk-stt");
    let ct = r.header("content-type").unwrap();
    let boundary = ct
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart content type");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\"\r\n\r\n");
        let start = body.find(&marker).unwrap_or_else(|| panic!("field {name}")) + marker.len();
        body[start..].split("\r\n").next().unwrap().to_string()
    };
    assert_eq!(field("model"), "gpt-transcribe");
    assert_eq!(
        field("languages[]"),
        "en",
        "gpt-transcribe takes the plural `languages`"
    );
    assert!(
        !body.contains("name=\"language\""),
        "and refuses `language`"
    );
    assert_eq!(field("prompt"), "Names: LiveKit");
    assert_eq!(field("response_format"), "json");
    assert!(body
        .contains("name=\"file\"; filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF"));
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));
    // The WAV carries the frames' rate and all their samples.
    let start = r.body.windows(4).position(|w| w == b"RIFF").unwrap();
    let wav = &r.body[start..];
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 16_000);
    let decoded = livekit_agents::audio::wav::decode_wav(&wav[..wav.len()]).or_else(|_| {
        // The multipart tail follows the WAV bytes: cut at the boundary.
        let end = wav
            .windows(2 + boundary.len())
            .position(|w| w.ends_with(boundary.as_bytes()))
            .unwrap();
        livekit_agents::audio::wav::decode_wav(&wav[..end - 4])
    });
    assert_eq!(decoded.unwrap().samples_per_channel, 8000);
}

#[tokio::test]
async fn recognize_with_explicit_language_and_errors() {
    let server = Server::start(vec![
        Reply::Json(r#"{"text":"bonjour"}"#.into()),
        Reply::Status(401, r#"{"error":{"message":"bad key"}}"#.into()),
    ])
    .await;
    let stt = Stt::new(SttOptions {
        api_key: Some("sk-stt".into()),
        base_url: Some(server.base_url()),
        model: "whisper-1".into(),
        ..Default::default()
    })
    .unwrap();
    let ev = stt
        .recognize_once(&speech(100, 24_000), Some("fr"), &conn())
        .await
        .unwrap();
    assert_eq!(ev.text(), "bonjour");
    let body = String::from_utf8_lossy(&server.requests().await[0].body).into_owned();
    assert!(body.contains("name=\"language\"\r\n\r\nfr\r\n"));
    assert!(body.contains("name=\"model\"\r\n\r\nwhisper-1\r\n"));

    let err = livekit_agents::stt::recognize(&stt, &speech(100, 24_000), None, conn())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ApiError::Status {
            status: 401,
            retryable: false,
            ..
        }
    ));
    assert_eq!(server.requests().await.len(), 2, "401 is not retried");
}

#[tokio::test]
async fn region_codes_are_sent_as_iso_639_1() {
    // The API takes ISO-639-1 codes only: `en-US` is refused (the local server answers
    // 400 like the API), so the plugin sends `en`.
    let server = Server::start(vec![
        Reply::Json(r#"{"text":"hi","language":"english"}"#.into()),
        Reply::Json(r#"{"text":"salut","languages":[{"code":"fr"}]}"#.into()),
    ])
    .await;
    let stt = Stt::new(SttOptions {
        api_key: Some("sk-stt".into()),
        base_url: Some(server.base_url()),
        model: "gpt-4o-mini-transcribe".into(),
        language: Some("en-US".into()),
        ..Default::default()
    })
    .unwrap();
    stt.recognize_once(&speech(100, 16_000), None, &conn())
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&server.requests().await[0].body).into_owned();
    assert!(body.contains("name=\"language\"\r\n\r\nen\r\n"), "{body}");
    let stt = Stt::new(SttOptions {
        api_key: Some("sk-stt".into()),
        base_url: Some(server.base_url()),
        ..Default::default()
    })
    .unwrap();
    let ev = stt
        .recognize_once(&speech(100, 16_000), Some("fr-CA"), &conn())
        .await
        .unwrap();
    assert_eq!(
        ev.alternatives[0].language, "fr",
        "from `languages[0].code`"
    );
    let body = String::from_utf8_lossy(&server.requests().await[1].body).into_owned();
    assert!(
        body.contains("name=\"languages[]\"\r\n\r\nfr\r\n"),
        "{body}"
    );
}

#[tokio::test]
async fn streaming_transcription_over_the_realtime_socket() {
    let appended = Arc::new(Mutex::new(0usize));
    let session_update = Arc::new(Mutex::new(None));
    let (a, s) = (appended.clone(), session_update.clone());
    let server = WsServer::start(None, move |mut ws| {
        let (appended, session_update) = (a.clone(), s.clone());
        async move {
            let mut appends = 0;
            while let Some(ev) = recv_json(&mut ws).await {
                match ev["type"].as_str().unwrap() {
                    "session.update" => {
                        *session_update.lock().await = Some(ev.clone());
                        match common::transcription_session_refusal(&ev) {
                            Some(err) => send_json(&mut ws, err).await,
                            None => send_json(&mut ws, json!({"type": "session.updated", "session": ev["session"]})).await,
                        }
                    }
                    "input_audio_buffer.append" => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(ev["audio"].as_str().unwrap())
                            .unwrap();
                        *appended.lock().await += bytes.len() / 2;
                        appends += 1;
                        if appends == 1 {
                            send_json(&mut ws, json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 100, "item_id": "item_1"})).await;
                        }
                        if appends == 10 {
                            send_json(&mut ws, json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 500, "item_id": "item_1"})).await;
                            send_json(&mut ws, json!({"type": "input_audio_buffer.committed", "item_id": "item_1"})).await;
                            send_json(&mut ws, json!({"type": "conversation.item.input_audio_transcription.delta", "item_id": "item_1", "delta": "Hel"})).await;
                            send_json(&mut ws, json!({"type": "conversation.item.input_audio_transcription.delta", "item_id": "item_1", "delta": "lo"})).await;
                            send_json(&mut ws, json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_1", "transcript": "Hello"})).await;
                        }
                    }
                    "input_audio_buffer.commit" => {
                        // The trailing audio after the turn is silence.
                        send_json(&mut ws, json!({"type": "input_audio_buffer.committed", "item_id": "item_2"})).await;
                        send_json(&mut ws, json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_2", "transcript": " "})).await;
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    let stt = Stt::new(SttOptions {
        api_key: Some("sk-rt".into()),
        base_url: Some(server.base_url()),
        use_realtime: true,
        ..Default::default()
    })
    .unwrap();
    assert!(stt.capabilities().streaming && stt.capabilities().interim_results);
    let mut stream = stt.stream(None, conn()).unwrap();
    for f in speech(1000, 16_000) {
        stream.push_frame(f);
    }
    stream.end_input();
    let mut events = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("stream ends")
    {
        let ev = ev.unwrap();
        events.push((ev.kind, ev.text().to_string()));
    }
    assert_eq!(
        events,
        vec![
            (SpeechEventType::StartOfSpeech, String::new()),
            (SpeechEventType::EndOfSpeech, String::new()),
            (SpeechEventType::InterimTranscript, "Hel".into()),
            (SpeechEventType::InterimTranscript, "Hello".into()),
            (SpeechEventType::FinalTranscript, "Hello".into()),
        ]
    );

    let hs = &server.handshakes.lock().await[0];
    assert_eq!(hs.path, "/v1/realtime");
    assert_eq!(hs.query.as_deref(), Some("intent=transcription"));
    assert_eq!(hs.header("authorization").unwrap(), "Bearer sk-rt");
    let update = session_update.lock().await.clone().unwrap();
    assert_eq!(update["session"]["type"], "transcription");
    assert_eq!(
        update["session"]["audio"]["input"]["transcription"],
        json!({"model": "gpt-transcribe", "languages": ["en"]})
    );
    // 1 s of 16 kHz audio arrives as 1 s of 24 kHz audio. The server counts appends on its own
    // task: wait for the count (a guard of 10 s, not a sleep that decides the outcome).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *appended.lock().await < 24_000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*appended.lock().await, 24_000);
}

#[tokio::test]
async fn streaming_handshake_refusal_is_a_status_error() {
    let server = WsServer::start(Some(401), |_ws| async {}).await;
    let stt = Stt::new(SttOptions {
        api_key: Some("sk-bad".into()),
        base_url: Some(server.base_url()),
        use_realtime: true,
        ..Default::default()
    })
    .unwrap();
    let mut stream = stt.stream(None, conn()).unwrap();
    let err = stream.next_event().await.unwrap().unwrap_err();
    assert!(
        matches!(err, ApiError::Status { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("sk-bad"));
    assert_eq!(server.handshakes.lock().await.len(), 1, "not retried");
}

#[tokio::test]
async fn live_openai_transcription() {
    if std::env::var("OPENAI_API_KEY").is_err() {
        println!("skipping live OpenAI STT test: OPENAI_API_KEY is not set");
        return;
    }
    let stt = Stt::new(SttOptions::default()).unwrap();
    // Silence transcribes to an empty or near-empty text; the request must succeed.
    let ev = stt
        .recognize_once(&[AudioFrame::silence(16_000, 1, 16_000)], None, &conn())
        .await
        .unwrap();
    assert_eq!(ev.kind, SpeechEventType::FinalTranscript);
}

#[tokio::test]
async fn azure_transcription_uses_the_deployment_path_and_api_key() {
    let server = Server::start(vec![Reply::Json(r#"{"text":"hi"}"#.into())]).await;
    let stt = Stt::with_azure(
        livekit_plugins_openai::AzureConnection {
            azure_endpoint: Some(format!("http://{}", server.addr)),
            api_key: Some("az-stt".into()),
            api_version: Some("2025-03-01-preview".into()),
            ..Default::default()
        },
        SttOptions {
            model: "gpt-4o-mini-transcribe".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let ev = stt
        .recognize_once(&speech(100, 16_000), None, &conn())
        .await
        .unwrap();
    assert_eq!(ev.text(), "hi");
    let r = &server.requests().await[0];
    assert_eq!(
        r.path,
        "/openai/deployments/gpt-4o-mini-transcribe/audio/transcriptions"
    );
    assert_eq!(r.query.as_deref(), Some("api-version=2025-03-01-preview"));
    assert_eq!(r.header("api-key").unwrap(), "az-stt");
}

/// A VAD calling a frame speech when its first sample is non-zero (end of speech on the first
/// silent frame after speech, with the utterance's frames).
struct ThresholdVad;

impl livekit_agents::vad::Vad for ThresholdVad {
    fn label(&self) -> String {
        "test.VAD".into()
    }

    fn capabilities(&self) -> livekit_agents::vad::VadCapabilities {
        livekit_agents::vad::VadCapabilities {
            update_interval: 0.01,
        }
    }

    fn stream(&self) -> livekit_agents::vad::VadStream {
        use livekit_agents::vad::{VadEvent, VadEventType, VadInput, VadStream};
        let (in_tx, mut in_rx) = livekit_agents::model_input::channel::<VadInput>();
        let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(64);
        let task = tokio::spawn(async move {
            let mut utterance: Option<Vec<AudioFrame>> = None;
            while let Some(item) = in_rx.recv().await {
                let VadInput::Frame(frame) = item else {
                    continue;
                };
                let speech = frame.data.first().is_some_and(|s| *s != 0);
                match (&mut utterance, speech) {
                    (None, true) => {
                        utterance = Some(vec![frame]);
                        let _ = ev_tx.send(VadEvent::new(VadEventType::StartOfSpeech)).await;
                    }
                    (Some(frames), true) => frames.push(frame),
                    (Some(_), false) => {
                        let mut ev = VadEvent::new(VadEventType::EndOfSpeech);
                        ev.frames = utterance.take().unwrap_or_default();
                        let _ = ev_tx.send(ev).await;
                    }
                    (None, false) => {}
                }
            }
        });
        VadStream::from_channels(in_tx, ev_rx, Some(task))
    }
}

#[tokio::test]
async fn in_a_session_through_the_core_stream_adapter() {
    let server = Server::start(vec![Reply::Json(
        r#"{"text":"Turn on the lights."}"#.into(),
    )])
    .await;
    let stt = Stt::new(SttOptions {
        api_key: Some("sk-stt".into()),
        base_url: Some(server.base_url()),
        ..Default::default()
    })
    .unwrap();
    assert!(
        !stt.capabilities().streaming,
        "sessions wrap it in the adapter"
    );
    let adapter = livekit_agents::stt::StreamAdapter::new(Arc::new(stt), Arc::new(ThresholdVad));
    let mut stream = adapter.stream(None, conn()).unwrap();
    let speech_frames = speech(300, 16_000)
        .into_iter()
        .map(|mut f| {
            f.data[0] = 1000; // every frame counts as speech
            f
        })
        .collect::<Vec<_>>();
    for f in &speech_frames {
        stream.push_frame(f.clone());
    }
    stream.push_frame(AudioFrame::silence(16_000, 1, 160));
    stream.end_input();
    let mut kinds = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("stream ends")
    {
        let ev = ev.unwrap();
        kinds.push((ev.kind, ev.text().to_string()));
    }
    assert!(
        kinds.contains(&(
            SpeechEventType::FinalTranscript,
            "Turn on the lights.".into()
        )),
        "{kinds:?}"
    );
    let reqs = server.requests().await;
    assert_eq!(reqs.len(), 1, "one upload per utterance");
    let body = &reqs[0].body;
    let start = body.windows(4).position(|w| w == b"RIFF").unwrap();
    let data_len = u32::from_le_bytes(body[start + 40..start + 44].try_into().unwrap());
    assert_eq!(
        data_len as usize,
        300 * 16 * 2,
        "exactly the utterance's audio"
    );
}

#[tokio::test]
async fn streaming_without_server_vad_commits_on_flush_and_at_the_end() {
    let commits = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let c = commits.clone();
    let server = WsServer::start(None, move |mut ws| {
        let commits = c.clone();
        async move {
            let mut n = 0;
            while let Some(ev) = recv_json(&mut ws).await {
                match ev["type"].as_str().unwrap() {
                    "session.update" => {
                        if let Some(err) = common::transcription_session_refusal(&ev) {
                            send_json(&mut ws, err).await;
                        }
                        commits.lock().await.push(ev)
                    }
                    "input_audio_buffer.commit" => {
                        n += 1;
                        let item = format!("item_{n}");
                        let text = if n == 1 { "one" } else { "two" };
                        send_json(&mut ws, json!({"type": "input_audio_buffer.committed", "item_id": item})).await;
                        send_json(&mut ws, json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": item, "transcript": text})).await;
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    let stt = Stt::new(SttOptions {
        api_key: Some("sk".into()),
        base_url: Some(server.base_url()),
        use_realtime: true,
        turn_detection: None,
        ..Default::default()
    })
    .unwrap();
    let mut stream = stt.stream(Some("de".into()), conn()).unwrap();
    for f in speech(200, 24_000) {
        stream.push_frame(f);
    }
    stream.flush();
    for f in speech(120, 24_000) {
        stream.push_frame(f);
    }
    stream.end_input();
    let mut finals = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("stream ends")
    {
        let ev = ev.unwrap();
        if ev.kind == SpeechEventType::FinalTranscript {
            assert_eq!(ev.alternatives[0].language, "de");
            finals.push(ev.text().to_string());
        }
    }
    assert_eq!(finals, vec!["one", "two"]);
    let update = commits.lock().await[0].clone();
    assert_eq!(
        update["session"]["audio"]["input"]["turn_detection"],
        serde_json::Value::Null
    );
    assert_eq!(
        update["session"]["audio"]["input"]["transcription"]["languages"],
        json!(["de"])
    );
}

#[tokio::test]
async fn gpt_live_transcribe_streams_without_server_turn_detection() {
    // The options keep their default server VAD; gpt-live-transcribe has none, so the
    // session must carry `turn_detection: null` (the local server answers anything else
    // with an error, as the API does) and turns are committed on flush.
    let updates = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let u = updates.clone();
    let server = WsServer::start(None, move |mut ws| {
        let updates = u.clone();
        async move {
            let mut n = 0;
            while let Some(ev) = recv_json(&mut ws).await {
                match ev["type"].as_str().unwrap() {
                    "session.update" => {
                        if let Some(err) = common::transcription_session_refusal(&ev) {
                            send_json(&mut ws, err).await;
                        }
                        updates.lock().await.push(ev)
                    }
                    "input_audio_buffer.commit" => {
                        n += 1;
                        let item = format!("item_{n}");
                        send_json(&mut ws, json!({"type": "input_audio_buffer.committed", "item_id": item})).await;
                        send_json(&mut ws, json!({"type": "conversation.item.input_audio_transcription.delta", "item_id": item, "delta": "hel"})).await;
                        send_json(&mut ws, json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": item, "transcript": "hello"})).await;
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    let stt = Stt::new(SttOptions {
        api_key: Some("sk".into()),
        base_url: Some(server.base_url()),
        model: "gpt-live-transcribe".into(),
        language: Some("en-US".into()),
        use_realtime: true,
        ..Default::default()
    })
    .unwrap();
    assert!(stt.options().turn_detection.is_some());
    let mut stream = stt.stream(None, conn()).unwrap();
    for f in speech(200, 24_000) {
        stream.push_frame(f);
    }
    stream.end_input();
    let mut kinds = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("stream ends")
    {
        let ev = ev.unwrap();
        if ev.kind == SpeechEventType::FinalTranscript {
            assert_eq!(ev.text(), "hello");
        }
        kinds.push(ev.kind);
    }
    assert!(
        kinds.contains(&SpeechEventType::FinalTranscript),
        "{kinds:?}"
    );
    let update = updates.lock().await[0].clone();
    let input = &update["session"]["audio"]["input"];
    assert_eq!(input["turn_detection"], serde_json::Value::Null);
    assert_eq!(
        input["transcription"],
        json!({"model": "gpt-live-transcribe", "languages": ["en"]})
    );
}
