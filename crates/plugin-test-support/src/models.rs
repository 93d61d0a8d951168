//! The models (and voices) the fake provider servers accept: the list kept next to the
//! documented defaults table (`crates/plugin-test-support/provider-models.json` beside `docs/providers.md`). A fake
//! refuses anything else the way the real API does, so a retired default fails the tests.

use std::sync::OnceLock;

/// The list file, compiled in so tests need no file access at run time.
const LIST: &str = include_str!("../provider-models.json");

fn list() -> &'static serde_json::Value {
    static PARSED: OnceLock<serde_json::Value> = OnceLock::new();
    PARSED.get_or_init(|| {
        serde_json::from_str(LIST).expect("crates/plugin-test-support/provider-models.json is JSON")
    })
}

/// The accepted names of `kind` (e.g. `chat`, `transcription`, `speech_voices`) for
/// `provider` (e.g. `openai`, `groq`, `deepgram`). Panics when the list has no such entry, so
/// a typo in a test cannot silently accept everything.
pub fn accepted(provider: &str, kind: &str) -> Vec<String> {
    list()
        .get(provider)
        .and_then(|p| p.get(kind))
        .and_then(|k| k.as_array())
        .unwrap_or_else(|| {
            panic!("crates/plugin-test-support/provider-models.json has no {provider}.{kind}")
        })
        .iter()
        .map(|v| v.as_str().expect("model names are strings").to_string())
        .collect()
}

/// Whether `name` is in the accepted list of `provider`/`kind`.
pub fn accepts(provider: &str, kind: &str, name: &str) -> bool {
    accepted(provider, kind).iter().any(|m| m == name)
}

/// The body OpenAI (and the OpenAI-compatible providers) answer an unknown model with, with
/// HTTP 404: `{"error": {"message": "The model `x` does not exist or you do not have access
/// to it.", "type": "invalid_request_error", "param": null, "code": "model_not_found"}}`.
pub fn openai_model_not_found(model: &str) -> String {
    serde_json::json!({"error": {
        "message": format!("The model `{model}` does not exist or you do not have access to it."),
        "type": "invalid_request_error",
        "param": null,
        "code": "model_not_found",
    }})
    .to_string()
}

/// The body OpenAI answers an invalid parameter value with (HTTP 400).
pub fn openai_invalid_value(param: &str, message: &str) -> String {
    serde_json::json!({"error": {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_value",
    }})
    .to_string()
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// How Deepgram refuses a WebSocket handshake: an unknown model on `/v1/listen` (nova),
/// `/v2/listen` (Flux) or `/v1/speak` gets HTTP 400 with
/// `{"err_code": "Bad Request", "err_msg": "No such model/language/tier combination found."}`.
/// (`channels` on `/v2/listen` is not refused: Deepgram's Channels page lists Flux streaming
/// among the APIs that read it; see `docs/providers.md`.)
pub fn deepgram_handshake(
    path: &str,
    query: &[(String, String)],
    _headers: &http::HeaderMap,
) -> Option<(u16, String)> {
    let kind = match path {
        "/v1/listen" => "listen_v1",
        "/v2/listen" => "listen_v2",
        "/v1/speak" => "speak",
        _ => return None,
    };
    let bad = |msg: &str| {
        Some((
            400,
            serde_json::json!({"err_code": "Bad Request", "err_msg": msg, "request_id": "req-refused"})
                .to_string(),
        ))
    };
    let model = param(query, "model").unwrap_or_default();
    if !accepts("deepgram", kind, model) {
        return bad("No such model/language/tier combination found.");
    }
    None
}

/// How Cartesia refuses a WebSocket handshake: an unsupported `Cartesia-Version` (header or
/// `cartesia_version` query) or, on `/stt/websocket`, an unknown `model`, with HTTP 400 and the
/// structured error body of API version 2026-03-01 (`error_code`, `title`, `message`).
pub fn cartesia_handshake(
    path: &str,
    query: &[(String, String)],
    headers: &http::HeaderMap,
) -> Option<(u16, String)> {
    let bad = |code: &str, title: &str, msg: &str| {
        Some((
            400,
            serde_json::json!({"error_code": code, "title": title, "message": msg, "request_id": "req-refused"})
                .to_string(),
        ))
    };
    let version = param(query, "cartesia_version")
        .map(str::to_string)
        .or_else(|| {
            headers
                .get("cartesia-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    if !accepts("cartesia", "api_versions", &version) {
        return bad(
            "invalid_api_version",
            "Invalid API version",
            &format!("Cartesia-Version {version:?} is not a supported API version."),
        );
    }
    if path == "/stt/websocket" {
        let model = param(query, "model").unwrap_or_default();
        if !accepts("cartesia", "stt", model) {
            return bad(
                "model_not_found",
                "Model not found",
                &format!("The model {model:?} does not exist."),
            );
        }
    }
    None
}

/// How Cartesia's TTS socket (and `/tts/bytes`) refuses a generation request (a JSON
/// message): a `model_id` that is not served (the `model_sunsetted` error of retired models),
/// a voice id that is not a voice UUID (404), or a voice given as an embedding (refused since
/// 2026-06-01). `None` when the request is acceptable.
pub fn cartesia_tts_refusal(request: &serde_json::Value) -> Option<serde_json::Value> {
    let context_id = request.get("context_id").cloned().unwrap_or_default();
    let model = request
        .get("model_id")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    let error = |code: &str, title: &str, msg: &str| {
        Some(serde_json::json!({
            "type": "error", "context_id": context_id, "done": true, "status_code": 400,
            "error_code": code, "title": title, "message": msg,
        }))
    };
    if !model.is_empty() && !accepts("cartesia", "tts", model) {
        return error(
            "model_sunsetted",
            "Model sunsetted",
            "The requested model has been sunsetted and is no longer available.",
        );
    }
    let voice_id = request
        .get("voice")
        .filter(|v| v.get("mode").and_then(|m| m.as_str()) == Some("id"))
        .and_then(|v| v.get("id"))
        .and_then(|id| id.as_str());
    if let Some(id) = voice_id {
        // Since 2026-03-01 an id that is not a voice UUID is answered with 404.
        let uuid_shaped = id.len() == 36
            && id.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if !uuid_shaped {
            return Some(serde_json::json!({
                "type": "error", "context_id": context_id, "done": true, "status_code": 404,
                "error_code": "voice_not_found", "title": "Voice not found",
                "message": format!("Voice {id:?} was not found."),
            }));
        }
    }
    if request
        .get("voice")
        .and_then(|v| v.get("mode"))
        .and_then(|m| m.as_str())
        == Some("embedding")
    {
        return error(
            "invalid_voice",
            "Invalid voice",
            "Voice embeddings are no longer supported; use a voice id.",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses_and_names_every_provider() {
        assert!(accepts("openai", "chat", "gpt-6-luna"));
        assert!(!accepts("openai", "chat", "gpt-4o-mini-2024-07-18"));
        for p in [
            "cerebras",
            "deepseek",
            "groq",
            "perplexity",
            "xai",
            "openrouter",
        ] {
            assert!(!accepted(p, "chat").is_empty(), "{p}");
        }
        assert!(accepts("cartesia", "api_versions", "2026-03-01"));
        assert!(openai_model_not_found("m").contains("model_not_found"));
    }
}
