"""Issue 4: the concurrent WSGI server (webserver3h) survives where others die.

Each situation is made inside the part3-wsgi-wsgi container, on a twin of
webserver3h (the same file, port 8898, killed at the end), so the service
itself is never disturbed:

- EMFILE: the twin's soft RLIMIT_NOFILE is lowered (prlimit, as uid 1000
  on its own process) to its lowest free descriptor number, so the next
  accept() must fail with EMFILE. Clients connect meanwhile (the kernel
  completes the handshake into the backlog). The twin must log the
  failure, back off (0.1 s doubling to 1 s, no busy loop), stay alive, and
  answer every waiting client once the limit is put back.
- fork() EAGAIN: the twin's soft RLIMIT_NPROC (`ulimit -u`) is lowered to
  1. The kernel counts every process of uid 1000 in the user namespace
  (the twin itself, the service's server, ...), so the count is at least 2
  and every fork() the twin makes fails with EAGAIN, deterministically,
  whatever else runs on the machine. This is the same errno fork() gets
  under the container's pids limit. The twin must answer each client 503
  with Retry-After, stay alive, and serve again once the limit is back.
- SIGTERM: with one request in flight (its body half sent), the twin gets
  SIGTERM. It must stop accepting at once (connections refused), let the
  request in flight finish (200, the right digest) and exit with status 0
  within 2 s, as the shell that started it records.
- 1,000 requests against the service's own server: afterwards no child is
  left (no zombie) and the server holds exactly as many descriptors as
  before.

gunicorn (23, sync workers) is put in the same situations on a twin in the
gunicorn-wsgi container; what it does is recorded (printed, and written
to reports/robustness-gunicorn.md when /lsbaws/reports is writable), not
asserted.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest
from stackkit import proc_limit, wait_for
from wsgikit import ServerTwin, exchange, hello_ok, request

OURS = "part3-wsgi-wsgi"
GUNICORN = "gunicorn-wsgi"
TWIN_PORT = 8898
RECORD: dict[str, str] = {}  # gunicorn's behaviour, for README


def our_twin(stack, **env) -> ServerTwin:
    svc = stack[OURS]
    svc.ensure_running()
    return ServerTwin(svc, ["python", "webserver3h.py", "wsgiapp:app"], TWIN_PORT,
                      "/srv/lsbaws/part3", env=env, tag="robust")


def gunicorn_twin(stack) -> ServerTwin:
    svc = stack[GUNICORN]
    svc.ensure_running()
    return ServerTwin(svc, ["gunicorn", "--bind", f"0.0.0.0:{TWIN_PORT}", "--workers", "2",
                            "--access-logfile", "-", "wsgiapp:app"],
                      TWIN_PORT, "/srv/lsbaws/part2", tag="robust-gunicorn")


def lowest_free_fd(twin: ServerTwin, pid: int) -> int:
    code, out = twin.svc.exec(["ls", f"/proc/{pid}/fd"])
    assert code == 0, out
    used = {int(x) for x in out.split()}
    return next(n for n in range(len(used) + 1) if n not in used)


def set_soft_limit(twin: ServerTwin, pid: int, option: str, name: str, soft: int | str):
    """prlimit --pid PID --nofile=SOFT:HARD (the hard limit unchanged: uid
    1000 may lower its own soft limit and raise it back up to the hard one)."""
    hard = proc_limit(twin.svc, pid, name)[1]
    code, out = twin.svc.exec(["prlimit", "--pid", str(pid), f"--{option}={soft}:{hard}"])
    assert code == 0, f"prlimit --{option}={soft}:{hard} on {pid}: {out}"
    assert proc_limit(twin.svc, pid, name)[0] == str(soft)


def start_clients(host: str, n: int, port: int, timeout: float) -> tuple[list, list]:
    results: list = [None] * n

    def one(i):
        results[i] = exchange(host, request("GET", "/hello", "lsbaws.test"), timeout=timeout,
                              port=port)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join(threads, timeout):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))


# ---------------------------------------------------------------- EMFILE

def test_emfile_in_accept_backs_off_and_keeps_serving(stack):
    with our_twin(stack) as twin:
        assert hello_ok(twin.svc.name, TWIN_PORT).response().status == 200
        soft = proc_limit(twin.svc, twin.pid, "Max open files")[0]
        free = lowest_free_fd(twin, twin.pid)
        set_soft_limit(twin, twin.pid, "nofile", "Max open files", free)
        threads, results = start_clients(twin.svc.name, 3, TWIN_PORT, timeout=20)
        log = wait_for(lambda: (text := twin.log()).count("Too many open files") >= 2 and text,
                       10, 0.2, "the twin to log accept() failing with EMFILE twice")
        assert "trying again in 0.1 s" in log and "trying again in 0.2 s" in log, log[-1500:]
        time.sleep(1.5)  # a busy loop would log hundreds of lines by now
        failures = twin.log().count("Too many open files")
        assert failures <= 8, f"{failures} accept() failures in ~2 s: no back-off?"
        assert twin.alive(), "the twin died of EMFILE"
        assert all(r is None for r in results), "a client was answered while out of fds"

        set_soft_limit(twin, twin.pid, "nofile", "Max open files", soft)
        join(threads, 15)  # the back-off is at most 1 s: they are answered soon
        statuses = [r.response().status if r else None for r in results]
        assert statuses == [200, 200, 200], [r.summary() if r else None for r in results]
        assert hello_ok(twin.svc.name, TWIN_PORT).response().status == 200
        assert twin.alive()


def test_record_gunicorn_on_emfile(stack):
    """Both sync workers' soft nofile lowered the same way; what happens?"""
    with gunicorn_twin(stack) as twin:
        assert hello_ok(twin.svc.name, TWIN_PORT).response().status == 200
        workers = sorted(p.pid for p in twin.children())
        assert len(workers) == 2, twin.children()
        for pid in workers:
            set_soft_limit(twin, pid, "nofile", "Max open files", lowest_free_fd(twin, pid))
        t0 = time.monotonic()
        threads, results = start_clients(twin.svc.name, 3, TWIN_PORT, timeout=20)
        join(threads, 25)
        took = time.monotonic() - t0
        after = sorted(p.pid for p in twin.children())
        log = twin.log()
        died = sum(f"Worker (pid:{pid}) exited" in log or f"(pid:{pid})" in log for pid in workers)
        RECORD["EMFILE in accept()"] = (
            f"clients: {[r.summary() if r else 'none' for r in results]} after {took:.1f} s; "
            f"workers {workers} -> {after} ({died} of 2 gone); "
            f"log: {_lines(log, 'Too many open files', 'exited', 'Booting worker')}")
        print(RECORD["EMFILE in accept()"])


# ---------------------------------------------------------------- fork EAGAIN

def test_fork_eagain_answers_503_and_keeps_serving(stack):
    with our_twin(stack) as twin:
        assert hello_ok(twin.svc.name, TWIN_PORT).response().status == 200
        soft = proc_limit(twin.svc, twin.pid, "Max processes")[0]
        set_soft_limit(twin, twin.pid, "nproc", "Max processes", 1)
        try:
            for _ in range(5):
                got = hello_ok(twin.svc.name, TWIN_PORT)
                resp = got.response()
                assert resp.status == 503, got.summary()
                assert resp.header("Retry-After") == "1", resp.headers
                assert b"fork" in resp.body, resp.body
                assert got.closed
            assert twin.alive(), f"the twin died when fork() failed:\n{twin.log()[-2000:]}"
            assert "Resource temporarily unavailable" in twin.log()
            assert not twin.children(), "a child exists although every fork() failed"
        finally:
            set_soft_limit(twin, twin.pid, "nproc", "Max processes", soft)
        for _ in range(3):
            assert hello_ok(twin.svc.name, TWIN_PORT).response().status == 200
        wait_for(lambda: not [p for p in twin.children() if p.zombie], 10, 0.2, "no zombie")


def test_record_gunicorn_on_fork_eagain(stack):
    """The arbiter's soft nproc lowered to 1, then one worker killed: the
    arbiter must fork() a new one, and fork() fails with EAGAIN."""
    with gunicorn_twin(stack) as twin:
        assert hello_ok(twin.svc.name, TWIN_PORT).response().status == 200
        workers = [p.pid for p in twin.children()]
        set_soft_limit(twin, twin.pid, "nproc", "Max processes", 1)
        twin.svc.exec(["kill", "-KILL", str(workers[0])])
        ended = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (ended := twin.exit_status()):
            time.sleep(0.2)
        after = exchange(twin.svc.name, request("GET", "/hello", "lsbaws.test"), timeout=5,
                         port=TWIN_PORT)
        log = twin.log()
        RECORD["fork() EAGAIN"] = (
            f"arbiter {'exited with status ' + str(ended[0]) if ended else 'still running'}; "
            f"next request: {after.summary()}; "
            f"log: {_lines(log, 'Unhandled exception', 'BlockingIOError', 'Resource temporarily', 'Shutting down', 'Reason')}")
        print(RECORD["fork() EAGAIN"])


# ---------------------------------------------------------------- SIGTERM

def _half_sent_post(host: str, port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    head = request("POST", "/echo", "lsbaws.test",
                   [("Content-Type", "application/octet-stream"),
                    ("Content-Length", str(len(body)))])
    sock.sendall(head + body[:len(body) // 2])
    return sock


def _finish(sock: socket.socket, body: bytes) -> bytes:
    sock.sendall(body[len(body) // 2:])
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_sigterm_stops_accepting_finishes_in_flight_and_exits_0_within_2s(stack):
    body = os.urandom(20000)
    with our_twin(stack) as twin:
        host = twin.svc.name
        assert hello_ok(host, TWIN_PORT).response().status == 200
        in_flight = _half_sent_post(host, TWIN_PORT, body)
        wait_for(lambda: twin.children(), 10, 0.1, "a child serving the request in flight")
        sent_at = twin.signal("TERM")
        wait_for(lambda: _refused(host, TWIN_PORT), 2.0, 0.05,
                 "the twin to stop accepting after SIGTERM")
        time.sleep(0.3)  # the request is still in flight after SIGTERM
        data = _finish(in_flight, body)
        status, ended_at = wait_for(twin.exit_status, 5, 0.1, "the twin to exit")
        assert status == 0, f"exit status {status}; log:\n{twin.log()[-2000:]}"
        assert ended_at - sent_at <= 2.0, f"exited {ended_at - sent_at:.2f} s after SIGTERM"
    assert data.startswith(b"HTTP/1.1 200 "), data[:300]
    assert hashlib.sha256(body).hexdigest().encode() in data, data[-300:]
    print(f"SIGTERM: exited 0 after {ended_at - sent_at:.2f} s, the request in flight answered")


def test_record_gunicorn_on_sigterm(stack):
    body = os.urandom(20000)
    with gunicorn_twin(stack) as twin:
        host = twin.svc.name
        assert hello_ok(host, TWIN_PORT).response().status == 200
        in_flight = _half_sent_post(host, TWIN_PORT, body)
        time.sleep(0.3)
        sent_at = twin.signal("TERM")
        refused = False
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and not (refused := _refused(host, TWIN_PORT)):
            time.sleep(0.05)
        time.sleep(0.3)
        try:
            data = _finish(in_flight, body)
        except OSError as exc:
            data = f"{type(exc).__name__}".encode()
        ended = None
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline and not (ended := twin.exit_status()):
            time.sleep(0.2)
        answered = data.split(b"\r\n", 1)[0].decode("latin-1", "replace") or "nothing"
        RECORD["SIGTERM with a request in flight"] = (
            f"new connections refused within 1.5 s: {refused}; in flight: {answered} "
            f"(digest right: {hashlib.sha256(body).hexdigest().encode() in data}); "
            + (f"exit status {ended[0]} after {ended[1] - sent_at:.2f} s" if ended
               else "still running after 35 s"))
        print(RECORD["SIGTERM with a request in flight"])


# ---------------------------------------------------------------- 1,000 requests

def test_no_zombie_and_no_fd_leak_after_1000_requests(stack):
    svc = stack[OURS]
    svc.ensure_running()
    pid = svc.server_pid()
    wait_for(lambda: not svc.children(pid), 10, 0.2, "no child before the run")
    before = svc.open_fds(pid)
    kinds = [request("GET", "/hello", "lsbaws.test"),
             request("HEAD", "/hello", "lsbaws.test"),
             request("POST", "/echo", "lsbaws.test", body=b"x" * 3000),
             b"HELLO\r\n\r\n",  # a malformed one: 400
             request("POST", "/echo", "lsbaws.test", [("Content-Length", "5")]) + b"abc"]
    expected = [200, 200, 200, 400, None]  # the last is cut short and closed: no answer
    counts: dict = {}
    lock = threading.Lock()
    deadline = time.monotonic() + 120

    def worker(offset):
        for i in range(offset, 1000, 8):
            if time.monotonic() > deadline:
                return
            kind = i % len(kinds)
            got = exchange(OURS, kinds[kind], timeout=15, shut_wr=kind == 4)
            status = got.response().status if got.data else None
            with lock:
                key = "ok" if status == expected[kind] else f"{kind}:{got.summary()}"
                counts[key] = counts.get(key, 0) + 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(130)
    took = time.monotonic() - t0
    assert counts.get("ok") == 1000, f"answers: {counts}"
    wait_for(lambda: not svc.children(pid), 15, 0.2, "every child to be gone (reaped)")
    assert not svc.zombies(), svc.zombies()
    assert svc.server_pid() == pid, "the server restarted"
    after = svc.open_fds(pid)
    assert after == before, f"open descriptors: {before} before, {after} after 1,000 requests"
    print(f"1,000 requests in {took:.1f} s; fds {before} -> {after}; no zombie")


# ---------------------------------------------------------------- the record

def _lines(log: str, *needles: str, limit: int = 6) -> str:
    found = [line.strip() for line in log.splitlines() if any(n in line for n in needles)]
    if len(found) > limit:
        found = found[:limit // 2] + [f"... {len(found) - limit} more ..."] + found[-limit // 2:]
    return " | ".join(found) or "(nothing relevant)"


def test_gunicorn_record(capsys):
    if not RECORD:
        pytest.skip("no gunicorn situation ran in this session")
    text = "\n".join(f"- {k}: {v}" for k, v in RECORD.items())
    with capsys.disabled():
        print("\ngunicorn 23 (sync, 2 workers) in the same situations:\n" + text)
    reports = "/lsbaws/reports"
    if os.path.isdir(reports) and os.access(reports, os.W_OK):
        with open(os.path.join(reports, "robustness-gunicorn.md"), "w") as f:
            f.write(text + "\n")

