//! Capability tokens (ron-auth format, see `../shared/spec/CAPABILITY.md`).
