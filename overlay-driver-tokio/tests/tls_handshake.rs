//! Real TLS handshakes over loopback TCP between configurations built by `svc_overlay::tls`.

// Test helpers (not only `#[test]` functions) unwrap freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::Arc;
use std::time::Duration;

use overlay_proto::PeerId;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ServerConfig};
use svc_overlay::pq::PqMode;
use svc_overlay::tls::{
    self, check_alpn, check_kx_policy, classify_handshake_error, client_config, inspect_session,
    server_config, server_name, session_info, typed_handshake_error, Identity, TlsError,
    TlsOptions, TlsSessionInfo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TIMEOUT: Duration = Duration::from_secs(20);

/// What one side observed.
#[derive(Debug)]
struct Seen {
    info: TlsSessionInfo,
    /// `session_info` (the strict form the driver uses), as a reason label on error.
    strict: Result<TlsSessionInfo, &'static str>,
    kx_policy_ok: bool,
}

type SideResult = Result<Seen, io::Error>;

fn observe(conn: &rustls::CommonState, pq: PqMode) -> Result<Seen, io::Error> {
    let info = inspect_session(conn).map_err(io::Error::other)?;
    Ok(Seen {
        info,
        strict: session_info(conn).map_err(|e| e.reason()),
        kx_policy_ok: check_kx_policy(conn, pq).is_ok(),
    })
}

/// Runs one TLS session over loopback. The server writes `ok` after its handshake and the client
/// reads it, so a server-side refusal of the client certificate (reported after the client's own
/// handshake completes, in TLS 1.3) surfaces as a client-side error.
async fn run_pair(
    server: Arc<ServerConfig>,
    server_pq: PqMode,
    client: Arc<ClientConfig>,
    client_pq: PqMode,
) -> (SideResult, SideResult) {
    let fut = async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut stream = TlsAcceptor::from(server).accept(tcp).await?;
            let seen = observe(stream.get_ref().1, server_pq)?;
            stream.write_all(b"ok").await?;
            stream.flush().await?;
            // Wait for the client to hang up.
            let mut buf = [0u8; 16];
            let _ = stream.read(&mut buf).await;
            Ok::<_, io::Error>(seen)
        });
        let client_side = async {
            let tcp = TcpStream::connect(addr).await?;
            let mut stream = TlsConnector::from(client)
                .connect(server_name(), tcp)
                .await?;
            let mut buf = [0u8; 2];
            stream.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"ok");
            let seen = observe(stream.get_ref().1, client_pq)?;
            stream.shutdown().await?;
            Ok::<_, io::Error>(seen)
        }
        .await;
        let server_side = server_task.await.unwrap();
        (server_side, client_side)
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .expect("handshake test timed out")
}

fn opts(pq: PqMode) -> TlsOptions {
    TlsOptions { pq, ca_roots: None }
}

fn ok(side: SideResult, who: &str) -> Seen {
    match side {
        Ok(seen) => seen,
        Err(e) => panic!("{who} failed: {e} ({})", classify_handshake_error(&e)),
    }
}

fn reason(side: &SideResult, who: &str) -> &'static str {
    match side {
        Ok(seen) => panic!("{who} unexpectedly succeeded: {seen:?}"),
        Err(e) => classify_handshake_error(e),
    }
}

async fn mutual(server_pq: PqMode, client_pq: PqMode) -> (Seen, Seen, Identity, Identity) {
    let a = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let (s, c) = run_pair(
        server_config(&a, &opts(server_pq)).unwrap(),
        server_pq,
        client_config(&b, &opts(client_pq), Some(a.peer_id())).unwrap(),
        client_pq,
    )
    .await;
    (ok(s, "server"), ok(c, "client"), a, b)
}

#[tokio::test]
async fn hybrid_mutual_handshake_sees_peer_ids_and_mlkem() {
    let (s, c, a, b) = mutual(PqMode::Hybrid, PqMode::Hybrid).await;
    assert_eq!(s.info.peer_id, b.peer_id());
    assert_eq!(c.info.peer_id, a.peer_id());
    assert_ne!(a.peer_id(), b.peer_id());
    for seen in [&s, &c] {
        assert_eq!(seen.info.kx_group, Some("X25519MLKEM768"));
        assert!(seen.info.alpn_ok);
        assert_eq!(seen.strict, Ok(seen.info));
        assert!(seen.kx_policy_ok);
    }
}

#[tokio::test]
async fn classic_to_classic_uses_x25519() {
    let (s, c, _, _) = mutual(PqMode::Classic, PqMode::Classic).await;
    assert_eq!(s.info.kx_group, Some("X25519"));
    assert_eq!(c.info.kx_group, Some("X25519"));
}

#[tokio::test]
async fn hybrid_only_both_sides_uses_mlkem() {
    let (s, c, _, _) = mutual(PqMode::HybridOnly, PqMode::HybridOnly).await;
    assert_eq!(s.info.kx_group, Some("X25519MLKEM768"));
    assert_eq!(c.info.kx_group, Some("X25519MLKEM768"));
}

#[tokio::test]
async fn hybrid_and_classic_negotiate_a_classic_group_both_ways() {
    let (s, c, _, _) = mutual(PqMode::Hybrid, PqMode::Classic).await;
    assert_eq!(s.info.kx_group, Some("X25519"));
    assert_eq!(c.info.kx_group, Some("X25519"));
    let (s, c, _, _) = mutual(PqMode::Classic, PqMode::Hybrid).await;
    assert_eq!(s.info.kx_group, Some("X25519"));
    assert_eq!(c.info.kx_group, Some("X25519"));
}

#[tokio::test]
async fn hybrid_only_server_refuses_classic_client() {
    let a = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let (s, c) = run_pair(
        server_config(&a, &opts(PqMode::HybridOnly)).unwrap(),
        PqMode::HybridOnly,
        client_config(&b, &opts(PqMode::Classic), None).unwrap(),
        PqMode::Classic,
    )
    .await;
    assert_eq!(reason(&s, "server"), "kx_policy");
    assert_eq!(reason(&c, "client"), "handshake_failure");
}

#[tokio::test]
async fn hybrid_only_client_refuses_classic_server() {
    let a = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let (s, c) = run_pair(
        server_config(&a, &opts(PqMode::Classic)).unwrap(),
        PqMode::Classic,
        client_config(&b, &opts(PqMode::HybridOnly), None).unwrap(),
        PqMode::HybridOnly,
    )
    .await;
    assert_eq!(reason(&s, "server"), "kx_policy");
    assert_eq!(reason(&c, "client"), "handshake_failure");
}

#[tokio::test]
async fn wrong_expected_peer_id_is_refused() {
    let a = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let someone_else = Identity::generate_dev().unwrap().peer_id();
    let (s, c) = run_pair(
        server_config(&a, &TlsOptions::default()).unwrap(),
        PqMode::Hybrid,
        client_config(&b, &TlsOptions::default(), Some(someone_else)).unwrap(),
        PqMode::Hybrid,
    )
    .await;
    assert_eq!(reason(&c, "client"), "peer_id_mismatch");
    let err = c.unwrap_err();
    match typed_handshake_error(&err) {
        Some(TlsError::PeerIdMismatch { expected, actual }) => {
            assert_eq!(*expected, someone_else);
            assert_eq!(*actual, a.peer_id());
        }
        other => panic!("expected PeerIdMismatch, got {other:?}"),
    }
    assert_eq!(reason(&s, "server"), "peer_rejected_cert");
}

#[tokio::test]
async fn dial_without_expected_peer_accepts_any_valid_identity() {
    let a = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let (s, c) = run_pair(
        server_config(&a, &TlsOptions::default()).unwrap(),
        PqMode::Hybrid,
        client_config(&b, &TlsOptions::default(), None).unwrap(),
        PqMode::Hybrid,
    )
    .await;
    assert_eq!(ok(c, "client").info.peer_id, a.peer_id());
    assert_eq!(ok(s, "server").info.peer_id, b.peer_id());
}

/// A client without a certificate completes TLS: it is a client session (issue #9), which the
/// driver recognises by the missing certificate and hands to the core as such.
#[tokio::test]
async fn client_without_certificate_completes_tls_as_a_client_session() {
    let a = Identity::generate_dev().unwrap();
    let server = server_config(&a, &TlsOptions::default()).unwrap();
    let client = tls::client_session_config(&TlsOptions::default(), Some(a.peer_id())).unwrap();
    let fut = async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let stream = TlsAcceptor::from(server).accept(tcp).await.unwrap();
            let conn = stream.get_ref().1;
            let no_cert = matches!(
                tls::session_info(conn),
                Err(tls::TlsError::NoPeerCertificate)
            );
            (
                no_cert,
                tls::check_alpn(conn).is_ok(),
                tls::negotiated_kx_group(conn),
            )
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let stream = TlsConnector::from(client)
            .connect(server_name(), tcp)
            .await
            .unwrap();
        let server_seen = tls::session_info(stream.get_ref().1).unwrap();
        (server_task.await.unwrap(), server_seen)
    };
    let ((no_cert, alpn_ok, kx), server_seen) = tokio::time::timeout(TIMEOUT, fut).await.unwrap();
    assert!(no_cert, "the server sees no client certificate");
    assert!(alpn_ok);
    assert_eq!(kx, Some("X25519MLKEM768"));
    assert_eq!(server_seen.peer_id, a.peer_id());
}

fn client_with_alpn(
    identity: &Identity,
    expected: PeerId,
    alpn: Vec<Vec<u8>>,
) -> Arc<ClientConfig> {
    let mut cfg =
        (*client_config(identity, &TlsOptions::default(), Some(expected)).unwrap()).clone();
    cfg.alpn_protocols = alpn;
    Arc::new(cfg)
}

#[tokio::test]
async fn client_offering_another_alpn_fails() {
    let a = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let (s, c) = run_pair(
        server_config(&a, &TlsOptions::default()).unwrap(),
        PqMode::Hybrid,
        client_with_alpn(&b, a.peer_id(), vec![b"h2".to_vec()]),
        PqMode::Hybrid,
    )
    .await;
    assert_eq!(reason(&s, "server"), "alpn");
    assert_eq!(reason(&c, "client"), "alpn");
}

#[tokio::test]
async fn client_offering_no_alpn_is_flagged_after_handshake() {
    let a = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let (s, c) = run_pair(
        server_config(&a, &TlsOptions::default()).unwrap(),
        PqMode::Hybrid,
        client_with_alpn(&b, a.peer_id(), Vec::new()),
        PqMode::Hybrid,
    )
    .await;
    // rustls lets the handshake through; the driver's post-handshake check must catch it.
    let s = ok(s, "server");
    assert_eq!(s.info.peer_id, b.peer_id());
    assert!(!s.info.alpn_ok);
    assert_eq!(s.strict, Err("alpn"));
    let c = ok(c, "client");
    assert!(!c.info.alpn_ok);
    assert_eq!(c.strict, Err("alpn"));
}

#[tokio::test]
async fn check_alpn_helper_matches_session_info() {
    let a = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let server = server_config(&a, &TlsOptions::default()).unwrap();
    let client = client_with_alpn(&b, a.peer_id(), Vec::new());
    let fut = async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let stream = TlsAcceptor::from(server).accept(tcp).await.unwrap();
            let err = check_alpn(stream.get_ref().1).unwrap_err();
            assert_eq!(err.reason(), "alpn");
            assert!(matches!(err, TlsError::Alpn { negotiated: None }));
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let _client = TlsConnector::from(client)
            .connect(server_name(), tcp)
            .await
            .unwrap();
        server_task.await.unwrap();
    };
    tokio::time::timeout(TIMEOUT, fut).await.unwrap();
}

/// A CA and leaves it issues (both EKUs, like `generate_dev`).
struct TestCa {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "svc-overlay test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn root(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    fn leaf(&self) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["node.example".to_string()]).unwrap();
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let chain_pem = format!("{}{}", cert.pem(), self.cert.pem());
        Identity::from_pem(chain_pem.as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }
}

fn ca_opts(ca: &TestCa) -> TlsOptions {
    TlsOptions {
        pq: PqMode::Hybrid,
        ca_roots: Some(vec![ca.root()]),
    }
}

#[tokio::test]
async fn ca_mode_accepts_leaves_signed_by_the_ca() {
    let ca = TestCa::new();
    let a = ca.leaf();
    let b = ca.leaf();
    assert_eq!(a.cert_chain().len(), 2);
    let (s, c) = run_pair(
        server_config(&a, &ca_opts(&ca)).unwrap(),
        PqMode::Hybrid,
        client_config(&b, &ca_opts(&ca), Some(a.peer_id())).unwrap(),
        PqMode::Hybrid,
    )
    .await;
    let (s, c) = (ok(s, "server"), ok(c, "client"));
    // The PeerId is still the leaf's SPKI hash.
    assert_eq!(s.info.peer_id, b.peer_id());
    assert_eq!(c.info.peer_id, a.peer_id());
    let leaf = x509_parser::parse_x509_certificate(a.cert_chain()[0].as_ref())
        .unwrap()
        .1;
    assert_eq!(a.peer_id(), PeerId::from_spki_der(leaf.public_key().raw));
}

#[tokio::test]
async fn ca_mode_server_refuses_self_signed_client() {
    let ca = TestCa::new();
    let a = ca.leaf();
    let b = Identity::generate_dev().unwrap();
    let (s, c) = run_pair(
        server_config(&a, &ca_opts(&ca)).unwrap(),
        PqMode::Hybrid,
        client_config(&b, &TlsOptions::default(), Some(a.peer_id())).unwrap(),
        PqMode::Hybrid,
    )
    .await;
    assert_eq!(reason(&s, "server"), "unknown_issuer");
    assert_eq!(reason(&c, "client"), "peer_rejected_cert");
}

#[tokio::test]
async fn ca_mode_client_refuses_self_signed_server() {
    let ca = TestCa::new();
    let a = Identity::generate_dev().unwrap();
    let b = ca.leaf();
    let (s, c) = run_pair(
        server_config(&a, &TlsOptions::default()).unwrap(),
        PqMode::Hybrid,
        client_config(&b, &ca_opts(&ca), Some(a.peer_id())).unwrap(),
        PqMode::Hybrid,
    )
    .await;
    assert_eq!(reason(&c, "client"), "unknown_issuer");
    assert_eq!(reason(&s, "server"), "peer_rejected_cert");
}

#[tokio::test]
async fn ca_mode_refuses_leaf_of_another_ca() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let a = ca.leaf();
    let b = other.leaf();
    let (s, _c) = run_pair(
        server_config(&a, &ca_opts(&ca)).unwrap(),
        PqMode::Hybrid,
        client_config(&b, &ca_opts(&other), None).unwrap(),
        PqMode::Hybrid,
    )
    .await;
    // The client (trusting `other`) already rejects `a`'s certificate, or the server rejects
    // `b`'s: either way the session does not open.
    assert!(s.is_err());
}

#[test]
fn ca_mode_with_empty_bundle_is_a_config_error() {
    let a = Identity::generate_dev().unwrap();
    let bad = TlsOptions {
        pq: PqMode::Hybrid,
        ca_roots: Some(Vec::new()),
    };
    assert_eq!(server_config(&a, &bad).unwrap_err().reason(), "ca_bundle");
    assert_eq!(
        client_config(&a, &bad, None).unwrap_err().reason(),
        "ca_bundle"
    );
}

#[test]
fn ca_file_loader_reads_pem_bundles() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, ca.cert.pem()).unwrap();
    let loaded = TlsOptions::default().with_ca_file(&path).unwrap();
    assert_eq!(loaded.ca_roots, Some(vec![ca.root()]));
    let missing = TlsOptions::load_ca_file(&dir.path().join("nope.pem")).unwrap_err();
    assert_eq!(missing.reason(), "io");
    std::fs::write(&path, "not pem").unwrap();
    assert_eq!(TlsOptions::load_ca_file(&path).unwrap_err().reason(), "pem");
}

#[tokio::test]
async fn expired_server_certificate_is_refused() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["svc-overlay.local".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let a = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let b = Identity::generate_dev().unwrap();
    let (s, c) = run_pair(
        server_config(&a, &TlsOptions::default()).unwrap(),
        PqMode::Hybrid,
        client_config(&b, &TlsOptions::default(), Some(a.peer_id())).unwrap(),
        PqMode::Hybrid,
    )
    .await;
    assert_eq!(reason(&c, "client"), "cert_expired");
    assert_eq!(reason(&s, "server"), "peer_rejected_cert");
}

#[tokio::test]
async fn tls12_only_client_is_refused() {
    // `tokio-rustls` enables rustls' `tls12` feature, so a genuine TLS 1.2-only client can be
    // built (with the full aws-lc-rs provider, since ours carries TLS 1.3 suites only).
    let a = Identity::generate_dev().unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = tls::verify::PeerServerVerifier::new(provider.clone(), None, None).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
    let (s, c) = run_pair(
        server_config(&a, &TlsOptions::default()).unwrap(),
        PqMode::Hybrid,
        Arc::new(cfg),
        PqMode::Hybrid,
    )
    .await;
    assert_eq!(reason(&s, "server"), "protocol_version");
    assert_eq!(reason(&c, "client"), "protocol_version");
}

fn write_identity_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, PeerId) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["svc-overlay.local".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join("node.crt");
    let key_path = dir.join("node.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let id = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .unwrap()
        .peer_id();
    (cert_path, key_path, id)
}

#[cfg(unix)]
#[test]
fn key_file_mode_is_enforced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path, id) = write_identity_files(dir.path());

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Identity::from_pem_files(&cert_path, &key_path).unwrap_err();
    assert_eq!(err.reason(), "key_file_mode");
    let msg = err.to_string();
    assert!(msg.contains("node.key") && msg.contains("0644"), "{msg}");
    assert!(tls::check_secret_file_mode(&key_path).is_err());

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(Identity::from_pem_files(&cert_path, &key_path).is_err());

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let loaded = Identity::from_pem_files(&cert_path, &key_path).unwrap();
    assert_eq!(loaded.peer_id(), id);
    tls::check_secret_file_mode(&key_path).unwrap();

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(Identity::from_pem_files(&cert_path, &key_path).is_ok());

    let missing = tls::check_secret_file_mode(&dir.path().join("absent")).unwrap_err();
    assert_eq!(missing.reason(), "io");
}

#[test]
fn identity_pem_roundtrip_and_key_mismatch() {
    let a = Identity::generate_dev().unwrap();
    let pem = a.cert_pem();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let parsed = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1;
    assert_eq!(parsed.contents, a.cert_chain()[0].as_ref());
    let leaf = parsed.parse_x509().unwrap();
    assert_eq!(a.peer_id(), PeerId::from_spki_der(leaf.public_key().raw));
    assert_eq!(
        tls::peer_id_from_cert(&a.cert_chain()[0]).unwrap(),
        a.peer_id()
    );

    // A certificate with somebody else's key is refused.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let err = Identity::from_pem(pem.as_bytes(), other_key.serialize_pem().as_bytes()).unwrap_err();
    assert_eq!(err.reason(), "key_mismatch");
    assert_eq!(
        Identity::from_pem(b"", other_key.serialize_pem().as_bytes())
            .unwrap_err()
            .reason(),
        "pem"
    );
    assert!(!format!("{a:?}").contains("PRIVATE"));
    assert_eq!(a.clone().peer_id(), a.peer_id());
}

#[test]
fn plain_io_errors_are_classified() {
    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
    assert_eq!(classify_handshake_error(&eof), "eof");
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    assert_eq!(classify_handshake_error(&reset), "reset");
    let wrapped = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::NoCertificatesPresented,
    );
    assert_eq!(classify_handshake_error(&wrapped), "no_client_cert");
}

/// A certificate paired with a key that is not its own: what an impersonator without the key
/// could present.
fn stolen_cert(victim: &Identity, impostor: &Identity) -> Arc<rustls::sign::SingleCertAndKey> {
    let certified = rustls::sign::CertifiedKey::new(
        victim.cert_chain().to_vec(),
        impostor.certified_key().key.clone(),
    );
    Arc::new(rustls::sign::SingleCertAndKey::from(certified))
}

#[tokio::test]
async fn client_presenting_a_certificate_without_its_key_is_refused() {
    let a = Identity::generate_dev().unwrap();
    let victim = Identity::generate_dev().unwrap();
    let impostor = Identity::generate_dev().unwrap();
    let provider = tls::crypto_provider(PqMode::Hybrid);
    let verifier =
        tls::verify::PeerServerVerifier::new(provider.clone(), None, Some(a.peer_id())).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(stolen_cert(&victim, &impostor));
    cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
    let (s, c) = run_pair(
        server_config(&a, &TlsOptions::default()).unwrap(),
        PqMode::Hybrid,
        Arc::new(cfg),
        PqMode::Hybrid,
    )
    .await;
    // The CertificateVerify signature does not verify under the certificate's key.
    assert_eq!(reason(&s, "server"), "bad_certificate");
    assert_eq!(reason(&c, "client"), "peer_rejected_cert");
}

#[tokio::test]
async fn server_presenting_a_certificate_without_its_key_is_refused() {
    let victim = Identity::generate_dev().unwrap();
    let impostor = Identity::generate_dev().unwrap();
    let b = Identity::generate_dev().unwrap();
    let provider = tls::crypto_provider(PqMode::Hybrid);
    let verifier = tls::verify::PeerClientVerifier::new(provider.clone(), None).unwrap();
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(stolen_cert(&victim, &impostor));
    cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
    let (s, c) = run_pair(
        Arc::new(cfg),
        PqMode::Hybrid,
        // The dialer expects the victim and the certificate hashes to the victim's PeerId.
        client_config(&b, &TlsOptions::default(), Some(victim.peer_id())).unwrap(),
        PqMode::Hybrid,
    )
    .await;
    assert_eq!(reason(&c, "client"), "bad_certificate");
    assert_eq!(reason(&s, "server"), "peer_rejected_cert");
}
