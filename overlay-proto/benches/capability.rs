//! Capability-token benchmarks: verification of the `valid_basic` vector (allow), of the same
//! token under a wrong key (MacMismatch), of a 64-caveat token (grouped evaluation), and minting.
//!
//! `cargo bench -p overlay-proto --bench capability`; throughput is reported in tokens/s.

use criterion::{Criterion, Throughput};
use overlay_proto::capability::{
    decode_token, mint, verify_token, AuthError, Caveat, Decision, RequestCtx, Scope,
    VerifierConfig,
};
use overlay_proto::{KeyRing, MacKey};
use std::hint::black_box;

/// The `valid_basic` vector: minted by the reference with this key and these fields.
const VALID_BASIC: &str = "pWN0aWRodGVuYW50LWFja2lkYmsxZXNjb3Blo2ZwcmVmaXhnL2luZGV4L2dtZXRob2RzgmNHRVRjUFVUaW1heF9ieXRlcxoAEAAAZ2NhdmVhdHOFomF0Y0V4cGF2GmVT_xCiYXRjTmJmYXYaZVPwxKJhdGZUZW5hbnRhdmh0ZW5hbnQtYaJhdGZNZXRob2RhdoJjR0VUY1BVVKJhdGpQYXRoUHJlZml4YXZnL2luZGV4L2NtYWNYIA3J5cyX-vOmi_yRARoS_fjgr-j6SPQsVHpgBVLC_9aE";
const KEY: MacKey = MacKey(*b"0123456789abcdef0123456789abcdef");
const NOW: u64 = 1_700_000_000;

fn scope() -> Scope {
    Scope {
        prefix: Some("/index/".into()),
        methods: vec!["GET".into(), "PUT".into()],
        max_bytes: Some(1_048_576),
    }
}

fn caveats() -> Vec<Caveat> {
    vec![
        Caveat::Exp(NOW + 3600),
        Caveat::Nbf(NOW - 60),
        Caveat::Tenant("tenant-a".into()),
        Caveat::Method(vec!["GET".into(), "PUT".into()]),
        Caveat::PathPrefix("/index/".into()),
    ]
}

fn ctx() -> RequestCtx {
    RequestCtx {
        now_unix_s: NOW,
        method: "GET".into(),
        path: "/index/abc".into(),
        peer_ip: Some(core::net::IpAddr::from([10, 1, 2, 3])),
        tenant: "tenant-a".into(),
        ..RequestCtx::default()
    }
}

fn ring(key: MacKey) -> KeyRing {
    let mut ring = KeyRing::new();
    ring.insert("k1", "tenant-a", key);
    ring
}

fn bench(c: &mut Criterion) {
    let cfg = VerifierConfig::default();
    let ctx = ctx();
    let good = ring(KEY);
    let wrong = ring(MacKey([0x42; 32]));
    let token = VALID_BASIC.as_bytes();
    assert_eq!(
        mint(&KEY, "tenant-a", "k1", scope(), caveats()),
        VALID_BASIC
    );
    assert!(matches!(
        verify_token(token, &ctx, &good, &cfg),
        Ok(Decision::Allow { .. })
    ));
    assert_eq!(
        verify_token(token, &ctx, &wrong, &cfg),
        Err(AuthError::MacMismatch)
    );

    let mut many = caveats();
    for i in many.len()..64 {
        many.push(if i % 2 == 0 {
            Caveat::Rate {
                per_s: 10,
                burst: 20,
            }
        } else {
            Caveat::IpCidr("10.0.0.0/8".into())
        });
    }
    let big = mint(&KEY, "tenant-a", "k1", scope(), many);
    let r = verify_token(big.as_bytes(), &ctx, &good, &cfg);
    assert!(matches!(r, Ok(Decision::Allow { .. })), "{r:?}");

    let mut g = c.benchmark_group("capability");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_valid_basic_allow", |b| {
        b.iter(|| verify_token(black_box(token), black_box(&ctx), &good, &cfg))
    });
    g.bench_function("verify_valid_basic_mac_mismatch", |b| {
        b.iter(|| verify_token(black_box(token), black_box(&ctx), &wrong, &cfg))
    });
    g.bench_function("verify_64_caveats_allow", |b| {
        b.iter(|| verify_token(black_box(big.as_bytes()), black_box(&ctx), &good, &cfg))
    });
    g.bench_function("decode_valid_basic", |b| {
        b.iter(|| decode_token(black_box(token), &cfg))
    });
    g.bench_function("mint_valid_basic", |b| {
        b.iter(|| mint(black_box(&KEY), "tenant-a", "k1", scope(), caveats()))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
