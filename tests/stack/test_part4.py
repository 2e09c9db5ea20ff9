"""Part 4, beyond the article: claims P1-P6 (webserver4a, pre-fork; webserver4b,
pre-forked event loops), against the running services.

P1  the pre-fork servers serve 1,000 requests with the same worker PIDs
P2  a worker killed with SIGKILL is replaced within 1 s, no zombie, still serving
P3  WORKERS slow clients hold webserver4a and gunicorn sync; webserver3h and
    webserver4b answer others within 100 ms
P4  webserver4b: 100 requests over one connection, in order; pipelining in order
P5  webserver4a and 4b: the differential cases against gunicorn, the bad-input
    cases, the wsgiref validator (the case lists are test_wsgi_differential's
    and test_wsgi_bad_input's)
P6  SIGTERM: the request in flight is finished, exit 0 within 3 s, no zombie
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from contextlib import contextmanager

import bad_input as bad
import differential as diff
import pytest
from instrument import clients, wire
from instrument.twin import Twin
from instrument.waiting import poll, wait_for
from instrument.wire import parse_response

PREFORK, EVLOOP = "part4-prefork-wsgi", "part4-evloop-wsgi"
PART4 = [PREFORK, EVLOOP]
SCRIPT = {"prefork": "webserver4a.py", "evloop": "webserver4b.py"}
WORKDIR = "/srv/lsbaws/part4"
WORKERS = 2
H = b"Host: lsbaws.test\r\n"


def hello(host: str, timeout: float = 10, port: int = 8888) -> wire.Reply:
    return wire.exchange(host, port, wire.get("/hello", host), timeout=timeout)


def workers(svc) -> list[int]:
    look = svc.look()
    assert look and look.server, f"{svc.name}: no server process"
    return sorted(p.pid for p in look.table if p.ppid == look.server.pid and not p.zombie)


def last_pid(svc) -> int:
    """The last PID handed out in the container's PID namespace."""
    return int(svc.must(["cat", "/proc/sys/kernel/ns_last_pid"]))


def _get_many(host: str, n: int, threads: int = 8) -> list[int]:
    def one(_):
        return hello(host).status
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


# ---------------------------------------------------------------- P1

@pytest.mark.parametrize("service", PART4, indirect=True)
def test_p1_1000_requests_are_served_by_the_same_worker_pids(service):
    before = workers(service)
    assert len(before) == WORKERS, f"{service.name}: workers {before}"
    pid0 = last_pid(service)
    statuses = _get_many(service.name, 1000)
    assert statuses.count(200) == 1000, f"{service.name}: {sorted(set(statuses))}"
    forked = last_pid(service) - pid0
    assert workers(service) == before, "the workers changed under load"
    # our own execs into the container take a few PIDs; a fork per request 1000
    assert forked < 50, f"{service.name}: {forked} PIDs handed out for 1000 requests"


# ---------------------------------------------------------------- P2

# Kill a worker and time its replacement inside the container, so that the
# latency of `docker exec` does not count: milliseconds until the arbiter
# has WORKERS live children again without the victim (or 3000+ if never).
REPLACED_MS = r"""
A=$1; V=$2; t0=$(date +%s%N); kill -9 "$V"
while :; do
  n=$(ps -o pid=,stat= --ppid "$A" | awk -v v="$V" '$1 != v && $2 !~ /^Z/' | wc -l)
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ "$n" -ge "$3" ] || [ "$ms" -gt 3000 ]; then echo "$ms"; exit 0; fi
  sleep 0.01
done
"""


@pytest.mark.parametrize("service", PART4, indirect=True)
def test_p2_a_killed_worker_is_replaced_within_1_s_without_a_zombie(service):
    before = workers(service)
    assert len(before) == WORKERS
    victim = before[0]
    arbiter = service.server_pid()
    ms = int(service.once(REPLACED_MS, str(arbiter), str(victim), str(WORKERS)).split()[-1])
    assert ms <= 1000, f"{service.name}: the killed worker was replaced after {ms} ms"
    after = wait_for(lambda: (w := workers(service)) and len(w) == WORKERS
                     and victim not in w and w, 3, 0.05, f"a new worker in {service.name}")
    assert set(after) - set(before), "no new worker"
    assert not service.zombies(), f"zombies: {service.zombies()}"
    assert _get_many(service.name, 50).count(200) == 50
    assert f"worker {victim} died (killed by SIGKILL)" in service.logs_since_start()


# ---------------------------------------------------------------- P3

SLOW_HEAD = clients.slow_head("lsbaws.test")  # ~90 bytes: never complete in these tests


@contextmanager
def slow_clients(host: str, n: int):
    """n connections that send one byte of a head a second until the block ends."""
    held = clients.slow_clients(host, 8888, n, data=SLOW_HEAD, interval=1.0, timeout=60)
    try:
        yield held
    finally:
        clients.stop_all(held)


P3_HELD = ["part4-prefork-wsgi", "gunicorn-wsgi"]  # a worker per client
P3_FREE = ["part3-wsgi-wsgi", "part4-evloop-wsgi"]  # a process, or a socket, per client


@pytest.mark.parametrize("service", P3_HELD, indirect=True)
def test_p3_as_many_slow_clients_as_workers_hold_a_prefork_server(service):
    with slow_clients(service.name, WORKERS):
        wait_for(lambda: service.listen_queue() == 0, 5, 0.05,
                 f"{service.name}'s workers to accept the slow clients")
        held = hello(service.name, timeout=2.5)
        assert held.timed_out and not held.data, \
            f"{service.name} answered during the slow clients: {held.summary()}"
    after = hello(service.name, timeout=10)
    assert after.status == 200, f"{service.name} after the slow clients: {after.summary()}"


@pytest.mark.parametrize("service", P3_FREE, indirect=True)
def test_p3_slow_clients_do_not_hold_a_fork_or_event_loop_server(service):
    hello(service.name)  # warm: the first answer of a fresh worker may be slower
    # more than WORKERS: however the connections fall to the workers, a
    # worker that blocked on one of them would be seen
    with slow_clients(service.name, 5 * WORKERS):
        times = []
        for _ in range(5):
            got = hello(service.name, timeout=5)
            assert got.status == 200, f"{service.name}: {got.summary()}"
            times.append(got.elapsed)
    # "at once": a held server does not answer at all (above); the median of
    # five answered within 0.25 s (0.01-0.05 s alone; 0.11 s with two CPU
    # hogs beside the whole run, where 0.1 s failed once)
    assert sorted(times)[2] <= 0.25, f"{service.name}: answered in {times} s"


# ---------------------------------------------------------------- P4

def _complete(data: bytes) -> bool:
    return parse_response(data).complete


def test_p4_100_requests_over_one_connection_are_answered_in_order(up):
    up(EVLOOP)
    sock = wire.connect(EVLOOP, 8888, timeout=10)
    ports = set()
    try:
        for i in range(100):
            got = wire.exchange(EVLOOP, data=wire.request("GET", f"/environ?i={i}", "lsbaws.test",
                                                          close=False),
                                timeout=10, until=_complete, sock=sock, keep_open=True)
            assert got.matched and not got.closed, f"request {i}: {got.summary()}"
            env = got.json()
            assert env["QUERY_STRING"]["value"] == f"i={i}"
            ports.add(env["REMOTE_PORT"]["value"])
            assert got.header("Connection") is None  # HTTP/1.1: open is the default
    finally:
        sock.close()
    assert len(ports) == 1, f"answered over {len(ports)} connections: {ports}"


def _responses(data: bytes) -> list:
    out = []
    while data:
        resp = parse_response(data)
        assert resp.complete, data[:300]
        out.append(resp)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        data = body[length:]
    return out


def test_p4_pipelined_requests_are_answered_in_order(up):
    up(EVLOOP)
    n = 20
    data = b"".join(wire.request("GET", f"/environ?i={i}", "lsbaws.test", close=i == n - 1)
                    for i in range(n))
    got = wire.exchange(EVLOOP, data=data, timeout=10)
    assert got.eof, got.summary()
    answers = _responses(got.data)
    assert [a.status for a in answers] == [200] * n
    order = [a.json()["QUERY_STRING"]["value"] for a in answers]
    assert order == [f"i={i}" for i in range(n)]


# ---------------------------------------------------------------- P5

def ask(server: str, case, port: int = 8888):
    """diff.ask, except that webserver4b keeps a connection open when asked
    to (`Connection: keep-alive`): there the answer is read up to its end,
    and the connection must still be open (gunicorn sync closes it)."""
    if case.id == "keep-alive-asked" and server.startswith("part4-evloop"):
        got = wire.exchange(server, port, case.raw(), timeout=10, until=_complete)
        assert got.matched and not got.closed, f"{server}: keep-alive: {got.summary()}"
        resp = got.response()
        return diff.Answer(resp.status, resp.content_type, resp.body)
    return diff.ask(server, case, port=port)


_GUNICORN_SAYS: dict = {}  # (app, case id) -> gunicorn's answer, asked once for 4a and 4b


@pytest.mark.parametrize("kind", ["prefork", "evloop"])
@pytest.mark.parametrize("app", diff.APPS)
def test_p5_same_answers_as_gunicorn(up, app, kind):
    ours, theirs = up(f"part4-{kind}-{app}").name, up(diff.gunicorn(app)).name
    for case in diff.CASES[app]:
        if (app, case.id) not in _GUNICORN_SAYS:
            _GUNICORN_SAYS[app, case.id] = diff.ask(theirs, case)
        reference = _GUNICORN_SAYS[app, case.id]
        got = ask(ours, case)
        assert got.status == reference.status, f"{ours}: {case.id}: status"
        assert got.content_type == reference.content_type, f"{ours}: {case.id}: Content-Type"
        if case.method == "HEAD":
            assert got.body == b"", f"{ours}: {case.id}: a body after a HEAD answer"
        else:
            assert got.body == reference.body, f"{ours}: {case.id}: body differs from gunicorn's"


@pytest.mark.parametrize("service", PART4, indirect=True)
def test_p5_malformed_requests_get_what_webserver3h_answers(service):
    for case in bad.CASES:
        got = wire.exchange(service.name, data=case.data, timeout=5, shut_wr=case.shut_wr)
        status = got.response().status if got.data else None
        assert status == case.expect, f"{service.name}: {case.id}: {got.summary()}"
        assert got.closed, f"{service.name}: {case.id}: the connection was left open"
        if case.expect is not None:
            resp = got.response()
            assert resp.header("Connection") == "close" and resp.complete, \
                f"{service.name}: {case.id}: {resp.headers}"
        assert hello(service.name).status == 200, f"{service.name}: after {case.id}"


def test_p5_drip_fed_head_gets_408_and_an_idle_connection_is_closed(up):
    for name in PART4:
        up(name)
    results: dict = {}
    threads = [threading.Thread(target=bad.drip, args=(name, results, f"drip {name}", 14))
               for name in PART4]
    threads += [threading.Thread(target=bad.idle, args=(name, results, f"idle {name}", 14))
                for name in PART4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(25)
    for name in PART4:
        drip, idle = results[f"drip {name}"], results[f"idle {name}"]
        assert drip.data and drip.response().status == 408 and drip.closed, \
            f"{name}: drip-fed head: {drip.summary()}"
        assert 9.5 <= drip.elapsed <= 13, f"{name}: 408 after {drip.elapsed:.1f} s"
        assert idle.eof and not idle.data, f"{name}: idle connection: {idle.summary()}"
        assert 9.5 <= idle.elapsed <= 13, f"{name}: closed after {idle.elapsed:.1f} s"


@pytest.mark.parametrize("kind", ["prefork", "evloop"])
@pytest.mark.parametrize("app", ["wsgi", "flask"])
def test_p5_applications_pass_wsgiref_validator(up, app, kind):
    service = up(f"part4-{kind}-{app}")
    with Twin(service, ["python", SCRIPT[kind], f"{app}app:app"], workdir=WORKDIR,
              WSGI_VALIDATE=1, ACCESS_LOG_BUFFER=0) as twin:
        for case in diff.CASES[app]:
            if app == "flask" and "chunked" in case.id:
                # by design (docs/conformance.md): a chunked body comes with
                # wsgi.input_terminated, so Werkzeug reads wsgi.input with read()
                # and no size, which wsgiref.validate refuses
                continue
            plain = ask(service.name, case)
            validated = ask(service.name, case, port=twin.port)
            assert diff.without_port(validated) == diff.without_port(plain), \
                f"{case.id}: the validated twin answers otherwise; log:\n{twin.log()[-3000:]}"
        log = twin.log()
        assert twin.alive(), f"the twin died; log:\n{log[-3000:]}"
    bad_lines = [line for line in log.splitlines() if diff.BAD_LOG.search(line)]
    assert not bad_lines, "the validator complained:\n" + "\n".join(bad_lines[:20])


# ---------------------------------------------------------------- P6

@pytest.mark.parametrize("kind", ["prefork", "evloop"])
def test_p6_sigterm_finishes_the_request_in_flight_and_exits_0_within_3_s(up, kind):
    service = up(f"part4-{kind}-wsgi")
    body = b"0123456789"
    head = (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 10\r\nConnection: close\r\n\r\n")
    with Twin(service, ["python", SCRIPT[kind], "wsgiapp:app"], workdir=WORKDIR) as twin:
        sock = wire.connect(service.name, twin.port, timeout=10)
        sock.sendall(head + body[:5])
        poll(lambda: ' "POST /echo' in twin.log(), 0.5, 0.1)  # (it is not logged yet)
        sent_at = twin.signal("TERM")
        time.sleep(0.5)
        got = wire.exchange(service.name, data=[body[5:]], sock=sock, timeout=5)
        assert got.status == 200 and b'"length": 10' in got.body, \
            f"the request in flight: {got.summary()}; log:\n{twin.log()[-2000:]}"
        ended = wait_for(twin.exit_status, 5, 0.1, "the twin to exit")
        status, when = ended
        assert status == 0, f"exit status {status}; log:\n{twin.log()[-2000:]}"
        assert when - sent_at <= 3.0, f"exited {when - sent_at:.2f} s after SIGTERM"
        refused = wire.exchange(service.name, twin.port, wire.get("/hello"), timeout=2)
        assert refused.refused, refused.summary()
    assert not service.zombies(), f"zombies: {service.zombies()}"
