"""Raw client connections for testing how a server treats hostile or idle clients: requests
whose headers never finish, kept-alive connections, and whether the server has closed one."""
import socket

from .waiting import wait_until

HEADER_START = b"GET /healthz HTTP/1.1\r\nHost: keygate\r\n"


def connect(port, host="127.0.0.1", timeout=5):
    return socket.create_connection((host, port), timeout=timeout)


def slowloris(port, count, host="127.0.0.1"):
    """`count` connections that each sent the start of a request whose headers never finish."""
    connections = []
    for _ in range(count):
        connection = connect(port, host)
        connection.sendall(HEADER_START)
        connections.append(connection)
    return connections


def dribble(connections):
    """One more header line on each connection still open (a slowloris keeps sending)."""
    for connection in connections:
        if not is_closed(connection):
            try:
                connection.sendall(b"X-Slow: 1\r\n")
            except OSError:
                pass


def is_closed(connection):
    """Whether the server closed `connection` (end of stream or reset), without blocking."""
    connection.setblocking(False)
    try:
        return connection.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        connection.setblocking(True)


def still_open(connections):
    return [connection for connection in connections if not is_closed(connection)]


def request(connection, path="/healthz", timeout=5):
    """One keep-alive GET on `connection`; returns (status, body) once the whole answer (which
    must carry a Content-Length) is read, or None if the server closed the connection first."""
    answer = exchange(connection, "GET", path, timeout=timeout)
    return None if answer is None else (answer[0], answer[2])


def exchange(connection, method, path, headers=(), body=b"", timeout=5):
    """One HTTP/1.1 request on `connection`; returns (status, headers with lower-case names,
    body) once the whole answer (which must carry a Content-Length) is read, or None if the
    server closed the connection first."""
    connection.settimeout(timeout)
    head = [f"{method} {path} HTTP/1.1", "Host: keygate", *headers]
    if body:
        head.append(f"Content-Length: {len(body)}")
    connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        received += chunk
    head, answer = received.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        fields[name.strip().lower()] = value.strip()
    length = int(fields["content-length"])
    while len(answer) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        answer += chunk
    return int(lines[0].split()[1]), fields, answer


def wait_closed(connection, timeout, what="the server to close the connection"):
    wait_until(lambda: is_closed(connection), timeout=timeout, what=what, retry_on=())
