#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/seeds/TARGET/) from the in-repo vectors.

    python3 fuzz/seeds.py

frame_decode: every valid, invalid and stream vector of oap1_frames.json, prefixed with the
chunk-size bytes `00 ff` (one chunk size, 256). token_verify: every token of
capability_tokens.json in binary (CBOR) form and a few in text form. gossip_decode: one body of
each overlay message layout and the HELLO bodies of the vectors. node_input: a chunk-size byte
and then a peer's frames after the session opened (CREDIT, GOSSIP, IHAVE, GRAFT, SHUFFLE,
PRUNE). node_sequence seeds are inputs the fuzzer found and `cargo fuzz cmin` kept (their byte
layout is the `arbitrary` encoding of the op list, not written by hand).
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(ROOT, "..", "overlay-proto", "tests", "vectors")
OVERLAY_APP = 0x4F56
GOSSIP, IHAVE, GRAFT, PRUNE, CREDIT, SHUFFLE = 0x0101, 0x0102, 0x0103, 0x0104, 0x0105, 0x0107


def write(target, name, data):
    d = os.path.join(ROOT, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frame(code, body, flags=0x0004, app=OVERLAY_APP):
    return struct.pack(">IHHHH16sHQ", 38 + len(body), 1, flags, code, app, bytes(16), 0, 0) + body


def bodies():
    # id, origin, nonce, hops, auth (0: unsigned; 1: Ed25519 key and signature follow), payload
    gossip = bytes(range(32)) + bytes([2] * 32) + struct.pack(">QBB", 7, 3, 0) + b"hello overlay"
    signed = (bytes(range(32)) + bytes([2] * 32) + struct.pack(">QBB", 7, 3, 1) + bytes([5] * 32)
              + bytes([6] * 64) + b"hello overlay")
    ihave = (bytes([9] * 32) + b"\x04") * 3
    graft = bytes([5] * 64)
    credit = struct.pack(">II", 16, 1 << 20)
    shuffle = (b"\x02" + bytes([3] * 32) + b"\x04" + bytes([127, 0, 0, 1]) + struct.pack(">H", 9415)
               + bytes([4] * 32) + b"\x06" + bytes(15) + b"\x01" + struct.pack(">H", 9416))
    return {"gossip": gossip, "gossip-signed": signed, "ihave": ihave, "graft": graft, "credit": credit, "shuffle": shuffle}


def main():
    for target in ("frame_decode", "token_verify", "gossip_decode", "node_input"):
        shutil.rmtree(os.path.join(ROOT, "seeds", target), ignore_errors=True)
    oap = json.load(open(os.path.join(VECTORS, "oap1_frames.json")))
    for group in ("valid", "invalid", "streams"):
        for v in oap[group]:
            if not v.get("hex"):
                continue
            write("frame_decode", f"{group}-{v['name']}", b"\x00\xff" + bytes.fromhex(v["hex"]))
    caps = json.load(open(os.path.join(VECTORS, "capability_tokens.json")))["vectors"]
    for i, v in enumerate(caps):
        if v.get("token_cbor_hex"):
            write("token_verify", f"cbor-{v['name']}", bytes.fromhex(v["token_cbor_hex"]))
        if i % 8 == 0 and v.get("token_b64url"):
            write("token_verify", f"text-{v['name']}", v["token_b64url"].encode())
    b = bodies()
    for name, body in b.items():
        write("gossip_decode", name, body)
    write("gossip_decode", "hello-request",
          json.dumps({"ua": "svc-overlay/0.1.0", "overlay": 1, "peer_id": "peer:" + "02" * 32,
                      "credit_frames": 16, "credit_bytes": 1048576}).encode())
    for v in oap["valid"]:
        if v["name"].startswith("hello"):
            write("gossip_decode", "frame-" + v["name"], bytes.fromhex(v["hex"]))
    conversation = (frame(CREDIT, b["credit"]) + frame(GOSSIP, b["gossip"]) + frame(IHAVE, b["ihave"])
                    + frame(GRAFT, b["graft"]) + frame(SHUFFLE, b["shuffle"]) + frame(PRUNE, b""))
    write("node_input", "conversation-whole", b"\xff" + conversation)
    write("node_input", "conversation-split", b"\x11" + conversation)
    for name, code in (("gossip", GOSSIP), ("ihave", IHAVE), ("graft", GRAFT), ("credit", CREDIT),
                       ("shuffle", SHUFFLE)):
        write("node_input", name, b"\x80" + frame(code, b[name]))


if __name__ == "__main__":
    main()
