//! The accept path's side of the pre-auth budget: a connection whose first byte shows TLS takes a
//! slot (in total and for its IP) before the TLS handshake and keeps it until its session finishes START (the node
//! task drops it on `SessionEvent::Up`) or the connection ends. The budget's rules and sizes
//! are the core's (`overlay_proto::PreAuthBudget`, `NodeConfig::max_preauth{,_per_ip}`); this is the
//! translation to a shared counter with a drop guard.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use overlay_proto::PreAuthBudget;
use overlay_proto::RejectReason;

/// The shared budget (a plain lock, never held across `.await`).
#[derive(Debug, Clone)]
pub(crate) struct PreAuthGate(Arc<Mutex<PreAuthBudget>>);

impl PreAuthGate {
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Self {
        PreAuthGate(Arc::new(Mutex::new(PreAuthBudget::new(max, max_per_ip))))
    }

    /// Takes a slot for `ip`, or says why not.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<PreAuthSlot, RejectReason> {
        let mut budget = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        budget.try_admit(ip)?;
        Ok(PreAuthSlot {
            gate: self.clone(),
            ip,
        })
    }

    /// Slots in use.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_use()
    }
}

/// One pre-auth connection; gives its slot back when dropped.
#[derive(Debug)]
pub(crate) struct PreAuthSlot {
    gate: PreAuthGate,
    ip: IpAddr,
}

impl Drop for PreAuthSlot {
    fn drop(&mut self) {
        let mut budget = self.gate.0.lock().unwrap_or_else(PoisonError::into_inner);
        budget.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_come_back_when_dropped() {
        let gate = PreAuthGate::new(2, 1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let slot = gate.admit(ip);
        assert!(slot.is_ok());
        assert_eq!(gate.admit(ip).err(), Some(RejectReason::PreauthPerIp));
        drop(slot);
        assert_eq!(gate.in_use(), 0);
        assert!(gate.admit(ip).is_ok());
    }
}
