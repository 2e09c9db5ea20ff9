"""wire: the one raw HTTP client of the tests, the lab, the bench and the grader.

`exchange` sends bytes exactly as given (repeated headers, raw UTF-8, broken
framing) over a fresh connection and reads until one of three things ends
it, and says which, because they mean different things:

- `eof`: the server closed the connection (FIN);
- `timed_out`: the deadline passed with the connection still open;
- `until`: what the caller waited for arrived (a marker, or a predicate on
  the bytes); the connection may still be open, and `finish()` reads on
  to see whether an EOF follows.

A reset, a refused connect and other errors are kept too, never raised.
A `stop` event ends a slow exchange early from another thread (`stopped`).
`parse_response` turns the bytes into status, headers and body (interim
1xx answers skipped, chunked bodies decoded). `parallel` sends N clients at
once (threads released together by a barrier); `burst` connects N clients
first, lets the caller look (the server's children, the backlog) while all
are connected and silent, then `release`s every request at once (release
alone does that for sockets the caller connected itself).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PORT = 8888
CRLF = b"\r\n"


# ---------------------------------------------------------------- requests

def request(method: str, target: str | bytes, host: str | None = "localhost", headers=(),
            body: bytes = b"", version: str = "HTTP/1.1", close: bool = True) -> bytes:
    """A request as bytes. `target` may be bytes (raw UTF-8). `headers` are
    sent in order, repeated names included; Content-Length is added for a
    body unless the headers frame it already; `Connection: close` unless
    `close` is false or the headers say otherwise."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [method.encode() + b" " + target + b" " + version.encode()]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    names = {name.lower() for name, _ in headers}
    for name, value in headers:
        lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
    if body and not {"content-length", "transfer-encoding"} & names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if close and "connection" not in names:
        lines.append(b"Connection: close")
    return CRLF.join(lines) + CRLF + CRLF + body


def get(path: str = "/hello", host: str = "localhost", close: bool = True) -> bytes:
    return request("GET", path, host, close=close)


def chunked(body: bytes, size: int = 8000) -> bytes:
    """`body` in the chunked transfer-coding, in pieces of `size` bytes."""
    out = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
           for i in range(0, len(body), size)]
    return b"".join(out) + b"0\r\n\r\n"


# ---------------------------------------------------------------- responses

@dataclass
class Response:
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw_body: bytes = b""   # as it came after the head (chunked: still encoded)
    interim: list[int] = field(default_factory=list)  # 1xx statuses before it
    complete: bool = True   # the body was framed and all of it arrived
    version: str = ""       # of the status line, e.g. "HTTP/1.1"
    raw: bytes = b""        # every byte parse_response was given, head included

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")

    def json(self):
        import json

        return json.loads(self.body)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    body, rest = [], data
    while True:
        line, sep, rest = rest.partition(CRLF)
        if not sep:
            return b"".join(body), False
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            return b"".join(body), False
        if size == 0:
            return b"".join(body), True
        if len(rest) < size + 2:
            return b"".join(body) + rest[:size], False
        body.append(rest[:size])
        rest = rest[size + 2:]


def parse_response(data: bytes, head_request: bool = False) -> Response:
    """One response (after any 1xx). A HEAD answer's body is whatever came
    after its head: it should be empty. Not a response: status 0, the bytes
    as the body, complete False."""
    resp, rest = Response(raw=data), data
    while True:
        head, sep, rest = rest.partition(CRLF + CRLF)
        lines = head.split(CRLF)
        status_line = lines[0].decode("latin-1", "replace").split(" ", 2)
        if len(status_line) < 2 or not status_line[1].isdigit():
            resp.complete, resp.body = False, data
            return resp
        status = int(status_line[1])
        if 100 <= status < 200 and sep:
            resp.interim.append(status)
            continue
        resp.status, resp.version = status, status_line[0]
        resp.reason = status_line[2] if len(status_line) > 2 else ""
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers.append((name.strip(), value.strip()))
        break
    resp.raw_body = rest
    if not sep:
        resp.complete = False
    elif head_request or status in (204, 304):
        resp.body = rest
    elif "chunked" in (resp.header("Transfer-Encoding") or "").lower():
        resp.body, resp.complete = _dechunk(rest)
    elif resp.header("Content-Length") is not None:
        length = int(resp.header("Content-Length"))
        resp.body, resp.complete = rest[:length], len(rest) >= length
    else:
        resp.body = rest  # ends with the connection
    return resp


# ---------------------------------------------------------------- one connection

@dataclass
class Reply:
    """What one connection brought back, and how it ended."""

    data: bytes = b""
    eof: bool = False         # the server closed cleanly (FIN)
    timed_out: bool = False   # the deadline passed with the connection open
    matched: bool = False     # `until` held (reading stopped there)
    reset: bool = False       # the server reset the connection
    refused: bool = False     # nothing listens
    error: str = ""           # any other OSError, as "Type: text"
    connected: float | None = None  # seconds connect() took
    answered: float | None = None   # seconds from the start until `until` held
    elapsed: float = 0.0      # seconds from the start until reading stopped
    stopped: bool = False     # the caller's `stop` event ended it early
    local_port: int = 0
    sock: socket.socket | None = None  # still open (keep_open, and not closed by the server)
    head_request: bool = False
    _start: float = 0.0

    @property
    def closed(self) -> bool:
        return self.eof or self.reset

    @property
    def ok(self) -> bool:
        return not (self.error or self.refused)

    def response(self) -> Response:
        return parse_response(self.data, self.head_request)

    @property
    def status(self) -> int:
        return self.response().status

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self.response().headers

    @property
    def body(self) -> bytes:
        return self.response().body

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.response().header(name, default)

    def json(self):
        return self.response().json()

    def finish(self, timeout: float) -> Reply:
        """Read on after `until` matched: until EOF, a reset or `timeout` more
        seconds (then timed_out). Closes the socket."""
        if self.sock is not None:
            _read(self, self.sock, time.monotonic() + timeout, None)
            self.close()
        return self

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def summary(self) -> str:
        """'400 Bad Request', 'close, no answer', 'reset', 'no answer (open)', ..."""
        if self.data:
            line = self.data.split(CRLF, 1)[0].decode("latin-1", "replace")
            parts = line.split(" ", 1)
            text = parts[1] if len(parts) > 1 else line
            if self.data.startswith(b"HTTP/1.1 100") and (final := self.response().status):
                text = f"100 then {final}"
            if self.reset:
                text += " + reset"
            elif not self.eof:
                text += " (left open)"
            return text
        if self.refused:
            return "refused"
        if self.reset:
            return "reset, no answer"
        if self.eof:
            return "close, no answer"
        if self.timed_out:
            return "no answer (open)"
        return self.error or "?"


def _matcher(until) -> Callable[[bytes], bool] | None:
    if until is None or callable(until):
        return until
    return lambda data: until in data


STOP_SLICE = 0.05  # how often a wait looks at the caller's `stop` event


def connect(host: str, port: int = PORT, timeout: float = 5.0) -> socket.socket:
    """A connected socket (its timeout `timeout`), or the OSError of the
    connect raised. The one place in scripts/ and tests/ that connects."""
    return socket.create_connection((host, port), timeout=timeout)


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _read(reply: Reply, sock: socket.socket, deadline: float, match,
          stop: threading.Event | None = None) -> None:
    while True:
        if match is not None and match(reply.data):
            reply.matched = True
            reply.answered = time.monotonic() - reply._start
            break
        if _stopped(stop):
            reply.stopped = True
            break
        left = deadline - time.monotonic()
        if left <= 0:
            reply.timed_out = True
            break
        sock.settimeout(left if stop is None else min(left, STOP_SLICE))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if stop is not None:
                continue
            reply.timed_out = True
            break
        except ConnectionResetError:
            reply.reset = True
            break
        except OSError as exc:
            reply.error = f"receiving: {type(exc).__name__}: {exc}"
            break
        if not chunk:
            reply.eof = True
            break
        reply.data += chunk
    reply.elapsed = time.monotonic() - reply._start


def read(reply: Reply, sock: socket.socket, deadline: float, until=None,
         stop: threading.Event | None = None) -> Reply:
    """Read on `sock` into `reply` until `until` holds, EOF, a reset, `stop`
    or `deadline` (time.monotonic)."""
    _read(reply, sock, deadline, _matcher(until), stop)
    return reply


def _wait_readable(sock: socket.socket, seconds: float, stop: threading.Event | None) -> bool:
    """Wait up to `seconds`: True if the server answered or closed meanwhile
    (or `stop` was set)."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return False
        if _stopped(stop):
            return True
        step = left if stop is None else min(left, STOP_SLICE)
        if select.select([sock], [], [], step)[0]:
            return True


def exchange(host: str, port: int = PORT, data: bytes | list[bytes] = b"", timeout: float = 5.0,
             until: bytes | Callable[[bytes], bool] | None = None, keep_open: bool = False,
             shut_wr: bool = False, pause: float = 0.0, start: float | None = None,
             sock: socket.socket | None = None, stop: threading.Event | None = None,
             connect_timeout: float | None = None,
             on_send: Callable[[int], None] | None = None) -> Reply:
    """Connect (or use `sock`, already connected), send `data` (a list: pieces
    with `pause` seconds between them, stopping early if the server answers
    or closes), then read until `until` holds, EOF, or `timeout` s after the
    start. `start` (time.monotonic) is the common start of parallel clients.
    `keep_open`: a connection the server has not closed stays in `.sock`.
    `stop` (an Event set by another thread) ends the pauses and the reading
    early (`stopped`); `connect_timeout` bounds the connect alone (default
    `timeout`); `on_send(i)` is called after piece `i` went out."""
    reply = Reply(head_request=_is_head(data))
    reply._start = time.monotonic() if start is None else start
    deadline = time.monotonic() + timeout
    if sock is None:
        t = time.monotonic()
        try:
            sock = connect(host, port, timeout if connect_timeout is None else connect_timeout)
        except ConnectionRefusedError as exc:
            reply.refused, reply.error = True, str(exc)
            return reply
        except OSError as exc:
            reply.error = f"{type(exc).__name__}: {exc}"
            return reply
        reply.connected = time.monotonic() - t
    reply.local_port = sock.getsockname()[1]
    try:
        for i, piece in enumerate([data] if isinstance(data, bytes) else list(data)):
            if i and pause:
                wait = min(pause, deadline - time.monotonic())
                if wait <= 0 or _wait_readable(sock, wait, stop):
                    break
            sock.sendall(piece)
            if on_send is not None:
                on_send(i)
        if shut_wr:
            sock.shutdown(socket.SHUT_WR)
    except (ConnectionResetError, BrokenPipeError):
        reply.reset = True  # it may still have answered: read what came
    except OSError as exc:
        reply.error = f"sending: {type(exc).__name__}: {exc}"
    _read(reply, sock, deadline, _matcher(until), stop)
    if keep_open and not reply.closed and not reply.error:
        reply.sock = sock
    else:
        sock.close()
    return reply


def _is_head(data) -> bool:
    first = data if isinstance(data, bytes) else (data[0] if data else b"")
    return first.startswith(b"HEAD ")


# ---------------------------------------------------------------- many connections

def parallel(host: str, port: int, n: int, data: bytes, timeout: float = 10.0, until=None,
             keep_open: bool = False, during: Callable[[float], None] | None = None) -> list[Reply]:
    """`n` clients at once: threads released together by a barrier, each
    connecting, sending and reading; `elapsed` and `answered` count from the
    common start. `during(start)` runs in the calling thread meanwhile."""
    barrier = threading.Barrier(n + 1)
    replies: list[Reply | None] = [None] * n
    start = [0.0]

    def one(i):
        barrier.wait()
        replies[i] = exchange(host, port, data, timeout, until, keep_open, start=start[0])

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    start[0] = time.monotonic()
    barrier.wait()
    if during:
        during(start[0])
    for t in threads:
        t.join(timeout + 15)
    return [r or Reply(error="thread did not finish") for r in replies]


def burst(host: str, port: int, n: int, data: bytes, timeout: float = 10.0, until=None,
          keep_open: bool = False, connected: Callable[[list[socket.socket]], None] | None = None
          ) -> list[Reply]:
    """Connect `n` clients first (sending nothing), call `connected(socks)`
    while all are connected and silent, then `release` them."""
    socks = []
    try:
        for _ in range(n):
            socks.append(connect(host, port, timeout))
        if connected:
            connected(socks)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return release(socks, data, timeout, until, keep_open)


def release(socks: list[socket.socket], data: bytes, timeout: float = 10.0, until=None,
            keep_open: bool = False) -> list[Reply]:
    """Send `data` on every connected socket at the same moment (a barrier)
    and read each answer; times count from the release."""
    n = len(socks)
    barrier = threading.Barrier(n + 1)
    replies: list[Reply | None] = [None] * n
    start = [0.0]

    def one(i):
        barrier.wait()
        replies[i] = exchange("", 0, data, timeout, until, keep_open, start=start[0],
                              sock=socks[i])

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    start[0] = time.monotonic()
    barrier.wait()
    for t in threads:
        t.join(timeout + 15)
    return [r or Reply(error="thread did not finish") for r in replies]


def finish_all(replies: list[Reply], timeout: float) -> list[Reply]:
    """Reply.finish for every kept-open reply at once (threads): each ends
    with an EOF, a reset or a timeout after `timeout` s."""
    threads = [threading.Thread(target=r.finish, args=(timeout,), daemon=True) for r in replies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return replies
