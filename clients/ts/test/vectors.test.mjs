// Every case of the OAP/1 vectors (the repository's copy, or $OAP1_VECTORS).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { frame as f, helloRequestBytes } from "../dist/index.js";

const path =
  process.env.OAP1_VECTORS ??
  fileURLToPath(new URL("../../../overlay-proto/tests/vectors/oap1_frames.json", import.meta.url));
const doc = JSON.parse(readFileSync(path, "utf8"));
const hex = (b) => Buffer.from(b).toString("hex");
const fromHex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const rule = (n) => Uint8Array.from({ length: n }, (_, i) => i % 251);
const section = (v, name) => (v[`${name}_hex`] != null ? fromHex(v[`${name}_hex`]) : rule(v[`${name}_len`] ?? 0));
const sha = (b) => createHash("sha256").update(b).digest("hex");

function whole(v) {
  if (v.hex) return fromHex(v.hex);
  const head = fromHex(v.header_hex);
  const cap = section(v, "cap");
  const payload = section(v, "payload");
  const out = new Uint8Array(head.length + cap.length + payload.length);
  out.set(head);
  out.set(cap, head.length);
  out.set(payload, head.length + cap.length);
  assert.equal(sha(out), v.frame_sha256, v.name);
  return out;
}

test("valid frames decode with every field and re-encode to the same bytes", () => {
  let n = 0;
  for (const v of doc.valid) {
    const data = whole(v);
    if (v.upstream_decode === "zstd_feature_not_enabled") {
      assert.throws(() => f.decode(data), (e) => e.kind === "zstd_feature_not_enabled" && e.consumed === data.length);
      n++;
      continue;
    }
    const { frame, consumed } = f.decode(data);
    assert.equal(consumed, data.length, v.name);
    const h = frame.header;
    const want = v.header;
    assert.deepEqual(
      [h.length, h.version, h.flags, h.code, h.appProtoId, h.capLen],
      [want.len, want.ver, want.flags, want.code, want.app_proto_id, want.cap_len],
      v.name,
    );
    assert.equal(h.tenantId, BigInt("0x" + want.tenant_id), v.name);
    assert.equal(h.corrId, BigInt("0x" + v.corr_id_hex), v.name);
    assert.deepEqual(f.flagNames(h.flags), v.flag_names, v.name);
    assert.equal(hex(frame.cap), hex(section(v, "cap")), v.name);
    assert.equal(hex(frame.payload), hex(section(v, "payload")), v.name);
    assert.equal(hex(f.encode(h, frame.cap, frame.payload)), hex(data), v.name);
    n++;
  }
  assert.equal(n, doc.valid.length);
});

test("every strict prefix of a valid frame needs more", () => {
  for (const v of doc.valid) {
    const data = whole(v);
    const cuts = data.length < 4096 ? [...Array(data.length).keys()] : [0, 1, 37, 38, 39, data.length >> 1, data.length - 1];
    for (const cut of cuts) assert.equal(f.decode(data.subarray(0, cut)), null, `${v.name} prefix ${cut}`);
  }
});

test("invalid cases give the reference class and consumed bytes; split frames decode chunk by chunk", () => {
  for (const v of doc.invalid) {
    const data = fromHex(v.hex);
    if (v.expected === "need_more") {
      assert.equal(f.decode(data), null, v.name);
      assert.equal(v.consumed_bytes, 0);
    } else {
      assert.throws(() => f.decode(data), (e) => e.kind === v.expected && e.consumed === v.consumed_bytes, v.name);
    }
    if (v.chunks_hex) {
      const dec = new f.Decoder();
      let got = null;
      v.chunks_hex.forEach((chunk, i) => {
        dec.push(fromHex(chunk));
        got = dec.next();
        assert.equal(got ? "frame" : "need_more", v.expected_after_each_chunk[i]);
      });
      assert.equal(hex(f.encode(got.header, got.cap, got.payload)), v.full_hex);
    }
  }
});

test("streams decode in sequence", () => {
  for (const s of doc.streams) {
    const dec = new f.Decoder();
    dec.push(fromHex(s.hex));
    for (const step of s.decode_sequence) {
      if (step.result === "frame") {
        assert.equal(dec.next().header.length, step.len);
      } else {
        assert.throws(() => dec.next(), (e) => e.kind === step.result);
        assert.equal(dec.buffered, step.remaining_bytes);
      }
    }
  }
});

test("encoder cases", () => {
  for (const c of doc.encoder_cases) {
    if (c.name === "encode_total_1mib_plus_1") {
      assert.throws(() => f.encode(f.header({ flags: f.REQ }), undefined, new Uint8Array(1048539)), (e) => e.kind === "frame_too_large");
    } else if (c.name === "encode_cap_65536") {
      assert.throws(() => f.encode(f.header({ flags: f.START | f.REQ }), new Uint8Array(65536)), (e) => e.kind === "cap_out_of_bounds");
    } else if (c.name === "encoder_accepts_ver2_cap_without_start") {
      const out = f.encode(f.header({ version: 2, length: 999, flags: f.REQ, appProtoId: 1, corrId: 1n }), new TextEncoder().encode("cap"));
      assert.equal(hex(out), c.hex);
      assert.throws(() => f.decode(out), (e) => e.kind === c.decoder_on_output);
    } else {
      assert.fail(`unknown encoder case ${c.name}`);
    }
  }
});

test("the reference HELLO request, byte for byte", () => {
  const byName = Object.fromEntries(doc.valid.map((v) => [v.name, v]));
  for (const [name, ua] of [["hello_request", "sdk/0.1"], ["hello_request_no_ua", null]]) {
    const v = byName[name];
    const got = helloRequestBytes(ua, BigInt("0x" + v.header.tenant_id), BigInt("0x" + v.corr_id_hex));
    assert.equal(hex(got), v.hex);
  }
});
