//! Single byte ranges (`Range: bytes=a-b`, `a-`, `-n`), RFC 9110 §14.

use std::ops::Range;

/// What a `Range` header asks of an object of known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// The whole object: no header, or one the server ignores (another
    /// unit, several ranges, bad syntax).
    Full,
    /// These bytes.
    Partial(Range<u64>),
    /// A range that starts past the end: `416`.
    Unsatisfiable,
}

/// Reads a `Range` header for an object of `size` bytes.
pub(crate) fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // -n: the last n bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(size.saturating_sub(suffix)..size)
            }
        }
        // a- : from a to the end.
        (false, Some(start), None) if last.trim().is_empty() => from(start, size, size),
        // a-b: inclusive.
        (false, Some(start), Some(end)) if start <= end => from(start, end.saturating_add(1).min(size), size),
        _ => RangeRequest::Full,
    }
}

fn from(start: u64, end: u64, size: u64) -> RangeRequest {
    if start >= size {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{Full, Partial, Unsatisfiable};
    use super::parse;

    #[test]
    fn single_ranges() {
        assert_eq!(parse(None, 100), Full);
        assert_eq!(parse(Some("bytes=0-9"), 100), Partial(0..10));
        assert_eq!(parse(Some("bytes=90-200"), 100), Partial(90..100));
        assert_eq!(parse(Some("bytes=10-"), 100), Partial(10..100));
        assert_eq!(parse(Some("bytes=-10"), 100), Partial(90..100));
        assert_eq!(parse(Some("bytes=-500"), 100), Partial(0..100));
        assert_eq!(parse(Some("bytes=99-99"), 100), Partial(99..100));
    }

    #[test]
    fn unsatisfiable_and_ignored_ranges() {
        assert_eq!(parse(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse(Some("bytes=100-200"), 100), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-1"), 100), Full);
        assert_eq!(parse(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse(Some("items=0-1"), 100), Full);
        assert_eq!(parse(Some("bytes=x-1"), 100), Full);
        assert_eq!(parse(Some("bytes=-"), 100), Full);
        assert_eq!(parse(Some("bytes=+1-2"), 100), Full);
    }
}
