//! Configured peers (`--peer`): `host:port` names and `peer:<id>@host:port` pins.
//!
//! DNS is IO, so it lives here, not in the core: a name is resolved at start and, while it
//! does not resolve, again after the membership backoff (`backoff_base`, doubling up to
//! `backoff_max`, jittered); once it resolves it is re-resolved every `backoff_max`, and every
//! address not offered before goes to the core as `Input::PeersDiscovered` (a seed whose name
//! later resolves, or moves, is found). The core decides when to dial what it knows, with its
//! own backoff per address; before every dial of an address that came from a name, the dialer
//! resolves the name again (see `dial`): an address the name no longer resolves to is not
//! dialed (the attempt fails as refused, counted as `errors_total{stage="dial",
//! kind="stale_name"}`) and the new addresses are offered instead.
//!
//! A pinned target records its PeerId for every address its name resolves to; the dialer then
//! requires exactly that TLS identity from the address ([`Pins::expected`]). Any other
//! identity fails the handshake with `TlsError::PeerIdMismatch`, counted as
//! `overlay_handshake_failures_total{reason="peer_id_mismatch"}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use overlay_proto::PeerId;
use tokio::sync::mpsc;

use super::net::Net;
use super::node_task::Command;
use super::SplitMix;

/// One configured peer: a `host:port` to resolve and, if pinned, the identity it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    /// `host:port` (IPv6 as `[addr]:port`).
    pub host_port: String,
    /// The only identity accepted from the addresses of `host_port`.
    pub pinned: Option<PeerId>,
}

impl PeerTarget {
    /// Parses `host:port` or `peer:<64 hex>@host:port` (the syntax is checked by the config
    /// loader; here only the pin is split off).
    pub fn parse(text: &str) -> Option<PeerTarget> {
        let text = text.trim();
        match text.split_once('@') {
            Some((id, host_port)) => Some(PeerTarget {
                host_port: host_port.to_string(),
                pinned: Some(id.parse().ok()?),
            }),
            None => Some(PeerTarget {
                host_port: text.to_string(),
                pinned: None,
            }),
        }
    }

    /// Whether the target is a literal socket address (no DNS).
    fn literal(&self) -> Option<SocketAddr> {
        self.host_port.parse().ok()
    }
}

/// What the operator configured, per address: the name it came from (re-resolved before every
/// dial of it) and the pinned identity. Shared by the resolver and the dialer; the lock is only
/// held for a map operation, never across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct SeedBook(Mutex<BookInner>);

#[derive(Debug, Default)]
struct BookInner {
    /// The configured name each address was resolved from (literal addresses have none).
    names: HashMap<SocketAddr, Arc<PeerTarget>>,
    /// Identities pinned per address.
    pins: HashMap<SocketAddr, PeerId>,
}

impl SeedBook {
    fn inner(&self) -> std::sync::MutexGuard<'_, BookInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `addr` must present `peer`.
    pub(crate) fn pin(&self, addr: SocketAddr, peer: PeerId) {
        self.inner().pins.insert(addr, peer);
    }

    /// The identity pinned for `addr`, if any.
    pub(crate) fn expected(&self, addr: SocketAddr) -> Option<PeerId> {
        self.inner().pins.get(&addr).copied()
    }

    /// The configured name `addr` was resolved from, if any.
    pub(crate) fn name_of(&self, addr: SocketAddr) -> Option<Arc<PeerTarget>> {
        self.inner().names.get(&addr).cloned()
    }

    /// Records what `target` resolved to (names and pins); returns the addresses not seen
    /// before, which membership has not been offered yet. At most [`MAX_NAMED_ADDRS`]
    /// addresses are remembered.
    pub(crate) fn learn(&self, target: &Arc<PeerTarget>, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut inner = self.inner();
        let mut fresh = Vec::new();
        for &addr in addrs {
            if let Some(peer) = target.pinned {
                inner.pins.insert(addr, peer);
            }
            if inner.names.contains_key(&addr) {
                continue;
            }
            if inner.names.len() >= MAX_NAMED_ADDRS {
                break;
            }
            inner.names.insert(addr, Arc::clone(target));
            fresh.push(addr);
        }
        fresh
    }
}

/// Most addresses remembered for configured names (4096 names × a few addresses each).
pub(crate) const MAX_NAMED_ADDRS: usize = 16_384;

/// Offers addresses to membership without waiting: the node task may be busy, and a dropped
/// offer is repeated by the next resolution.
pub(crate) fn offer(cmd: &mpsc::WeakSender<Command>, addrs: Vec<SocketAddr>) {
    if addrs.is_empty() {
        return;
    }
    if let Some(tx) = cmd.upgrade() {
        if tx.try_send(Command::AddPeers { addrs }).is_err() {
            tracing::debug!("command queue full; resolved peer addresses offered later");
        }
    }
}

/// Records the pins of literal targets and returns their addresses; the named targets are left
/// for [`resolve_names`].
pub(crate) fn split_literal(
    targets: &[PeerTarget],
    book: &SeedBook,
) -> (Vec<SocketAddr>, Vec<Arc<PeerTarget>>) {
    let mut literal = Vec::new();
    let mut names = Vec::new();
    for target in targets {
        match target.literal() {
            Some(addr) => {
                if let Some(peer) = target.pinned {
                    book.pin(addr, peer);
                }
                literal.push(addr);
            }
            None => names.push(Arc::new(target.clone())),
        }
    }
    (literal, names)
}

/// The resolver's retry settings (the core's membership backoff).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

/// Resolves every named target until the node stops (its command channel closes): see the
/// module documentation.
pub(crate) async fn resolve_names<N: Net>(
    net: N,
    targets: Vec<Arc<PeerTarget>>,
    book: Arc<SeedBook>,
    cmd: mpsc::WeakSender<Command>,
    backoff: Backoff,
    seed: u64,
) {
    if targets.is_empty() {
        return;
    }
    let mut jitter = SplitMix(seed ^ 0x5eed_5eed);
    let mut failures: Vec<u32> = vec![0; targets.len()];
    let mut next: Vec<tokio::time::Instant> = vec![tokio::time::Instant::now(); targets.len()];
    loop {
        let now = tokio::time::Instant::now();
        for (i, target) in targets.iter().enumerate() {
            if next[i] > now {
                continue;
            }
            let wait = match net.resolve(&target.host_port).await {
                Ok(addrs) if !addrs.is_empty() => {
                    if failures[i] > 0 {
                        tracing::info!(peer = %target.host_port, ?addrs, "peer name resolves now");
                    }
                    failures[i] = 0;
                    let fresh = book.learn(target, &addrs);
                    if !fresh.is_empty() {
                        let Some(tx) = cmd.upgrade() else { return };
                        if tx.send(Command::AddPeers { addrs: fresh }).await.is_err() {
                            return;
                        }
                    }
                    backoff.max
                }
                outcome => {
                    if failures[i] == 0 {
                        let error = match outcome {
                            Err(e) => e.to_string(),
                            Ok(_) => "no addresses".to_string(),
                        };
                        tracing::warn!(peer = %target.host_port, %error, "cannot resolve peer name yet; retrying with backoff");
                    }
                    failures[i] = failures[i].saturating_add(1);
                    let exp = failures[i].saturating_sub(1).min(20);
                    jitter.jitter(backoff.base.saturating_mul(1u32 << exp).min(backoff.max))
                }
            };
            next[i] = tokio::time::Instant::now() + wait;
        }
        if cmd.upgrade().is_none_or(|tx| tx.is_closed()) {
            return;
        }
        let Some(&soonest) = next.iter().min() else {
            return;
        };
        tokio::time::sleep_until(soonest).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_pins() {
        let id = format!("peer:{}", "cd".repeat(32));
        let t = PeerTarget::parse(&format!("{id}@seed.example:9415")).unwrap();
        assert_eq!(t.host_port, "seed.example:9415");
        assert_eq!(t.pinned, Some(PeerId([0xcd; 32])));
        let t = PeerTarget::parse("10.0.0.1:9415").unwrap();
        assert_eq!(t.pinned, None);
        assert_eq!(t.literal(), Some("10.0.0.1:9415".parse().unwrap()));
        assert_eq!(PeerTarget::parse("peer:zz@a:1"), None);
    }

    #[test]
    fn literal_targets_are_pinned_at_once() {
        let pins = SeedBook::default();
        let id = PeerId([1; 32]);
        let targets = vec![
            PeerTarget::parse(&format!("{id}@127.0.0.1:9")).unwrap(),
            PeerTarget::parse("seed:9").unwrap(),
        ];
        let (addrs, names) = split_literal(&targets, &pins);
        assert_eq!(addrs, vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(names.len(), 1);
        assert_eq!(pins.expected("127.0.0.1:9".parse().unwrap()), Some(id));
        assert_eq!(pins.expected("127.0.0.1:10".parse().unwrap()), None);
    }

    #[test]
    fn learned_addresses_are_named_pinned_and_fresh_once() {
        let book = SeedBook::default();
        let id = PeerId([3; 32]);
        let target = Arc::new(PeerTarget::parse(&format!("{id}@seed:9")).unwrap());
        let a: SocketAddr = "10.0.0.1:9".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:9".parse().unwrap();
        assert_eq!(book.learn(&target, &[a]), vec![a]);
        assert_eq!(book.learn(&target, &[a, b]), vec![b]);
        assert_eq!(book.expected(b), Some(id));
        assert_eq!(
            book.name_of(a).map(|t| t.host_port.clone()),
            Some("seed:9".into())
        );
        assert!(book.name_of("10.0.0.3:9".parse().unwrap()).is_none());
    }
}
