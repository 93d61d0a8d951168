//! The production TLS path (rustls with the platform roots, as shipped) against a local
//! Cartesia server behind TLS, whose self-signed certificate this test process trusts through
//! `SSL_CERT_FILE` (its own binary, so no other test shares the changed root store).

#![allow(clippy::unwrap_used)]

mod support;

use base64::Engine as _;
use livekit_agents::tts::Tts as _;
use livekit_agents::types::ApiConnectOptions;
use livekit_plugins_cartesia::{Tts, TtsOptions};
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn tts_websocket_over_wss() {
    let _ = tls::TestTls::shared();
    let mut server = FakeServer::start_tls()
        .await
        .refusing(models::cartesia_handshake);
    assert!(server.base_url().starts_with("https://127.0.0.1:"));
    let tts = Tts::new(TtsOptions {
        api_key: Some("test-key".into()),
        ..Default::default()
    })
    .unwrap()
    .with_base_url(&server.base_url())
    .unwrap();
    let mut stream = tts.stream(ApiConnectOptions::default()).unwrap();
    stream.push_text("Over TLS this time.");
    stream.end_input();
    let mut conn = server.next_conn().await;
    assert_eq!(conn.headers["cartesia-version"], "2026-03-01");
    let context_id = loop {
        let ClientMsg::Text(t) = conn.recv().await else {
            panic!("expected a request")
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert!(models::cartesia_tts_refusal(&v).is_none(), "{v}");
        if v["continue"] == false {
            break v["context_id"].as_str().unwrap().to_string();
        }
    };
    let pcm: Vec<u8> = [5i16; 480].iter().flat_map(|s| s.to_le_bytes()).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(pcm);
    conn.send_json(json!({"type": "chunk", "data": data, "done": false, "context_id": context_id}))
        .await;
    conn.send_json(json!({"type": "done", "done": true, "context_id": context_id}))
        .await;
    let mut samples = Vec::new();
    while let Some(audio) = stream.next_audio().await {
        samples.extend(audio.unwrap().frame.data);
    }
    assert_eq!(samples, vec![5; 480]);
}
