//! Connection-level limits of an HTTP listener and the counters of everything the HTTP layer
//! refuses or closes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Limits of one HTTP listener's connections (the overlay port's plain-HTTP side, the metrics
/// listener, the control listener). Each listener has its own budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most HTTP connections at once (probe-reserve connections not included).
    pub max_conns: usize,
    /// Most HTTP connections at once from one IP address.
    pub max_conns_per_ip: usize,
    /// Extra connections admitted when `max_conns` is reached and no connection can be
    /// evicted; they serve only `/healthz` and `/readyz`, one request each.
    pub probe_reserve: usize,
    /// A connection stalled this long (waiting for a request, or for the client to read a
    /// response) may be closed to make room for a new one.
    pub evict_after: Duration,
    /// Time to receive a request's headers, from its first byte (and from connect for the
    /// first request).
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for the first byte of its next request.
    pub idle_timeout: Duration,
    /// Time to receive a whole request body, from the end of its headers.
    pub body_timeout: Duration,
    /// Time a response write may stay blocked (a client that does not read is closed).
    pub write_timeout: Duration,
    /// Requests in a row that arrive pipelined (already buffered, the client never waited
    /// for an answer); the last one is answered with `Connection: close`.
    pub max_pipelined: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_conns: 256,
            max_conns_per_ip: 32,
            probe_reserve: 8,
            evict_after: Duration::ZERO,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_pipelined: 16,
        }
    }
}

impl HttpLimits {
    /// The shortest timeout (the watchdog's resolution is a fraction of it).
    pub(crate) fn shortest_timeout(&self) -> Duration {
        self.header_timeout
            .min(self.idle_timeout)
            .min(self.write_timeout)
            .min(self.body_timeout)
    }
}

/// Why a connection or a request was refused (`rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HttpRefusal {
    /// The listener's connection budget and probe reserve are full.
    Conns,
    /// The address has `max_conns_per_ip` connections already.
    ConnsPerIp,
    /// Too many pipelined requests in a row; the connection is closed after the answer.
    Pipeline,
    /// A probe-reserve connection asked for something other than a probe.
    ProbeOnly,
    /// Every SSE slot is taken.
    Sse,
    /// The address has `max_sse_per_ip` streams already.
    SsePerIp,
    /// Every control-request slot is taken.
    ControlBusy,
    /// A control request carried an `Origin` header (a browser).
    Origin,
    /// A control request trusted by address named a `Host` that is not the listener.
    Host,
    /// A token-less control `POST` with a content type a browser can send cross-origin.
    ContentType,
    /// A control request without valid credentials.
    ControlAuth,
    /// A control token over plain HTTP from a non-loopback address.
    PlaintextToken,
    /// A gossip stream asked to resume from a `Last-Event-ID` that is not one of this node's
    /// event ids (400 `bad_last_event_id`).
    LastEventId,
}

impl HttpRefusal {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            HttpRefusal::Conns => "http_conns",
            HttpRefusal::ConnsPerIp => "http_conns_per_ip",
            HttpRefusal::Pipeline => "http_pipeline",
            HttpRefusal::ProbeOnly => "http_probe_only",
            HttpRefusal::Sse => "http_sse",
            HttpRefusal::SsePerIp => "http_sse_per_ip",
            HttpRefusal::ControlBusy => "http_control_busy",
            HttpRefusal::Origin => "http_origin",
            HttpRefusal::Host => "http_host",
            HttpRefusal::ContentType => "http_content_type",
            HttpRefusal::ControlAuth => "http_control_auth",
            HttpRefusal::PlaintextToken => "http_plaintext_token",
            HttpRefusal::LastEventId => "http_last_event_id",
        }
    }
}

/// Why the server closed a connection or a stream on its own
/// (`errors_total{stage="http",kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HttpClose {
    /// Request headers not received within `header_timeout`.
    HeaderTimeout,
    /// No new request within `idle_timeout`.
    IdleTimeout,
    /// Request body not received within `body_timeout`.
    BodyTimeout,
    /// A response write blocked for `write_timeout` (the client does not read).
    WriteTimeout,
    /// Closed to make room for a new connection.
    Evicted,
    /// An SSE consumer fell behind; it got a `lagged` event and its stream ended.
    SseLagged,
}

impl HttpClose {
    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            HttpClose::HeaderTimeout => "header_timeout",
            HttpClose::IdleTimeout => "idle_timeout",
            HttpClose::BodyTimeout => "body_timeout",
            HttpClose::WriteTimeout => "write_timeout",
            HttpClose::Evicted => "evicted",
            HttpClose::SseLagged => "sse_lagged",
        }
    }
}

/// A snapshot of [`HttpCounters`], keyed by label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Refusals by reason label.
    pub rejected: BTreeMap<String, u64>,
    /// Server-side closes by kind label.
    pub closed: BTreeMap<String, u64>,
    /// HTTP connections open now (all listeners sharing these counters).
    pub open_conns: usize,
    /// Gossip streams resumed with `Last-Event-ID`.
    pub sse_resumes: u64,
    /// Messages replayed to resumed streams.
    pub sse_replayed: u64,
    /// Payload bytes replayed to resumed streams.
    pub sse_replayed_bytes: u64,
    /// Messages resumed streams missed because they were no longer kept (their `lagged`
    /// events).
    pub sse_replay_missed: u64,
}

impl HttpStats {
    /// Refusals counted with this reason label.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason).copied().unwrap_or(0)
    }

    /// Closes counted with this kind label.
    pub fn closed(&self, kind: &str) -> u64 {
        self.closed.get(kind).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct CountersInner {
    rejected: Mutex<BTreeMap<HttpRefusal, u64>>,
    closed: Mutex<BTreeMap<HttpClose, u64>>,
    open: AtomicUsize,
    sse_resumes: AtomicU64,
    sse_replayed: AtomicU64,
    sse_replayed_bytes: AtomicU64,
    sse_replay_missed: AtomicU64,
}

/// Counters of the HTTP layer, shared by the listeners and the router. Every count is also
/// emitted through the `metrics` facade: `rejected_total{reason}`,
/// `errors_total{stage="http",kind}`, and the `http_connections_open` gauge.
#[derive(Debug, Clone, Default)]
pub struct HttpCounters {
    inner: Arc<CountersInner>,
}

impl HttpCounters {
    /// Fresh counters.
    pub fn new() -> Self {
        HttpCounters::default()
    }

    /// Counts a refusal.
    pub fn refused(&self, why: HttpRefusal) {
        {
            let mut map = self
                .inner
                .rejected
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *map.entry(why).or_insert(0) += 1;
        }
        metrics::counter!("rejected_total", "reason" => why.label()).increment(1);
    }

    /// Counts a server-side close.
    pub fn closed(&self, why: HttpClose) {
        {
            let mut map = self
                .inner
                .closed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *map.entry(why).or_insert(0) += 1;
        }
        metrics::counter!("errors_total", "stage" => "http", "kind" => why.label()).increment(1);
    }

    /// Counts a resumed gossip stream and its replay (`http_sse_resumes_total`,
    /// `http_sse_replayed_total`, `http_sse_replayed_bytes_total`,
    /// `http_sse_replay_missed_total`).
    pub fn resumed(&self, replay: &crate::api::Replay) {
        let (n, bytes) = (replay.messages.len() as u64, replay.bytes() as u64);
        let i = &self.inner;
        i.sse_resumes.fetch_add(1, Ordering::Relaxed);
        i.sse_replayed.fetch_add(n, Ordering::Relaxed);
        i.sse_replayed_bytes.fetch_add(bytes, Ordering::Relaxed);
        i.sse_replay_missed
            .fetch_add(replay.missed, Ordering::Relaxed);
        metrics::counter!("http_sse_resumes_total").increment(1);
        metrics::counter!("http_sse_replayed_total").increment(n);
        metrics::counter!("http_sse_replayed_bytes_total").increment(bytes);
        metrics::counter!("http_sse_replay_missed_total").increment(replay.missed);
    }

    pub(crate) fn conn_opened(&self) {
        let n = self.inner.open.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("http_connections_open").set(n as f64);
    }

    pub(crate) fn conn_closed(&self) {
        let n = self
            .inner
            .open
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::gauge!("http_connections_open").set(n as f64);
    }

    /// The snapshot.
    pub fn snapshot(&self) -> HttpStats {
        let rejected = {
            let map = self
                .inner
                .rejected
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .map(|(k, v)| (k.label().to_string(), *v))
                .collect()
        };
        let closed = {
            let map = self
                .inner
                .closed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .map(|(k, v)| (k.label().to_string(), *v))
                .collect()
        };
        let i = &self.inner;
        HttpStats {
            rejected,
            closed,
            open_conns: i.open.load(Ordering::Relaxed),
            sse_resumes: i.sse_resumes.load(Ordering::Relaxed),
            sse_replayed: i.sse_replayed.load(Ordering::Relaxed),
            sse_replayed_bytes: i.sse_replayed_bytes.load(Ordering::Relaxed),
            sse_replay_missed: i.sse_replay_missed.load(Ordering::Relaxed),
        }
    }
}
