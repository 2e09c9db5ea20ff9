"""webserver4a (pre-fork) and webserver4b (pre-forked event loops), started
for real on this machine as the user runs them (`local_server`, as the other
real-server tests): they serve; the settings are read and checked in one
place (cli.Option); 4b keeps a connection alive, also when the application
streams (a chunked response); the shared arbiter (services/part4/arbiter.py)
drains on SIGTERM and replaces a worker that was killed; accept() out of
descriptors backs off and recovers.
"""

import itertools
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from instrument import procs, wire
from instrument.waiting import wait_for

HERE = Path(__file__).resolve().parent
PART4 = HERE.parents[1] / "services" / "part4"
SERVERS = ["webserver4a", "webserver4b"]
HELLO = b"Hello world from a simple WSGI application!\n"


def start(local_server, server, spec="wsgiapp:app", **env):
    env.setdefault("WORKERS", 2)
    return local_server(f"part4/{server}.py", spec, **env)


def get(path, close=True):
    return wire.request("GET", path, "127.0.0.1", close=close)


def complete(data):
    return wire.parse_response(data).complete


def workers(srv):
    return sorted(p.pid for p in srv.children())


def one_answer(port, path="/hello"):
    reply = wire.exchange("127.0.0.1", port, get(path), timeout=10)
    assert reply.eof, reply.summary()
    return reply.response()


# ---------------------------------------------------------------- serving


@pytest.mark.parametrize("server", SERVERS)
def test_it_serves_with_workers_workers_and_one_arbiter(local_server, server):
    srv = start(local_server, server, WORKERS=3)
    assert "with 3 pre-forked " in srv.stdout()
    # the PID line is the arbiter's next print: it may land a moment after the first
    wait_for(lambda: f"Arbiter PID: {srv.pid}" in srv.stdout(), 15, 0.05, "the arbiter's PID line")
    wait_for(lambda: len(workers(srv)) == 3, 15, 0.05, "three workers")
    for _ in range(5):
        response = one_answer(srv.port)
        assert (response.status, response.body) == (200, HELLO)
    assert srv.wait_for_log(r'"GET /hello HTTP/1.1" 200 44', 15)  # the access lines, flushed
    assert "died" not in srv.stderr()


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("name, value", [
    ("WORKERS", "2.5"), ("WORKERS", "-1"), ("WORKERS", "0"), ("WORKERS", "many"),
    ("PORT", "http"), ("ACCESS_LOG_BUFFER", "-5"), ("REQUEST_TIMEOUT", "soon"),
])
def test_a_bad_setting_is_one_line_naming_it_and_exit_2(server, name, value):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"HOST": "127.0.0.1", "PORT": "0", name: value})
    result = subprocess.run([sys.executable, f"{server}.py", "wsgiapp:app"], cwd=PART4, env=env,
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result
    assert result.stderr.startswith(f"{server}.py: {name} must be ")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith(f"got {value!r}\n")
    assert result.stdout == ""


def test_keep_alive_is_a_setting_of_webserver4b_only(local_server):
    test_a_bad_setting_is_one_line_naming_it_and_exit_2("webserver4b", "KEEP_ALIVE", "soon")
    srv = start(local_server, "webserver4a", KEEP_ALIVE="soon")  # not one of 4a's: ignored
    assert one_answer(srv.port).status == 200


# ---------------------------------------------------------------- keep-alive (4b)


def test_webserver4b_answers_requests_one_after_another_on_one_connection(local_server):
    srv = start(local_server, "webserver4b")
    sock = wire.connect("127.0.0.1", srv.port, 10)
    try:
        for _ in range(3):
            reply = wire.exchange("127.0.0.1", 0, get("/hello", close=False), timeout=10,
                                  sock=sock, keep_open=True, until=complete)
            assert not reply.eof and reply.status == 200 and reply.body == HELLO
            assert reply.header("connection") is None  # HTTP/1.1: open by default
    finally:
        sock.close()


def test_webserver4b_keeps_the_connection_when_the_application_streams(local_server):
    """A body of unknown length goes chunked, so the connection stays open;
    webserver4a, one request per connection, ends such a body with the close."""
    srv = start(local_server, "webserver4b", "wsgi_test_apps:app", PYTHONPATH=HERE)
    sock = wire.connect("127.0.0.1", srv.port, 10)
    try:
        streamed = wire.exchange("127.0.0.1", 0, get("/stream", close=False), timeout=10,
                                 sock=sock, keep_open=True, until=complete)
        assert not streamed.eof, streamed.summary()
        assert streamed.header("transfer-encoding") == "chunked"
        assert streamed.header("content-length") is None
        assert streamed.response().raw_body == b"4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n"
        after = wire.exchange("127.0.0.1", 0, get("/hello"), timeout=10, sock=sock)
        assert after.status == 200 and after.body == HELLO and after.eof
    finally:
        sock.close()
    srv4a = start(local_server, "webserver4a", "wsgi_test_apps:app", PYTHONPATH=HERE)
    closed = wire.exchange("127.0.0.1", srv4a.port, get("/stream", close=False), timeout=10)
    assert closed.eof and closed.header("connection") == "close"
    assert closed.header("transfer-encoding") is None and closed.body == b"one\ntwo\n"


# ---------------------------------------------------------------- the arbiter


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_lets_the_request_in_hand_finish_and_the_arbiter_exits_0(local_server, server):
    srv = start(local_server, server)
    wait_for(lambda: len(workers(srv)) == 2, 15, 0.05, "two workers")
    payload = get("/hello")
    sock = wire.connect("127.0.0.1", srv.port, 10)
    try:
        sock.sendall(payload[:10])  # a worker has it and waits for the rest
        wait_for(lambda: _accepted(srv.port), 15, 0.02, "a worker to accept it")
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait(0.3) is None, "the arbiter exited with a request in hand"
        sock.sendall(payload[10:])
        reply = wire.exchange("127.0.0.1", 0, timeout=10, sock=sock)
    finally:
        sock.close()
    assert reply.status == 200 and reply.body == HELLO
    assert srv.wait(10) == 0
    assert f"{server}.py: stopped" in srv.stderr()
    assert "still busy" not in srv.stderr()  # nobody had to be killed


def _accepted(port):
    return procs.listen_queue(Path("/proc/net/tcp").read_text(), port) == 0


@pytest.mark.parametrize("server", SERVERS)
def test_a_worker_killed_with_sigkill_is_replaced(local_server, server):
    srv = start(local_server, server)
    before = wait_for(lambda: (w := workers(srv)) and len(w) == 2 and w, 15, 0.05, "two workers")
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    srv.wait_for_log(rf"{server}\.py: worker {victim} died \(killed by SIGKILL\); "
                     r"starting a new one", 15)
    after = wait_for(lambda: (w := workers(srv)) and len(w) == 2 and victim not in w and w,
                     15, 0.05, "a new worker in the victim's place")
    assert before[1] in after  # the other one is untouched
    for _ in range(4):
        assert one_answer(srv.port).status == 200


@pytest.mark.parametrize("server", SERVERS)
def test_accept_out_of_descriptors_backs_off_and_recovers(local_server, server):
    """The worker's RLIMIT_NOFILE lowered (prlimit) to its lowest free
    descriptor: every accept() fails with EMFILE, as with `ulimit -n` full."""
    srv = start(local_server, server, WORKERS=1, ACCESS_LOG_BUFFER=0)
    (worker,) = wait_for(lambda: (w := workers(srv)) and len(w) == 1 and w, 15, 0.05, "a worker")
    assert one_answer(srv.port).status == 200
    in_use = {int(fd) for fd in os.listdir(f"/proc/{worker}/fd")}
    lowest_free = next(fd for fd in itertools.count() if fd not in in_use)
    soft, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    held = []
    try:
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (lowest_free, hard))
        for _ in range(5):
            sock = wire.connect("127.0.0.1", srv.port, 10)
            sock.sendall(get("/hello"))
            held.append(sock)
        srv.wait_for_log(r"accept\(\) failed: \[Errno 24\] Too many open files; "
                         r"trying again in 0\.2 s", timeout=10)  # 0.1, then 0.2: backing off
        assert srv.stderr().count("Too many open files") < 10  # not a busy loop
        assert workers(srv) == [worker]  # the same worker, alive
    finally:
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (soft, hard))
    try:
        for sock in held:  # released: every waiting client is answered
            reply = wire.exchange("127.0.0.1", 0, timeout=10, sock=sock)
            assert reply.status == 200, reply.summary()
    finally:
        for sock in held:
            sock.close()
