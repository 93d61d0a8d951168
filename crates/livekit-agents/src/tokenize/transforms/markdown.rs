//! Markdown removal (`filter_markdown`) for text that is about to be spoken.

use super::TextTransform;

/// Removes markdown syntax, keeping the words a listener should hear.
///
/// | markdown | spoken |
/// |---|---|
/// | `# Title`, `## Title ##` | `Title` |
/// | `**bold**`, `*it*`, `__b__`, `_i_`, `~~gone~~` | the words (markers dropped) |
/// | `` `code` `` | `code` (no markdown processing inside) |
/// | fenced code block (```` ``` ```` or `~~~`) | the code lines; fence lines dropped |
/// | `[text](url)`, `![alt](url)` | `text`, `alt` |
/// | `- item`, `* item`, `+ item`, `1. item`, `2) item`, `- [x] task` | `item`, `task` |
/// | `> quote` | `quote` |
/// | `\| a \| b \|` table rows / `\|---\|---\|` separators | `a, b` / dropped |
/// | `---`, `***`, `___` rules, `===` underlines | dropped |
/// | `\*` escapes | `*` |
///
/// Emphasis markers are recognised by position, not by pairing: a run of `*`, `_` or `~~` is
/// dropped when it touches a word on one side only (`**bold**`), and kept when it stands alone
/// (`2 * 3`) or sits inside a word (`snake_case`, `5*3`). This keeps the filter streaming with
/// one character of lookahead instead of holding text until a closing marker arrives.
/// (Unlike the reference, `~~struck~~` text is kept, only its markers are dropped.)
///
/// Streaming: the filter holds back only an undecided construct: a marker run until the
/// character after it, a line start made of marker characters until the line's first other
/// character (at most 256 bytes), and a `[`/`![` until its `](url)` closes (at most 256 bytes of
/// link text and 2048 of URL; longer or unclosed brackets are kept as text).
///
/// ```
/// use livekit_agents::tokenize::filter_markdown;
///
/// let md = "## Steps\n1. Open **the** [app](https://x.io)\n2. Type `ls -l`\n---\n> Done!";
/// assert_eq!(filter_markdown(md), "Steps\nOpen the app\nType ls -l\nDone!");
/// ```
#[derive(Debug, Clone)]
pub struct MarkdownFilter {
    /// Unprocessed input (an undecided construct at most, between pushes).
    buf: String,
    state: State,
}

#[derive(Debug, Clone)]
struct State {
    at_line_start: bool,
    /// Inside a fenced code block opened by `len` × `ch`.
    fence: Option<(char, usize)>,
    /// Dropping the rest of the current line (a fence line).
    skip_line: bool,
    /// Inside an inline code span opened by this many backticks.
    code_span: Option<usize>,
    /// The current line is a table row (`| a | b |`).
    table_row: bool,
    /// The current line is an ATX header (closing `#`s are dropped).
    header: bool,
    /// Right after a list marker, where a task box (`[ ]`, `[x]`) may follow.
    task_box: bool,
    /// Last input character consumed (for emphasis flanking).
    prev: char,
}

impl Default for State {
    fn default() -> Self {
        Self {
            at_line_start: true,
            fence: None,
            skip_line: false,
            code_span: None,
            table_row: false,
            header: false,
            task_box: false,
            prev: '\n',
        }
    }
}

const LINE_PREFIX_CAP: usize = 256;
const LINK_TEXT_CAP: usize = 256;
const LINK_URL_CAP: usize = 2048;

impl Default for MarkdownFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl MarkdownFilter {
    /// A new filter, at the start of a line.
    pub fn new() -> Self {
        Self {
            buf: String::new(),
            state: State::default(),
        }
    }

    fn run(&mut self, at_end: bool) -> String {
        let mut out = String::new();
        let mut pos = 0;
        while pos < self.buf.len() {
            match self.state.step(&self.buf[pos..], at_end, &mut out) {
                Some(n) => pos += n,
                None => break,
            }
        }
        self.buf.drain(..pos);
        out
    }
}

impl TextTransform for MarkdownFilter {
    fn push(&mut self, chunk: &str) -> String {
        self.buf.push_str(chunk);
        self.run(false)
    }

    fn flush(&mut self) -> String {
        let out = self.run(true);
        self.buf.clear();
        self.state = State::default();
        out
    }
}

/// Removes markdown from a complete text (see [`MarkdownFilter`]).
pub fn filter_markdown(text: &str) -> String {
    let mut f = MarkdownFilter::new();
    let mut out = f.push(text);
    out.push_str(&f.flush());
    out
}

/// Outcome of looking for a link at a `[`.
enum Link<'a> {
    /// `[text](url)`: the link text and the bytes consumed (through `)`).
    Found(&'a str, usize),
    /// Not a link: the `[` is ordinary text.
    Text,
    /// The input ends before the link could be confirmed or ruled out.
    NeedMore,
}

fn first_char(s: &str) -> Option<char> {
    s.chars().next()
}

/// Byte length of the leading run of `c` in `s`.
fn run_len(s: &str, c: char) -> usize {
    s.find(|x| x != c).unwrap_or(s.len())
}

fn is_line_prefix_char(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '#' | '>' | '-' | '+' | '*' | '_' | '=' | '|' | ':' | '`' | '~' | '.' | ')'
    ) || c.is_ascii_digit()
}

impl State {
    /// Processes the start of `s`, appending output. Returns the bytes consumed (0 only when a
    /// line-start decision changed the state), or `None` when more input is needed.
    fn step(&mut self, s: &str, at_end: bool, out: &mut String) -> Option<usize> {
        if self.skip_line {
            return Some(match s.find('\n') {
                Some(k) => {
                    self.skip_line = false;
                    self.at_line_start = true;
                    self.prev = '\n';
                    k + 1
                }
                None => s.len(),
            });
        }
        if self.fence.is_some() {
            return self.step_in_fence(s, at_end, out);
        }
        if self.at_line_start {
            return self.step_line_start(s, at_end);
        }
        self.step_inline(s, at_end, out)
    }

    fn consumed(&mut self, s: &str, n: usize) -> Option<usize> {
        if let Some(c) = s[..n].chars().next_back() {
            self.prev = c;
        }
        Some(n)
    }

    fn step_in_fence(&mut self, s: &str, at_end: bool, out: &mut String) -> Option<usize> {
        if self.at_line_start {
            let (ch, len) = self.fence.unwrap_or(('`', 3));
            let indent = run_len(s, ' ');
            let run = run_len(&s[indent..], ch);
            if indent + run == s.len() && !at_end && indent <= 3 && run < len {
                return None;
            }
            if indent <= 3 && run >= len {
                self.fence = None;
                self.skip_line = true;
                self.at_line_start = false;
                return self.consumed(s, indent + run);
            }
            self.at_line_start = false;
        }
        // A code line: spoken verbatim.
        let n = match s.find('\n') {
            Some(k) => {
                self.at_line_start = true;
                k + 1
            }
            None => s.len(),
        };
        out.push_str(&s[..n]);
        self.consumed(s, n)
    }

    fn step_line_start(&mut self, s: &str, at_end: bool) -> Option<usize> {
        let mut prefix_end = s.len();
        let mut terminated_by = None;
        for (k, c) in s.char_indices() {
            if k >= LINE_PREFIX_CAP {
                prefix_end = k;
                terminated_by = Some('\0');
                break;
            }
            if !is_line_prefix_char(c) {
                prefix_end = k;
                terminated_by = Some(c);
                break;
            }
        }
        if terminated_by.is_none() && !at_end {
            return None;
        }
        let prefix = &s[..prefix_end];
        let line_ends_here = matches!(terminated_by, None | Some('\n'));
        self.at_line_start = false;
        self.table_row = false;
        self.header = false;
        self.task_box = false;

        let trimmed = prefix.trim();
        let indent = prefix.len() - prefix.trim_start().len();
        // Fenced code block.
        let fence_char = first_char(trimmed).filter(|c| matches!(c, '`' | '~'));
        if let Some(ch) = fence_char {
            let run = run_len(trimmed, ch);
            if run >= 3 && indent <= 3 {
                self.fence = Some((ch, run));
                self.skip_line = true;
                return self.consumed(s, indent + run);
            }
        }
        if line_ends_here && is_dropped_line(trimmed) {
            // Rule, table separator or underline: drop the line with its newline.
            let n = if terminated_by == Some('\n') {
                prefix_end + 1
            } else {
                prefix_end
            };
            self.at_line_start = true;
            self.prev = '\n';
            return Some(n);
        }
        let (n, kind) = strip_line_markers(prefix);
        self.table_row = kind == LineKind::TableRow;
        self.header = kind == LineKind::Header;
        self.task_box = kind == LineKind::ListItem;
        if n == 0 {
            return Some(0);
        }
        self.consumed(s, n)
    }

    fn step_inline(&mut self, s: &str, at_end: bool, out: &mut String) -> Option<usize> {
        let c = first_char(s)?;
        if c == '\n' {
            out.push('\n');
            self.at_line_start = true;
            self.code_span = None;
            self.table_row = false;
            self.header = false;
            self.task_box = false;
            return self.consumed(s, 1);
        }
        if let Some(open) = self.code_span {
            if c == '`' {
                let run = run_len(s, '`');
                if run == s.len() && !at_end {
                    return None;
                }
                if run == open {
                    self.code_span = None;
                } else {
                    out.push_str(&s[..run]);
                }
                return self.consumed(s, run);
            }
            let n = s.find(['`', '\n']).unwrap_or(s.len());
            out.push_str(&s[..n]);
            return self.consumed(s, n);
        }
        if self.task_box {
            const BOXES: [&str; 3] = ["[ ] ", "[x] ", "[X] "];
            if s.len() < 4 && !at_end && BOXES.iter().any(|b| b.starts_with(s)) {
                return None;
            }
            self.task_box = false;
            if BOXES.iter().any(|b| s.starts_with(b)) {
                return self.consumed(s, 4);
            }
        }
        match c {
            '#' if self.header && self.prev.is_whitespace() => {
                // Closing sequence of an ATX header ("## Title ##"): dropped at the line end.
                let run = run_len(s, '#');
                let after = run + run_len_blank(&s[run..]);
                match first_char(&s[after..]) {
                    None if !at_end => None,
                    None | Some('\n') => self.consumed(s, after),
                    Some(_) => {
                        out.push_str(&s[..run]);
                        self.consumed(s, run)
                    }
                }
            }
            '\\' => {
                let Some(next) = s[1..].chars().next() else {
                    if !at_end {
                        return None;
                    }
                    out.push('\\');
                    return self.consumed(s, 1);
                };
                if next.is_ascii_punctuation() {
                    out.push(next);
                    self.consumed(s, 1 + next.len_utf8())
                } else {
                    out.push('\\');
                    self.consumed(s, 1)
                }
            }
            '`' => {
                let run = run_len(s, '`');
                if run == s.len() && !at_end {
                    return None;
                }
                self.code_span = Some(run);
                self.consumed(s, run)
            }
            '*' | '_' | '~' => {
                let run = run_len(s, c);
                let next = first_char(&s[run..]);
                if next.is_none() && !at_end {
                    return None;
                }
                let prev_space = self.prev.is_whitespace();
                let next_space = next.is_none_or(char::is_whitespace);
                let intraword =
                    self.prev.is_alphanumeric() && next.is_some_and(char::is_alphanumeric);
                let keep = (c == '~' && run < 2) || (prev_space && next_space) || intraword;
                if keep {
                    out.push_str(&s[..run]);
                }
                self.consumed(s, run)
            }
            '!' if s.len() == 1 && !at_end => None,
            '!' if s[1..].starts_with('[') => match find_link(&s[1..], at_end) {
                Link::Found(text, n) => {
                    self.emit_link_text(text, out);
                    self.consumed(s, 1 + n)
                }
                Link::Text => {
                    out.push('!');
                    self.consumed(s, 1)
                }
                Link::NeedMore => None,
            },
            '[' => match find_link(s, at_end) {
                Link::Found(text, n) => {
                    self.emit_link_text(text, out);
                    self.consumed(s, n)
                }
                Link::Text => {
                    out.push('[');
                    self.consumed(s, 1)
                }
                Link::NeedMore => None,
            },
            '|' if self.table_row => {
                let after = s[1..].find(|x| x != ' ' && x != '\t').map(|k| k + 1);
                match after {
                    None if !at_end => None,
                    None => self.consumed(s, s.len()),
                    Some(k) if s[k..].starts_with('\n') => self.consumed(s, k),
                    Some(k) => {
                        out.push_str(", ");
                        self.consumed(s, k)
                    }
                }
            }
            ' ' | '\t' if self.table_row => {
                let k = s.find(|x| x != ' ' && x != '\t');
                match k {
                    None if !at_end => None,
                    None => self.consumed(s, s.len()),
                    Some(k) if s[k..].starts_with(['|', '\n']) => self.consumed(s, k),
                    Some(k) => {
                        out.push_str(&s[..k]);
                        self.consumed(s, k)
                    }
                }
            }
            _ => {
                let n = s
                    .find(|x: char| {
                        matches!(x, '\n' | '\\' | '`' | '*' | '_' | '~' | '!' | '[')
                            || (self.table_row && matches!(x, '|' | ' ' | '\t'))
                            || (self.header && x == '#')
                    })
                    .unwrap_or(s.len());
                // `c` itself is plain here, so at least one character is consumed.
                let n = n.max(c.len_utf8());
                out.push_str(&s[..n]);
                self.consumed(s, n)
            }
        }
    }

    fn emit_link_text(&self, text: &str, out: &mut String) {
        let mut inner = State {
            at_line_start: false,
            prev: self.prev,
            ..State::default()
        };
        let mut pos = 0;
        while pos < text.len() {
            match inner.step(&text[pos..], true, out) {
                Some(n) => pos += n,
                None => break,
            }
        }
    }
}

/// Looks for `[text](url)` at the start of `s` (which starts with `[`).
fn find_link(s: &str, at_end: bool) -> Link<'_> {
    let need_more = if at_end { Link::Text } else { Link::NeedMore };
    let mut close = None;
    for (k, c) in s.char_indices().skip(1) {
        if k > LINK_TEXT_CAP || c == '\n' {
            return Link::Text;
        }
        if c == ']' {
            close = Some(k);
            break;
        }
    }
    let Some(close) = close else {
        return need_more;
    };
    let url = &s[close + 1..];
    match first_char(url) {
        None => return need_more,
        Some('(') => {}
        Some(_) => return Link::Text,
    }
    let mut depth = 0usize;
    for (k, c) in url.char_indices() {
        if k > LINK_URL_CAP || c == '\n' {
            return Link::Text;
        }
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Link::Found(&s[1..close], close + 1 + k + 1);
                }
            }
            _ => {}
        }
    }
    need_more
}

/// A whole line that carries no words: `---`, `***`, `___` (spaces allowed), `===`, or a table
/// separator such as `|---|:---:|`.
fn is_dropped_line(trimmed: &str) -> bool {
    let Some(first) = first_char(trimmed) else {
        return false;
    };
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    if matches!(first, '-' | '*' | '_') && compact.len() >= 3 && compact.chars().all(|c| c == first)
    {
        return true;
    }
    if first == '=' && compact.chars().all(|c| c == '=') {
        return true;
    }
    compact.contains('|')
        && compact.contains('-')
        && compact.chars().all(|c| matches!(c, '|' | '-' | ':'))
}

/// What kind of line the stripped markers started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Plain,
    Header,
    ListItem,
    TableRow,
}

/// Strips block markers (indentation, `>`, `#`, list markers, a table row's leading `|`) from
/// the start of a line prefix; returns the bytes to drop and the kind of line.
fn strip_line_markers(prefix: &str) -> (usize, LineKind) {
    let mut pos = 0;
    // A marker must be followed by a space inside the prefix (the prefix ends before the
    // line's first word, so a space there is always followed by more text or the line end).
    let spaced = |k: usize| k < prefix.len() && prefix[k..].starts_with([' ', '\t']);
    let skip_spaces = |k: usize| prefix.len() - prefix[k..].trim_start_matches([' ', '\t']).len();
    loop {
        let p = skip_spaces(pos);
        let r = &prefix[p..];
        let Some(c) = first_char(r) else {
            return (pos, LineKind::Plain);
        };
        match c {
            '>' => pos = skip_spaces(p + 1),
            '#' => {
                let hashes = run_len(r, '#');
                return if hashes <= 6 && spaced(p + hashes) {
                    (skip_spaces(p + hashes), LineKind::Header)
                } else {
                    (pos, LineKind::Plain)
                };
            }
            '-' | '+' | '*' if spaced(p + 1) => return (skip_spaces(p + 1), LineKind::ListItem),
            '|' => return (skip_spaces(p + 1), LineKind::TableRow),
            d if d.is_ascii_digit() => {
                let digits = run_len_digits(r);
                let after = p + digits;
                let is_marker =
                    digits <= 9 && prefix[after..].starts_with(['.', ')']) && spaced(after + 1);
                return if is_marker {
                    (skip_spaces(after + 1), LineKind::ListItem)
                } else {
                    (pos, LineKind::Plain)
                };
            }
            _ => return (pos, LineKind::Plain),
        }
    }
}

/// Byte length of the leading run of spaces and tabs.
fn run_len_blank(s: &str) -> usize {
    s.find(|x| x != ' ' && x != '\t').unwrap_or(s.len())
}

fn run_len_digits(s: &str) -> usize {
    s.find(|x: char| !x.is_ascii_digit()).unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(s: &str) -> String {
        filter_markdown(s)
    }

    #[test]
    fn headers_and_block_quotes() {
        assert_eq!(
            md("# Title\n## Sub title\n###### Six"),
            "Title\nSub title\nSix"
        );
        assert_eq!(md("#hashtag stays"), "#hashtag stays");
        assert_eq!(md("> quoted\n> > nested"), "quoted\nnested");
        assert_eq!(md("  ### indented"), "indented");
        // Closing hashes go; the space before them stays (harmless for speech).
        assert_eq!(md("## Closed ##\n# C# and F# #"), "Closed \nC# and F# ");
        assert_eq!(md("# Title ## \nnext"), "Title \nnext");
    }

    #[test]
    fn emphasis() {
        assert_eq!(
            md("**bold** and *italic* and ***both***"),
            "bold and italic and both"
        );
        assert_eq!(md("__bold__ and _italic_"), "bold and italic");
        assert_eq!(md("~~struck~~ text"), "struck text");
        assert_eq!(md("Say **\"hi\"**."), "Say \"hi\".");
        // Not emphasis: standalone or intraword markers.
        assert_eq!(md("2 * 3 = 6 and 5*3"), "2 * 3 = 6 and 5*3");
        assert_eq!(md("snake_case_name"), "snake_case_name");
        assert_eq!(md("about ~5 minutes"), "about ~5 minutes");
    }

    #[test]
    fn code() {
        assert_eq!(md("Run `ls -l **x**` now"), "Run ls -l **x** now");
        assert_eq!(md("Use ``a ` b`` ok"), "Use a ` b ok");
        assert_eq!(
            md("Before\n```python\nx = *y*  # [a](b)\n```\nAfter **b**"),
            "Before\nx = *y*  # [a](b)\nAfter b"
        );
        assert_eq!(md("~~~\n# not a header\n~~~~\nok"), "# not a header\nok");
    }

    #[test]
    fn links_and_images() {
        assert_eq!(md("See [the docs](https://a.b/c?d=e)."), "See the docs.");
        assert_eq!(md("![a cat](cat.png) sits"), "a cat sits");
        assert_eq!(md("[**bold** link](u) x"), "bold link x");
        assert_eq!(md("Wiki [page](https://w.org/A_(b)) end"), "Wiki page end");
        // Not links.
        assert_eq!(md("Cite [1] and [2]."), "Cite [1] and [2].");
        assert_eq!(md("Wow! [x] (y)"), "Wow! [x] (y)");
        assert_eq!(md("[open bracket\nnext"), "[open bracket\nnext");
        assert_eq!(md("[a](unclosed"), "[a](unclosed");
    }

    #[test]
    fn lists() {
        assert_eq!(
            md("- one\n* two\n+ three\n  - nested"),
            "one\ntwo\nthree\nnested"
        );
        assert_eq!(md("1. first\n2) second\n10. tenth"), "first\nsecond\ntenth");
        assert_eq!(md("2024 was good\n3.5 stars"), "2024 was good\n3.5 stars");
        assert_eq!(md("- **Bold item**: text"), "Bold item: text");
        assert_eq!(md("-not a list"), "-not a list");
        assert_eq!(md("- [ ] todo\n- [x] done\n* [X] also"), "todo\ndone\nalso");
        assert_eq!(
            md("[ ] not in a list\n- [link](u) item"),
            "[ ] not in a list\nlink item"
        );
    }

    #[test]
    fn tables_and_rules() {
        assert_eq!(
            md("| Name | Age |\n|------|:---:|\n| Bob  | 30  |\nafter"),
            "Name, Age\nBob, 30\nafter"
        );
        assert_eq!(md("above\n---\n* * *\n___\nbelow"), "above\nbelow");
        assert_eq!(md("Title\n=====\ntext"), "Title\ntext");
        assert_eq!(md("a -- b"), "a -- b");
        let long_rule = format!("x\n{}\ny", "-".repeat(120));
        assert_eq!(md(&long_rule), "x\ny");
        let wide = format!(
            "| a | b |\n|{}|{}|\n| 1 | 2 |",
            "-".repeat(60),
            ":".to_owned() + &"-".repeat(60)
        );
        assert_eq!(md(&wide), "a, b\n1, 2");
    }

    #[test]
    fn escapes_and_plain_text() {
        assert_eq!(
            md(r"\*not emphasis\* and \\ and \q"),
            r"*not emphasis* and \ and \q"
        );
        let plain = "Plain text. Ünïcödé, 日本語! Numbers 3.14, (parens), a - b.";
        assert_eq!(md(plain), plain);
        assert_eq!(md(""), "");
        assert_eq!(md("\n\n"), "\n\n");
    }

    const SAMPLE: &str = "# Welcome to **LiveKit**\n\
        Here is a *quick* overview, see [the docs](https://docs.livekit.io/agents_(v1)).\n\
        \n\
        ## Steps\n\
        1. Install with `pip install livekit`\n\
        2. Run ~~old~~ **new** code:\n\
        ```python\n\
        print(\"*hi*\")\n\
        ```\n\
        - __Note__: 2 * 3 = 6, snake_case_stays\n\
        > Quote with ![image](a.png) and \\*escaped\\*\n\
        \n\
        | Col A | Col B |\n\
        |---|---|\n\
        | 1 | 2 |\n\
        ---\n\
        Thanks! [1] ~~~ end";

    #[test]
    fn sample_document() {
        assert_eq!(
            md(SAMPLE),
            "Welcome to LiveKit\n\
             Here is a quick overview, see the docs.\n\
             \n\
             Steps\n\
             Install with pip install livekit\n\
             Run old new code:\n\
             print(\"*hi*\")\n\
             Note: 2 * 3 = 6, snake_case_stays\n\
             Quote with image and *escaped*\n\
             \n\
             Col A, Col B\n\
             1, 2\n\
             Thanks! [1] ~~~ end"
        );
    }

    fn split_stream(text: &str, splits: &[usize]) -> String {
        let mut f = MarkdownFilter::new();
        let mut out = String::new();
        let mut prev = 0;
        for &at in splits {
            out.push_str(&f.push(&text[prev..at]));
            prev = at;
        }
        out.push_str(&f.push(&text[prev..]));
        out.push_str(&f.flush());
        out
    }

    #[test]
    fn streaming_equals_batch_at_every_split_point() {
        let samples = [
            SAMPLE,
            "**a**b*c* _d_ [e](f) ![g](h) `i` \\* ~~j~~ | k |",
            "| x |\n|-|\n```\n~~~\n```\n> - 1. **y**",
            "trailing marker *",
            "[",
            "!",
            "`",
            "---",
        ];
        for text in samples {
            let batch = md(text);
            let bounds: Vec<usize> = (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            for &a in &bounds {
                assert_eq!(split_stream(text, &[a]), batch, "split at {a} of {text:?}");
            }
            let every: Vec<usize> = bounds
                .iter()
                .copied()
                .filter(|&i| i > 0 && i < text.len())
                .collect();
            assert_eq!(
                split_stream(text, &every),
                batch,
                "char by char of {text:?}"
            );
        }
    }

    /// Deterministic pseudo-random texts made of markdown-heavy pieces: the filter never
    /// panics and gives the same output for random chunkings.
    #[test]
    fn random_markdown_streams_like_batch() {
        const PIECES: &[&str] = &[
            "*", "**", "_", "__", "~", "~~", "`", "```", "~~~", "[", "]", "(", ")", "![", "\\",
            "#", "## ", "> ", "- ", "1. ", "|", " | ", "---", "\n", " ", "word", "é", "👍", "x_y",
            "[a](b)", "3.5", "\t", "[ ] ", "[x]", " #", "# ",
        ];
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..300 {
            let len = 1 + next(40);
            let text: String = (0..len).map(|_| PIECES[next(PIECES.len())]).collect();
            let batch = md(&text);
            let bounds: Vec<usize> = (1..text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            for _ in 0..5 {
                let mut splits: Vec<usize> = (0..next(6))
                    .filter(|_| !bounds.is_empty())
                    .map(|_| bounds[next(bounds.len())])
                    .collect();
                splits.sort_unstable();
                splits.dedup();
                assert_eq!(
                    split_stream(&text, &splits),
                    batch,
                    "{text:?} split at {splits:?}"
                );
            }
        }
    }

    #[test]
    fn holds_only_undecided_constructs() {
        let mut f = MarkdownFilter::new();
        assert_eq!(f.push("Hello "), "Hello ");
        assert_eq!(f.push("**wor"), "wor");
        assert_eq!(f.push("ld*"), "ld");
        assert_eq!(f.push("* and [li"), " and ");
        assert_eq!(f.push("nk](http://x"), "");
        assert_eq!(f.push(") done\n-"), "link done\n");
        assert_eq!(f.push(" item"), "item");
        assert_eq!(f.flush(), "");
        // After a flush the filter starts a new text at a line start.
        assert_eq!(f.push("# Next"), "Next");
    }
}
