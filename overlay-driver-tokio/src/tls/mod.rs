//! TLS 1.3 identities and rustls configuration.
