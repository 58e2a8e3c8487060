//! A Server-Sent Events reader, message by message (the WHATWG parsing
//! rules: `field: value` lines, a blank line dispatches, `:` comments).

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// What the stream carried next.
#[derive(Debug)]
pub enum SseItem {
    Event(SseEvent),
    Comment(String),
}

pub struct SseReader {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: Vec<u8>,
    partial: Option<SseEvent>,
    pub comments: usize,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            partial: None,
            comments: 0,
        }
    }

    /// The next event (counting the comments on the way), or `None` when
    /// the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            match self.item().await? {
                SseItem::Event(event) => return Some(event),
                SseItem::Comment(_) => self.comments += 1,
            }
        }
    }

    /// The next event or comment.
    pub async fn item(&mut self) -> Option<SseItem> {
        loop {
            while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8(line).expect("SSE lines are UTF-8");
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if let Some(event) = self.partial.take() {
                        return Some(SseItem::Event(event));
                    }
                    continue;
                }
                if let Some(comment) = line.strip_prefix(':') {
                    return Some(SseItem::Comment(comment.to_owned()));
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                let event = self.partial.get_or_insert_with(SseEvent::default);
                match field {
                    "event" => event.event = Some(value.to_owned()),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                    }
                    _ => {}
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("the SSE stream failed: {e}"),
                None => return None,
            }
        }
    }
}
