"""The blocking client: one TLS socket, driven by the sans-IO :class:`ClientSession`."""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from typing import Deque, Dict, Iterator, Optional, Union

from .errors import ConnectionClosed, OverlayError, StatusError
from .protocol import (
    ClientSession,
    Closed,
    Direct,
    Event,
    Failed,
    Lagged,
    Message,
    Response,
    Started,
    split_addr,
)
from .tlsid import check_peer_id, make_context

INBOX_LIMIT = 10_000
"""Deliveries held for the application; beyond it the oldest are dropped and reported as lag."""

Delivery = Union[Message, Lagged, Direct]


class Client:
    """A client session with a node. Use :meth:`connect`; close with :meth:`close` or ``with``.

    >>> with Client.connect("127.0.0.1:9415", token, insecure=True) as c:   # doctest: +SKIP
    ...     print(c.publish(b"hello"))
    """

    def __init__(self, sock: socket.socket, session: ClientSession, timeout: float) -> None:
        self._sock = sock
        self._session = session
        self._timeout = timeout
        self._answers: Dict[int, Union[Response, Failed]] = {}
        self._inbox: Deque[Delivery] = deque()
        self._dropped = 0
        self._closed: Optional[Closed] = None

    @classmethod
    def connect(
        cls,
        addr: str,
        token: str,
        *,
        server_id: Optional[str] = None,
        ca_file: Optional[str] = None,
        insecure: bool = False,
        timeout: float = 10.0,
        user_agent: str = "svc-overlay-client-py/0.1.0",
    ) -> "Client":
        """Connects to ``HOST:PORT``, runs HELLO and START with ``token``, and returns the
        open client. The server is verified by its PeerId (``server_id``), a CA file, or not at
        all when ``insecure`` is true."""
        host, port = split_addr(addr)
        ctx = make_context(ca_file, verify=not insecure and server_id is None)
        raw = socket.create_connection((host, port), timeout=timeout)
        sock: Optional[ssl.SSLSocket] = None
        try:
            sock = ctx.wrap_socket(raw, server_hostname=None)
            if server_id is not None:
                check_peer_id(sock.getpeercert(binary_form=True), server_id)
        except BaseException:
            (sock or raw).close()
            raise
        session = ClientSession(token, user_agent=user_agent)
        client = cls(sock, session, timeout)
        try:
            session.begin()
            client._flush()
            client._pump_until(lambda: session.is_open, timeout)
        except BaseException:
            client.close()
            raise
        return client

    # ----- plumbing -----

    def _flush(self) -> None:
        data = self._session.take_output()
        if data:
            try:
                self._sock.sendall(data)
            except OSError as err:
                self._on_events(self._session.connection_lost())
                raise ConnectionClosed(f"send failed: {err}") from None

    def _on_events(self, events: "list[Event]") -> None:
        for ev in events:
            if isinstance(ev, (Response, Failed)):
                self._answers[ev.corr_id] = ev
            elif isinstance(ev, (Message, Lagged, Direct)):
                if len(self._inbox) >= INBOX_LIMIT:
                    self._inbox.popleft()
                    self._dropped += 1
                self._inbox.append(ev)
            elif isinstance(ev, Closed):
                self._closed = ev
            elif isinstance(ev, Started):
                pass

    def _read_once(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the node")
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out waiting for the node") from None
        except (OSError, ssl.SSLError) as err:
            self._on_events(self._session.connection_lost())
            raise ConnectionClosed(f"connection lost: {err}") from None
        events = self._session.connection_lost() if not data else self._session.receive(data)
        self._on_events(events)
        self._flush()

    def _raise_if_closed(self) -> None:
        if self._closed is not None:
            if self._closed.error is not None:
                raise self._closed.error
            raise ConnectionClosed("the node closed the session")

    def _pump_until(self, done, timeout: Optional[float]) -> None:
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        while not done():
            self._raise_if_closed()
            self._read_once(deadline)
        self._flush()

    def _call(self, corr: int) -> Response:
        self._flush()
        self._pump_until(lambda: corr in self._answers, None)
        answer = self._answers.pop(corr)
        if isinstance(answer, Failed):
            raise answer.error
        return answer

    # ----- API -----

    @property
    def server_peer_id(self) -> Optional[str]:
        """The PeerId the server announced in its HELLO reply."""
        hello = self._session.hello
        return hello.peer_id if hello else None

    def publish(self, data: Union[bytes, str]) -> str:
        """Publishes ``data`` to the overlay; returns the message id (64 hex digits).
        Raises :class:`TooLarge`, :class:`TooManyRequests`, :class:`Forbidden`,
        :class:`Unavailable`… on refusal."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        answer = self._call(self._session.publish(data))
        msg_id = answer.body.get("id")
        if not isinstance(msg_id, str):
            raise OverlayError("PUBLISH answer has no id")
        return msg_id

    def subscribe(self) -> None:
        """Asks the node to deliver every message it receives to this client."""
        self._call(self._session.subscribe())

    def unsubscribe(self) -> None:
        """Stops deliveries."""
        self._call(self._session.unsubscribe())

    def direct(self, data: bytes) -> None:
        """Sends a DIRECT message to the node (fire and forget)."""
        self._session.direct(data)
        self._flush()

    def ping(self) -> None:
        """Sends a PING: keeps an otherwise idle session open (the node closes clients silent
        for its ``idle_ms``)."""
        self._session.ping()
        self._flush()

    def recv(self, timeout: Optional[float] = None) -> Delivery:
        """The next delivery (a :class:`Message`, :class:`Lagged` when deliveries were
        dropped, or :class:`Direct` from the node's application). Raises :class:`TimeoutError` after ``timeout`` seconds."""
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            return Lagged(dropped)
        self._pump_until(lambda: bool(self._inbox), timeout)
        return self._inbox.popleft()

    def messages(self, timeout: Optional[float] = None) -> Iterator[Delivery]:
        """Iterates deliveries until the session closes (or ``timeout`` passes between two)."""
        while True:
            try:
                yield self.recv(timeout)
            except ConnectionClosed:
                return

    def close(self) -> None:
        """Closes the connection."""
        try:
            self._sock.close()
        finally:
            self._on_events(self._session.connection_lost())

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client", "Delivery", "StatusError"]
