"""OAP/1 framing, exactly as the reference codec (default build, no zstd).

A frame is a 38-byte header, an optional capability section (only with START) and an optional
payload. Every integer is unsigned big-endian. :func:`decode` looks at a buffer and returns one
of three results: need more bytes, one frame (and how many bytes it used), or an error with the
reference's class name and the bytes it consumed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

HEADER_LEN = 38
MAX_FRAME_BYTES = 1_048_576
MAX_CAP_LEN = 0xFFFF
VERSION = 1

REQ = 0x0001
RESP = 0x0002
EVENT = 0x0004
START = 0x0008
END = 0x0010
ACK_REQ = 0x0020
COMP = 0x0040
APP_E2E = 0x0080
RESERVED_FLAGS = 0xFF00

FLAG_NAMES = (
    (REQ, "REQ"),
    (RESP, "RESP"),
    (EVENT, "EVENT"),
    (START, "START"),
    (END, "END"),
    (ACK_REQ, "ACK_REQ"),
    (COMP, "COMP"),
    (APP_E2E, "APP_E2E"),
)

_HEADER = struct.Struct(">IHHHH16sHQ")
assert _HEADER.size == HEADER_LEN


class FrameError(Exception):
    """A frame the reference decoder rejects (or an encoder input it refuses).

    ``kind`` is the reference's snake_case class (``bad_flags``, ``bad_version``,
    ``frame_too_large``, ``cap_on_non_start``, ``truncated_header``, ``cap_out_of_bounds``,
    ``zstd_feature_not_enabled``); ``consumed`` is how many bytes the failed call removed.
    """

    def __init__(self, kind: str, message: str, consumed: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.consumed = consumed


@dataclass
class Header:
    """The fixed 38-byte header. ``length`` and ``cap_len`` are recomputed by :func:`encode`."""

    flags: int = 0
    code: int = 0
    app_proto_id: int = 0
    tenant_id: int = 0
    corr_id: int = 0
    version: int = VERSION
    length: int = HEADER_LEN
    cap_len: int = 0

    def flag_names(self) -> List[str]:
        """The names of the defined flag bits that are set, in bit order."""
        return [name for bit, name in FLAG_NAMES if self.flags & bit]


@dataclass
class Frame:
    """A decoded frame. ``cap`` and ``payload`` are ``b""`` when absent."""

    header: Header
    cap: bytes = b""
    payload: bytes = b""

    @property
    def flags(self) -> int:
        return self.header.flags

    @property
    def code(self) -> int:
        return self.header.code

    @property
    def corr_id(self) -> int:
        return self.header.corr_id

    @property
    def app_proto_id(self) -> int:
        return self.header.app_proto_id


def parse_header(buf: Union[bytes, bytearray, memoryview]) -> Header:
    """Parses the first 38 bytes of ``buf`` without validating anything."""
    length, ver, flags, code, app, tenant, cap_len, corr = _HEADER.unpack_from(buf, 0)
    return Header(
        flags=flags,
        code=code,
        app_proto_id=app,
        tenant_id=int.from_bytes(tenant, "big"),
        corr_id=corr,
        version=ver,
        length=length,
        cap_len=cap_len,
    )


def encode(header: Header, cap: bytes = b"", payload: bytes = b"") -> bytes:
    """Encodes a frame like the reference encoder: ``length`` and ``cap_len`` are recomputed,
    ``version`` and ``flags`` are written as given (so a caller can produce frames the decoder
    rejects, as the reference can). Raises :class:`FrameError` for a cap over 65535 bytes
    (``cap_out_of_bounds``) or a frame over 1 MiB (``frame_too_large``)."""
    if len(cap) > MAX_CAP_LEN:
        raise FrameError("cap_out_of_bounds", f"cap of {len(cap)} bytes exceeds {MAX_CAP_LEN}")
    total = HEADER_LEN + len(cap) + len(payload)
    if total > MAX_FRAME_BYTES:
        raise FrameError("frame_too_large", f"frame too large: {total} > {MAX_FRAME_BYTES}")
    head = _HEADER.pack(
        total,
        header.version,
        header.flags,
        header.code,
        header.app_proto_id,
        header.tenant_id.to_bytes(16, "big"),
        len(cap),
        header.corr_id,
    )
    return head + bytes(cap) + bytes(payload)


NEED_MORE = None
"""What :func:`decode` returns when the buffer does not yet hold a whole frame."""


def decode(buf: Union[bytes, bytearray, memoryview]) -> Optional[Tuple[Frame, int]]:
    """One decode call on ``buf``, following the reference steps in order.

    Returns ``None`` (need more), or ``(frame, consumed)``; raises :class:`FrameError`
    (its ``consumed`` is 0 for header errors and ``len`` for errors found after the frame was
    split off).
    """
    if len(buf) < HEADER_LEN:
        return NEED_MORE
    h = parse_header(buf)
    if h.flags & RESERVED_FLAGS:
        raise FrameError("bad_flags", f"bad flags bits 0x{h.flags & RESERVED_FLAGS:04x}")
    if h.version != VERSION:
        raise FrameError("bad_version", f"bad version {h.version}")
    if h.length == 0 or h.length > MAX_FRAME_BYTES:
        raise FrameError("frame_too_large", f"frame too large: {h.length} > {MAX_FRAME_BYTES}")
    if h.cap_len > 0 and not h.flags & START:
        raise FrameError("cap_on_non_start", "cap section present but START flag not set")
    if len(buf) < h.length:
        return NEED_MORE
    consumed = h.length
    if h.length < HEADER_LEN:
        raise FrameError("truncated_header", "truncated header", consumed)
    if h.cap_len > h.length - HEADER_LEN:
        raise FrameError("cap_out_of_bounds", "cap length exceeds frame", consumed)
    body = bytes(buf[HEADER_LEN : h.length])
    cap, payload = body[: h.cap_len], body[h.cap_len :]
    if h.flags & COMP:
        raise FrameError(
            "zstd_feature_not_enabled", "COMP frames are not supported (no zstd)", consumed
        )
    return Frame(h, cap, payload), consumed


@dataclass
class Decoder:
    """Incremental decoding: :meth:`push` bytes as they arrive, then call :meth:`next` until it
    returns ``None``. After an error the offending bytes (if any were consumed) are gone and
    decoding may continue; a client normally closes the connection instead."""

    buffer: bytearray = field(default_factory=bytearray)

    def push(self, data: bytes) -> None:
        """Appends received bytes."""
        self.buffer.extend(data)

    def next(self) -> Optional[Frame]:
        """Returns the next whole frame, or ``None`` when more bytes are needed."""
        try:
            result = decode(self.buffer)
        except FrameError as err:
            del self.buffer[: err.consumed]
            raise
        if result is None:
            return None
        frame, consumed = result
        del self.buffer[:consumed]
        return frame
