//! Heuristic English syllabification (see [`hyphenate_word`]).

/// Splits a word into syllable-like pieces.
///
/// The reference uses Liang's TeX hyphenation patterns. Pacing only needs a good syllable
/// *count* and plausible pieces, so this function uses compact phonics rules instead of a
/// pattern dictionary:
///
/// 1. Each maximal run of vowels (`a e i o u`, accented vowels, and `y` after a consonant) is
///    one syllable nucleus; `u` after `q` is part of the consonant `qu`.
/// 2. A final silent `e` (`come`, `make`) is not a nucleus, except in a consonant + `le`
///    ending (`ta-ble`). `-ed` is a syllable only after `t`/`d` (`want-ed`, but `jumped`),
///    `-es` only after a sibilant (`box-es`, but `makes`).
/// 3. Between two nuclei the consonants split like this: one consonant starts the next
///    syllable (`ba-by`), except `x` which closes the previous one (`tax-i`); two consonants
///    split in the middle (`win-dow`) unless they form a digraph (`ch sh th ph wh ck gh ng qu`);
///    three or more keep a valid onset cluster (`bl`, `str`, ...) together with the next vowel.
/// 4. The suffixes `-ed` (when syllabic) and `-ing` always start their own syllable
///    (`ex-pect-ed`, `sing-ing`).
///
/// Words without letters, or with a single nucleus, come back as one piece.
///
/// Joining the pieces gives back the word exactly.
///
/// ```
/// use livekit_agents::tokenize::hyphenate_word;
///
/// assert_eq!(hyphenate_word("communication"), ["com", "mu", "ni", "ca", "tion"]);
/// assert_eq!(hyphenate_word("Expected"), ["Ex", "pect", "ed"]);
/// assert_eq!(hyphenate_word("cat"), ["cat"]);
/// ```
pub fn hyphenate_word(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let lower: Vec<char> = chars
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let cuts = split_points(&lower);
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut prev = 0;
    for cut in cuts.into_iter().chain(std::iter::once(chars.len())) {
        if cut > prev {
            out.push(chars[prev..cut].iter().collect());
            prev = cut;
        }
    }
    if out.is_empty() {
        out.push(word.to_owned());
    }
    out
}

/// Number of syllables of `word` (at least 1 for any non-empty word).
///
/// ```
/// use livekit_agents::tokenize::syllable_count;
///
/// assert_eq!(syllable_count("welcome"), 2);
/// assert_eq!(syllable_count("jumped"), 1);
/// assert_eq!(syllable_count(""), 0);
/// ```
pub fn syllable_count(word: &str) -> usize {
    if word.is_empty() {
        0
    } else {
        hyphenate_word(word).len()
    }
}

fn is_plain_vowel(c: char) -> bool {
    matches!(
        c,
        'a' | 'e'
            | 'i'
            | 'o'
            | 'u'
            | 'á'
            | 'à'
            | 'â'
            | 'ä'
            | 'ã'
            | 'å'
            | 'æ'
            | 'é'
            | 'è'
            | 'ê'
            | 'ë'
            | 'í'
            | 'ì'
            | 'î'
            | 'ï'
            | 'ó'
            | 'ò'
            | 'ô'
            | 'ö'
            | 'õ'
            | 'ø'
            | 'œ'
            | 'ú'
            | 'ù'
            | 'û'
            | 'ü'
    )
}

/// Vowel flags per position (`y` after a consonant is a vowel; `u` after `q` is not).
fn vowel_flags(w: &[char]) -> Vec<bool> {
    let mut flags = vec![false; w.len()];
    for i in 0..w.len() {
        flags[i] = match w[i] {
            'y' => i > 0 && !flags[i - 1] && w[i - 1].is_alphabetic(),
            'u' if i > 0 && w[i - 1] == 'q' => false,
            c => is_plain_vowel(c),
        };
    }
    flags
}

const DIGRAPHS: &[&str] = &["ch", "sh", "th", "ph", "wh", "ck", "gh", "ng", "qu"];
const ONSETS: &[&str] = &[
    "bl", "br", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sc", "sk", "sl", "sm", "sn",
    "sp", "st", "sw", "tr", "tw", "wr", "ch", "sh", "th", "ph", "wh", "qu", "str", "spr", "scr",
    "spl", "thr", "shr", "chr", "sch",
];

/// Indices (into `w`) where a new syllable starts.
fn split_points(w: &[char]) -> Vec<usize> {
    if !w
        .iter()
        .all(|c| c.is_alphabetic() || *c == '\'' || *c == '’')
    {
        return Vec::new();
    }
    let vowel = vowel_flags(w);
    // Nuclei: (start, end) of vowel runs.
    let mut nuclei: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < w.len() {
        if vowel[i] {
            let s = i;
            while i < w.len() && vowel[i] {
                i += 1;
            }
            nuclei.push((s, i));
        } else {
            i += 1;
        }
    }
    let n = w.len();
    let ends_with = |s: &str| {
        let s: Vec<char> = s.chars().collect();
        n >= s.len() && w[n - s.len()..] == s[..]
    };
    let consonant_at = |k: usize| k < n && w[k].is_alphabetic() && !vowel[k];
    // Forced syllable starts for suffixes (index where the suffix begins).
    let mut forced_last_cut: Option<usize> = None;
    if nuclei.len() >= 2 {
        let &(last_s, last_e) = nuclei.last().unwrap_or(&(0, 0));
        let final_e = last_e == n && last_s == n - 1 && w[n - 1] == 'e';
        let before = |k: usize| if k > 0 { w[k - 1] } else { ' ' };
        if final_e && n >= 2 && consonant_at(n - 2) {
            let le_ending = w[n - 2] == 'l' && n >= 3 && consonant_at(n - 3);
            if le_ending {
                // "ta-ble": the consonant before "le" starts the last syllable.
                forced_last_cut = Some(n - 3);
            } else {
                nuclei.pop();
            }
        } else if ends_with("ed") && last_s == n - 2 && last_e == n - 1 {
            if matches!(before(n - 2), 't' | 'd') {
                forced_last_cut = Some(n - 2);
            } else {
                nuclei.pop();
            }
        } else if ends_with("es") && last_s == n - 2 && last_e == n - 1 {
            let b = before(n - 2);
            let sibilant = matches!(b, 's' | 'x' | 'z' | 'c' | 'g')
                || (b == 'h' && n >= 4 && matches!(w[n - 4], 'c' | 's'));
            if !sibilant {
                nuclei.pop();
            }
        } else if ends_with("ing") && last_s == n - 3 && n >= 4 && consonant_at(n - 4) {
            forced_last_cut = Some(n - 3);
        }
    }
    let mut cuts = Vec::new();
    let pairs = nuclei.len().saturating_sub(1);
    for (k, pair) in nuclei.windows(2).enumerate() {
        let (gap_s, gap_e) = (pair[0].1, pair[1].0);
        if let (true, Some(cut)) = (k + 1 == pairs, forced_last_cut) {
            if cut >= gap_s && cut <= gap_e && cut > 0 {
                cuts.push(cut);
                continue;
            }
        }
        let cluster: String = w[gap_s..gap_e].iter().collect();
        let len = gap_e - gap_s;
        let cut = match len {
            0 => continue,
            1 if w[gap_s] == 'x' => gap_e,
            1 => gap_s,
            2 if cluster == "ck" || cluster == "ng" || cluster == "gh" => gap_e,
            2 if DIGRAPHS.contains(&cluster.as_str()) => gap_s,
            2 => gap_s + 1,
            _ => {
                let three: String = w[gap_e - 3..gap_e].iter().collect();
                let two: String = w[gap_e - 2..gap_e].iter().collect();
                if ONSETS.contains(&three.as_str()) {
                    gap_e - 3
                } else if ONSETS.contains(&two.as_str()) {
                    gap_e - 2
                } else {
                    gap_e - 1
                }
            }
        };
        if cut > 0 && cut < n {
            cuts.push(cut);
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_hyphenation_examples() {
        let cases: &[(&str, &[&str])] = &[
            ("Segment", &["Seg", "ment"]),
            ("expected", &["ex", "pect", "ed"]),
            ("communication", &["com", "mu", "ni", "ca", "tion"]),
            ("window", &["win", "dow"]),
            ("welcome", &["wel", "come"]),
            ("bedroom", &["bed", "room"]),
        ];
        for (word, expected) in cases {
            assert_eq!(hyphenate_word(word), *expected, "{word}");
        }
    }

    #[test]
    fn more_words() {
        let cases: &[(&str, &[&str])] = &[
            ("table", &["ta", "ble"]),
            ("jumped", &["jumped"]),
            ("wanted", &["want", "ed"]),
            ("boxes", &["box", "es"]),
            ("makes", &["makes"]),
            ("singing", &["sing", "ing"]),
            ("mother", &["mo", "ther"]),
            ("happy", &["hap", "py"]),
            ("taxi", &["tax", "i"]),
            ("queen", &["queen"]),
            ("instrument", &["in", "stru", "ment"]),
            ("a", &["a"]),
        ];
        for (word, expected) in cases {
            assert_eq!(hyphenate_word(word), *expected, "{word}");
        }
    }

    #[test]
    fn pieces_rejoin_to_the_word() {
        for word in [
            "Extraordinary",
            "rhythm",
            "naïve",
            "don't",
            "2024",
            "x",
            "",
            "日本語",
            "Straße",
            "ÉCOLE",
        ] {
            let pieces = hyphenate_word(word);
            assert_eq!(pieces.concat(), word);
            assert!(!pieces.is_empty());
        }
        assert_eq!(hyphenate_word("2024"), ["2024"]);
    }

    #[test]
    fn syllable_counts() {
        assert_eq!(syllable_count("communication"), 5);
        assert_eq!(syllable_count("the"), 1);
        assert_eq!(syllable_count("beautiful"), 3);
        assert_eq!(syllable_count(""), 0);
    }
}
