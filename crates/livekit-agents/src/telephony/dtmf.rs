//! DTMF (telephone keypad tones): the keys, their RFC 4733 event codes, and
//! [`DtmfCollector`], the digit-collection state machine behind
//! [`GetDtmfTask`](super::GetDtmfTask).

use std::time::Duration;

use tokio::time::Instant;

/// One telephone keypad key (the reference's `DtmfEvent`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum DtmfEvent {
    /// `1`
    #[serde(rename = "1")]
    One,
    /// `2`
    #[serde(rename = "2")]
    Two,
    /// `3`
    #[serde(rename = "3")]
    Three,
    /// `4`
    #[serde(rename = "4")]
    Four,
    /// `5`
    #[serde(rename = "5")]
    Five,
    /// `6`
    #[serde(rename = "6")]
    Six,
    /// `7`
    #[serde(rename = "7")]
    Seven,
    /// `8`
    #[serde(rename = "8")]
    Eight,
    /// `9`
    #[serde(rename = "9")]
    Nine,
    /// `0`
    #[serde(rename = "0")]
    Zero,
    /// `*`
    #[serde(rename = "*")]
    Star,
    /// `#`
    #[serde(rename = "#")]
    Pound,
    /// `A` (rare: military and network keypads)
    A,
    /// `B`
    B,
    /// `C`
    C,
    /// `D`
    D,
}

/// A key that is not a DTMF key, or a code outside RFC 4733's keypad range (0-15).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidDtmf {
    /// Not one of `0-9 * # A-D`.
    #[error("invalid DTMF key {0:?} (expected 0-9, *, #, A-D)")]
    Key(char),
    /// Outside 0-15.
    #[error("invalid DTMF event code {0} (expected 0-15)")]
    Code(u32),
}

const ALL: [DtmfEvent; 16] = [
    DtmfEvent::Zero,
    DtmfEvent::One,
    DtmfEvent::Two,
    DtmfEvent::Three,
    DtmfEvent::Four,
    DtmfEvent::Five,
    DtmfEvent::Six,
    DtmfEvent::Seven,
    DtmfEvent::Eight,
    DtmfEvent::Nine,
    DtmfEvent::Star,
    DtmfEvent::Pound,
    DtmfEvent::A,
    DtmfEvent::B,
    DtmfEvent::C,
    DtmfEvent::D,
];

impl DtmfEvent {
    /// The RFC 4733 event code: digits are themselves, `*` = 10, `#` = 11, `A`-`D` = 12-15.
    pub fn code(self) -> u32 {
        match self {
            DtmfEvent::Zero => 0,
            DtmfEvent::One => 1,
            DtmfEvent::Two => 2,
            DtmfEvent::Three => 3,
            DtmfEvent::Four => 4,
            DtmfEvent::Five => 5,
            DtmfEvent::Six => 6,
            DtmfEvent::Seven => 7,
            DtmfEvent::Eight => 8,
            DtmfEvent::Nine => 9,
            DtmfEvent::Star => 10,
            DtmfEvent::Pound => 11,
            DtmfEvent::A => 12,
            DtmfEvent::B => 13,
            DtmfEvent::C => 14,
            DtmfEvent::D => 15,
        }
    }

    /// The key for an RFC 4733 event code.
    pub fn from_code(code: u32) -> Result<Self, InvalidDtmf> {
        usize::try_from(code)
            .ok()
            .and_then(|i| ALL.get(i).copied())
            .ok_or(InvalidDtmf::Code(code))
    }

    /// The key as a character (`'0'`-`'9'`, `'*'`, `'#'`, `'A'`-`'D'`).
    pub fn as_char(self) -> char {
        match self {
            DtmfEvent::Star => '*',
            DtmfEvent::Pound => '#',
            DtmfEvent::A => 'A',
            DtmfEvent::B => 'B',
            DtmfEvent::C => 'C',
            DtmfEvent::D => 'D',
            digit => char::from_digit(digit.code(), 10).unwrap_or('0'),
        }
    }

    /// The key for a character (letters in either case).
    pub fn from_char(c: char) -> Result<Self, InvalidDtmf> {
        match c.to_ascii_uppercase() {
            '*' => Ok(DtmfEvent::Star),
            '#' => Ok(DtmfEvent::Pound),
            'A' => Ok(DtmfEvent::A),
            'B' => Ok(DtmfEvent::B),
            'C' => Ok(DtmfEvent::C),
            'D' => Ok(DtmfEvent::D),
            d => d
                .to_digit(10)
                .map(|n| ALL[n as usize])
                .ok_or(InvalidDtmf::Key(c)),
        }
    }

    /// The key of a received tone: the digit text when it names a key, else the code.
    pub fn from_received(code: u32, digit: &str) -> Result<Self, InvalidDtmf> {
        let mut chars = digit.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Self::from_char(c).or_else(|_| Self::from_code(code)),
            _ => Self::from_code(code),
        }
    }
}

impl std::fmt::Display for DtmfEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// Keys separated by spaces, as the reference formats them for the model (`"1 2 3 #"`).
pub fn format_dtmf(events: &[DtmfEvent]) -> String {
    let mut out = String::with_capacity(events.len() * 2);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push(e.as_char());
    }
    out
}

/// Parses keys from text, ignoring spaces, dashes and commas (`"1 2 3 #"`, `"123#"`).
pub fn parse_dtmf(text: &str) -> Result<Vec<DtmfEvent>, InvalidDtmf> {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != ',')
        .map(DtmfEvent::from_char)
        .collect()
}

/// What the collector decided when its deadline passed or the stop key came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtmfOutcome {
    /// `num_digits` keys were entered.
    Complete(Vec<DtmfEvent>),
    /// Input stopped (timeout or stop key) with the wrong number of keys; the text is the
    /// reference's error message for the model.
    Incomplete {
        /// What was entered.
        entered: Vec<DtmfEvent>,
        /// The error message.
        message: String,
    },
}

/// Options of digit collection (the reference's `GetDtmfTask` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfCollectOptions {
    /// How many keys to collect.
    pub num_digits: usize,
    /// The key that ends input at once (default `#`).
    pub stop_event: DtmfEvent,
    /// Quiet time after the last key before the input is evaluated (default 4 s).
    pub input_timeout: Duration,
}

impl Default for DtmfCollectOptions {
    fn default() -> Self {
        Self {
            num_digits: 1,
            stop_event: DtmfEvent::Pound,
            input_timeout: Duration::from_secs(4),
        }
    }
}

/// Longest input kept: keys beyond it are dropped (input from the phone network is untrusted).
pub const MAX_COLLECTED_KEYS: usize = 64;

/// Digit collection as a pure state machine on tokio's clock (the logic of the reference's
/// `GetDtmfTask`): each key (re)starts a debounce of `input_timeout`; the stop key evaluates at
/// once; while the user or the agent speaks, the debounce is held and restarts after.
#[derive(Debug, Clone)]
pub struct DtmfCollector {
    options: DtmfCollectOptions,
    keys: Vec<DtmfEvent>,
    deadline: Option<Instant>,
    user_speaking: bool,
    agent_busy: bool,
}

impl DtmfCollector {
    /// A collector for `options`.
    pub fn new(options: DtmfCollectOptions) -> Self {
        Self {
            options,
            keys: Vec::new(),
            deadline: None,
            user_speaking: false,
            agent_busy: false,
        }
    }

    /// The keys entered since the last evaluation.
    pub fn keys(&self) -> &[DtmfEvent] {
        &self.keys
    }

    /// When the pending input is evaluated, if a debounce runs.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A key arrived. Returns an outcome when it is the stop key.
    pub fn on_key(&mut self, key: DtmfEvent, now: Instant) -> Option<DtmfOutcome> {
        if key == self.options.stop_event {
            return Some(self.evaluate());
        }
        if self.keys.len() < MAX_COLLECTED_KEYS {
            self.keys.push(key);
        }
        self.schedule(now);
        None
    }

    /// The user started (`true`) or stopped speaking.
    pub fn on_user_speaking(&mut self, speaking: bool, now: Instant) {
        self.user_speaking = speaking;
        self.reschedule(now);
    }

    /// The agent started thinking/speaking (`true`) or went back to listening.
    pub fn on_agent_busy(&mut self, busy: bool, now: Instant) {
        self.agent_busy = busy;
        self.reschedule(now);
    }

    /// Call when `now` reached [`deadline`](Self::deadline): returns the outcome then.
    pub fn on_tick(&mut self, now: Instant) -> Option<DtmfOutcome> {
        match self.deadline {
            Some(d) if now >= d => Some(self.evaluate()),
            _ => None,
        }
    }

    fn schedule(&mut self, now: Instant) {
        self.deadline = if self.user_speaking || self.agent_busy {
            None
        } else {
            Some(now + self.options.input_timeout)
        };
    }

    fn reschedule(&mut self, now: Instant) {
        if self.user_speaking || self.agent_busy {
            self.deadline = None;
        } else if !self.keys.is_empty() && self.deadline.is_none() {
            self.deadline = Some(now + self.options.input_timeout);
        }
    }

    fn evaluate(&mut self) -> DtmfOutcome {
        self.deadline = None;
        let keys = std::mem::take(&mut self.keys);
        if keys.len() == self.options.num_digits {
            DtmfOutcome::Complete(keys)
        } else {
            DtmfOutcome::Incomplete {
                message: format!(
                    "Digits input not fully received. Expect {} digits, got {}",
                    self.options.num_digits,
                    keys.len()
                ),
                entered: keys,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_rfc_4733() {
        assert_eq!(DtmfEvent::Star.code(), 10);
        assert_eq!(DtmfEvent::Pound.code(), 11);
        assert_eq!(DtmfEvent::A.code(), 12);
        assert_eq!(DtmfEvent::D.code(), 15);
        for code in 0..16 {
            assert_eq!(DtmfEvent::from_code(code).unwrap().code(), code);
        }
        assert_eq!(DtmfEvent::from_code(16), Err(InvalidDtmf::Code(16)));
        assert_eq!(
            DtmfEvent::from_code(u32::MAX),
            Err(InvalidDtmf::Code(u32::MAX))
        );
        assert_eq!(DtmfEvent::from_char('7').unwrap(), DtmfEvent::Seven);
        assert_eq!(DtmfEvent::from_char('b').unwrap(), DtmfEvent::B);
        assert_eq!(DtmfEvent::from_char('x'), Err(InvalidDtmf::Key('x')));
        assert_eq!(DtmfEvent::from_received(11, "").unwrap(), DtmfEvent::Pound);
        assert_eq!(DtmfEvent::from_received(99, "5").unwrap(), DtmfEvent::Five);
        assert!(DtmfEvent::from_received(99, "55").is_err());
    }

    #[test]
    fn formats_and_parses_like_the_reference() {
        let keys = parse_dtmf("12-3 *#").unwrap();
        assert_eq!(format_dtmf(&keys), "1 2 3 * #");
        assert!(parse_dtmf("12x").is_err());
        let json = serde_json::to_string(&keys).unwrap();
        assert_eq!(json, r##"["1","2","3","*","#"]"##);
        let back: Vec<DtmfEvent> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, keys);
    }

    fn opts(n: usize) -> DtmfCollectOptions {
        DtmfCollectOptions {
            num_digits: n,
            ..Default::default()
        }
    }

    #[test]
    fn keys_complete_after_the_quiet_time() {
        let t0 = Instant::now();
        let mut c = DtmfCollector::new(opts(3));
        for (i, k) in [DtmfEvent::One, DtmfEvent::Two, DtmfEvent::Three]
            .into_iter()
            .enumerate()
        {
            assert_eq!(c.on_key(k, t0 + Duration::from_secs(i as u64)), None);
        }
        let deadline = c.deadline().unwrap();
        assert_eq!(deadline, t0 + Duration::from_secs(2 + 4));
        assert_eq!(c.on_tick(deadline - Duration::from_millis(1)), None);
        assert_eq!(
            c.on_tick(deadline),
            Some(DtmfOutcome::Complete(vec![
                DtmfEvent::One,
                DtmfEvent::Two,
                DtmfEvent::Three
            ]))
        );
        assert!(c.keys().is_empty() && c.deadline().is_none());
    }

    #[test]
    fn stop_key_evaluates_at_once_and_short_input_is_an_error() {
        let t0 = Instant::now();
        let mut c = DtmfCollector::new(opts(4));
        c.on_key(DtmfEvent::Nine, t0);
        let out = c.on_key(DtmfEvent::Pound, t0).unwrap();
        assert_eq!(
            out,
            DtmfOutcome::Incomplete {
                entered: vec![DtmfEvent::Nine],
                message: "Digits input not fully received. Expect 4 digits, got 1".into(),
            }
        );
    }

    #[test]
    fn speech_holds_the_debounce_and_it_restarts_after() {
        let t0 = Instant::now();
        let mut c = DtmfCollector::new(opts(1));
        c.on_key(DtmfEvent::Five, t0);
        c.on_user_speaking(true, t0 + Duration::from_secs(1));
        assert_eq!(c.deadline(), None);
        assert_eq!(c.on_tick(t0 + Duration::from_secs(10)), None);
        c.on_user_speaking(false, t0 + Duration::from_secs(10));
        assert_eq!(c.deadline(), Some(t0 + Duration::from_secs(14)));
        c.on_agent_busy(true, t0 + Duration::from_secs(11));
        assert_eq!(c.deadline(), None);
        c.on_agent_busy(false, t0 + Duration::from_secs(12));
        assert_eq!(
            c.on_tick(t0 + Duration::from_secs(16)),
            Some(DtmfOutcome::Complete(vec![DtmfEvent::Five]))
        );
    }

    #[test]
    fn hostile_input_is_bounded() {
        let t0 = Instant::now();
        let mut c = DtmfCollector::new(opts(2));
        for _ in 0..10_000 {
            c.on_key(DtmfEvent::One, t0);
        }
        assert_eq!(c.keys().len(), MAX_COLLECTED_KEYS);
    }
}
