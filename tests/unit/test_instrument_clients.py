"""instrument.clients against a tiny loopback server: the slow client really
drips (one byte an interval, each in its own thread), stops, sees an answer
or a close; hold_silent stays silent; open_many reports real errors (EMFILE
from a lowered descriptor limit, ECONNREFUSED); answer_rate counts answers,
connections and errors."""

from __future__ import annotations

import os
import resource
import socket
import threading
import time

import pytest
from instrument import clients, wire

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"


class Tiny:
    """A loopback server: accepts, records every byte with its arrival time,
    and answers a complete head (ending in an empty line) unless `hold`;
    with `close_after` it closes after that many answers on a connection."""

    def __init__(self, hold: bool = False, close_after: int = 1, close_at_once: bool = False):
        self.hold, self.close_after, self.close_at_once = hold, close_after, close_at_once
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.received: list[list[tuple[float, bytes]]] = []  # per connection
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
                mine: list[tuple[float, bytes]] = []
                self.received.append(mine)
            threading.Thread(target=self._one, args=(conn, mine), daemon=True).start()

    def _one(self, conn, mine):
        if self.close_at_once:
            conn.close()
            return
        data, answered = b"", 0
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                mine.append((time.monotonic(), chunk))
                data += chunk
                while not self.hold and b"\r\n\r\n" in data:
                    _, _, data = data.partition(b"\r\n\r\n")
                    conn.sendall(ANSWER)
                    answered += 1
                    if answered >= self.close_after:
                        conn.close()
                        return
        except OSError:
            return

    def bytes_of(self, i: int) -> bytes:
        return b"".join(chunk for _, chunk in self.received[i])

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def tiny():
    made = []

    def make(**kw):
        made.append(Tiny(**kw))
        return made[-1]

    yield make
    for t in made:
        t.close()


def _refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- slow clients

def test_a_slow_client_sends_one_byte_an_interval_each_in_its_own_thread(tiny):
    server = tiny(hold=True)
    t0 = time.monotonic()
    slow = clients.slow_clients("127.0.0.1", server.port, n=3, data=b"abcdef", interval=0.2)
    assert time.monotonic() - t0 < 1.0, "slow_clients waits for the first byte only"
    assert len(slow) == 3 and all(c.started.is_set() and c.waiting for c in slow)
    time.sleep(0.7)
    clients.stop_all(slow)
    assert all(c.done.is_set() and c.stopped and c.reply.stopped for c in slow)
    assert len(server.received) == 3
    for i in range(3):
        arrivals = server.received[i]
        assert all(len(chunk) == 1 for _, chunk in arrivals), arrivals  # one byte at a time
        assert 3 <= len(arrivals) <= 5, arrivals  # ~0.7 s / 0.2 s, started at 0
        gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:], strict=False)]
        assert min(gaps) >= 0.15, gaps
        assert server.bytes_of(i) == b"abcdef"[:len(arrivals)]
    assert {c.sent for c in slow} <= {3, 4, 5}


def test_the_default_slow_head_is_a_complete_get_that_takes_long_to_send():
    head = clients.slow_head("svc")
    assert head.startswith(b"GET /hello HTTP/1.1\r\nHost: svc\r\n") and head.endswith(b"\r\n\r\n")
    assert len(head) >= 60
    assert clients.SlowClient("svc").data == head


def test_a_slow_client_that_sends_everything_reads_the_answer(tiny):
    server = tiny()
    slow = clients.slow_clients("127.0.0.1", server.port, data=b"GET / HTTP/1.1\r\n\r\n",
                                interval=0.01, timeout=5)[0]
    reply = slow.wait(5)
    assert slow.done.is_set() and not slow.waiting
    assert reply.status == 200 and reply.eof and not reply.stopped
    assert server.bytes_of(0) == b"GET / HTTP/1.1\r\n\r\n"


def test_a_slow_client_stops_dripping_when_the_server_closes_and_times_out(tiny):
    server = tiny(close_at_once=True)
    slow = clients.slow_clients("127.0.0.1", server.port, data=b"abcdef", interval=0.2)[0]
    reply = slow.wait(3)
    assert reply.closed and not reply.data and slow.sent < 6  # FIN, or RST for a byte sent after it
    held = tiny(hold=True)
    slow = clients.slow_clients("127.0.0.1", held.port, data=b"abcdef", interval=0.2,
                                timeout=0.5)[0]
    reply = slow.wait(3)
    assert reply.timed_out and not reply.stopped and 0.45 <= reply.elapsed <= 1.5


def test_a_refused_slow_client_ends_at_once_with_the_refusal():
    t0 = time.monotonic()
    slow = clients.slow_clients("127.0.0.1", _refused_port(), n=2, interval=0.2)
    assert time.monotonic() - t0 < 2
    assert all(c.done.is_set() and c.reply.refused and c.sent == 0 for c in slow)


def test_a_reconnecting_slow_client_opens_a_new_connection_when_the_server_gives_up(tiny):
    server = tiny(close_at_once=True)
    slow = clients.slow_clients("127.0.0.1", server.port, data=b"abc", interval=0.05,
                                reconnect=True)[0]
    time.sleep(0.5)
    slow.stop()
    assert slow.reconnects >= 2 and len(server.received) >= 3


# ---------------------------------------------------------------- silent and many

def test_hold_silent_connects_and_sends_nothing(tiny):
    server = tiny()
    socks = clients.hold_silent("127.0.0.1", server.port, n=4)
    try:
        wire_wait = time.monotonic() + 2
        while len(server.received) < 4 and time.monotonic() < wire_wait:
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(server.received) == 4 and all(not r for r in server.received)
    finally:
        clients.close_all(socks)
    with pytest.raises(ConnectionRefusedError):
        clients.hold_silent("127.0.0.1", _refused_port(), n=2)


def test_open_many_opens_at_once_and_names_each_failure(tiny):
    server = tiny(hold=True)
    socks, errors = clients.open_many("127.0.0.1", server.port, n=20, timeout=3,
                                      data=b"GET / HTTP/1.1\r\n")
    try:
        assert len(socks) == 20 and errors == []
        time.sleep(0.2)
        assert sorted(server.bytes_of(i) for i in range(20)) == [b"GET / HTTP/1.1\r\n"] * 20
    finally:
        clients.close_all(socks)
    socks, errors = clients.open_many("127.0.0.1", _refused_port(), n=5, timeout=2)
    assert socks == [] and errors == ["ECONNREFUSED"] * 5


def test_open_many_reports_emfile_when_this_process_runs_out_of_descriptors(tiny):
    """A real EMFILE: the soft limit lowered so that only a few sockets fit."""
    server = tiny(hold=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    socks: list = []
    # room for ten new descriptors below the limit (threads and the selector
    # may take a few of them). Not the lowest free one + 10: descriptors this
    # worker holds above a hole (its engine connections, its relay's) would
    # leave no room at all
    in_use = {int(fd) for fd in os.listdir("/proc/self/fd")}
    limit = next(n for n in range(soft) if n - len({fd for fd in in_use if fd < n}) == 10)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        socks, errors = clients.open_many("127.0.0.1", server.port, n=40, timeout=3)
    finally:
        clients.close_all(socks)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert 0 < len(socks) < 40 and "EMFILE" in errors, (len(socks), errors[:5])
    assert len(socks) + len(errors) == 40


# ---------------------------------------------------------------- answer_rate

def test_answer_rate_counts_answers_connections_and_keep_alive(tiny):
    server = tiny(close_after=1)
    got = clients.answer_rate("127.0.0.1", server.port, seconds=0.5, clients=2)
    assert set(got) >= {"answered", "errors", "seconds", "rps"}
    assert got["answered"] > 10 and got["errors"] == 0 and got["seconds"] == 0.5
    assert got["rps"] == pytest.approx(got["answered"] / 0.5)
    # one request per connection (each client's last one may be cut by the end of the run)
    assert 0 <= got["connections"] - got["answered"] <= 2
    assert 0 < got["p50"] < 0.5
    kept = tiny(close_after=10)
    got = clients.answer_rate("127.0.0.1", kept.port, seconds=0.5, clients=2, per_connection=10)
    assert got["answered"] > 10 and got["connections"] * 5 <= got["answered"]
    first = kept.bytes_of(0)
    assert first.count(b"GET /hello HTTP/1.1") == 10
    assert first.count(b"Connection: close") == 1  # only the last request of a connection


def test_answer_rate_counts_refused_connects_and_unanswered_requests_as_errors(tiny):
    got = clients.answer_rate("127.0.0.1", _refused_port(), seconds=0.3, clients=2)
    assert got["answered"] == 0 and got["errors"] > 2 and got["p50"] is None
    silent = tiny(hold=True)
    got = clients.answer_rate("127.0.0.1", silent.port, seconds=1.0, clients=1, timeout=0.2,
                              data=wire.get())
    assert got["answered"] == 0 and got["errors"] >= 2 and got["connections"] >= 2
