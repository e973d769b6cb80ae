/**
 * The server's identity: a node's PeerId is BLAKE3(DER SubjectPublicKeyInfo of its certificate).
 * Node's crypto has no BLAKE3, so this file carries the small part of it that PeerIds need: the
 * hash of one input of at most 1024 bytes (a single chunk), per the BLAKE3 specification.
 */

import { IdentityMismatch } from "./errors.js";

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const MSG_PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1;
const CHUNK_END = 2;
const ROOT = 8;

const rotr = (x: number, n: number): number => ((x >>> n) | (x << (32 - n))) >>> 0;

function g(s: number[], a: number, b: number, c: number, d: number, x: number, y: number): void {
  s[a] = (s[a]! + s[b]! + x) >>> 0;
  s[d] = rotr(s[d]! ^ s[a]!, 16);
  s[c] = (s[c]! + s[d]!) >>> 0;
  s[b] = rotr(s[b]! ^ s[c]!, 12);
  s[a] = (s[a]! + s[b]! + y) >>> 0;
  s[d] = rotr(s[d]! ^ s[a]!, 8);
  s[c] = (s[c]! + s[d]!) >>> 0;
  s[b] = rotr(s[b]! ^ s[c]!, 7);
}

function compress(cv: number[], block: number[], blockLen: number, flags: number): number[] {
  const s = [...cv, IV[0]!, IV[1]!, IV[2]!, IV[3]!, 0, 0, blockLen, flags];
  let m = block;
  for (let round = 0; round < 7; round++) {
    g(s, 0, 4, 8, 12, m[0]!, m[1]!);
    g(s, 1, 5, 9, 13, m[2]!, m[3]!);
    g(s, 2, 6, 10, 14, m[4]!, m[5]!);
    g(s, 3, 7, 11, 15, m[6]!, m[7]!);
    g(s, 0, 5, 10, 15, m[8]!, m[9]!);
    g(s, 1, 6, 11, 12, m[10]!, m[11]!);
    g(s, 2, 7, 8, 13, m[12]!, m[13]!);
    g(s, 3, 4, 9, 14, m[14]!, m[15]!);
    m = MSG_PERMUTATION.map((i) => m[i]!);
  }
  return s.slice(0, 8).map((v, i) => (v ^ s[i + 8]!) >>> 0);
}

/** BLAKE3 (32-byte output) of an input of at most 1024 bytes. */
export function blake3Small(input: Uint8Array): Uint8Array {
  if (input.length > 1024) throw new RangeError("blake3Small hashes at most one 1024-byte chunk");
  let cv = [...IV];
  const blocks = Math.max(1, Math.ceil(input.length / 64));
  for (let i = 0; i < blocks; i++) {
    const bytes = new Uint8Array(64);
    const part = input.subarray(i * 64, i * 64 + 64);
    bytes.set(part);
    const words = Array.from({ length: 16 }, (_, w) => new DataView(bytes.buffer).getUint32(w * 4, true));
    let flags = 0;
    if (i === 0) flags |= CHUNK_START;
    if (i === blocks - 1) flags |= CHUNK_END | ROOT;
    cv = compress(cv, words, part.length, flags);
  }
  const out = new Uint8Array(32);
  const v = new DataView(out.buffer);
  cv.forEach((w, i) => v.setUint32(i * 4, w, true));
  return out;
}

function derItem(buf: Uint8Array, pos: number): [tag: number, start: number, end: number] {
  if (pos + 2 > buf.length) throw new IdentityMismatch("certificate DER is truncated");
  const tag = buf[pos]!;
  let len = buf[pos + 1]!;
  pos += 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || pos + n > buf.length) throw new IdentityMismatch("certificate DER has a bad length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i]!;
    pos += n;
  }
  if (pos + len > buf.length) throw new IdentityMismatch("certificate DER is truncated");
  return [tag, pos, pos + len];
}

/** The DER SubjectPublicKeyInfo inside an X.509 certificate. */
export function spkiDer(cert: Uint8Array): Uint8Array {
  const [, certStart] = derItem(cert, 0);
  const [tag, tbsStart, tbsEnd] = derItem(cert, certStart);
  if (tag !== 0x30) throw new IdentityMismatch("certificate has no tbsCertificate");
  let pos = tbsStart;
  const [first, , firstEnd] = derItem(cert, pos);
  if (first === 0xa0) pos = firstEnd;
  for (let i = 0; i < 5; i++) pos = derItem(cert, pos)[2];
  const [spkiTag, , end] = derItem(cert, pos);
  if (spkiTag !== 0x30 || end > tbsEnd) throw new IdentityMismatch("certificate has no SubjectPublicKeyInfo");
  return cert.slice(pos, end);
}

/** The PeerId (`peer:<64 hex>`) of a DER certificate. */
export function peerIdOf(cert: Uint8Array): string {
  return "peer:" + Buffer.from(blake3Small(spkiDer(cert))).toString("hex");
}
