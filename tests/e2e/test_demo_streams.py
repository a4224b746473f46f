"""The demo upstream's WebSocket echo at the frame level (the `websockets` client only ever
sends valid frames): frames a server must refuse get a Close with the RFC 6455 code."""

import base64
import os
import socket
import struct

import pytest


def handshake(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1024)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def frame(opcode, payload, fin=True, masked=True, reserved=0):
    first = (0x80 if fin else 0) | reserved | opcode
    mask = os.urandom(4) if masked else b""
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    return struct.pack("!BB", first, (0x80 if masked else 0) | len(payload)) + mask + body


def close_code(sock):
    data = b""
    while len(data) < 4:
        chunk = sock.recv(64)
        if not chunk:
            break
        data += chunk
    assert data[0] == 0x88, data  # FIN + Close
    return struct.unpack("!H", data[2:4])[0]


@pytest.mark.parametrize("bad,code", [
    (frame(0x1, b"hi", masked=False), 1002),
    (frame(0x1, b"hi", reserved=0x40), 1002),
    (frame(0x9, b"ping", fin=False), 1002),
    (frame(0x0, b"stray continuation"), 1002),
    (frame(0x1, b"part", fin=False) + frame(0x1, b"new message"), 1002),
    (frame(0x8, b"\x03"), 1002),
    (frame(0x3, b"reserved opcode"), 1002),
])
def test_frames_a_server_must_refuse_get_a_close_with_the_rfc_code(upstream, bad, code):
    with handshake(upstream.port) as sock:
        sock.sendall(bad)
        assert close_code(sock) == code


def test_a_fragmented_message_is_echoed_whole(upstream):
    with handshake(upstream.port) as sock:
        sock.sendall(frame(0x1, b"hel", fin=False) + frame(0x9, b"!") + frame(0x0, b"lo"))
        pong = sock.recv(2 + 1)
        assert pong[0] == 0x8A and pong[2:] == b"!"
        answer = sock.recv(64)
        assert answer == b"\x81\x05hello"
