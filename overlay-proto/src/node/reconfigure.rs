//! Live reconfiguration (`Input::Reconfigure`): new gossip fan-outs, per-peer quotas and
//! peer-scoring settings take effect at once, for running sessions too.

use super::Node;
use crate::action::Action;
use crate::config::{LiveSettings, ReconfigureError};
use crate::score::Standing;

impl Node {
    /// Validates `live` against the rest of the configuration, then applies it: a lower α
    /// demotes the newest eager peers to lazy, a higher α promotes lazy peers, and every
    /// session's quota becomes the new one (still lowered by its token's `Rate` caveat), and
    /// the new scoring applies: scores keep their values, new weights count from now on, and
    /// each running session's standing is checked against the new thresholds (made lazy, or
    /// closed and banned, as after a penalty).
    pub(super) fn on_reconfigure(&mut self, live: LiveSettings) {
        let next = live.applied_to(&self.config);
        if let Err(e) = next.validate() {
            self.actions
                .push_back(Action::Reconfigured(Box::new(Err(ReconfigureError::from(
                    e,
                )))));
            return;
        }
        let rescored = next.scoring != self.config.scoring;
        self.config = next;
        if rescored {
            self.scores
                .reconfigure(self.config.scoring.clone(), self.now);
            self.apply_standings();
        }
        let params = crate::plumtree::Params::of(&self.config);
        let now = self.now;
        for topic in self.topics() {
            let demoted = match self.trees.get_mut(&topic) {
                Some(tree) => {
                    tree.set_params(params);
                    tree.trim_eager(now)
                }
                None => Vec::new(),
            };
            // Tell each demoted peer (PRUNE), so the link is lazy on both ends.
            for key in demoted {
                self.prune(&topic, key);
            }
            self.refill_eager(&topic);
        }
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
            .push_back(Action::Reconfigured(Box::new(Ok(LiveSettings::of(
                &self.config,
            )))));
    }
}

impl Node {
    /// Acts on every running session's standing after the thresholds changed.
    fn apply_standings(&mut self) {
        let standings: Vec<(usize, Standing)> = self
            .live_sessions()
            .filter(|(_, s)| s.is_running())
            .map(|(key, s)| (key, self.scores.standing(&s.peer)))
            .collect();
        for (key, standing) in standings {
            match standing {
                Standing::Ban => self.ban_session(key),
                Standing::Lazy => self.make_lazy_everywhere(key),
                Standing::NoControl | Standing::Good => {}
            }
        }
    }
}
