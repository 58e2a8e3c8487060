//! Section 1: the serializers. The demo's CreateZipFromFiles saga state,
//! at hand-off (the worker message) and after completion, encoded and
//! decoded by every serializer as the framework calls them
//! (`serialize_state` / `deserialize_state`): the encoded size, and the
//! median time of one encode and one decode, each beside JSON's.
//!
//! Timing: each (value, encoding, operation) first runs for a warm-up,
//! which also sizes its batch (about `batch` long); then every case runs
//! one batch per round, round after round, so that the machine's load
//! (it is shared) falls on all of them alike. The figure is the median over
//! the rounds of a batch's time divided by its operations.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use dtask_bench::wire::{Encoding, WireValue, ZipState};

use crate::stats::median;
use crate::table::{Row, Table};

const SECTION: &str = "1 Serializers";

/// How long to measure.
#[derive(Debug, Clone)]
pub(crate) struct SerializerSettings {
    /// Batches timed per case (the median is taken over them).
    pub(crate) samples: usize,
    /// About how long one batch runs.
    pub(crate) batch: Duration,
    /// How long each case runs before it is timed.
    pub(crate) warm_up: Duration,
}

/// Encoding or decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Encode,
    Decode,
}

/// One value in one encoding, with its encoded bytes.
#[derive(Debug)]
struct Pair {
    value: WireValue,
    encoding: Encoding,
    state: ZipState,
    bytes: Bytes,
}

impl Pair {
    /// Runs `operation` `n` times and returns how long that took.
    fn time(&self, operation: Operation, n: u64) -> Duration {
        let started = Instant::now();
        match operation {
            Operation::Encode => {
                for _ in 0..n {
                    drop(black_box(self.encoding.encode(black_box(&self.state))));
                }
            }
            Operation::Decode => {
                for _ in 0..n {
                    drop(black_box(self.encoding.decode(black_box(&self.bytes))));
                }
            }
        }
        started.elapsed()
    }
}

/// The timing of one operation on one pair.
#[derive(Debug)]
struct Timer {
    pair: usize,
    operation: Operation,
    batch: u64,
    ns_per_op: Vec<f64>,
}

/// What was measured of one pair.
#[derive(Debug, Clone, Copy)]
struct Figures {
    size: usize,
    encode_ns: f64,
    decode_ns: f64,
}

/// Measures every value in every encoding and adds a row per pair.
///
/// # Errors
/// A value that an encoding cannot encode, or whose bytes do not decode.
pub(crate) fn run(settings: &SerializerSettings, table: &mut Table) -> anyhow::Result<()> {
    eprintln!(
        "1 Serializers: CreateZipFromFiles saga states, {} batches per case",
        settings.samples
    );
    let pairs = pairs()?;
    let mut timers: Vec<Timer> = Vec::new();
    for (index, pair) in pairs.iter().enumerate() {
        for operation in [Operation::Encode, Operation::Decode] {
            let batch = warm_up(pair, operation, settings.warm_up, settings.batch);
            timers.push(Timer {
                pair: index,
                operation,
                batch,
                ns_per_op: Vec::with_capacity(settings.samples),
            });
        }
    }
    for _ in 0..settings.samples.max(1) {
        for timer in &mut timers {
            let elapsed = pairs[timer.pair].time(timer.operation, timer.batch);
            timer.ns_per_op.push(elapsed.as_nanos() as f64 / timer.batch as f64);
        }
    }
    let figures: Vec<Figures> = (0..pairs.len())
        .map(|index| {
            let median_of = |operation| {
                let timer = timers.iter().find(|t| t.pair == index && t.operation == operation);
                timer.map_or(f64::NAN, |t| median(&t.ns_per_op))
            };
            Figures {
                size: pairs[index].bytes.len(),
                encode_ns: median_of(Operation::Encode),
                decode_ns: median_of(Operation::Decode),
            }
        })
        .collect();
    for value in WireValue::ALL {
        let of_value = |encoding| {
            pairs
                .iter()
                .zip(&figures)
                .find(|(pair, _)| pair.value == value && pair.encoding == encoding)
                .map(|(_, figures)| *figures)
        };
        let json = of_value(Encoding::Json).context("no JSON figures")?;
        for encoding in Encoding::ALL {
            let figures = of_value(encoding).context("no figures")?;
            let mut row = Row::new(SECTION, format!("{}: {}", value.label(), encoding.label()));
            row.notes = notes(encoding, figures, json);
            table.push(row);
        }
    }
    Ok(())
}

/// Every value in every encoding, each checked to decode.
fn pairs() -> anyhow::Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for value in WireValue::ALL {
        let state = value.build();
        for encoding in Encoding::ALL {
            let what = || format!("{} in {}", value.label(), encoding.label());
            let bytes = encoding
                .encode(&state)
                .with_context(|| format!("encoding the {}", what()))?;
            encoding
                .decode(&bytes)
                .with_context(|| format!("decoding the {}", what()))?;
            pairs.push(Pair {
                value,
                encoding,
                state: state.clone(),
                bytes,
            });
        }
    }
    Ok(pairs)
}

/// Runs `operation` for about `duration` (in batches that double) and
/// returns the batch size that takes about `batch`.
fn warm_up(pair: &Pair, operation: Operation, duration: Duration, batch: Duration) -> u64 {
    let (mut ops, mut elapsed, mut n) = (0u64, Duration::ZERO, 1u64);
    while elapsed < duration {
        elapsed += pair.time(operation, n);
        ops += n;
        n = n.saturating_mul(2);
    }
    let ns_per_op = elapsed.as_nanos() as f64 / ops.max(1) as f64;
    batch_size(batch, ns_per_op)
}

/// How many operations of `ns_per_op` fill `batch` (at least one).
fn batch_size(batch: Duration, ns_per_op: f64) -> u64 {
    (batch.as_nanos() as f64 / ns_per_op.max(1.0)).ceil().max(1.0) as u64
}

/// The design's claim for an encoding against JSON: how many times faster
/// and what share of JSON's size (in %).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Claim {
    faster: (f64, f64),
    size_pct: (f64, f64),
}

fn claim(encoding: Encoding) -> Option<Claim> {
    match encoding {
        Encoding::Json => None,
        Encoding::MessagePack => Some(Claim {
            faster: (3.0, 5.0),
            size_pct: (50.0, 70.0),
        }),
        Encoding::Protobuf | Encoding::ProtobufNestedMessagePack => Some(Claim {
            faster: (2.0, 3.0),
            size_pct: (30.0, 50.0),
        }),
    }
}

/// The row's notes: the figures, their ratios to JSON's and how they
/// compare with the design's claim.
fn notes(encoding: Encoding, figures: Figures, json: Figures) -> String {
    let Some(claim) = claim(encoding) else {
        return format!(
            "{} B; encode {}, decode {} (median per operation); the baseline of the ratios",
            crate::table::thousands(figures.size as f64),
            duration_ns(figures.encode_ns),
            duration_ns(figures.decode_ns)
        );
    };
    let size_pct = 100.0 * figures.size as f64 / json.size as f64;
    let encode_x = json.encode_ns / figures.encode_ns;
    let decode_x = json.decode_ns / figures.decode_ns;
    format!(
        "{} B = {size_pct:.0} % of JSON; encode {} = {encode_x:.2}x, decode {} = {decode_x:.2}x JSON's speed; \
         vs design ({}-{}x faster, {}-{} % of JSON's size): size {}, encode {}, decode {}",
        crate::table::thousands(figures.size as f64),
        duration_ns(figures.encode_ns),
        duration_ns(figures.decode_ns),
        claim.faster.0,
        claim.faster.1,
        claim.size_pct.0,
        claim.size_pct.1,
        size_verdict(size_pct, claim.size_pct),
        speed_verdict(encode_x, claim.faster),
        speed_verdict(decode_x, claim.faster),
    )
}

fn size_verdict(pct: f64, (low, high): (f64, f64)) -> &'static str {
    if pct < low {
        "smaller"
    } else if pct > high {
        "larger"
    } else {
        "within"
    }
}

fn speed_verdict(times: f64, (low, high): (f64, f64)) -> &'static str {
    if times < low {
        "slower"
    } else if times > high {
        "faster"
    } else {
        "within"
    }
}

/// Nanoseconds, in the unit that reads best.
fn duration_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_fills_its_time_with_at_least_one_operation() {
        assert_eq!(batch_size(Duration::from_millis(1), 2_000.0), 500);
        assert_eq!(batch_size(Duration::from_millis(1), 3_000.0), 334);
        assert_eq!(batch_size(Duration::from_millis(1), 5_000_000.0), 1);
        assert_eq!(batch_size(Duration::from_millis(1), 0.0), 1_000_000);
    }

    #[test]
    fn the_notes_compare_with_the_design() {
        let json = Figures {
            size: 2_000,
            encode_ns: 8_000.0,
            decode_ns: 12_000.0,
        };
        let msgpack = Figures {
            size: 1_200,
            encode_ns: 2_000.0,
            decode_ns: 6_000.0,
        };
        assert_eq!(
            notes(Encoding::MessagePack, msgpack, json),
            "1,200 B = 60 % of JSON; encode 2.00 µs = 4.00x, decode 6.00 µs = 2.00x JSON's speed; \
             vs design (3-5x faster, 50-70 % of JSON's size): size within, encode within, decode slower"
        );
        let protobuf = Figures {
            size: 500,
            encode_ns: 950.0,
            decode_ns: 4_000.0,
        };
        let text = notes(Encoding::Protobuf, protobuf, json);
        assert!(
            text.starts_with("500 B = 25 % of JSON; encode 950 ns = 8.42x"),
            "{text}"
        );
        assert!(text.ends_with("(2-3x faster, 30-50 % of JSON's size): size smaller, encode faster, decode within"));
        assert_eq!(
            notes(Encoding::Json, json, json),
            "2,000 B; encode 8.00 µs, decode 12.00 µs (median per operation); the baseline of the ratios"
        );
    }

    #[test]
    fn every_pair_is_built_and_decodes() {
        let pairs = pairs().expect("every pair encodes and decodes");
        assert_eq!(pairs.len(), WireValue::ALL.len() * Encoding::ALL.len());
        assert!(pairs.iter().all(|p| !p.bytes.is_empty()));
    }
}
