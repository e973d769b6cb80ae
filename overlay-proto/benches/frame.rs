//! OAP/1 codec throughput: zero-copy decode of many frames from one buffer (1 KiB and 64-byte
//! frames), the buffering parser fed in MTU-sized chunks, and encoding.
//!
//! Run with `cargo bench -p overlay-proto --bench frame`.

// Benchmark setup: a failed expect is a broken benchmark.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{BatchSize, Criterion, Throughput};
use overlay_proto::frame::{
    decode, encode, encode_header_into, flags, FrameParser, Header, HEADER_LEN,
};

const FRAMES: usize = 1024;

fn header() -> Header {
    Header {
        ver: 1,
        flags: flags::EVENT,
        app_proto_id: 7,
        tenant_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        corr_id: 42,
        ..Header::default()
    }
}

/// `FRAMES` frames with `payload_len`-byte payloads, back to back.
fn wire(payload_len: usize) -> BytesMut {
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let mut out = BytesMut::with_capacity(FRAMES * (HEADER_LEN + payload_len));
    for _ in 0..FRAMES {
        encode(&header(), &[], &payload, &mut out).expect("small frame");
    }
    out
}

fn decode_all(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while let Ok(Some(frame)) = decode(&mut buf) {
        black_box(&frame);
        n += 1;
    }
    n
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    for (name, payload_len) in [("1KiB_payload", 1024), ("64B_frame", 64 - HEADER_LEN)] {
        let bytes = wire(payload_len);
        group.bench_function(name, |b| {
            b.iter_batched(
                || bytes.clone(),
                |buf| assert_eq!(decode_all(buf), FRAMES),
                BatchSize::LargeInput,
            )
        });
    }
    let bytes = wire(1024);
    group.bench_function("parser_1KiB_payload_1500B_chunks", |b| {
        b.iter(|| {
            let mut parser = FrameParser::new();
            let mut n = 0;
            for chunk in bytes.chunks(1500) {
                parser.push(chunk).expect("under the soft cap");
                while let Ok(Some(frame)) = parser.try_next() {
                    black_box(&frame);
                    n += 1;
                }
            }
            assert_eq!(n, FRAMES);
        })
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    for (name, payload_len) in [("1KiB_payload", 1024), ("64B_frame", 64 - HEADER_LEN)] {
        let payload = vec![0x5a_u8; payload_len];
        let mut out = BytesMut::with_capacity(FRAMES * (HEADER_LEN + payload_len));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..FRAMES {
                    encode(&header(), &[], black_box(&payload), &mut out).expect("small frame");
                }
                black_box(out.len())
            })
        });
        group.bench_function(format!("{name}_header_into"), |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..FRAMES {
                    encode_header_into(&header(), 0, payload.len(), &mut out).expect("small frame");
                    out.put_slice(black_box(&payload));
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_decode(&mut c);
    bench_encode(&mut c);
    c.final_summary();
}
