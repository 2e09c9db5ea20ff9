"""Malformed requests get a 4xx (or a close), and the server goes on.

Each case below is sent, byte for byte, over a raw socket with a deadline,
to part2-wsgi (webserver2, iterative) and part3-wsgi-wsgi (webserver3h,
fork per connection). Ours must answer the status wsgicore's docstring
gives for it (a 4xx; 505 for an HTTP version it does not speak, 501 for a
transfer-coding it does not know), close the connection, and then answer
the next, well-formed request. Where the request cannot be answered (the
client closed in the middle of its body), a close without an answer is
the expected outcome.

The same bytes go to gunicorn-wsgi too, and its answer must be what
gunicorn 27 answers today (GUNICORN_SAYS below, docs/wsgicore.md's table): a gunicorn
that changes is noticed. The comparison table is printed at the end of the
run (and written to reports/bad-input.md when that directory is writable).

The slow cases (a drip-fed head, an idle connection) wait for the server's
REQUEST_TIMEOUT (10 s, the default the services run with); they run side
by side against all three servers, so the whole module stays under a
minute.
"""

from __future__ import annotations

import threading

import pytest
from bad_input import CASES, GUNICORN_SAYS, REQUEST_TIMEOUT, SLOW_GUNICORN, drip, idle
from instrument import wire

OURS = ["part2-wsgi", "part3-wsgi-wsgi"]
GUNICORN = "gunicorn-wsgi"
TABLE = "bad-input"
HEADER = ("| malformed request | ours (webserver2 / webserver3h) | gunicorn 27 (sync) |\n"
          "|---|---|---|")


@pytest.fixture(scope="module", autouse=True)
def servers_up(up):
    for name in (*OURS, GUNICORN):
        up(name)


def test_at_least_30_malformed_requests_each_with_gunicorns_answer():
    assert len(CASES) >= 30
    assert list(GUNICORN_SAYS) == [c.id for c in CASES]


def _status(got) -> int | None:
    return got.response().status if got.data else None


def hello_ok(host: str) -> wire.Reply:
    return wire.exchange(host, data=wire.get("/hello", host), timeout=10)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_malformed_request_gets_4xx_and_the_next_one_is_answered(case, record):
    theirs = wire.exchange(GUNICORN, data=case.data, timeout=3, shut_wr=case.shut_wr).summary()
    nxt = hello_ok(GUNICORN)
    if nxt.status != 200:
        theirs += f"; next request: {nxt.summary()}"
    ours = None
    for server in OURS:
        got = wire.exchange(server, data=case.data, timeout=5, shut_wr=case.shut_wr)
        ours = ours or got.summary()
        assert not got.timed_out, f"{server}: {case.id}: no answer and no close in 5 s"
        assert _status(got) == case.expect, f"{server}: {case.id}: {got.summary()} " \
                                            f"{got.data[:200]!r}"
        if case.expect is not None:
            assert 400 <= case.expect < 600
            resp = got.response()
            assert resp.header("Connection") == "close", f"{server}: {case.id}: {resp.headers}"
            assert resp.complete, f"{server}: {case.id}: the error answer is cut short"
        assert got.closed, f"{server}: {case.id}: the connection was left open"
        nxt = hello_ok(server)
        assert nxt.status == 200, f"{server}: after {case.id}: {nxt.summary()}"
    record(TABLE, case.id, f"{ours} | {theirs}", HEADER)
    assert theirs == GUNICORN_SAYS[case.id], (
        f"gunicorn-wsgi now answers {case.id} with {theirs!r}, not {GUNICORN_SAYS[case.id]!r}: "
        "a new gunicorn? Update GUNICORN_SAYS and the bad-input table in docs/wsgicore.md")


# ---------------------------------------------------------------- slow clients

def test_slow_drip_fed_head_and_idle_connection_are_timed_out(record):
    """Both ours answer a dripping head with 408 once REQUEST_TIMEOUT (10 s)
    has passed since the connection, and close an idle one without a word;
    then they answer the next request. gunicorn answers neither and keeps
    both open past our bound. Bounded: 10 s + 4 s of margin."""
    bound = REQUEST_TIMEOUT + 4
    results: dict = {}
    threads = []
    for server in (*OURS, GUNICORN):
        threads.append(threading.Thread(target=drip, args=(server, results, f"drip {server}", bound)))
    # webserver2 serves one connection at a time: its idle test waits for the drip
    for server in ("part3-wsgi-wsgi", GUNICORN):
        threads.append(threading.Thread(target=idle, args=(server, results, f"idle {server}", bound)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(bound + 10)
    for server in OURS:
        got = results[f"drip {server}"]
        assert _status(got) == 408, f"{server}: drip-fed head: {got.summary()}"
        assert got.closed
        assert REQUEST_TIMEOUT - 0.5 <= got.elapsed <= REQUEST_TIMEOUT + 3, got.elapsed
    got = results["idle part3-wsgi-wsgi"]
    assert got.eof and not got.data, f"idle connection: {got.summary()}"
    assert REQUEST_TIMEOUT - 0.5 <= got.elapsed <= REQUEST_TIMEOUT + 3, got.elapsed
    for kind in ("drip", "idle"):
        theirs = results[f"{kind} {GUNICORN}"]
        ours = results[f"{kind} part3-wsgi-wsgi"]
        case = "slow-drip-head" if kind == "drip" else "idle-connection"
        record(TABLE, case, f"{_timed(ours)} | {_timed(theirs)}", HEADER)
        assert theirs.summary() == SLOW_GUNICORN and theirs.timed_out, (
            f"gunicorn-wsgi now answers {case} with {theirs.summary()!r}: a new gunicorn? "
            "Update the bad-input table in docs/wsgicore.md")
    for server in OURS:
        nxt = hello_ok(server)
        assert nxt.status == 200, f"{server}: after the slow clients: {nxt.summary()}"


def _timed(got) -> str:
    return f"{got.summary()} after {got.elapsed:.1f} s"
