#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/seeds/TARGET/) from the in-repo vectors.

    python3 fuzz/seeds.py

frame_decode: every valid, invalid and stream vector of oap1_frames.json, prefixed with the
chunk-size bytes `00 ff` (one chunk size, 256). token_verify: every token of
capability_tokens.json in binary (CBOR) form and a few in text form. gossip_decode: one body of
each overlay message layout and the HELLO bodies of the vectors. node_input: a chunk-size byte
(its lowest bit: whether the peer's HELLO says graft_miss) and then a peer's frames after the session opened (CREDIT, GOSSIP, IHAVE, GRAFT, SHUFFLE,
PRUNE). node_sequence seeds are inputs the fuzzer found and a set-cover `cargo fuzz cmin` kept (their byte
layout is the `arbitrary` encoding of the op list), plus the `topics-*` seeds written here: op
lists that open sessions, join topics, announce them and move topic traffic, encoded the way
`arbitrary` 1.x decodes `(bool, Vec<Op>)` (see `node_sequence_ops`; the variant indices follow
the order of `Op` in fuzz_targets/node_sequence.rs).
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


# `Op` of fuzz_targets/node_sequence.rs, in declaration order (the derive picks a variant from a
# u32 as `(u32 * count) >> 32`).
NODE_SEQUENCE_OPS = ["Up", "Open", "Bytes", "Frame", "Closed", "Tick", "Broadcast", "Direct",
                     "Dial", "DialFailed", "Discovered", "Shutdown", "Join", "Leave", "Publish",
                     "Topics", "TopicPeers", "TopicGossip", "TopicControl"]


def arb_variant(name):
    i, n = NODE_SEQUENCE_OPS.index(name), len(NODE_SEQUENCE_OPS)
    v = -((-i << 32) // n)  # the smallest u32 that selects variant i
    assert (v * n) >> 32 == i
    return struct.pack("<I", v)


def arb_vec(items):
    # Vec<T>::arbitrary: a continue byte (odd) before each element, then a stop byte.
    return b"".join(b"\x01" + item for item in items) + b"\x00"


def node_sequence_ops(sign, ops):
    # (bool, Vec<Op>): the bool byte, then each op behind a continue byte, then a stop byte.
    out = bytes([1 if sign else 0])
    for name, fields in ops:
        out += b"\x01" + arb_variant(name) + fields
    return out + b"\x00"


def node_sequence_topic_seeds():
    u8, u16 = (lambda x: struct.pack("<B", x)), (lambda x: struct.pack("<H", x))
    topics = lambda conn, ts: ("Topics", u8(conn) + arb_vec([u8(t) for t in ts]))
    ops = [
        ("Open", u8(1) + u8(1) + u8(1)), ("Open", u8(2) + u8(2) + u8(0)),
        ("Join", u8(1)), ("Join", u8(2)),
        topics(1, [1, 2]), topics(2, [1]),
        ("Tick", u16(50)),
        ("Publish", u8(1) + u16(100)),
        ("TopicGossip", bytes([1, 1, 3, 1, 1, 10])),
        ("TopicControl", bytes([2, 1, 0]) + arb_vec([u8(9)])),
        ("Tick", u16(300)),
        topics(1, [2]),                                   # peer 1 leaves topic a
        ("TopicPeers", bytes([2, 2]) + arb_vec([])),      # a request
        ("TopicPeers", bytes([1, 2]) + arb_vec([bytes([4, 5])])),  # an answer nobody asked for
        ("Leave", u8(2)),
        ("Closed", u8(2) + u8(1)),
        ("Join", u8(3)),
        topics(1, [1, 2, 3]),                             # over max_peer_topics: closed
        ("Tick", u16(1000)),
        ("Shutdown", b""),
    ]
    write("node_sequence", "topics-unsigned", node_sequence_ops(False, ops))
    write("node_sequence", "topics-signed", node_sequence_ops(True, ops))
    churn = [("Open", u8(1) + u8(1) + u8(1)), ("Join", u8(1)), topics(1, [1]),
             ("Closed", u8(1) + u8(0)), ("Open", u8(3) + u8(1) + u8(0)), topics(3, [1]),
             ("Leave", u8(1)), ("Join", u8(1)), ("Publish", u8(1) + u16(8)), ("Tick", u16(5000))]
    write("node_sequence", "topics-churn", node_sequence_ops(False, churn))


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
    node_sequence_topic_seeds()


if __name__ == "__main__":
    main()
