/** The node:tls client: one TLS socket driven by the sans-IO {@link ClientSession}. */

import * as tls from "node:tls";
import { ConnectionClosed, IdentityMismatch, OverlayError, StatusError } from "./errors.js";
import { ClientSession, type Direct, type Event, type HelloReply, type Lagged, type Message, splitAddr } from "./protocol.js";
import { peerIdOf } from "./peerid.js";

/** Deliveries held for the application; beyond it the oldest are dropped and reported as lag. */
export const INBOX_LIMIT = 10_000;

/** A delivered message, or a report of dropped deliveries. */
export type Delivery = Message | Lagged | Direct;

/** How to reach and trust a node. */
export interface ConnectOptions {
  /** Pin the node's PeerId (`peer:<64 hex>`). */
  serverId?: string;
  /** PEM of the CA that signed the node's certificate. */
  ca?: string | Buffer;
  /** Connect without verifying the node's identity (development only). */
  insecure?: boolean;
  /** Connect and request timeout, milliseconds (default 10 000). */
  timeoutMs?: number;
  userAgent?: string;
}

type Waiter = { resolve: (body: Record<string, unknown>) => void; reject: (err: Error) => void };

/** A client session with a node. Create with {@link Client.connect}; end with {@link close}. */
export class Client {
  private readonly waiters = new Map<bigint, Waiter>();
  private readonly inbox: Delivery[] = [];
  private readers: Array<(d: Delivery | Error) => void> = [];
  private dropped = 0;
  private closedWith: OverlayError | null = null;
  private onStarted: { resolve: (h: HelloReply) => void; reject: (e: Error) => void } | null = null;

  private constructor(
    private readonly socket: tls.TLSSocket,
    private readonly session: ClientSession,
    private readonly timeoutMs: number,
  ) {
    socket.on("data", (chunk: Buffer) => {
      let events: Event[];
      try {
        events = this.session.receive(new Uint8Array(chunk));
      } catch (err) {
        this.finish(err instanceof OverlayError ? err : new OverlayError(String(err)));
        socket.destroy();
        return;
      }
      this.dispatch(events);
      this.flush();
    });
    socket.on("error", (err) => this.finish(new ConnectionClosed(`connection lost: ${err.message}`)));
    socket.on("close", () => {
      this.session.connectionLost();
      this.finish(new ConnectionClosed("the node closed the session"));
    });
  }

  /** Connects to `HOST:PORT`, runs HELLO and START with `token`, resolves when the session is open. */
  static async connect(addr: string, token: string, opts: ConnectOptions = {}): Promise<Client> {
    const [host, port] = splitAddr(addr);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    if (!opts.serverId && !opts.ca && !opts.insecure) {
      throw new OverlayError("no way to verify the server: give serverId (PeerId pin), ca, or insecure: true");
    }
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({
        host,
        port,
        ALPNProtocols: ["ron/oap1"],
        minVersion: "TLSv1.3",
        ca: opts.ca,
        rejectUnauthorized: Boolean(opts.ca),
        checkServerIdentity: () => undefined,
      });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new ConnectionClosed("timed out connecting to the node"));
      }, timeoutMs);
      s.once("secureConnect", () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once("error", (err) => {
        clearTimeout(timer);
        reject(new ConnectionClosed(`connect failed: ${err.message}`));
      });
    });
    if (opts.serverId) {
      const cert = socket.getPeerX509Certificate();
      const actual = cert ? peerIdOf(new Uint8Array(cert.raw)) : null;
      if (actual !== opts.serverId.trim().toLowerCase()) {
        socket.destroy();
        throw new IdentityMismatch(`server is ${actual ?? "without a certificate"}, expected ${opts.serverId}`);
      }
    }
    const session = new ClientSession(token, opts.userAgent);
    const client = new Client(socket, session, timeoutMs);
    const started = new Promise<HelloReply>((resolve, reject) => {
      client.onStarted = { resolve, reject };
    });
    session.begin();
    client.flush();
    try {
      await client.withTimeout(started, "timed out opening the session");
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  private withTimeout<T>(p: Promise<T>, what: string, ms = this.timeoutMs): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ConnectionClosed(what)), ms);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  private flush(): void {
    const data = this.session.takeOutput();
    if (data.length > 0 && !this.socket.destroyed) this.socket.write(data);
  }

  private push(d: Delivery): void {
    const reader = this.readers.shift();
    if (reader) {
      reader(d);
      return;
    }
    if (this.inbox.length >= INBOX_LIMIT) {
      this.inbox.shift();
      this.dropped += 1;
    }
    this.inbox.push(d);
  }

  private dispatch(events: Event[]): void {
    for (const ev of events) {
      switch (ev.type) {
        case "started":
          this.onStarted?.resolve(ev.hello);
          this.onStarted = null;
          break;
        case "response":
        case "failed": {
          const w = this.waiters.get(ev.corrId);
          this.waiters.delete(ev.corrId);
          if (w && ev.type === "response") w.resolve(ev.body);
          else if (w && ev.type === "failed") w.reject(ev.error);
          break;
        }
        case "message":
        case "lagged":
        case "direct":
          this.push(ev);
          break;
        case "closed":
          this.finish(ev.error ?? new ConnectionClosed("the node closed the session"));
          break;
      }
    }
  }

  private finish(err: OverlayError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    this.onStarted?.reject(err);
    this.onStarted = null;
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
    for (const r of this.readers) r(err);
    this.readers = [];
  }

  private async call(corr: bigint): Promise<Record<string, unknown>> {
    if (this.closedWith) throw this.closedWith;
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => this.waiters.set(corr, { resolve, reject }));
    this.flush();
    return this.withTimeout(answer, "timed out waiting for the node's answer");
  }

  /** The PeerId the node announced in its HELLO reply. */
  get serverPeerId(): string | null {
    return this.session.hello?.peerId ?? null;
  }

  /** Publishes `data`; resolves to the message id (64 hex digits). Rejects with a typed
   * {@link StatusError} (TooLarge, TooManyRequests, Forbidden, Unavailable…) on refusal. */
  async publish(data: Uint8Array | string): Promise<string> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const body = await this.call(this.session.publish(bytes));
    if (typeof body.id !== "string") throw new OverlayError("PUBLISH answer has no id");
    return body.id;
  }

  /** Asks the node to deliver every message it receives to this client. */
  async subscribe(): Promise<void> {
    await this.call(this.session.subscribe());
  }

  /** Stops deliveries. */
  async unsubscribe(): Promise<void> {
    await this.call(this.session.unsubscribe());
  }

  /** Sends a PING: keeps an otherwise idle session open (the node closes clients silent for
   * its `idle_ms`). */
  ping(): void {
    this.session.ping();
    this.flush();
  }

  /** Sends a DIRECT message to the node (fire and forget). */
  direct(data: Uint8Array): void {
    this.session.direct(data);
    this.flush();
  }

  /** The next delivery; rejects after `timeoutMs` or once the session has ended. */
  recv(timeoutMs?: number): Promise<Delivery> {
    if (this.dropped > 0) {
      const dropped = this.dropped;
      this.dropped = 0;
      return Promise.resolve({ type: "lagged", dropped });
    }
    const ready = this.inbox.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closedWith) return Promise.reject(this.closedWith);
    let reader: ((d: Delivery | Error) => void) | undefined;
    const next = new Promise<Delivery>((resolve, reject) => {
      reader = (d) => (d instanceof Error ? reject(d) : resolve(d));
      this.readers.push(reader);
    });
    if (timeoutMs === undefined) return next;
    return this.withTimeout(next, "timed out waiting for a message", timeoutMs).catch((err: unknown) => {
      this.readers = this.readers.filter((r) => r !== reader);
      throw err;
    });
  }

  /** Deliveries until the session ends. */
  async *messages(): AsyncGenerator<Delivery> {
    for (;;) {
      try {
        yield await this.recv();
      } catch (err) {
        if (err instanceof ConnectionClosed) return;
        throw err;
      }
    }
  }

  /** Closes the connection. */
  close(): void {
    this.socket.destroy();
    this.session.connectionLost();
    this.finish(new ConnectionClosed("closed by the client"));
  }
}

export { StatusError };
