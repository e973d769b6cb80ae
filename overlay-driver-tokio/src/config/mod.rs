//! Daemon and library configuration.
