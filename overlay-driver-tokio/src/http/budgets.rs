//! Request-level budgets: slots per address (SSE streams) and the cached `/metrics` text.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::MetricsRender;

/// At most `cap` holders per IP address.
#[derive(Debug, Clone)]
pub(crate) struct PerIpSlots {
    cap: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One held slot; dropping it frees it.
#[derive(Debug)]
pub(crate) struct IpSlot {
    ip: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIpSlots {
    pub(crate) fn new(cap: usize) -> Self {
        PerIpSlots {
            cap,
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for `ip`, if it holds fewer than the cap.
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            held: Arc::clone(&self.held),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// The `/metrics` text, rendered at most once per `ttl` however often it is scraped
/// (`ttl` zero: rendered for every request). Renders do not run concurrently.
pub(crate) struct MetricsCache {
    render: Option<MetricsRender>,
    ttl: Duration,
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl MetricsCache {
    pub(crate) fn new(render: Option<MetricsRender>, ttl: Duration) -> Self {
        MetricsCache {
            render,
            ttl,
            last: Mutex::new(None),
        }
    }

    /// The current text.
    pub(crate) fn text(&self) -> Bytes {
        let Some(render) = &self.render else {
            return Bytes::new();
        };
        // Held while rendering (a synchronous call), so a burst of scrapes renders once.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, text)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return text.clone();
            }
        }
        let text = Bytes::from(render());
        *last = Some((Instant::now(), text.clone()));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn per_ip_slots() {
        let slots = PerIpSlots::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let s1 = slots.try_acquire(a).unwrap();
        let _s2 = slots.try_acquire(a).unwrap();
        assert!(slots.try_acquire(a).is_none());
        let _s3 = slots.try_acquire(b).unwrap();
        drop(s1);
        assert!(slots.try_acquire(a).is_some());
    }

    #[test]
    fn metrics_render_once_per_ttl() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let render: MetricsRender = Arc::new(move || {
            c.fetch_add(1, Ordering::Relaxed);
            "x 1\n".to_string()
        });
        let cache = MetricsCache::new(Some(Arc::clone(&render)), Duration::from_secs(3600));
        for _ in 0..100 {
            assert_eq!(&cache.text()[..], b"x 1\n");
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let uncached = MetricsCache::new(Some(render), Duration::ZERO);
        uncached.text();
        uncached.text();
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }
}
