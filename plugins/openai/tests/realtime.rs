//! The Realtime model against a local WebSocket server speaking the Realtime API events.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{recv_json, send_json, WsServer};
use livekit_agents::audio::AudioFrame;
use livekit_agents::llm::realtime::{RealtimeEvent, RealtimeModel as _};
use livekit_agents::llm::{ChatContext, ChatRole, FunctionCall, ToolChoice, ToolDefinition};
use livekit_agents::types::ApiError;
use livekit_plugins_openai::realtime::{Eagerness, RealtimeModel, RealtimeOptions, TurnDetection};
use serde_json::{json, Value};
use tokio::sync::Mutex;

type Log = Arc<Mutex<Vec<Value>>>;

fn pcm_b64(samples: usize, value: i16) -> String {
    let bytes: Vec<u8> = (0..samples).flat_map(|_| value.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fake Realtime server. `vad`: after three appends it detects a turn by itself and answers
/// with a tool call, as server VAD would.
async fn fake_server(vad: bool) -> (WsServer, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let server = WsServer::start(None, move |mut ws| {
        let log = l.clone();
        async move {
            send_json(&mut ws, json!({"type": "session.created", "session": {}})).await;
            let mut appends = 0;
            while let Some(ev) = recv_json(&mut ws).await {
                log.lock().await.push(ev.clone());
                match ev["type"].as_str().unwrap() {
                    "session.update" => {
                        // The transcription settings are checked as the API checks them.
                        let transcription = &ev["session"]["audio"]["input"]["transcription"];
                        match transcription.is_object().then(|| common::transcription_session_refusal(&ev)).flatten() {
                            Some(refusal) => send_json(&mut ws, refusal).await,
                            None => send_json(&mut ws, json!({"type": "session.updated", "session": ev["session"]})).await,
                        }
                    }
                    "input_audio_buffer.append" => {
                        appends += 1;
                        if vad && appends == 3 {
                            for e in [
                                json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "item_u"}),
                                json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 250, "item_id": "item_u"}),
                                json!({"type": "response.created", "response": {"id": "resp_vad", "status": "in_progress", "metadata": null}}),
                                json!({"type": "response.output_item.added", "response_id": "resp_vad", "output_index": 0, "item": {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": ""}}),
                                json!({"type": "response.function_call_arguments.delta", "response_id": "resp_vad", "item_id": "fc_1", "call_id": "call_1", "delta": "{\"city\":"}),
                                json!({"type": "response.function_call_arguments.done", "response_id": "resp_vad", "item_id": "fc_1", "call_id": "call_1", "arguments": "{\"city\":\"Paris\"}"}),
                                json!({"type": "response.output_item.done", "response_id": "resp_vad", "output_index": 0, "item": {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}),
                                json!({"type": "rate_limits.updated", "rate_limits": [{"name": "tokens", "limit": 1000, "remaining": 900}]}),
                                json!({"type": "response.done", "response": {"id": "resp_vad", "status": "completed", "usage": {"input_tokens": 7, "output_tokens": 3}}}),
                            ] {
                                send_json(&mut ws, e).await;
                            }
                        }
                    }
                    "input_audio_buffer.commit" => {
                        for e in [
                            json!({"type": "input_audio_buffer.committed", "previous_item_id": null, "item_id": "item_user1"}),
                            json!({"type": "conversation.item.added", "previous_item_id": null, "item": {"id": "item_user1", "type": "message", "role": "user", "content": [{"type": "input_audio"}]}}),
                            json!({"type": "conversation.item.input_audio_transcription.delta", "item_id": "item_user1", "content_index": 0, "delta": "Hel"}),
                            json!({"type": "conversation.item.input_audio_transcription.delta", "item_id": "item_user1", "content_index": 0, "delta": "lo"}),
                            json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_user1", "content_index": 0, "transcript": "Hello"}),
                        ] {
                            send_json(&mut ws, e).await;
                        }
                    }
                    "response.create" => {
                        let metadata = ev["response"]["metadata"].clone();
                        for e in [
                            json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "metadata": metadata}}),
                            json!({"type": "response.output_item.added", "response_id": "resp_1", "output_index": 0, "item": {"id": "item_asst1", "type": "message", "role": "assistant", "content": []}}),
                            json!({"type": "conversation.item.added", "previous_item_id": "item_user1", "item": {"id": "item_asst1", "type": "message", "role": "assistant"}}),
                            json!({"type": "response.output_audio_transcript.delta", "response_id": "resp_1", "item_id": "item_asst1", "output_index": 0, "content_index": 0, "delta": "Hi "}),
                            json!({"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_asst1", "output_index": 0, "content_index": 0, "delta": pcm_b64(2400, 100)}),
                            json!({"type": "response.output_audio_transcript.delta", "response_id": "resp_1", "item_id": "item_asst1", "output_index": 0, "content_index": 0, "delta": "there"}),
                            json!({"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_asst1", "output_index": 0, "content_index": 0, "delta": pcm_b64(2400, -100)}),
                            json!({"type": "response.output_item.done", "response_id": "resp_1", "output_index": 0, "item": {"id": "item_asst1", "type": "message", "role": "assistant"}}),
                            json!({"type": "response.done", "response": {"id": "resp_1", "status": "completed", "usage": {"total_tokens": 30, "input_tokens": 20, "output_tokens": 10, "input_token_details": {"cached_tokens": 5}}}}),
                        ] {
                            send_json(&mut ws, e).await;
                        }
                    }
                    "response.cancel" => {
                        send_json(&mut ws, json!({"type": "error", "error": {"type": "invalid_request_error", "code": "response_cancel_not_active", "message": "Cancellation failed: no active response found"}})).await
                    }
                    "conversation.item.truncate" => {
                        send_json(&mut ws, json!({"type": "conversation.item.truncated", "item_id": ev["item_id"], "content_index": 0, "audio_end_ms": ev["audio_end_ms"]})).await
                    }
                    "conversation.item.create" => {
                        // What the API refuses: a call_id over 32 characters, and an image
                        // that is not a base64 data URI.
                        let long_call_id = ev["item"]["call_id"].as_str().is_some_and(|c| c.len() > 32);
                        let url_image = ev["item"]["content"].as_array().is_some_and(|parts| {
                            parts.iter().any(|p| {
                                p["type"] == "input_image"
                                    && !p["image_url"].as_str().unwrap_or("").starts_with("data:")
                            })
                        });
                        if long_call_id {
                            send_json(&mut ws, json!({"type": "error", "error": {"type": "invalid_request_error", "code": "string_above_max_length", "param": "item.call_id", "message": "Invalid 'item.call_id': string too long. Expected a string with maximum length 32.", "event_id": ev["event_id"]}})).await;
                        } else if url_image {
                            send_json(&mut ws, json!({"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value", "param": "item.content[1].image_url", "message": "Invalid 'item.content[1].image_url'. Expected a base64-encoded data URL with an image MIME type.", "event_id": ev["event_id"]}})).await;
                        } else if ev["item"]["id"] == "bad_item" {
                            send_json(&mut ws, json!({"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value", "message": "bad item", "event_id": ev["event_id"]}})).await;
                        } else {
                            send_json(&mut ws, json!({"type": "conversation.item.added", "previous_item_id": ev["previous_item_id"], "item": ev["item"]})).await;
                        }
                    }
                    "conversation.item.delete" => {
                        send_json(&mut ws, json!({"type": "conversation.item.deleted", "item_id": ev["item_id"]})).await
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    (server, log)
}

fn model(server: &WsServer, opts: RealtimeOptions) -> RealtimeModel {
    RealtimeModel::new(RealtimeOptions {
        api_key: Some("sk-realtime".into()),
        base_url: Some(server.base_url()),
        ..opts
    })
    .unwrap()
    .with_timeout(Duration::from_secs(5))
}

async fn wait_for(log: &Log, kind: &str) -> Value {
    for _ in 0..3000 {
        if let Some(ev) = log.lock().await.iter().find(|e| e["type"] == kind) {
            return ev.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server never received {kind}");
}

async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<RealtimeEvent>) -> RealtimeEvent {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("event in time")
        .expect("events open")
}

#[tokio::test]
async fn audio_round_trip_reply_and_interruption_truncation() {
    let (server, log) = fake_server(false).await;
    let m = model(
        &server,
        RealtimeOptions {
            voice: "coral".into(),
            instructions: Some("Be brief.".into()),
            turn_detection: Some(TurnDetection::semantic_vad(Eagerness::Low)),
            ..Default::default()
        },
    );
    let mut session = m.session().await.unwrap();
    let mut events = session.take_events().unwrap();
    assert!(session.take_events().is_none());

    // The handshake and the session configuration.
    let hs = server.handshakes.lock().await[0].clone();
    assert_eq!(hs.path, "/v1/realtime");
    assert_eq!(hs.query.as_deref(), Some("model=gpt-realtime-2.1"));
    assert_eq!(hs.header("authorization").unwrap(), "Bearer sk-realtime");
    let update = wait_for(&log, "session.update").await;
    let s = &update["session"];
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["instructions"], "Be brief.");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    assert_eq!(s["audio"]["output"]["voice"], "coral");
    assert_eq!(
        s["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert_eq!(
        s["audio"]["input"]["turn_detection"],
        json!({"type": "semantic_vad", "eagerness": "low"})
    );

    // 300 ms of 48 kHz stereo audio goes out as 300 ms of 24 kHz mono.
    for _ in 0..30 {
        session.push_audio(&AudioFrame::new(vec![500; 960], 48_000, 2).unwrap());
    }
    session.commit_audio();
    let _ = wait_for(&log, "input_audio_buffer.commit").await;
    let appended: usize = log
        .lock()
        .await
        .iter()
        .filter(|e| e["type"] == "input_audio_buffer.append")
        .map(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e["audio"].as_str().unwrap())
                .unwrap()
                .len()
                / 2
        })
        .sum();
    assert!(
        (7000..=7200).contains(&appended),
        "{appended} samples appended"
    );

    // The user's transcript, interim then final, with the server's item id.
    let mut transcripts = Vec::new();
    while transcripts.len() < 3 {
        if let RealtimeEvent::InputAudioTranscriptionCompleted {
            item_id,
            transcript,
            is_final,
        } = next_event(&mut events).await
        {
            assert_eq!(item_id, "item_user1");
            transcripts.push((transcript, is_final));
        }
    }
    assert_eq!(
        transcripts,
        vec![
            ("Hel".into(), false),
            ("Hello".into(), false),
            ("Hello".into(), true)
        ]
    );

    // A reply asked for by the client comes back to the caller, not as an event.
    let mut generation = session
        .generate_reply(Some("Greet the user"))
        .await
        .unwrap();
    assert!(generation.user_initiated);
    assert_eq!(generation.response_id, "resp_1");
    let create = wait_for(&log, "response.create").await;
    assert_eq!(create["response"]["instructions"], "Greet the user");
    assert_eq!(
        create["response"]["metadata"]["client_event_id"],
        create["event_id"]
    );

    let mut message = generation.message_stream.recv().await.unwrap();
    assert_eq!(message.message_id, "item_asst1");
    let mut text = String::new();
    while let Some(delta) = message.text_stream.recv().await {
        text.push_str(&delta);
    }
    assert_eq!(text, "Hi there");
    let mut audio = Vec::new();
    while let Some(frame) = message.audio_stream.recv().await {
        assert_eq!((frame.sample_rate, frame.num_channels), (24_000, 1));
        audio.extend(frame.data);
    }
    assert_eq!(audio.len(), 4800);
    assert_eq!((audio[0], audio[4799]), (100, -100));
    assert!(
        generation.message_stream.recv().await.is_none(),
        "response done"
    );
    assert!(generation.function_stream.recv().await.is_none());

    match next_event(&mut events).await {
        RealtimeEvent::Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
        } => {
            assert_eq!((input_tokens, output_tokens, cached_tokens), (20, 10, 5))
        }
        other => panic!("expected usage, got {other:?}"),
    }

    // The user interrupts after hearing 150 ms: cancel and truncate to what was played.
    session.interrupt();
    session
        .truncate("item_asst1", 150, Some("Hi"))
        .await
        .unwrap();
    let _ = wait_for(&log, "response.cancel").await;
    let truncate = wait_for(&log, "conversation.item.truncate").await;
    assert_eq!(
        truncate,
        json!({"type": "conversation.item.truncate", "item_id": "item_asst1", "content_index": 0, "audio_end_ms": 150})
    );

    // The session layer commits the turns under its own ids, with the text the user said and
    // heard: they are recognized as the server's items, so nothing is deleted or re-sent.
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "Hello");
    ctx.add_message(ChatRole::Assistant, "Hi");
    session.update_chat_ctx(&ctx).await.unwrap();
    ctx.add_message(ChatRole::User, "Thanks!");
    session.update_chat_ctx(&ctx).await.unwrap();
    let log_now = log.lock().await.clone();
    assert!(!log_now
        .iter()
        .any(|e| e["type"] == "conversation.item.delete"));
    let creates: Vec<&Value> = log_now
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .collect();
    assert_eq!(creates.len(), 1, "only the new message is sent");
    assert_eq!(creates[0]["previous_item_id"], "item_asst1");
    assert_eq!(creates[0]["item"]["content"][0]["text"], "Thanks!");

    session.clear_audio();
    let _ = wait_for(&log, "input_audio_buffer.clear").await;
    // The benign "no active response" answer to the cancel is not reported.
    while let Ok(ev) = events.try_recv() {
        assert!(!matches!(ev, RealtimeEvent::Error { .. }), "{ev:?}");
    }
    session.close().await;
}

#[tokio::test]
async fn user_input_is_transcribed_by_the_successor_model_with_languages() {
    use livekit_plugins_openai::realtime::{InputTranscription, DEFAULT_INPUT_TRANSCRIPTION_MODEL};
    // `gpt-4o-mini-transcribe` (the reference's) shuts down on 2027-02-26.
    assert_eq!(DEFAULT_INPUT_TRANSCRIPTION_MODEL, "gpt-transcribe");
    let (server, log) = fake_server(false).await;
    let mut transcription = InputTranscription::new(DEFAULT_INPUT_TRANSCRIPTION_MODEL);
    transcription.language = Some("fr-CA".into());
    let m = model(
        &server,
        RealtimeOptions {
            input_audio_transcription: Some(transcription),
            ..Default::default()
        },
    );
    let mut session = m.session().await.unwrap();
    let mut events = session.take_events().unwrap();
    let update = wait_for(&log, "session.update").await;
    assert_eq!(
        update["session"]["audio"]["input"]["transcription"],
        json!({"model": "gpt-transcribe", "languages": ["fr"]})
    );
    // The fake accepted it (it refuses `language` for this model): the turn is transcribed.
    session.commit_audio();
    loop {
        match next_event(&mut events).await {
            RealtimeEvent::InputAudioTranscriptionCompleted {
                is_final: true,
                transcript,
                ..
            } => {
                assert_eq!(transcript, "Hello");
                break;
            }
            RealtimeEvent::Error { error, .. } => panic!("refused: {error}"),
            _ => {}
        }
    }
    session.close().await;
}

fn jpeg(bytes: &[u8]) -> livekit_agents::llm::ImageContent {
    livekit_agents::llm::ImageContent {
        id: "frame".into(),
        image: livekit_agents::llm::ImageSource::Bytes {
            data: bytes.to_vec(),
            mime_type: "image/jpeg".into(),
        },
        inference_detail: "auto".into(),
    }
}

async fn count(log: &Log, pred: impl Fn(&Value) -> bool) -> usize {
    log.lock().await.iter().filter(|e| pred(e)).count()
}

#[tokio::test]
async fn video_frames_go_into_the_conversation_as_data_uri_images_and_stay_bounded() {
    let (server, log) = fake_server(false).await;
    let m = model(
        &server,
        RealtimeOptions {
            max_video_frames: 2,
            ..Default::default()
        },
    );
    let session = m.session().await.unwrap();
    session.push_video(&jpeg(&[0xff, 0xd8, 0xff]));
    let create = wait_for(&log, "conversation.item.create").await;
    let item = &create["item"];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "user");
    assert_eq!(
        item["content"],
        json!([{"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/"}])
    );
    let first_id = item["id"].as_str().unwrap().to_string();
    assert!(first_id.len() <= 32, "item ids are at most 32 characters");
    assert!(
        create.get("previous_item_id").is_none(),
        "appended at the end"
    );

    // A chat context update (which never held the frame) does not delete it.
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "What do you see?");
    session.update_chat_ctx(&ctx).await.unwrap();
    assert_eq!(
        count(&log, |e| e["type"] == "conversation.item.delete").await,
        0
    );

    // A frame given as a URL is skipped (the API takes data URIs only).
    let mut url_frame = jpeg(&[]);
    url_frame.image = livekit_agents::llm::ImageSource::Url {
        url: "https://example.com/cam.jpg".into(),
    };
    session.push_video(&url_frame);

    // Two more frames: only the newest two stay, the first is deleted.
    session.push_video(&jpeg(&[1]));
    session.push_video(&jpeg(&[2]));
    let delete = wait_for(&log, "conversation.item.delete").await;
    assert_eq!(delete["item_id"], first_id.as_str());
    let images = |e: &Value| {
        e["type"] == "conversation.item.create" && e["item"]["content"][0]["type"] == "input_image"
    };
    for _ in 0..200 {
        if count(&log, images).await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(count(&log, images).await, 3, "the URL frame was not sent");
    assert_eq!(
        count(&log, |e| e["type"] == "conversation.item.delete").await,
        1
    );
    session.close().await;

    // `max_video_frames: 0` ignores video.
    let (server, log) = fake_server(false).await;
    let m = model(
        &server,
        RealtimeOptions {
            max_video_frames: 0,
            ..Default::default()
        },
    );
    let session = m.session().await.unwrap();
    session.push_video(&jpeg(&[1]));
    session.commit_audio();
    let _ = wait_for(&log, "input_audio_buffer.commit").await;
    assert_eq!(count(&log, images).await, 0);
}

#[tokio::test]
async fn server_detected_turn_with_a_tool_call() {
    let (server, _log) = fake_server(true).await;
    let mut session = model(&server, RealtimeOptions::default())
        .session()
        .await
        .unwrap();
    let mut events = session.take_events().unwrap();
    for _ in 0..3 {
        session.push_audio(&AudioFrame::new(vec![0; 2400], 24_000, 1).unwrap());
    }
    assert!(matches!(
        next_event(&mut events).await,
        RealtimeEvent::InputSpeechStarted
    ));
    assert!(matches!(
        next_event(&mut events).await,
        RealtimeEvent::InputSpeechStopped {
            user_transcription_enabled: true
        }
    ));
    let RealtimeEvent::GenerationCreated(mut generation) = next_event(&mut events).await else {
        panic!("expected a generation");
    };
    assert!(!generation.user_initiated);
    assert_eq!(generation.response_id, "resp_vad");
    let call = generation.function_stream.recv().await.unwrap();
    assert_eq!(
        (
            call.id.as_str(),
            call.call_id.as_str(),
            call.name.as_str(),
            call.arguments.as_str()
        ),
        ("fc_1", "call_1", "get_weather", r#"{"city":"Paris"}"#)
    );
    assert!(generation.function_stream.recv().await.is_none());
    assert!(generation.message_stream.recv().await.is_none());
    assert!(matches!(
        next_event(&mut events).await,
        RealtimeEvent::Usage {
            input_tokens: 7,
            output_tokens: 3,
            cached_tokens: 0
        }
    ));
}

#[tokio::test]
async fn long_call_ids_and_url_images_do_not_fail_the_context_update() {
    // A call id from another provider (longer than the API's 32 characters) and an image
    // given as a URL (the API takes data URIs only) each made the whole update fail.
    let (server, log) = fake_server(false).await;
    let session = model(&server, RealtimeOptions::default())
        .session()
        .await
        .unwrap();
    let mut ctx = ChatContext::new();
    let mut msg = livekit_agents::llm::ChatMessage::new(ChatRole::User, "What is this?");
    msg.content.push(livekit_agents::llm::ChatContent::Image(
        livekit_agents::llm::ImageContent {
            id: "img".into(),
            image: livekit_agents::llm::ImageSource::Url {
                url: "https://example.com/cat.png".into(),
            },
            inference_detail: String::new(),
        },
    ));
    ctx.push(msg);
    let long_id = "toolu_01XyZaBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
    let call = FunctionCall::new(long_id, "get_weather", r#"{"city":"Oslo"}"#);
    ctx.push(call.clone());
    ctx.push(livekit_agents::llm::FunctionCallOutput::for_call(
        &call, "snow", false,
    ));
    session.update_chat_ctx(&ctx).await.unwrap();
    let creates: Vec<Value> = log
        .lock()
        .await
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .cloned()
        .collect();
    assert_eq!(creates.len(), 3);
    assert_eq!(
        creates[0]["item"]["content"],
        json!([{"type": "input_text", "text": "What is this?"}])
    );
    let (a, b) = (
        &creates[1]["item"]["call_id"],
        &creates[2]["item"]["call_id"],
    );
    assert_eq!(a, b, "the call and its output keep matching ids");
    assert!(a.as_str().unwrap().len() <= 32, "{a}");
    // The same context again: nothing is re-sent (the shortened ids match the remote items).
    session.update_chat_ctx(&ctx).await.unwrap();
    let count = log
        .lock()
        .await
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .count();
    assert_eq!(count, 3);
    session.close().await;
}

#[tokio::test]
async fn chat_context_tools_and_tool_choice_updates() {
    let (server, log) = fake_server(false).await;
    let session = model(&server, RealtimeOptions::default())
        .session()
        .await
        .unwrap();

    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "What's the weather?");
    let call = FunctionCall::new("call_9", "get_weather", r#"{"city":"Oslo"}"#);
    ctx.push(call.clone());
    ctx.push(livekit_agents::llm::FunctionCallOutput::for_call(
        &call, "snow", false,
    ));
    session.update_chat_ctx(&ctx).await.unwrap();
    let creates: Vec<Value> = log
        .lock()
        .await
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .cloned()
        .collect();
    assert_eq!(creates.len(), 3);
    assert_eq!(creates[0]["previous_item_id"], "root");
    assert_eq!(
        creates[0]["item"],
        json!({"id": ctx.items()[0].id(), "type": "message", "role": "user", "content": [{"type": "input_text", "text": "What's the weather?"}]})
    );
    assert_eq!(creates[1]["previous_item_id"], ctx.items()[0].id());
    assert_eq!(creates[1]["item"]["type"], "function_call");
    assert_eq!(creates[2]["item"]["type"], "function_call_output");
    assert_eq!(creates[2]["item"]["output"], "snow");

    // Removing the first message deletes it; nothing else is re-sent.
    let first = ctx.items()[0].id().to_string();
    let mut smaller = ctx.clone();
    smaller.items_mut().remove(0);
    session.update_chat_ctx(&smaller).await.unwrap();
    let log_now = log.lock().await.clone();
    assert_eq!(
        log_now
            .iter()
            .filter(|e| e["type"] == "conversation.item.create")
            .count(),
        3
    );
    let delete = log_now
        .iter()
        .find(|e| e["type"] == "conversation.item.delete")
        .unwrap();
    assert_eq!(delete["item_id"], first.as_str());

    // A creation the server rejects fails the update with the server's message.
    let mut bad = smaller.clone();
    let mut msg = livekit_agents::llm::ChatMessage::new(ChatRole::User, "x");
    msg.id = "bad_item".into();
    bad.push(msg);
    let err = session.update_chat_ctx(&bad).await.unwrap_err();
    assert!(err.to_string().contains("bad item"), "{err}");

    session
        .update_tools(&[ToolDefinition {
            name: "get_weather".into(),
            description: "Weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }])
        .await
        .unwrap();
    session
        .update_tool_choice(ToolChoice::Required)
        .await
        .unwrap();
    session
        .update_instructions("Talk like a pirate.")
        .await
        .unwrap();
    for _ in 0..3000 {
        if log
            .lock()
            .await
            .iter()
            .filter(|e| e["type"] == "session.update")
            .count()
            >= 4
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let updates: Vec<Value> = log
        .lock()
        .await
        .iter()
        .filter(|e| e["type"] == "session.update")
        .map(|e| e["session"].clone())
        .collect();
    assert_eq!(
        updates[1],
        json!({"type": "realtime", "tools": [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]})
    );
    assert_eq!(
        updates[2],
        json!({"type": "realtime", "tool_choice": "required"})
    );
    assert_eq!(
        updates[3],
        json!({"type": "realtime", "instructions": "Talk like a pirate."})
    );
}

#[tokio::test]
async fn refused_handshake_and_dropped_connection() {
    let refusing = WsServer::start(Some(401), |_ws| async {}).await;
    let Err(err) = model(&refusing, RealtimeOptions::default()).session().await else {
        panic!("the handshake must fail");
    };
    assert!(
        matches!(
            err,
            ApiError::Status {
                status: 401,
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("sk-realtime"));

    // A server that closes right after the handshake: the session reports an unrecoverable
    // error and pending calls fail instead of hanging.
    let closing = WsServer::start(None, |ws| async move { drop(ws) }).await;
    let mut session = model(&closing, RealtimeOptions::default())
        .session()
        .await
        .unwrap();
    let mut events = session.take_events().unwrap();
    let mut reconnections = 0;
    loop {
        match next_event(&mut events).await {
            RealtimeEvent::Error {
                recoverable: true, ..
            } => reconnections += 1,
            RealtimeEvent::Error {
                recoverable: false, ..
            } => break,
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert_eq!(
        reconnections, 3,
        "a few reconnections, then the session gives up"
    );
    assert!(session.generate_reply(None).await.is_err());
}

#[tokio::test]
async fn reconnects_and_restores_the_session() {
    // The first connection drops after the first user turn; the second behaves.
    let connections = Arc::new(Mutex::new(Vec::<Log>::new()));
    let c = connections.clone();
    let server = WsServer::start(None, move |mut ws| {
        let connections = c.clone();
        async move {
            let log: Log = Arc::default();
            let n = {
                let mut all = connections.lock().await;
                all.push(log.clone());
                all.len()
            };
            send_json(&mut ws, json!({"type": "session.created", "session": {}})).await;
            while let Some(ev) = recv_json(&mut ws).await {
                log.lock().await.push(ev.clone());
                match ev["type"].as_str().unwrap() {
                    "conversation.item.create" => {
                        send_json(&mut ws, json!({"type": "conversation.item.added", "previous_item_id": ev["previous_item_id"], "item": ev["item"]})).await;
                    }
                    "input_audio_buffer.commit" if n == 1 => {
                        for e in [
                            json!({"type": "conversation.item.added", "previous_item_id": null, "item": {"id": "item_u1", "type": "message", "role": "user", "content": [{"type": "input_audio", "transcript": null}]}}),
                            json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_u1", "content_index": 0, "transcript": "Book a table"}),
                        ] {
                            send_json(&mut ws, e).await;
                        }
                        // Connection lost.
                        return;
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    let mut session = model(&server, RealtimeOptions::default())
        .session()
        .await
        .unwrap();
    let mut events = session.take_events().unwrap();
    session
        .update_instructions("You book tables.")
        .await
        .unwrap();
    let call = FunctionCall::new("call_1", "book", r#"{"n":2}"#);
    let mut ctx = ChatContext::new();
    ctx.push(call.clone());
    ctx.push(livekit_agents::llm::FunctionCallOutput::for_call(
        &call, "booked", false,
    ));
    session.update_chat_ctx(&ctx).await.unwrap();
    session.commit_audio();

    loop {
        match next_event(&mut events).await {
            RealtimeEvent::Error { recoverable, error } => {
                assert!(recoverable, "{error}");
                assert!(error.to_string().contains("reconnected"), "{error}");
                break;
            }
            RealtimeEvent::InputAudioTranscriptionCompleted { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The second connection got the configuration (with the updated instructions) and the
    // conversation back, in order, as text.
    let second = loop {
        if let Some(log) = connections.lock().await.get(1).cloned() {
            if log.lock().await.len() >= 4 {
                break log.lock().await.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(server.handshakes.lock().await.len(), 2);
    assert_eq!(second[0]["type"], "session.update");
    assert_eq!(second[0]["session"]["instructions"], "You book tables.");
    assert_eq!(second[0]["session"]["audio"]["output"]["voice"], "alloy");
    let items: Vec<&Value> = second[1..].iter().map(|e| &e["item"]).collect();
    assert_eq!(items[0]["type"], "function_call");
    assert_eq!(items[0]["arguments"], r#"{"n":2}"#);
    assert_eq!(items[1]["type"], "function_call_output");
    assert_eq!(items[1]["output"], "booked");
    assert_eq!(
        items[2],
        &json!({"id": "item_u1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Book a table"}]})
    );
    assert_eq!(second[3]["previous_item_id"], items[1]["id"]);

    // The session keeps working on the new connection.
    session.interrupt();
    for _ in 0..3000 {
        if connections.lock().await[1]
            .lock()
            .await
            .iter()
            .any(|e| e["type"] == "response.cancel")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no response.cancel on the new connection");
}

#[tokio::test]
async fn idle_connections_are_refreshed_after_the_max_duration() {
    let (server, log) = fake_server(false).await;
    let session = model(
        &server,
        RealtimeOptions {
            max_session_duration: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    )
    .session()
    .await
    .unwrap();
    session.update_instructions("Stay.").await.unwrap();
    for _ in 0..3000 {
        if server.handshakes.lock().await.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        server.handshakes.lock().await.len() >= 2,
        "a second connection was opened"
    );
    for _ in 0..3000 {
        let updates: Vec<Value> = log
            .lock()
            .await
            .iter()
            .filter(|e| e["type"] == "session.update")
            .cloned()
            .collect();
        if updates.len() >= 3 {
            assert_eq!(updates[2]["session"]["instructions"], "Stay.");
            assert_eq!(updates[2]["session"]["model"], "gpt-realtime-2.1");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the new connection was not configured");
}

#[tokio::test]
async fn live_openai_realtime_session() {
    if std::env::var("OPENAI_API_KEY").is_err() {
        println!("skipping live OpenAI Realtime test: OPENAI_API_KEY is not set");
        return;
    }
    let m = RealtimeModel::new(RealtimeOptions::default()).unwrap();
    let session = m.session().await.unwrap();
    let mut generation = session.generate_reply(Some("Say hello.")).await.unwrap();
    let mut message = generation.message_stream.recv().await.unwrap();
    let mut samples = 0;
    while let Some(frame) = message.audio_stream.recv().await {
        samples += frame.samples_per_channel;
    }
    assert!(samples > 0);
    session.close().await;
}

#[tokio::test]
async fn a_retired_realtime_model_is_refused() {
    let (server, _log) = fake_server(false).await;
    let err = model(
        &server,
        RealtimeOptions {
            model: "gpt-4o-realtime-preview-2024-12-17".into(),
            ..Default::default()
        },
    )
    .session()
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Status {
                status: 404,
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    // The default model is served.
    model(&server, RealtimeOptions::default())
        .session()
        .await
        .unwrap()
        .close()
        .await;
}
