"""The demo upstream's streams (scripts/demo_upstream.py): server-sent events and a WebSocket
echo, so the README tour can show both through Keygate.

The WebSocket side is written here from RFC 6455 (the handshake and the frames of an echo)
rather than taken from a library, because the demo upstream runs on any Python 3 with the
standard library alone (`make run` starts it with the system's python3); the tests check it
with the `websockets` client from PyPI.
"""
import base64
import hashlib
import struct

HANDSHAKE_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE_BYTES = 1 << 20
MAX_EVENTS = 10_000
MAX_INTERVAL_MS = 10_000
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def is_websocket_upgrade(headers):
    connection = {token.strip().lower() for token in (headers.get("connection") or "").split(",")}
    return (headers.get("upgrade") or "").strip().lower() == "websocket" and "upgrade" in connection


def accept_value(key):
    digest = hashlib.sha1((key.strip() + HANDSHAKE_GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode()


def websocket_echo(handler):
    """Answers the upgrade (`x-demo-path` tells the client which path arrived, so a test can see
    what was stripped) and echoes each text or binary message until either side closes."""
    key = handler.headers.get("sec-websocket-key")
    if not key or (handler.headers.get("sec-websocket-version") or "").strip() != "13":
        return False
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        f"sec-websocket-accept: {accept_value(key)}\r\nx-demo-path: {handler.path}\r\n\r\n"
    )
    handler.close_connection = True
    handler.wfile.write(head.encode("latin-1"))
    handler.wfile.flush()
    message, message_opcode = b"", None
    while True:
        frame = read_frame(handler.rfile)
        if frame is None:
            return True
        if isinstance(frame, int):
            send_frame(handler.wfile, OP_CLOSE, struct.pack("!H", frame))
            return True
        fin, opcode, payload = frame
        if opcode >= OP_CLOSE and (not fin or len(payload) > 125):
            return fail(handler, 1002)  # control frames are whole and small (RFC 6455 5.5)
        if opcode == OP_CLOSE:
            if len(payload) == 1:
                return fail(handler, 1002)
            send_frame(handler.wfile, OP_CLOSE, payload[:2])
            return True
        if opcode == OP_PING:
            send_frame(handler.wfile, OP_PONG, payload)
            continue
        if opcode == OP_PONG:
            continue
        if opcode in (OP_TEXT, OP_BINARY) and message_opcode is None:
            message, message_opcode = payload, opcode
        elif opcode == OP_CONTINUATION and message_opcode is not None:
            message += payload
        else:
            # A new message inside a fragmented one, a stray continuation, an unknown opcode.
            return fail(handler, 1002)
        if len(message) > MAX_MESSAGE_BYTES:
            return fail(handler, 1009)
        if fin:
            send_frame(handler.wfile, message_opcode, message)
            message, message_opcode = b"", None


def fail(handler, code):
    """Closes the connection with `code` (1002 protocol error, 1009 too big)."""
    send_frame(handler.wfile, OP_CLOSE, struct.pack("!H", code))
    return True


def read_exactly(stream, count):
    data = stream.read(count) if count else b""
    return data if len(data) == count else None


def read_frame(stream):
    """(fin, opcode, unmasked payload); None when the connection ended; a close code (int) when
    the frame broke the rules."""
    head = read_exactly(stream, 2)
    if head is None:
        return None
    fin, reserved, opcode = head[0] & 0x80, head[0] & 0x70, head[0] & 0x0F
    masked, length = head[1] & 0x80, head[1] & 0x7F
    if reserved or not masked:
        return 1002  # no extension was agreed; a client's frames are always masked (RFC 6455 5.1)
    if length == 126:
        extended = read_exactly(stream, 2)
        length = struct.unpack("!H", extended)[0] if extended else None
    elif length == 127:
        extended = read_exactly(stream, 8)
        length = struct.unpack("!Q", extended)[0] if extended else None
    if length is None:
        return None
    if length > MAX_MESSAGE_BYTES:
        return 1009
    mask = read_exactly(stream, 4)
    payload = read_exactly(stream, length)
    if mask is None or payload is None:
        return None
    return bool(fin), opcode, bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


def send_frame(stream, opcode, payload):
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    try:
        stream.write(head + payload)
        stream.flush()
    except OSError:
        pass


def server_sent_events(handler, count, interval_ms, hold):
    """`count` events (`data: N`), `interval_ms` apart, as `text/event-stream` until the last or
    until the client hangs up (`hold(seconds)` is False then)."""
    handler.close_connection = True
    handler.wfile.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n"
        b"connection: close\r\n\r\n"
    )
    handler.wfile.flush()
    for index in range(1, min(count, MAX_EVENTS) + 1):
        if index > 1 and interval_ms and not hold(min(interval_ms, MAX_INTERVAL_MS) / 1000):
            return
        try:
            handler.wfile.write(f"id: {index}\ndata: event {index} of {count}\n\n".encode())
            handler.wfile.flush()
        except OSError:
            return
