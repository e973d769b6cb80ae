//! Every capability-token vector of the reference `ron-auth` verifier, checked exactly:
//! outcome, error label, deny reasons (in order) and allowed scope; plus the MAC chain steps,
//! the canonical re-encoding, the decoded fields, and attenuation.
//!
//! The file is `$CAPABILITY_VECTORS` when set, else the in-repo copy
//! `overlay-proto/tests/vectors/capability_tokens.json`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use overlay_proto::capability::{
    attenuate, compute_mac, decode_token, encode_token, mac_init_cbor, verify_many, verify_token,
    AuthError, Capability, Caveat, Decision, RequestCtx, VerifierConfig,
};
use overlay_proto::{KeyRing, MacKey};
use serde_json::{json, Value as J};
use std::net::IpAddr;

const DEFAULT_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/capability_tokens.json"
);

/// Vectors whose token bytes are deliberately not what the reference encoder would write.
fn is_noncanonical(name: &str) -> bool {
    name.starts_with("noncanonical_")
        || name.starts_with("reencoded_")
        || name == "unknown_top_level_field"
}

fn load() -> (String, J) {
    let path = std::env::var("CAPABILITY_VECTORS").unwrap_or_else(|_| DEFAULT_PATH.to_string());
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read capability vectors at {path}: {e}"));
    let doc: J = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("capability vectors at {path} are not JSON: {e}"));
    (path, doc)
}

fn config(doc: &J) -> VerifierConfig {
    let mut cfg = VerifierConfig::default();
    if let Some(c) = doc.get("verifier_config") {
        let get = |k: &str| c.get(k).and_then(J::as_u64);
        if let Some(v) = get("max_token_bytes") {
            cfg.max_token_bytes = v as usize;
        }
        if let Some(v) = get("max_caveats") {
            cfg.max_caveats = v as usize;
        }
        if let Some(v) = get("clock_skew_secs") {
            cfg.clock_skew_secs = v;
        }
        if let Some(v) = get("soa_threshold") {
            cfg.soa_threshold = v as usize;
        }
    }
    cfg
}

fn key(hex_text: &str) -> MacKey {
    MacKey::from_hex(hex_text).unwrap_or_else(|| panic!("bad key hex {hex_text}"))
}

fn keyring(v: &J) -> KeyRing {
    let mut ring = KeyRing::new();
    for entry in v["keystore"].as_array().into_iter().flatten() {
        let s = |k: &str| entry[k].as_str().unwrap_or_else(|| panic!("keystore {k}"));
        ring.insert(s("kid"), s("tid"), key(s("key_hex")));
    }
    ring
}

fn opt_str(v: &J) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn ctx(v: &J) -> RequestCtx {
    let c = &v["ctx"];
    let extras = match c["extras_cbor_hex"].as_str() {
        Some(h) => {
            let bytes = hex::decode(h).expect("extras hex");
            let value: ciborium::Value =
                ciborium::from_reader(bytes.as_slice()).expect("extras CBOR");
            Some(value)
        }
        None => None,
    };
    RequestCtx {
        now_unix_s: c["now_unix_s"].as_u64().expect("now_unix_s"),
        method: c["method"].as_str().expect("method").to_string(),
        path: c["path"].as_str().expect("path").to_string(),
        peer_ip: c["peer_ip"]
            .as_str()
            .map(|s| s.parse::<IpAddr>().expect("peer_ip")),
        object_addr: opt_str(&c["object_addr"]),
        tenant: c["tenant"].as_str().expect("tenant").to_string(),
        amnesia: c["amnesia"].as_bool().expect("amnesia"),
        policy_digest_hex: opt_str(&c["policy_digest_hex"]),
        extras,
    }
}

/// The reference's JSON rendering of a caveat (`Custom` payloads are lossy there: not compared).
fn caveat_json(c: &Caveat) -> J {
    let v = match c {
        Caveat::Exp(x) | Caveat::Nbf(x) | Caveat::BytesLe(x) => json!(x),
        Caveat::Aud(s)
        | Caveat::PathPrefix(s)
        | Caveat::IpCidr(s)
        | Caveat::Tenant(s)
        | Caveat::GovPolicyDigest(s) => json!(s),
        Caveat::Method(list) => json!(list),
        Caveat::Rate { per_s, burst } => json!({"per_s": per_s, "burst": burst}),
        Caveat::Amnesia(b) => json!(b),
        Caveat::Custom { ns, name, .. } => json!({"ns": ns, "name": name}),
    };
    json!({"t": c.type_name(), "v": v})
}

fn strip_custom_payload(mut c: J) -> J {
    if c["t"] == "Custom" {
        if let Some(v) = c.get_mut("v").and_then(J::as_object_mut) {
            v.remove("cbor");
        }
    }
    c
}

fn outcome_of(result: &Result<Decision, AuthError>) -> J {
    match result {
        Ok(Decision::Allow { scope }) => json!({"outcome": "allow", "allowed_scope": scope}),
        Ok(Decision::Deny { reasons }) => {
            json!({"outcome": "deny_decision", "deny_reasons": reasons})
        }
        Err(e) => json!({"outcome": "error", "error": e.label()}),
    }
}

fn expected_of(v: &J) -> J {
    match v["outcome"].as_str() {
        Some("allow") => json!({"outcome": "allow", "allowed_scope": v["allowed_scope"]}),
        Some("deny_decision") => {
            json!({"outcome": "deny_decision", "deny_reasons": v["deny_reasons"]})
        }
        Some("error") => json!({"outcome": "error", "error": v["error"]}),
        other => panic!("{}: unknown outcome {other:?}", v["name"]),
    }
}

/// How many of the optional checks ran.
#[derive(Debug, Default)]
struct Coverage {
    decoded: usize,
    mac_chains: usize,
    attenuations: usize,
}

/// Checks one vector; returns the list of problems.
fn check(v: &J, cfg: &VerifierConfig, cov: &mut Coverage) -> Vec<String> {
    let name = v["name"].as_str().unwrap_or("?").to_string();
    let mut bad = Vec::new();
    let token = v["token_b64url"].as_str().expect("token_b64url").as_bytes();
    let keys = keyring(v);
    let ctx = ctx(v);

    // The outcome.
    let result = verify_token(token, &ctx, &keys, cfg);
    let (got, want) = (outcome_of(&result), expected_of(v));
    if got != want {
        bad.push(format!("{name}: outcome {got} != expected {want}"));
    }
    // The batch API agrees.
    let batch = verify_many(&[token, token], &ctx, &keys, cfg);
    let batch_ok = match (&batch, &result) {
        (Ok(all), Ok(one)) => all.len() == 2 && all.iter().all(|d| d == one),
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    if !batch_ok {
        bad.push(format!(
            "{name}: verify_many {batch:?} vs verify_token {result:?}"
        ));
    }

    let decoded = decode_token(token, cfg);
    if let Ok(cap) = &decoded {
        cov.decoded += 1;
        check_decoded(&name, v, cap, &ctx, &keys, cfg, &mut bad);
    }
    if let Some(chain) = v.get("mac_chain").filter(|c| !c.is_null()) {
        match &decoded {
            Ok(cap) => {
                cov.mac_chains += 1;
                check_chain(&name, v, chain, cap, &mut bad)
            }
            Err(e) => bad.push(format!("{name}: mac_chain given but decode failed: {e:?}")),
        }
    }
    if let Some(att) = v.get("attenuation").filter(|a| !a.is_null()) {
        cov.attenuations += 1;
        check_attenuation(&name, v, att, cfg, &mut bad);
    }
    if let Some(orig) = v["original_token_b64url"].as_str() {
        if let Err(e) = decode_token(orig.as_bytes(), cfg) {
            bad.push(format!("{name}: original token should decode, got {e:?}"));
        }
    }
    bad
}

fn check_decoded(
    name: &str,
    v: &J,
    cap: &Capability,
    ctx: &RequestCtx,
    keys: &KeyRing,
    cfg: &VerifierConfig,
    bad: &mut Vec<String>,
) {
    // Decoded fields, as far as the reference's JSON rendering is exact.
    let d = &v["decoded"];
    if !d.is_null() {
        let mine = json!({
            "tid": cap.tid, "kid": cap.kid, "scope": cap.scope, "mac": cap.mac.to_vec(),
            "caveats": cap.caveats.iter().map(caveat_json).collect::<Vec<_>>(),
        });
        let theirs = json!({
            "tid": d["tid"], "kid": d["kid"], "scope": d["scope"], "mac": d["mac"],
            "caveats": d["caveats"].as_array().into_iter().flatten().cloned()
                .map(strip_custom_payload).collect::<Vec<_>>(),
        });
        if mine != theirs {
            bad.push(format!("{name}: decoded {mine} != reference {theirs}"));
        }
    }
    // Re-encoding.
    let cbor = hex::encode(cap.to_cbor());
    let given = v["token_cbor_hex"].as_str().unwrap_or_default();
    let token = v["token_b64url"].as_str().unwrap_or_default();
    let reencoded = encode_token(cap);
    if is_noncanonical(name) {
        if cbor == given {
            bad.push(format!(
                "{name}: expected non-canonical bytes, but re-encoding is identical"
            ));
        }
        // The canonical form decides exactly like the original.
        let a = outcome_of(&verify_token(token.as_bytes(), ctx, keys, cfg));
        let b = outcome_of(&verify_token(reencoded.as_bytes(), ctx, keys, cfg));
        if a != b {
            bad.push(format!(
                "{name}: re-encoded token decides {b}, original {a}"
            ));
        }
    } else {
        if cbor != given {
            bad.push(format!(
                "{name}: re-encoding {cbor} != token_cbor_hex {given}"
            ));
        }
        if reencoded != token {
            bad.push(format!("{name}: encode_token differs from token_b64url"));
        }
    }
    if v["token_cbor_len"].as_u64() != Some(given.len() as u64 / 2) {
        bad.push(format!(
            "{name}: token_cbor_len does not match token_cbor_hex"
        ));
    }
}

fn check_chain(name: &str, v: &J, chain: &J, cap: &Capability, bad: &mut Vec<String>) {
    let init = hex::encode(mac_init_cbor(&cap.tid, &cap.kid, &cap.scope));
    if chain["init_cbor_hex"].as_str() != Some(init.as_str()) {
        bad.push(format!(
            "{name}: init tuple {init} != {}",
            chain["init_cbor_hex"]
        ));
    }
    if chain["init_preimage_hex"].as_str() != Some(init.as_str()) {
        bad.push(format!(
            "{name}: the preimage of tag0 is the bare init tuple"
        ));
    }
    let Some(k) = v["mint_key_hex"].as_str().map(key) else {
        bad.push(format!("{name}: mac_chain without mint_key_hex"));
        return;
    };
    // The declared domain separator would give a different tag0.
    let sep = hex::decode(
        chain["domain_sep_hex_declared_but_not_applied"]
            .as_str()
            .unwrap_or(""),
    )
    .unwrap_or_default();
    let mut with_sep = sep.clone();
    with_sep.extend(mac_init_cbor(&cap.tid, &cap.kid, &cap.scope));
    let tag_sep = blake3::keyed_hash(k.as_bytes(), &with_sep)
        .to_hex()
        .to_string();
    if chain["tag0_if_domain_sep_were_applied_hex"].as_str() != Some(tag_sep.as_str()) {
        bad.push(format!(
            "{name}: domain-separated tag0 {tag_sep} differs from the vector"
        ));
    }
    let tag0 = hex::encode(compute_mac(&k, &cap.tid, &cap.kid, &cap.scope, &[]));
    if chain["tag0_hex"].as_str() != Some(tag0.as_str()) || tag0 == tag_sep {
        bad.push(format!("{name}: tag0 {tag0} != {}", chain["tag0_hex"]));
    }
    let steps = chain["steps"].as_array().cloned().unwrap_or_default();
    if steps.len() != cap.caveats.len() {
        bad.push(format!(
            "{name}: {} chain steps for {} caveats",
            steps.len(),
            cap.caveats.len()
        ));
    }
    for (i, (step, caveat)) in steps.iter().zip(&cap.caveats).enumerate() {
        let cbor = hex::encode(caveat.to_cbor());
        if step["caveat_cbor_hex"].as_str() != Some(cbor.as_str()) {
            bad.push(format!(
                "{name}: step {i} caveat CBOR {cbor} != {}",
                step["caveat_cbor_hex"]
            ));
        }
        let tag = hex::encode(compute_mac(
            &k,
            &cap.tid,
            &cap.kid,
            &cap.scope,
            &cap.caveats[..=i],
        ));
        if step["tag_after_hex"].as_str() != Some(tag.as_str()) {
            bad.push(format!(
                "{name}: step {i} tag {tag} != {}",
                step["tag_after_hex"]
            ));
        }
    }
    if chain["final_tag_hex"].as_str() != Some(hex::encode(cap.mac).as_str()) {
        bad.push(format!("{name}: final tag is not the token's mac"));
    }
}

fn check_attenuation(name: &str, v: &J, att: &J, cfg: &VerifierConfig, bad: &mut Vec<String>) {
    let k = key(v["mint_key_hex"].as_str().expect("mint_key_hex"));
    let root = att["root_token_b64url"]
        .as_str()
        .expect("root_token_b64url");
    let steps = att["appended"].as_array().cloned().unwrap_or_default();
    let mut extra = Vec::new();
    for step in &steps {
        let bytes = hex::decode(step["caveat_cbor_hex"].as_str().expect("caveat_cbor_hex"))
            .expect("caveat hex");
        let caveat = Caveat::from_cbor(&bytes).expect("appended caveat decodes");
        if caveat_json(&caveat) != step["caveat"] {
            bad.push(format!(
                "{name}: appended caveat {} != {}",
                caveat_json(&caveat),
                step["caveat"]
            ));
        }
        extra.push(caveat);
    }
    match decode_token(root.as_bytes(), cfg) {
        Ok(r) if att["root_mac_hex"].as_str() == Some(hex::encode(r.mac).as_str()) => {}
        other => bad.push(format!("{name}: root token mac mismatch: {other:?}")),
    }
    // All at once, and one caveat at a time (each intermediate tag is in the vector).
    match attenuate(root.as_bytes(), &k, extra.clone(), cfg) {
        Ok(t) if t == v["token_b64url"].as_str().unwrap_or_default() => {}
        other => bad.push(format!("{name}: attenuate gave {other:?}")),
    }
    let mut token = root.to_string();
    for (i, (caveat, step)) in extra.iter().zip(&steps).enumerate() {
        match attenuate(token.as_bytes(), &k, vec![caveat.clone()], cfg) {
            Ok(t) => token = t,
            Err(e) => {
                bad.push(format!("{name}: attenuate step {i}: {e:?}"));
                return;
            }
        }
        let mac = decode_token(token.as_bytes(), cfg).map(|c| hex::encode(c.mac));
        if mac.as_deref().ok() != step["tag_after_hex"].as_str() {
            bad.push(format!("{name}: attenuation step {i} mac {mac:?}"));
        }
    }
    // Holder-side attenuation without the root key is not possible.
    let wrong = MacKey([0x42; 32]);
    if attenuate(root.as_bytes(), &wrong, extra, cfg) != Err(AuthError::MacMismatch) {
        bad.push(format!("{name}: attenuate with a wrong key must fail"));
    }
}

#[test]
fn capability_vectors() {
    let (path, doc) = load();
    let cfg = config(&doc);
    let vectors = doc["vectors"].as_array().cloned().unwrap_or_default();
    assert!(!vectors.is_empty(), "no vectors in {path}");
    let mut problems = Vec::new();
    let mut cov = Coverage::default();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for v in &vectors {
        problems.extend(check(v, &cfg, &mut cov));
        *outcomes
            .entry(v["outcome"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    println!(
        "checked {} capability vectors from {path}: {outcomes:?}; decoded and re-encoded {}, \
         MAC chains {}, attenuations {}",
        vectors.len(),
        cov.decoded,
        cov.mac_chains,
        cov.attenuations
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn verify_many_aborts_on_first_error() {
    let (_, doc) = load();
    let cfg = config(&doc);
    let vectors = doc["vectors"].as_array().cloned().unwrap_or_default();
    let find = |n: &str| vectors.iter().find(|v| v["name"] == n).cloned();
    let (Some(ok), Some(expired)) = (find("valid_basic"), find("expired")) else {
        println!("valid_basic/expired not in this vector file; skipped");
        return;
    };
    let keys = keyring(&ok);
    let ctx = ctx(&ok);
    let a = ok["token_b64url"].as_str().unwrap().as_bytes();
    let b = expired["token_b64url"].as_str().unwrap().as_bytes();
    assert_eq!(
        verify_many(&[a, b, a], &ctx, &keys, &cfg),
        Err(AuthError::Expired)
    );
    assert_eq!(verify_many(&[], &ctx, &keys, &cfg), Ok(vec![]));
    assert!(matches!(
        verify_many(&[a, a], &ctx, &keys, &cfg).as_deref(),
        Ok([Decision::Allow { .. }, Decision::Allow { .. }])
    ));
}
