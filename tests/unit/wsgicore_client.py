"""The client side of the wsgicore tests that talk to a real server: the
server is an instrument.local.LocalServer, the client instrument.wire; these
helpers only fix the defaults of these tests (Host 127.0.0.1, read until
the server closes)."""

import io
import socket
import sys
import threading
from pathlib import Path

from instrument import wire

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "part2"))

import wsgicore  # noqa: E402

HOST = "127.0.0.1"


def request(method, path, headers=(), body=b"", version="HTTP/1.1"):
    """A request as bytes: Host 127.0.0.1, no Connection field added."""
    return wire.request(method, path, HOST, headers, body, version, close=False)


def read_to_close(sock, timeout=10.0):
    """What comes on a connected socket until the server closes it (FIN);
    a reset or a server that keeps it open fails the test."""
    reply = wire.exchange(HOST, 0, timeout=timeout, sock=sock)
    assert reply.eof, f"the connection did not end with a close: {reply.summary()}"
    return reply.data


def fetch(port, method, path, headers=(), body=b""):
    """One request on a fresh connection, read until the server closes it."""
    reply = wire.exchange(HOST, port, request(method, path, headers, body), timeout=10.0)
    assert reply.eof, f"the connection did not end with a close: {reply.summary()}"
    response = reply.response()
    assert response.status, f"no response head in {reply.data[:300]!r}"
    return response


def hello_works(port):
    response = fetch(port, "GET", "/hello")
    assert response.status == 200, response.raw[:300]
    assert response.raw_body == b"Hello world from a simple WSGI application!\n"


def serve_once(data, app):
    """One request through BaseWSGIServer.handle_one_request on a real
    socket, in-process: returns the raw response."""
    server = wsgicore.BaseWSGIServer(("127.0.0.1", 0), request_timeout=5.0)
    server.set_app(app)
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as client:
            conn, address = server.listen_socket.accept()
            worker = threading.Thread(target=server.handle_one_request, args=(conn, address))
            worker.start()
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
            raw = read_to_close(client)
            worker.join(10)
    finally:
        server.server_close()
    return raw


class Drip(io.RawIOBase):
    """A raw stream that gives `step` bytes a read, as a slow socket does."""

    def __init__(self, data, step):
        self.data, self.step = data, step

    def readable(self):
        return True

    def readinto(self, buffer):
        piece, self.data = self.data[:min(self.step, len(buffer))], self.data[self.step:]
        buffer[:len(piece)] = piece
        return len(piece)


def fed_status(data, max_body=None, pieces=1, eof=True):
    """Feed data (in `pieces` parts) to a RequestParser, then EOF if asked:
    the HTTPError status, or None."""
    parser = wsgicore.RequestParser() if max_body is None else wsgicore.RequestParser(max_body)
    step = max(1, -(-len(data) // pieces))
    try:
        for start in range(0, len(data), step):
            parser.feed(data[start:start + step])
            while parser.next_request() is not None:
                pass
        if eof:
            parser.feed_eof()
    except wsgicore.HTTPError as err:
        return err.status
    return None
