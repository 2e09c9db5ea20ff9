"""The grader graded: the verdicts the stack's own servers must get, in one place.

The article's steps are the calibration: each fails exactly the lessons it has
not learned yet. `prove` is the part of each row the test suite runs
(tests/stack/test_grade.py: the stages that tell that step's story, kept
short so the suite stays under 10 minutes); `grade --calibrate` runs every
stage of every row and compares. docs/grading.md's matrix is `grade --readme`.

A sleep the article sets to 60 s is lowered (env) where a stage needs the
step's children or connections to end while it watches; the matrix says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grade.stages import IDS

P, F, S = "pass", "fail", "skip"
WSGI_SKIP = {"wsgi-apps": S, "environ": S, "body": S, "parity": S}


def _row(base: dict[str, str], **changes: str) -> dict[str, str]:
    out = dict(base)
    out.update({k.replace("_", "-"): v for k, v in changes.items()})
    return out


ALL_PASS = {i: P for i in IDS}
# the article's servers: no APP (the WSGI stages skip), garbage answered 200,
# SIGTERM kills them (Python's default), slow clients answered after one byte;
# one answer per connection framed by the close, a body for HEAD too
ARTICLE = _row(ALL_PASS, **WSGI_SKIP, bad_input=F, slow_clients=S, sigterm=F,
               keep_alive=F, pipelining=F, framing=F)
# a server that says `Connection: close` on every answer: keep-alive fails,
# pipelining skips (announced, not lost)
ONE_PER_CONNECTION = {"keep-alive": F, "pipelining": S}
ITERATIVE = _row(ARTICLE, concurrent=F, burst=F, zombie=S, sigchld=S, eagain=S)


@dataclass(frozen=True)
class Row:
    service: str
    step: str                        # what docs/grading.md calls it
    expect: dict[str, str]           # every stage's verdict
    prove: tuple[str, ...]           # what the test suite runs
    env: dict[str, str] = field(default_factory=dict)
    source: str | None = None        # build from this directory of the checkout
    image: str | None = None         # ... into this tag (not the user's `yours`)
    why: str = ""


ROWS: list[Row] = [
    Row("part1", "webserver1", ITERATIVE, ("concurrent", "bad-input", "hello")),
    Row("part3-iterative", "3a", ITERATIVE, ("concurrent", "eof")),
    Row("part3-iterative-sleep", "3b", _row(ITERATIVE, eof=F, fd_leak=S, slow_clients=F, emfile=F,
                                            close=F),
        ("concurrent", "eof"), env={"SLEEP": "2"},
        why="SLEEP=2 (60 in the article): its sleep before the close is what `eof` sees"),
    Row("part3-fork", "3c", _row(ARTICLE, eof=F, zombie=F, burst=F, eagain=F, close=F),
        ("eof", "zombie"), env={"SLEEP": "2"},
        why="SLEEP=2 (60 in the article): the children must exit while `zombie` watches"),
    Row("part3-fork-leaky", "3d", _row(ARTICLE, eof=F, fd_leak=F, zombie=F, burst=F, emfile=F,
                                       eagain=F, close=F),
        ("eof", "fd-leak", "zombie")),
    Row("part3-sigchld", "3e", _row(ARTICLE, eof=F, fd_leak=F, zombie=F, sigchld=F, burst=F,
                                    emfile=F, eagain=F, close=F),
        ("sigchld",), env={"SLEEP": "2"},
        why="SLEEP=2 (3 in the article's file)"),
    Row("part3-eintr", "3f", _row(ARTICLE, burst=F, eagain=F), ("burst", "zombie")),
    Row("part3-waitpid", "3g", _row(ARTICLE, eagain=F),
        ("concurrent", "fd-leak", "zombie", "sigchld", "burst")),
    Row("part2-wsgi", "webserver2", _row(ALL_PASS, **ONE_PER_CONNECTION, concurrent=F, burst=F,
                                         slow_clients=F, zombie=S, sigchld=S, eagain=S),
        ("wsgi-apps", "environ", "body", "parity", "concurrent", "keep-alive")),
    Row("part3-wsgi-wsgi", "webserver3h", _row(ALL_PASS, **ONE_PER_CONNECTION),
        ("zombie", "burst", "slow-clients", "emfile", "eagain", "sigterm")),
    Row("gunicorn-wsgi", "gunicorn, 2 sync workers",
        _row(ALL_PASS, **ONE_PER_CONNECTION, slow_clients=F, zombie=S, sigchld=S, eagain=S),
        ("slow-clients", "eagain", "keep-alive"),
        why="eagain skips: sync workers never fork per connection (the arbiter forks only to "
            "replace a worker), so fork() cannot run out under this load"),
    Row("gunicorn-gthread-wsgi", "gunicorn 27, gthread workers",
        _row(ALL_PASS, slow_clients=F, zombie=S, sigchld=S, eagain=S),
        ("keep-alive", "pipelining"),
        why="slow-clients fails: 2 workers x 4 threads, each thread reads a whole head, and "
            "10 slow clients hold all 8 (gunicorn 23 also failed pipelining and framing, a body "
            "after HEAD; 27.0.1 passes both)"),
    Row("busybox", "busybox httpd, in C",
        _row(ALL_PASS, **WSGI_SKIP, **ONE_PER_CONNECTION, sigterm=F, framing=F),
        ("hello", "zombie"),
        why="sigterm fails: busybox httpd has no SIGTERM handler, so it dies of the signal "
            "(143)"),
    Row("yours", "the starter in services/yours",
        _row(ALL_PASS, **ONE_PER_CONNECTION, body=F, parity=F, concurrent=F, burst=F,
             bad_input=F, slow_clients=F, sigterm=F, zombie=S, sigchld=S, eagain=S, framing=F),
        ("hello", "http", "wsgi-apps", "environ", "concurrent", "slow-clients"),
        source="services/yours", image="lsbaws/yours-starter:dev"),
    Row("part4-prefork-wsgi", "webserver4a, pre-forked",
        _row(ALL_PASS, **ONE_PER_CONNECTION, slow_clients=F, zombie=S, sigchld=S, eagain=S),
        ("slow-clients",)),
    Row("part4-evloop-wsgi", "webserver4b, event loops",
        _row(ALL_PASS, zombie=S, sigchld=S, eagain=S),
        ("slow-clients", "concurrent", "keep-alive", "pipelining", "close", "framing")),
]

NOTES = [
    "The article's servers skip `slow-clients`: one recv() and they answer, so no slow client "
    "holds them; and fail `sigterm`: without a handler SIGTERM kills them mid-request (143).",
    "webserver2, gunicorn and part 4 skip `zombie`, `sigchld` and `eagain`: they make no process "
    "per connection, so there is nothing to reap or to run out of (the evidence says so).",
    "An iterative server fails `burst`: the backlog fills while it waits for the first client, "
    "which waits for the others to connect.",
    "Part 4's columns: the article's servers fail `keep-alive` and `pipelining` (one answer "
    "per connection, its body framed by the close) and `framing` (a body after HEAD); `close` "
    "fails where `eof` does. webserver2, 3h, 4a, gunicorn's sync workers, busybox and the "
    "starter answer `Connection: close` every time: `keep-alive` fails and `pipelining` skips "
    "(the server announced it, nothing was lost). Only 4b and gthread keep connections. "
    "busybox and the starter fail `framing`: they send the body after a HEAD answer.",
]

BY_SERVICE = {r.service: r for r in ROWS}
SHORT = {"wsgi-apps": "apps", "environ": "env", "concurrent": "conc", "fd-leak": "fds",
         "zombie": "zomb", "sigchld": "chld", "bad-input": "bad", "slow-clients": "slow",
         "emfile": "emfile", "eagain": "eagain", "sigterm": "term", "parity": "parity",
         "hello": "hello", "http": "http", "body": "body", "eof": "eof", "burst": "burst",
         "keep-alive": "ka", "pipelining": "pipe", "close": "close", "framing": "frame"}
CELL = {P: "✓", F: "**✗**", S: "–"}


def readme_matrix() -> str:
    """The matrix docs/grading.md prints under "The article's servers, graded"."""
    head = "| server | " + " | ".join(f"`{SHORT[i]}`" for i in IDS) + " |"
    rows = [head, "|---|" + "---|" * len(IDS)]
    for r in ROWS:
        name = f"{r.service} ({r.step})" + (" " + " ".join(f"{k}={v}" for k, v in r.env.items())
                                             if r.env else "")
        rows.append(f"| {name} | " + " | ".join(CELL[r.expect[i]] for i in IDS) + " |")
    notes = [f"- {r.service}: {r.why}" for r in ROWS if r.why] + [f"- {n}" for n in NOTES]
    legend = ("✓ pass, **✗** FAIL, – skip (the check cannot be made on that server, and the "
              "evidence says why). Columns: " + ", ".join(f"`{SHORT[i]}` {i}" for i in IDS
                                                         if SHORT[i] != i) + ".")
    return "\n".join(rows + ["", legend, ""] + notes)


def differences(row: Row, got: dict) -> list[str]:
    """'stage: expected X, got Y (evidence)' for each verdict that differs."""
    return [f"{row.service} {i}: expected {row.expect[i]}, got {r.verdict} ({r.evidence})"
            for i, r in got.items() if r.verdict != row.expect[i]]


def grade_rows(engine, rows, full: bool = False, jobs: int = 2, rows_at_once: int = 2,
               say=print, join_timeout: float | None = None) -> dict[str, tuple[dict, float, str]]:
    """Grade each row on its own copies (the stages it proves, or all with
    `full`), `rows_at_once` rows at a time, the longest first; every copy is
    removed afterwards. Returns service -> (results by stage, seconds, error)."""
    import threading
    import time

    from instrument.copies import Copies

    from grade.checks import Ctx
    from grade.runner import Progress, run
    from grade.target import resolve

    copies = Copies(engine)
    copies.sweep()
    rows = sorted(rows, key=lambda r: -len(IDS if full else r.prove))
    out: dict[str, tuple[dict, float, str]] = {}
    slots = threading.Semaphore(rows_at_once)

    def one(row):
        with slots:
            t0 = time.monotonic()
            try:
                target = resolve(engine, row.service, row.env, say=lambda _: None,
                                 source=row.source, image=row.image)
                got = run(Ctx(target, copies), list(IDS if full else row.prove),
                          Progress(row.service, 0, enabled=False), jobs, start_check=False)
                out[row.service] = (got, time.monotonic() - t0, "")
            except Exception as error:  # noqa: BLE001 - reported in its row
                out[row.service] = ({}, time.monotonic() - t0, f"{type(error).__name__}: {error}")
            say(f"calibrate: {row.service} graded in {out[row.service][1]:.0f} s")

    threads = [threading.Thread(target=one, args=(r,)) for r in rows]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(join_timeout)
    finally:
        copies.remove_all()
    for row in rows:
        out.setdefault(row.service, ({}, 0.0, "not finished in time"))
    return out


def calibrate(engine, full: bool = False, only: list[str] | None = None, jobs: int = 2,
              rows_at_once: int = 2, say=print) -> int:
    """Grade every row, print the verdicts against the expected ones and the
    time per row; 1 if any differs."""
    rows = [r for r in ROWS if not only or r.service in only]
    out = grade_rows(engine, rows, full, jobs, rows_at_once, say)
    status = 0
    for row in sorted(rows, key=lambda r: -len(IDS if full else r.prove)):
        got, seconds, error = out[row.service]
        cells = " ".join(f"{SHORT[i]}={'.' if i not in got else got[i].verdict[0].upper()}"
                         for i in IDS)
        say(f"{row.service:<24} {seconds:4.0f} s  {error or cells}")
        for line in differences(row, got) if not error else [error]:
            status = 1
            say(f"  DIFFERS {line}")
    return status
