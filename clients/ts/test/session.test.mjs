// The sans-IO client session against scripted server frames.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientSession, frame as f, Unauthorized, TooLarge, TooManyRequests, Forbidden, Unavailable, BadRequest, ProtocolError } from "../dist/index.js";

const APP = 0x4f56;
const HELLO_REPLY = {
  max_frame: 1048576, max_inflight: 64, flags_supported: 255, versions: [1], transports: ["tcp+tls"],
  credit_bytes: 1 << 20, credit_frames: 64, overlay: 1, peer_id: "peer:" + "ab".repeat(32), session: "client",
};
const enc = (o) => new TextEncoder().encode(typeof o === "string" ? o : JSON.stringify(o));
const server = (flags, code = 0, app = APP, corr = 0n, payload = new Uint8Array(), cap) =>
  f.encode(f.header({ flags, code, appProtoId: app, corrId: corr }), cap, payload);
const helloReply = (over = {}) => server(f.RESP, 200, 0, 1n, enc({ ...HELLO_REPLY, ...over }));
const startReply = () => server(f.START | f.RESP, 200, APP, 2n);
function frames(data) {
  const d = new f.Decoder();
  d.push(data);
  const out = [];
  for (let fr = d.next(); fr; fr = d.next()) out.push(fr);
  return out;
}
function opened(over) {
  const s = new ClientSession("tok-en_", undefined, 0n, 8, 1 << 16);
  s.begin();
  s.takeOutput();
  s.receive(helloReply(over));
  s.takeOutput();
  assert.equal(s.receive(startReply())[0].type, "started");
  return s;
}

test("handshake: reference HELLO, then START with the token", () => {
  const s = new ClientSession("tok-en_");
  s.begin();
  const [hello] = frames(s.takeOutput());
  assert.equal(hello.header.flags, f.REQ);
  assert.equal(hello.header.appProtoId, 0);
  assert.ok("ua" in JSON.parse(new TextDecoder().decode(hello.payload)));
  assert.deepEqual(s.receive(helloReply()), []);
  const [start] = frames(s.takeOutput());
  assert.equal(start.header.flags, f.START | f.REQ);
  assert.equal(new TextDecoder().decode(start.cap), "tok-en_");
  const [ev] = s.receive(startReply());
  assert.equal(ev.type, "started");
  assert.equal(ev.hello.peerId, HELLO_REPLY.peer_id);
});

test("a refused token closes with a typed error", () => {
  const s = new ClientSession("bad");
  s.begin();
  s.receive(helloReply());
  const [ev] = s.receive(server(f.RESP | f.END, 401, APP, 2n, enc({ error: "unauth" })));
  assert.equal(ev.type, "closed");
  assert.ok(ev.error instanceof Unauthorized);
  assert.equal(ev.error.label, "unauth");
  assert.ok(s.isClosed);
});

test("publish answers and non-fatal typed errors", () => {
  const s = opened();
  const corr = s.publish(enc("hello"));
  const [req] = frames(s.takeOutput());
  assert.deepEqual([req.header.flags, req.header.code, req.header.corrId], [f.REQ, 0x0110, corr]);
  const [ok] = s.receive(server(f.RESP, 200, APP, corr, enc({ id: "00".repeat(32) })));
  assert.deepEqual(ok, { type: "response", corrId: corr, body: { id: "00".repeat(32) } });
  for (const [code, cls] of [[413, TooLarge], [429, TooManyRequests], [403, Forbidden], [503, Unavailable], [400, BadRequest]]) {
    const [ev] = s.receive(server(f.RESP, code, APP, corr, enc({ error: "x" })));
    assert.equal(ev.type, "failed");
    assert.ok(ev.error instanceof cls);
    assert.equal(ev.error.fatal, false);
  }
  assert.ok(s.isOpen);
});

test("deliveries, lag and ping", () => {
  const s = opened();
  const body = new Uint8Array([...Array(32).keys(), ...new Array(32).fill(7), 3, ...enc("payload")]);
  const [m] = s.receive(server(f.EVENT, 0x0113, APP, 0n, body));
  assert.equal(m.type, "message");
  assert.equal(m.hops, 3);
  assert.equal(new TextDecoder().decode(m.data), "payload");
  const lagged = new Uint8Array(8);
  lagged[7] = 5;
  assert.deepEqual(s.receive(server(f.EVENT, 0x0114, APP, 0n, lagged)), [{ type: "lagged", dropped: 5 }]);
  s.takeOutput();
  s.receive(server(f.EVENT, 0x0109));
  assert.ok(frames(s.takeOutput()).some((fr) => fr.header.code === 0x010a));
  assert.throws(() => s.receive(server(f.EVENT, 0x0113, APP, 0n, enc("short"))), ProtocolError);
});

test("DIRECT from the node, and ping", () => {
  const s = opened();
  const [d] = s.receive(server(f.EVENT, 0x0106, APP, 0n, enc("to the client")));
  assert.equal(d.type, "direct");
  assert.equal(new TextDecoder().decode(d.data), "to the client");
  s.takeOutput();
  s.ping();
  const [ping] = frames(s.takeOutput());
  assert.deepEqual([ping.header.flags, ping.header.code, ping.header.corrId], [f.EVENT, 0x0109, 0n]);
});

test("sends wait for the server's credit; the client returns credit after half its window", () => {
  const s = opened({ credit_frames: 2 });
  s.publish(enc("a"));
  s.publish(enc("b"));
  s.publish(enc("c"));
  assert.equal(frames(s.takeOutput()).length, 2);
  const credit = new Uint8Array(8);
  new DataView(credit.buffer).setUint32(0, 1);
  new DataView(credit.buffer).setUint32(4, 4096);
  s.receive(server(f.EVENT, 0x0105, APP, 0n, credit));
  const [third] = frames(s.takeOutput());
  assert.equal(new TextDecoder().decode(third.payload), "c");

  const r = opened(); // grants the server 8 frames
  const body = new Uint8Array(66);
  for (let i = 0; i < 3; i++) r.receive(server(f.EVENT, 0x0113, APP, 0n, body));
  assert.equal(frames(r.takeOutput()).length, 0);
  r.receive(server(f.EVENT, 0x0113, APP, 0n, body));
  const [back] = frames(r.takeOutput());
  assert.equal(back.header.code, 0x0105);
  const v = new DataView(back.payload.buffer, back.payload.byteOffset);
  assert.deepEqual([v.getUint32(0), v.getUint32(4)], [4, 4 * (38 + 66)]);
});

test("an oversized publish is refused locally", () => {
  assert.throws(() => opened().publish(new Uint8Array(f.MAX_FRAME_BYTES)), TooLarge);
});
