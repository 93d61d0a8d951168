//! Session settings shared by the Realtime model and the realtime transcription stream: turn
//! detection, input noise reduction and input transcription, serialized in the Realtime API's
//! (GA) `session.audio.input` form.

use serde_json::{json, Map, Value};

/// How eagerly semantic VAD ends the user's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eagerness {
    /// Same as medium (the server default).
    #[default]
    Auto,
    /// Lets users take their time.
    Low,
    /// Balanced.
    Medium,
    /// Ends turns as soon as possible.
    High,
}

impl Eagerness {
    fn as_str(self) -> &'static str {
        match self {
            Eagerness::Auto => "auto",
            Eagerness::Low => "low",
            Eagerness::Medium => "medium",
            Eagerness::High => "high",
        }
    }
}

/// Server-side turn detection. Unset fields use the server's defaults.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnDetection {
    /// Voice activity detection on audio level.
    ServerVad {
        /// Activation threshold 0..1 (server default 0.5).
        threshold: Option<f32>,
        /// Audio kept before detected speech, ms (server default 300).
        prefix_padding_ms: Option<u32>,
        /// Silence that ends a turn, ms (server default 500).
        silence_duration_ms: Option<u32>,
        /// Reply automatically when a turn ends (realtime sessions only).
        create_response: Option<bool>,
        /// Interrupt the current reply when the user starts speaking (realtime sessions only).
        interrupt_response: Option<bool>,
        /// Prompt the user after this much idle time, ms.
        idle_timeout_ms: Option<u32>,
    },
    /// A classifier decides from the user's words whether the turn is over.
    SemanticVad {
        /// How eagerly to end turns.
        eagerness: Eagerness,
        /// Reply automatically when a turn ends.
        create_response: Option<bool>,
        /// Interrupt the current reply when the user starts speaking.
        interrupt_response: Option<bool>,
    },
}

impl TurnDetection {
    /// Server VAD with the server's defaults.
    pub fn server_vad() -> Self {
        TurnDetection::ServerVad {
            threshold: None,
            prefix_padding_ms: None,
            silence_duration_ms: None,
            create_response: None,
            interrupt_response: None,
            idle_timeout_ms: None,
        }
    }

    /// Semantic VAD with this eagerness.
    pub fn semantic_vad(eagerness: Eagerness) -> Self {
        TurnDetection::SemanticVad {
            eagerness,
            create_response: None,
            interrupt_response: None,
        }
    }

    /// The default of the realtime transcription stream (the reference's: server VAD,
    /// threshold 0.5, 600 ms prefix padding, 350 ms silence).
    pub fn transcription_default() -> Self {
        TurnDetection::ServerVad {
            threshold: Some(0.5),
            prefix_padding_ms: Some(600),
            silence_duration_ms: Some(350),
            create_response: None,
            interrupt_response: None,
            idle_timeout_ms: None,
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        match self {
            TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
                create_response,
                interrupt_response,
                idle_timeout_ms,
            } => {
                put("type", Some(json!("server_vad")));
                put("threshold", threshold.map(|v| json!(v)));
                put("prefix_padding_ms", prefix_padding_ms.map(|v| json!(v)));
                put("silence_duration_ms", silence_duration_ms.map(|v| json!(v)));
                put("create_response", create_response.map(|v| json!(v)));
                put("interrupt_response", interrupt_response.map(|v| json!(v)));
                put("idle_timeout_ms", idle_timeout_ms.map(|v| json!(v)));
            }
            TurnDetection::SemanticVad {
                eagerness,
                create_response,
                interrupt_response,
            } => {
                put("type", Some(json!("semantic_vad")));
                put("eagerness", Some(json!(eagerness.as_str())));
                put("create_response", create_response.map(|v| json!(v)));
                put("interrupt_response", interrupt_response.map(|v| json!(v)));
            }
        }
        Value::Object(m)
    }

    /// The same detection without the response options (transcription sessions reject them).
    pub(crate) fn for_transcription(&self) -> Value {
        let mut v = self.to_json();
        if let Some(m) = v.as_object_mut() {
            m.remove("create_response");
            m.remove("interrupt_response");
            m.remove("idle_timeout_ms");
        }
        v
    }
}

/// Input noise reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseReduction {
    /// Close-talking microphones (headsets).
    NearField,
    /// Laptop or room microphones.
    FarField,
}

impl NoiseReduction {
    pub(crate) fn to_json(self) -> Value {
        json!({"type": match self {
            NoiseReduction::NearField => "near_field",
            NoiseReduction::FarField => "far_field",
        }})
    }
}

/// How the server transcribes user audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputTranscription {
    /// Transcription model, e.g. `gpt-transcribe` (the Realtime model's default),
    /// `gpt-live-transcribe`, or the older `gpt-4o-mini-transcribe`, `gpt-4o-transcribe`,
    /// `whisper-1` (which shut down on 2027-02-26).
    pub model: String,
    /// Language (ISO-639-1), improves accuracy and latency.
    pub language: Option<String>,
    /// Prompt guiding the transcription (vocabulary, style).
    pub prompt: Option<String>,
}

impl InputTranscription {
    /// Transcription with `model`, no language or prompt.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            language: None,
            prompt: None,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({"model": self.model});
        if let Some(l) = self.language.as_deref().and_then(iso_639_1) {
            if takes_language_list(&self.model) {
                v["languages"] = json!([l]);
            } else {
                v["language"] = json!(l);
            }
        }
        if let Some(p) = self.prompt.as_deref().filter(|p| !p.is_empty()) {
            v["prompt"] = json!(p);
        }
        v
    }
}

/// Whether a transcription model takes the plural `languages` (a list of expected languages)
/// instead of `language`: `gpt-transcribe` and `gpt-live-transcribe`, the successors of the
/// `gpt-4o-*-transcribe` models. They refuse a request carrying `language`.
pub(crate) fn takes_language_list(model: &str) -> bool {
    model.starts_with("gpt-transcribe") || model.starts_with("gpt-live-transcribe")
}

/// Whether a transcription model runs without server turn detection (`gpt-live-transcribe`
/// supports neither `server_vad` nor `semantic_vad`; turns are committed by the client).
pub(crate) fn rejects_turn_detection(model: &str) -> bool {
    model.starts_with("gpt-live-transcribe")
}

/// The ISO-639-1 code of a language tag (`en-US`, `pt_BR`, `EN` → `en`, `pt`, `en`): the
/// transcription API takes two-letter codes only. `None` (with a warning) for a tag whose
/// primary subtag is not two letters, which is then not sent (the model detects the language).
pub(crate) fn iso_639_1(tag: &str) -> Option<String> {
    let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
    if primary.len() == 2 && primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        Some(primary.to_ascii_lowercase())
    } else {
        if !tag.trim().is_empty() {
            tracing::warn!(language = %tag, "not an ISO-639-1 language code; letting the model detect the language");
        }
        None
    }
}

/// The `audio/pcm` 24 kHz format object.
pub(crate) fn pcm_format() -> Value {
    json!({"type": "audio/pcm", "rate": crate::audio_util::REALTIME_SAMPLE_RATE})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_iso_639_1_and_plural_for_the_new_models() {
        assert_eq!(iso_639_1("en-US").as_deref(), Some("en"));
        assert_eq!(iso_639_1("pt_BR").as_deref(), Some("pt"));
        assert_eq!(iso_639_1(" FR ").as_deref(), Some("fr"));
        assert_eq!(iso_639_1("yue"), None);
        assert_eq!(iso_639_1(""), None);
        let mut t = InputTranscription::new("gpt-4o-mini-transcribe");
        t.language = Some("en-US".into());
        assert_eq!(
            t.to_json(),
            json!({"model": "gpt-4o-mini-transcribe", "language": "en"})
        );
        t.model = "gpt-transcribe".into();
        assert_eq!(
            t.to_json(),
            json!({"model": "gpt-transcribe", "languages": ["en"]})
        );
        assert!(rejects_turn_detection("gpt-live-transcribe"));
        assert!(!rejects_turn_detection("gpt-transcribe"));
    }

    #[test]
    fn turn_detection_serializes_only_what_is_set() {
        assert_eq!(
            TurnDetection::transcription_default().to_json(),
            json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 600, "silence_duration_ms": 350})
        );
        let semantic = TurnDetection::SemanticVad {
            eagerness: Eagerness::High,
            create_response: Some(true),
            interrupt_response: Some(false),
        };
        assert_eq!(
            semantic.to_json(),
            json!({"type": "semantic_vad", "eagerness": "high", "create_response": true, "interrupt_response": false})
        );
        assert_eq!(
            semantic.for_transcription(),
            json!({"type": "semantic_vad", "eagerness": "high"})
        );
    }
}
