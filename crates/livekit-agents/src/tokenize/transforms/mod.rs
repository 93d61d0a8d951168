//! Streaming text transforms applied to LLM text before TTS (the reference's
//! `tts_text_transforms`, default `["filter_markdown", "filter_emoji"]`).
//!
//! A [`TextTransform`] is a small state machine: [`push`](TextTransform::push) returns the part
//! of the text that is safe to emit now and [`flush`](TextTransform::flush) returns the rest at
//! the end of a reply. Every transform here gives the same output whatever the chunking, and
//! holds back only a possibly-unfinished markup construct (a `*` run, a `[link](...)`, a line
//! start such as `---`), never whole sentences.

mod emoji;
mod markdown;
mod pronunciation;

pub use emoji::{filter_emoji, EmojiFilter};
pub use markdown::{filter_markdown, MarkdownFilter};
pub use pronunciation::{Pronunciation, PronunciationTransform};

use std::fmt;
use std::str::FromStr;

/// A streaming text transform, applied to LLM text before TTS (the reference's
/// `tts_text_transforms`, default `["filter_markdown", "filter_emoji"]`, see
/// [`DEFAULT_TTS_TEXT_TRANSFORMS`]).
///
/// [`push`](TextTransform::push) returns the part of the text that is safe to emit now and
/// [`flush`](TextTransform::flush) returns the rest at the end of a reply. The built-in
/// transforms give the same output whatever the chunking, and hold back only a
/// possibly-unfinished markup construct (a `*` run, a `[link](...)`, a line start such as
/// `---`), never whole sentences. Chain several with [`TransformChain`].
pub trait TextTransform: Send {
    /// Adds a chunk; returns the transformed text that is safe to emit now.
    fn push(&mut self, chunk: &str) -> String;
    /// Returns the transformed rest of the text and resets the transform for a new text.
    fn flush(&mut self) -> String;
}

/// The transforms, by their reference names: the built-ins, and [`Custom`](Self::Custom) ones
/// such as a [`Pronunciation`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextTransformKind {
    /// `"filter_markdown"`: see [`MarkdownFilter`].
    FilterMarkdown,
    /// `"filter_emoji"`: see [`EmojiFilter`].
    FilterEmoji,
    /// A transform of your own (e.g. [`Pronunciation::into_transform_kind`]); not
    /// serializable.
    #[serde(skip)]
    Custom(CustomTransform),
}

type MakeTransform = dyn Fn() -> Box<dyn TextTransform> + Send + Sync;

/// A named factory of a custom [`TextTransform`] (a fresh one per reply). Two values are equal
/// when they are clones of the same factory.
#[derive(Clone)]
pub struct CustomTransform {
    name: String,
    make: std::sync::Arc<MakeTransform>,
}

impl CustomTransform {
    /// A transform named `name` built by `make`.
    pub fn new(
        name: impl Into<String>,
        make: impl Fn() -> Box<dyn TextTransform> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            make: std::sync::Arc::new(make),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for CustomTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CustomTransform").field(&self.name).finish()
    }
}

impl PartialEq for CustomTransform {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && std::sync::Arc::ptr_eq(&self.make, &other.make)
    }
}

impl Eq for CustomTransform {}

impl std::hash::Hash for CustomTransform {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// The transforms applied before TTS by default: markdown, then emoji.
pub const DEFAULT_TTS_TEXT_TRANSFORMS: &[TextTransformKind] = &[
    TextTransformKind::FilterMarkdown,
    TextTransformKind::FilterEmoji,
];

impl TextTransformKind {
    /// Every built-in transform.
    pub const ALL: &'static [TextTransformKind] = &[Self::FilterMarkdown, Self::FilterEmoji];

    /// The reference name (`"filter_markdown"`, `"filter_emoji"`), or a custom transform's name.
    pub fn name(&self) -> &str {
        match self {
            Self::FilterMarkdown => "filter_markdown",
            Self::FilterEmoji => "filter_emoji",
            Self::Custom(c) => c.name(),
        }
    }

    /// A fresh streaming transform of this kind.
    pub fn build(&self) -> Box<dyn TextTransform> {
        match self {
            Self::FilterMarkdown => Box::new(MarkdownFilter::new()),
            Self::FilterEmoji => Box::new(EmojiFilter::new()),
            Self::Custom(c) => (c.make)(),
        }
    }
}

impl fmt::Display for TextTransformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A transform name that is not one of the built-ins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown text transform {name:?} (available: filter_markdown, filter_emoji)")]
#[non_exhaustive]
pub struct UnknownTransformError {
    /// The name that was given.
    pub name: String,
}

impl FromStr for TextTransformKind {
    type Err = UnknownTransformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|k| k.name() == s)
            .cloned()
            .ok_or_else(|| UnknownTransformError { name: s.to_owned() })
    }
}

/// Parses transform names, failing on the first unknown one.
///
/// ```
/// use livekit_agents::tokenize::{parse_transforms, TextTransformKind};
///
/// assert_eq!(parse_transforms(["filter_emoji"]).unwrap(), [TextTransformKind::FilterEmoji]);
/// assert_eq!(parse_transforms(["filter_html"]).unwrap_err().name, "filter_html");
/// ```
pub fn parse_transforms<I, S>(names: I) -> Result<Vec<TextTransformKind>, UnknownTransformError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    names.into_iter().map(|n| n.as_ref().parse()).collect()
}

/// Applies transforms in order to a complete text.
///
/// ```
/// use livekit_agents::tokenize::{apply_transforms, DEFAULT_TTS_TEXT_TRANSFORMS};
///
/// let spoken = apply_transforms(DEFAULT_TTS_TEXT_TRANSFORMS, "- **Done** ✅");
/// assert_eq!(spoken, "Done ");
/// ```
pub fn apply_transforms(kinds: &[TextTransformKind], text: &str) -> String {
    let mut chain = TransformChain::from_kinds(kinds);
    let mut out = chain.push(text);
    out.push_str(&chain.flush());
    out
}

/// Several transforms applied one after the other, streaming.
///
/// Custom transforms (e.g. a pronunciation rewrite) can be chained with the built-ins through
/// [`TransformChain::new`].
///
/// ```
/// use livekit_agents::tokenize::{parse_transforms, TextTransform, TransformChain};
///
/// let kinds = parse_transforms(["filter_markdown", "filter_emoji"]).unwrap();
/// let mut chain = TransformChain::from_kinds(&kinds);
/// let mut spoken = String::new();
/// for chunk in ["## Hi 👋\nSee **the ", "docs** at [our si", "te](https://x.io)!"] {
///     spoken.push_str(&chain.push(chunk));
/// }
/// spoken.push_str(&chain.flush());
/// assert_eq!(spoken, "Hi \nSee the docs at our site!");
/// ```
pub struct TransformChain {
    stages: Vec<Box<dyn TextTransform>>,
}

impl fmt::Debug for TransformChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformChain")
            .field("stages", &self.stages.len())
            .finish()
    }
}

impl TransformChain {
    /// A chain of the given transforms (applied in order).
    pub fn new(stages: Vec<Box<dyn TextTransform>>) -> Self {
        Self { stages }
    }

    /// A chain of built-in transforms.
    pub fn from_kinds(kinds: &[TextTransformKind]) -> Self {
        Self::new(kinds.iter().map(|k| k.build()).collect())
    }
}

impl TextTransform for TransformChain {
    fn push(&mut self, chunk: &str) -> String {
        let mut text = chunk.to_owned();
        for stage in &mut self.stages {
            if text.is_empty() {
                break;
            }
            text = stage.push(&text);
        }
        text
    }

    fn flush(&mut self) -> String {
        let mut carry = String::new();
        for stage in &mut self.stages {
            let mut out = stage.push(&carry);
            out.push_str(&stage.flush());
            carry = out;
        }
        carry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(
            parse_transforms(["filter_markdown", "filter_emoji"]).unwrap(),
            DEFAULT_TTS_TEXT_TRANSFORMS
        );
        let err = parse_transforms(["filter_markdown", "nope"]).unwrap_err();
        assert_eq!(err.name, "nope");
        assert!(err.to_string().contains("filter_markdown"));
        assert!(parse_transforms(Vec::<String>::new()).unwrap().is_empty());
        for k in TextTransformKind::ALL {
            assert_eq!(k.to_string().parse::<TextTransformKind>().unwrap(), *k);
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
    }

    #[test]
    fn empty_chain_is_identity() {
        let mut chain = TransformChain::new(Vec::new());
        assert_eq!(chain.push("**x** 😀"), "**x** 😀");
        assert_eq!(chain.flush(), "");
        assert_eq!(apply_transforms(&[], "# a"), "# a");
    }

    #[test]
    fn chain_streaming_equals_batch_for_every_split() {
        let text = "# Title 🎉\n\nHello **world** 👋🏽, see [docs](https://e.x/a_(b)) 🇫🇷!\n\
                    - item *one* ❤️‍🔥\n```rust\nlet x = 1; // 🚀\n```\nDone.";
        let batch = apply_transforms(DEFAULT_TTS_TEXT_TRANSFORMS, text);
        assert_eq!(
            batch,
            "Title \n\nHello world , see docs !\nitem one \nlet x = 1; // \nDone."
        );
        for a in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let mut chain = TransformChain::from_kinds(DEFAULT_TTS_TEXT_TRANSFORMS);
            let mut out = chain.push(&text[..a]);
            out.push_str(&chain.push(&text[a..]));
            out.push_str(&chain.flush());
            assert_eq!(out, batch, "split at {a}");
        }
    }
}
