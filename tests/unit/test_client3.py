"""client3.py, the load client of part 3, tested on the loopback.

Its targets here are a listening socket the test owns (to see exactly what
the clients send and how long they hold their connections) or webserver3g
started as a subprocess with PORT=0. Every run has a deadline.
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest
from instrument import client3, procs
from instrument.waiting import wait_for

CLIENT3 = client3.path()
REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
KEYS = {"host", "port", "clients", "conns_per_client", "connected", "failed", "sent"}
KEYS |= {"answered", "killed", "errors"}


def command(port, *args, host="127.0.0.1"):
    return [sys.executable, str(CLIENT3), "--host", host, "--port", str(port), *args]


def run(port, *args, timeout=60):
    return subprocess.run(
        command(port, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def waitpid_server(local_server):
    """webserver3g (reaps its children) on a free port; yields the port."""
    return local_server("part3/webserver3g.py").port


@pytest.fixture
def listener():
    """A listening socket nobody serves: the test accepts (or not) by hand."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # bound, never listening, closed again


def test_summary_line_counts_every_connection(waitpid_server):
    done = run(waitpid_server, "--max-clients", "4", "--max-conns", "3", "--hold", "0.2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"client3: 4 clients x 3 connections to 127.0.0.1:{waitpid_server}: "
        "12 connected, 0 failed\n"
    )


def test_json_summary(waitpid_server):
    done = run(waitpid_server, "--max-clients", "5", "--max-conns", "2", "--hold", "2", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == KEYS
    assert result["clients"] == 5 and result["conns_per_client"] == 2
    assert result["connected"] == result["sent"] == result["answered"] == 10
    assert result["failed"] == result["killed"] == 0
    assert result["errors"] == {}
    assert (result["host"], result["port"]) == ("127.0.0.1", waitpid_server)


def test_a_closed_port_is_reported_with_the_real_error_and_exit_0():
    port = closed_port()
    refused = "ConnectionRefusedError: [Errno 111] Connection refused"
    done = run(port, "--max-clients", "3", "--max-conns", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"client3: 3 clients x 2 connections to 127.0.0.1:{port}: 0 connected, 6 failed "
        f"(6 x {refused})\n"
    )
    result = json.loads(run(port, "--max-clients", "3", "--json", "--burst").stdout)
    assert result["connected"] == 0 and result["failed"] == 3
    assert result["errors"] == {refused: 3}


@pytest.mark.parametrize(
    "args",
    [
        ["--max-clients", "0"],
        ["--max-clients", "many"],
        ["--max-clients", "100000"],
        ["--max-conns", "1.5"],
        ["--port", "70000"],
        ["--hold", "-1"],
        ["--timeout", "nan"],
        ["--no-such-option"],
        ["positional"],
    ],
)
def test_bad_arguments_exit_2(args):
    done = subprocess.run(
        [sys.executable, str(CLIENT3), *args], capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 2
    assert "client3.py: error:" in done.stderr
    assert done.stdout == ""


def test_each_client_sends_the_request_and_holds_every_connection(listener):
    port = listener.getsockname()[1]
    client = subprocess.Popen(
        command(port, "--max-clients", "2", "--max-conns", "3", "--hold", "2", "--json"),
        stdout=subprocess.PIPE,
        text=True,
    )
    conns = []
    try:
        listener.settimeout(10)
        for _ in range(6):  # --max-conns is honoured: 2 clients x 3 connections
            conn, _ = listener.accept()
            conns.append(conn)
        for conn in conns:
            conn.settimeout(10)
            got = b""
            while not got.endswith(b"\r\n\r\n"):
                got += conn.recv(4096)
            assert got == REQUEST
        # every connection is still held open (no FIN) well into the --hold of 2 s
        assert select.select(conns, [], [], 0.7)[0] == []
        for conn in conns:
            assert conn.recv(4096) == b""  # then the client's FIN
        result = json.loads(client.communicate(timeout=20)[0])
    finally:
        client.kill()
        client.wait()
        for conn in conns:
            conn.close()
    assert result["connected"] == result["sent"] == 6
    assert result["answered"] == 0  # nobody answered


def test_burst_releases_every_request_at_once(listener):
    port = listener.getsockname()[1]
    client = subprocess.Popen(
        command(port, "--max-clients", "6", "--burst", "--settle", "1", "--hold", "0.5"),
        stdout=subprocess.DEVNULL,
    )
    conns = []
    try:
        listener.settimeout(10)
        for _ in range(6):
            conns.append(listener.accept()[0])
        all_connected = time.monotonic()
        arrivals = []
        for conn in conns:
            conn.settimeout(10)
            assert conn.recv(4096) == REQUEST
            arrivals.append(time.monotonic())
        # nothing was sent before the release (--settle after all connected) ...
        assert min(arrivals) - all_connected >= 0.6
        # ... and then everything at the same moment
        assert max(arrivals) - min(arrivals) < 0.5
        assert client.wait(20) == 0
    finally:
        client.kill()
        client.wait()
        for conn in conns:
            conn.close()


def test_a_full_backlog_is_a_timeout_and_the_run_still_ends():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)  # Linux queues one connection; further SYNs are dropped
        started = time.monotonic()
        done = run(sock.getsockname()[1], "--max-clients", "4", "--timeout", "1", "--hold", "0.2")
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "TimeoutError: timed out" in done.stdout
    assert re.search(r": \d connected, \d failed \(\d x TimeoutError: timed out\)\n$", done.stdout)
    assert took < 1 + 0.2 + 5


def test_a_client_that_overruns_is_killed_and_reaped(listener):
    port = listener.getsockname()[1]
    client = subprocess.Popen(
        command(port, "--max-clients", "2", "--hold", "2", "--timeout", "0.1", "--json"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        listener.settimeout(10)
        conns = [listener.accept()[0] for _ in range(2)]
        children = wait_for(lambda: len(kids := procs.children(procs.local_table(),
                                                                client.pid)) == 2 and kids,
                            5, 0.02, "client3's two clients")
        os.kill(children[0].pid, signal.SIGSTOP)  # one client freezes and never reports
        result = json.loads(client.communicate(timeout=20)[0])
        for conn in conns:
            conn.close()
    finally:
        client.kill()
        client.wait()
    assert result["killed"] == 1
    assert result["errors"] == {"no report: client killed after the deadline": 1}
    assert not os.path.exists(f"/proc/{children[0].pid}")  # reaped, not a zombie
