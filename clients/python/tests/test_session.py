"""The sans-IO client session against scripted server frames, and the blocking client against a
scripted server over a socket pair (no TLS: the transport is not what is tested here)."""

from __future__ import annotations

import json
import socket
import struct
import threading
import unittest

from svc_overlay_client import errors
from svc_overlay_client import frame as f
from svc_overlay_client.client import Client
from svc_overlay_client.protocol import (
    CREDIT,
    DELIVER,
    LAGGED,
    OVERLAY_APP,
    PING,
    PONG,
    PUBLISH,
    SUBSCRIBE,
    ClientSession,
    Closed,
    Direct,
    Failed,
    Lagged,
    Message,
    Response,
    Started,
)

HELLO_REPLY = {
    "max_frame": 1048576,
    "max_inflight": 64,
    "flags_supported": 255,
    "versions": [1],
    "transports": ["tcp+tls"],
    "credit_bytes": 1 << 20,
    "credit_frames": 64,
    "overlay": 1,
    "peer_id": "peer:" + "ab" * 32,
    "session": "client",
}


def frames(data: bytes):
    dec = f.Decoder()
    dec.push(data)
    out = []
    while True:
        fr = dec.next()
        if fr is None:
            return out
        out.append(fr)


def server_frame(flags, code=0, app=OVERLAY_APP, corr=0, payload=b"", cap=b""):
    return f.encode(f.Header(flags=flags, code=code, app_proto_id=app, corr_id=corr), cap, payload)


def hello_reply(**over):
    body = dict(HELLO_REPLY, **over)
    return server_frame(f.RESP, 200, 0, 1, json.dumps(body, separators=(",", ":")).encode())


def start_reply():
    return server_frame(f.START | f.RESP, 200, OVERLAY_APP, 2)


def opened(**hello_over):
    s = ClientSession("tok-en_", window_frames=8, window_bytes=1 << 16)
    s.begin()
    s.take_output()
    s.receive(hello_reply(**hello_over))
    s.take_output()
    assert isinstance(s.receive(start_reply())[0], Started)
    return s


class SessionTests(unittest.TestCase):
    def test_handshake_sends_reference_hello_then_start_with_the_token(self):
        s = ClientSession("tok-en_")
        s.begin()
        (hello,) = frames(s.take_output())
        self.assertEqual(hello.header.flags, f.REQ)
        self.assertEqual(hello.header.app_proto_id, 0)
        self.assertEqual(hello.header.corr_id, 1)
        body = json.loads(hello.payload)
        self.assertIn("ua", body)
        self.assertEqual(s.receive(hello_reply()), [])
        (start,) = frames(s.take_output())
        self.assertEqual(start.header.flags, f.START | f.REQ)
        self.assertEqual(start.header.app_proto_id, OVERLAY_APP)
        self.assertEqual(start.cap, b"tok-en_")
        (ev,) = s.receive(start_reply())
        self.assertIsInstance(ev, Started)
        self.assertEqual(ev.hello.peer_id, HELLO_REPLY["peer_id"])
        self.assertTrue(s.is_open)

    def test_reference_hello_reply_without_overlay_keys_is_accepted(self):
        s = ClientSession("t")
        s.begin()
        ref = {k: HELLO_REPLY[k] for k in ("max_frame", "max_inflight", "flags_supported", "versions", "transports")}
        s.receive(server_frame(f.RESP, 200, 0, 1, json.dumps(ref).encode()))
        self.assertIsNone(s.hello.peer_id)
        self.assertEqual(s.hello.credit_frames, 64)

    def test_token_refused_closes_with_a_typed_error(self):
        s = ClientSession("bad")
        s.begin()
        s.receive(hello_reply())
        (ev,) = s.receive(server_frame(f.RESP | f.END, 401, OVERLAY_APP, 2, b'{"error":"unauth"}'))
        self.assertIsInstance(ev, Closed)
        self.assertIsInstance(ev.error, errors.Unauthorized)
        self.assertEqual(ev.error.label, "unauth")
        self.assertTrue(s.is_closed)

    def test_publish_answer_and_non_fatal_errors(self):
        s = opened()
        corr = s.publish(b"hello")
        (req,) = frames(s.take_output())
        self.assertEqual((req.header.flags, req.header.code, req.header.corr_id), (f.REQ, PUBLISH, corr))
        self.assertEqual(req.payload, b"hello")
        (ev,) = s.receive(server_frame(f.RESP, 200, corr=corr, payload=b'{"id":"' + b"00" * 32 + b'"}'))
        self.assertEqual(ev, Response(corr, {"id": "00" * 32}))
        corr2 = s.publish(b"x")
        for code, cls in ((413, errors.TooLarge), (429, errors.TooManyRequests), (403, errors.Forbidden), (503, errors.Unavailable), (400, errors.BadRequest)):
            (ev,) = s.receive(server_frame(f.RESP, code, corr=corr2, payload=b'{"error":"x"}'))
            self.assertIsInstance(ev, Failed)
            self.assertIsInstance(ev.error, cls)
            self.assertFalse(ev.error.fatal)
        self.assertTrue(s.is_open)

    def test_deliveries_lag_and_ping(self):
        s = opened()
        body = bytes(range(32)) + bytes([7]) * 32 + bytes([3]) + b"payload"
        (m,) = s.receive(server_frame(f.EVENT, DELIVER, payload=body))
        self.assertEqual(m, Message(bytes(range(32)), bytes([7]) * 32, 3, b"payload"))
        self.assertEqual(m.to_json()["origin"], "peer:" + "07" * 32)
        (lag,) = s.receive(server_frame(f.EVENT, LAGGED, payload=(5).to_bytes(8, "big")))
        self.assertEqual(lag, Lagged(5))
        s.take_output()
        self.assertEqual(s.receive(server_frame(f.EVENT, PING)), [])
        out = frames(s.take_output())
        self.assertIn(PONG, [fr.header.code for fr in out])

    def test_direct_from_the_node_and_ping(self):
        s = opened()
        (d,) = s.receive(server_frame(f.EVENT, 0x0106, payload=b"to the client"))
        self.assertEqual(d, Direct(b"to the client"))
        s.take_output()
        s.ping()
        (ping,) = frames(s.take_output())
        self.assertEqual((ping.header.flags, ping.header.code, ping.header.corr_id), (f.EVENT, PING, 0))

    def test_short_deliver_is_a_protocol_error(self):
        s = opened()
        with self.assertRaises(errors.ProtocolError):
            s.receive(server_frame(f.EVENT, DELIVER, payload=b"short"))

    def test_garbage_from_the_server_is_a_protocol_error(self):
        s = opened()
        with self.assertRaises(errors.ProtocolError):
            s.receive(b"\x00\x00\x00\x26\x00\x09" + bytes(32))

    def test_sends_wait_for_the_servers_credit(self):
        s = opened(credit_frames=2)
        s.publish(b"a")
        s.publish(b"b")
        s.publish(b"c")
        self.assertEqual(len(frames(s.take_output())), 2)
        s.receive(server_frame(f.EVENT, CREDIT, payload=struct.pack(">II", 1, 4096)))
        (third,) = frames(s.take_output())
        self.assertEqual(third.payload, b"c")

    def test_client_returns_credit_after_half_its_window(self):
        s = opened()  # grants 8 frames
        body = bytes(65) + b"m"
        for _ in range(3):
            s.receive(server_frame(f.EVENT, DELIVER, payload=body))
        self.assertEqual(frames(s.take_output()), [])
        s.receive(server_frame(f.EVENT, DELIVER, payload=body))
        (credit,) = frames(s.take_output())
        self.assertEqual(credit.header.code, CREDIT)
        frames_back, bytes_back = struct.unpack(">II", credit.payload)
        self.assertEqual(frames_back, 4)
        self.assertEqual(bytes_back, 4 * (38 + len(body)))

    def test_oversized_publish_is_refused_locally(self):
        s = opened()
        with self.assertRaises(errors.TooLarge):
            s.publish(bytes(f.MAX_FRAME_BYTES))


class ScriptedServer(threading.Thread):
    """Answers HELLO and START, then PUBLISH with an id and SUBSCRIBE with two deliveries."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.seen = []

    def run(self) -> None:
        try:
            self.serve()
        except OSError:
            pass
        finally:
            self.sock.close()

    def serve(self) -> None:
        dec = f.Decoder()
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            dec.push(data)
            while True:
                fr = dec.next()
                if fr is None:
                    break
                self.seen.append(fr)
                self.sock.sendall(self.answer(fr))

    def answer(self, fr: f.Frame) -> bytes:
        h = fr.header
        if h.app_proto_id == 0:
            return hello_reply()
        if h.flags & f.START:
            if fr.cap != b"good":
                return server_frame(f.RESP | f.END, 403, corr=2, payload=b'{"error":"forbidden"}')
            return start_reply()
        if h.code == PUBLISH:
            if len(fr.payload) > 10:
                return server_frame(f.RESP, 413, corr=h.corr_id, payload=b'{"error":"oversize"}')
            return server_frame(f.RESP, 200, corr=h.corr_id, payload=json.dumps({"id": fr.payload.hex().ljust(64, "0")}).encode())
        if h.code == SUBSCRIBE:
            msgs = b"".join(
                server_frame(f.EVENT, DELIVER, payload=bytes([i]) * 32 + bytes(32) + b"\x01" + b"m%d" % i)
                for i in range(2)
            )
            return server_frame(f.RESP, 200, corr=h.corr_id, payload=b"{}") + msgs
        return b""


def scripted_client(token: str):
    a, b = socket.socketpair()
    server = ScriptedServer(b)
    server.start()
    session = ClientSession(token)
    client = Client(a, session, timeout=5.0)
    try:
        session.begin()
        client._flush()
        client._pump_until(lambda: session.is_open or session.is_closed, 5.0)
        client._raise_if_closed()
    except BaseException:
        client.close()
        b.close()
        raise
    return client, server


class BlockingClientTests(unittest.TestCase):
    def test_publish_subscribe_and_typed_refusal(self):
        client, server = scripted_client("good")
        self.addCleanup(server.join, 5)
        with client:
            self.assertEqual(client.server_peer_id, HELLO_REPLY["peer_id"])
            self.assertEqual(client.publish(b"hi"), "6869".ljust(64, "0"))
            with self.assertRaises(errors.TooLarge):
                client.publish(b"far too long a message")
            client.subscribe()
            got = [client.recv(2.0) for _ in range(2)]
            self.assertEqual([m.data for m in got], [b"m0", b"m1"])
            with self.assertRaises(TimeoutError):
                client.recv(0.2)

    def test_refused_token_raises_forbidden(self):
        with self.assertRaises(errors.Forbidden):
            scripted_client("bad")


if __name__ == "__main__":
    unittest.main()
