//! Property tests of the capability-token codec and verifier: mint/verify round trips,
//! single-byte corruption, attenuation equivalence and arbitrary input.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::value::{Integer, Value};
use overlay_proto::capability::{
    attenuate, canonicalize, decode_token, mint, sign, verify_cbor, verify_token, AuthError,
    Capability, Caveat, Decision, RequestCtx, Scope, VerifierConfig,
};
use overlay_proto::{KeyRing, MacKey};
use proptest::collection::vec;
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000;
const KEY: MacKey = MacKey([0x5a; 32]);
const PATH: &str = "/index/abc/def";

fn keys() -> KeyRing {
    let mut ring = KeyRing::new();
    ring.insert("k1", "tenant-a", KEY);
    ring
}

fn ctx() -> RequestCtx {
    RequestCtx {
        now_unix_s: NOW,
        method: "GET".into(),
        path: PATH.into(),
        peer_ip: Some("10.1.2.3".parse().unwrap()),
        object_addr: None,
        tenant: "tenant-a".into(),
        amnesia: false,
        policy_digest_hex: Some("abc123".into()),
        extras: Some(Value::Map(vec![(
            Value::Text("len".into()),
            Value::Integer(100.into()),
        )])),
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-zA-Z0-9/_.-]{0,10}", 1 => "\\PC{0,6}"]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|u| Value::Integer(u.into())),
        any::<i64>().prop_map(|i| Value::Integer(i.into())),
        any::<u64>().prop_map(|n| Value::Integer(Integer::try_from(-1 - i128::from(n)).unwrap())),
        any::<f64>().prop_map(Value::Float),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.5,
            65504.0,
            65520.0,
            1e-7,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY
        ])
        .prop_map(Value::Float),
        vec(any::<u8>(), 0..6).prop_map(Value::Bytes),
        text().prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            (any::<u64>(), inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
        ]
    })
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    (
        prop::option::of(text()),
        vec(text(), 0..4),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(prefix, methods, max_bytes)| Scope {
            prefix,
            methods,
            max_bytes,
        })
}

/// Any caveat.
fn arb_caveat() -> impl Strategy<Value = Caveat> {
    prop_oneof![
        any::<u64>().prop_map(Caveat::Exp),
        any::<u64>().prop_map(Caveat::Nbf),
        text().prop_map(Caveat::Aud),
        vec(text(), 0..3).prop_map(Caveat::Method),
        text().prop_map(Caveat::PathPrefix),
        text().prop_map(Caveat::IpCidr),
        any::<u64>().prop_map(Caveat::BytesLe),
        (any::<u32>(), any::<u32>()).prop_map(|(per_s, burst)| Caveat::Rate { per_s, burst }),
        text().prop_map(Caveat::Tenant),
        any::<bool>().prop_map(Caveat::Amnesia),
        text().prop_map(Caveat::GovPolicyDigest),
        (text(), text(), arb_value()).prop_map(|(ns, name, cbor)| Caveat::Custom {
            ns,
            name,
            cbor
        }),
    ]
}

/// A caveat that [`ctx`] satisfies.
fn ok_caveat() -> impl Strategy<Value = Caveat> {
    prop_oneof![
        (NOW - 60..NOW + 10_000_000).prop_map(Caveat::Exp),
        (0..=NOW + 60).prop_map(Caveat::Nbf),
        Just(Caveat::Aud("abc123".into())),
        (vec("[A-Z]{1,6}", 0..3), any::<bool>()).prop_map(|(mut m, lower)| {
            m.push(if lower { "gEt" } else { "GET" }.into());
            Caveat::Method(m)
        }),
        (0..=PATH.len()).prop_map(|n| Caveat::PathPrefix(PATH[..n].to_string())),
        (0u8..=8).prop_map(|len| Caveat::IpCidr(format!("10.200.7.9/{len}"))),
        (0u8..=32).prop_map(|len| Caveat::IpCidr(format!("10.1.2.3/{len}"))),
        (100u64..).prop_map(Caveat::BytesLe),
        Just(Caveat::Tenant("tenant-a".into())),
        Just(Caveat::Amnesia(false)),
        Just(Caveat::GovPolicyDigest("abc123".into())),
        (any::<u32>(), any::<u32>()).prop_map(|(per_s, burst)| Caveat::Rate { per_s, burst }),
        (text(), text(), arb_value()).prop_map(|(ns, name, cbor)| Caveat::Custom {
            ns,
            name,
            cbor
        }),
    ]
}

fn cbor_of(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(token).unwrap()
}

/// The capability as the verifier will see it: Custom payloads in canonical form.
fn canonical(cap: &Capability) -> Capability {
    let mut cap = cap.clone();
    for c in &mut cap.caveats {
        if let Caveat::Custom { cbor, .. } = c {
            *cbor = canonicalize(cbor.clone());
        }
    }
    cap
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Minting and verifying a token whose caveats the request satisfies allows it, with the
    /// scope; decoding gives back the fields.
    #[test]
    fn mint_then_verify_allows(scope in arb_scope(), caveats in vec(ok_caveat(), 0..40)) {
        let cfg = VerifierConfig::default();
        let cap = sign(&KEY, "tenant-a", "k1", scope.clone(), caveats.clone());
        let token = mint(&KEY, "tenant-a", "k1", scope.clone(), caveats);
        let result = verify_token(token.as_bytes(), &ctx(), &keys(), &cfg);
        if cbor_of(&token).len() > cfg.max_token_bytes {
            prop_assert_eq!(result, Err(AuthError::Bounds));
        } else {
            prop_assert_eq!(result, Ok(Decision::Allow { scope }));
            let decoded = decode_token(token.as_bytes(), &cfg).unwrap();
            prop_assert_eq!(decoded.to_cbor(), cap.to_cbor());
            prop_assert_eq!(decoded.mac, cap.mac);
            prop_assert_eq!(&decoded.tid, "tenant-a");
        }
    }

    /// Decoding what the encoder wrote gives the same capability (canonical Custom payloads),
    /// and the decoder's output re-encodes to the same bytes.
    #[test]
    fn encode_decode_round_trip(
        tid in text(), kid in text(), scope in arb_scope(),
        caveats in vec(arb_caveat(), 0..12), mac in any::<[u8; 32]>(),
    ) {
        let cfg = VerifierConfig { max_token_bytes: usize::MAX, ..VerifierConfig::default() };
        let cap = Capability { tid, kid, scope, caveats, mac };
        let bytes = cap.to_cbor();
        let token = URL_SAFE_NO_PAD.encode(&bytes);
        let decoded = decode_token(token.as_bytes(), &cfg).unwrap();
        prop_assert_eq!(decoded.to_cbor(), bytes);
        let want = canonical(&cap);
        // NaN != NaN, so compare everything but Custom payloads structurally.
        prop_assert_eq!(&decoded.tid, &want.tid);
        prop_assert_eq!(&decoded.scope, &want.scope);
        prop_assert_eq!(decoded.caveats.len(), want.caveats.len());
        for (a, b) in decoded.caveats.iter().zip(&want.caveats) {
            prop_assert_eq!(a.to_cbor(), b.to_cbor());
        }
    }

    /// Changing one character of a token never panics and never allows unless the decoded
    /// fields are unchanged (an equivalent encoding).
    #[test]
    fn flipped_token_char(
        caveats in vec(ok_caveat(), 0..20), at in any::<prop::sample::Index>(), to in any::<u8>(),
    ) {
        let cfg = VerifierConfig::default();
        let token = mint(&KEY, "tenant-a", "k1", Scope::default(), caveats);
        let mut bad = token.clone().into_bytes();
        let i = at.index(bad.len());
        prop_assume!(bad[i] != to);
        bad[i] = to;
        let result = verify_token(&bad, &ctx(), &keys(), &cfg);
        if let Ok(decision) = result {
            let original = decode_token(token.as_bytes(), &cfg).unwrap();
            let now = decode_token(&bad, &cfg).unwrap();
            prop_assert_eq!(now.to_cbor(), original.to_cbor());
            prop_assert_eq!(decision, verify_token(token.as_bytes(), &ctx(), &keys(), &cfg).unwrap());
        }
    }

    /// The same for one byte of the CBOR, where equivalent encodings are much more likely
    /// (text key to byte-string key, a tag in front of a string, ...).
    #[test]
    fn flipped_cbor_byte(
        caveats in vec(ok_caveat(), 0..20), at in any::<prop::sample::Index>(), to in any::<u8>(),
    ) {
        let cfg = VerifierConfig::default();
        let token = mint(&KEY, "tenant-a", "k1", Scope::default(), caveats);
        let original = cbor_of(&token);
        let mut bad = original.clone();
        let i = at.index(bad.len());
        prop_assume!(bad[i] != to);
        bad[i] = to;
        let result = verify_cbor(&bad, &ctx(), &keys(), &cfg);
        let via_text = verify_token(URL_SAFE_NO_PAD.encode(&bad).as_bytes(), &ctx(), &keys(), &cfg);
        prop_assert_eq!(&result, &via_text);
        if let Ok(decision) = result {
            let now = overlay_proto::capability::decode_cbor(&bad, &cfg).unwrap();
            prop_assert_eq!(now.to_cbor(), original);
            let allowed = matches!(decision, Decision::Allow { .. });
            prop_assert!(allowed, "same fields, same request: {:?}", decision);
        }
    }

    /// Attenuating a minted token equals minting all the caveats at once.
    #[test]
    fn attenuate_equals_mint(
        scope in arb_scope(), a in vec(arb_caveat(), 0..8), b in vec(arb_caveat(), 0..8),
    ) {
        let cfg = VerifierConfig { max_token_bytes: 1 << 20, ..VerifierConfig::default() };
        let root = mint(&KEY, "tenant-a", "k1", scope.clone(), a.clone());
        let all: Vec<Caveat> = a.iter().chain(&b).cloned().collect();
        let attenuated = attenuate(root.as_bytes(), &KEY, b.clone(), &cfg);
        prop_assert_eq!(attenuated, Ok(mint(&KEY, "tenant-a", "k1", scope, all)));
        // Only the root key can extend the chain.
        prop_assert_eq!(
            attenuate(root.as_bytes(), &MacKey([0x42; 32]), b, &cfg),
            Err(AuthError::MacMismatch)
        );
    }

    /// Arbitrary bytes never panic, as token text or as CBOR.
    #[test]
    fn arbitrary_bytes(bytes in vec(any::<u8>(), 0..400)) {
        let cfg = VerifierConfig::default();
        let _ = verify_token(&bytes, &ctx(), &keys(), &cfg);
        let _ = verify_cbor(&bytes, &ctx(), &keys(), &cfg);
        let text = URL_SAFE_NO_PAD.encode(&bytes);
        prop_assert_eq!(
            verify_token(text.as_bytes(), &ctx(), &keys(), &cfg),
            verify_cbor(&bytes, &ctx(), &keys(), &cfg)
        );
    }

    /// Arbitrary well-formed CBOR never panics, and whatever decodes re-encodes stably.
    #[test]
    fn arbitrary_cbor_values(value in arb_value()) {
        let cfg = VerifierConfig::default();
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        let _ = verify_cbor(&bytes, &ctx(), &keys(), &cfg);
        if let Ok(cap) = overlay_proto::capability::decode_cbor(&bytes, &cfg) {
            let again = overlay_proto::capability::decode_cbor(&cap.to_cbor(), &cfg).unwrap();
            prop_assert_eq!(again.to_cbor(), cap.to_cbor());
        }
    }
}

/// Structure-aware corruption: a token re-written as a generic value with one field replaced
/// by an arbitrary value never panics, and never allows with different fields.
#[test]
fn field_replacement_never_forges() {
    let cfg = VerifierConfig::default();
    let token = mint(
        &KEY,
        "tenant-a",
        "k1",
        Scope {
            prefix: Some("/".into()),
            methods: vec!["GET".into()],
            max_bytes: None,
        },
        vec![Caveat::Exp(NOW + 100), Caveat::Tenant("tenant-a".into())],
    );
    let original = cbor_of(&token);
    let value: Value = ciborium::from_reader(original.as_slice()).unwrap();
    let Value::Map(entries) = value else {
        panic!("map")
    };
    let replacements = [
        Value::Null,
        Value::Integer(0.into()),
        Value::Text(String::new()),
        Value::Bytes(vec![0; 32]),
        Value::Array(vec![]),
        Value::Map(vec![]),
        Value::Tag(24, Box::new(Value::Text("tenant-a".into()))),
    ];
    for i in 0..entries.len() {
        for r in &replacements {
            let mut e = entries.clone();
            e[i].1 = r.clone();
            let mut bytes = Vec::new();
            ciborium::into_writer(&Value::Map(e), &mut bytes).unwrap();
            if let Ok(Decision::Allow { .. }) = verify_cbor(&bytes, &ctx(), &keys(), &cfg) {
                let cap = overlay_proto::capability::decode_cbor(&bytes, &cfg).unwrap();
                assert_eq!(cap.to_cbor(), original, "entry {i} replaced by {r:?}");
            }
        }
    }
}
