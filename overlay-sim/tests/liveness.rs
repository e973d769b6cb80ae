//! `overlay-sim liveness` at a CI size: after a silent kill every survivor closes its sessions
//! to the victims as `peer_unresponsive` within 2 s (a kind kill within a latency); no live
//! session is closed under 1 % loss with RTO backoff and 50 ms of jitter.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use core::time::Duration;

use overlay_sim::liveness::{fp_run, kill_run};

#[test]
fn silent_kills_are_detected_within_two_seconds_kind_kills_within_a_latency() {
    let silent = kill_run(80, 3, 50, true, Duration::from_secs(2)).unwrap();
    assert!(!silent.detect_ms.is_empty());
    assert_eq!(silent.undetected + silent.other_reason, 0, "{silent:?}");
    assert!(
        silent.detect_ms.iter().all(|ms| *ms <= 2000.0),
        "{silent:?}"
    );
    assert!(silent.later.0 >= 0.99, "the survivors repair: {silent:?}");
    let kind = kill_run(80, 3, 50, false, Duration::from_secs(2)).unwrap();
    assert_eq!(kind.undetected + kind.other_reason, 0, "{kind:?}");
    assert!(kind.detect_ms.iter().all(|ms| *ms <= 100.0), "{kind:?}");
}

#[test]
fn no_false_positive_under_loss_and_jitter() {
    let r = fp_run(40, 2, 20, 0.01, Duration::from_millis(50), true).unwrap();
    assert_eq!(r.false_positives, 0, "{r:?}");
    assert!(r.heartbeats > 0 && r.sessions > 0, "{r:?}");
    assert!(r.broadcasts.1 >= 0.99, "{r:?}");
}
