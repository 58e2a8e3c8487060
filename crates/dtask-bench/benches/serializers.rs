//! The serializer benchmark under criterion: the same (value, encoding)
//! pairs as the runner's section 1 (`dtask_bench::wire`), encoded with
//! `serialize_state` and decoded with `deserialize_state`.
//!
//! ```text
//! cargo bench -p dtask-bench --bench serializers
//! cargo bench -p dtask-bench --bench serializers -- hand_off/encode
//! ```

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dtask_bench::wire::{Encoding, WireValue};

fn serializers(c: &mut Criterion) {
    for value in WireValue::ALL {
        let state = value.build();
        let encoded: Vec<_> = Encoding::ALL
            .iter()
            .map(|encoding| {
                let bytes = encoding.encode(&state).expect("the state encodes");
                (*encoding, bytes)
            })
            .collect();

        let mut encode = c.benchmark_group(format!("{}/encode", value.id()));
        for (encoding, bytes) in &encoded {
            encode.throughput(Throughput::Bytes(bytes.len() as u64));
            encode.bench_with_input(BenchmarkId::from_parameter(encoding.id()), &state, |b, state| {
                b.iter(|| encoding.encode(black_box(state)));
            });
        }
        encode.finish();

        let mut decode = c.benchmark_group(format!("{}/decode", value.id()));
        for (encoding, bytes) in &encoded {
            encoding.decode(bytes).expect("the bytes decode");
            decode.throughput(Throughput::Bytes(bytes.len() as u64));
            decode.bench_with_input(BenchmarkId::from_parameter(encoding.id()), bytes, |b, bytes| {
                b.iter(|| encoding.decode(black_box(bytes)));
            });
        }
        decode.finish();
    }
}

criterion_group!(benches, serializers);
criterion_main!(benches);
