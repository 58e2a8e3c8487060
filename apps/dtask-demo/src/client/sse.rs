//! A Server-Sent Events parser (the WHATWG event-stream format), fed with
//! the bytes of a response as they arrive.
//!
//! Lines end with `\n`, `\r\n` or `\r`; `event:`, `data:` and `id:` fields
//! accumulate until a blank line dispatches the event; lines starting with
//! `:` are comments (keep-alives); `retry:` and unknown fields are ignored.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Its type (`message` when the stream named none).
    pub event: String,
    /// Its data lines joined with `\n`.
    pub data: String,
    /// The last event id seen on the stream so far, if any.
    pub id: Option<String>,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

impl SseParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last event id the stream set (for a reconnect's `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feeds a chunk of the stream and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.buffer[start..].iter().position(|b| *b == b'\n' || *b == b'\r') {
            let end = start + offset;
            let terminator = match (self.buffer[end], self.buffer.get(end + 1)) {
                (b'\r', Some(b'\n')) => 2,
                // A `\r` at the end of the buffer may be the first half of `\r\n`.
                (b'\r', None) => break,
                _ => 1,
            };
            let line = String::from_utf8_lossy(&self.buffer[start..end]).into_owned();
            start = end + terminator;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.buffer.drain(..start);
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event: if event.is_empty() { "message".to_owned() } else { event },
            data,
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{SseEvent, SseParser};

    fn event(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn events_fields_and_comments() {
        let mut parser = SseParser::new();
        let events = parser.push(b": keep-alive\n\nevent: progress\nid: 3\ndata: {\"a\":1}\n\ndata: x\ndata:y\n\n");
        assert_eq!(
            events,
            vec![
                event("progress", "{\"a\":1}", Some("3")),
                event("message", "x\ny", Some("3"))
            ]
        );
        assert_eq!(parser.last_event_id(), Some("3"));
    }

    #[test]
    fn chunks_split_anywhere_and_every_line_ending() {
        let stream = b"event: progress\r\nid: 7\rdata: one\r\n\r\nevent: progress\ndata: two\n\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::new();
            let mut events = parser.push(&stream[..split]);
            events.extend(parser.push(&stream[split..]));
            assert_eq!(
                events,
                vec![event("progress", "one", Some("7")), event("progress", "two", Some("7"))],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_blank_line_without_data_dispatches_nothing_and_resets_the_type() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"event: progress\n\n").is_empty());
        assert_eq!(parser.push(b"data: z\n\n"), vec![event("message", "z", None)]);
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"event: progress\ndata: {}\n").is_empty());
        assert_eq!(parser.push(b"\n"), vec![event("progress", "{}", None)]);
    }
}
