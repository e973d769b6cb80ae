import { test } from "node:test";
import assert from "node:assert/strict";
import { blake3Small } from "../dist/index.js";

const hex = (b) => Buffer.from(b).toString("hex");

test("BLAKE3 known answers (official test vectors: input byte i = i % 251)", () => {
  // From the BLAKE3 repository's test_vectors.json (hash, first 32 bytes).
  const cases = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    63: "e9bc37a594daad83be9470df7f7b3798297c3d834ce80ba85d6e207627b7db7b",
    64: "4eed7141ea4a5cd4b788606bd23f46e212af9cacebacdc7d1f4c6dc7f2511b98",
    65: "de1e5fa0be70df6d2be8fffd0e99ceaa8eb6e8c93a63f2d8d1c30ecb6b263dee",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
  };
  for (const [len, want] of Object.entries(cases)) {
    const input = Uint8Array.from({ length: Number(len) }, (_, i) => i % 251);
    assert.equal(hex(blake3Small(input)), want, `len ${len}`);
  }
  assert.throws(() => blake3Small(new Uint8Array(1025)), RangeError);
});

import { readFileSync } from "node:fs";
import { peerIdOf, spkiDer } from "../dist/index.js";

const fixture = (name) => new Uint8Array(readFileSync(new URL(`../../fixtures/${name}`, import.meta.url)));
const PEER_IDS = {
  ed25519: "peer:c8dc82d52486b3d2ed3849fec23e0412bfd0ff8370cd195bd1e45fd9f763315c",
  p256: "peer:20f8ebd3c3fe22e782b95ce34190105c17d3e050984dd337548612d058aad81f",
};

test("SPKI and PeerId of real certificates", () => {
  for (const [kind, want] of Object.entries(PEER_IDS)) {
    const cert = fixture(`${kind}-cert.der`);
    assert.equal(hex(spkiDer(cert)), hex(fixture(`${kind}-spki.der`)), kind);
    assert.equal(peerIdOf(cert), want, kind);
  }
  assert.throws(() => spkiDer(new Uint8Array([0x30, 0x82, 0x01])), (e) => e.name === "IdentityMismatch");
});
