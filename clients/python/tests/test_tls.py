"""The blocking and asyncio clients over real TLS (loopback) against the scripted server, with the
server's identity pinned by PeerId."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import ssl
import threading
import unittest

from svc_overlay_client import AsyncClient, Client, Forbidden, IdentityMismatch, OverlayError, TooLarge

from test_session import ScriptedServer

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures"
PEER = "peer:c8dc82d52486b3d2ed3849fec23e0412bfd0ff8370cd195bd1e45fd9f763315c"


class TlsServer(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.set_alpn_protocols(["ron/oap1"])
        self.ctx.load_cert_chain(FIXTURES / "ed25519-cert.pem", FIXTURES / "ed25519-key.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.conns = []

    def run(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                conn = self.ctx.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            self.conns.append(conn)
            ScriptedServer(conn).start()

    def close(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()


class TlsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = TlsServer()
        self.server.start()

    def tearDown(self) -> None:
        self.server.close()

    def test_blocking_client_pinned(self):
        with Client.connect(self.server.addr, "good", server_id=PEER, timeout=5) as c:
            self.assertEqual(c.publish("hi"), "6869".ljust(64, "0"))
            with self.assertRaises(TooLarge):
                c.publish(b"far too long a message")
            c.subscribe()
            self.assertEqual([c.recv(2).data for _ in range(2)], [b"m0", b"m1"])
        with self.assertRaises(Forbidden):
            Client.connect(self.server.addr, "bad", server_id=PEER, timeout=5)
        with self.assertRaises(IdentityMismatch):
            Client.connect(self.server.addr, "good", server_id="peer:" + "00" * 32, timeout=5)
        with self.assertRaises(OverlayError):
            Client.connect(self.server.addr, "good", timeout=5)

    def test_asyncio_client_pinned(self):
        async def run():
            c = await AsyncClient.connect(self.server.addr, "good", server_id=PEER, timeout=5)
            async with c:
                self.assertEqual(await c.publish(b"hi"), "6869".ljust(64, "0"))
                with self.assertRaises(TooLarge):
                    await c.publish(b"far too long a message")
                await c.subscribe()
                got = [(await c.recv(2)).data for _ in range(2)]
                self.assertEqual(got, [b"m0", b"m1"])
                with self.assertRaises(asyncio.TimeoutError):
                    await c.recv(0.1)
            with self.assertRaises(Forbidden):
                await AsyncClient.connect(self.server.addr, "bad", server_id=PEER, timeout=5)

        asyncio.run(run())


if __name__ == "__main__":
    unittest.main()
