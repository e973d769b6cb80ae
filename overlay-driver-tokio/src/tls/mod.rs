//! TLS 1.3 identities and rustls configuration.
//!
//! - [`Identity`]: certificate chain + private key (wiped on drop) + the derived [`PeerId`]
//!   (BLAKE3 of the end-entity certificate's DER SubjectPublicKeyInfo).
//! - [`server_config`] / [`client_config`]: TLS 1.3 only, aws-lc-rs, ALPN [`ALPN`], mutual
//!   authentication with the verifiers of [`verify`], key exchange chosen by [`PqMode`].
//! - [`session_info`]: after a handshake, the peer's PeerId, the negotiated group, and the ALPN
//!   check the driver must make.
//! - [`classify_handshake_error`]: handshake failures as metric labels.
//!
//! [`PeerId`]: overlay_proto::PeerId
//! [`PqMode`]: crate::pq::PqMode

mod cert;
mod config;
mod error;
mod identity;
mod info;
mod pem;
pub mod verify;

pub use cert::peer_id_from_cert;
pub use config::{
    client_config, client_session_config, crypto_provider, kx_groups, server_config, server_name,
    TlsOptions,
};
pub use error::{classify_handshake_error, classify_rustls_error, typed_handshake_error, TlsError};
pub use identity::{check_secret_file_mode, Identity, DEV_SAN};
pub use info::{
    check_alpn, check_kx_policy, inspect_session, negotiated_kx_group, session_info, TlsSessionInfo,
};

/// The ALPN protocol identifier of OAP/1 sessions.
pub const ALPN: &[u8] = b"ron/oap1";
