//! Rule-based sentence splitting, batch and streaming (see [`BasicSentenceTokenizer`]).

use super::{SentenceTokenizer, TokenStream};

/// Options of [`BasicSentenceTokenizer`]. Defaults match the reference: `min_sentence_len = 20`,
/// `stream_context_len = 10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct SentenceTokenizerOptions {
    /// Sentences shorter than this many characters are merged with the next ones.
    pub min_sentence_len: usize,
    /// How many characters of the following word are examined (at most) to confirm a
    /// boundary after an abbreviation, acronym or ellipsis. The streaming tokenizer holds a
    /// candidate sentence until this much of the next word (or the end of that word) arrived.
    pub stream_context_len: usize,
}

impl Default for SentenceTokenizerOptions {
    fn default() -> Self {
        Self {
            min_sentence_len: 20,
            stream_context_len: 10,
        }
    }
}

/// The built-in rule-based sentence tokenizer.
///
/// The splitter scans left to right for sentence-ending punctuation and decides each candidate
/// boundary from a bounded window of text after it (the closing quotes, the whitespace and at
/// most [`SentenceTokenizerOptions::stream_context_len`] characters of the next word). The
/// streaming form only decides once that window has arrived, so pushing a text in chunks of any
/// size yields exactly the sentences of the batch form.
///
/// Rules (English-centred, like the reference's `basic` tokenizer):
/// - `.`, `!`, `?`, `…` and the full-width `。！？` end sentences; a run of them (`?!`, `!!!`)
///   is one end, and closing quotes/brackets right after it belong to the sentence.
/// - ASCII terminators only count when whitespace follows, so `3.14`, `U.S.A` or `e.g.,` never
///   split; the full-width ones split immediately.
/// - A newline always ends a sentence (LLM output uses newlines for list items and paragraphs).
/// - No split after title abbreviations (`Mr.`, `Mrs.`, `Dr.`, `St.`, `Prof.`, ...), `e.g.`,
///   `i.e.`, `vs.`, single-letter initials (`J. Smith`) or a leading list number (`1. Step`).
/// - After acronyms (`U.S.`, `a.m.`) and company suffixes (`Inc.`, `Ltd.`, `Jr.`) the split
///   happens only when the next word is a typical sentence starter (`He`, `The`, `We`, ...).
/// - After `etc.` and ellipses (`...`, `…`) the split happens only before a capital letter.
/// - Sentences shorter than `min_sentence_len` characters are merged with the following ones
///   (joined by one space), which gives TTS engines enough context per request.
///
/// ```
/// use livekit_agents::tokenize::{BasicSentenceTokenizer, SentenceTokenizer, TokenStream};
///
/// let tok = BasicSentenceTokenizer::default();
/// let text = "Hi! Mr. Smith paid $3.50 for it. Is that a lot?! I don't think so.";
/// assert_eq!(
///     tok.tokenize(text),
///     vec!["Hi! Mr. Smith paid $3.50 for it.", "Is that a lot?! I don't think so."]
/// );
///
/// // Streaming: sentences come out as soon as they are certain.
/// let mut stream = tok.stream();
/// assert!(stream.push_text("Hello there, how are").is_empty());
/// assert_eq!(stream.push_text(" you today? I am"), vec!["Hello there, how are you today?"]);
/// assert_eq!(stream.flush(), vec!["I am"]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BasicSentenceTokenizer {
    opts: SentenceTokenizerOptions,
}

impl BasicSentenceTokenizer {
    /// A tokenizer with the given options.
    pub fn new(opts: SentenceTokenizerOptions) -> Self {
        Self { opts }
    }

    /// The options in use.
    pub fn options(&self) -> SentenceTokenizerOptions {
        self.opts
    }

    /// A streaming tokenizer with this tokenizer's options (the concrete type; see
    /// [`SentenceTokenizer::stream`] for the boxed form).
    pub fn sentence_stream(&self) -> SentenceStream {
        SentenceStream::new(self.opts)
    }
}

impl SentenceTokenizer for BasicSentenceTokenizer {
    fn tokenize(&self, text: &str) -> Vec<String> {
        let mut stream = self.sentence_stream();
        let mut out = stream.push_text(text);
        out.extend(stream.flush());
        out
    }

    fn stream(&self) -> Box<dyn TokenStream> {
        Box::new(self.sentence_stream())
    }
}

/// Streaming form of [`BasicSentenceTokenizer`]: push text chunks of any size, get sentences as
/// soon as their end is certain.
#[derive(Debug, Clone)]
pub struct SentenceStream {
    opts: SentenceTokenizerOptions,
    /// Text from the start of the current (unfinished) raw sentence.
    buf: String,
    /// Byte offset in `buf` where scanning resumes.
    scan_from: usize,
    /// Finished raw sentences waiting to reach `min_sentence_len`.
    pending: String,
    pending_chars: usize,
    ended: bool,
}

impl SentenceStream {
    /// A stream with the given options.
    pub fn new(opts: SentenceTokenizerOptions) -> Self {
        Self {
            opts,
            buf: String::new(),
            scan_from: 0,
            pending: String::new(),
            pending_chars: 0,
            ended: false,
        }
    }

    fn process(&mut self, at_end: bool, out: &mut Vec<String>) {
        // `start` is where the current raw sentence begins; the buffer is drained once at the
        // end so a long push with many sentences stays linear.
        let mut start = 0;
        let mut from = self.scan_from;
        loop {
            let text = &self.buf[start..];
            match next_boundary(text, from - start, at_end, self.opts.stream_context_len) {
                Scan::Boundary(end) => {
                    let raw = text[..end].trim().to_owned();
                    start += end;
                    from = start;
                    self.add_raw(&raw, out);
                }
                Scan::Exhausted(resume) => {
                    self.scan_from = start + resume;
                    break;
                }
            }
        }
        self.buf.drain(..start);
        self.scan_from -= start;
    }

    fn add_raw(&mut self, raw: &str, out: &mut Vec<String>) {
        if raw.is_empty() {
            return;
        }
        if !self.pending.is_empty() {
            self.pending.push(' ');
            self.pending_chars += 1;
        }
        self.pending.push_str(raw);
        self.pending_chars += raw.chars().count();
        if self.pending_chars >= self.opts.min_sentence_len {
            out.push(std::mem::take(&mut self.pending));
            self.pending_chars = 0;
        }
    }
}

impl TokenStream for SentenceStream {
    fn push_text(&mut self, text: &str) -> Vec<String> {
        if self.ended {
            tracing::warn!("SentenceStream::push_text after end_input; text ignored");
            return Vec::new();
        }
        self.buf.push_str(text);
        let mut out = Vec::new();
        self.process(false, &mut out);
        out
    }

    fn flush(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.process(true, &mut out);
        let rest = std::mem::take(&mut self.buf);
        self.scan_from = 0;
        self.add_raw(rest.trim(), &mut out);
        if !self.pending.is_empty() {
            out.push(std::mem::take(&mut self.pending));
            self.pending_chars = 0;
        }
        out
    }

    fn end_input(&mut self) -> Vec<String> {
        let out = self.flush();
        self.ended = true;
        out
    }
}

/// Result of scanning for the next boundary.
enum Scan {
    /// A sentence ends at this byte offset (exclusive).
    Boundary(usize),
    /// No boundary can be decided yet; resume scanning at this byte offset.
    Exhausted(usize),
}

/// What a candidate boundary needs to be confirmed.
enum Rule {
    Break,
    NoBreak,
    /// Split only when the next word is a common sentence starter.
    NextIsStarter,
    /// Split only when the next word starts with a capital letter.
    NextIsCapitalized,
}

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？' | '‼' | '⁉')
}

fn is_fullwidth_terminator(c: char) -> bool {
    matches!(c, '。' | '！' | '？')
}

fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»' | '」' | '』' | '）'
    )
}

fn is_opener(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '(' | '[' | '{' | '“' | '‘' | '«' | '「' | '『' | '（'
    )
}

/// Abbreviations that are (almost) never the end of a sentence.
const PREFIX_ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "mx", "dr", "prof", "st", "mt", "ft", "capt", "cpt", "col", "gen", "lt",
    "sgt", "rev", "hon", "sen", "rep", "gov", "pres", "vs", "e.g", "i.e", "cf", "approx", "fig",
    "dept", "vol", "no", "nos",
];

/// Abbreviations that end a sentence only before a sentence starter.
const SUFFIX_ABBREVIATIONS: &[&str] = &["inc", "ltd", "jr", "sr", "co", "corp", "bros", "llc"];

/// Words that typically begin a sentence (used after acronyms and company suffixes).
const STARTERS: &[&str] = &[
    "A", "After", "Also", "An", "And", "As", "At", "But", "Capt", "Cpt", "Dr", "For", "He", "Her",
    "His", "How", "However", "I", "If", "In", "It", "Its", "Lt", "Mr", "Mrs", "Ms", "My", "Now",
    "On", "Our", "Prof", "She", "So", "That", "The", "Their", "Then", "There", "These", "They",
    "This", "Those", "We", "What", "When", "Wherever", "Why", "You", "Your",
];

/// Scans `text[from..]` for the next sentence end.
fn next_boundary(text: &str, from: usize, at_end: bool, context_len: usize) -> Scan {
    let mut i = from;
    while let Some(c) = text[i..].chars().next() {
        if c == '\n' {
            return Scan::Boundary(i + 1);
        }
        if !is_terminator(c) {
            i += c.len_utf8();
            continue;
        }
        let run_start = i;
        let run_end = skip_while(text, run_start, is_terminator);
        let closers_end = skip_while(text, run_end, is_closer);
        let run = &text[run_start..run_end];
        let Some(next) = text[closers_end..].chars().next() else {
            // Terminator at the end of the text so far: decided by what comes next.
            return if at_end {
                Scan::Boundary(closers_end)
            } else {
                Scan::Exhausted(run_start)
            };
        };
        if run.chars().any(is_fullwidth_terminator) {
            return Scan::Boundary(closers_end);
        }
        if !next.is_whitespace() {
            i = closers_end;
            continue;
        }
        let rule = classify(text, run_start, run);
        let confirmed = match rule {
            Rule::Break => true,
            Rule::NoBreak => false,
            Rule::NextIsStarter | Rule::NextIsCapitalized => {
                let ws_end = skip_while(text, closers_end, char::is_whitespace);
                if text[closers_end..ws_end].contains('\n') {
                    // The newline is a boundary anyway; end the sentence at the punctuation.
                    true
                } else if ws_end == text.len() {
                    if at_end {
                        true
                    } else {
                        return Scan::Exhausted(run_start);
                    }
                } else {
                    let word_start = skip_while(text, ws_end, is_opener);
                    let (word, complete) = next_word(text, word_start, context_len);
                    if !complete && !at_end {
                        return Scan::Exhausted(run_start);
                    }
                    match rule {
                        Rule::NextIsStarter => STARTERS.contains(&word),
                        _ => word.chars().next().is_some_and(char::is_uppercase),
                    }
                }
            }
        };
        if confirmed {
            return Scan::Boundary(closers_end);
        }
        i = closers_end;
    }
    Scan::Exhausted(text.len())
}

/// Byte offset after the run of chars matching `pred` starting at `from`.
fn skip_while(text: &str, from: usize, pred: impl Fn(char) -> bool) -> usize {
    text[from..]
        .char_indices()
        .find(|&(_, c)| !pred(c))
        .map_or(text.len(), |(k, _)| from + k)
}

/// The word starting at `start` (letters, digits, apostrophes), at most `max_chars` long, and
/// whether it is complete (ended by another character or long enough to decide).
fn next_word(text: &str, start: usize, max_chars: usize) -> (&str, bool) {
    let max_chars = max_chars.max(1);
    let mut count = 0;
    for (k, c) in text[start..].char_indices() {
        if !(c.is_alphanumeric() || c == '\'' || c == '’') {
            return (&text[start..start + k], true);
        }
        count += 1;
        if count > max_chars {
            return (&text[start..start + k], true);
        }
    }
    (&text[start..], false)
}

/// Decides what a terminator run at `run_start`, followed by whitespace, means.
fn classify(text: &str, run_start: usize, run: &str) -> Rule {
    if run.contains(['!', '?', '‼', '⁉']) {
        return Rule::Break;
    }
    if run == "." {
        return classify_period(text, run_start);
    }
    // Ellipsis ("..", "...", "…"): a pause inside a sentence unless a capital follows.
    Rule::NextIsCapitalized
}

fn classify_period(text: &str, period: usize) -> Rule {
    let before = &text[..period];
    let word_start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| c.is_whitespace())
        .map_or(0, |(k, c)| k + c.len_utf8());
    let word = before[word_start..].trim_start_matches(is_opener);
    if word.is_empty() {
        return Rule::Break;
    }
    let lower = word.to_lowercase();
    if PREFIX_ABBREVIATIONS.contains(&lower.as_str()) {
        return Rule::NoBreak;
    }
    let mut chars = word.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if c.is_alphabetic() {
            // An initial ("J. Smith").
            return Rule::NoBreak;
        }
    }
    if is_acronym(word) || SUFFIX_ABBREVIATIONS.contains(&lower.as_str()) {
        return Rule::NextIsStarter;
    }
    if lower == "etc" {
        return Rule::NextIsCapitalized;
    }
    let is_list_number = word.len() <= 3 && word.chars().all(|c| c.is_ascii_digit());
    if is_list_number && before[..word_start].trim().is_empty() {
        return Rule::NoBreak;
    }
    Rule::Break
}

/// `U.S`, `R.T.C`, `a.m`, `Ph.D`: short letter groups separated by periods.
fn is_acronym(word: &str) -> bool {
    word.contains('.')
        && word.split('.').all(|part| {
            (1..=2).contains(&part.chars().count()) && part.chars().all(char::is_alphabetic)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str) -> Vec<String> {
        BasicSentenceTokenizer::default().tokenize(text)
    }

    fn tok_min(text: &str, min: usize) -> Vec<String> {
        BasicSentenceTokenizer::new(SentenceTokenizerOptions {
            min_sentence_len: min,
            ..Default::default()
        })
        .tokenize(text)
    }

    /// The reference framework's own tokenizer test text.
    const REFERENCE_TEXT: &str = "Hi! \
        LiveKit is a platform for live audio and video applications and services. \
        R.T.C stands for Real-Time Communication... again R.T.C. \
        Mr. Theo is testing the sentence tokenizer. \
        This is a test. Another test. \
        A short sentence. \
        A longer sentence that is longer than the previous sentence. \
        f(x) = x * 2.54 + 42. \
        Hey! Hi! Hello! ";

    const REFERENCE_EXPECTED: &[&str] = &[
        "Hi! LiveKit is a platform for live audio and video applications and services.",
        "R.T.C stands for Real-Time Communication... again R.T.C.",
        "Mr. Theo is testing the sentence tokenizer.",
        "This is a test. Another test.",
        "A short sentence. A longer sentence that is longer than the previous sentence.",
        "f(x) = x * 2.54 + 42.",
        "Hey! Hi! Hello!",
    ];

    const SAMPLES: &[&str] = &[
        REFERENCE_TEXT,
        "Dr. Jones met Mrs. Smith on Baker St. yesterday. They talked for an hour, e.g. about \
         the weather, i.e. rain. It was fun!",
        "I moved to the U.S. He moved to the U.K. in 2010. The price is 3.14 dollars.",
        "Wait... What was that?! \"It was a cat.\" She said (quietly.) Then silence…",
        "1. Open the door. 2. Walk through it slowly.\n\nDone. Apples, pears, etc. and more. \
         Apples, pears, etc. Then more.",
        "日本語の文です。次の文です！これは質問ですか？",
        "Ünïcödé façade — naïve café. Ça va? Très bien, merci beaucoup mon ami.",
        "",
        "   \n\n  ",
    ];

    #[test]
    fn matches_reference_expectations() {
        assert_eq!(tok(REFERENCE_TEXT), REFERENCE_EXPECTED);
    }

    #[test]
    fn abbreviations_do_not_split() {
        let out = tok_min(
            "Dr. Jones met Mrs. Smith on Baker St. yesterday. They talked, e.g. about rain, \
             i.e. weather. Mr. and Ms. Lee came too.",
            1,
        );
        assert_eq!(
            out,
            vec![
                "Dr. Jones met Mrs. Smith on Baker St. yesterday.",
                "They talked, e.g. about rain, i.e. weather.",
                "Mr. and Ms. Lee came too.",
            ]
        );
    }

    #[test]
    fn acronyms_split_only_before_starters() {
        let out = tok_min(
            "I live in the U.S. The weather is nice. The U.S. Army is big.",
            1,
        );
        assert_eq!(
            out,
            vec![
                "I live in the U.S.",
                "The weather is nice.",
                "The U.S. Army is big."
            ]
        );
        let out = tok_min("We met at 5 p.m. yesterday. Acme Inc. We sell things.", 1);
        assert_eq!(
            out,
            vec![
                "We met at 5 p.m. yesterday.",
                "Acme Inc.",
                "We sell things."
            ]
        );
    }

    #[test]
    fn decimals_and_initials() {
        assert_eq!(
            tok_min(
                "Pi is 3.14159 roughly. J. R. R. Tolkien wrote it. Version 2.0.1 ships.",
                1
            ),
            vec![
                "Pi is 3.14159 roughly.",
                "J. R. R. Tolkien wrote it.",
                "Version 2.0.1 ships."
            ]
        );
    }

    #[test]
    fn ellipses() {
        assert_eq!(
            tok_min("Well... I guess so. Hmm… maybe not. Wait... what?", 1),
            vec!["Well...", "I guess so.", "Hmm… maybe not.", "Wait... what?"]
        );
    }

    #[test]
    fn quotes_and_brackets_stay_with_their_sentence() {
        assert_eq!(
            tok_min(
                "He said \"Stop.\" Then he left. (It was late.) 'Really?' she asked.",
                1
            ),
            vec![
                "He said \"Stop.\"",
                "Then he left.",
                "(It was late.)",
                "'Really?'",
                "she asked."
            ]
        );
    }

    #[test]
    fn multiple_punctuation_is_one_end() {
        assert_eq!(
            tok_min("What?! No way!!! Really?? Yes.", 1),
            vec!["What?!", "No way!!!", "Really??", "Yes."]
        );
    }

    #[test]
    fn list_numbers_and_newlines() {
        assert_eq!(
            tok_min("Steps:\n1. Open the door.\n2. Walk in.\n\nDone", 1),
            vec!["Steps:", "1. Open the door.", "2. Walk in.", "Done"]
        );
    }

    #[test]
    fn fullwidth_punctuation_splits_without_space() {
        assert_eq!(
            tok_min("日本語の文です。次の文です！これは質問ですか？", 1),
            vec!["日本語の文です。", "次の文です！", "これは質問ですか？"]
        );
    }

    #[test]
    fn short_sentences_are_merged() {
        assert_eq!(
            tok("Yes. No. Maybe. Certainly not today."),
            vec!["Yes. No. Maybe. Certainly not today."]
        );
        assert_eq!(tok("Ok. Fine."), vec!["Ok. Fine."]);
    }

    #[test]
    fn empty_and_whitespace_input() {
        assert!(tok("").is_empty());
        assert!(tok("  \n\t ").is_empty());
        let mut s = BasicSentenceTokenizer::default().sentence_stream();
        assert!(s.push_text("").is_empty());
        assert!(s.flush().is_empty());
    }

    #[test]
    fn long_input_without_punctuation_is_one_sentence() {
        let text = "word ".repeat(20_000);
        let out = tok(&text);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0], text.trim());
        // Streaming it word by word stays linear and gives the same result.
        let mut s = BasicSentenceTokenizer::default().sentence_stream();
        for _ in 0..20_000 {
            assert!(s.push_text("word ").is_empty());
        }
        assert_eq!(s.flush(), out);
        // Many sentences in one push (linear: the buffer is drained once per push).
        let many = "This sentence is long enough. ".repeat(20_000);
        let out = tok(&many);
        assert_eq!(out.len(), 20_000);
        assert!(out.iter().all(|s| s == "This sentence is long enough."));
    }

    fn stream_in_chunks(text: &str, splits: &[usize]) -> Vec<String> {
        let mut s = BasicSentenceTokenizer::default().sentence_stream();
        let mut out = Vec::new();
        let mut prev = 0;
        for &at in splits {
            out.extend(s.push_text(&text[prev..at]));
            prev = at;
        }
        out.extend(s.push_text(&text[prev..]));
        out.extend(s.end_input());
        out
    }

    #[test]
    fn streaming_equals_batch_for_every_split() {
        for text in SAMPLES {
            let batch = tok(text);
            let bounds: Vec<usize> = (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            for &a in &bounds {
                assert_eq!(
                    stream_in_chunks(text, &[a]),
                    batch,
                    "split at {a} of {text:?}"
                );
            }
            // Char by char.
            let all: Vec<usize> = bounds
                .iter()
                .copied()
                .filter(|&i| i > 0 && i < text.len())
                .collect();
            assert_eq!(stream_in_chunks(text, &all), batch, "char by char {text:?}");
            // The reference's 1-2-4 chunk pattern.
            let mut splits = Vec::new();
            let mut pos = 0;
            for step in [1usize, 2, 4].iter().cycle() {
                let mut next = pos + step;
                while next < text.len() && !text.is_char_boundary(next) {
                    next += 1;
                }
                if next >= text.len() {
                    break;
                }
                splits.push(next);
                pos = next;
            }
            assert_eq!(stream_in_chunks(text, &splits), batch);
        }
    }

    /// Deterministic pseudo-random texts made of punctuation-heavy pieces: streaming with
    /// random chunkings always equals batch.
    #[test]
    fn random_texts_stream_like_batch() {
        const PIECES: &[&str] = &[
            "word", "Word", " ", "  ", ".", "!", "?", "...", "…", "\"", "'", ")", "(", "U.S.",
            "Mr.", "e.g.", "etc.", "Inc.", "The", "He", "3.14", "1.", "\n", "。", "日本", "J.",
            "?!", "a",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..300 {
            let len = 1 + next(60);
            let text: String = (0..len).map(|_| PIECES[next(PIECES.len())]).collect();
            let batch = tok(&text);
            let bounds: Vec<usize> = (1..text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            for _ in 0..5 {
                let mut splits: Vec<usize> = (0..next(8))
                    .filter(|_| !bounds.is_empty())
                    .map(|_| bounds[next(bounds.len())])
                    .collect();
                splits.sort_unstable();
                splits.dedup();
                assert_eq!(
                    stream_in_chunks(&text, &splits),
                    batch,
                    "{text:?} split at {splits:?}"
                );
            }
            // Nothing is lost: the sentences hold every non-space character of the text.
            let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            assert_eq!(squeeze(&batch.concat()), squeeze(&text));
        }
    }

    #[test]
    fn sentences_come_out_before_flush() {
        let mut s = BasicSentenceTokenizer::default().sentence_stream();
        assert!(s.push_text("This is the first sentence.").is_empty());
        assert_eq!(s.push_text(" "), vec!["This is the first sentence."]);
        // Ambiguous: needs the next word.
        assert!(s.push_text("I was born in the U.S.").is_empty());
        assert!(s.push_text(" Th").is_empty());
        assert_eq!(s.push_text("e end"), vec!["I was born in the U.S."]);
        assert_eq!(s.end_input(), vec!["The end"]);
        assert!(s.push_text("ignored after end").is_empty());
        assert!(s.flush().is_empty());
    }

    #[test]
    fn flush_starts_a_new_segment() {
        let mut s = BasicSentenceTokenizer::default().sentence_stream();
        assert!(s.push_text("Short.").is_empty());
        assert_eq!(s.flush(), vec!["Short."]);
        assert!(s.push_text("Another").is_empty());
        assert_eq!(s.flush(), vec!["Another"]);
    }
}
