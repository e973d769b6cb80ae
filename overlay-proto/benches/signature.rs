//! Costs of the GOSSIP content checks, per message: the id recomputation (BLAKE3 over
//! origin ‖ nonce ‖ 1 KiB payload), one Ed25519 signature, one verification as the core does
//! it (origin hash + key decompression + strict verify), the key decompression alone (what a
//! verified-key cache could save), and batch verification of 64 signatures (what batching
//! the frames of one read could save).

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code

use criterion::{BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use overlay_proto::origin::signed_message;
use overlay_proto::{MessageId, OriginSigner, SigningSeed};

const BATCH: usize = 64;

fn checks(c: &mut Criterion) {
    let signer = OriginSigner::new(&SigningSeed([0x42; 32]));
    let origin = signer.peer_id();
    let payload = vec![0x5Au8; 1024];
    let id = MessageId::compute(&origin, 7, &payload);
    let auth = signer.sign(&id);

    let mut g = c.benchmark_group("gossip_checks");
    g.throughput(Throughput::Elements(1));
    g.bench_function("id_blake3_1KiB", |b| {
        b.iter(|| MessageId::compute(&origin, 7, std::hint::black_box(&payload)))
    });
    g.bench_function("ed25519_sign", |b| {
        b.iter(|| signer.sign(std::hint::black_box(&id)))
    });
    g.bench_function("origin_verify", |b| {
        b.iter(|| auth.verify(&origin, std::hint::black_box(&id)).unwrap())
    });
    g.bench_function("key_decompress_only", |b| {
        b.iter(|| VerifyingKey::from_bytes(std::hint::black_box(&auth.key)).unwrap())
    });
    g.finish();

    // 64 distinct messages from 64 distinct origins, as one read might carry.
    let signers: Vec<OriginSigner> = (0..BATCH)
        .map(|i| OriginSigner::new(&SigningSeed([i as u8; 32])))
        .collect();
    let ids: Vec<MessageId> = (0..BATCH)
        .map(|i| MessageId::compute(&signers[i].peer_id(), i as u64, &payload))
        .collect();
    let sigs: Vec<_> = (0..BATCH).map(|i| signers[i].sign(&ids[i])).collect();
    let msgs: Vec<_> = ids.iter().map(signed_message).collect();
    let mut g = c.benchmark_group("gossip_checks_batch64");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("one_by_one", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                sigs[i].verify(&signers[i].peer_id(), &ids[i]).unwrap();
            }
        })
    });
    g.bench_function("verify_batch", |b| {
        b.iter_batched(
            || (),
            |()| {
                let keys: Vec<VerifyingKey> = sigs
                    .iter()
                    .map(|s| VerifyingKey::from_bytes(&s.key).unwrap())
                    .collect();
                let signatures: Vec<Signature> = sigs
                    .iter()
                    .map(|s| Signature::from_bytes(&s.signature))
                    .collect();
                let messages: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
                ed25519_dalek::verify_batch(&messages, &signatures, &keys).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    checks(&mut c);
    c.final_summary();
}
