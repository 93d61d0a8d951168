//! Deepgram protocol scripting for the tests (listen `Results` messages, control messages);
//! the provider-neutral fake server comes from `livekit-plugin-test-support`.
#![allow(dead_code, clippy::unwrap_used)]

pub use livekit_plugin_test_support::*;

use livekit_agents::stt::{SpeechEvent, SpeechEventType, SpeechStream};
use serde_json::{json, Value};
use std::time::Duration;

pub const RATE: u32 = 16_000;
/// Bytes of one 50 ms chunk at 16 kHz mono.
pub const CHUNK_BYTES: usize = 1_600;

/// Pushes `secs` of ramp audio in 10 ms frames starting at sample `start`; returns the end.
pub fn push_audio(stream: &SpeechStream, start: usize, secs: f64) -> usize {
    let total = (secs * RATE as f64) as usize;
    let mut pos = start;
    while pos < start + total {
        let n = 160.min(start + total - pos);
        stream.push_frame(ramp_frame(pos, n, RATE));
        pos += n;
    }
    pos
}

pub fn results(
    transcript: &str,
    words: &[(&str, f64, f64)],
    window: (f64, f64),
    is_final: bool,
    speech_final: bool,
) -> Value {
    let words: Vec<Value> = words
        .iter()
        .map(|(w, s, e)| {
            json!({"word": w.to_lowercase().trim_end_matches('.'), "punctuated_word": w,
                   "start": s, "end": e, "confidence": 0.9, "speaker": 0})
        })
        .collect();
    json!({
        "type": "Results",
        "channel_index": [0, 1],
        "duration": window.1,
        "start": window.0,
        "is_final": is_final,
        "speech_final": speech_final,
        "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.95, "words": words}]},
        "metadata": {"request_id": "req-1", "model_info": {"name": "general-nova-3"}},
        "from_finalize": false
    })
}

pub async fn next(stream: &mut SpeechStream) -> SpeechEvent {
    tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("no event in time")
        .expect("stream ended")
        .expect("stream failed")
}

/// Next event that is not a usage report.
pub async fn next_speech(stream: &mut SpeechStream) -> SpeechEvent {
    loop {
        let ev = next(stream).await;
        if ev.kind != SpeechEventType::RecognitionUsage {
            return ev;
        }
    }
}

/// Next text message from the client that is not a KeepAlive, with the audio before it.
pub async fn next_control(conn: &mut FakeConn) -> (Vec<u8>, Option<Value>) {
    let mut audio = Vec::new();
    loop {
        let (bytes, text) = conn.recv_until_text().await;
        audio.extend(bytes);
        match text {
            None => return (audio, None),
            Some(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "KeepAlive" {
                    return (audio, Some(v));
                }
            }
        }
    }
}
