//! An incremental decoder for `text/event-stream` (server-sent events) bodies.
//!
//! Bytes arrive in arbitrary pieces; [`SseDecoder::push`] returns the events completed so far.
//! Lines end with `\n`, `\r\n` or `\r`; `data:` lines of one event are joined with `\n`; an
//! event ends at a blank line; `:` lines are comments (keep-alives).

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SseEvent {
    /// The `event:` field, if any.
    pub(crate) event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// The decoder state between pushes.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    line: Vec<u8>,
    last_was_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

/// An event stream line longer than this is treated as a malformed stream (protects memory).
const MAX_LINE: usize = 8 * 1024 * 1024;
/// An event whose `data:` lines add up to more than this is treated as a malformed stream: a
/// server sending `data:` lines without the blank line that ends an event must not grow memory
/// without limit.
const MAX_EVENT: usize = 8 * 1024 * 1024;

/// The body is not a valid event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    /// A line is not UTF-8.
    #[error("event stream line is not UTF-8")]
    NotUtf8,
    /// A line exceeds [`MAX_LINE`].
    #[error("event stream line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// An event's data exceeds [`MAX_EVENT`].
    #[error("event stream event larger than {MAX_EVENT} bytes")]
    EventTooLarge,
}

impl SseDecoder {
    /// Feeds bytes; returns the events they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.last_was_cr => {
                    // The `\n` of a `\r\n` pair: the line already ended at `\r`.
                    self.last_was_cr = false;
                }
                b'\n' | b'\r' => {
                    self.last_was_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.end_line(&line)? {
                        out.push(ev);
                    }
                }
                _ => {
                    self.last_was_cr = false;
                    if self.line.len() >= MAX_LINE {
                        return Err(SseError::LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    /// Whether a partial event (or line) is pending: a body ending here was cut short.
    #[cfg(test)]
    pub(crate) fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.data.is_some()
    }

    /// Ends the stream: a final event not followed by a blank line is still delivered (some
    /// servers omit the last blank line).
    pub(crate) fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            if let Some(ev) = self.end_line(&line)? {
                return Ok(Some(ev));
            }
        }
        self.end_line(b"")
    }

    fn end_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            let event = self.event.take();
            return Ok(self.data.take().map(|data| SseEvent { event, data }));
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    if data.len() + 1 + value.len() > MAX_EVENT {
                        return Err(SseError::EventTooLarge);
                    }
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            // `id` and `retry` only matter for browser reconnection.
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for chunk in body.chunks(piece) {
            out.extend(d.push(chunk).unwrap());
        }
        out.extend(d.finish().unwrap());
        out
    }

    #[test]
    fn events_survive_any_split() {
        let body = b": keep-alive\n\ndata: {\"a\":1}\n\r\nevent: x\r\ndata: line1\r\ndata:line2\r\rdata: [DONE]\n\n";
        for piece in 1..body.len() {
            let events = decode_in_pieces(body, piece);
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: None,
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: Some("x".into()),
                        data: "line1\nline2".into()
                    },
                    SseEvent {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn partial_events_are_detected() {
        let mut d = SseDecoder::default();
        assert!(d.push(b"data: {\"a\"").unwrap().is_empty());
        assert!(d.has_partial());
        let mut d = SseDecoder::default();
        d.push(b"data: x\n\n").unwrap();
        assert!(!d.has_partial());
        assert_eq!(
            SseDecoder::default().push(b"data: \xff\n").unwrap_err(),
            SseError::NotUtf8
        );
    }

    /// Issue 15 item 7: `data:` lines without the blank line that ends an event do not grow
    /// memory without limit.
    #[test]
    fn an_endless_event_is_refused() {
        let mut d = SseDecoder::default();
        let line = format!("data: {}\n", "x".repeat(64 * 1024));
        let mut result = Ok(Vec::new());
        for _ in 0..(2 * MAX_EVENT / line.len()) {
            result = d.push(line.as_bytes());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::EventTooLarge));
        assert!(d.data.as_ref().is_some_and(|data| data.len() <= MAX_EVENT));
    }
}
