//! `svc-overlay token mint | inspect | attenuate`: capability tokens with the core's own
//! minting, attenuation and decoding (no second implementation of the format).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use overlay_proto::capability::{
    attenuate, compute_mac, control_caveat, decode_token, mint, peer_caveat, Capability, Caveat,
    CborValue, OverlayCaveats, Scope, VerifierConfig,
};
use overlay_proto::{MacKey, PeerId};
use serde_json::{json, Value};

use super::args::CaveatArgs;
use super::OperatorError;
use crate::config::secrets;

/// A signing key named on the command line as `KID:TID:FILE`.
pub(crate) struct CapKeyArg {
    /// Key id.
    pub(crate) kid: String,
    /// Tenant id.
    pub(crate) tid: String,
    /// The secret.
    pub(crate) key: MacKey,
}

impl CapKeyArg {
    /// Parses `KID:TID:FILE` and reads the key file (64 hex digits, mode 0600).
    pub(crate) fn load(arg: &str) -> Result<CapKeyArg, OperatorError> {
        let mut parts = arg.splitn(3, ':');
        let (Some(kid), Some(tid), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(OperatorError::usage(format!(
                "--cap-key `{arg}`: expected KID:TID:FILE"
            )));
        };
        for (what, value) in [("KID", kid), ("TID", tid), ("FILE", file)] {
            if value.is_empty() || value.chars().any(char::is_whitespace) {
                return Err(OperatorError::usage(format!(
                    "--cap-key `{arg}`: {what} must be non-empty without whitespace"
                )));
            }
        }
        let key = secrets::read_mac_key("cap_key", &PathBuf::from(file))
            .map_err(|e| OperatorError::usage(e.to_string()))?;
        Ok(CapKeyArg {
            kid: kid.to_string(),
            tid: tid.to_string(),
            key,
        })
    }
}

/// Seconds since the unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses a lifetime: seconds, or a number with `s`, `m`, `h` or `d`.
pub(crate) fn parse_ttl(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|s| *s > 0)
}

/// The caveats the flags ask for, in a fixed order (time, methods, path, size, rate, peer,
/// control), and the scope they grant.
pub(crate) fn caveats_of(
    args: &CaveatArgs,
    now: u64,
) -> Result<(Scope, Vec<Caveat>), OperatorError> {
    let mut scope = Scope::default();
    let mut caveats = Vec::new();
    if let Some(ttl) = &args.ttl {
        let secs = parse_ttl(ttl).ok_or_else(|| {
            OperatorError::usage(format!(
                "--ttl `{ttl}`: expected seconds or a number with s, m, h or d (e.g. 24h)"
            ))
        })?;
        caveats.push(Caveat::Exp(now.saturating_add(secs)));
    }
    if let Some(exp) = args.exp {
        caveats.push(Caveat::Exp(exp));
    }
    if let Some(nbf) = args.nbf {
        caveats.push(Caveat::Nbf(nbf));
    }
    if !args.methods.is_empty() {
        if let Some(bad) = args
            .methods
            .iter()
            .find(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(OperatorError::usage(format!(
                "--method `{bad}`: expected a method name such as GET, POST or overlay"
            )));
        }
        scope.methods.clone_from(&args.methods);
        caveats.push(Caveat::Method(args.methods.clone()));
    }
    if let Some(prefix) = &args.path_prefix {
        if !prefix.starts_with('/') {
            return Err(OperatorError::usage(format!(
                "--path-prefix `{prefix}`: expected a path starting with `/`"
            )));
        }
        scope.prefix = Some(prefix.clone());
        caveats.push(Caveat::PathPrefix(prefix.clone()));
    }
    if let Some(max) = args.max_bytes {
        scope.max_bytes = Some(max);
        caveats.push(Caveat::BytesLe(max));
    }
    if let Some(rate) = &args.rate {
        let parsed = rate
            .split_once(':')
            .and_then(|(p, b)| Some((p.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)))
            .filter(|(p, b)| *p > 0 && *b > 0);
        let Some((per_s, burst)) = parsed else {
            return Err(OperatorError::usage(format!(
                "--rate `{rate}`: expected PER_S:BURST, two positive integers"
            )));
        };
        caveats.push(Caveat::Rate { per_s, burst });
    }
    if let Some(peer) = &args.peer {
        let id: PeerId = peer.trim().parse().map_err(|_| {
            OperatorError::usage(format!("--peer `{peer}`: expected peer:<64 hex digits>"))
        })?;
        caveats.push(peer_caveat(&id));
    }
    if args.control {
        caveats.push(control_caveat());
    }
    Ok((scope, caveats))
}

/// `token mint`.
pub(crate) fn mint_token(cap_key: &str, args: &CaveatArgs) -> Result<String, OperatorError> {
    let key = CapKeyArg::load(cap_key)?;
    let (scope, caveats) = caveats_of(args, unix_now())?;
    let token = mint(&key.key, &key.tid, &key.kid, scope, caveats);
    check_size(&token)?;
    Ok(token)
}

/// `token attenuate`: the token's caveats plus the new ones, MAC chain continued.
pub(crate) fn attenuate_token(
    token: &str,
    cap_key: &str,
    args: &CaveatArgs,
) -> Result<String, OperatorError> {
    let key = CapKeyArg::load(cap_key)?;
    let cfg = VerifierConfig::default();
    let cap = decode_token(token.as_bytes(), &cfg)
        .map_err(|e| OperatorError::usage(format!("the token does not decode: {e}")))?;
    if (cap.kid.as_str(), cap.tid.as_str()) != (key.kid.as_str(), key.tid.as_str()) {
        return Err(OperatorError::usage(format!(
            "the token is for key {}:{}, not {}:{}",
            cap.kid, cap.tid, key.kid, key.tid
        )));
    }
    // The scope is fixed at minting; the caveats these flags add still narrow the token.
    let (_, extra) = caveats_of(args, unix_now())?;
    if extra.is_empty() {
        return Err(OperatorError::usage(
            "nothing to add: give at least one caveat flag (--ttl, --method, --peer, …)",
        ));
    }
    attenuate(token.as_bytes(), &key.key, extra, &cfg)
        .map_err(|e| OperatorError::usage(format!("cannot attenuate the token: {e}")))
}

fn check_size(token: &str) -> Result<(), OperatorError> {
    secrets::check_token(token).map_err(|reason| OperatorError::usage(reason.to_string()))
}

/// `token inspect`: the token as JSON; with a key, whether its MAC is right.
pub(crate) fn inspect_token(token: &str, cap_key: Option<&str>) -> Result<Value, OperatorError> {
    let cap = decode_token(token.as_bytes(), &VerifierConfig::default())
        .map_err(|e| OperatorError::usage(format!("the token does not decode: {e}")))?;
    let mut out = json!({
        "tid": cap.tid,
        "kid": cap.kid,
        "scope": {
            "prefix": cap.scope.prefix,
            "methods": cap.scope.methods,
            "max_bytes": cap.scope.max_bytes,
        },
        "caveats": cap.caveats.iter().map(caveat_json).collect::<Vec<_>>(),
        "mac_hex": hex::encode(cap.mac),
    });
    match OverlayCaveats::of(&cap) {
        Ok(o) => {
            out["overlay"] = json!({
                "bound_peer": o.bound_peer.map(|p| p.to_string()),
                "conflicting_peers": o.conflicting_peers,
                "control": o.control,
            });
        }
        Err(e) => out["overlay"] = json!({ "error": e.to_string() }),
    }
    out["mac"] = match cap_key {
        None => json!("not checked (no --cap-key)"),
        Some(arg) => {
            let key = CapKeyArg::load(arg)?;
            json!(if mac_ok(&cap, &key) {
                "valid"
            } else {
                "invalid"
            })
        }
    };
    Ok(out)
}

fn mac_ok(cap: &Capability, key: &CapKeyArg) -> bool {
    if (cap.kid.as_str(), cap.tid.as_str()) != (key.kid.as_str(), key.tid.as_str()) {
        return false;
    }
    let expected = compute_mac(&key.key, &cap.tid, &cap.kid, &cap.scope, &cap.caveats);
    // Constant time is not needed offline, but costs nothing.
    expected
        .iter()
        .zip(cap.mac.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// One caveat as `{"t": name, "v": value}` (as in the token), with the overlay's own custom
/// caveats shown readably.
fn caveat_json(caveat: &Caveat) -> Value {
    let v = match caveat {
        Caveat::Exp(s) | Caveat::Nbf(s) | Caveat::BytesLe(s) => json!(s),
        Caveat::Aud(s)
        | Caveat::PathPrefix(s)
        | Caveat::IpCidr(s)
        | Caveat::Tenant(s)
        | Caveat::GovPolicyDigest(s) => json!(s),
        Caveat::Method(m) => json!(m),
        Caveat::Rate { per_s, burst } => json!({ "per_s": per_s, "burst": burst }),
        Caveat::Amnesia(b) => json!(b),
        Caveat::Custom { ns, name, cbor } => {
            json!({ "ns": ns, "name": name, "value": cbor_json(cbor) })
        }
    };
    json!({ "t": caveat.type_name(), "v": v })
}

fn cbor_json(value: &CborValue) -> Value {
    match value {
        CborValue::Bool(b) => json!(b),
        CborValue::Text(t) => json!(t),
        CborValue::Bytes(b) if b.len() == 32 => json!(format!("peer:{}", hex::encode(b))),
        CborValue::Bytes(b) => json!({ "bytes_hex": hex::encode(b) }),
        CborValue::Integer(i) => json!(i128::from(*i).to_string()),
        CborValue::Null => Value::Null,
        other => json!(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Some(90));
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("15m"), Some(900));
        assert_eq!(parse_ttl("24h"), Some(86_400));
        assert_eq!(parse_ttl("2d"), Some(172_800));
        for bad in ["", "0", "h", "1w", "-5", "1.5h", "99999999999999999999"] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }

    #[test]
    fn caveats_in_flag_order_and_scope() {
        let args = CaveatArgs {
            ttl: Some("1h".into()),
            nbf: Some(5),
            methods: vec!["GET".into(), "POST".into()],
            path_prefix: Some("/v1/".into()),
            max_bytes: Some(100),
            rate: Some("10:20".into()),
            peer: Some(format!("peer:{}", "ab".repeat(32))),
            control: true,
            ..CaveatArgs::default()
        };
        let (scope, caveats) = caveats_of(&args, 1000).unwrap();
        assert_eq!(scope.methods, vec!["GET", "POST"]);
        assert_eq!(scope.prefix.as_deref(), Some("/v1/"));
        assert_eq!(scope.max_bytes, Some(100));
        assert_eq!(caveats[0], Caveat::Exp(4600));
        assert_eq!(caveats[1], Caveat::Nbf(5));
        assert_eq!(
            caveats[5],
            Caveat::Rate {
                per_s: 10,
                burst: 20
            }
        );
        assert_eq!(caveats[6], peer_caveat(&PeerId([0xab; 32])));
        assert_eq!(caveats[7], control_caveat());
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        for args in [
            CaveatArgs {
                rate: Some("10".into()),
                ..CaveatArgs::default()
            },
            CaveatArgs {
                rate: Some("0:1".into()),
                ..CaveatArgs::default()
            },
            CaveatArgs {
                peer: Some("peer:zz".into()),
                ..CaveatArgs::default()
            },
            CaveatArgs {
                path_prefix: Some("v1".into()),
                ..CaveatArgs::default()
            },
            CaveatArgs {
                methods: vec![String::new()],
                ..CaveatArgs::default()
            },
        ] {
            let e = caveats_of(&args, 0).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }
}
