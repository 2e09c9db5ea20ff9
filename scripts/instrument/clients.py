"""clients: the kinds of client the lessons need, built on instrument.wire.

The tests, the lab, the bench and the grader use these and keep no copies:

- `slow_clients`: connections that send a request head one byte every
  `interval` seconds (the client that holds a worker per connection, the
  drip-fed head a REQUEST_TIMEOUT ends), each in its own thread;
- `hold_silent`: connections made and left silent;
- `answer_rate`: normal clients asking GET /hello for a while, optionally
  many requests per connection (keep-alive): answers per second;
- `open_many`: many connections opened at once, with the errors (an errno
  name such as EMFILE or ECONNREFUSED) of those that failed.

Every connection goes through wire.connect / wire.exchange.
"""

from __future__ import annotations

import errno
import socket
import threading
import time

from instrument import wire

PORT = wire.PORT
SLOW_CONNECT = 5.0  # seconds a slow client waits for its connect
SLOW_PAD = 40       # bytes of X-Slow value in the default slow head: ~50 s at a byte a second


def slow_head(host: str = "localhost", pad: int = SLOW_PAD) -> bytes:
    """A GET /hello head that needs `pad` + ~50 bytes before it is complete."""
    return (b"GET /hello HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Slow: " + b"s" * pad
            + b"\r\n\r\n")


# ---------------------------------------------------------------- slow clients

class SlowClient:
    """One connection that sends `data` one byte every `interval` seconds in
    its own thread, until the server answers or closes, every byte is sent
    (then it reads the answer), `timeout` seconds have passed since the
    start, or `stop()`.

    `.done` (threading.Event) is set when it ended; `.reply` is then the
    wire.Reply of its (last) connection: what the server sent, and how it
    ended (eof, reset, timed_out, stopped; `elapsed` from the connect).
    `.sent` counts the bytes sent. With `reconnect`, a connection the server
    answered or closed is replaced by a new one that starts `data` again
    (`.reconnects` counts them), until stop() or the timeout."""

    def __init__(self, host: str, port: int = PORT, data: bytes | None = None,
                 interval: float = 1.0, timeout: float = 30.0, reconnect: bool = False):
        self.host, self.port, self.interval, self.timeout = host, port, interval, timeout
        self.data = slow_head(host) if data is None else data
        self.reconnect = reconnect
        self.done = threading.Event()
        self.started = threading.Event()  # the first byte went out (or it ended without)
        self.reply: wire.Reply | None = None
        self.sent = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"slow client to {host}:{port}")

    def start(self) -> SlowClient:
        self._thread.start()
        return self

    def _count(self, i: int) -> None:
        self.sent += 1
        self.started.set()

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                left = deadline - time.monotonic()
                reply = wire.exchange(self.host, self.port,
                                      [self.data[i:i + 1] for i in range(len(self.data))],
                                      timeout=max(left, 0.0), pause=self.interval,
                                      stop=self._stop,
                                      connect_timeout=max(0.01, min(SLOW_CONNECT, left)),
                                      on_send=self._count)
                self.reply = reply
                if (not self.reconnect or reply.stopped or reply.timed_out
                        or time.monotonic() >= deadline or self._stop.is_set()):
                    break
                self.reconnects += 1
                if not reply.ok:  # refused or failed: do not spin
                    self._stop.wait(min(self.interval, max(0.0, deadline - time.monotonic())))
        finally:
            self.started.set()
            self.done.set()

    @property
    def waiting(self) -> bool:
        """Still sending its head, unanswered (the server holds it open)."""
        return self.started.is_set() and not self.done.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self, wait: float = 5.0) -> wire.Reply | None:
        """End it now (closes the connection); returns the reply."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(wait)
        return self.reply

    def wait(self, timeout: float | None = None) -> wire.Reply | None:
        """Until it ends by itself (answered, closed, timed out): the reply."""
        self.done.wait(timeout)
        return self.reply


def slow_clients(host: str, port: int = PORT, n: int = 1, data: bytes | None = None,
                 interval: float = 1.0, timeout: float = 30.0,
                 reconnect: bool = False) -> list[SlowClient]:
    """`n` SlowClients, started; returns once every one has sent its first
    byte (or ended without: refused, say; see `.reply`)."""
    clients = [SlowClient(host, port, data, interval, timeout, reconnect).start()
               for _ in range(n)]
    until = time.monotonic() + min(timeout, SLOW_CONNECT) + 5
    for c in clients:
        c.started.wait(max(0.0, until - time.monotonic()))
    return clients


def stop_all(clients: list[SlowClient], wait: float = 5.0) -> None:
    """Stop every client at once, then wait (up to `wait` s) for their threads."""
    for c in clients:
        c._stop.set()
    until = time.monotonic() + wait
    for c in clients:
        c.stop(max(0.0, until - time.monotonic()))


# ---------------------------------------------------------------- silent and many connections

def hold_silent(host: str, port: int = PORT, n: int = 1,
                timeout: float = 5.0) -> list[socket.socket]:
    """`n` connections, one after the other, each connected and silent. A
    connect that fails closes the others and raises its OSError."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(wire.connect(host, port, timeout))
    except BaseException:
        close_all(socks)
        raise
    return socks


def error_name(exc: BaseException) -> str:
    """'EMFILE', 'ECONNREFUSED', 'timeout', ...: how a failed connect is counted."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


def open_many(host: str, port: int = PORT, n: int = 100, timeout: float = 5.0,
              data: bytes = b"") -> tuple[list[socket.socket], list[str]]:
    """`n` connections opened at once (a thread each), within `timeout`
    seconds in all: (the open sockets, the error names of those that failed,
    e.g. ['EMFILE', 'timeout']). `data`, if given, is sent on each at once."""
    deadline = time.monotonic() + timeout
    socks: list[socket.socket] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one():
        try:
            sock = wire.connect(host, port, max(0.1, deadline - time.monotonic()))
            if data:
                sock.sendall(data)
        except OSError as exc:
            with lock:
                errors.append(error_name(exc))
            return
        with lock:
            socks.append(sock)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + 1))
    with lock:
        missing = n - len(socks) - len(errors)
        return list(socks), errors + ["unfinished"] * missing


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# ---------------------------------------------------------------- answers per second

def _complete(data: bytes) -> bool:
    return wire.parse_response(data).complete


def answer_rate(host: str, port: int = PORT, seconds: float = 2.0, clients: int = 4,
                per_connection: int = 1, data: bytes | None = None,
                timeout: float = 1.0) -> dict:
    """`clients` threads asking for `seconds`, `per_connection` requests on
    a connection (a server that closes earlier gets a new connection), each
    waiting up to `timeout` s for its answer. `data` is the request (default
    GET /hello, keep-alive but for the last request of a connection, which
    says Connection: close).

    {answered, errors (connects refused or failed, requests unanswered),
    seconds, rps (answers per second), p50 (median answer time, s, or None),
    connections}."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    times: list[float] = []
    counts = {"errors": 0, "connections": 0}

    def request(i: int) -> bytes:
        if data is not None:
            return data
        return wire.request("GET", "/hello", host, close=i == per_connection - 1)

    def one():
        mine, errors, conns = [], 0, 0
        while time.monotonic() < deadline:
            try:
                sock = wire.connect(host, port, timeout)
            except OSError:
                errors += 1
                time.sleep(0.05)
                continue
            conns += 1
            with sock:
                for i in range(per_connection):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    got = wire.exchange(host, port, request(i), timeout=min(timeout, left),
                                        until=_complete, sock=sock, keep_open=True)
                    if not got.matched:
                        cut_short = got.timed_out and left <= timeout  # the run ended, not it
                        errors += not cut_short
                        break
                    mine.append(got.elapsed)
                    if got.sock is None or (got.header("Connection") or "").lower() == "close":
                        break
        with lock:
            times.extend(mine)
            counts["errors"] += errors
            counts["connections"] += conns

    threads = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + timeout + 5)
    times.sort()
    return {"answered": len(times), "errors": counts["errors"], "seconds": seconds,
            "rps": len(times) / seconds if seconds else 0.0,
            "p50": times[len(times) // 2] if times else None,
            "connections": counts["connections"]}
