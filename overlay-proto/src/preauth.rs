//! The pre-auth budget: connections that have not finished START yet (TCP accepted, TLS or
//! HELLO/START in progress) are counted here, not against `max_sessions` or readiness. The
//! budget is bounded in total (`max_preauth`) and per remote IP (`max_preauth_per_ip`), so a
//! flood of half-open connections exhausts only this budget and is counted.
//!
//! The node uses one for its HELLO/START phase; the driver's accept path uses another, sized
//! from the same settings, for the TCP + TLS phase before the node sees the connection.

use core::net::IpAddr;
use std::collections::BTreeMap;

use crate::stats::RejectReason;

/// Counts of pre-auth connections, in total and per IP.
#[derive(Debug, Clone)]
pub struct PreAuthBudget {
    max: usize,
    max_per_ip: usize,
    total: usize,
    per_ip: BTreeMap<IpAddr, usize>,
}

impl PreAuthBudget {
    /// A budget of `max` connections, at most `max_per_ip` from one IP.
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        PreAuthBudget {
            max,
            max_per_ip,
            total: 0,
            per_ip: BTreeMap::new(),
        }
    }

    /// Takes one slot for `ip`, or says why not (`PreauthFull` / `PreauthPerIp`).
    pub fn try_admit(&mut self, ip: IpAddr) -> Result<(), RejectReason> {
        if self.total >= self.max {
            return Err(RejectReason::PreauthFull);
        }
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(RejectReason::PreauthPerIp);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// Gives back a slot taken for `ip`.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            self.total = self.total.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_cap_then_total_cap() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let mut budget = PreAuthBudget::new(3, 2);
        assert_eq!(budget.try_admit(a), Ok(()));
        assert_eq!(budget.try_admit(a), Ok(()));
        assert_eq!(budget.try_admit(a), Err(RejectReason::PreauthPerIp));
        assert_eq!(budget.try_admit(b), Ok(()));
        assert_eq!(budget.try_admit(c), Err(RejectReason::PreauthFull));
        budget.release(a);
        assert_eq!(budget.try_admit(c), Ok(()));
        assert_eq!(budget.in_use(), 3);
        // Releasing an IP that holds nothing changes nothing.
        budget.release("10.9.9.9".parse().unwrap());
        assert_eq!(budget.in_use(), 3);
    }
}
