//! The SignalR JSON hub protocol (version 1): the handshake, the messages
//! this hub reads and writes, and the record framing that carries them.
//!
//! Every message is a JSON object followed by the record separator `0x1E`;
//! one WebSocket text frame may carry several records, or part of one.
//! See ASP.NET Core's `HubProtocol.md` and `TransportProtocols.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The byte that ends every record.
pub(crate) const RECORD_SEPARATOR: char = '\u{1e}';

/// The hub protocol this hub speaks, and its version.
pub(crate) const PROTOCOL: &str = "json";
/// The version of [`PROTOCOL`] this hub speaks.
pub(crate) const VERSION: u32 = 1;

/// The message types of the hub protocol.
mod kind {
    pub(super) const INVOCATION: u8 = 1;
    pub(super) const STREAM_ITEM: u8 = 2;
    pub(super) const COMPLETION: u8 = 3;
    pub(super) const STREAM_INVOCATION: u8 = 4;
    pub(super) const CANCEL_INVOCATION: u8 = 5;
    pub(super) const PING: u8 = 6;
    pub(super) const CLOSE: u8 = 7;
    pub(super) const ACK: u8 = 8;
    pub(super) const SEQUENCE: u8 = 9;
}

/// The client's first record: which protocol it speaks.
#[derive(Debug, Deserialize)]
struct HandshakeRequest {
    protocol: String,
    version: u32,
}

/// Checks the client's handshake record.
///
/// # Errors
/// The error the handshake response carries: a record that is not a
/// handshake, or a protocol or version this hub does not speak.
pub(crate) fn handshake(record: &str) -> Result<(), String> {
    let request: HandshakeRequest =
        serde_json::from_str(record).map_err(|e| format!("the handshake is not a handshake request: {e}"))?;
    if request.protocol != PROTOCOL {
        return Err(format!(
            "the protocol '{}' is not supported: this hub speaks '{PROTOCOL}'",
            request.protocol
        ));
    }
    if request.version != VERSION {
        return Err(format!(
            "version {} of the protocol '{PROTOCOL}' is not supported: this hub speaks version {VERSION}",
            request.version
        ));
    }
    Ok(())
}

/// The handshake response: `{}`, or `{"error": ...}`.
pub(crate) fn handshake_response(error: Option<&str>) -> String {
    let body = match error {
        None => "{}".to_owned(),
        Some(error) => serde_json::json!({ "error": error }).to_string(),
    };
    format!("{body}{RECORD_SEPARATOR}")
}

/// A message from the client, as far as this hub acts on it.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// A call of a hub method; `invocation_id` is `None` for a call that
    /// expects no completion.
    Invocation {
        invocation_id: Option<String>,
        target: String,
        arguments: Vec<Value>,
    },
    /// A call of a streaming hub method, which this hub has none of.
    StreamInvocation { invocation_id: String },
    /// A ping, a cancellation of a stream, or a stream item: nothing to do
    /// but note that the client is alive.
    KeepAlive,
    /// The client is closing the connection.
    Close,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIncoming {
    #[serde(rename = "type")]
    kind: u8,
    invocation_id: Option<String>,
    target: Option<String>,
    #[serde(default)]
    arguments: Vec<Value>,
}

/// Reads one record from the client.
///
/// # Errors
/// What is wrong with it: not JSON, not a message, an unknown type, or an
/// invocation without a target.
pub(crate) fn parse(record: &str) -> Result<Incoming, String> {
    let raw: RawIncoming = serde_json::from_str(record).map_err(|e| format!("the message is not valid: {e}"))?;
    match raw.kind {
        kind::INVOCATION => Ok(Incoming::Invocation {
            invocation_id: raw.invocation_id,
            target: raw.target.ok_or("an invocation without a target")?,
            arguments: raw.arguments,
        }),
        kind::STREAM_INVOCATION => Ok(Incoming::StreamInvocation {
            invocation_id: raw
                .invocation_id
                .ok_or("a stream invocation without an invocation id")?,
        }),
        kind::PING | kind::CANCEL_INVOCATION | kind::STREAM_ITEM | kind::COMPLETION | kind::ACK | kind::SEQUENCE => {
            Ok(Incoming::KeepAlive)
        }
        kind::CLOSE => Ok(Incoming::Close),
        other => Err(format!("message type {other} is not a message of the hub protocol")),
    }
}

/// A message to the client.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Outgoing<'a, T> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    invocation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<[&'a T; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_reconnect: Option<bool>,
}

impl<T: Serialize> Outgoing<'_, T> {
    fn of(kind: u8) -> Self {
        Self {
            kind,
            invocation_id: None,
            target: None,
            arguments: None,
            error: None,
            allow_reconnect: None,
        }
    }

    fn record(&self) -> String {
        // Serializing these fields cannot fail but for `T`, whose callers
        // give types that always serialize (snapshots); keep the framing
        // valid either way.
        let json = serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::json!({ "type": kind::CLOSE, "error": format!("a message could not be written: {e}") })
                .to_string()
        });
        format!("{json}{RECORD_SEPARATOR}")
    }
}

/// A call of client method `target` with one argument, expecting no
/// completion.
pub(crate) fn invocation(target: &str, argument: &impl Serialize) -> String {
    Outgoing {
        target: Some(target),
        arguments: Some([argument]),
        ..Outgoing::of(kind::INVOCATION)
    }
    .record()
}

/// The completion of invocation `invocation_id`: without a result, or
/// with `error`.
pub(crate) fn completion(invocation_id: &str, error: Option<&str>) -> String {
    Outgoing::<()> {
        invocation_id: Some(invocation_id),
        error,
        ..Outgoing::of(kind::COMPLETION)
    }
    .record()
}

/// A ping.
pub(crate) fn ping() -> String {
    Outgoing::<()>::of(kind::PING).record()
}

/// The server closing the connection, with the error that closes it and
/// whether the client may reconnect.
pub(crate) fn close(error: Option<&str>, allow_reconnect: bool) -> String {
    Outgoing::<()> {
        error,
        allow_reconnect: error.map(|_| allow_reconnect),
        ..Outgoing::of(kind::CLOSE)
    }
    .record()
}

/// Splits the text a client sends into records, however its frames cut
/// them, holding at most `max_record` bytes of an unfinished one.
#[derive(Debug)]
pub(crate) struct Records {
    pending: String,
    max_record: usize,
}

impl Records {
    /// A reader of records of at most `max_record` bytes.
    pub(crate) fn new(max_record: usize) -> Self {
        Self {
            pending: String::new(),
            max_record,
        }
    }

    /// Adds a frame's text; returns the records it completes.
    ///
    /// # Errors
    /// When an unfinished record grows past the bound.
    pub(crate) fn push(&mut self, text: &str) -> Result<Vec<String>, String> {
        self.pending.push_str(text);
        let mut records = Vec::new();
        while let Some(end) = self.pending.find(RECORD_SEPARATOR) {
            let rest = self.pending.split_off(end + RECORD_SEPARATOR.len_utf8());
            let mut record = std::mem::replace(&mut self.pending, rest);
            record.pop();
            records.push(record);
        }
        if self.pending.len() > self.max_record || records.iter().any(|r| r.len() > self.max_record) {
            return Err(format!("a message is larger than {} bytes", self.max_record));
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn json_of(record: &str) -> Value {
        let body = record.strip_suffix(RECORD_SEPARATOR).expect("a record ends with 0x1E");
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn the_handshake_accepts_json_version_1_only() {
        assert_eq!(handshake(r#"{"protocol":"json","version":1}"#), Ok(()));
        assert!(
            handshake(r#"{"protocol":"messagepack","version":1}"#)
                .unwrap_err()
                .contains("messagepack")
        );
        assert!(
            handshake(r#"{"protocol":"json","version":2}"#)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(handshake("{}").is_err());
        assert_eq!(handshake_response(None), "{}\u{1e}");
        assert_eq!(json_of(&handshake_response(Some("no"))), json!({ "error": "no" }));
    }

    #[test]
    fn messages_are_read_by_type() {
        let call = parse(r#"{"type":1,"invocationId":"7","target":"Subscribe","arguments":["x"]}"#).unwrap();
        assert_eq!(
            call,
            Incoming::Invocation {
                invocation_id: Some("7".into()),
                target: "Subscribe".into(),
                arguments: vec![json!("x")],
            }
        );
        let blind = parse(r#"{"type":1,"target":"Unsubscribe","arguments":[]}"#).unwrap();
        assert!(matches!(
            blind,
            Incoming::Invocation {
                invocation_id: None,
                ..
            }
        ));
        assert_eq!(parse(r#"{"type":6}"#), Ok(Incoming::KeepAlive));
        assert_eq!(parse(r#"{"type":7,"error":"bye"}"#), Ok(Incoming::Close));
        assert_eq!(
            parse(r#"{"type":4,"invocationId":"1","target":"S","arguments":[]}"#),
            Ok(Incoming::StreamInvocation {
                invocation_id: "1".into()
            })
        );
        assert!(parse(r#"{"type":1,"arguments":[]}"#).is_err());
        assert!(parse(r#"{"type":42}"#).is_err());
        assert!(parse("[1]").is_err());
    }

    #[test]
    fn messages_are_written_as_the_protocol_spells_them() {
        assert_eq!(
            json_of(&invocation("TaskProgress", &json!({ "revision": 3 }))),
            json!({ "type": 1, "target": "TaskProgress", "arguments": [{ "revision": 3 }] })
        );
        assert_eq!(
            json_of(&completion("4", None)),
            json!({ "type": 3, "invocationId": "4" })
        );
        assert_eq!(
            json_of(&completion("4", Some("no task"))),
            json!({ "type": 3, "invocationId": "4", "error": "no task" })
        );
        assert_eq!(json_of(&ping()), json!({ "type": 6 }));
        assert_eq!(json_of(&close(None, false)), json!({ "type": 7 }));
        assert_eq!(
            json_of(&close(Some("bad"), false)),
            json!({ "type": 7, "error": "bad", "allowReconnect": false })
        );
        assert_eq!(
            json_of(&close(Some("lost"), true)),
            json!({ "type": 7, "error": "lost", "allowReconnect": true })
        );
    }

    #[test]
    fn records_are_split_however_frames_cut_them() {
        let mut records = Records::new(64);
        assert_eq!(records.push("{\"type\":6}\u{1e}{\"ty").unwrap(), ["{\"type\":6}"]);
        assert_eq!(records.push("pe\":7}\u{1e}").unwrap(), ["{\"type\":7}"]);
        assert_eq!(records.push("a\u{1e}b\u{1e}").unwrap(), ["a", "b"]);
        assert!(
            records.push(&"x".repeat(65)).is_err(),
            "an unfinished record past the bound"
        );
        let mut records = Records::new(4);
        assert!(records.push("12345\u{1e}").is_err(), "a whole record past the bound");
    }
}
