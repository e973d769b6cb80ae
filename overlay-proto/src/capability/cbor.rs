//! CBOR encoding with the reference encoder's conventions (serde_cbor 0.11).
//!
//! - definite lengths, shortest heads for integers and lengths, no tags;
//! - structs as maps with text keys in declaration order; `None` as `null`;
//! - generic values (`Custom` payloads) re-encoded canonically: shortest exact float width
//!   (NaN `f97e00`, ±∞ `f97c00`/`f9fc00`), integers in major type 0/1, tags dropped, and map
//!   keys sorted the way serde_cbor orders `Value`s with duplicates collapsed (last wins).
//!
//! serde_cbor's `Value` order (major type, then length for text/bytes/arrays/maps, integers
//! by absolute value, ties bytewise, everything else by serialized bytes) is exactly the
//! bytewise order of the shortest-form encodings, which is how keys are sorted here.

use super::types::{Capability, Caveat, Scope};
use ciborium::Value;

/// Major types.
pub(crate) const MAJOR_UINT: u8 = 0;
pub(crate) const MAJOR_NINT: u8 = 1;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const MAJOR_MAP: u8 = 5;

/// Writes a head with the shortest argument encoding.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Writes a text string.
pub(crate) fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, MAJOR_TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Writes a byte string.
pub(crate) fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, MAJOR_BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

fn write_null(out: &mut Vec<u8>) {
    out.push(0xf6);
}

fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.push(if b { 0xf5 } else { 0xf4 });
}

fn write_text_array(out: &mut Vec<u8>, items: &[String]) {
    write_head(out, MAJOR_ARRAY, items.len() as u64);
    for s in items {
        write_text(out, s);
    }
}

/// Writes the scope map: `{prefix, methods, max_bytes}`.
pub(crate) fn write_scope(out: &mut Vec<u8>, scope: &Scope) {
    out.push(0xa3);
    write_text(out, "prefix");
    match &scope.prefix {
        Some(p) => write_text(out, p),
        None => write_null(out),
    }
    write_text(out, "methods");
    write_text_array(out, &scope.methods);
    write_text(out, "max_bytes");
    match scope.max_bytes {
        Some(m) => write_head(out, MAJOR_UINT, m),
        None => write_null(out),
    }
}

/// Writes the MAC init tuple `[tid, kid, scope]`.
pub(crate) fn write_init(out: &mut Vec<u8>, tid: &str, kid: &str, scope: &Scope) {
    out.push(0x83);
    write_text(out, tid);
    write_text(out, kid);
    write_scope(out, scope);
}

/// Writes one caveat: `{"t": name, "v": content}`.
pub(crate) fn write_caveat(out: &mut Vec<u8>, caveat: &Caveat) {
    out.extend_from_slice(&[0xa2, 0x61, b't']);
    write_text(out, caveat.type_name());
    out.extend_from_slice(&[0x61, b'v']);
    match caveat {
        Caveat::Exp(v) | Caveat::Nbf(v) | Caveat::BytesLe(v) => write_head(out, MAJOR_UINT, *v),
        Caveat::Aud(s)
        | Caveat::PathPrefix(s)
        | Caveat::IpCidr(s)
        | Caveat::Tenant(s)
        | Caveat::GovPolicyDigest(s) => write_text(out, s),
        Caveat::Method(list) => write_text_array(out, list),
        Caveat::Amnesia(b) => write_bool(out, *b),
        Caveat::Rate { per_s, burst } => {
            out.push(0xa2);
            write_text(out, "per_s");
            write_head(out, MAJOR_UINT, u64::from(*per_s));
            write_text(out, "burst");
            write_head(out, MAJOR_UINT, u64::from(*burst));
        }
        Caveat::Custom { ns, name, cbor } => {
            out.push(0xa3);
            write_text(out, "ns");
            write_text(out, ns);
            write_text(out, "name");
            write_text(out, name);
            write_text(out, "cbor");
            write_value(out, cbor);
        }
    }
}

/// Writes the whole capability map.
pub(crate) fn write_capability(out: &mut Vec<u8>, cap: &Capability) {
    out.push(0xa5);
    write_text(out, "tid");
    write_text(out, &cap.tid);
    write_text(out, "kid");
    write_text(out, &cap.kid);
    write_text(out, "scope");
    write_scope(out, &cap.scope);
    write_text(out, "caveats");
    write_head(out, MAJOR_ARRAY, cap.caveats.len() as u64);
    for c in &cap.caveats {
        write_caveat(out, c);
    }
    write_text(out, "mac");
    write_bytes(out, &cap.mac);
}

/// The half-precision bits of `v` when `v` (finite) is exactly representable as an IEEE 754
/// binary16 value.
pub(crate) fn f32_to_f16_exact(v: f32) -> Option<u16> {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x007f_ffff;
    if exp == 0xff {
        return None;
    }
    if exp == 0 {
        // Zero keeps its sign; f32 subnormals are far below the smallest f16 subnormal.
        return if mant == 0 { Some(sign) } else { None };
    }
    let e = exp - 127;
    if (-14..=15).contains(&e) {
        // Normal f16: the low 13 mantissa bits must be zero.
        if mant & 0x1fff != 0 {
            return None;
        }
        return Some(sign | (((e + 15) as u16) << 10) | (mant >> 13) as u16);
    }
    if (-24..=-15).contains(&e) {
        // Subnormal f16: value = k * 2^-24 with k = full_mantissa >> shift, exactly.
        let full = mant | 0x0080_0000;
        let shift = (-(e + 1)) as u32; // 14..=23
        if full & ((1u32 << shift) - 1) != 0 {
            return None;
        }
        return Some(sign | (full >> shift) as u16);
    }
    None
}

/// The value of half-precision `bits` as f32 (exact; NaN stays NaN).
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x03ff);
    let magnitude = if exp == 0 {
        // Zero or subnormal: mant * 2^-24, exact in f32.
        mant as f32 * (1.0 / 16_777_216.0)
    } else if exp == 0x1f {
        if mant == 0 {
            f32::INFINITY
        } else {
            f32::NAN
        }
    } else {
        f32::from_bits(((exp + 127 - 15) << 23) | (mant << 13))
    };
    f32::from_bits(sign | magnitude.to_bits())
}

/// Writes a float in the shortest width that holds it exactly (serde_cbor's rule).
pub(crate) fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 {
            &[0xf9, 0x7c, 0x00]
        } else {
            &[0xf9, 0xfc, 0x00]
        });
    } else {
        let single = v as f32;
        if f64::from(single) == v {
            match f32_to_f16_exact(single) {
                Some(h) => {
                    out.push(0xf9);
                    out.extend_from_slice(&h.to_be_bytes());
                }
                None => {
                    out.push(0xfa);
                    out.extend_from_slice(&single.to_bits().to_be_bytes());
                }
            }
        } else {
            out.push(0xfb);
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }
}

/// Writes an integer in major type 0 or 1.
pub(crate) fn write_integer(out: &mut Vec<u8>, i: i128) {
    if i < 0 {
        // ciborium integers are within -2^64..2^64-1, so this fits.
        write_head(out, MAJOR_NINT, (-1 - i) as u64);
    } else {
        write_head(out, MAJOR_UINT, i as u64);
    }
}

/// Writes a generic value canonically (see the module docs).
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Integer(i) => write_integer(out, i128::from(*i)),
        Value::Bytes(b) => write_bytes(out, b),
        Value::Float(f) => write_f64(out, *f),
        Value::Text(s) => write_text(out, s),
        Value::Bool(b) => write_bool(out, *b),
        Value::Null => write_null(out),
        Value::Tag(_, inner) => write_value(out, inner),
        Value::Array(items) => {
            write_head(out, MAJOR_ARRAY, items.len() as u64);
            for item in items {
                write_value(out, item);
            }
        }
        Value::Map(entries) => {
            let mut scratch = Vec::new();
            let spans = entries
                .iter()
                .map(|(k, v)| {
                    let start = scratch.len();
                    write_value(&mut scratch, k);
                    let key_end = scratch.len();
                    write_value(&mut scratch, v);
                    Span {
                        start,
                        key_end,
                        end: scratch.len(),
                    }
                })
                .collect::<Vec<_>>();
            let order = map_order(&scratch, &spans);
            write_head(out, MAJOR_MAP, order.len() as u64);
            for &i in &order {
                if let Some(span) = spans.get(i) {
                    out.extend_from_slice(scratch.get(span.start..span.end).unwrap_or_default());
                }
            }
        }
        // `Value` is non-exhaustive; anything new has no serde_cbor counterpart.
        _ => write_null(out),
    }
}

/// Where one encoded map entry lies in a scratch buffer: key `start..key_end`, value
/// `key_end..end`.
struct Span {
    start: usize,
    key_end: usize,
    end: usize,
}

/// The entry indices of a map in encoding order: sorted by encoded key (serde_cbor's `Value`
/// order), one per distinct key, the last occurrence winning (its map is a `BTreeMap`).
fn map_order(scratch: &[u8], spans: &[Span]) -> Vec<usize> {
    let key = |i: usize| {
        spans
            .get(i)
            .and_then(|s| scratch.get(s.start..s.key_end))
            .unwrap_or_default()
    };
    let mut order: Vec<usize> = (0..spans.len()).collect();
    // Stable: equal keys stay in input order, so the last of a run is the one to keep.
    order.sort_by(|&a, &b| key(a).cmp(key(b)));
    let mut kept: Vec<usize> = Vec::with_capacity(order.len());
    for i in order {
        match kept.last_mut() {
            Some(last) if key(*last) == key(i) => *last = i,
            _ => kept.push(i),
        }
    }
    kept
}

/// The canonical form of a generic value: tags removed, floats and integers unchanged, maps
/// sorted with duplicate keys collapsed (the last one wins), unknown variants as `Null`.
/// Encoding it gives the same bytes as encoding the original; a decoded `Custom` payload is
/// always in this form.
pub fn canonicalize(value: Value) -> Value {
    canonical_into(value, &mut Vec::new())
}

/// Canonicalizes `value`, appending its encoding to `out`. Every byte is copied once per
/// enclosing map and allocations are per container, whatever the nesting.
fn canonical_into(value: Value, out: &mut Vec<u8>) -> Value {
    match value {
        Value::Tag(_, inner) => canonical_into(*inner, out),
        Value::Array(items) => {
            write_head(out, MAJOR_ARRAY, items.len() as u64);
            Value::Array(
                items
                    .into_iter()
                    .map(|item| canonical_into(item, out))
                    .collect(),
            )
        }
        Value::Map(mut entries) => {
            let mut scratch = Vec::new();
            let mut spans = Vec::with_capacity(entries.len());
            for entry in &mut entries {
                let (k, v) = core::mem::replace(entry, (Value::Null, Value::Null));
                let start = scratch.len();
                let k = canonical_into(k, &mut scratch);
                let key_end = scratch.len();
                let v = canonical_into(v, &mut scratch);
                spans.push(Span {
                    start,
                    key_end,
                    end: scratch.len(),
                });
                *entry = (k, v);
            }
            let order = map_order(&scratch, &spans);
            write_head(out, MAJOR_MAP, order.len() as u64);
            let mut kept = Vec::with_capacity(order.len());
            for i in order {
                if let (Some(span), Some(entry)) = (spans.get(i), entries.get_mut(i)) {
                    out.extend_from_slice(scratch.get(span.start..span.end).unwrap_or_default());
                    kept.push(core::mem::replace(entry, (Value::Null, Value::Null)));
                }
            }
            Value::Map(kept)
        }
        v @ (Value::Integer(_)
        | Value::Bytes(_)
        | Value::Float(_)
        | Value::Text(_)
        | Value::Bool(_)
        | Value::Null) => {
            write_value(out, &v);
            v
        }
        _ => {
            write_null(out);
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v);
        hex::encode(out)
    }

    fn int(i: i128) -> Value {
        Value::Integer(ciborium::value::Integer::try_from(i).unwrap())
    }

    #[test]
    fn integer_boundaries() {
        let cases: &[(i128, &str)] = &[
            (0, "00"),
            (23, "17"),
            (24, "1818"),
            (255, "18ff"),
            (256, "190100"),
            (65535, "19ffff"),
            (65536, "1a00010000"),
            (4294967295, "1affffffff"),
            (4294967296, "1b0000000100000000"),
            (u64::MAX as i128, "1bffffffffffffffff"),
            (-1, "20"),
            (-24, "37"),
            (-25, "3818"),
            (-256, "38ff"),
            (-257, "390100"),
            (-65537, "3a00010000"),
            (-4294967297, "3b0000000100000000"),
            (-(u64::MAX as i128) - 1, "3bffffffffffffffff"),
        ];
        for (i, want) in cases {
            assert_eq!(enc(&int(*i)), *want, "{i}");
        }
    }

    #[test]
    fn float_widths() {
        let cases: &[(f64, &str)] = &[
            (0.0, "f90000"),
            (-0.0, "f98000"),
            (1.0, "f93c00"),
            (1.5, "f93e00"),
            (-2.0, "f9c000"),
            (65504.0, "f97bff"),
            (65520.0, "fa477ff000"),
            (5.960464477539063e-8, "f90001"), // smallest f16 subnormal
            (6.103515625e-5, "f90400"),       // smallest f16 normal
            (3.0517578125e-5, "f90200"),      // f16 subnormal
            (2.9802322387695312e-8, "fa33000000"), // half of the smallest f16 subnormal
            (100000.0, "fa47c35000"),
            (3.4028234663852886e38, "fa7f7fffff"),
            (1.1754943508222875e-38, "fa00800000"),
            (1.401298464324817e-45, "fa00000001"), // smallest f32 subnormal
            (0.1, "fb3fb999999999999a"),
            (1e300, "fb7e37e43c8800759c"),
            (f64::INFINITY, "f97c00"),
            (f64::NEG_INFINITY, "f9fc00"),
            (f64::NAN, "f97e00"),
            (-f64::NAN, "f97e00"),
            (f64::from_bits(0x7ff0_0000_0000_0001), "f97e00"),
        ];
        for (f, want) in cases {
            assert_eq!(enc(&Value::Float(*f)), *want, "{f:e}");
        }
    }

    #[test]
    fn half_conversion_round_trips() {
        for bits in 0u16..=u16::MAX {
            let f = f16_to_f32(bits);
            if f.is_nan() {
                continue;
            }
            if f.is_infinite() {
                assert_eq!(f32_to_f16_exact(f), None);
                continue;
            }
            assert_eq!(f32_to_f16_exact(f), Some(bits), "{bits:04x}");
        }
    }

    #[test]
    fn map_key_order_and_duplicates() {
        let m = Value::Map(vec![
            (Value::Text("b".into()), int(1)),
            (Value::Text("aa".into()), int(2)),
            (int(-1), Value::Null),
            (int(10), Value::Null),
            (int(-100), Value::Null),
            (Value::Bytes(vec![0xff]), Value::Null),
            (Value::Bool(true), Value::Null),
            (Value::Null, Value::Null),
            (Value::Bool(false), Value::Null),
            (Value::Float(1.5), Value::Null),
            (Value::Array(vec![int(1), int(2)]), Value::Null),
            (Value::Array(vec![int(3)]), Value::Null),
            (Value::Text("a".into()), int(3)),
            (Value::Text("b".into()), int(4)),
            (Value::Tag(1, Box::new(int(5))), Value::Null),
        ]);
        // 5, 10 | -1, -100 | h'ff' | "a", "b"(last wins: 4), "aa" | [3], [1,2] | false, true, null, 1.5
        assert_eq!(
            enc(&m),
            "ae05f60af620f63863f641fff6616103616204626161028103f6820102f6f4f6f5f6f6f6f93e00f6"
        );
        let canon = canonicalize(m.clone());
        assert_eq!(enc(&canon), enc(&m));
        let Value::Map(entries) = &canon else {
            panic!("map")
        };
        assert_eq!(entries.len(), 14);
        assert_eq!(entries[0].0, int(5), "tag dropped");
    }

    #[test]
    fn caveat_encodings_match_reference() {
        let c = Caveat::Exp(1_700_003_600);
        assert_eq!(hex::encode(c.to_cbor()), "a261746345787061761a6553ff10");
        let c = Caveat::Method(vec!["GET".into(), "PUT".into()]);
        assert_eq!(
            hex::encode(c.to_cbor()),
            "a26174664d6574686f646176826347455463505554"
        );
        let c = Caveat::Rate {
            per_s: 10,
            burst: 20,
        };
        assert_eq!(
            hex::encode(c.to_cbor()),
            "a2617464526174656176a2657065725f730a65627572737414"
        );
    }
}
