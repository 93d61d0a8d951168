//! Pronunciation: word replacements and phoneme hints applied to the text before TTS.
//!
//! TTS engines misread acronyms, product names and jargon. A [`Pronunciation`] rewrites them:
//! plain replacements (`"SQL"` → `"sequel"`, `"kubectl"` → `"kube control"`, the reference's
//! example) work with every provider; SSML hints (`<phoneme>`, `<sub alias>`) are for providers
//! that parse SSML (ElevenLabs with `enable_ssml_parsing`, Google, Azure, Amazon Polly; Cartesia
//! has its own custom pronunciations). Matching is case-insensitive and on whole words (a word
//! character — letter, digit or `_` — must not touch the match on either side); the longest key
//! wins where keys overlap.
//!
//! It is a streaming [`TextTransform`]: LLM text arrives in arbitrary chunks, so a word cut in
//! two (`"kube"` + `"ctl"`) must still match. The transform holds back only the last few
//! whitespace-separated tokens of the text seen so far (as many as the longest key has), never
//! whole sentences; the output is the same whatever the chunking. Add it to the session's
//! `tts_text_transforms` with [`Pronunciation::into_transform_kind`].
//!
//! ```
//! use livekit_agents::tokenize::{Pronunciation, TextTransform};
//!
//! let rules = Pronunciation::new()
//!     .replace("API", "A P I")
//!     .replace("kubectl", "kube control")
//!     .phoneme("LiveKit", "ipa", "ˈlaɪv kɪt");
//! let mut t = rules.transform();
//! let mut out = t.push("Use the api and kube");
//! out.push_str(&t.push("ctl with LiveKit's docs."));
//! out.push_str(&t.flush());
//! assert_eq!(
//!     out,
//!     "Use the A P I and kube control with <phoneme alphabet=\"ipa\" ph=\"ˈlaɪv kɪt\">LiveKit</phoneme>'s docs."
//! );
//! ```

use std::sync::Arc;

use super::TextTransform;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Replacement {
    Text(String),
    Phoneme { alphabet: String, ph: String },
    Alias(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// The key, lower-cased char by char.
    key: Vec<char>,
    replacement: Replacement,
}

/// A set of pronunciation rules (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pronunciation {
    rules: Vec<Rule>,
}

impl Pronunciation {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces `word` (case-insensitive, whole word) by `with`.
    pub fn replace(self, word: &str, with: &str) -> Self {
        self.rule(word, Replacement::Text(with.to_owned()))
    }

    /// Wraps `word` in an SSML phoneme hint: `<phoneme alphabet="ipa" ph="...">word</phoneme>`
    /// (`alphabet` is `"ipa"` or `"x-sampa"`, as the provider supports).
    pub fn phoneme(self, word: &str, alphabet: &str, ph: &str) -> Self {
        self.rule(
            word,
            Replacement::Phoneme {
                alphabet: alphabet.to_owned(),
                ph: ph.to_owned(),
            },
        )
    }

    /// Wraps `word` in an SSML substitution: `<sub alias="...">word</sub>` (the provider says
    /// the alias; transcripts keep the word).
    pub fn alias(self, word: &str, alias: &str) -> Self {
        self.rule(word, Replacement::Alias(alias.to_owned()))
    }

    fn rule(mut self, word: &str, replacement: Replacement) -> Self {
        let key: Vec<char> = word.trim().chars().flat_map(char::to_lowercase).collect();
        if key.is_empty() {
            return self;
        }
        self.rules.retain(|r| r.key != key);
        self.rules.push(Rule { key, replacement });
        // Longest first, so "New York City" wins over "New York".
        self.rules.sort_by_key(|r| std::cmp::Reverse(r.key.len()));
        self
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A fresh streaming transform applying these rules.
    pub fn transform(&self) -> PronunciationTransform {
        let max_tokens = self
            .rules
            .iter()
            .map(|r| {
                r.key
                    .split(|c| c.is_whitespace())
                    .filter(|t| !t.is_empty())
                    .count()
            })
            .max()
            .unwrap_or(1);
        PronunciationTransform {
            rules: Arc::new(self.rules.clone()),
            hold_tokens: max_tokens.max(1),
            buffer: String::new(),
        }
    }

    /// Applies the rules to a whole text.
    pub fn apply(&self, text: &str) -> String {
        let mut t = self.transform();
        let mut out = t.push(text);
        out.push_str(&t.flush());
        out
    }

    /// These rules as an entry of `SessionOptions::tts_text_transforms` (named
    /// `"pronunciation"`).
    pub fn into_transform_kind(self) -> super::TextTransformKind {
        let rules = self;
        super::TextTransformKind::Custom(super::CustomTransform::new("pronunciation", move || {
            Box::new(rules.transform())
        }))
    }
}

/// The streaming form of a [`Pronunciation`].
#[derive(Debug, Clone)]
pub struct PronunciationTransform {
    rules: Arc<Vec<Rule>>,
    hold_tokens: usize,
    buffer: String,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl PronunciationTransform {
    /// Rewrites `text` from its start up to byte `limit` (a match that starts before `limit`
    /// is completed even if it ends after it). Without `last`, a match that might continue
    /// past the end of `text` stops the rewrite before it. Returns the output and the number of
    /// bytes of `text` consumed.
    fn rewrite(&self, text: &str, limit: usize, last: bool) -> (String, usize) {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let mut prev: Option<char> = None;
        while i < chars.len() && chars[i].0 < limit {
            let at_boundary = !prev.is_some_and(is_word);
            let mut found = None;
            if at_boundary {
                for r in self.rules.iter() {
                    match matches_at(&chars, i, &r.key) {
                        Match::No => continue,
                        Match::NeedMore if !last => return (out, chars[i].0),
                        Match::NeedMore => continue,
                        Match::Yes(len) => {
                            let after = chars.get(i + len).map(|(_, c)| *c);
                            let word_end = r.key.last().is_some_and(|c| is_word(*c));
                            if after.is_none() && word_end && !last {
                                return (out, chars[i].0);
                            }
                            if after.is_some_and(is_word) && word_end {
                                continue;
                            }
                            found = Some((r, len));
                            break;
                        }
                    }
                }
            }
            match found {
                Some((rule, len)) => {
                    let start = chars[i].0;
                    let end = chars.get(i + len).map(|(b, _)| *b).unwrap_or(text.len());
                    let original = &text[start..end];
                    match &rule.replacement {
                        Replacement::Text(t) => out.push_str(t),
                        Replacement::Phoneme { alphabet, ph } => out.push_str(&format!(
                            "<phoneme alphabet=\"{}\" ph=\"{}\">{}</phoneme>",
                            xml_escape(alphabet),
                            xml_escape(ph),
                            xml_escape(original)
                        )),
                        Replacement::Alias(alias) => out.push_str(&format!(
                            "<sub alias=\"{}\">{}</sub>",
                            xml_escape(alias),
                            xml_escape(original)
                        )),
                    }
                    prev = Some(chars[i + len - 1].1);
                    i += len;
                }
                None => {
                    out.push(chars[i].1);
                    prev = Some(chars[i].1);
                    i += 1;
                }
            }
        }
        let consumed = chars.get(i).map(|(b, _)| *b).unwrap_or(text.len());
        (out, consumed)
    }

    /// Where the held-back tail starts: the start of the `hold_tokens`-th last token.
    fn cut(&self) -> usize {
        let b = &self.buffer;
        let mut tokens = 0;
        let mut in_token = false;
        let mut cut = b.len();
        for (i, c) in b.char_indices().rev() {
            if c.is_whitespace() {
                if in_token {
                    tokens += 1;
                    in_token = false;
                    if tokens == self.hold_tokens {
                        return cut;
                    }
                }
            } else {
                in_token = true;
                cut = i;
            }
        }
        0
    }
}

enum Match {
    No,
    /// The key matches this many chars.
    Yes(usize),
    /// The text ends inside a possible match.
    NeedMore,
}

/// Whether `key` matches `chars[i..]` case-insensitively.
fn matches_at(chars: &[(usize, char)], i: usize, key: &[char]) -> Match {
    let mut k = 0;
    let mut n = 0;
    while k < key.len() {
        let Some((_, c)) = chars.get(i + n) else {
            return Match::NeedMore;
        };
        for lc in c.to_lowercase() {
            if key.get(k) != Some(&lc) {
                return Match::No;
            }
            k += 1;
        }
        n += 1;
    }
    Match::Yes(n)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl TextTransform for PronunciationTransform {
    fn push(&mut self, chunk: &str) -> String {
        if self.rules.is_empty() {
            return chunk.to_owned();
        }
        self.buffer.push_str(chunk);
        let limit = self.cut();
        if limit == 0 {
            return String::new();
        }
        let (out, consumed) = self.rewrite(&self.buffer, limit, false);
        self.buffer.drain(..consumed);
        out
    }

    fn flush(&mut self) -> String {
        let rest = std::mem::take(&mut self.buffer);
        self.rewrite(&rest, rest.len(), true).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::{TextTransformKind, TransformChain};

    fn rules() -> Pronunciation {
        Pronunciation::new()
            .replace("API", "A P I")
            .replace("SQL", "sequel")
            .replace("kubectl", "kube control")
            .replace("nginx", "engine x")
            .replace("New York", "the Big Apple")
            .replace("C++", "C plus plus")
            .alias("LiveKit", "Live Kit")
    }

    #[test]
    fn whole_words_case_insensitive_longest_first() {
        let r = rules();
        assert_eq!(
            r.apply("APIs use the api; SQL, sql and MySQL differ. New  York, new york!"),
            "APIs use the A P I; sequel, sequel and MySQL differ. New  York, the Big Apple!"
        );
        assert_eq!(
            r.apply("I like C++ and C++17."),
            "I like C plus plus and C plus plus17."
        );
        assert_eq!(
            r.apply("LiveKit & co"),
            "<sub alias=\"Live Kit\">LiveKit</sub> & co"
        );
        assert_eq!(Pronunciation::new().apply("unchanged API"), "unchanged API");
        let p = Pronunciation::new().phoneme("tomato", "ipa", "təˈmɑːtoʊ\"<");
        assert_eq!(
            p.apply("Tomato!"),
            "<phoneme alphabet=\"ipa\" ph=\"təˈmɑːtoʊ&quot;&lt;\">Tomato</phoneme>!"
        );
    }

    #[test]
    fn streaming_equals_batch_for_every_split() {
        let r = rules();
        let text = "Run kubectl get pods in New York; the API of nginx uses SQL. LiveKit rocks 👍";
        let batch = r.apply(text);
        assert_eq!(
            batch,
            "Run kube control get pods in the Big Apple; the A P I of engine x uses sequel. \
             <sub alias=\"Live Kit\">LiveKit</sub> rocks 👍"
        );
        for a in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            for b in (a..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .step_by(7)
            {
                let mut t = r.transform();
                let mut out = t.push(&text[..a]);
                out.push_str(&t.push(&text[a..b]));
                out.push_str(&t.push(&text[b..]));
                out.push_str(&t.flush());
                assert_eq!(out, batch, "split at {a}/{b}");
            }
        }
    }

    #[test]
    fn holds_back_only_the_last_tokens_and_chains_as_a_session_transform() {
        let mut t = rules().transform();
        // Keys have at most 2 tokens: the last 2 tokens wait for more text.
        assert_eq!(t.push("One two three four "), "One two ");
        assert_eq!(t.flush(), "three four ");
        let kind = rules().into_transform_kind();
        assert_eq!(kind.name(), "pronunciation");
        let mut chain = TransformChain::from_kinds(&[TextTransformKind::FilterMarkdown, kind]);
        let mut out = chain.push("**Use the API** ");
        out.push_str(&chain.flush());
        assert_eq!(out, "Use the A P I ");
    }
}
