//! Step 8: caveat evaluation against the request, in the reference's two orders.
//!
//! - Up to `soa_threshold` caveats: token order; the first failing `Exp`/`Nbf` returns its error.
//! - More: every `Exp`, then every `Nbf`, then the soft checks grouped by kind in the order
//!   Aud, Method, PathPrefix, IpCidr, BytesLe, Tenant, Amnesia, GovPolicyDigest.
//!
//! Time values are compared as `i64` (the reference casts `u64` values), and `v + skew` /
//! `now + skew` wrap like the reference's release build.

use super::cidr::Net;
use super::context::{DenyReason, RequestCtx, VerifierConfig};
use super::types::{Caveat, CaveatKind};
use super::AuthError;
use ciborium::Value;

/// Soft-check kinds in the grouped evaluation order.
const GROUPED: [CaveatKind; 8] = [
    CaveatKind::Aud,
    CaveatKind::Method,
    CaveatKind::PathPrefix,
    CaveatKind::IpCidr,
    CaveatKind::BytesLe,
    CaveatKind::Tenant,
    CaveatKind::Amnesia,
    CaveatKind::GovPolicyDigest,
];

/// Evaluates the caveats; `Ok` holds the deny reasons (empty means allow).
pub(crate) fn evaluate(
    caveats: &[Caveat],
    ctx: &RequestCtx,
    cfg: &VerifierConfig,
) -> Result<Vec<DenyReason>, AuthError> {
    let clock = Clock {
        now: ctx.now_unix_s as i64,
        skew: cfg.clock_skew_secs as i64,
    };
    let mut soft = Soft {
        ctx,
        len: None,
        reasons: Vec::new(),
    };
    if caveats.len() <= cfg.soa_threshold {
        for caveat in caveats {
            clock.check(caveat)?;
            soft.check(caveat);
        }
    } else {
        for kind in [CaveatKind::Exp, CaveatKind::Nbf] {
            for caveat in caveats.iter().filter(|c| c.kind() == kind) {
                clock.check(caveat)?;
            }
        }
        for kind in GROUPED {
            for caveat in caveats.iter().filter(|c| c.kind() == kind) {
                soft.check(caveat);
            }
        }
    }
    Ok(soft.reasons)
}

struct Clock {
    now: i64,
    skew: i64,
}

impl Clock {
    /// The hard time checks (other caveats pass here).
    fn check(&self, caveat: &Caveat) -> Result<(), AuthError> {
        match *caveat {
            Caveat::Exp(v) if self.now > (v as i64).wrapping_add(self.skew) => {
                Err(AuthError::Expired)
            }
            Caveat::Nbf(v) if self.now.wrapping_add(self.skew) < v as i64 => {
                Err(AuthError::NotYetValid)
            }
            _ => Ok(()),
        }
    }
}

struct Soft<'c> {
    ctx: &'c RequestCtx,
    /// The request length from `extras`, looked up on first use.
    len: Option<Option<u64>>,
    reasons: Vec<DenyReason>,
}

impl Soft<'_> {
    /// The soft checks (time, `Rate` and `Custom` caveats pass here).
    fn check(&mut self, caveat: &Caveat) {
        let ctx = self.ctx;
        let reason = match caveat {
            Caveat::Aud(a) => (ctx.policy_digest_hex.as_deref() != Some(a.as_str()))
                .then_some(DenyReason::BadAudience),
            Caveat::Method(list) => (!list.iter().any(|m| m.eq_ignore_ascii_case(&ctx.method)))
                .then_some(DenyReason::MethodNotAllowed),
            Caveat::PathPrefix(p) => {
                (!ctx.path.starts_with(p.as_str())).then_some(DenyReason::PathNotAllowed)
            }
            Caveat::IpCidr(s) => {
                let inside = match (ctx.peer_ip, Net::parse(s)) {
                    (Some(ip), Some(net)) => net.contains(&ip),
                    _ => false,
                };
                (!inside).then_some(DenyReason::IpNotAllowed)
            }
            Caveat::BytesLe(max) => {
                let len = *self
                    .len
                    .get_or_insert_with(|| extras_len(ctx.extras.as_ref()));
                len.is_some_and(|l| l > *max)
                    .then_some(DenyReason::BytesExceed)
            }
            Caveat::Tenant(t) => (*t != ctx.tenant).then_some(DenyReason::TenantMismatch),
            Caveat::Amnesia(b) => {
                (*b != ctx.amnesia).then(|| DenyReason::Custom("amnesia_mismatch".to_string()))
            }
            Caveat::GovPolicyDigest(d) => (ctx.policy_digest_hex.as_deref() != Some(d.as_str()))
                .then(|| DenyReason::Custom("gov_policy_digest_mismatch".to_string())),
            Caveat::Exp(_) | Caveat::Nbf(_) | Caveat::Rate { .. } | Caveat::Custom { .. } => None,
        };
        if let Some(r) = reason {
            self.reasons.push(r);
        }
    }
}

fn untagged(mut v: &Value) -> &Value {
    while let Value::Tag(_, inner) = v {
        v = inner;
    }
    v
}

/// The request length: `extras` must be a map whose text key `"len"` holds a non-negative
/// integer or a non-negative float (truncated, saturating). Read as the reference's decoder
/// would have decoded `extras` (tags dropped; for a repeated key the last entry counts).
pub(crate) fn extras_len(extras: Option<&Value>) -> Option<u64> {
    let Value::Map(entries) = untagged(extras?) else {
        return None;
    };
    let value = entries
        .iter()
        .rev()
        .find(|(k, _)| matches!(untagged(k), Value::Text(t) if t == "len"))
        .map(|(_, v)| untagged(v))?;
    match value {
        Value::Integer(i) => u64::try_from(i128::from(*i)).ok(),
        Value::Float(f) if *f >= 0.0 => Some(*f as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestCtx {
        RequestCtx {
            now_unix_s: 1_700_000_000,
            method: "GET".into(),
            path: "/index/abc".into(),
            peer_ip: Some("10.1.2.3".parse().unwrap()),
            tenant: "tenant-a".into(),
            ..RequestCtx::default()
        }
    }

    fn map(pairs: Vec<(Value, Value)>) -> Option<Value> {
        Some(Value::Map(pairs))
    }

    #[test]
    fn extras_length() {
        let len = |v: Value| extras_len(map(vec![(Value::Text("len".into()), v)]).as_ref());
        assert_eq!(len(Value::Integer(5.into())), Some(5));
        assert_eq!(len(Value::Integer((-5).into())), None);
        assert_eq!(len(Value::Integer(u64::MAX.into())), Some(u64::MAX));
        assert_eq!(len(Value::Float(2.9)), Some(2));
        assert_eq!(len(Value::Float(-0.0)), Some(0));
        assert_eq!(len(Value::Float(-1.0)), None);
        assert_eq!(len(Value::Float(f64::NAN)), None);
        assert_eq!(len(Value::Float(f64::INFINITY)), Some(u64::MAX));
        assert_eq!(len(Value::Text("5".into())), None);
        assert_eq!(
            len(Value::Tag(0, Box::new(Value::Integer(7.into())))),
            Some(7)
        );
        assert_eq!(extras_len(None), None);
        assert_eq!(extras_len(Some(&Value::Null)), None);
        let dup = map(vec![
            (Value::Text("len".into()), Value::Integer(1.into())),
            (Value::Text("len".into()), Value::Integer(2.into())),
        ]);
        assert_eq!(extras_len(dup.as_ref()), Some(2));
        let bytes_key = map(vec![(
            Value::Bytes(b"len".to_vec()),
            Value::Integer(1.into()),
        )]);
        assert_eq!(extras_len(bytes_key.as_ref()), None);
    }

    #[test]
    fn time_quirks() {
        let cfg = VerifierConfig::default();
        let c = ctx();
        assert_eq!(
            evaluate(&[Caveat::Exp(u64::MAX)], &c, &cfg),
            Err(AuthError::Expired)
        );
        assert_eq!(evaluate(&[Caveat::Nbf(u64::MAX)], &c, &cfg), Ok(vec![]));
        // v + 60 overflows i64 and wraps negative: expired (release behaviour), no panic.
        assert_eq!(
            evaluate(&[Caveat::Exp(i64::MAX as u64 - 10)], &c, &cfg),
            Err(AuthError::Expired)
        );
        assert_eq!(
            evaluate(&[Caveat::Exp(i64::MAX as u64 - 60)], &c, &cfg),
            Ok(vec![])
        );
        // now + 60 overflows: every Nbf with a non-negative value is "not yet valid".
        let late = RequestCtx {
            now_unix_s: i64::MAX as u64 - 1,
            ..ctx()
        };
        assert_eq!(
            evaluate(&[Caveat::Nbf(0)], &late, &cfg),
            Err(AuthError::NotYetValid)
        );
        let far = RequestCtx {
            now_unix_s: u64::MAX,
            ..ctx()
        };
        assert_eq!(
            evaluate(&[Caveat::Exp(0)], &far, &cfg),
            Ok(vec![]),
            "now reads as -1"
        );
    }

    #[test]
    fn orders() {
        let cfg = VerifierConfig::default();
        let c = ctx();
        let soft = vec![
            Caveat::Tenant("x".into()),
            Caveat::Method(vec![]),
            Caveat::Aud("a".into()),
            Caveat::Nbf(u64::from(u32::MAX) * 2),
        ];
        assert_eq!(evaluate(&soft, &c, &cfg), Err(AuthError::NotYetValid));
        let mut many = soft[..3].to_vec();
        many.extend(std::iter::repeat_n(Caveat::Rate { per_s: 1, burst: 1 }, 14));
        assert_eq!(
            evaluate(&many, &c, &cfg),
            Ok(vec![
                DenyReason::BadAudience,
                DenyReason::MethodNotAllowed,
                DenyReason::TenantMismatch
            ])
        );
        let few = &many[..16];
        assert_eq!(
            evaluate(few, &c, &cfg),
            Ok(vec![
                DenyReason::TenantMismatch,
                DenyReason::MethodNotAllowed,
                DenyReason::BadAudience
            ])
        );
    }
}
