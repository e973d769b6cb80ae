//! The `svc-overlay` daemon.

fn main() {}
