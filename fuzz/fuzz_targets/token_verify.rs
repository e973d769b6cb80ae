//! Fuzz target: arbitrary bytes as a capability token, in text (base64url) and binary (CBOR)
//! form, against a fixed key ring and request. Nothing may panic, and whatever decodes must
//! re-encode stably, decide like its re-encoding, and pass the MAC check once signed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::capability::{
    decode_cbor, encode_token, sign, verify_cbor, verify_token, AuthError, CborValue, RequestCtx,
    VerifierConfig,
};
use overlay_proto::{KeyRing, MacKey};

const KEY: MacKey = MacKey(*b"0123456789abcdef0123456789abcdef");

fn ctx() -> RequestCtx {
    RequestCtx {
        now_unix_s: 1_700_000_000,
        method: "GET".into(),
        path: "/index/abc".into(),
        peer_ip: Some(core::net::IpAddr::from([10, 1, 2, 3])),
        object_addr: None,
        tenant: "tenant-a".into(),
        amnesia: false,
        policy_digest_hex: Some("abc123".into()),
        extras: Some(CborValue::Map(vec![(
            CborValue::Text("len".into()),
            CborValue::Integer(2048.into()),
        )])),
    }
}

fuzz_target!(|data: &[u8]| {
    let cfg = VerifierConfig::default();
    let ctx = ctx();
    let mut keys = KeyRing::new();
    keys.insert("k1", "tenant-a", KEY);

    // The input as token text, and as the token's binary form.
    let _ = verify_token(data, &ctx, &keys, &cfg);
    let _ = verify_cbor(data, &ctx, &keys, &cfg);

    // Re-encoding checks, without the size limit (canonical re-encoding can be longer).
    let unbounded = VerifierConfig {
        max_token_bytes: usize::MAX,
        ..cfg
    };
    let Ok(cap) = decode_cbor(data, &unbounded) else {
        return;
    };
    let bytes = cap.to_cbor();
    let again = decode_cbor(&bytes, &unbounded).expect("a re-encoded token decodes");
    assert_eq!(again.to_cbor(), bytes, "re-encoding is stable");
    assert_eq!(
        verify_cbor(data, &ctx, &keys, &unbounded),
        verify_cbor(&bytes, &ctx, &keys, &unbounded),
        "equivalent encodings decide alike"
    );
    let text = encode_token(&cap);
    assert_eq!(
        verify_token(text.as_bytes(), &ctx, &keys, &unbounded),
        verify_cbor(&bytes, &ctx, &keys, &unbounded),
        "text and binary forms decide alike"
    );

    // Signed with the key its (kid, tid) maps to, the same fields always pass steps 1-7, so
    // caveat evaluation runs on arbitrary caveats.
    let signed = sign(
        &KEY,
        &cap.tid,
        &cap.kid,
        cap.scope.clone(),
        cap.caveats.clone(),
    );
    let mut ring = KeyRing::new();
    ring.insert(cap.kid.clone(), cap.tid.clone(), KEY);
    let result = verify_cbor(&signed.to_cbor(), &ctx, &ring, &unbounded);
    assert!(
        !matches!(
            result,
            Err(AuthError::MacMismatch | AuthError::UnknownKid | AuthError::Malformed(_))
        ),
        "a freshly signed token failed before evaluation: {result:?}"
    );
});
