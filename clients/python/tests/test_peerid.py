"""The built-in BLAKE3 (single chunk) against the official test vectors, and SPKI extraction."""

import pathlib
import unittest

from svc_overlay_client.tlsid import IdentityMismatch, blake3_small, check_peer_id, peer_id_of, spki_der

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures"
PEER_IDS = {
    "ed25519": "peer:c8dc82d52486b3d2ed3849fec23e0412bfd0ff8370cd195bd1e45fd9f763315c",
    "p256": "peer:20f8ebd3c3fe22e782b95ce34190105c17d3e050984dd337548612d058aad81f",
}

# From the BLAKE3 repository's test_vectors.json: input byte i = i % 251, first 32 bytes of hash.
VECTORS = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    63: "e9bc37a594daad83be9470df7f7b3798297c3d834ce80ba85d6e207627b7db7b",
    64: "4eed7141ea4a5cd4b788606bd23f46e212af9cacebacdc7d1f4c6dc7f2511b98",
    65: "de1e5fa0be70df6d2be8fffd0e99ceaa8eb6e8c93a63f2d8d1c30ecb6b263dee",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
}


class Blake3(unittest.TestCase):
    def test_official_vectors(self):
        for n, want in VECTORS.items():
            self.assertEqual(blake3_small(bytes(i % 251 for i in range(n))).hex(), want, n)

    def test_longer_inputs_are_refused(self):
        with self.assertRaises(ValueError):
            blake3_small(bytes(1025))

    def test_spki_and_peer_id_of_real_certificates(self):
        for kind, want in PEER_IDS.items():
            cert = (FIXTURES / f"{kind}-cert.der").read_bytes()
            self.assertEqual(spki_der(cert), (FIXTURES / f"{kind}-spki.der").read_bytes(), kind)
            self.assertEqual(peer_id_of(cert), want, kind)
            check_peer_id(cert, want.upper().replace("PEER:", "peer:"))
            with self.assertRaises(IdentityMismatch):
                check_peer_id(cert, "peer:" + "00" * 32)

    def test_truncated_certificate_is_a_typed_error(self):
        with self.assertRaises(IdentityMismatch):
            spki_der(b"\x30\x82\x01")


if __name__ == "__main__":
    unittest.main()
