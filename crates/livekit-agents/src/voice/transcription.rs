//! Transcript synchronization: which part of the agent's text has been heard at a playback
//! position, and when each word should be shown.
//!
//! With TTS word timings (`use_tts_aligned_transcript` and a TTS that aligns), word `i` is
//! released at its start time. Otherwise words are paced by syllables at the standard speaking
//! rate (3.83 syllables/s, as the reference), re-estimated from the real audio duration once all
//! text and audio of the segment are known.

use crate::types::TimedString;

/// Syllables per second of the reference's pacing.
pub const STANDARD_SPEECH_RATE: f64 = 3.83;

/// Text and audio of one segment, as they arrive.
#[derive(Debug, Default, Clone)]
pub(crate) struct SegmentSync {
    text: String,
    text_done: bool,
    audio_secs: f64,
    audio_done: bool,
    timed: Vec<TimedString>,
    use_timed: bool,
    released_words: usize,
}

impl SegmentSync {
    pub(crate) fn new(use_timed: bool) -> Self {
        Self {
            use_timed,
            ..Default::default()
        }
    }

    pub(crate) fn push_text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub(crate) fn end_text(&mut self) {
        self.text_done = true;
    }

    pub(crate) fn push_audio(&mut self, secs: f64, timed: &[TimedString]) {
        self.audio_secs += secs;
        self.timed.extend_from_slice(timed);
    }

    pub(crate) fn end_audio(&mut self) {
        self.audio_done = true;
    }

    pub(crate) fn full_text(&self) -> &str {
        &self.text
    }

    /// Release time of each word, seconds from playback start.
    fn release_times(&self) -> Vec<(usize, f64)> {
        let words = split_words(&self.text);
        let syllables: Vec<usize> = words
            .iter()
            .map(|(s, e)| count_syllables(&self.text[*s..*e]))
            .collect();
        let total: usize = syllables.iter().sum();
        let rate = if self.text_done && self.audio_done && self.audio_secs > 0.0 && total > 0 {
            total as f64 / self.audio_secs
        } else {
            STANDARD_SPEECH_RATE
        };
        let mut acc = 0usize;
        words
            .iter()
            .enumerate()
            .map(|(i, (_, end))| {
                let t = if self.use_timed && i < self.timed.len() {
                    self.timed[i].start_time
                } else {
                    acc as f64 / rate
                };
                acc += syllables[i];
                (*end, t)
            })
            .collect()
    }

    /// The text heard once playback reached `position` seconds (whole words, trimmed).
    pub(crate) fn heard_text(&self, position: f64) -> String {
        let mut end = 0;
        for (word_end, t) in self.release_times() {
            if t < position {
                end = word_end;
            } else {
                break;
            }
        }
        self.text[..end].trim().to_string()
    }

    /// Text due for display at `elapsed` seconds of playback that was not released yet, and
    /// the time the next word is due (if known).
    pub(crate) fn take_due(&mut self, elapsed: f64) -> (String, Option<f64>) {
        let times = self.release_times();
        let start = if self.released_words == 0 {
            0
        } else {
            times
                .get(self.released_words - 1)
                .map(|(e, _)| *e)
                .unwrap_or(0)
        };
        let mut end = start;
        let mut next = None;
        for (i, (word_end, t)) in times.iter().enumerate().skip(self.released_words) {
            // A small tolerance: timers round to milliseconds.
            if *t <= elapsed + 0.002 {
                end = *word_end;
                self.released_words = i + 1;
            } else {
                next = Some(*t);
                break;
            }
        }
        (self.text[start..end].to_string(), next)
    }

    /// Everything not released yet.
    pub(crate) fn take_rest(&mut self) -> String {
        let times = self.release_times();
        let start = if self.released_words == 0 {
            0
        } else {
            times
                .get(self.released_words - 1)
                .map(|(e, _)| *e)
                .unwrap_or(0)
        };
        self.released_words = times.len();
        self.text[start..].to_string()
    }
}

/// Byte ranges of words; each range includes the whitespace before the word, so joining
/// ranges rebuilds the text.
fn split_words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                out.push((start, i));
                start = i;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if in_word {
        out.push((start, text.len()));
    }
    out
}

/// Syllables of a word (at least one), for pacing.
fn count_syllables(word: &str) -> usize {
    crate::tokenize::syllable_count(word).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heard_text_follows_the_measured_rate() {
        let mut s = SegmentSync::new(false);
        s.push_text("one two three four");
        s.end_text();
        s.push_audio(4.0, &[]);
        s.end_audio();
        // 4 syllables over 4 s: one word per second.
        assert_eq!(s.heard_text(0.0), "");
        assert_eq!(s.heard_text(0.5), "one");
        assert_eq!(s.heard_text(2.5), "one two three");
        assert_eq!(s.heard_text(10.0), "one two three four");
    }

    #[test]
    fn timed_words_win_when_enabled() {
        let mut s = SegmentSync::new(true);
        s.push_text("hello world");
        s.push_audio(
            2.0,
            &[
                TimedString::new("hello", 0.0, 0.4),
                TimedString::new("world", 1.5, 2.0),
            ],
        );
        assert_eq!(s.heard_text(1.0), "hello");
        let (due, next) = s.take_due(0.1);
        assert_eq!(due, "hello");
        assert_eq!(next, Some(1.5));
        assert_eq!(s.take_rest(), " world");
    }
}
