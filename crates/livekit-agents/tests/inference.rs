//! LiveKit Inference models against a local server on 127.0.0.1 speaking the gateway's protocol
//! (`docs/inference-protocol.md`): the LLM's Chat Completions SSE, the STT and TTS WebSockets,
//! the access token, and descriptor strings in the session and agent builders.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use livekit_agents::audio::AudioFrame;
use livekit_agents::inference::{self, GatewayOptions, InferenceError};
use livekit_agents::llm::{ChatContext, ChatRequest, ChatRole, Llm as _, ToolDefinition};
use livekit_agents::stt::{SpeechEventType, Stt as _};
use livekit_agents::tts::Tts as _;
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_agents::voice::{Agent, AgentSession, SessionError, SessionIo};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "APIkey123";
const SECRET: &str = "a-secret-long-enough-to-sign-livekit-tokens";

fn gateway(port: u16) -> GatewayOptions {
    GatewayOptions::default()
        .with_base_url(format!("http://127.0.0.1:{port}/v1"))
        .with_api_key(KEY)
        .with_api_secret(SECRET)
        .without_inference_class()
}

fn no_retry() -> ApiConnectOptions {
    ApiConnectOptions::default().with_max_retry(0)
}

/// Checks a `Bearer` token: signed with the secret, with the inference grant.
fn assert_token(auth: Option<&str>) {
    let token = auth.unwrap().strip_prefix("Bearer ").unwrap();
    let claims = livekit_api::access_token::TokenVerifier::with_api_key(KEY, SECRET)
        .verify(token)
        .unwrap();
    assert!(claims.inference.perform);
    assert_eq!(claims.sub, "agent");
}

#[derive(Default)]
struct Seen {
    requests: Vec<(Option<String>, Value)>,
}

/// A Chat Completions endpoint streaming `events` (each one SSE `data:`) for every request.
async fn llm_server(events: Vec<String>) -> (u16, Arc<Mutex<Seen>>) {
    use axum::http::HeaderMap;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let state = state.clone();
            let events = events.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                state.lock().requests.push((auth, body.0));
                let mut text = String::new();
                for e in events {
                    text.push_str(&format!("data: {e}\n\n"));
                }
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(axum::body::Body::from(text))
                    .unwrap()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

fn chunk(delta: Value) -> String {
    json!({"id": "c1", "object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
    .to_string()
}

#[tokio::test]
async fn llm_streams_text_tool_calls_and_usage() {
    let events =
        vec![
        chunk(json!({"role": "assistant", "content": "Hello"})),
        chunk(json!({"content": " world"})),
        chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "lookup", "arguments": "{\"ci"}}]})),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Paris\"}"}}]})),
        json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
            .to_string(),
        json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5,
               "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 2}}})
        .to_string(),
        "[DONE]".to_string(),
    ];
    let (port, seen) = llm_server(events).await;
    let mut opts = inference::LlmOptions::new("openai/gpt-4.1-mini");
    opts.gateway = gateway(port);
    let llm = inference::Llm::new(opts).unwrap();
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "Weather in Paris?");
    let mut req = ChatRequest::new(ctx);
    req.tools = vec![ToolDefinition {
        name: "lookup".into(),
        description: "Look up.".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}),
    }];
    req.conn = no_retry();
    let out = llm.chat(req).collect().await.unwrap();
    assert_eq!(out.text, "Hello world");
    assert_eq!(out.tool_calls.len(), 1);
    assert_eq!(out.tool_calls[0].call_id, "call_1");
    assert_eq!(out.tool_calls[0].name, "lookup");
    assert_eq!(out.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    let usage = out.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.prompt_cached_tokens
        ),
        (10, 5, 2)
    );

    let seen = seen.lock();
    let (auth, body) = &seen.requests[0];
    assert_token(auth.as_deref());
    assert_eq!(body["model"], "openai/gpt-4.1-mini");
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["content"], "Weather in Paris?");
    assert_eq!(body["tools"][0]["function"]["name"], "lookup");
}

#[tokio::test]
async fn llm_error_status_is_an_api_error() {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                r#"{"error":{"message":"rate limited"}}"#,
            )
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut opts = inference::LlmOptions::new("openai/gpt-4.1-mini");
    opts.gateway = gateway(port);
    let llm = inference::Llm::new(opts).unwrap();
    let mut req = ChatRequest::new(ChatContext::new());
    req.conn = no_retry();
    let err = llm.chat(req).collect().await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Status {
                status: 429,
                retryable: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.to_string().contains(SECRET));
}

/// One WebSocket connection: checks the handshake, then runs `script` on the socket.
async fn ws_server<F, Fut>(path: &'static str, script: F) -> u16
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, String) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let uri = Arc::new(Mutex::new(String::new()));
        let seen_uri = uri.clone();
        let ws =
            tokio_tungstenite::accept_hdr_async(stream, move |req: &Request, resp: Response| {
                assert_token(
                    req.headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok()),
                );
                assert!(req.headers().get("x-livekit-session-id").is_some());
                *seen_uri.lock() = req.uri().to_string();
                Ok(resp)
            })
            .await
            .unwrap();
        let uri = uri.lock().clone();
        assert!(uri.starts_with(path), "{uri}");
        script(ws, uri).await;
    });
    port
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

#[tokio::test]
async fn stt_streams_audio_and_maps_transcripts() {
    let received = Arc::new(Mutex::new((Value::Null, 0usize, 0usize)));
    let rec = received.clone();
    let port = ws_server(
        "/v1/stt?model=deepgram%2Fnova-3",
        move |mut ws, _uri| async move {
            let create = next_json(&mut ws).await.unwrap();
            rec.lock().0 = create;
            let mut sent_transcripts = false;
            while let Some(msg) = next_json(&mut ws).await {
                match msg["type"].as_str().unwrap() {
                    "input_audio" => {
                        let pcm = base64::engine::general_purpose::STANDARD
                            .decode(msg["audio"].as_str().unwrap())
                            .unwrap();
                        rec.lock().1 += pcm.len() / 2;
                        if !sent_transcripts {
                            sent_transcripts = true;
                            for m in [
                                json!({"type": "session.created"}),
                                json!({"type": "interim_transcript", "transcript": "hello",
                                   "start": 0.0, "duration": 0.5}),
                            ] {
                                ws.send(Message::text(m.to_string())).await.unwrap();
                            }
                        }
                    }
                    "session.finalize" => {
                        rec.lock().2 += 1;
                        let m = json!({"type": "final_transcript", "transcript": "hello world",
                                   "language": "en", "start": 0.0, "duration": 1.0,
                                   "confidence": 0.9,
                                   "words": [{"word": "hello", "start": 0.0, "end": 0.4},
                                             {"word": "world", "start": 0.5, "end": 1.0}]});
                        ws.send(Message::text(m.to_string())).await.unwrap();
                        ws.send(Message::text(json!({"type": "session.closed"}).to_string()))
                            .await
                            .unwrap();
                    }
                    _ => {}
                }
            }
        },
    )
    .await;
    let mut opts = inference::SttOptions::new("deepgram/nova-3");
    opts.language = Some("multi".into());
    opts.gateway = gateway(port);
    let stt = inference::Stt::new(opts).unwrap();
    let mut stream = stt.stream(None, no_retry()).unwrap();
    // 1 s of 48 kHz stereo in 20 ms frames: sent as 16 kHz mono.
    for _ in 0..50 {
        stream.push_frame(AudioFrame::new(vec![1000; 960 * 2], 48_000, 2).unwrap());
    }
    stream.end_input();
    let mut kinds = Vec::new();
    let mut final_text = String::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), stream.next_event())
        .await
        .unwrap()
    {
        let ev = ev.unwrap();
        if ev.kind == SpeechEventType::FinalTranscript {
            final_text = ev.text().to_owned();
            assert_eq!(ev.alternatives[0].words.len(), 2);
            assert_eq!(ev.alternatives[0].language, "en");
        }
        kinds.push(ev.kind);
    }
    assert_eq!(
        kinds,
        vec![
            SpeechEventType::StartOfSpeech,
            SpeechEventType::InterimTranscript,
            SpeechEventType::RecognitionUsage,
            SpeechEventType::FinalTranscript,
            SpeechEventType::EndOfSpeech,
        ]
    );
    assert_eq!(final_text, "hello world");
    let (create, samples, finalizes) = received.lock().clone();
    assert_eq!(create["type"], "session.create");
    assert_eq!(create["model"], "deepgram/nova-3");
    assert_eq!(create["settings"]["sample_rate"], "16000");
    assert_eq!(create["settings"]["language"], "multi");
    assert!(samples > 14_000 && samples <= 16_000, "{samples}");
    assert_eq!(finalizes, 1);
}

#[tokio::test]
async fn tts_sends_sentences_and_plays_the_audio() {
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let rec = received.clone();
    let port = ws_server(
        "/v1/tts?model=cartesia%2Fsonic-3",
        move |mut ws, _uri| async move {
            while let Some(msg) = next_json(&mut ws).await {
                let kind = msg["type"].as_str().unwrap().to_owned();
                rec.lock().push(msg);
                if kind == "session.flush" {
                    let pcm: Vec<u8> = (0..480i16).flat_map(|s| s.to_le_bytes()).collect();
                    let audio = base64::engine::general_purpose::STANDARD.encode(&pcm);
                    for _ in 0..2 {
                        let m = json!({"type": "output_audio", "audio": audio, "session_id": "s1"});
                        ws.send(Message::text(m.to_string())).await.unwrap();
                    }
                    ws.send(Message::text(json!({"type": "done"}).to_string()))
                        .await
                        .unwrap();
                }
            }
        },
    )
    .await;
    let mut opts = inference::TtsOptions::new("cartesia/sonic-3");
    opts.voice = Some("voice-1".into());
    opts.gateway = gateway(port);
    let tts = inference::Tts::new(opts).unwrap();
    let mut stream = tts.stream(no_retry()).unwrap();
    stream.push_text("Hello there. How are ");
    stream.push_text("you today?");
    stream.end_input();
    let mut samples = 0;
    let mut finals = 0;
    while let Some(audio) = tokio::time::timeout(Duration::from_secs(10), stream.next_audio())
        .await
        .unwrap()
    {
        let audio = audio.unwrap();
        assert_eq!(audio.frame.sample_rate, 24_000);
        samples += audio.frame.samples_per_channel;
        finals += usize::from(audio.is_final);
    }
    assert_eq!(samples, 960);
    assert_eq!(finals, 1);
    let msgs = received.lock().clone();
    assert_eq!(msgs[0]["type"], "session.create");
    assert_eq!(msgs[0]["voice"], "voice-1");
    assert_eq!(msgs[0]["sample_rate"], "24000");
    let sentences: Vec<&str> = msgs
        .iter()
        .filter(|m| m["type"] == "input_transcript")
        .map(|m| m["transcript"].as_str().unwrap())
        .collect();
    assert_eq!(sentences.concat(), "Hello there. How are you today? ");
    assert_eq!(msgs.last().unwrap()["type"], "session.flush");
}

#[test]
fn bad_descriptors_fail_at_build_time_with_one_line() {
    let err = AgentSession::builder()
        .llm("gpt-4o")
        .try_build()
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("\"provider/model\""), "{text}");
    assert!(!text.contains('\n'));
    let err = AgentSession::builder()
        .stt("deepgram/nova-3:")
        .try_build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("auto[:language]"));
    let err = Agent::builder()
        .tts("acme/voice-9")
        .try_build()
        .unwrap_err();
    assert!(matches!(err, InferenceError::Descriptor { .. }), "{err}");
    assert!(err.to_string().contains("unknown provider \"acme\""));
}

#[tokio::test]
async fn a_session_built_with_a_bad_descriptor_does_not_start() {
    let session = AgentSession::builder().llm("nonsense").build();
    let err = session
        .start(Agent::new("hi"), SessionIo::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Config { .. }), "{err}");
    let agent = Agent::builder().llm("openai").build();
    let session = AgentSession::builder().build();
    assert!(session.start(agent, SessionIo::default()).await.is_err());
}

/// Descriptors read credentials and the URL from the environment: this runs the child test
/// below in a subprocess with them set (no environment changes inside this process).
#[test]
fn descriptors_resolve_from_the_environment() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = vec![
        chunk(json!({"content": "Hi from the gateway."})),
        "[DONE]".into(),
    ];
    let (port, seen) = rt.block_on(llm_server(events));
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_session_with_descriptors",
            "--nocapture",
        ])
        .env(
            "LIVEKIT_INFERENCE_URL",
            format!("http://127.0.0.1:{port}/v1"),
        )
        .env("LIVEKIT_API_KEY", KEY)
        .env("LIVEKIT_API_SECRET", SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    let seen = seen.lock();
    assert_eq!(seen.requests.len(), 1);
    assert_token(seen.requests[0].0.as_deref());
    assert_eq!(seen.requests[0].1["model"], "openai/gpt-4.1-mini");
    drop(rt);
}

#[tokio::test]
#[ignore = "run by descriptors_resolve_from_the_environment with the environment set"]
async fn child_session_with_descriptors() {
    let session = AgentSession::builder()
        .stt("deepgram/nova-3:multi")
        .llm("openai/gpt-4.1-mini")
        .tts("cartesia/sonic-3:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc")
        .try_build()
        .unwrap();
    let agent = Agent::builder()
        .instructions("Be brief.")
        .llm("openai/gpt-4.1-mini")
        .try_build()
        .unwrap();
    session.start(agent, SessionIo::default()).await.unwrap();
    let result = session.run("Hello").await.unwrap();
    let mut expect = result.expect();
    let msg = expect.next_event().is_message(ChatRole::Assistant);
    assert_eq!(msg.text_content().as_deref(), Some("Hi from the gateway."));
    session.close().await;
}

/// Polls `cond` (on state the fake server fills) until it holds.
async fn until(cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn tts_reuses_one_pooled_connection_and_sends_fallbacks() {
    // The fake accepts exactly one connection: a second utterance only gets audio if the
    // first utterance's connection was kept and reused.
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let rec = received.clone();
    let port = ws_server(
        "/v1/tts?model=cartesia%2Fsonic-3",
        move |mut ws, _uri| async move {
            while let Some(msg) = next_json(&mut ws).await {
                let kind = msg["type"].as_str().unwrap().to_owned();
                rec.lock().push(msg);
                if kind == "session.flush" {
                    let pcm: Vec<u8> = (0..240i16).flat_map(|s| s.to_le_bytes()).collect();
                    let audio = base64::engine::general_purpose::STANDARD.encode(&pcm);
                    let m = json!({"type": "output_audio", "audio": audio, "session_id": "s1"});
                    ws.send(Message::text(m.to_string())).await.unwrap();
                    ws.send(Message::text(json!({"type": "done"}).to_string()))
                        .await
                        .unwrap();
                }
            }
        },
    )
    .await;
    let mut opts = inference::TtsOptions::new("cartesia/sonic-3");
    opts.voice = Some("voice-1".into());
    opts.fallback = vec![
        inference::TtsFallbackModel::from_descriptor("inworld/inworld-tts-1:Ashley").unwrap(),
        inference::TtsFallbackModel::from_descriptor("rime/arcana").unwrap(),
    ];
    opts.gateway = gateway(port);
    let tts = inference::Tts::new(opts).unwrap();
    assert_eq!(tts.idle_connections(), 0);
    for text in ["First utterance.", "Second utterance."] {
        let frame = tokio::time::timeout(
            Duration::from_secs(10),
            tts.synthesize(text, no_retry()).collect(),
        )
        .await
        .expect("audio in time")
        .unwrap();
        assert_eq!(frame.samples_per_channel, 240);
        assert_eq!(
            tts.idle_connections(),
            1,
            "the connection went back to the pool"
        );
    }
    let msgs = received.lock().clone();
    let creates: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["type"] == "session.create")
        .collect();
    assert_eq!(creates.len(), 1, "one connection, one session.create");
    assert_eq!(
        creates[0]["fallback"],
        json!({"models": [
            {"model": "inworld/inworld-tts-1", "voice": "Ashley", "extra": {}},
            {"model": "rime/arcana", "voice": "", "extra": {}},
        ]})
    );
    let transcripts: Vec<&str> = msgs
        .iter()
        .filter(|m| m["type"] == "input_transcript")
        .map(|m| m["transcript"].as_str().unwrap())
        .collect();
    assert_eq!(transcripts, ["First utterance. ", "Second utterance. "]);
    // A bad fallback descriptor is refused when the model is built.
    let mut bad = inference::TtsOptions::new("cartesia/sonic-3");
    bad.fallback = vec![inference::TtsFallbackModel {
        model: "no-provider".into(),
        voice: String::new(),
        extra: Default::default(),
    }];
    bad.gateway = gateway(port);
    assert!(inference::Tts::new(bad).is_err());
}

#[tokio::test]
async fn a_pooled_connection_the_gateway_closed_is_not_reused() {
    // Two connections accepted; the first is closed by the gateway after its utterance.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(0usize));
    let acc = accepted.clone();
    tokio::spawn(async move {
        for n in 0..2 {
            let (stream, _) = listener.accept().await.unwrap();
            *acc.lock() += 1;
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            tokio::spawn(async move {
                while let Some(msg) = next_json(&mut ws).await {
                    if msg["type"] == "session.flush" {
                        let audio =
                            base64::engine::general_purpose::STANDARD.encode([1u8, 0, 2, 0]);
                        let m = json!({"type": "output_audio", "audio": audio});
                        ws.send(Message::text(m.to_string())).await.unwrap();
                        ws.send(Message::text(json!({"type": "done"}).to_string()))
                            .await
                            .unwrap();
                        if n == 0 {
                            let _ = ws.close(None).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    let mut opts = inference::TtsOptions::new("cartesia/sonic-3");
    opts.gateway = gateway(port);
    let tts = inference::Tts::new(opts).unwrap();
    let first = tts.synthesize("One.", no_retry()).collect().await.unwrap();
    assert_eq!(first.samples_per_channel, 2);
    until(|| *accepted.lock() == 1).await;
    assert_eq!(tts.idle_connections(), 1);
    // The gateway closes the pooled connection. Whether the close has arrived when the next
    // utterance looks at the pool (then the connection is discarded) or not (then the attempt
    // fails and the retry policy connects again), the utterance gets its audio on a fresh
    // connection.
    let retry_once = ApiConnectOptions::default()
        .with_max_retry(1)
        .with_retry_interval(Duration::from_millis(10));
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        tts.synthesize("Two.", retry_once).collect(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(second.samples_per_channel, 2);
    assert_eq!(
        *accepted.lock(),
        2,
        "a fresh connection replaced the closed one"
    );
}

#[tokio::test]
async fn stt_sends_keyterms_and_fallbacks_and_updates_keyterms_between_turns() {
    #[derive(Default)]
    struct Rec {
        msgs: Vec<Value>,
        /// `session.update`s received while the server considered the user speaking.
        updates_while_speaking: usize,
        speaking: bool,
    }
    let rec = Arc::new(Mutex::new(Rec::default()));
    let r = rec.clone();
    let port = ws_server(
        "/v1/stt?model=deepgram%2Fnova-3",
        move |mut ws, _uri| async move {
            let mut started = false;
            while let Some(msg) = next_json(&mut ws).await {
                let kind = msg["type"].as_str().unwrap().to_owned();
                {
                    let mut r = r.lock();
                    if kind == "session.update" && r.speaking {
                        r.updates_while_speaking += 1;
                    }
                    if kind != "input_audio" {
                        r.msgs.push(msg);
                    }
                }
                match kind.as_str() {
                    "input_audio" if !started => {
                        started = true;
                        r.lock().speaking = true;
                        ws.send(Message::text(json!({"type": "start_of_speech"}).to_string()))
                            .await
                            .unwrap();
                    }
                    "session.finalize" => {
                        let was_speaking = std::mem::replace(&mut r.lock().speaking, false);
                        let m = if was_speaking {
                            json!({"type": "final_transcript", "transcript": "hi LiveKit", "start": 0.0, "duration": 0.5})
                        } else {
                            json!({"type": "session.closed"})
                        };
                        ws.send(Message::text(m.to_string())).await.unwrap();
                    }
                    _ => {}
                }
            }
        },
    )
    .await;
    let mut opts = inference::SttOptions::new("deepgram/nova-3");
    opts.extra.insert("keyterm".into(), json!("Rust"));
    opts.keyterms = vec!["LiveKit".into(), "Rust".into()];
    opts.fallback =
        vec![
            inference::SttFallbackModel::from_descriptor("assemblyai/universal-streaming:en")
                .unwrap(),
        ];
    opts.gateway = gateway(port);
    let stt = inference::Stt::new(opts).unwrap();
    let mut stream = stt.stream(None, no_retry()).unwrap();
    until(|| !rec.lock().msgs.is_empty()).await;
    let create = rec.lock().msgs[0].clone();
    assert_eq!(create["type"], "session.create");
    assert_eq!(
        create["settings"]["extra"]["keyterm"],
        json!(["Rust", "LiveKit"]),
        "the user's own terms first, no duplicates"
    );
    assert_eq!(
        create["fallback"],
        json!({"models": [{"model": "assemblyai/universal-streaming", "extra": null}]})
    );

    // While the user is silent, a change goes out at once.
    stt.update_keyterms(vec!["Agents".into()]);
    until(|| {
        rec.lock()
            .msgs
            .iter()
            .any(|m| m["type"] == "session.update")
    })
    .await;
    let update = rec
        .lock()
        .msgs
        .iter()
        .find(|m| m["type"] == "session.update")
        .cloned()
        .unwrap();
    assert_eq!(
        update,
        json!({"type": "session.update", "settings": {"extra": {"keyterm": ["Rust", "Agents"]}}})
    );

    // While the user speaks, it waits for the end of the turn.
    stream.push_frame(AudioFrame::new(vec![100; 1600], 16_000, 1).unwrap());
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next_event())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if ev.kind == SpeechEventType::StartOfSpeech {
            break;
        }
    }
    stt.update_keyterms(vec!["Speaking".into()]);
    for _ in 0..5 {
        stream.push_frame(AudioFrame::new(vec![100; 320], 16_000, 1).unwrap());
    }
    stream.flush();
    until(|| {
        rec.lock()
            .msgs
            .iter()
            .filter(|m| m["type"] == "session.update")
            .count()
            == 2
    })
    .await;
    let (while_speaking, last_update) = {
        let r = rec.lock();
        let last = r
            .msgs
            .iter()
            .rfind(|m| m["type"] == "session.update")
            .cloned()
            .unwrap();
        (r.updates_while_speaking, last)
    };
    assert_eq!(while_speaking, 0, "deferred to the end of speech");
    assert_eq!(
        last_update["settings"]["extra"]["keyterm"],
        json!(["Rust", "Speaking"])
    );
    stream.end_input();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), stream.next_event())
        .await
        .unwrap()
    {
        ev.unwrap();
    }

    // Models without keyterm prompting: the key is unknown, nothing is sent.
    assert_eq!(inference::keyterms_key("cartesia/ink-whisper"), None);
    assert_eq!(
        inference::keyterms_key("openai/gpt-transcribe"),
        Some("keywords")
    );
    assert_eq!(
        inference::keyterms_key("assemblyai/universal-streaming"),
        Some("keyterms_prompt")
    );
}
