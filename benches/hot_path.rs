//! Micro-benchmarks of the per-request hot path (placeholder filled in by the bench work).
use criterion::{criterion_group, criterion_main, Criterion};

fn scan(c: &mut Criterion) {
    let body = br#"{"model":"main","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}],"stream":true}"#;
    c.bench_function("body_scan_small", |b| b.iter(|| switchyard::body::scan(std::hint::black_box(body)).unwrap()));
}

criterion_group!(benches, scan);
criterion_main!(benches);
