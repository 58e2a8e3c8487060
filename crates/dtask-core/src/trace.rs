//! Distributed tracing: the W3C trace context a task carries from its
//! submission, through its queue, into the worker that runs it; and the
//! bridge that links the kernel's `tracing` spans to a tracing system.
//!
//! The kernel opens `tracing` spans named as the design names them
//! (`DistributedTask.<Task>.<Step>`, in the `otel.name` field). Without a
//! [`TraceBridge`] they are plain `tracing` spans (their fields show in log
//! lines, the trace id among them); with one (`dtask-telemetry`'s
//! OpenTelemetry bridge), the API's submit span and the worker's spans join
//! one distributed trace.

use std::fmt;
use std::str::FromStr;

/// A W3C trace context: the `traceparent` of a span (trace id, span id,
/// sampled flag), as a queue message and an HTTP request carry it.
///
/// ```
/// use dtask_core::trace::TraceParent;
///
/// let parent: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
/// assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(parent.sampled);
/// assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace's id (never all zeros).
    pub trace_id: [u8; 16],
    /// The id of the parent span (never all zeros).
    pub span_id: [u8; 8],
    /// Whether the caller recorded (sampled) its span.
    pub sampled: bool,
}

impl TraceParent {
    /// A new trace: random trace and span ids, sampled.
    #[must_use]
    pub fn random() -> Self {
        Self {
            trace_id: nonzero_random(),
            span_id: nonzero_random(),
            sampled: true,
        }
    }

    /// A context of the same trace with a new span id: a child of `self`
    /// where no tracing system gives one.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_random(),
            ..*self
        }
    }

    /// A context of the trace whose id is `trace_id` (32 lowercase hex
    /// digits, as [`TaskProgress::trace_id`](crate::TaskProgress::trace_id)
    /// holds it), with a new span id; `None` when it is not a trace id.
    #[must_use]
    pub fn of_trace(trace_id: &str) -> Option<Self> {
        let trace_id = hex::<16>(trace_id)?;
        (trace_id != [0; 16]).then(|| Self {
            trace_id,
            span_id: nonzero_random(),
            sampled: true,
        })
    }

    /// The trace id as 32 lowercase hex digits.
    #[must_use]
    pub fn trace_id_hex(&self) -> String {
        self.trace_id_display().to_string()
    }

    /// The trace id as 32 lowercase hex digits, formatted only where it is
    /// written (a span field a subscriber may never record).
    pub fn trace_id_display(&self) -> impl fmt::Display + '_ {
        Hex(&self.trace_id)
    }
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent: {0}")]
pub struct InvalidTraceParent(&'static str);

impl FromStr for TraceParent {
    type Err = InvalidTraceParent;

    /// Parses a `traceparent` by the W3C Trace Context rules: version `00`
    /// exactly 55 characters long; a later version at least that long (its
    /// extra fields ignored); version `ff`, uppercase hex and all-zero ids
    /// refused.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        let version = value.get(..2).ok_or(InvalidTraceParent("too short"))?;
        let version = hex::<1>(version).ok_or(InvalidTraceParent("the version is not hex"))?[0];
        match (version, value.len()) {
            (0xff, _) => return Err(InvalidTraceParent("version ff is invalid")),
            (0, 55) => {}
            (0, _) => return Err(InvalidTraceParent("version 00 has exactly four fields")),
            (_, 55) => {}
            (_, n) if n > 55 && value.as_bytes()[55] == b'-' => {}
            _ => return Err(InvalidTraceParent("malformed")),
        }
        let bytes = value.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(InvalidTraceParent("fields are separated by `-`"));
        }
        let trace_id =
            hex::<16>(&value[3..35]).ok_or(InvalidTraceParent("the trace id is not 32 lowercase hex digits"))?;
        let span_id =
            hex::<8>(&value[36..52]).ok_or(InvalidTraceParent("the parent id is not 16 lowercase hex digits"))?;
        let flags = hex::<1>(&value[53..55]).ok_or(InvalidTraceParent("the flags are not hex"))?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(InvalidTraceParent("an all-zero id"));
        }
        Ok(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = u8::from(self.sampled);
        write!(f, "00-{}-{}-{flags:02x}", Hex(&self.trace_id), Hex(&self.span_id))
    }
}

/// Links the kernel's `tracing` spans to a tracing system: what the
/// context of a span is, to send it along, and which remote context a
/// span continues. `dtask-telemetry` implements it for OpenTelemetry.
pub trait TraceBridge: Send + Sync + 'static {
    /// The context of `span` as others continue it; `None` when the
    /// tracing system does not trace it.
    fn context_of(&self, span: &tracing::Span) -> Option<TraceParent>;

    /// Makes `parent` (received from another process) the parent of
    /// `span`, which must not have been entered yet.
    fn set_parent(&self, span: &tracing::Span, parent: TraceParent);
}

fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// Bytes as lowercase hex digits.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn round_trips_the_specifications_example() {
        let parent: TraceParent = SAMPLE.parse().unwrap();
        assert_eq!(parent.to_string(), SAMPLE);
        let unsampled: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            .parse()
            .unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn accepts_a_later_version_with_more_fields() {
        let parent: TraceParent = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next"
            .parse()
            .unwrap();
        assert_eq!(parent.to_string(), SAMPLE);
    }

    #[test]
    fn a_child_keeps_the_trace() {
        let parent = TraceParent::random();
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        let again = TraceParent::of_trace(&parent.trace_id_hex()).unwrap();
        assert_eq!(again.trace_id, parent.trace_id);
        assert!(TraceParent::of_trace("not a trace").is_none());
    }
}
