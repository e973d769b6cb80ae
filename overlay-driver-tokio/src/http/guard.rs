//! Admission of HTTP connections: a budget per listener, a cap per address, eviction of the
//! connection stalled longest when the budget is full, and a small reserve that only serves
//! health and readiness probes. Each admitted connection gets a [`ConnState`] that its IO
//! wrapper, request hooks and watchdog share.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::limits::{HttpClose, HttpCounters, HttpLimits, HttpRefusal};

/// Admission control of one listener.
#[derive(Clone, Debug)]
pub struct HttpGuard {
    inner: Arc<GuardInner>,
}

#[derive(Debug)]
struct GuardInner {
    limits: HttpLimits,
    counters: HttpCounters,
    epoch: Instant,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    /// Open connections of the main budget, by admission order.
    conns: BTreeMap<u64, Arc<ConnState>>,
    /// Open probe-reserve connections.
    reserve: usize,
    /// Open connections (both kinds) per address.
    per_ip: HashMap<IpAddr, usize>,
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnTicket {
    guard: HttpGuard,
    pub(crate) state: Arc<ConnState>,
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        let inner = &self.guard.inner;
        {
            let mut reg = inner
                .registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.state.probe_only {
                reg.reserve = reg.reserve.saturating_sub(1);
            } else {
                reg.conns.remove(&self.state.id);
            }
            if let Some(n) = reg.per_ip.get_mut(&self.state.ip) {
                *n -= 1;
                if *n == 0 {
                    reg.per_ip.remove(&self.state.ip);
                }
            }
        }
        inner.counters.conn_closed();
    }
}

impl HttpGuard {
    /// A guard enforcing `limits`, counting into `counters`.
    pub fn new(limits: HttpLimits, counters: HttpCounters) -> Self {
        HttpGuard {
            inner: Arc::new(GuardInner {
                limits,
                counters,
                epoch: Instant::now(),
                registry: Mutex::new(Registry::default()),
            }),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &HttpLimits {
        &self.inner.limits
    }

    /// The counters.
    pub fn counters(&self) -> &HttpCounters {
        &self.inner.counters
    }

    /// Milliseconds since the guard's epoch, plus one (so that 0 can mean "never").
    pub(crate) fn now_ms(&self) -> u64 {
        millis(self.inner.epoch.elapsed()) + 1
    }

    /// Admits a connection from `ip`, evicting the longest-stalled connection if that makes
    /// room. `None` (counted) when there is no room.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<ConnTicket> {
        let ip = ip.to_canonical();
        let limits = &self.inner.limits;
        let now = self.now_ms();
        let evict_after = millis(limits.evict_after);
        let mut evicted: Vec<Arc<ConnState>> = Vec::new();
        let admitted = {
            let mut reg = self
                .inner
                .registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let from_ip = reg.per_ip.get(&ip).copied().unwrap_or(0);
            if from_ip >= limits.max_conns_per_ip {
                match reg.oldest_stalled(now, evict_after, Some(ip)) {
                    Some(victim) => evicted.extend(reg.evict(victim)),
                    None => {
                        drop(reg);
                        self.inner.counters.refused(HttpRefusal::ConnsPerIp);
                        return None;
                    }
                }
            }
            let mut probe_only = false;
            if reg.conns.len() >= limits.max_conns {
                match reg.oldest_stalled(now, evict_after, None) {
                    Some(victim) => evicted.extend(reg.evict(victim)),
                    None if reg.reserve < limits.probe_reserve => probe_only = true,
                    None => {
                        drop(reg);
                        for victim in &evicted {
                            victim.kill(HttpClose::Evicted);
                        }
                        self.inner.counters.refused(HttpRefusal::Conns);
                        return None;
                    }
                }
            }
            let id = reg.next_id;
            reg.next_id += 1;
            let state = Arc::new(ConnState::new(id, ip, probe_only, self.clone(), now));
            if probe_only {
                reg.reserve += 1;
            } else {
                reg.conns.insert(id, Arc::clone(&state));
            }
            *reg.per_ip.entry(ip).or_insert(0) += 1;
            state
        };
        for victim in &evicted {
            victim.kill(HttpClose::Evicted);
        }
        self.inner.counters.conn_opened();
        Some(ConnTicket {
            guard: self.clone(),
            state: admitted,
        })
    }
}

impl Registry {
    /// The main-budget connection stalled longest (at least `min_ms`), optionally only among
    /// those from `ip`.
    fn oldest_stalled(&self, now: u64, min_ms: u64, ip: Option<IpAddr>) -> Option<u64> {
        self.conns
            .values()
            .filter(|c| ip.is_none_or(|ip| c.ip == ip) && !c.killed())
            .filter_map(|c| c.stalled_for(now).map(|age| (age, c.id)))
            .filter(|(age, _)| *age >= min_ms)
            .max_by_key(|(age, id)| (*age, std::cmp::Reverse(*id)))
            .map(|(_, id)| id)
    }

    /// Takes `id` out of the budget right away (its task closes it soon after; its ticket
    /// still holds its place per address until then).
    fn evict(&mut self, id: u64) -> Option<Arc<ConnState>> {
        let state = self.conns.remove(&id)?;
        state.evicted.store(true, Ordering::Relaxed);
        Some(state)
    }
}

/// What a connection is doing, shared by its IO wrapper, request hooks and watchdog. Times are
/// milliseconds from the guard's epoch plus one; 0 means "not set".
#[derive(Debug)]
pub(crate) struct ConnState {
    id: u64,
    ip: IpAddr,
    /// Serves only probes, one request, then closes.
    pub(crate) probe_only: bool,
    guard: HttpGuard,
    /// Requests whose response has not been fully produced yet.
    in_flight: AtomicU32,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// When the connection last became idle (accepted, or a response finished).
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived while idle.
    head_started: AtomicU64,
    /// When a write started blocking.
    write_blocked_since: AtomicU64,
    /// When the request body started making us wait.
    body_waiting_since: AtomicU64,
    /// Reads that found no data (the client made us wait).
    read_waits: AtomicU64,
    /// `read_waits` when the previous request started.
    read_waits_at_last_request: AtomicU64,
    /// Requests in a row that arrived without the client waiting.
    pipelined_run: AtomicU32,
    /// Answer the current request with `Connection: close`.
    close_after_response: AtomicBool,
    /// Taken out of the budget by eviction.
    evicted: AtomicBool,
    /// Why the connection must close now (0: it need not).
    kill_reason: AtomicU8,
    kill: Notify,
}

const CLOSE_REASONS: [HttpClose; 6] = [
    HttpClose::HeaderTimeout,
    HttpClose::IdleTimeout,
    HttpClose::BodyTimeout,
    HttpClose::WriteTimeout,
    HttpClose::Evicted,
    HttpClose::SseLagged,
];

fn close_code(why: HttpClose) -> u8 {
    CLOSE_REASONS
        .iter()
        .position(|c| *c == why)
        .map_or(u8::MAX, |i| i as u8 + 1)
}

impl ConnState {
    fn new(id: u64, ip: IpAddr, probe_only: bool, guard: HttpGuard, now: u64) -> Self {
        ConnState {
            id,
            ip,
            probe_only,
            guard,
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            body_waiting_since: AtomicU64::new(0),
            read_waits: AtomicU64::new(0),
            read_waits_at_last_request: AtomicU64::new(0),
            pipelined_run: AtomicU32::new(0),
            close_after_response: AtomicBool::new(probe_only),
            evicted: AtomicBool::new(false),
            kill_reason: AtomicU8::new(0),
            kill: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.guard.now_ms()
    }

    /// The listener's limits.
    pub(crate) fn limits(&self) -> &HttpLimits {
        self.guard.limits()
    }

    /// The counters.
    pub(crate) fn counters(&self) -> &HttpCounters {
        self.guard.counters()
    }

    fn killed(&self) -> bool {
        self.kill_reason.load(Ordering::Relaxed) != 0 || self.evicted.load(Ordering::Relaxed)
    }

    /// Asks the connection's task to close it now.
    pub(crate) fn kill(&self, why: HttpClose) {
        let _ = self.kill_reason.compare_exchange(
            0,
            close_code(why),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.kill.notify_one();
    }

    /// Resolves when [`ConnState::kill`] was called, with the reason.
    pub(crate) async fn killed_for(&self) -> HttpClose {
        self.kill.notified().await;
        let code = self.kill_reason.load(Ordering::Relaxed);
        CLOSE_REASONS
            .get(usize::from(code.saturating_sub(1)))
            .copied()
            .unwrap_or(HttpClose::Evicted)
    }

    /// The IO wrapper read `n` bytes.
    pub(crate) fn on_read(&self, n: usize) {
        if n > 0
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// A read found no data.
    pub(crate) fn on_read_wait(&self) {
        self.read_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// A write (or flush) blocked.
    pub(crate) fn on_write_blocked(&self) {
        if self.write_blocked_since.load(Ordering::Relaxed) == 0 {
            self.write_blocked_since
                .store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// A write (or flush) made progress.
    pub(crate) fn on_write_progress(&self) {
        self.write_blocked_since.store(0, Ordering::Relaxed);
    }

    /// The request body has no data yet.
    pub(crate) fn on_body_wait(&self) {
        if self.body_waiting_since.load(Ordering::Relaxed) == 0 {
            self.body_waiting_since
                .store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The request body delivered data, ended, or was dropped.
    pub(crate) fn on_body_progress(&self) {
        self.body_waiting_since.store(0, Ordering::Relaxed);
    }

    /// A request's headers were parsed. Returns true when this request ends a run of
    /// pipelined requests that is too long (it must be answered with `Connection: close`).
    pub(crate) fn on_request(&self) -> bool {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let waits = self.read_waits.load(Ordering::Relaxed);
        let before = self
            .read_waits_at_last_request
            .swap(waits, Ordering::Relaxed);
        let run = if n > 0 && waits == before {
            self.pipelined_run.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.pipelined_run.store(0, Ordering::Relaxed);
            0
        };
        if run >= self.limits().max_pipelined {
            self.close_after_response.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// A response body was fully produced (or dropped).
    pub(crate) fn on_response_done(&self) {
        let now = self.now_ms();
        self.idle_since.store(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Marks the connection to be closed after the current response.
    pub(crate) fn close_after_response(&self) {
        self.close_after_response.store(true, Ordering::Relaxed);
    }

    /// Whether the current response must carry `Connection: close`.
    pub(crate) fn wants_close(&self) -> bool {
        self.close_after_response.load(Ordering::Relaxed)
    }

    /// How long the connection has been stalled, if it is: blocked writing, waiting for a
    /// request body, or idle / reading a request head. A connection running a handler or
    /// streaming is not stalled.
    fn stalled_for(&self, now: u64) -> Option<u64> {
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 {
            return Some(now.saturating_sub(blocked));
        }
        let body = self.body_waiting_since.load(Ordering::Relaxed);
        if body != 0 {
            return Some(now.saturating_sub(body));
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let head = self.head_started.load(Ordering::Relaxed);
            let since = if head != 0 {
                head
            } else {
                self.idle_since.load(Ordering::Relaxed)
            };
            return Some(now.saturating_sub(since));
        }
        None
    }

    /// The timeout the connection has run into, if any.
    pub(crate) fn overdue(&self) -> Option<HttpClose> {
        let limits = self.limits();
        let now = self.now_ms();
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 {
            // Still writing an answer: not idle, whatever the response body says.
            return (now.saturating_sub(blocked) >= millis(limits.write_timeout))
                .then_some(HttpClose::WriteTimeout);
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head != 0 {
            return (now.saturating_sub(head) >= millis(limits.header_timeout))
                .then_some(HttpClose::HeaderTimeout);
        }
        let first = self.requests.load(Ordering::Relaxed) == 0;
        let (limit, why) = if first || self.probe_only {
            (limits.header_timeout, HttpClose::HeaderTimeout)
        } else {
            (limits.idle_timeout, HttpClose::IdleTimeout)
        };
        let idle = self.idle_since.load(Ordering::Relaxed);
        (now.saturating_sub(idle) >= millis(limit)).then_some(why)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max: usize, per_ip: usize, reserve: usize) -> HttpGuard {
        let limits = HttpLimits {
            max_conns: max,
            max_conns_per_ip: per_ip,
            probe_reserve: reserve,
            evict_after: Duration::from_secs(3600),
            ..HttpLimits::default()
        };
        HttpGuard::new(limits, HttpCounters::new())
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn per_ip_cap_then_reserve_then_refusal() {
        let g = guard(3, 2, 1);
        let a1 = g.admit(ip(1)).unwrap();
        let _a2 = g.admit(ip(1)).unwrap();
        assert!(g.admit(ip(1)).is_none(), "third from one address");
        let b1 = g.admit(ip(2)).unwrap();
        assert!(!b1.state.probe_only);
        let b2 = g.admit(ip(2)).unwrap();
        assert!(b2.state.probe_only, "budget full: the reserve");
        assert!(g.admit(ip(3)).is_none(), "reserve full");
        let stats = g.counters().snapshot();
        assert_eq!(stats.rejected("http_conns_per_ip"), 1);
        assert_eq!(stats.rejected("http_conns"), 1);
        assert_eq!(stats.open_conns, 4);
        drop(a1);
        let c = g.admit(ip(3)).unwrap();
        assert!(!c.state.probe_only);
        drop(b2);
        assert_eq!(g.counters().snapshot().open_conns, 3);
    }

    #[test]
    fn a_full_budget_evicts_the_longest_stalled() {
        let limits = HttpLimits {
            max_conns: 2,
            max_conns_per_ip: 10,
            probe_reserve: 0,
            evict_after: Duration::ZERO,
            ..HttpLimits::default()
        };
        let g = HttpGuard::new(limits, HttpCounters::new());
        let old = g.admit(ip(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let busy = g.admit(ip(1)).unwrap();
        // A connection running a handler is never evicted.
        assert!(!busy.state.on_request());
        std::thread::sleep(Duration::from_millis(5));
        let new = g.admit(ip(2)).unwrap();
        assert!(!new.state.probe_only);
        assert!(old.state.killed());
        assert!(!busy.state.killed());
        assert_eq!(g.counters().snapshot().open_conns, 3, "old closes later");
        drop(old);
        assert_eq!(g.counters().snapshot().open_conns, 2);
        // `new` is idle and evictable, `busy` is not.
        let newer = g.admit(ip(3)).unwrap();
        assert!(new.state.killed());
        assert!(!newer.state.probe_only);
    }

    #[test]
    fn pipelined_runs_are_bounded() {
        let g = HttpGuard::new(
            HttpLimits {
                max_pipelined: 3,
                ..HttpLimits::default()
            },
            HttpCounters::new(),
        );
        let t = g.admit(ip(1)).unwrap();
        let s = &t.state;
        assert!(!s.on_request());
        s.on_response_done();
        // The client waited for the answer: not pipelined.
        s.on_read_wait();
        assert!(!s.on_request());
        s.on_response_done();
        assert!(!s.on_request());
        s.on_response_done();
        assert!(!s.on_request());
        s.on_response_done();
        assert!(s.on_request(), "third pipelined request in a row");
        assert!(s.wants_close());
    }

    #[test]
    fn overdue_follows_the_connection_phase() {
        let g = HttpGuard::new(
            HttpLimits {
                header_timeout: Duration::ZERO,
                idle_timeout: Duration::from_secs(3600),
                write_timeout: Duration::from_secs(3600),
                ..HttpLimits::default()
            },
            HttpCounters::new(),
        );
        let t = g.admit(ip(1)).unwrap();
        let s = &t.state;
        assert_eq!(s.overdue(), Some(HttpClose::HeaderTimeout));
        s.on_request();
        assert_eq!(s.overdue(), None, "handler running");
        s.on_response_done();
        assert_eq!(s.overdue(), None, "idle, within idle_timeout");
        s.on_read(10);
        assert_eq!(s.overdue(), Some(HttpClose::HeaderTimeout));
        s.kill(HttpClose::WriteTimeout);
        assert!(s.killed());
    }
}
