"""Command line: ``python -m svc_overlay_client --addr HOST:PORT --token TOKEN COMMAND``.

- ``publish MESSAGE`` prints ``{"id": "<hex>"}``;
- ``subscribe --count N --timeout S`` prints one JSON line per delivered message
  (``{"id", "origin", "data_b64"}``) and exits 0 after N messages, 1 on timeout.

Errors print ``{"error": "<label>", "code": N}`` on stderr and exit 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from .client import Client
from .errors import OverlayError, StatusError
from .protocol import Direct, Lagged


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m svc_overlay_client", description=__doc__.split("\n")[0])
    p.add_argument("--addr", required=True, help="the node's overlay port, HOST:PORT")
    tok = p.add_mutually_exclusive_group(required=True)
    tok.add_argument("--token", help="capability token (base64url)")
    tok.add_argument("--token-file", help="file holding the token")
    p.add_argument("--server-id", help="pin the node's PeerId (peer:<64 hex>)")
    p.add_argument("--ca", help="CA file that signed the node's certificate")
    p.add_argument("--timeout", type=float, default=10.0, help="connect/request timeout, seconds")
    sub = p.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="publish one message")
    pub.add_argument("message", help="the message (UTF-8 text)")
    s = sub.add_parser("subscribe", help="print delivered messages as JSON lines")
    s.add_argument("--count", type=int, default=1, help="exit 0 after this many messages")
    s.add_argument("--timeout", dest="wait", type=float, default=30.0, help="give up after S seconds (exit 1)")
    return p


def _fail(err: Exception) -> int:
    if isinstance(err, StatusError):
        body = {"error": err.label or type(err).__name__, "code": err.code}
    else:
        body = {"error": str(err) or type(err).__name__}
    print(json.dumps(body), file=sys.stderr)
    return 1


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    token = args.token
    if args.token_file:
        with open(args.token_file, encoding="ascii") as fh:
            token = fh.read().strip()
    insecure = args.server_id is None and args.ca is None
    if insecure:
        print("note: the node's identity is not verified (use --server-id or --ca)", file=sys.stderr)
    try:
        client = Client.connect(
            args.addr,
            token,
            server_id=args.server_id,
            ca_file=args.ca,
            insecure=insecure,
            timeout=args.timeout,
        )
    except (OverlayError, OSError, TimeoutError) as err:
        return _fail(err)
    with client:
        try:
            if args.command == "publish":
                print(json.dumps({"id": client.publish(args.message)}), flush=True)
                return 0
            client.subscribe()
            deadline = time.monotonic() + args.wait
            got = 0
            while got < args.count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {got} of {args.count} messages")
                item = client.recv(remaining)
                if isinstance(item, Lagged):
                    print(f"note: {item.dropped} deliveries dropped (too slow)", file=sys.stderr)
                    continue
                if isinstance(item, Direct):
                    print(f"note: a DIRECT message of {len(item.data)} bytes (not printed)", file=sys.stderr)
                    continue
                print(json.dumps(item.to_json()), flush=True)
                got += 1
            return 0
        except (OverlayError, OSError, TimeoutError) as err:
            return _fail(err)


if __name__ == "__main__":
    sys.exit(main())
