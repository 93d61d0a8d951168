//! The LLM against a local server speaking Chat Completions over SSE.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Reply, Server, StreamEnd};
use livekit_agents::llm::{
    ChatContext, ChatRequest, ChatRole, CompletionUsage, FunctionToolCall, Llm as _, ToolChoice,
    ToolDefinition,
};
use livekit_agents::types::{ApiConnectOptions, ApiError};
use livekit_plugins_openai::{AzureOptions, CompatibleOptions, Llm, LlmOptions};
use serde_json::json;

fn fast_retries() -> ApiConnectOptions {
    ApiConnectOptions::default()
        .with_max_retry(3)
        .with_retry_interval(Duration::from_millis(10))
        .with_timeout(Duration::from_secs(5))
}

fn llm(server: &Server) -> Llm {
    Llm::new(LlmOptions {
        api_key: Some("sk-test-123".into()),
        base_url: Some(server.base_url()),
        ..Default::default()
    })
    .unwrap()
}

fn request() -> ChatRequest {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, "You are terse.");
    ctx.add_message(ChatRole::User, "Say hello");
    ChatRequest {
        conn: fast_retries(),
        ..ChatRequest::new(ctx)
    }
}

const HELLO: &[&str] = &[
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":8}}}"#,
    "[DONE]",
];

#[tokio::test]
async fn streams_text_and_usage_and_sends_the_expected_request() {
    let server = Server::start(vec![Reply::sse(HELLO)]).await;
    let mut stream = llm(&server).chat(request());
    let first = stream.next_chunk().await.unwrap().unwrap();
    assert_eq!(
        first.delta.unwrap().content.as_deref(),
        Some("Hello"),
        "text is forwarded as it arrives"
    );
    let rest = stream.collect().await.unwrap();
    assert_eq!(rest.text, " world");
    assert_eq!(
        rest.usage,
        Some(CompletionUsage {
            completion_tokens: 2,
            prompt_tokens: 12,
            prompt_cached_tokens: 8,
            total_tokens: 14
        })
    );

    let reqs = server.requests().await;
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization").unwrap(), "Bearer sk-test-123");
    assert_eq!(r.header("accept").unwrap(), "text/event-stream");
    let body = r.json();
    assert_eq!(body["model"], "gpt-6-luna");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"},
        ])
    );
    assert!(body.get("tools").is_none());
}

#[tokio::test]
async fn stitches_parallel_tool_calls_interleaved_across_chunks() {
    let server = Server::start(vec![Reply::sse(&[
        r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"loc"}}]}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{\"tz\":"}}]}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ation\":\"Paris\"}"}}]}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"c","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":20,"total_tokens":50}}"#,
        "[DONE]",
    ])])
    .await;
    let mut req = request();
    req.tools = vec![
        ToolDefinition {
            name: "get_weather".into(),
            description: "Weather for a location".into(),
            parameters: json!({"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}),
        },
        ToolDefinition {
            name: "get_time".into(),
            description: "Time in a zone".into(),
            parameters: json!({"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}),
        },
    ];
    req.tool_choice = Some(ToolChoice::Required);
    req.options.parallel_tool_calls = Some(true);
    req.options.temperature = Some(0.2);
    req.options.max_tokens = Some(100);
    let out = llm(&server).chat(req).collect().await.unwrap();
    assert_eq!(out.text, "");
    assert_eq!(
        out.tool_calls,
        vec![
            FunctionToolCall {
                call_id: "call_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"Paris"}"#.into()
            },
            FunctionToolCall {
                call_id: "call_2".into(),
                name: "get_time".into(),
                arguments: r#"{"tz":"CET"}"#.into()
            },
        ]
    );
    assert_eq!(out.usage.unwrap().total_tokens, 50);

    let body = server.requests().await[0].json();
    assert_eq!(body["tool_choice"], "required");
    assert_eq!(body["parallel_tool_calls"], true);
    assert_eq!(body["max_completion_tokens"], 100);
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    let weather = &body["tools"][0];
    assert_eq!(weather["type"], "function");
    assert_eq!(weather["function"]["name"], "get_weather");
    assert_eq!(weather["function"]["strict"], true);
    assert_eq!(
        weather["function"]["parameters"]["additionalProperties"],
        false
    );
}

async fn single_error(status: u16) -> (ApiError, usize) {
    let server = Server::start(vec![
        Reply::Status(
            status,
            r#"{"error":{"message":"Incorrect API key provided: sk-te***123","type":"invalid_request_error","code":"invalid_api_key"}}"#.into(),
        ),
        Reply::sse(HELLO),
    ])
    .await;
    let err = llm(&server).chat(request()).collect().await.unwrap_err();
    (err, server.requests().await.len())
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_says_why() {
    let (err, requests) = single_error(401).await;
    assert_eq!(requests, 1, "401 must not be retried");
    assert!(!err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains("rejected the API key"), "{msg}");
    assert!(msg.contains("req_test"), "request id in {msg}");
    assert!(!msg.contains("sk-test-123"), "the key never appears: {msg}");
}

#[tokio::test]
async fn forbidden_is_not_retried() {
    let (err, requests) = single_error(403).await;
    assert_eq!(requests, 1);
    assert!(matches!(
        err,
        ApiError::Status {
            status: 403,
            retryable: false,
            ..
        }
    ));
}

#[tokio::test]
async fn rate_limit_and_server_errors_are_retried_then_succeed() {
    for status in [429u16, 500, 503] {
        let server = Server::start(vec![
            Reply::Status(status, r#"{"error":{"message":"busy"}}"#.into()),
            Reply::sse(HELLO),
        ])
        .await;
        let out = llm(&server).chat(request()).collect().await.unwrap();
        assert_eq!(out.text, "Hello world", "status {status}");
        assert_eq!(server.requests().await.len(), 2, "status {status}");
    }
}

#[tokio::test]
async fn retries_stop_after_max_retry() {
    let server = Server::start(
        (0..10)
            .map(|_| Reply::Status(500, r#"{"error":{"message":"down"}}"#.into()))
            .collect(),
    )
    .await;
    let err = llm(&server).chat(request()).collect().await.unwrap_err();
    assert!(matches!(err, ApiError::Status { status: 500, .. }));
    assert_eq!(server.requests().await.len(), 4, "1 attempt + 3 retries");
}

#[tokio::test]
async fn malformed_sse_is_a_protocol_error() {
    let server = Server::start(vec![
        Reply::sse(&[r#"{"id":"x","choices":[{"index":0,"delta":{"content":"#]),
        Reply::sse(HELLO),
    ])
    .await;
    let err = llm(&server).chat(request()).collect().await.unwrap_err();
    assert!(matches!(err, ApiError::Protocol { .. }), "{err:?}");
    assert_eq!(
        server.requests().await.len(),
        1,
        "protocol errors are not retried"
    );
}

#[tokio::test]
async fn truncated_stream_before_content_is_retried() {
    let server = Server::start(vec![
        // Ends cleanly but without a finished choice or [DONE].
        Reply::sse(&[HELLO[0]]),
        // The connection is cut mid-body.
        Reply::sse(&[HELLO[0]]).ending(StreamEnd::Cut),
        Reply::sse(HELLO),
    ])
    .await;
    let out = llm(&server).chat(request()).collect().await.unwrap();
    assert_eq!(out.text, "Hello world");
    assert_eq!(server.requests().await.len(), 3);
}

#[tokio::test]
async fn truncated_stream_error_is_typed() {
    let server = Server::start(vec![Reply::sse(&[HELLO[0]])]).await;
    let mut req = request();
    req.conn.max_retry = 0;
    let err = llm(&server).chat(req).collect().await.unwrap_err();
    assert!(err.to_string().contains("before [DONE]"), "{err}");
    assert!(matches!(err, ApiError::Connection { .. }));
}

#[tokio::test]
async fn a_stream_that_produced_text_is_never_retried() {
    let server = Server::start(vec![
        Reply::sse(&HELLO[..2]).ending(StreamEnd::Cut),
        Reply::sse(HELLO),
    ])
    .await;
    let mut stream = llm(&server).chat(request());
    let first = stream.next_chunk().await.unwrap().unwrap();
    assert_eq!(first.delta.unwrap().content.as_deref(), Some("Hello"));
    let err = stream.next_chunk().await.unwrap().unwrap_err();
    assert!(err.is_retryable(), "the error itself is retryable: {err}");
    assert!(stream.next_chunk().await.is_none());
    assert_eq!(
        server.requests().await.len(),
        1,
        "no second request after text was emitted"
    );
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let server = Server::start(vec![Reply::sse(&HELLO[..2]).ending(StreamEnd::Hang)]).await;
    let mut stream = llm(&server).chat(request());
    let first = stream.next_chunk().await.unwrap().unwrap();
    assert_eq!(first.delta.unwrap().content.as_deref(), Some("Hello"));
    drop(stream);
    tokio::time::timeout(Duration::from_secs(30), server.state.client_gone.notified())
        .await
        .expect("the server sees the client go away");
}

#[tokio::test]
async fn azure_uses_deployment_path_api_version_and_api_key_header() {
    let server = Server::start(vec![Reply::sse(HELLO)]).await;
    let llm = Llm::with_azure(AzureOptions {
        azure_endpoint: Some(format!("http://{}", server.addr)),
        azure_deployment: Some("my-gpt".into()),
        api_key: Some("azure-secret".into()),
        api_version: Some("2024-10-01-preview".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(llm.options().temperature, Some(0.1));
    let out = llm.chat(request()).collect().await.unwrap();
    assert_eq!(out.text, "Hello world");
    let r = &server.requests().await[0];
    assert_eq!(r.path, "/openai/deployments/my-gpt/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-01-preview"));
    assert_eq!(r.header("api-key").unwrap(), "azure-secret");
    assert!(r.header("authorization").is_none());
}

#[tokio::test]
async fn compatible_provider_with_base_url_override() {
    let server = Server::start(vec![Reply::sse(HELLO)]).await;
    server.set_provider("groq");
    let llm = Llm::with_groq(CompatibleOptions {
        api_key: Some("gsk-secret".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&server.base_url())
    .unwrap();
    assert_eq!(livekit_agents::llm::Llm::provider(&llm), "groq");
    llm.chat(request()).collect().await.unwrap();
    let r = &server.requests().await[0];
    assert_eq!(r.header("authorization").unwrap(), "Bearer gsk-secret");
    let body = r.json();
    assert_eq!(body["model"], "openai/gpt-oss-120b");
    assert_eq!(body["temperature"], 1.0);
}

#[test]
fn missing_keys_name_the_variable() {
    if std::env::var("CEREBRAS_API_KEY").is_err() {
        let err = Llm::with_cerebras(CompatibleOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing API key: set CEREBRAS_API_KEY or pass `api_key` in the options"
        );
    }
    if std::env::var("XAI_API_KEY").is_err() {
        let err = Llm::with_x_ai(CompatibleOptions::default()).unwrap_err();
        assert!(err.to_string().contains("XAI_API_KEY"));
    }
}

#[tokio::test]
async fn live_openai_chat() {
    if std::env::var("OPENAI_API_KEY").is_err() {
        println!("skipping live OpenAI LLM test: OPENAI_API_KEY is not set");
        return;
    }
    let llm = Llm::new(LlmOptions::default()).unwrap();
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "Reply with the single word: pong");
    let out = llm.chat(ChatRequest::new(ctx)).collect().await.unwrap();
    assert!(out.text.to_lowercase().contains("pong"), "{}", out.text);
    assert!(out.usage.is_some());
}

#[tokio::test]
async fn a_stalled_stream_times_out() {
    // Headers and one text chunk, then silence: the idle timeout ends the stream with a
    // timeout error (no retry: text was already emitted).
    let server = Server::start(vec![
        Reply::sse(&HELLO[..2]).ending(StreamEnd::Hang),
        Reply::sse(HELLO),
    ])
    .await;
    let mut req = request();
    // The idle deadline is real time (reqwest needs real sockets, which the paused clock
    // cannot drive): 1 s is far above what a loaded machine needs to deliver the first chunk
    // over loopback, and is what the test waits for the timeout.
    req.conn.timeout = Duration::from_secs(1);
    let mut stream = llm(&server).chat(req);
    assert!(stream.next_chunk().await.unwrap().is_ok());
    let err = stream.next_chunk().await.unwrap().unwrap_err();
    assert!(matches!(err, ApiError::Timeout(_)), "{err:?}");
    assert_eq!(server.requests().await.len(), 1);

    // Stalled before any content: retried, and the retry succeeds.
    let server = Server::start(vec![
        Reply::sse(&HELLO[..1]).ending(StreamEnd::Hang),
        Reply::sse(HELLO),
    ])
    .await;
    let mut req = request();
    req.conn.timeout = Duration::from_secs(1);
    let out = llm(&server).chat(req).collect().await.unwrap();
    assert_eq!(out.text, "Hello world");
    assert_eq!(server.requests().await.len(), 2);
}

/// Every OpenAI-compatible constructor, with the provider name its model list is kept under.
fn compatible_providers() -> Vec<(&'static str, &'static str, Llm)> {
    let opts = || CompatibleOptions {
        api_key: Some("k".into()),
        ..Default::default()
    };
    vec![
        (
            "cerebras",
            "CEREBRAS_API_KEY",
            Llm::with_cerebras(opts()).unwrap(),
        ),
        (
            "deepseek",
            "DEEPSEEK_API_KEY",
            Llm::with_deepseek(opts()).unwrap(),
        ),
        ("groq", "GROQ_API_KEY", Llm::with_groq(opts()).unwrap()),
        (
            "perplexity",
            "PERPLEXITY_API_KEY",
            Llm::with_perplexity(opts()).unwrap(),
        ),
        ("xai", "XAI_API_KEY", Llm::with_x_ai(opts()).unwrap()),
    ]
}

#[tokio::test]
async fn every_default_model_is_accepted_by_its_provider() {
    // The local server refuses models missing from crates/plugin-test-support/provider-models.json the way the
    // real APIs do, so a retired default (llama3.1-8b, deepseek-chat,
    // llama-3.3-70b-versatile, llama-3.1-sonar-small-128k-chat, grok-2-public) fails here.
    for (provider, _, llm) in compatible_providers() {
        let server = Server::start(vec![Reply::sse(HELLO)]).await;
        server.set_provider(provider);
        let llm = llm.with_base_url(&server.base_url()).unwrap();
        let out = llm.chat(request()).collect().await;
        assert_eq!(out.unwrap().text, "Hello world", "{provider}");
    }
    let server = Server::start(vec![Reply::sse(HELLO)]).await;
    llm(&server).chat(request()).collect().await.unwrap();
}

#[tokio::test]
async fn a_retired_model_is_refused_like_the_real_api_and_not_retried() {
    let server = Server::start(vec![Reply::sse(HELLO)]).await;
    server.set_provider("groq");
    let llm = Llm::with_groq(CompatibleOptions {
        api_key: Some("k".into()),
        model: Some("llama-3.3-70b-versatile".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&server.base_url())
    .unwrap();
    let err = llm.chat(request()).collect().await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(
        matches!(err, ApiError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(server.requests().await.len(), 1);
}

#[tokio::test]
async fn live_compatible_providers_default_models() {
    // One request per provider whose key is set (CEREBRAS_API_KEY, DEEPSEEK_API_KEY,
    // GROQ_API_KEY, PERPLEXITY_API_KEY, XAI_API_KEY), with its default model.
    let mut ran = 0;
    for (provider, env, _) in compatible_providers() {
        let Ok(key) = std::env::var(env) else {
            println!("skipping live {provider} test: {env} is not set");
            continue;
        };
        let opts = CompatibleOptions {
            api_key: Some(key),
            ..Default::default()
        };
        let llm = match provider {
            "cerebras" => Llm::with_cerebras(opts),
            "deepseek" => Llm::with_deepseek(opts),
            "groq" => Llm::with_groq(opts),
            "perplexity" => Llm::with_perplexity(opts),
            _ => Llm::with_x_ai(opts),
        }
        .unwrap();
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::User, "Reply with the single word: pong");
        let out = llm.chat(ChatRequest::new(ctx)).collect().await;
        let out = out.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert!(
            out.text.to_lowercase().contains("pong"),
            "{provider}: {}",
            out.text
        );
        ran += 1;
    }
    println!("live compatible providers exercised: {ran}");
}

/// Issue 15 item 7: keep-alive comments are not events: a stream that sends only them after
/// its first text times out (it used to wait as long as the comments kept coming).
#[tokio::test]
async fn keep_alive_comments_do_not_hold_a_stream_open() {
    let mut parts: Vec<Vec<u8>> = HELLO[..2]
        .iter()
        .map(|e| format!("data: {e}\n\n").into_bytes())
        .collect();
    // Comments every 50 ms for far longer than the test can take (the server stops when the
    // client goes away): however slowly a loaded machine runs, the stream never ends by
    // itself, so the only way out is the idle deadline. Real time is unavoidable here (reqwest
    // needs real sockets, which tokio's paused clock cannot drive: it advances while the
    // runtime waits on I/O); the outcome depends on it only through the first two data
    // events, which must arrive within the 2 s deadline.
    parts.extend(std::iter::repeat_n(b": keep-alive\n\n".to_vec(), 100_000));
    let server = Server::start(vec![Reply::Stream {
        content_type: "text/event-stream",
        parts,
        pause: Duration::from_millis(50),
        end: StreamEnd::Close,
    }])
    .await;
    let mut req = request();
    req.conn.timeout = Duration::from_secs(2);
    let mut stream = llm(&server).chat(req);
    assert!(stream.next_chunk().await.unwrap().is_ok());
    // A guard only: with the old behaviour the comments would hold the stream open.
    let err = tokio::time::timeout(Duration::from_secs(60), stream.next_chunk())
        .await
        .expect("keep-alive comments held the stream open")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ApiError::Timeout(_)), "{err:?}");
}
