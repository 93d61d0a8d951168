//! Whitespace word splitting, batch and streaming.

use super::{TokenStream, WordTokenizer};

/// The built-in word tokenizer: words are separated by whitespace.
///
/// With `ignore_punctuation` (the default, as in the reference) punctuation is stripped from
/// both ends of each word and punctuation-only tokens are dropped; punctuation inside a word is
/// kept (`don't`, `real-time`, `2.54`), because TTS engines pronounce those forms better.
///
/// ```
/// use livekit_agents::tokenize::{BasicWordTokenizer, TokenStream, WordTokenizer};
///
/// let words = BasicWordTokenizer::default().tokenize("Hello, world! It's 2.54 - done.");
/// assert_eq!(words, ["Hello", "world", "It's", "2.54", "done"]);
///
/// let raw = BasicWordTokenizer::new(false).tokenize("Hello, world!");
/// assert_eq!(raw, ["Hello,", "world!"]);
///
/// let mut stream = BasicWordTokenizer::default().stream();
/// assert_eq!(stream.push_text("Hel"), Vec::<String>::new());
/// assert_eq!(stream.push_text("lo wor"), ["Hello"]);
/// assert_eq!(stream.flush(), ["wor"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicWordTokenizer {
    ignore_punctuation: bool,
}

impl Default for BasicWordTokenizer {
    fn default() -> Self {
        Self {
            ignore_punctuation: true,
        }
    }
}

impl BasicWordTokenizer {
    /// A tokenizer that strips punctuation from word ends when `ignore_punctuation` is true.
    pub fn new(ignore_punctuation: bool) -> Self {
        Self { ignore_punctuation }
    }

    /// A streaming tokenizer (the concrete type; see [`WordTokenizer::stream`] for the boxed
    /// form).
    pub fn word_stream(&self) -> WordStream {
        WordStream {
            ignore_punctuation: self.ignore_punctuation,
            buf: String::new(),
            ended: false,
        }
    }
}

impl WordTokenizer for BasicWordTokenizer {
    fn tokenize(&self, text: &str) -> Vec<String> {
        split_words(text, self.ignore_punctuation)
    }

    fn stream(&self) -> Box<dyn TokenStream> {
        Box::new(self.word_stream())
    }
}

/// Streaming form of [`BasicWordTokenizer`]: a word is emitted once whitespace follows it.
#[derive(Debug, Clone)]
pub struct WordStream {
    ignore_punctuation: bool,
    buf: String,
    ended: bool,
}

impl TokenStream for WordStream {
    fn push_text(&mut self, text: &str) -> Vec<String> {
        if self.ended {
            tracing::warn!("WordStream::push_text after end_input; text ignored");
            return Vec::new();
        }
        self.buf.push_str(text);
        let Some((k, c)) = self
            .buf
            .char_indices()
            .rev()
            .find(|&(_, c)| c.is_whitespace())
        else {
            return Vec::new();
        };
        let complete_end = k + c.len_utf8();
        let words = split_words(&self.buf[..complete_end], self.ignore_punctuation);
        self.buf.drain(..complete_end);
        words
    }

    fn flush(&mut self) -> Vec<String> {
        let rest = std::mem::take(&mut self.buf);
        split_words(&rest, self.ignore_punctuation)
    }

    fn end_input(&mut self) -> Vec<String> {
        let out = self.flush();
        self.ended = true;
        out
    }
}

/// Whether `c` is punctuation for the purpose of word stripping.
pub(crate) fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            c,
            '“' | '”'
                | '‘'
                | '’'
                | '«'
                | '»'
                | '…'
                | '—'
                | '–'
                | '¡'
                | '¿'
                | '、'
                | '。'
                | '，'
                | '！'
                | '？'
                | '；'
                | '：'
                | '「'
                | '」'
                | '『'
                | '』'
                | '（'
                | '）'
        )
}

fn split_words(text: &str, ignore_punctuation: bool) -> Vec<String> {
    word_spans(text, ignore_punctuation)
        .into_iter()
        .map(|w| w.text)
        .collect()
}

/// A word and where its whitespace-delimited token sits in the source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordSpan {
    /// The word (punctuation stripped from its ends when asked).
    pub text: String,
    /// Byte offset of the token's start in the source text.
    pub start: usize,
    /// Byte offset just past the token's end (before the following whitespace).
    pub end: usize,
}

/// Splits `text` into words with their byte positions, like [`BasicWordTokenizer`] (useful to
/// release the original text word by word, whitespace included, when pacing transcripts).
///
/// ```
/// use livekit_agents::tokenize::word_spans;
///
/// let text = "Hi,  there!";
/// let spans = word_spans(text, true);
/// assert_eq!(spans[1].text, "there");
/// assert_eq!(&text[spans[1].start..spans[1].end], "there!");
/// assert_eq!(spans.iter().map(|w| w.start).collect::<Vec<_>>(), [0, 5]);
/// ```
pub fn word_spans(text: &str, ignore_punctuation: bool) -> Vec<WordSpan> {
    let mut out = Vec::new();
    let mut start = None;
    let mut push = |s: usize, e: usize| {
        let token = &text[s..e];
        let w = if ignore_punctuation {
            token.trim_matches(is_punctuation)
        } else {
            token
        };
        if !w.is_empty() {
            out.push(WordSpan {
                text: w.to_owned(),
                start: s,
                end: e,
            });
        }
    };
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                push(s, i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        push(s, text.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS_TEXT: &str =
        "This is a test. Blabla another test! multiple consecutive spaces:     done";

    #[test]
    fn reference_word_expectations() {
        assert_eq!(
            BasicWordTokenizer::default().tokenize(WORDS_TEXT),
            [
                "This",
                "is",
                "a",
                "test",
                "Blabla",
                "another",
                "test",
                "multiple",
                "consecutive",
                "spaces",
                "done"
            ]
        );
    }

    #[test]
    fn keeps_punctuation_when_asked() {
        let text = "This is <phoneme ph=\"AE K\">actually</phoneme> tricky to handle.";
        assert_eq!(
            BasicWordTokenizer::new(false).tokenize(text),
            [
                "This",
                "is",
                "<phoneme",
                "ph=\"AE",
                "K\">actually</phoneme>",
                "tricky",
                "to",
                "handle."
            ]
        );
    }

    #[test]
    fn unicode_and_punctuation_only_tokens() {
        assert_eq!(
            BasicWordTokenizer::default().tokenize("«Ça va?» — très bien… ¿Qué? 日本語"),
            ["Ça", "va", "très", "bien", "Qué", "日本語"]
        );
        assert!(BasicWordTokenizer::default()
            .tokenize("  ... — !! ")
            .is_empty());
        assert!(BasicWordTokenizer::default().tokenize("").is_empty());
    }

    #[test]
    fn spans_point_into_the_source() {
        let text = " «Ça va?»\n — très  bien… ";
        let spans = word_spans(text, true);
        assert_eq!(
            spans.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(),
            ["Ça", "va", "très", "bien"]
        );
        assert_eq!(&text[spans[0].start..spans[0].end], "«Ça");
        assert_eq!(&text[spans[3].start..spans[3].end], "bien…");
        let raw = word_spans(text, false);
        assert_eq!(raw.len(), 5);
        assert_eq!(raw[2].text, "—");
    }

    #[test]
    fn streaming_equals_batch_for_every_split() {
        let texts = [
            WORDS_TEXT,
            "«Ça va?» — très bien… ¿Qué? 日本語",
            "trailing space ",
            " leading",
        ];
        for ignore in [true, false] {
            let tok = BasicWordTokenizer::new(ignore);
            for text in texts {
                let batch = tok.tokenize(text);
                for a in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                    for b in (a..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                        let mut s = tok.word_stream();
                        let mut out = s.push_text(&text[..a]);
                        out.extend(s.push_text(&text[a..b]));
                        out.extend(s.push_text(&text[b..]));
                        out.extend(s.end_input());
                        assert_eq!(out, batch, "splits {a},{b} of {text:?}");
                    }
                }
            }
        }
    }
}
