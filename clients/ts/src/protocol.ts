/**
 * The client session as a sans-IO state machine: feed received bytes to
 * {@link ClientSession.receive}, send what {@link ClientSession.takeOutput} returns, act on the
 * events. The wire format is docs/PROTOCOL.md ("Client sessions") of the svc-overlay repository.
 */

import * as f from "./frame.js";
import { ProtocolError, StatusError, statusError } from "./errors.js";

export const OVERLAY_APP = 0x4f56;
export const CREDIT = 0x0105;
export const DIRECT = 0x0106;
export const PING = 0x0109;
export const PONG = 0x010a;
export const PUBLISH = 0x0110;
export const SUBSCRIBE = 0x0111;
export const UNSUBSCRIBE = 0x0112;
export const DELIVER = 0x0113;
export const LAGGED = 0x0114;

const HELLO_CORR = 1n;
const START_CORR = 2n;
const FIRST_REQUEST_CORR = 3n;
export const DEFAULT_WINDOW_FRAMES = 256;
export const DEFAULT_WINDOW_BYTES = 4 * 1024 * 1024;
/** Frames queued while the server's window is closed; beyond it sends fail with 429. */
export const MAX_PENDING_FRAMES = 1024;
const DELIVER_HEAD = 32 + 32 + 1;

/** What the server said in its HELLO reply. */
export interface HelloReply {
  maxFrame: number;
  maxInflight: number;
  versions: number[];
  peerId: string | null;
  creditFrames: number;
  creditBytes: number;
  raw: Record<string, unknown>;
}

/** A gossip message delivered to this client. */
export interface Message {
  type: "message";
  id: Uint8Array;
  origin: Uint8Array;
  hops: number;
  data: Uint8Array;
}

/** Deliveries were dropped because this client read too slowly. */
export interface Lagged {
  type: "lagged";
  dropped: number;
}

/** A DIRECT message the node's application sent to this client. */
export interface Direct {
  type: "direct";
  data: Uint8Array;
}

/** One event of {@link ClientSession.receive}. */
export type Event =
  | { type: "started"; hello: HelloReply }
  | { type: "response"; corrId: bigint; body: Record<string, unknown> }
  | { type: "failed"; corrId: bigint; error: StatusError }
  | Message
  | Lagged
  | Direct
  | { type: "closed"; error: StatusError | null };

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

/** The CLI's JSON form of a message: `{"id","origin","data_b64"}`. */
export function messageJson(m: Message): { id: string; origin: string; data_b64: string } {
  return { id: hex(m.id), origin: "peer:" + hex(m.origin), data_b64: Buffer.from(m.data).toString("base64") };
}

function jsonObject(payload: Uint8Array, what: string): Record<string, unknown> {
  if (payload.length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch (err) {
    throw new ProtocolError(`${what}: payload is not JSON (${String(err)})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(`${what}: payload is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function errorLabel(payload: Uint8Array): string {
  try {
    const label = jsonObject(payload, "error").error;
    return typeof label === "string" ? label : "";
  } catch {
    return "";
  }
}

function uint(body: Record<string, unknown>, key: string, fallback?: number): number {
  const value = key in body ? body[key] : fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new ProtocolError(`HELLO reply: \`${key}\` must be a non-negative integer`);
  }
  return value;
}

/** Parses a HELLO reply: the five reference keys are required, overlay keys optional. */
export function parseHelloReply(payload: Uint8Array): HelloReply {
  const body = jsonObject(payload, "HELLO reply");
  for (const key of ["max_frame", "max_inflight", "flags_supported", "versions", "transports"]) {
    if (!(key in body)) throw new ProtocolError(`HELLO reply: missing \`${key}\``);
  }
  const versions = body.versions;
  if (!Array.isArray(versions) || !versions.includes(1)) {
    throw new ProtocolError("HELLO reply: `versions` must contain 1");
  }
  const maxInflight = uint(body, "max_inflight");
  return {
    maxFrame: uint(body, "max_frame"),
    maxInflight,
    versions: versions.filter((v): v is number => typeof v === "number"),
    peerId: typeof body.peer_id === "string" ? body.peer_id : null,
    creditFrames: uint(body, "credit_frames", maxInflight),
    creditBytes: uint(body, "credit_bytes", f.MAX_FRAME_BYTES),
    raw: body,
  };
}

/** Parses a DELIVER body: `id[32] origin[32] hops u8` then the message. */
export function parseDeliver(body: Uint8Array): Message {
  if (body.length < DELIVER_HEAD) {
    throw new ProtocolError(`DELIVER body of ${body.length} bytes is shorter than ${DELIVER_HEAD}`);
  }
  return {
    type: "message",
    id: body.slice(0, 32),
    origin: body.slice(32, 64),
    hops: body[64] as number,
    data: body.slice(DELIVER_HEAD),
  };
}

/** The reference HELLO request (`{"ua": …}` only), byte for byte as the reference builds it. */
export function helloRequestBytes(userAgent: string | null, tenantId = 0n, corrId = 1n): Uint8Array {
  const payload = new TextEncoder().encode(JSON.stringify({ ua: userAgent }));
  return f.encode(f.header({ flags: f.REQ, tenantId, corrId }), new Uint8Array(), payload);
}

type State = "new" | "hello" | "starting" | "open" | "closed";

/** One client session: HELLO, START with a token, then requests and events. */
export class ClientSession {
  private readonly token: Uint8Array;
  private readonly decoder = new f.Decoder();
  private out: Uint8Array[] = [];
  private pending: Uint8Array[] = [];
  private state: State = "new";
  private helloReply: HelloReply | null = null;
  private nextCorr = FIRST_REQUEST_CORR;
  private sendFrames = 0;
  private sendBytes = 0;
  private usedFrames = 0;
  private usedBytes = 0;

  constructor(
    token: string,
    private readonly userAgent = "svc-overlay-client-ts/0.1.0",
    private readonly tenantId = 0n,
    private readonly windowFrames = DEFAULT_WINDOW_FRAMES,
    private readonly windowBytes = DEFAULT_WINDOW_BYTES,
  ) {
    this.token = new TextEncoder().encode(token.trim());
  }

  get isOpen(): boolean {
    return this.state === "open";
  }

  get isClosed(): boolean {
    return this.state === "closed";
  }

  get hello(): HelloReply | null {
    return this.helloReply;
  }

  /** Everything queued for the server since the last call. */
  takeOutput(): Uint8Array {
    const total = this.out.reduce((n, b) => n + b.length, 0);
    const joined = new Uint8Array(total);
    let at = 0;
    for (const b of this.out) {
      joined.set(b, at);
      at += b.length;
    }
    this.out = [];
    return joined;
  }

  private frame(flags: number, code: number, app: number, corrId: bigint, cap?: Uint8Array, payload?: Uint8Array): Uint8Array {
    return f.encode(f.header({ flags, code, appProtoId: app, corrId, tenantId: this.tenantId }), cap, payload);
  }

  private fits(size: number): boolean {
    return this.sendFrames >= 1 && this.sendBytes >= size;
  }

  private emitCounted(data: Uint8Array): void {
    if (this.pending.length > 0 || !this.fits(data.length)) {
      if (this.pending.length >= MAX_PENDING_FRAMES) {
        throw statusError(429, "client send queue full (the server grants no credit)");
      }
      this.pending.push(data);
      return;
    }
    this.sendFrames -= 1;
    this.sendBytes -= data.length;
    this.out.push(data);
  }

  private flushPending(): void {
    while (this.pending.length > 0 && this.fits((this.pending[0] as Uint8Array).length)) {
      const data = this.pending.shift() as Uint8Array;
      this.sendFrames -= 1;
      this.sendBytes -= data.length;
      this.out.push(data);
    }
  }

  /** Queues the HELLO request; call once, right after the TLS handshake. */
  begin(): void {
    if (this.state !== "new") throw new ProtocolError("begin() called twice");
    const payload = new TextEncoder().encode(
      JSON.stringify({ ua: this.userAgent, credit_frames: this.windowFrames, credit_bytes: this.windowBytes }),
    );
    this.out.push(this.frame(f.REQ, 0, 0, HELLO_CORR, undefined, payload));
    this.state = "hello";
  }

  private request(kind: number, payload: Uint8Array): bigint {
    if (this.state !== "open") throw new ProtocolError("the session is not open");
    const corr = this.nextCorr;
    this.nextCorr += 1n;
    this.emitCounted(this.frame(f.REQ, kind, OVERLAY_APP, corr, undefined, payload));
    return corr;
  }

  /** Queues a PUBLISH; returns the request's corr id (its answer carries the message id). */
  publish(data: Uint8Array): bigint {
    const limit = f.MAX_FRAME_BYTES - f.HEADER_LEN;
    if (data.length > limit) throw statusError(413, `message of ${data.length} bytes exceeds ${limit}`);
    return this.request(PUBLISH, data);
  }

  /** Queues a SUBSCRIBE; deliveries follow its successful answer. */
  subscribe(): bigint {
    return this.request(SUBSCRIBE, new Uint8Array());
  }

  /** Queues an UNSUBSCRIBE. */
  unsubscribe(): bigint {
    return this.request(UNSUBSCRIBE, new Uint8Array());
  }

  /** Queues a DIRECT message to the node (no answer). */
  /** Queues a PING (answered with PONG). The node closes a client that sends nothing for its
   * `idle_ms` (60 s by default): an idle client pings now and then. */
  ping(): void {
    if (this.state !== "open") throw new ProtocolError("the session is not open");
    this.emitCounted(this.frame(f.EVENT, PING, OVERLAY_APP, 0n));
  }

  direct(data: Uint8Array): void {
    if (this.state !== "open") throw new ProtocolError("the session is not open");
    this.emitCounted(this.frame(f.EVENT, DIRECT, OVERLAY_APP, 0n, undefined, data));
  }

  /** Takes bytes from the server; returns the events they complete. */
  receive(data: Uint8Array): Event[] {
    if (this.state === "closed") return [];
    this.decoder.push(data);
    const events: Event[] = [];
    for (;;) {
      let fr: f.Frame | null;
      try {
        fr = this.decoder.next();
      } catch (err) {
        if (err instanceof f.FrameError) throw new ProtocolError(`undecodable frame from the server: ${err.kind}`);
        throw err;
      }
      if (fr === null) break;
      events.push(...this.onFrame(fr));
      if (this.isClosed) break;
    }
    return events;
  }

  /** The transport ended; returns the final `closed` event (once). */
  connectionLost(): Event[] {
    if (this.state === "closed") return [];
    this.state = "closed";
    return [{ type: "closed", error: null }];
  }

  private onFrame(fr: f.Frame): Event[] {
    const h = fr.header;
    if (h.flags & f.RESP && h.code >= 400) {
      const error = statusError(h.code, errorLabel(fr.payload), Boolean(h.flags & f.END));
      if (error.fatal || this.state !== "open") {
        error.fatal = true;
        this.state = "closed";
        return [{ type: "closed", error }];
      }
      return [{ type: "failed", corrId: h.corrId, error }];
    }
    switch (this.state) {
      case "hello":
        return this.onHello(fr);
      case "starting":
        return this.onStart(fr);
      case "open":
        this.countReceived(fr);
        return this.onRunning(fr);
      default:
        throw new ProtocolError(`unexpected frame in state ${this.state}`);
    }
  }

  private onHello(fr: f.Frame): Event[] {
    const h = fr.header;
    if (!(h.flags & f.RESP) || h.appProtoId !== 0 || h.corrId !== HELLO_CORR) {
      throw new ProtocolError("expected the HELLO reply");
    }
    if (h.code !== 200) throw new ProtocolError(`HELLO reply with code ${h.code}`);
    this.helloReply = parseHelloReply(fr.payload);
    this.sendFrames = this.helloReply.creditFrames;
    this.sendBytes = this.helloReply.creditBytes;
    this.out.push(this.frame(f.START | f.REQ, 0, OVERLAY_APP, START_CORR, this.token));
    this.state = "starting";
    return [];
  }

  private onStart(fr: f.Frame): Event[] {
    const h = fr.header;
    if (!(h.flags & f.START && h.flags & f.RESP) || h.corrId !== START_CORR) {
      throw new ProtocolError("expected the START reply");
    }
    if (h.code !== 200) throw new ProtocolError(`START reply with code ${h.code}`);
    this.state = "open";
    this.flushPending();
    return [{ type: "started", hello: this.helloReply as HelloReply }];
  }

  private countReceived(fr: f.Frame): void {
    if (fr.header.flags & f.EVENT && fr.header.code === CREDIT) return;
    this.usedFrames += 1;
    this.usedBytes += fr.header.length;
    if (this.usedFrames * 2 >= this.windowFrames || this.usedBytes * 2 >= this.windowBytes) {
      const body = new Uint8Array(8);
      const v = new DataView(body.buffer);
      v.setUint32(0, this.usedFrames);
      v.setUint32(4, this.usedBytes);
      this.usedFrames = 0;
      this.usedBytes = 0;
      this.out.push(this.frame(f.EVENT, CREDIT, OVERLAY_APP, 0n, undefined, body));
    }
  }

  private onRunning(fr: f.Frame): Event[] {
    const h = fr.header;
    if (h.appProtoId !== OVERLAY_APP) throw new ProtocolError(`frame for app ${h.appProtoId} on an open session`);
    if (h.flags & f.RESP) {
      if (h.code !== 200) throw new ProtocolError(`answer with status ${h.code}`);
      return [{ type: "response", corrId: h.corrId, body: jsonObject(fr.payload, "answer") }];
    }
    if (!(h.flags & f.EVENT)) throw new ProtocolError(`frame with flags ${h.flags} on an open session`);
    const v = new DataView(fr.payload.buffer, fr.payload.byteOffset, fr.payload.byteLength);
    switch (h.code) {
      case DELIVER:
        return [parseDeliver(fr.payload)];
      case CREDIT:
        if (fr.payload.length !== 8) throw new ProtocolError("CREDIT body must be 8 bytes");
        this.sendFrames += v.getUint32(0);
        this.sendBytes += v.getUint32(4);
        this.flushPending();
        return [];
      case PING:
        this.emitCounted(this.frame(f.EVENT, PONG, OVERLAY_APP, 0n));
        return [];
      case PONG:
        return [];
      case DIRECT:
        return [{ type: "direct", data: fr.payload.slice() }];
      case LAGGED:
        if (fr.payload.length !== 8) throw new ProtocolError("LAGGED body must be 8 bytes");
        return [{ type: "lagged", dropped: Number(v.getBigUint64(0)) }];
      default:
        return []; // unknown event kinds: a newer server may send more
    }
  }
}

/** `HOST:PORT` or `[V6]:PORT` → [host, port]. */
export function splitAddr(addr: string): [string, number] {
  const at = addr.lastIndexOf(":");
  const port = addr.slice(at + 1);
  if (at <= 0 || !/^\d+$/.test(port)) throw new Error(`address ${JSON.stringify(addr)} is not HOST:PORT`);
  let host = addr.slice(0, at);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return [host, Number(port)];
}
