// Frame interop helper for the polyglot round-trip test (`tests/tests/polyglot.rs`), the
// TypeScript twin of `frames.py`: `node frames.mjs encode|decode` with a JSON list on stdin.
// Needs the built package (`clients/ts/dist`).
import { encode, decode, header } from "../ts/dist/frame.js";

const hex = (u8) => Buffer.from(u8).toString("hex");
const bytes = (h) => new Uint8Array(Buffer.from(h, "hex"));

function enc(spec) {
  const h = header({
    flags: spec.flags,
    code: spec.code,
    appProtoId: spec.app,
    tenantId: BigInt(spec.tenant),
    corrId: BigInt(spec.corr),
  });
  return hex(encode(h, bytes(spec.cap), bytes(spec.payload)));
}

function dec(hexFrame) {
  const data = bytes(hexFrame);
  const out = decode(data);
  if (out === null) throw new Error(`incomplete frame: ${hexFrame}`);
  if (out.consumed !== data.length) throw new Error(`consumed ${out.consumed} of ${data.length}`);
  const h = out.frame.header;
  const spec = {
    flags: h.flags,
    code: h.code,
    app: h.appProtoId,
    tenant: h.tenantId.toString(),
    corr: h.corrId.toString(),
    cap: hex(out.frame.cap),
    payload: hex(out.frame.payload),
  };
  return { fields: spec, reencoded: enc(spec) };
}

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const items = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const fn = process.argv[2] === "encode" ? enc : dec;
process.stdout.write(JSON.stringify(items.map(fn)));
