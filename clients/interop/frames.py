"""Frame interop helper for the polyglot round-trip test (`tests/tests/polyglot.rs`).

``python3 frames.py encode`` reads a JSON list of frame specs on stdin and prints the list of
frames this package encodes, as hex. ``python3 frames.py decode`` reads a JSON list of hex
frames and prints, for each, the fields this package decodes and the frame re-encoded from them.

A spec: ``{"flags", "code", "app", "tenant" (decimal string), "corr" (decimal string),
"cap" (hex), "payload" (hex)}``. Run with ``PYTHONPATH=clients/python/src``.
"""

import json
import sys

from svc_overlay_client import frame as f


def encode(spec):
    header = f.Header(
        flags=spec["flags"],
        code=spec["code"],
        app_proto_id=spec["app"],
        tenant_id=int(spec["tenant"]),
        corr_id=int(spec["corr"]),
    )
    return f.encode(header, bytes.fromhex(spec["cap"]), bytes.fromhex(spec["payload"])).hex()


def decode(hex_frame):
    data = bytes.fromhex(hex_frame)
    decoded = f.decode(data)
    if decoded is None:
        raise SystemExit(f"incomplete frame: {hex_frame}")
    frame, consumed = decoded
    if consumed != len(data):
        raise SystemExit(f"consumed {consumed} of {len(data)} bytes")
    h = frame.header
    spec = {
        "flags": h.flags,
        "code": h.code,
        "app": h.app_proto_id,
        "tenant": str(h.tenant_id),
        "corr": str(h.corr_id),
        "cap": bytes(frame.cap).hex(),
        "payload": bytes(frame.payload).hex(),
    }
    return {"fields": spec, "reencoded": encode(spec)}


def main():
    mode = sys.argv[1]
    items = json.load(sys.stdin)
    fn = encode if mode == "encode" else decode
    json.dump([fn(item) for item in items], sys.stdout)


if __name__ == "__main__":
    main()
