//! The production TLS path (rustls with the platform roots, as shipped): the local servers
//! run behind TLS with a self-signed certificate that this test process trusts through
//! `SSL_CERT_FILE` (its own binary, so no other test shares the changed root store).

#![allow(clippy::unwrap_used)]

mod common;

use common::{Reply, Server};
use livekit_agents::llm::{ChatContext, ChatRequest, ChatRole, Llm as _};
use livekit_plugin_test_support::tls::TestTls;
use livekit_plugins_openai::{Llm, LlmOptions};

#[tokio::test]
async fn chat_completions_over_https() {
    let _ = TestTls::shared();
    let server = Server::start_tls(vec![Reply::sse(&[
        r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        "[DONE]",
    ])])
    .await;
    assert!(server.base_url().starts_with("https://127.0.0.1:"));
    let llm = Llm::new(LlmOptions {
        api_key: Some("sk-tls".into()),
        base_url: Some(server.base_url()),
        ..Default::default()
    })
    .unwrap();
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::User, "hello");
    let out = llm.chat(ChatRequest::new(ctx)).collect().await.unwrap();
    assert_eq!(out.text, "Hi");
    let reqs = server.0.requests().await;
    assert_eq!(reqs[0].header("authorization").unwrap(), "Bearer sk-tls");
}
