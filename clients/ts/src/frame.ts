/**
 * OAP/1 framing, exactly as the reference codec (default build, no zstd): a 38-byte header, an
 * optional capability section (only with START) and an optional payload; integers big-endian.
 */

export const HEADER_LEN = 38;
export const MAX_FRAME_BYTES = 1_048_576;
export const MAX_CAP_LEN = 0xffff;
export const VERSION = 1;

export const REQ = 0x0001;
export const RESP = 0x0002;
export const EVENT = 0x0004;
export const START = 0x0008;
export const END = 0x0010;
export const ACK_REQ = 0x0020;
export const COMP = 0x0040;
export const APP_E2E = 0x0080;
const RESERVED_FLAGS = 0xff00;

const FLAG_NAMES: Array<[number, string]> = [
  [REQ, "REQ"],
  [RESP, "RESP"],
  [EVENT, "EVENT"],
  [START, "START"],
  [END, "END"],
  [ACK_REQ, "ACK_REQ"],
  [COMP, "COMP"],
  [APP_E2E, "APP_E2E"],
];

/** A frame the reference decoder rejects, or an encoder input it refuses. `kind` is the
 * reference's snake_case class; `consumed` the bytes the failed call removed. */
export class FrameError extends Error {
  constructor(
    readonly kind: string,
    message: string,
    readonly consumed: number = 0,
  ) {
    super(message);
    this.name = "FrameError";
  }
}

/** The fixed header. `length` and `capLen` are recomputed by {@link encode}. */
export interface Header {
  flags: number;
  code: number;
  appProtoId: number;
  /** 128-bit tenant id. */
  tenantId: bigint;
  /** 64-bit correlation id. */
  corrId: bigint;
  version: number;
  length: number;
  capLen: number;
}

/** A decoded frame; `cap` and `payload` are empty when absent. */
export interface Frame {
  header: Header;
  cap: Uint8Array;
  payload: Uint8Array;
}

/** A header with defaults for every field not given. */
export function header(fields: Partial<Header> = {}): Header {
  return {
    flags: 0,
    code: 0,
    appProtoId: 0,
    tenantId: 0n,
    corrId: 0n,
    version: VERSION,
    length: HEADER_LEN,
    capLen: 0,
    ...fields,
  };
}

/** The names of the defined flag bits that are set, in bit order. */
export function flagNames(flags: number): string[] {
  return FLAG_NAMES.filter(([bit]) => flags & bit).map(([, name]) => name);
}

/** Parses the first 38 bytes without validating anything. */
export function parseHeader(buf: Uint8Array): Header {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const hi = v.getBigUint64(12);
  const lo = v.getBigUint64(20);
  return {
    length: v.getUint32(0),
    version: v.getUint16(4),
    flags: v.getUint16(6),
    code: v.getUint16(8),
    appProtoId: v.getUint16(10),
    tenantId: (hi << 64n) | lo,
    capLen: v.getUint16(28),
    corrId: v.getBigUint64(30),
  };
}

/** Encodes like the reference: `length`/`capLen` recomputed, `version`/`flags` written as given.
 * Throws {@link FrameError} `cap_out_of_bounds` or `frame_too_large`. */
export function encode(h: Header, cap: Uint8Array = new Uint8Array(), payload: Uint8Array = new Uint8Array()): Uint8Array {
  if (cap.length > MAX_CAP_LEN) {
    throw new FrameError("cap_out_of_bounds", `cap of ${cap.length} bytes exceeds ${MAX_CAP_LEN}`);
  }
  const total = HEADER_LEN + cap.length + payload.length;
  if (total > MAX_FRAME_BYTES) {
    throw new FrameError("frame_too_large", `frame too large: ${total} > ${MAX_FRAME_BYTES}`);
  }
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(0, total);
  v.setUint16(4, h.version);
  v.setUint16(6, h.flags);
  v.setUint16(8, h.code);
  v.setUint16(10, h.appProtoId);
  const mask = (1n << 64n) - 1n;
  v.setBigUint64(12, (h.tenantId >> 64n) & mask);
  v.setBigUint64(20, h.tenantId & mask);
  v.setUint16(28, cap.length);
  v.setBigUint64(30, h.corrId & mask);
  out.set(cap, HEADER_LEN);
  out.set(payload, HEADER_LEN + cap.length);
  return out;
}

/** One decode call, following the reference steps in order: `null` (need more) or the frame and
 * the bytes it used; throws {@link FrameError}. */
export function decode(buf: Uint8Array): { frame: Frame; consumed: number } | null {
  if (buf.length < HEADER_LEN) return null;
  const h = parseHeader(buf);
  if (h.flags & RESERVED_FLAGS) {
    throw new FrameError("bad_flags", `bad flags bits 0x${(h.flags & RESERVED_FLAGS).toString(16).padStart(4, "0")}`);
  }
  if (h.version !== VERSION) throw new FrameError("bad_version", `bad version ${h.version}`);
  if (h.length === 0 || h.length > MAX_FRAME_BYTES) {
    throw new FrameError("frame_too_large", `frame too large: ${h.length} > ${MAX_FRAME_BYTES}`);
  }
  if (h.capLen > 0 && !(h.flags & START)) {
    throw new FrameError("cap_on_non_start", "cap section present but START flag not set");
  }
  if (buf.length < h.length) return null;
  const consumed = h.length;
  if (h.length < HEADER_LEN) throw new FrameError("truncated_header", "truncated header", consumed);
  if (h.capLen > h.length - HEADER_LEN) {
    throw new FrameError("cap_out_of_bounds", "cap length exceeds frame", consumed);
  }
  const cap = buf.slice(HEADER_LEN, HEADER_LEN + h.capLen);
  const payload = buf.slice(HEADER_LEN + h.capLen, h.length);
  if (h.flags & COMP) {
    throw new FrameError("zstd_feature_not_enabled", "COMP frames are not supported (no zstd)", consumed);
  }
  return { frame: { header: h, cap, payload }, consumed };
}

/** Incremental decoding: {@link push} bytes as they arrive, then call {@link next} until `null`. */
export class Decoder {
  private buf = new Uint8Array(0);

  /** Bytes buffered and not yet decoded. */
  get buffered(): number {
    return this.buf.length;
  }

  push(data: Uint8Array): void {
    const joined = new Uint8Array(this.buf.length + data.length);
    joined.set(this.buf);
    joined.set(data, this.buf.length);
    this.buf = joined;
  }

  next(): Frame | null {
    let result;
    try {
      result = decode(this.buf);
    } catch (err) {
      if (err instanceof FrameError) this.buf = this.buf.slice(err.consumed);
      throw err;
    }
    if (result === null) return null;
    this.buf = this.buf.slice(result.consumed);
    return result.frame;
  }
}
