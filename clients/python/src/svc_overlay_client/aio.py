"""The asyncio client: the same API as :class:`~svc_overlay_client.client.Client`, awaitable.

One reader task feeds the sans-IO :class:`ClientSession`; requests wait on futures keyed by
their corr id; deliveries go to a bounded queue (overflow is reported as :class:`Lagged`).
"""

from __future__ import annotations

import asyncio
from typing import Dict, Optional, Union

from .errors import ConnectionClosed, OverlayError
from .protocol import (
    ClientSession,
    Closed,
    Direct,
    Failed,
    Lagged,
    Message,
    Response,
    Started,
    split_addr,
)
from .tlsid import check_peer_id, make_context

INBOX_LIMIT = 10_000

Delivery = Union[Message, Lagged, Direct]


class AsyncClient:
    """A client session on asyncio. Use ``await AsyncClient.connect(...)``; ``async with``
    closes it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: ClientSession,
        timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._session = session
        self._timeout = timeout
        self._waiters: Dict[int, "asyncio.Future[Union[Response, Failed]]"] = {}
        self._inbox: "asyncio.Queue[Delivery]" = asyncio.Queue()
        self._dropped = 0
        self._started: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
        self._closed: Optional[OverlayError] = None
        self._task: Optional["asyncio.Task[None]"] = None

    @classmethod
    async def connect(
        cls,
        addr: str,
        token: str,
        *,
        server_id: Optional[str] = None,
        ca_file: Optional[str] = None,
        insecure: bool = False,
        timeout: float = 10.0,
        user_agent: str = "svc-overlay-client-py/0.1.0",
    ) -> "AsyncClient":
        """Connects, runs HELLO and START, and returns the open client (see
        :meth:`Client.connect` for the identity options)."""
        host, port = split_addr(addr)
        ctx = make_context(ca_file, verify=not insecure and server_id is None)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=None), timeout
        )
        try:
            if server_id is not None:
                ssl_obj = writer.get_extra_info("ssl_object")
                check_peer_id(ssl_obj.getpeercert(binary_form=True) if ssl_obj else None, server_id)
        except BaseException:
            writer.close()
            raise
        session = ClientSession(token, user_agent=user_agent)
        client = cls(reader, writer, session, timeout)
        session.begin()
        client._task = asyncio.ensure_future(client._read_loop())
        try:
            await client._flush()
            await asyncio.wait_for(asyncio.shield(client._started), timeout)
        except BaseException:
            await client.close()
            raise
        return client

    async def _flush(self) -> None:
        data = self._session.take_output()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    def _finish(self, err: OverlayError) -> None:
        """Records the end of the session and fails everything still waiting with ``err``."""
        if self._closed is not None:
            return
        self._closed = err
        if not self._started.done():
            self._started.set_exception(err)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(err)
        self._waiters.clear()

    def _dispatch(self, events: list) -> None:
        for ev in events:
            if isinstance(ev, Started):
                if not self._started.done():
                    self._started.set_result(None)
            elif isinstance(ev, (Response, Failed)):
                fut = self._waiters.pop(ev.corr_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            elif isinstance(ev, (Message, Lagged, Direct)):
                if self._inbox.qsize() >= INBOX_LIMIT:
                    self._inbox.get_nowait()
                    self._dropped += 1
                self._inbox.put_nowait(ev)
            elif isinstance(ev, Closed):
                self._finish(ev.error or ConnectionClosed("the node closed the session"))

    async def _read_loop(self) -> None:
        error: OverlayError = ConnectionClosed("the node closed the session")
        try:
            while not self._session.is_closed:
                data = await self._reader.read(65536)
                if not data:
                    break
                self._dispatch(self._session.receive(data))
                await self._flush()
        except OverlayError as err:
            error = err
        except OSError as err:
            error = ConnectionClosed(f"connection lost: {err}")
        finally:
            self._session.connection_lost()
            self._finish(error)

    async def _call(self, corr: int) -> Response:
        if self._closed is not None:
            raise self._closed
        fut: "asyncio.Future[Union[Response, Failed]]" = asyncio.get_running_loop().create_future()
        self._waiters[corr] = fut
        await self._flush()
        answer = await asyncio.wait_for(fut, self._timeout)
        if isinstance(answer, Failed):
            raise answer.error
        return answer

    @property
    def server_peer_id(self) -> Optional[str]:
        """The PeerId the server announced in its HELLO reply."""
        hello = self._session.hello
        return hello.peer_id if hello else None

    async def publish(self, data: Union[bytes, str]) -> str:
        """Publishes ``data``; returns the message id (64 hex digits)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        answer = await self._call(self._session.publish(data))
        msg_id = answer.body.get("id")
        if not isinstance(msg_id, str):
            raise OverlayError("PUBLISH answer has no id")
        return msg_id

    async def subscribe(self) -> None:
        """Asks the node to deliver every message it receives to this client."""
        await self._call(self._session.subscribe())

    async def unsubscribe(self) -> None:
        """Stops deliveries."""
        await self._call(self._session.unsubscribe())

    async def direct(self, data: bytes) -> None:
        """Sends a DIRECT message to the node."""
        self._session.direct(data)
        await self._flush()

    async def ping(self) -> None:
        """Sends a PING: keeps an otherwise idle session open."""
        self._session.ping()
        await self._flush()

    async def recv(self, timeout: Optional[float] = None) -> Delivery:
        """The next delivery; raises :class:`asyncio.TimeoutError` after ``timeout`` seconds and
        :class:`ConnectionClosed` once the session has ended and the inbox is empty."""
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            return Lagged(dropped)
        if self._closed is not None and self._inbox.empty():
            raise self._closed
        return await asyncio.wait_for(self._inbox.get(), timeout)

    async def close(self) -> None:
        """Closes the connection and stops the reader."""
        if self._task is not None:
            self._task.cancel()
        if self._closed is not None:
            # The node already ended the session: no orderly TLS shutdown to wait for.
            self._writer.transport.abort()
        else:
            self._writer.close()
            try:
                await asyncio.wait_for(self._writer.wait_closed(), self._timeout)
            except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
                self._writer.transport.abort()
        self._session.connection_lost()
        self._finish(ConnectionClosed("closed by the client"))

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
