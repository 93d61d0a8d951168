//! Per-language "unlikely" thresholds from the model's `languages.json`.
//!
//! The file maps a language code to `{"threshold": <float>}`. A language is supported when it
//! has an entry; a lookup tries the full code first (`pt-BR`) and then the base language
//! (`pt`), like the reference.

use std::collections::HashMap;

use serde::Deserialize;

/// Thresholds per language, as read from `languages.json`.
///
/// ```
/// use livekit_plugins_turn_detector::LanguageThresholds;
///
/// let langs = LanguageThresholds::from_json(
///     r#"{"en": {"threshold": 0.03}, "pt-BR": {"threshold": 0.02}, "pt": {"threshold": 0.01}}"#,
/// )
/// .unwrap();
/// assert_eq!(langs.threshold("en-US"), Some(0.03)); // base language
/// assert_eq!(langs.threshold("pt_br"), Some(0.02)); // full code first
/// assert_eq!(langs.threshold("pt-PT"), Some(0.01));
/// assert_eq!(langs.threshold("xx"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LanguageThresholds {
    by_code: HashMap<String, f32>,
}

#[derive(Deserialize)]
struct LanguageEntry {
    // Other fields are ignored; an entry without a threshold leaves the language unsupported.
    threshold: Option<f32>,
}

impl LanguageThresholds {
    /// Parses the content of `languages.json`.
    ///
    /// Keys are normalized with [`normalize_language`], so `pt_br` in the file matches `pt-BR`.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let raw: HashMap<String, LanguageEntry> = serde_json::from_str(json)?;
        let by_code = raw
            .into_iter()
            .filter_map(|(code, entry)| Some((normalize_language(&code)?, entry.threshold?)))
            .collect();
        Ok(Self { by_code })
    }

    /// A table from `(code, threshold)` pairs (codes are normalized).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, f32)>) -> Self {
        let by_code = pairs
            .into_iter()
            .filter_map(|(code, t)| Some((normalize_language(code)?, t)))
            .collect();
        Self { by_code }
    }

    /// The threshold for `language`: the full normalized code first, then the base language.
    pub fn threshold(&self, language: &str) -> Option<f32> {
        let full = normalize_language(language)?;
        if let Some(t) = self.by_code.get(&full) {
            return Some(*t);
        }
        let base = livekit_agents::types::base_language(&full)?;
        self.by_code.get(&base).copied()
    }

    /// The languages in the table (normalized codes, sorted).
    pub fn languages(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = self.by_code.keys().map(String::as_str).collect();
        codes.sort_unstable();
        codes
    }

    /// Number of languages.
    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

/// Normalizes a BCP-47-like language code: `_` becomes `-`, the primary subtag is lower-case,
/// a 2-letter or 3-digit region is upper-case and a 4-letter script is title-case
/// (`EN_us` -> `en-US`, `zh-hant-tw` -> `zh-Hant-TW`). Returns `None` for an empty code.
///
/// ```
/// use livekit_plugins_turn_detector::normalize_language;
///
/// assert_eq!(normalize_language("EN_us").as_deref(), Some("en-US"));
/// assert_eq!(normalize_language(" fr ").as_deref(), Some("fr"));
/// assert_eq!(normalize_language(""), None);
/// ```
pub fn normalize_language(code: &str) -> Option<String> {
    let mut parts = code
        .trim()
        .split(['-', '_'])
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let primary = parts.next()?.to_ascii_lowercase();
    let mut out = primary;
    for part in parts {
        out.push('-');
        let is_region = (part.len() == 2 && part.chars().all(|c| c.is_ascii_alphabetic()))
            || (part.len() == 3 && part.chars().all(|c| c.is_ascii_digit()));
        let is_script = part.len() == 4 && part.chars().all(|c| c.is_ascii_alphabetic());
        if is_region {
            out.push_str(&part.to_ascii_uppercase());
        } else if is_script {
            let lower = part.to_ascii_lowercase();
            let mut chars = lower.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push_str(&part.to_ascii_lowercase());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_codes() {
        assert_eq!(normalize_language("en-US").as_deref(), Some("en-US"));
        assert_eq!(normalize_language("en_us").as_deref(), Some("en-US"));
        assert_eq!(
            normalize_language("ZH-hant-tw").as_deref(),
            Some("zh-Hant-TW")
        );
        assert_eq!(normalize_language("es-419").as_deref(), Some("es-419"));
        assert_eq!(normalize_language("  ").as_deref(), None);
        assert_eq!(normalize_language("-").as_deref(), None);
    }

    #[test]
    fn full_code_then_base_language() {
        let langs = LanguageThresholds::from_json(
            r#"{"pt": {"threshold": 0.1}, "pt_br": {"threshold": 0.2}}"#,
        )
        .unwrap();
        assert_eq!(langs.threshold("pt-BR"), Some(0.2));
        assert_eq!(langs.threshold("PT-br"), Some(0.2));
        assert_eq!(langs.threshold("pt-PT"), Some(0.1));
        assert_eq!(langs.threshold("pt"), Some(0.1));
        assert_eq!(langs.threshold("es"), None);
        assert_eq!(langs.threshold(""), None);
        assert_eq!(langs.languages(), vec!["pt", "pt-BR"]);
    }

    #[test]
    fn ignores_extra_fields_and_entries_without_threshold() {
        let langs = LanguageThresholds::from_json(
            r#"{"en": {"threshold": 0.1, "name": "English"}, "xx": {"name": "none"}}"#,
        )
        .unwrap();
        assert_eq!(langs.threshold("en"), Some(0.1));
        assert_eq!(langs.threshold("xx"), None);
        assert_eq!(langs.len(), 1);
    }

    #[test]
    fn rejects_malformed_json() {
        assert!(LanguageThresholds::from_json(r#"{"en": 0.1}"#).is_err());
        assert!(LanguageThresholds::from_json("not json").is_err());
    }
}
