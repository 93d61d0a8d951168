//! Emoji removal (`filter_emoji`).

use super::TextTransform;

/// Removes emoji so TTS engines do not read them out ("smiling face with...") or choke on them.
///
/// Removed: the emoji and pictograph blocks (U+1F000–U+1FBFF, which include regional-indicator
/// flags and skin-tone modifiers), Miscellaneous Symbols and Dingbats (U+2600–U+27BF),
/// Miscellaneous Symbols and Arrows (U+2B00–U+2BFF), the emoji-presentation characters of other
/// blocks (`⌚`, `⏰`, `▶`, `〰`, `㊗`, ...), variation selectors, the keycap mark, emoji tag
/// characters (subdivision flags) and a zero-width joiner that follows an emoji (ZWJ sequences
/// such as family or rainbow-flag emoji). A keycap keeps its base character (`1️⃣` → `1`).
/// Everything is decided per character, so nothing is ever held back.
///
/// ```
/// use livekit_agents::tokenize::filter_emoji;
///
/// assert_eq!(filter_emoji("Great job 👍🏽! 👨‍👩‍👧 🇫🇷"), "Great job !  ");
/// ```
#[derive(Debug, Clone, Default)]
pub struct EmojiFilter {
    /// Whether the previous character was removed as part of an emoji.
    after_emoji: bool,
}

impl EmojiFilter {
    /// A new filter.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TextTransform for EmojiFilter {
    fn push(&mut self, chunk: &str) -> String {
        let mut out = String::with_capacity(chunk.len());
        for c in chunk.chars() {
            let drop = if c == '\u{200D}' {
                self.after_emoji
            } else {
                is_emoji_part(c)
            };
            if drop {
                self.after_emoji = true;
            } else {
                self.after_emoji = false;
                out.push(c);
            }
        }
        out
    }

    fn flush(&mut self) -> String {
        self.after_emoji = false;
        String::new()
    }
}

/// Removes emoji from a complete text (see [`EmojiFilter`]).
pub fn filter_emoji(text: &str) -> String {
    let mut f = EmojiFilter::new();
    let mut out = f.push(text);
    out.push_str(&f.flush());
    out
}

fn is_emoji_part(c: char) -> bool {
    matches!(
        c as u32,
        0x1F000..=0x1FBFF
            | 0x2600..=0x27BF
            | 0x2B00..=0x2BFF
            | 0x231A..=0x231B
            | 0x2328
            | 0x23CF
            | 0x23E9..=0x23F3
            | 0x23F8..=0x23FA
            | 0x25AA..=0x25AB
            | 0x25B6
            | 0x25C0
            | 0x25FB..=0x25FE
            | 0x2934..=0x2935
            | 0x3030
            | 0x303D
            | 0x3297
            | 0x3299
            | 0xFE00..=0xFE0F
            | 0x20E3
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_simple_and_modified_emoji() {
        assert_eq!(filter_emoji("Hi 😀!"), "Hi !");
        assert_eq!(filter_emoji("👍🏽👍🏿"), "");
        assert_eq!(filter_emoji("☀️ sunny ⭐ star ✅"), " sunny  star ");
        assert_eq!(filter_emoji("⏰ alarm"), " alarm");
    }

    #[test]
    fn removes_zwj_sequences_and_flags() {
        // family, rainbow flag, heart on fire, woman technologist with skin tone
        assert_eq!(filter_emoji("a👨‍👩‍👧‍👦b"), "ab");
        assert_eq!(filter_emoji("a🏳️‍🌈b"), "ab");
        assert_eq!(filter_emoji("a❤️‍🔥b"), "ab");
        assert_eq!(filter_emoji("a👩🏽‍💻b"), "ab");
        // regional-indicator flags and a tag-sequence flag (England)
        assert_eq!(filter_emoji("🇺🇸 and 🇯🇵"), " and ");
        assert_eq!(filter_emoji("a🏴󠁧󠁢󠁥󠁮󠁧󠁿b"), "ab");
    }

    #[test]
    fn keeps_text_and_keycap_bases() {
        assert_eq!(filter_emoji("1️⃣ first #️⃣"), "1 first #");
        let text = "Plain text, ünïcödé, 日本語, math: 2 × 3 → 6, © 2024, ‼";
        assert_eq!(filter_emoji(text), text);
        // A zero-width joiner between letters (e.g. in Indic scripts) is kept.
        assert_eq!(filter_emoji("क्\u{200D}ष"), "क्\u{200D}ष");
    }

    #[test]
    fn streaming_equals_batch_for_every_split() {
        let text = "Hi 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 🇺🇸! 1️⃣ क्\u{200D}ष";
        let batch = filter_emoji(text);
        for a in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let mut f = EmojiFilter::new();
            let mut out = f.push(&text[..a]);
            out.push_str(&f.push(&text[a..]));
            out.push_str(&f.flush());
            assert_eq!(out, batch, "split at {a}");
        }
    }
}
