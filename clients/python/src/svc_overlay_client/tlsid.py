"""TLS settings for a client session and the server's identity check.

A node's PeerId is ``BLAKE3(DER SubjectPublicKeyInfo of its certificate)``. Pinning a PeerId needs
BLAKE3, which the standard library lacks: it uses the ``blake3`` package when installed
(``pip install svc-overlay-client[pin]``). Without a pin, a CA file can verify the chain; with
neither, the caller must ask for an unverified connection explicitly.
"""

from __future__ import annotations

import ssl
from typing import Optional, Tuple

from .errors import OverlayError

ALPN = "ron/oap1"


class IdentityMismatch(OverlayError):
    """The server's certificate is not the pinned PeerId (or could not be checked)."""


def make_context(ca_file: Optional[str] = None, verify: bool = True) -> ssl.SSLContext:
    """A TLS 1.3-only client context with ALPN ``ron/oap1`` and no client certificate.

    With ``ca_file`` the chain is verified against it (the PeerId, not a host name, is the
    identity, so host names are not checked). With ``verify=False`` and no CA nothing is
    verified here: pin the PeerId with :func:`check_peer_id` instead.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([ALPN])
    ctx.check_hostname = False
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif verify:
        raise OverlayError(
            "no way to verify the server: give server_id (PeerId pin), ca_file, or insecure=True"
        )
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _der_item(buf: bytes, pos: int) -> Tuple[int, int, int]:
    """Returns (tag, start of content, end of content) of the DER item at ``pos``."""
    if pos + 2 > len(buf):
        raise IdentityMismatch("certificate DER is truncated")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(buf):
            raise IdentityMismatch("certificate DER has a bad length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise IdentityMismatch("certificate DER is truncated")
    return tag, pos, pos + length


def spki_der(cert_der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo inside an X.509 certificate."""
    _, cert_start, _ = _der_item(cert_der, 0)  # Certificate SEQUENCE
    tag, pos, tbs_end = _der_item(cert_der, cert_start)  # tbsCertificate SEQUENCE
    if tag != 0x30:
        raise IdentityMismatch("certificate has no tbsCertificate")
    tag, _, end = _der_item(cert_der, pos)
    if tag == 0xA0:  # [0] version
        pos = end
    # serialNumber, signature, issuer, validity, subject
    for _ in range(5):
        _, _, end = _der_item(cert_der, pos)
        pos = end
    tag, _, end = _der_item(cert_der, pos)
    if tag != 0x30 or end > tbs_end:
        raise IdentityMismatch("certificate has no SubjectPublicKeyInfo")
    return cert_der[pos:end]


def peer_id_of(cert_der: bytes) -> str:
    """The PeerId (``peer:<64 hex>``) of a DER certificate. Needs the ``blake3`` package."""
    try:
        import blake3  # type: ignore[import-not-found]
    except ImportError:
        raise IdentityMismatch(
            "pinning a PeerId needs the blake3 package (pip install 'svc-overlay-client[pin]')"
        ) from None
    return "peer:" + blake3.blake3(spki_der(cert_der)).hexdigest()


def check_peer_id(cert_der: Optional[bytes], expected: str) -> None:
    """Raises :class:`IdentityMismatch` unless the certificate's PeerId is ``expected``."""
    if not cert_der:
        raise IdentityMismatch("the server presented no certificate")
    actual = peer_id_of(cert_der)
    if actual != expected.strip().lower():
        raise IdentityMismatch(f"server is {actual}, expected {expected}")
