//! Live reconfiguration (`Input::Reconfigure`): new gossip fan-outs and per-peer quotas take
//! effect at once, for running sessions too.

use super::Node;
use crate::action::Action;
use crate::config::{LiveSettings, ReconfigureError};

impl Node {
    /// Validates `live` against the rest of the configuration, then applies it: a lower α
    /// demotes the newest eager peers to lazy, a higher α promotes lazy peers, and every
    /// session's quota becomes the new one (still lowered by its token's `Rate` caveat).
    pub(super) fn on_reconfigure(&mut self, live: LiveSettings) {
        let next = live.applied_to(&self.config);
        if let Err(e) = next.validate() {
            self.actions
                .push_back(Action::Reconfigured(Err(ReconfigureError::from(e))));
            return;
        }
        self.config = next;
        while self.eager.len() > self.config.alpha {
            let Some(&key) = self.eager.last() else {
                break;
            };
            self.make_lazy(key);
        }
        self.refill_eager();
        let now = self.now;
        let quotas: Vec<(usize, (u32, u32))> = self
            .live_sessions()
            .map(|(key, s)| (key, self.peer_quota(s.grant.rate_cap)))
            .collect();
        for (key, (rate, burst)) in quotas {
            if let Some(s) = self.session_mut(key) {
                s.rate.set_limits(now, rate, burst);
            }
        }
        self.actions
            .push_back(Action::Reconfigured(Ok(LiveSettings::of(&self.config))));
    }
}
