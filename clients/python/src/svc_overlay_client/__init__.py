"""svc-overlay client: publish to and subscribe on an svc-overlay node from Python.

A client session is a TLS connection without a client certificate, authenticated by a capability
token alone (see the svc-overlay repository's ``docs/PROTOCOL.md``, "Client sessions").
Standard library only.
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    BadRequest,
    ConnectionClosed,
    Forbidden,
    OverlayError,
    ProtocolError,
    StatusError,
    Timeout,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from .frame import Decoder, Frame, FrameError, Header, decode, encode
from .protocol import ClientSession, Direct, Lagged, Message
from .tlsid import IdentityMismatch

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientSession",
    "ConnectionClosed",
    "Decoder",
    "Forbidden",
    "Frame",
    "FrameError",
    "Header",
    "IdentityMismatch",
    "Direct",
    "Lagged",
    "Message",
    "OverlayError",
    "ProtocolError",
    "StatusError",
    "Timeout",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "decode",
    "encode",
]
