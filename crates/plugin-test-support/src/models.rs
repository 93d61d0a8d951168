//! The models (and voices) the fake provider servers accept: the list kept next to the
//! documented defaults table (`docs/provider-models.json` beside `docs/providers.md`). A fake
//! refuses anything else the way the real API does, so a retired default fails the tests.

use std::sync::OnceLock;

/// The list file, compiled in so tests need no file access at run time.
const LIST: &str = include_str!("../../../docs/provider-models.json");

fn list() -> &'static serde_json::Value {
    static PARSED: OnceLock<serde_json::Value> = OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(LIST).expect("docs/provider-models.json is JSON"))
}

/// The accepted names of `kind` (e.g. `chat`, `transcription`, `speech_voices`) for
/// `provider` (e.g. `openai`, `groq`, `deepgram`). Panics when the list has no such entry, so
/// a typo in a test cannot silently accept everything.
pub fn accepted(provider: &str, kind: &str) -> Vec<String> {
    list()
        .get(provider)
        .and_then(|p| p.get(kind))
        .and_then(|k| k.as_array())
        .unwrap_or_else(|| panic!("docs/provider-models.json has no {provider}.{kind}"))
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
