//! Sentence and word tokenizers (batch and streaming), word hyphenation, and the TTS text
//! transforms (`filter_markdown`, `filter_emoji`).
//!
//! Tokenizers are plain synchronous state machines: a [`TokenStream`] takes text chunks of any
//! size and returns the tokens that are certain so far, so it can be driven from any async task
//! without extra channels. The streaming forms return exactly the tokens of the batch forms,
//! whatever the chunking.
//!
//! ```
//! use livekit_agents::tokenize::{BasicSentenceTokenizer, SentenceTokenizer, TokenStream};
//!
//! let tokenizer = BasicSentenceTokenizer::default(); // min_sentence_len = 20
//! let mut stream = tokenizer.stream();
//! let mut sentences = Vec::new();
//! for chunk in ["The weather today is sun", "ny and warm. Tomorrow it will", " rain."] {
//!     sentences.extend(stream.push_text(chunk));
//! }
//! sentences.extend(stream.end_input());
//! assert_eq!(sentences, ["The weather today is sunny and warm.", "Tomorrow it will rain."]);
//! ```

mod hyphenate;
mod sentence;
mod transforms;
mod word;

pub use hyphenate::{hyphenate_word, syllable_count};
pub use sentence::{BasicSentenceTokenizer, SentenceStream, SentenceTokenizerOptions};
pub use transforms::{
    apply_transforms, filter_emoji, filter_markdown, parse_transforms, CustomTransform,
    EmojiFilter, MarkdownFilter, Pronunciation, PronunciationTransform, TextTransform,
    TextTransformKind, TransformChain, UnknownTransformError, DEFAULT_TTS_TEXT_TRANSFORMS,
};
pub use word::{word_spans, BasicWordTokenizer, WordSpan, WordStream};

/// Splits text into sentences.
///
/// Implemented by [`BasicSentenceTokenizer`]; other implementations (e.g. a model-based
/// splitter) can be plugged into the TTS stream adapter through this trait.
pub trait SentenceTokenizer: Send + Sync + 'static {
    /// Splits a complete text into sentences.
    fn tokenize(&self, text: &str) -> Vec<String>;
    /// A streaming tokenizer: push text as it arrives, get sentences when they are certain.
    fn stream(&self) -> Box<dyn TokenStream>;
}

/// Splits text into words.
///
/// Implemented by [`BasicWordTokenizer`].
pub trait WordTokenizer: Send + Sync + 'static {
    /// Splits a complete text into words.
    fn tokenize(&self, text: &str) -> Vec<String>;
    /// A streaming tokenizer: push text as it arrives, get words when they are complete.
    fn stream(&self) -> Box<dyn TokenStream>;
}

/// A streaming tokenizer (sentences or words).
///
/// Push chunks with [`push_text`](TokenStream::push_text); each call returns the tokens that
/// became certain. [`flush`](TokenStream::flush) returns what is left (ending the current
/// segment: later text starts fresh) and [`end_input`](TokenStream::end_input) does the same
/// and closes the stream (later pushes are ignored with a warning).
pub trait TokenStream: Send {
    /// Adds text; returns the tokens completed by it (possibly none).
    fn push_text(&mut self, text: &str) -> Vec<String>;
    /// Returns every remaining token, including an unfinished last one.
    fn flush(&mut self) -> Vec<String>;
    /// Like [`flush`](TokenStream::flush), then closes the stream.
    fn end_input(&mut self) -> Vec<String>;
}
