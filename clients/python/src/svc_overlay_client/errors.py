"""Typed errors: one class per status code the overlay answers with."""

from __future__ import annotations

from typing import Dict, Optional, Type


class OverlayError(Exception):
    """Base class of every error this package raises."""


class ConnectionClosed(OverlayError):
    """The connection ended (by the server, the network, or :meth:`close`)."""


class ProtocolError(OverlayError):
    """The server sent something this client cannot accept (a malformed frame or answer)."""


class StatusError(OverlayError):
    """The server answered with an error status. ``code`` is the status, ``label`` the
    server's error label (``{"error": "<label>"}``), ``fatal`` whether the session ended."""

    code = 0

    def __init__(self, label: str = "", code: Optional[int] = None, fatal: bool = False) -> None:
        self.label = label
        if code is not None:
            self.code = code
        self.fatal = fatal
        super().__init__(f"{self.code} {label}".strip())


class BadRequest(StatusError):
    """400: a malformed frame or message."""

    code = 400


class Unauthorized(StatusError):
    """401: missing, invalid or expired token."""

    code = 401


class Forbidden(StatusError):
    """403: the token does not allow this session or operation."""

    code = 403


class Timeout(StatusError):
    """408: the handshake or the session timed out."""

    code = 408


class TooLarge(StatusError):
    """413: the frame or message is larger than allowed."""

    code = 413


class TooManyRequests(StatusError):
    """429: a rate or credit limit was exceeded."""

    code = 429


class Unavailable(StatusError):
    """503: the node is busy (readiness degraded), full, or shutting down."""

    code = 503


_BY_CODE: Dict[int, Type[StatusError]] = {
    cls.code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, Timeout, TooLarge, TooManyRequests, Unavailable)
}


def status_error(code: int, label: str = "", fatal: bool = False) -> StatusError:
    """The typed error for a status code (a plain :class:`StatusError` for other codes)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return StatusError(label, code=code, fatal=fatal)
    return cls(label, fatal=fatal)
