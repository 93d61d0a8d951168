//! The claims of `docs/guides/local-models.md` that can be checked without the real servers:
//! the requests the OpenAI plugin sends to a local OpenAI-compatible LLM, STT and TTS server
//! (built as the guide and the `local_agent` example build them) and what it makes of the
//! answers the guide says those servers give.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{form_field, Reply, Server, StreamEnd};
use livekit_agents::audio::AudioFrame;
use livekit_agents::llm::{ChatContext, ChatRequest, ChatRole, Llm as _, ToolDefinition};
use livekit_agents::stt::Stt as _;
use livekit_agents::tts::Tts as _;
use livekit_agents::types::ApiConnectOptions;
use livekit_plugins_openai as openai;
use serde_json::json;

fn conn() -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(0)
        .with_retry_interval(Duration::from_millis(10))
        .with_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn a_local_llm_is_reached_through_the_ollama_constructor() {
    let server = Server::start(vec![Reply::sse(&[
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"}}]}"#,
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"stop"}]}"#,
        "[DONE]",
    ])])
    .await;
    server.set_provider("local");
    let llm = openai::Llm::with_ollama(openai::CompatibleOptions {
        base_url: Some(server.base_url()),
        model: Some("llama3.1".into()),
        ..Default::default()
    })
    .unwrap();
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "Hi");
    let mut request = ChatRequest::new(ctx);
    request.tools = vec![ToolDefinition {
        name: "get_time".into(),
        description: "The time".into(),
        parameters: json!({"type": "object", "properties": {}}),
    }];
    let reply = llm.chat(request).collect().await.unwrap();
    assert_eq!(reply.text, "Hello there");
    let r = &server.requests().await[0];
    assert_eq!(r.path, "/v1/chat/completions");
    let body = r.json();
    assert_eq!(body["model"], "llama3.1");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["tools"][0]["type"], "function");
    assert!(
        body["tools"][0]["function"].get("strict").is_none(),
        "tools are not strict for non-OpenAI providers: {body}"
    );
}

#[tokio::test]
async fn a_local_whisper_server_gets_one_wav_utterance_per_request() {
    let server = Server::start(vec![Reply::Json(r#"{"text":"hello world"}"#.into())]).await;
    server.set_provider("local");
    let stt = openai::Stt::new(openai::SttOptions {
        model: "Systran/faster-whisper-small".into(),
        base_url: Some(server.base_url()),
        api_key: Some("local".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(
        !stt.capabilities().streaming,
        "whole utterances: sessions cut them with a VAD (StreamAdapter)"
    );
    let frame = AudioFrame::new(vec![100; 1600], 16_000, 1).unwrap();
    let ev = stt.recognize_once(&[frame], None, &conn()).await.unwrap();
    assert_eq!(
        ev.text(),
        "hello world",
        "`{{\"text\": …}}` is all the server must answer"
    );
    let r = &server.requests().await[0];
    assert_eq!(r.path, "/v1/audio/transcriptions");
    assert_eq!(r.header("authorization").unwrap(), "Bearer local");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains("name=\"file\"; filename=\"audio.wav\"") && body.contains("RIFF"),
        "a WAV file part: {body:.200}"
    );
    assert_eq!(
        form_field(&r.body, "model").as_deref(),
        Some("Systran/faster-whisper-small")
    );
    assert_eq!(
        form_field(&r.body, "response_format").as_deref(),
        Some("json")
    );
    assert_eq!(form_field(&r.body, "language").as_deref(), Some("en"));
    assert!(form_field(&r.body, "prompt").is_none());

    // `detect_language` leaves the language out.
    let server = Server::start(vec![Reply::Json(r#"{"text":"hola"}"#.into())]).await;
    server.set_provider("local");
    let stt = openai::Stt::new(openai::SttOptions {
        model: "Systran/faster-whisper-small".into(),
        base_url: Some(server.base_url()),
        api_key: Some("local".into()),
        detect_language: true,
        ..Default::default()
    })
    .unwrap();
    let frame = AudioFrame::new(vec![100; 1600], 16_000, 1).unwrap();
    stt.recognize_once(&[frame], None, &conn()).await.unwrap();
    assert!(form_field(&server.requests().await[0].body, "language").is_none());
}

#[tokio::test]
async fn a_local_tts_server_answers_24_khz_pcm() {
    let samples: Vec<i16> = (0..2400).map(|i| (i % 200) as i16).collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let reply = || Reply::Stream {
        content_type: "application/octet-stream",
        parts: vec![bytes.clone()],
        pause: Duration::ZERO,
        end: StreamEnd::Close,
    };
    let server = Server::start(vec![reply(), reply()]).await;
    server.set_provider("local");
    let tts = openai::Tts::new(openai::TtsOptions {
        model: "kokoro".into(),
        voice: "af_heart".into(),
        base_url: Some(server.base_url()),
        api_key: Some("local".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        tts.sample_rate(),
        24_000,
        "the plugin assumes OpenAI's 24 kHz"
    );
    let frame = tts.synthesize("Hello.", conn()).collect().await.unwrap();
    assert_eq!((frame.sample_rate, frame.num_channels), (24_000, 1));
    assert_eq!(frame.data, samples);
    let r = &server.requests().await[0];
    assert_eq!(r.path, "/v1/audio/speech");
    assert_eq!(
        r.json(),
        json!({"model": "kokoro", "input": "Hello.", "voice": "af_heart", "response_format": "pcm", "speed": 1.0})
    );
    // `instructions` go to every model except `tts-1`/`tts-1-hd` (a local server that does
    // not know the field must ignore it).
    tts.update_options(|o| o.instructions = Some("Calm.".into()));
    tts.synthesize("Hi.", conn()).collect().await.unwrap();
    assert_eq!(server.requests().await[1].json()["instructions"], "Calm.");
}
