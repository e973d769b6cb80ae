"""TLS settings for a client session and the server's identity check.

A node's PeerId is ``BLAKE3(DER SubjectPublicKeyInfo of its certificate)``. The standard library
has no BLAKE3, so this module carries the small part of it PeerIds need: the hash of one input of
at most 1024 bytes (a single chunk; a certificate's SPKI is far smaller), per the BLAKE3
specification. Without a pin, a CA file can verify the chain; with neither, the caller must ask
for an unverified connection explicitly.
"""

from __future__ import annotations

import ssl
import struct
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


_IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
_PERMUTATION = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
_CHUNK_START, _CHUNK_END, _ROOT = 1, 2, 8
_M32 = 0xFFFFFFFF


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _M32


def _g(s: list, a: int, b: int, c: int, d: int, x: int, y: int) -> None:
    s[a] = (s[a] + s[b] + x) & _M32
    s[d] = _rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _M32
    s[b] = _rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + y) & _M32
    s[d] = _rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _M32
    s[b] = _rotr(s[b] ^ s[c], 7)


def _compress(cv: list, m: list, block_len: int, flags: int) -> list:
    s = list(cv) + list(_IV[:4]) + [0, 0, block_len, flags]
    for _ in range(7):
        _g(s, 0, 4, 8, 12, m[0], m[1])
        _g(s, 1, 5, 9, 13, m[2], m[3])
        _g(s, 2, 6, 10, 14, m[4], m[5])
        _g(s, 3, 7, 11, 15, m[6], m[7])
        _g(s, 0, 5, 10, 15, m[8], m[9])
        _g(s, 1, 6, 11, 12, m[10], m[11])
        _g(s, 2, 7, 8, 13, m[12], m[13])
        _g(s, 3, 4, 9, 14, m[14], m[15])
        m = [m[i] for i in _PERMUTATION]
    return [s[i] ^ s[i + 8] for i in range(8)]


def blake3_small(data: bytes) -> bytes:
    """BLAKE3 (32-byte output) of an input of at most 1024 bytes."""
    if len(data) > 1024:
        raise ValueError("blake3_small hashes at most one 1024-byte chunk")
    cv = list(_IV)
    blocks = max(1, -(-len(data) // 64))
    for i in range(blocks):
        part = data[i * 64 : i * 64 + 64]
        words = list(struct.unpack("<16I", part.ljust(64, b"\0")))
        flags = (_CHUNK_START if i == 0 else 0) | (_CHUNK_END | _ROOT if i == blocks - 1 else 0)
        cv = _compress(cv, words, len(part), flags)
    return struct.pack("<8I", *cv)


def peer_id_of(cert_der: bytes) -> str:
    """The PeerId (``peer:<64 hex>``) of a DER certificate."""
    return "peer:" + blake3_small(spki_der(cert_der)).hex()


def check_peer_id(cert_der: Optional[bytes], expected: str) -> None:
    """Raises :class:`IdentityMismatch` unless the certificate's PeerId is ``expected``."""
    if not cert_der:
        raise IdentityMismatch("the server presented no certificate")
    actual = peer_id_of(cert_der)
    if actual != expected.strip().lower():
        raise IdentityMismatch(f"server is {actual}, expected {expected}")
