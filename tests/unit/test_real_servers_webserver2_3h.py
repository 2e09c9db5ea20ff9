"""webserver2 (iterative) and webserver3h (fork per connection, the article's
exercise), started for real on this machine as the user runs them: the
command line (claim C3), the four applications under wsgiref's validator
(C4-C7, C25), and what the concurrent server must survive: 50 clients at
once, no zombie, no descriptor leak over 1000 requests, SIGTERM, accept()
failing with EMFILE and fork() with EAGAIN. The servers are subprocesses on
127.0.0.1 (the `local_server` fixture, instrument.local), each wait has a
deadline.
"""

import errno
import itertools
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from instrument import wire
from instrument.local import UNUSED_UID, holds_a_listen_socket, listening, python_for
from instrument.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PART2 = ROOT / "services" / "part2"
PART3 = ROOT / "services" / "part3"
SCRIPTS = {"webserver2": PART2 / "webserver2.py", "webserver3h": PART3 / "webserver3h.py"}
USAGE = "Provide a WSGI application object as module:callable"
WSGI_HELLO = b"Hello world from a simple WSGI application!\n"


def request(method, path, headers=(), body=b""):
    return wire.request(method, path, "127.0.0.1", headers, body, close=False)


def fetch(port, method, path, headers=(), body=b"") -> wire.Reply:
    """One request on a fresh connection; the server must answer and close."""
    reply = wire.exchange("127.0.0.1", port, request(method, path, headers, body), timeout=10)
    assert reply.eof, f"{method} {path}: {reply.summary()}"
    return reply


def read_all(sock, timeout=10.0) -> wire.Reply:
    """The answer on a connection the test opened; it must end with an EOF."""
    reply = wire.exchange("127.0.0.1", 0, timeout=timeout, sock=sock, keep_open=True)
    assert reply.eof, f"the server did not close the connection in time: {reply.summary()}"
    return reply


def hello_works(port):
    response = fetch(port, "GET", "/hello")
    assert response.status == 200, response.data[:300]
    assert response.body == WSGI_HELLO


def start(local_server, server, spec="wsgiapp:app", **env):
    return local_server(f"{SCRIPTS[server].parent.name}/{SCRIPTS[server].name}", spec, **env)


def run_cli(server, *args, timeout=30, **env):
    """Run a server's command line from its own directory, without PYTHONPATH."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "PORT", "HOST", "REQUEST_QUEUE_SIZE",
                             "REQUEST_TIMEOUT", "WSGI_VALIDATE")}
    full_env.update({"HOST": "127.0.0.1", "PORT": "0"})
    full_env.update(env)
    return subprocess.run([sys.executable, str(SCRIPTS[server]), *args],
                          cwd=SCRIPTS[server].parent, env=full_env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------
# the command line: C3 and one clear line for every mistake
# --------------------------------------------------------------------------


@pytest.mark.parametrize("server", sorted(SCRIPTS))
def test_c3_without_an_argument_it_says_what_it_needs_and_exits_non_zero(server):
    result = run_cli(server)
    assert result.returncode != 0
    assert result.stderr == USAGE + "\n"
    assert result.stdout == ""


@pytest.mark.parametrize("server", sorted(SCRIPTS))
@pytest.mark.parametrize("argument, words", [
    ("nosuchmodule:app", "no module named 'nosuchmodule'"),
    ("wsgiapp", "'wsgiapp' is not of the form module:callable"),
    ("wsgiapp:", "is not of the form module:callable"),
    (":app", "is not of the form module:callable"),
    ("wsgiapp:missing", "module 'wsgiapp' has no attribute 'missing'"),
    ("wsgiapp:hashlib", "wsgiapp:hashlib is not callable"),
])
def test_a_bad_application_argument_is_one_clear_line_and_exit_2(server, argument, words):
    result = run_cli(server, argument)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
    assert result.stderr.startswith(f"{SCRIPTS[server].name}: ")
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("server, name, value", [
    ("webserver2", "PORT", "http"), ("webserver2", "PORT", "70000"), ("webserver2", "PORT", "-1"),
    ("webserver2", "REQUEST_QUEUE_SIZE", "many"), ("webserver2", "REQUEST_QUEUE_SIZE", "0"),
    ("webserver2", "REQUEST_TIMEOUT", "soon"), ("webserver2", "REQUEST_TIMEOUT", "-5"),
    ("webserver2", "REQUEST_TIMEOUT", "nan"), ("webserver2", "WSGI_VALIDATE", "maybe"),
    ("webserver3h", "PORT", "http"), ("webserver3h", "REQUEST_QUEUE_SIZE", "many"),
    ("webserver3h", "REQUEST_TIMEOUT", "soon")])
def test_a_bad_setting_is_one_clear_line_and_exit_2(server, name, value):
    result = run_cli(server, "wsgiapp:app", **{name: value})
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and name in result.stderr, result.stderr
    assert repr(value) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("server", sorted(SCRIPTS))
def test_a_port_in_use_is_one_clear_line_and_exit_2(server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = run_cli(server, "wsgiapp:app", PORT=str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot listen on" in result.stderr


# --------------------------------------------------------------------------
# the four applications, every route, under wsgiref.validate (WSGI_VALIDATE=1),
# on both servers (C4-C7 for webserver2, C25 for webserver3h)
# --------------------------------------------------------------------------

BIG_FORM = [(f"field{i:03d}", "v" * 1024) for i in range(100)]  # about 103 KiB urlencoded
BIG_FORM_BODY = urlencode(BIG_FORM).encode()
BIG_FORM_ANSWER = {"fields": 100, "bytes": sum(len(k) + len(v) for k, v in BIG_FORM)}
FORM_TYPE = ("Content-Type", "application/x-www-form-urlencoded")


def check_wsgi(port):
    hello = fetch(port, "GET", "/hello")
    assert hello.body == b"Hello world from a simple WSGI application!\n"
    assert hello.header("content-type") == "text/plain"
    assert fetch(port, "GET", "/any/other/path").body == hello.body
    assert fetch(port, "HEAD", "/hello").body == b""
    env = fetch(port, "GET", "/environ").json()
    assert env["wsgi.input"]["type"] == "InputWrapper"  # the validator's wrapper
    body = os.urandom(200 * 1024)
    assert fetch(port, "POST", "/echo", body=body).json()["length"] == len(body)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    assert fetch(port, "POST", "/echo", [("Transfer-Encoding", "chunked")],
                 chunked).json()["length"] == len(body)
    return env


def check_flask(port):
    hello = fetch(port, "GET", "/hello")
    assert (hello.status, hello.body) == (200, b"Hello world from Flask!\n")
    assert hello.header("content-type").startswith("text/plain")
    not_allowed = fetch(port, "POST", "/hello")
    assert not_allowed.status == 405 and "GET" in not_allowed.header("allow")
    assert fetch(port, "GET", "/api/echo?a=1&a=2&b=3").json() == {
        "method": "GET", "args": {"a": ["1", "2"], "b": ["3"]}, "json": None}
    posted = fetch(port, "POST", "/api/echo?x=y", [("Content-Type", "application/json")],
                   json.dumps({"name": "Ruslan", "n": [1, 2]}).encode()).json()
    assert posted == {"method": "POST", "args": {"x": ["y"]}, "json": {"name": "Ruslan", "n": [1, 2]}}
    assert fetch(port, "POST", "/form", [FORM_TYPE], BIG_FORM_BODY).json() == BIG_FORM_ANSWER
    assert fetch(port, "GET", "/nope").status == 404


def check_pyramid(port):
    hello = fetch(port, "GET", "/hello")
    assert (hello.status, hello.body) == (200, b"Hello world from Pyramid!\n")
    assert fetch(port, "GET", "/greet/Ruslan").body == b"Hello, Ruslan!\n"
    # PATH_INFO is bytes-as-latin-1: Pyramid gets back the UTF-8 name
    assert fetch(port, "GET", "/greet/caf%C3%A9").body == "Hello, café!\n".encode()
    assert fetch(port, "POST", "/form", [FORM_TYPE], BIG_FORM_BODY).json() == BIG_FORM_ANSWER
    assert fetch(port, "GET", "/nope").status == 404


def check_django(port):
    hello = fetch(port, "GET", "/hello")
    assert (hello.status, hello.body) == (200, b"Hello world from Django!\n")
    head = fetch(port, "HEAD", "/hello")
    assert (head.status, head.body) == (200, b"")
    page = fetch(port, "GET", "/form")
    assert page.status == 200
    cookie = re.search(r"csrftoken=([^;]+)", page.header("set-cookie")).group(1)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()
    form = urlencode({"csrfmiddlewaretoken": token, "name": "Ruslan"}).encode()
    posted = fetch(port, "POST", "/form", [FORM_TYPE, ("Cookie", f"csrftoken={cookie}")], form)
    assert posted.status == 200 and posted.json() == {"posted": {"name": "Ruslan"}}
    no_token = urlencode({"name": "Ruslan"}).encode()
    assert fetch(port, "POST", "/form", [FORM_TYPE, ("Cookie", f"csrftoken={cookie}")],
                 no_token).status == 403
    assert fetch(port, "POST", "/form", [FORM_TYPE], form).status == 403  # no cookie
    assert fetch(port, "POST", "/upload", [FORM_TYPE], BIG_FORM_BODY).json() == BIG_FORM_ANSWER
    assert fetch(port, "GET", "/nope").status == 404


CHECKS = {"wsgiapp": check_wsgi, "flaskapp": check_flask, "pyramidapp": check_pyramid,
          "djangoapp": check_django}


@pytest.mark.parametrize("app", sorted(CHECKS))
@pytest.mark.parametrize("server", sorted(SCRIPTS))
def test_every_app_passes_the_wsgi_validator_on_every_route(local_server, server, app):
    # webserver3h runs from services/part3 without PYTHONPATH, as the article's
    # exercise would: it finds wsgicore and the applications in ../part2 itself
    srv = start(local_server, server, f"{app}:app", WSGI_VALIDATE=1)
    CHECKS[app](srv.port)
    assert fetch(srv.port, "GET", "/hello").status == 200
    assert srv.proc.poll() is None
    srv.stop()
    log = srv.stderr()
    for bad in ("AssertionError", "Traceback", "WSGIWarning", "internal error"):
        assert bad not in log, log[-3000:]


def test_webserver2_exits_0_on_sigterm(local_server):
    srv = start(local_server, "webserver2")
    hello_works(srv.port)
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.wait(5) == 0
    assert time.monotonic() - started < 1.0


def test_webserver2_finishes_the_request_in_hand_on_sigterm(local_server):
    """SIGTERM only sets a flag: the connection already accepted is served
    to the end (200), then the server exits 0 and accepts nothing more."""
    srv = start(local_server, "webserver2")
    payload = request("GET", "/hello")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(payload[:10])  # the server has it and waits for the rest
        wait_for(lambda: listening(srv.port) == 0, 5, 0.02, "the server to accept it")
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait(0.3) is None, "it exited with a request in hand"
        sock.sendall(payload[10:])
        reply = read_all(sock)
    assert reply.status == 200 and reply.body == WSGI_HELLO
    assert srv.wait(5) == 0


def test_webserver3h_says_multiprocess_and_webserver2_does_not(local_server):
    for server, expected in (("webserver2", "False"), ("webserver3h", "True")):
        srv = start(local_server, server)
        env = fetch(srv.port, "GET", "/environ").json()
        srv.stop()
        assert env["wsgi.multiprocess"]["value"] == expected, server
        assert env["wsgi.multithread"]["value"] == "False"


# --------------------------------------------------------------------------
# webserver3h: concurrency and resources
# --------------------------------------------------------------------------


def settle(srv, timeout=5.0):
    """Wait until the server has no child left; return the zombies still seen."""
    return [p for p in srv.settled(timeout) if p.zombie]


@pytest.fixture
def server3h(local_server):
    return start(local_server, "webserver3h", REQUEST_TIMEOUT=5)


def test_c25_fifty_clients_at_once_are_all_answered_and_no_zombie_is_left(server3h):
    port, clients = server3h.port, 50
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(clients)]
    try:
        # every connection is accepted and has its child before anyone sends
        wait_for(lambda: len(server3h.children()) == clients, 10, 0.02,
                 f"{clients} children alive at once")
        barrier, replies = threading.Barrier(clients), [None] * clients

        def client(i):
            barrier.wait(5)
            socks[i].sendall(request("GET", "/hello"))
            replies[i] = read_all(socks[i])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    finally:
        for sock in socks:
            sock.close()
    assert all(reply and reply.status == 200 for reply in replies)
    assert settle(server3h) == []  # 50 children exited together: all reaped
    hello_works(port)


def test_no_zombie_and_no_descriptor_leak_over_1000_requests(server3h):
    port, pid = server3h.port, server3h.pid
    hello_works(port)
    assert settle(server3h) == []
    before = server3h.fds()
    payload, failures = request("GET", "/hello"), []

    def client(count):
        for _ in range(count):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(payload)
                if not read_all(sock).data.endswith(b"application!\n"):
                    failures.append(1)

    threads = [threading.Thread(target=client, args=(250,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert settle(server3h) == []
    assert server3h.fds() == before, sorted(os.listdir(f"/proc/{pid}/fd"))
    assert server3h.stderr().count('"GET /hello HTTP/1.1" 200') >= 1001


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0_within_2_s(server3h):
    with socket.create_connection(("127.0.0.1", server3h.port), timeout=10) as sock:
        payload = request("GET", "/hello")
        sock.sendall(payload[:10])  # a child is now waiting for the rest
        wait_for(server3h.children, 5, 0.02, "a child serving the request")
        started = time.monotonic()
        server3h.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: not listening(server3h.port), 2, 0.02,
                 "the server to stop listening (its LISTEN row gone from /proc/net/tcp)")
        knock = wire.exchange("127.0.0.1", server3h.port, timeout=0.5)
        # refused; or the freed port was taken meanwhile (another test's server
        # in the parallel run, or this connect's own source port: a TCP
        # self-connect): then it must not be this server's socket
        assert knock.refused or not holds_a_listen_socket(server3h.pid, server3h.port), \
            knock.summary()
        sock.sendall(payload[10:])
        reply = read_all(sock)
        assert server3h.wait(5) == 0
        elapsed = time.monotonic() - started
    assert reply.status == 200  # the request in flight was served
    assert elapsed < 2.0


def test_sigterm_when_idle_exits_0_at_once(server3h):
    hello_works(server3h.port)  # in its loop, handlers set ("Serving" is printed before them)
    started = time.monotonic()
    server3h.proc.send_signal(signal.SIGTERM)
    assert server3h.proc.wait(5) == 0
    assert time.monotonic() - started < 1.0
    assert "webserver3h.py: stopped" in server3h.stderr()


def test_sigterm_with_a_stuck_client_still_exits_within_2_s(server3h):
    with socket.create_connection(("127.0.0.1", server3h.port), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\n")  # and nothing more
        wait_for(server3h.children, 5, 0.02, "a child serving the request")
        started = time.monotonic()
        server3h.proc.send_signal(signal.SIGTERM)
        assert server3h.proc.wait(5) == 0
        assert time.monotonic() - started < 2.0
    assert "children still serving" in server3h.stderr()


def test_accept_out_of_descriptors_backs_off_and_recovers(server3h):
    """EMFILE: what kills webserver3d (claim C17) only slows webserver3h down.

    The parent closes its copy of every client socket right after fork(), so
    clients held open never use up the parent's descriptors (the children
    hold them). To make accept() fail for certain we lower the running
    server's RLIMIT_NOFILE (prlimit) to its lowest free descriptor number:
    every accept() then fails with EMFILE, as it would with `ulimit -n` full.
    """
    port, pid = server3h.port, server3h.pid
    hello_works(port)
    in_use = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = next(fd for fd in itertools.count() if fd not in in_use)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    held = []
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
        for _ in range(20):  # many clients wait in the backlog meanwhile
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(request("GET", "/hello"))
            held.append(sock)
        server3h.wait_for_log(r"accept\(\) failed: \[Errno 24\] Too many open files")
        server3h.wait_for_log(r"trying again in 0\.4 s")  # 0.1, 0.2, 0.4: backing off
        assert server3h.stderr().count("Too many open files") < 10  # not a busy loop
        assert server3h.proc.poll() is None
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    try:
        for sock in held:  # released: every waiting client is answered
            assert read_all(sock).status == 200
    finally:
        for sock in held:
            sock.close()
    hello_works(port)
    assert settle(server3h) == []


FAKE_FORK = textwrap.dedent("""
    # Runs webserver3h with os.fork replaced: while the flag file exists,
    # fork() fails with EAGAIN, as it does at the pids limit.
    import errno, os, runpy, sys
    flag, script = os.environ["FAKE_FORK_FLAG"], os.environ["REAL_SCRIPT"]
    real_fork = os.fork

    def fork():
        if os.path.exists(flag):
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        return real_fork()

    os.fork = fork
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")
""")


def assert_503_then_recovery(srv, set_limit, lift_limit):
    hello_works(srv.port)
    set_limit()
    try:
        for _ in range(3):
            response = fetch(srv.port, "GET", "/hello")
            assert response.status == 503, response.data[:300]
            assert response.header("retry-after") == "1"
            assert response.header("connection") == "close"
        srv.wait_for_log(r"503 \d+ \(cannot start a worker process now \(fork: "
                         r"Resource temporarily unavailable\)\)")
        assert srv.proc.poll() is None
    finally:
        lift_limit()
    hello_works(srv.port)


def test_fork_eagain_simulated_gives_503_and_the_server_keeps_serving(local_server, tmp_path):
    """The 503 path with os.fork patched to fail; the kernel's own EAGAIN is below."""
    wrapper, flag = tmp_path / "fake_fork.py", tmp_path / "fail-fork"
    wrapper.write_text(FAKE_FORK)
    srv = local_server("part3/webserver3h.py", argv=[sys.executable, wrapper, "wsgiapp:app"],
                       FAKE_FORK_FLAG=flag, REAL_SCRIPT=SCRIPTS["webserver3h"])
    assert_503_then_recovery(srv, flag.touch, flag.unlink)


def test_fork_eagain_from_the_kernel_gives_503_and_the_server_keeps_serving(unused_uid,
                                                                           local_server):
    """RLIMIT_NPROC makes the kernel refuse fork() with EAGAIN, as `ulimit -u` does.

    It never applies to root (nor to CAP_SYS_RESOURCE). As root the server
    runs under an unused uid, started with RLIMIT_NPROC 3: the server and two
    children that wait for their requests fill it, and the next fork() fails.
    Not as root, the limit on the running server is lowered to 1 and lifted
    again with prlimit (allowed on one's own processes).
    """
    held = []
    root = os.geteuid() == 0
    python, why = (python_for(UNUSED_UID, f"import sys; sys.path.insert(0, {str(PART2)!r}); "
                                          "import wsgicore, wsgiapp") if root
                   else (sys.executable, ""))
    if python is None:
        pytest.skip("running as root, where RLIMIT_NPROC does not apply, and no Python is "
                    f"usable by an unprivileged uid ({why}); the simulated test above covers "
                    "the 503 path, the container tests the real pids limit")
    srv = (local_server("part3/webserver3h.py", "wsgiapp:app", python=python, uid=UNUSED_UID,
                        limits={resource.RLIMIT_NPROC: (3, 3)}) if root
           else local_server("part3/webserver3h.py", "wsgiapp:app"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)

    def set_limit():
        if not root:
            resource.prlimit(srv.pid, resource.RLIMIT_NPROC, (1, hard))
            return
        assert settle(srv) == []  # the children of earlier requests are gone
        for count in (1, 2):  # two children in flight: the uid is at its limit
            held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            wait_for(lambda n=count: len(srv.children()) == n, 5, 0.02, f"{count} children")

    def lift_limit():
        if not root:
            resource.prlimit(srv.pid, resource.RLIMIT_NPROC, (soft, hard))
            return
        for sock in held:  # the two waiting requests are served, then exit
            sock.sendall(request("GET", "/hello"))
            assert read_all(sock).status == 200
            sock.close()
        assert settle(srv) == []

    try:
        assert_503_then_recovery(srv, set_limit, lift_limit)
    finally:
        for sock in held:
            sock.close()
    assert errno.EAGAIN == 11  # "Resource temporarily unavailable" on Linux
