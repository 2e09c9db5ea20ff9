"""The article's servers (part 1 and part 3), started for real on this machine.

No containers: each test starts one server as a subprocess on 127.0.0.1
with PORT=0 (the kernel picks a free port; the server prints it), short
sleeps, and a deadline on every wait (the `local_server` fixture,
instrument.local). The server and its children are killed when the test
ends. Linux only: children and zombies are read from /proc.
"""

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from instrument import client3 as client3_tool
from instrument import wire
from instrument.local import UNUSED_UID, python_for
from instrument.waiting import poll, wait_for

SERVICES = Path(__file__).resolve().parents[2] / "services"
GET = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\n\r\nHello, World!\n"


def connect(port, timeout=5.0):
    return wire.connect("127.0.0.1", port, timeout=timeout)


def read_until_eof(sock, timeout=5.0):
    """Everything until the server closes; fails the test if it does not in time."""
    reply = wire.exchange("127.0.0.1", 0, timeout=timeout, sock=sock, keep_open=True)
    assert reply.eof, f"no EOF within {timeout} s: {reply.summary()}"
    return reply.data


def client3(port, *args, timeout=60):
    done = client3_tool.run("--host", "127.0.0.1", "--port", str(port), *args, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


def pids(procs):
    return {p.pid for p in procs}


# ---------------------------------------------------------------- part 1


@pytest.mark.parametrize(
    "request_bytes",
    [GET, b"garbage\r\n\r\n", b"\x00\xffNOT HTTP AT ALL", b"DELETE /nothing HTTP/9.9\r\n\r\n"],
)
def test_c1_c2_webserver1_answers_anything_with_hello_world(local_server, request_bytes):
    web = local_server("part1/webserver1.py")
    with connect(web.port) as sock:
        sock.sendall(request_bytes)
        assert read_until_eof(sock) == RESPONSE
    wait_for(lambda: request_bytes.decode(errors="replace") in web.stdout(), 5, 0.05,
             "the request in the server's output")


# ---------------------------------------------------------------- part 3: iterative


def test_c10_webserver3a_serves_one_client_at_a_time(local_server):
    web = local_server("part3/webserver3a.py")
    with connect(web.port) as first, connect(web.port) as second:
        second.sendall(GET)  # the server is still stuck on `first`, which sent nothing
        second.settimeout(0.7)
        with pytest.raises(TimeoutError):
            second.recv(4096)
        first.sendall(GET)
        assert read_until_eof(first) == RESPONSE
        assert read_until_eof(second) == RESPONSE  # only now


def test_c11_c12_c13_webserver3b_queues_the_second_client(local_server):
    web = local_server("part3/webserver3b.py", SLEEP="1.5")
    with connect(web.port) as first:
        first.sendall(GET)
        first.settimeout(5)
        assert first.recv(4096) == RESPONSE  # at once; EOF only after the sleep
        answered_first = time.monotonic()

        started = time.monotonic()
        with connect(web.port) as second:
            connect_took = time.monotonic() - started
            local_port = second.getsockname()[1]
            second.sendall(GET)
            assert read_until_eof(second, timeout=10) == RESPONSE
            answered_second = time.monotonic()
    # C12: the kernel completed the handshake while the server slept
    assert connect_took < 0.5
    # C11: nothing for the second client until the first one's sleep was over
    assert answered_second - answered_first >= 1.3
    # C13: the client got an ephemeral port from the kernel; the server has its own
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= local_port <= high and local_port != web.port


# ---------------------------------------------------------------- part 3: fork


def test_c14_c15_webserver3c_serves_many_clients_at_once(local_server):
    web = local_server("part3/webserver3c.py", SLEEP="3")
    socks = [connect(web.port) for _ in range(10)]
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(GET)
        for sock in socks:
            sock.settimeout(5)
            assert sock.recv(4096) == RESPONSE
        assert time.monotonic() - started < 2.5  # nobody waited for anyone's sleep
        children = wait_for(lambda: len(web.children()) == 10 and web.children(), 5, 0.05,
                            "10 children while they sleep")
        lines = re.findall(r"Child PID: (\d+)\. Parent PID (\d+)", web.stdout())
        assert len(lines) == 10
        assert {int(pid) for pid, _ in lines} == pids(children)
        assert {int(ppid) for _, ppid in lines} == {web.pid}  # C15
    finally:
        for sock in socks:
            sock.close()


def test_c16_c18_c19_webserver3d_no_eof_and_a_zombie(local_server):
    web = local_server("part3/webserver3d.py")
    with connect(web.port) as sock:
        sock.sendall(GET)
        sock.settimeout(5)
        assert sock.recv(4096) == RESPONSE  # curl prints the body...
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):  # ...and then waits for an EOF that never comes
            sock.recv(4096)
        zombies = wait_for(web.zombies, 5, 0.05, "a zombie")
        assert len(zombies) == 1  # C18: the child that served us is <defunct>
        os.kill(zombies[0].pid, signal.SIGKILL)  # C19: kill -9 does not remove a zombie
        still = poll(lambda: pids(web.zombies()) != {zombies[0].pid}, 0.5, 0.05)
        assert not still, "the zombie is gone after kill -9"
    assert "Connections held open by the parent: 1" in web.stdout()


def test_c17_webserver3d_dies_of_emfile(local_server):
    # The article's `ulimit -n 256` scaled down to 64 so the test is quick.
    web = local_server("part3/webserver3d.py", limits={resource.RLIMIT_NOFILE: (64, 64)})
    client3(web.port, "--max-clients", "80", "--hold", "1", "--json")
    assert web.wait(10) == 1
    assert web.stderr().rstrip().endswith("OSError: [Errno 24] Too many open files")
    assert "Traceback (most recent call last)" in web.stderr()


def test_c20_webserver3d_dies_when_fork_fails_with_eagain(unused_uid, local_server):
    # The article's `ulimit -u 400` scaled down to 20. RLIMIT_NPROC never
    # applies to root, so the server runs as an unused uid; zombies count.
    python, why = python_for(UNUSED_UID)
    if python is None:
        pytest.skip(f"needs root and a Python 3.11+ that another uid may run ({why})")
    busy = [pid for pid in os.listdir("/proc") if pid.isdigit() and _uid(pid) == UNUSED_UID]
    assert busy == [], f"uid {UNUSED_UID} is in use"
    limits = {resource.RLIMIT_NPROC: (20, 20)}
    web = local_server("part3/webserver3d.py", limits=limits, uid=UNUSED_UID, python=python)
    client3(web.port, "--max-clients", "40", "--hold", "1", "--json")
    assert web.wait(10) == 1
    assert (
        web.stderr()
        .rstrip()
        .endswith("BlockingIOError: [Errno 11] Resource temporarily unavailable")
    )
    assert "pid = os.fork()" in web.stderr()  # the failing line


def _uid(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


# ---------------------------------------------------------------- part 3: SIGCHLD


def test_c21_webserver3e_dies_of_eintr_after_one_request(local_server):
    web = local_server("part3/webserver3e.py", SLEEP="0.3")
    with connect(web.port) as sock:
        sock.sendall(GET)
        assert read_until_eof(sock) == RESPONSE
    assert web.wait(5) == 1
    assert web.stderr().rstrip().endswith("InterruptedError: [Errno 4] Interrupted system call")
    assert re.search(r"Child \d+ terminated with status 0", web.stdout())  # reaped first


def test_c21_webserver3e_with_python_accept_survives_pep_475(local_server):
    web = local_server("part3/webserver3e.py", SLEEP="0.3", ACCEPT="python")
    for _ in range(3):
        with connect(web.port) as sock:
            sock.sendall(GET)
            assert read_until_eof(sock) == RESPONSE
    # Each child's SIGCHLD came while the parent sat in accept(). Three
    # children reaped, as a rule; on a loaded machine two exits can come
    # close enough for one signal (C23): that child stays a zombie.
    def ended():
        reaped = web.stdout().count("terminated with status 0")
        zombies = len(web.zombies())
        return reaped >= 1 and reaped + zombies == 3 and (reaped, zombies)

    reaped, zombies = wait_for(ended, 5, 0.05, "three children reaped, or reaped and zombies")
    print(f"{reaped} children reaped, {zombies} zombie(s)")
    assert web.proc.poll() is None, web.stderr()
    assert web.zombies() == []


@pytest.mark.parametrize("accept", ["libc", "python"])
def test_c22_webserver3f_one_request_at_a_time_no_zombie_no_crash(local_server, accept):
    web = local_server("part3/webserver3f.py", ACCEPT=accept)
    for _ in range(3):
        with connect(web.port) as sock:
            sock.sendall(GET)
            assert read_until_eof(sock) == RESPONSE
        wait_for(lambda: web.children() == [], 5, 0.05, "no child left")
    assert web.proc.poll() is None, web.stderr()


def test_c23_webserver3f_burst_leaves_zombies(local_server):
    web = local_server("part3/webserver3f.py")
    result = json.loads(
        client3(web.port, "--max-clients", "64", "--burst", "--hold", "2", "--json").stdout
    )
    assert result["answered"] == 64

    def settled():  # every child of the burst has exited: reaped, or a zombie
        kids = web.children()
        reaped = web.stdout().count("terminated with status")
        return all(p.zombie for p in kids) and reaped + len(kids) == 64 and kids

    zombies = poll(settled, 10, 0.05)
    assert zombies, "a burst of 64 exits should outrun one wait() per handler call"
    assert len(zombies) >= 8, f"only {len(zombies)} of 64 left as zombies"
    assert web.proc.poll() is None, web.stderr()


@pytest.mark.parametrize("accept", ["libc", "python"])
def test_c24_webserver3g_burst_leaves_no_zombie(local_server, accept):
    web = local_server("part3/webserver3g.py", ACCEPT=accept)
    result = json.loads(
        client3(web.port, "--max-clients", "64", "--burst", "--hold", "2", "--json").stdout
    )
    assert result["answered"] == 64
    wait_for(lambda: web.children() == [], 5, 0.05, "no child left")
    assert web.stdout().count("terminated with status 0") == 64
    assert web.proc.poll() is None, web.stderr()


# ---------------------------------------------------------------- settings and Ctrl-C

STEPS = ["part1/webserver1.py"] + [f"part3/webserver3{step}.py" for step in "abcdefg"]
SLEEPERS = [f"part3/webserver3{step}.py" for step in "bcefg"]
BAD = (
    [(step, "PORT", "http") for step in STEPS]
    + [(step, "REQUEST_QUEUE_SIZE", "-5") for step in STEPS[:2]]
    + [("part3/webserver3b.py", "SLEEP", value) for value in ("abc", "-1", "1e3", "nan", "")]
    + [(step, "SLEEP", "abc") for step in SLEEPERS[1:]]
    + [(f"part3/webserver3{step}.py", "ACCEPT", "rust") for step in "efg"]
)
MEANING = {
    "PORT": "a port number",
    "REQUEST_QUEUE_SIZE": "a whole number",
    "SLEEP": "a number of seconds",
    "ACCEPT": "libc or python",
}


@pytest.mark.parametrize(("step", "name", "value"), BAD)
def test_a_bad_setting_is_one_line_and_exit_2(step, name, value):
    done = subprocess.run(
        [sys.executable, str(SERVICES / step)],
        env={**os.environ, "PORT": "0", name: value},
        capture_output=True,
        text=True,
        timeout=10,
    )
    program = Path(step).name
    assert done.returncode == 2
    assert done.stderr == f"{program}: {name} must be {MEANING[name]}, got {value!r}\n"
    assert done.stdout == ""


@pytest.mark.parametrize("step", STEPS)
def test_ctrl_c_stops_a_server_without_a_traceback(local_server, step):
    web = local_server(step)
    # Ctrl-C at a server waiting for clients (instrument.local `asleep`): one
    # sent as it is about to block in accept() waits for the next client
    wait_for(web.asleep, 5, 0.01, "the server to wait for a client")
    web.proc.send_signal(signal.SIGINT)
    assert web.wait(5) == 130
    assert web.stderr().strip() == f"{Path(step).name}: stopped"


def test_the_response_has_no_content_length_and_crlf_lines(local_server):
    web = local_server("part3/webserver3a.py")
    with connect(web.port) as sock:
        sock.sendall(GET)
        head, _, body = read_until_eof(sock).partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK"  # the end of the body is the end of the connection
    assert body == b"Hello, World!\n"
