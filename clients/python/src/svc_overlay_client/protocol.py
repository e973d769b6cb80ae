"""The client session as a sans-IO state machine (the same shape as the overlay's core).

Feed received bytes to :meth:`ClientSession.receive`, send what :meth:`ClientSession.take_output`
returns, and act on the events. The sync and asyncio clients are thin loops around it, and the
tests drive it with no socket at all. The wire format is ``docs/PROTOCOL.md`` ("Client
sessions") of the svc-overlay repository.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple, Union

from . import frame as f
from .errors import ProtocolError, StatusError, status_error

OVERLAY_APP = 0x4F56
"""The overlay's ``app_proto_id`` ("OV")."""

CREDIT = 0x0105
DIRECT = 0x0106
PING = 0x0109
PONG = 0x010A
PUBLISH = 0x0110
SUBSCRIBE = 0x0111
UNSUBSCRIBE = 0x0112
DELIVER = 0x0113
LAGGED = 0x0114

HELLO_CORR = 1
START_CORR = 2
FIRST_REQUEST_CORR = 3

DEFAULT_WINDOW_FRAMES = 256
DEFAULT_WINDOW_BYTES = 4 * 1024 * 1024
MAX_PENDING_FRAMES = 1024
"""Frames this client queues while the server's window is closed; beyond it, sends fail."""

_CREDIT = struct.Struct(">II")
_DELIVER_HEAD = 32 + 32 + 1


@dataclass(frozen=True)
class HelloReply:
    """What the server said in its HELLO reply."""

    max_frame: int
    max_inflight: int
    versions: List[int]
    peer_id: Optional[str]
    credit_frames: int
    credit_bytes: int
    raw: Dict[str, object]


@dataclass(frozen=True)
class Started:
    """The token was accepted; the session is open."""

    hello: HelloReply


@dataclass(frozen=True)
class Response:
    """A successful answer to request ``corr_id`` (``body`` is the decoded JSON object)."""

    corr_id: int
    body: Dict[str, object]


@dataclass(frozen=True)
class Failed:
    """An error answer to request ``corr_id``; the session stays open."""

    corr_id: int
    error: StatusError


@dataclass(frozen=True)
class Message:
    """A gossip message delivered to this client."""

    id: bytes
    origin: bytes
    hops: int
    data: bytes

    def to_json(self) -> Dict[str, str]:
        """The CLI's JSON form: ``{"id", "origin", "data_b64"}`` (ids as lowercase hex)."""
        import base64

        return {
            "id": self.id.hex(),
            "origin": "peer:" + self.origin.hex(),
            "data_b64": base64.b64encode(self.data).decode("ascii"),
        }


@dataclass(frozen=True)
class Lagged:
    """The server dropped ``dropped`` deliveries because this client read too slowly."""

    dropped: int


@dataclass(frozen=True)
class Direct:
    """A DIRECT message the node's application sent to this client."""

    data: bytes


@dataclass(frozen=True)
class Closed:
    """The server ended the session with ``error`` (``None``: closed without a status)."""

    error: Optional[StatusError]


Event = Union[Started, Response, Failed, Message, Lagged, Direct, Closed]


def _json_object(payload: bytes, what: str) -> Dict[str, object]:
    try:
        value = json.loads(payload.decode("utf-8")) if payload else {}
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"{what}: payload is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what}: payload is not a JSON object")
    return value


def _error_label(payload: bytes) -> str:
    try:
        body = _json_object(payload, "error")
    except ProtocolError:
        return ""
    label = body.get("error")
    return label if isinstance(label, str) else ""


def _uint(body: Dict[str, object], key: str, default: Optional[int] = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"HELLO reply: `{key}` must be a non-negative integer")
    return value


def parse_hello_reply(payload: bytes) -> HelloReply:
    """Parses a HELLO reply: the five reference keys are required, overlay keys optional."""
    body = _json_object(payload, "HELLO reply")
    for key in ("max_frame", "max_inflight", "flags_supported", "versions", "transports"):
        if key not in body:
            raise ProtocolError(f"HELLO reply: missing `{key}`")
    versions = body["versions"]
    if not isinstance(versions, list) or 1 not in versions:
        raise ProtocolError("HELLO reply: `versions` must contain 1")
    peer_id = body.get("peer_id")
    return HelloReply(
        max_frame=_uint(body, "max_frame"),
        max_inflight=_uint(body, "max_inflight"),
        versions=[v for v in versions if isinstance(v, int)],
        peer_id=peer_id if isinstance(peer_id, str) else None,
        credit_frames=_uint(body, "credit_frames", _uint(body, "max_inflight")),
        credit_bytes=_uint(body, "credit_bytes", f.MAX_FRAME_BYTES),
        raw=body,
    )


def parse_deliver(body: bytes) -> Message:
    """Parses a DELIVER body: ``id[32] origin[32] hops u8`` then the message."""
    if len(body) < _DELIVER_HEAD:
        raise ProtocolError(f"DELIVER body of {len(body)} bytes is shorter than {_DELIVER_HEAD}")
    return Message(id=body[:32], origin=body[32:64], hops=body[64], data=body[_DELIVER_HEAD:])


class ClientSession:
    """One client session: HELLO, START with a token, then requests and events.

    ``window_frames``/``window_bytes`` is the credit window this client grants the server.
    """

    def __init__(
        self,
        token: str,
        user_agent: str = "svc-overlay-client-py/0.1.0",
        tenant_id: int = 0,
        window_frames: int = DEFAULT_WINDOW_FRAMES,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
    ) -> None:
        self._token = token.strip().encode("ascii")
        self._ua = user_agent
        self._tenant = tenant_id
        self._decoder = f.Decoder()
        self._out: List[bytes] = []
        self._pending: Deque[bytes] = deque()
        self._state = "new"
        self._hello: Optional[HelloReply] = None
        self._next_corr = FIRST_REQUEST_CORR
        # What the server lets us send (its grant) and what we granted it.
        self._send_frames = 0
        self._send_bytes = 0
        self._grant_frames = window_frames
        self._grant_bytes = window_bytes
        self._used_frames = 0
        self._used_bytes = 0

    # ----- state -----

    @property
    def is_open(self) -> bool:
        """Whether START succeeded and the session has not closed."""
        return self._state == "open"

    @property
    def is_closed(self) -> bool:
        """Whether the session has ended."""
        return self._state == "closed"

    @property
    def hello(self) -> Optional[HelloReply]:
        """The server's HELLO reply, once received."""
        return self._hello

    # ----- output -----

    def take_output(self) -> bytes:
        """Everything queued for the server since the last call (may be ``b""``)."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _emit(self, header: f.Header, cap: bytes = b"", payload: bytes = b"") -> None:
        header.tenant_id = self._tenant
        self._out.append(f.encode(header, cap, payload))

    def _emit_counted(self, data: bytes) -> None:
        """Sends ``data`` (one encoded frame) if the server's window allows it, else queues it."""
        if self._pending or not self._fits(len(data)):
            if len(self._pending) >= MAX_PENDING_FRAMES:
                raise status_error(429, "client send queue full (the server grants no credit)")
            self._pending.append(data)
            return
        self._consume(len(data))
        self._out.append(data)

    def _fits(self, size: int) -> bool:
        return self._send_frames >= 1 and self._send_bytes >= size

    def _consume(self, size: int) -> None:
        self._send_frames -= 1
        self._send_bytes -= size

    def _flush_pending(self) -> None:
        while self._pending and self._fits(len(self._pending[0])):
            data = self._pending.popleft()
            self._consume(len(data))
            self._out.append(data)

    # ----- commands -----

    def begin(self) -> None:
        """Queues the HELLO request. Call once, right after the TLS handshake."""
        if self._state != "new":
            raise ProtocolError("begin() called twice")
        payload = json.dumps(
            {"ua": self._ua, "credit_frames": self._grant_frames, "credit_bytes": self._grant_bytes},
            separators=(",", ":"),
        ).encode("utf-8")
        self._emit(f.Header(flags=f.REQ, code=0, app_proto_id=0, corr_id=HELLO_CORR), b"", payload)
        self._state = "hello"

    def _request(self, kind: int, payload: bytes) -> int:
        if self._state != "open":
            raise ProtocolError("the session is not open")
        corr = self._next_corr
        self._next_corr += 1
        header = f.Header(flags=f.REQ, code=kind, app_proto_id=OVERLAY_APP, corr_id=corr)
        header.tenant_id = self._tenant
        self._emit_counted(f.encode(header, b"", payload))
        return corr

    def publish(self, data: bytes) -> int:
        """Queues a PUBLISH of ``data``; returns the request's corr id (its answer carries the
        message id)."""
        limit = f.MAX_FRAME_BYTES - f.HEADER_LEN
        if len(data) > limit:
            raise status_error(413, f"message of {len(data)} bytes exceeds {limit}")
        return self._request(PUBLISH, bytes(data))

    def subscribe(self) -> int:
        """Queues a SUBSCRIBE; deliveries follow its successful answer."""
        return self._request(SUBSCRIBE, b"")

    def unsubscribe(self) -> int:
        """Queues an UNSUBSCRIBE."""
        return self._request(UNSUBSCRIBE, b"")

    def ping(self) -> None:
        """Queues a PING (the node answers PONG). The node closes a client that sends nothing
        for its ``idle_ms`` (60 s by default): an idle client pings now and then."""
        if self._state != "open":
            raise ProtocolError("the session is not open")
        header = f.Header(flags=f.EVENT, code=PING, app_proto_id=OVERLAY_APP)
        header.tenant_id = self._tenant
        self._emit_counted(f.encode(header))

    def direct(self, data: bytes) -> None:
        """Queues a DIRECT message to the node (no answer)."""
        if self._state != "open":
            raise ProtocolError("the session is not open")
        header = f.Header(flags=f.EVENT, code=DIRECT, app_proto_id=OVERLAY_APP)
        header.tenant_id = self._tenant
        self._emit_counted(f.encode(header, b"", bytes(data)))

    # ----- input -----

    def receive(self, data: bytes) -> List[Event]:
        """Takes bytes from the server; returns the events they complete."""
        if self._state == "closed":
            return []
        self._decoder.push(data)
        events: List[Event] = []
        while True:
            try:
                fr = self._decoder.next()
            except f.FrameError as err:
                raise ProtocolError(f"undecodable frame from the server: {err.kind}") from None
            if fr is None:
                break
            events.extend(self._on_frame(fr))
            if self._state == "closed":
                break
        return events

    def connection_lost(self) -> List[Event]:
        """The transport ended; returns the final :class:`Closed` event (once)."""
        if self._state == "closed":
            return []
        self._state = "closed"
        return [Closed(None)]

    def _on_frame(self, fr: f.Frame) -> List[Event]:
        h = fr.header
        if h.flags & f.RESP and h.code >= 400:
            err = status_error(h.code, _error_label(fr.payload), fatal=bool(h.flags & f.END))
            if err.fatal or self._state != "open":
                err.fatal = True
                self._state = "closed"
                return [Closed(err)]
            return [Failed(h.corr_id, err)]
        if self._state == "hello":
            return self._on_hello(fr)
        if self._state == "starting":
            return self._on_start(fr)
        if self._state == "open":
            self._count_received(fr)
            return self._on_running(fr)
        raise ProtocolError(f"unexpected frame in state {self._state}")

    def _on_hello(self, fr: f.Frame) -> List[Event]:
        h = fr.header
        if not h.flags & f.RESP or h.app_proto_id != 0 or h.corr_id != HELLO_CORR:
            raise ProtocolError("expected the HELLO reply")
        if h.code != 200:
            raise ProtocolError(f"HELLO reply with code {h.code}")
        self._hello = parse_hello_reply(fr.payload)
        self._send_frames = self._hello.credit_frames
        self._send_bytes = self._hello.credit_bytes
        start = f.Header(
            flags=f.START | f.REQ, code=0, app_proto_id=OVERLAY_APP, corr_id=START_CORR
        )
        self._emit(start, self._token)
        self._state = "starting"
        return []

    def _on_start(self, fr: f.Frame) -> List[Event]:
        h = fr.header
        if not (h.flags & f.START and h.flags & f.RESP) or h.corr_id != START_CORR:
            raise ProtocolError("expected the START reply")
        if h.code != 200:
            raise ProtocolError(f"START reply with code {h.code}")
        self._state = "open"
        assert self._hello is not None
        self._flush_pending()
        return [Started(self._hello)]

    def _count_received(self, fr: f.Frame) -> None:
        if fr.header.flags & f.EVENT and fr.header.code == CREDIT:
            return
        self._used_frames += 1
        self._used_bytes += fr.header.length
        if self._used_frames * 2 >= self._grant_frames or self._used_bytes * 2 >= self._grant_bytes:
            body = _CREDIT.pack(self._used_frames, self._used_bytes)
            self._used_frames = 0
            self._used_bytes = 0
            self._emit(f.Header(flags=f.EVENT, code=CREDIT, app_proto_id=OVERLAY_APP), b"", body)

    def _on_running(self, fr: f.Frame) -> List[Event]:
        h = fr.header
        if h.app_proto_id != OVERLAY_APP:
            raise ProtocolError(f"frame for app {h.app_proto_id:#06x} on an open session")
        if h.flags & f.RESP:
            if h.code != 200:
                raise ProtocolError(f"answer with status {h.code}")
            return [Response(h.corr_id, _json_object(fr.payload, "answer"))]
        if not h.flags & f.EVENT:
            raise ProtocolError(f"frame with flags {h.flags:#06x} on an open session")
        if h.code == DELIVER:
            return [parse_deliver(fr.payload)]
        if h.code == CREDIT:
            if len(fr.payload) != _CREDIT.size:
                raise ProtocolError("CREDIT body must be 8 bytes")
            frames, nbytes = _CREDIT.unpack(fr.payload)
            self._send_frames += frames
            self._send_bytes += nbytes
            self._flush_pending()
            return []
        if h.code == PING:
            pong = f.Header(flags=f.EVENT, code=PONG, app_proto_id=OVERLAY_APP)
            pong.tenant_id = self._tenant
            self._emit_counted(f.encode(pong))
            return []
        if h.code == PONG:
            return []
        if h.code == DIRECT:
            return [Direct(bytes(fr.payload))]
        if h.code == LAGGED:
            if len(fr.payload) != 8:
                raise ProtocolError("LAGGED body must be 8 bytes")
            return [Lagged(int.from_bytes(fr.payload, "big"))]
        # Unknown event kinds are ignored: a newer server may send more.
        return []


def hello_request_bytes(user_agent: Optional[str], tenant_id: int = 0, corr_id: int = 1) -> bytes:
    """The reference HELLO request (payload ``{"ua": …}`` only), as the reference builds it."""
    payload = json.dumps({"ua": user_agent}, separators=(",", ":")).encode("utf-8")
    header = f.Header(flags=f.REQ, code=0, app_proto_id=0, tenant_id=tenant_id, corr_id=corr_id)
    return f.encode(header, b"", payload)


def split_addr(addr: str) -> Tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {addr!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
