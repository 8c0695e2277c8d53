//! Nanoseconds per frame through the framing codec.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gamemesh_proto::FrameCodec;
use tokio_util::codec::{Decoder, Encoder};

fn codec(c: &mut Criterion) {
    let body = Bytes::from(vec![0xAB; 64]);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_64B", |b| {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::with_capacity(1 << 16);
        b.iter(|| {
            codec.encode(body.clone(), &mut buf).unwrap();
            if buf.len() > 60_000 {
                buf.clear();
            }
        })
    });
    group.bench_function("decode_64B", |b| {
        let mut codec = FrameCodec::default();
        let mut one = BytesMut::new();
        codec.encode(body.clone(), &mut one).unwrap();
        let frame = one.freeze();
        let mut buf = BytesMut::with_capacity(1 << 16);
        b.iter(|| {
            buf.extend_from_slice(&frame);
            codec.decode(&mut buf).unwrap().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
