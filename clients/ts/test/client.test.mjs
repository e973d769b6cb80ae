// The Client over real TLS against a scripted server that speaks the client-session protocol,
// with the server's identity pinned by PeerId.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as tls from "node:tls";
import { Client, frame as f, Forbidden, TooLarge, IdentityMismatch } from "../dist/index.js";

const APP = 0x4f56;
const PEER = "peer:c8dc82d52486b3d2ed3849fec23e0412bfd0ff8370cd195bd1e45fd9f763315c";
const fixture = (name) => readFileSync(new URL(`../../fixtures/${name}`, import.meta.url));
const enc = (o) => new TextEncoder().encode(typeof o === "string" ? o : JSON.stringify(o));
const out = (flags, code, corr, payload, app = APP) =>
  f.encode(f.header({ flags, code, appProtoId: app, corrId: corr }), undefined, payload);

function answer(fr) {
  const h = fr.header;
  if (h.appProtoId === 0) {
    const reply = { max_frame: 1048576, max_inflight: 64, flags_supported: 255, versions: [1], transports: ["tcp+tls"], credit_bytes: 1 << 20, credit_frames: 64, overlay: 1, peer_id: PEER, session: "client" };
    return [out(f.RESP, 200, h.corrId, enc(reply), 0)];
  }
  if (h.flags & f.START) {
    if (new TextDecoder().decode(fr.cap) !== "good") return [out(f.RESP | f.END, 403, 2n, enc({ error: "forbidden" }))];
    return [out(f.START | f.RESP, 200, 2n)];
  }
  if (h.code === 0x0110) {
    if (fr.payload.length > 10) return [out(f.RESP, 413, h.corrId, enc({ error: "oversize" }))];
    return [out(f.RESP, 200, h.corrId, enc({ id: Buffer.from(fr.payload).toString("hex").padEnd(64, "0") }))];
  }
  if (h.code === 0x0111) {
    const deliver = (i) => out(f.EVENT, 0x0113, 0n, new Uint8Array([...new Array(32).fill(i), ...new Array(32).fill(0), 1, ...enc(`m${i}`)]));
    return [out(f.RESP, 200, h.corrId, enc({})), deliver(0), deliver(1)];
  }
  return [];
}

async function scriptedServer() {
  const server = tls.createServer({ cert: fixture("ed25519-cert.pem"), key: fixture("ed25519-key.pem"), ALPNProtocols: ["ron/oap1"], minVersion: "TLSv1.3" }, (sock) => {
    const dec = new f.Decoder();
    sock.on("data", (chunk) => {
      dec.push(new Uint8Array(chunk));
      for (let fr = dec.next(); fr; fr = dec.next()) for (const b of answer(fr)) sock.write(b);
    });
    sock.on("error", () => {});
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, addr: `127.0.0.1:${server.address().port}` };
}

test("publish, subscribe and typed refusals over TLS with a pinned PeerId", async () => {
  const { server, addr } = await scriptedServer();
  try {
    const c = await Client.connect(addr, "good", { serverId: PEER, timeoutMs: 5000 });
    assert.equal(c.serverPeerId, PEER);
    assert.equal(await c.publish("hi"), "6869".padEnd(64, "0"));
    await assert.rejects(c.publish("far too long a message"), TooLarge);
    await c.subscribe();
    const got = [await c.recv(2000), await c.recv(2000)];
    assert.deepEqual(got.map((m) => new TextDecoder().decode(m.data)), ["m0", "m1"]);
    await assert.rejects(c.recv(100), /timed out/);
    c.close();
    await assert.rejects(Client.connect(addr, "bad", { serverId: PEER, timeoutMs: 5000 }), Forbidden);
    await assert.rejects(Client.connect(addr, "good", { serverId: "peer:" + "00".repeat(32) }), IdentityMismatch);
    await assert.rejects(Client.connect(addr, "good", {}), /no way to verify/);
  } finally {
    server.close();
  }
});
