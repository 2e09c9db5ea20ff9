"""The stages' checks. Each runs on its own copy of the target's image (see
instrument.copies), so one stage's leftovers (a zombie, a held descriptor, a
crash) never change another's result; hello runs on the first copy, the one
that shows the target starts at all.

A check returns a Result: pass, fail or skip, and the evidence in numbers.
Where a check cannot be made (no children to reap, not a WSGI server) it
skips, and the evidence says why: no stage passes vacuously.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from instrument import servers, wire
from instrument.copies import Copies, Copy, CopyError

from grade import stages as S
from grade.requests import BROWSER, HOST, MALFORMED, PARITY
from grade.target import GUNICORN_SERVICE, Target, grader_files

PORT = 8888
APP = {"wsgi": "lsbaws_grade_wsgi", "flask": "lsbaws_grade_flask",
       "pyramid": "lsbaws_grade_pyramid", "django": "lsbaws_grade_django"}
GREETING = {"wsgi": b"Hello from the grader's bare WSGI app!\n",
            "flask": b"Hello from the grader's Flask app!\n",
            "pyramid": b"Hello from the grader's Pyramid app!\n",
            "django": b"Hello from the grader's Django app!\n"}
APP_NAMES = {"wsgi": "bare WSGI", "flask": "Flask", "pyramid": "Pyramid", "django": "Django"}


@dataclass
class Result:
    verdict: str          # "pass" | "fail" | "skip"
    evidence: str
    seconds: float = 0.0


def ok(evidence: str) -> Result:
    return Result("pass", evidence)


def bad(evidence: str) -> Result:
    return Result("fail", evidence)


def skip(evidence: str) -> Result:
    return Result("skip", evidence)


class Ctx:
    """What every check gets: the target and a way to make copies of it."""

    def __init__(self, target: Target, copies: Copies):
        self.target = target
        self.copies = copies
        self._files = grader_files()
        self.basic: Copy | None = None
        self._made: list[Copy] = []   # this grade's copies (others may share `copies`)
        self._lock = threading.Lock()

    def copy(self, role: str, app: str | None = None, nofile: int | None = None,
             pids: int | None = 512, image: str | None = None, wait: bool = True) -> Copy:
        wsgi_app = APP.get(app) if app else None
        env = self.target.copy_env(wsgi_app)
        copy = self.copies.start(image or self.target.image, role, env=env, nofile=nofile,
                                 pids=pids, files=self._files if wsgi_app else None)
        with self._lock:
            self._made.append(copy)
        if wait:
            copy.wait_listening(S.LISTEN_TIMEOUT)
        return copy

    def release(self, stage: str) -> None:
        """Remove this grade's copies of one stage (role `stage` or `stage.*`)."""
        with self._lock:
            mine = [c for c in self._made if c.role == stage or c.role.startswith(stage + ".")]
            self._made = [c for c in self._made if c not in mine]
        for copy in mine:
            copy.remove()

    def release_all(self) -> None:
        with self._lock:
            mine, self._made = self._made, []
        for copy in mine:
            copy.remove()

    def app_copy(self, role: str, **kw) -> Copy:
        """A copy serving the grader's bare WSGI app when the target is a WSGI
        server (so /slow and /echo exist), else the image as it is."""
        return self.copy(role, app="wsgi" if self.target.wsgi else None, **kw)


# ---------------------------------------------------------------- helpers

def answered(data: bytes) -> bool:
    """A whole response: its head, and its framed body (or, framed by the
    close, at least one body byte)."""
    resp = wire.parse_response(data)
    if not resp.status or not resp.complete:
        return False
    framed = resp.header("Content-Length") is not None or \
        "chunked" in (resp.header("Transfer-Encoding") or "").lower()
    return framed or bool(resp.body) or resp.status in (204, 304)


def status_line(data: bytes) -> bool:
    return b"\r\n" in data or len(data) > 64


def get(copy: Copy, path: str = "/hello", timeout: float = S.ANSWER_TIMEOUT,
        **kw) -> wire.Reply:
    return wire.exchange(copy.address(), PORT, wire.request("GET", path, HOST), timeout,
                         until=answered, **kw)


def fmt(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def alive(copy: Copy, server_pid: int | None) -> tuple[bool, str]:
    """Is the same server process still there? (False, why) if not."""
    if not copy.running():
        st = copy.state()
        return False, (f"the server exited (container status {st.get('ExitCode')}): "
                       f"{copy.crash_line()}")
    look = copy.look()
    if look is None:
        time.sleep(0.5)  # it is stopping: let the engine say how it ended
        st = copy.state()
        return False, (f"the server exited (container status {st.get('ExitCode')}): "
                       f"{copy.crash_line()}")
    if server_pid and look.server_pid != server_pid:
        return False, (f"the server process {server_pid} is gone"
                       + (f" (now {look.server_pid})" if look.server_pid else "")
                       + f": {copy.crash_line()}")
    return True, ""


def answers_within(copy: Copy, seconds: float) -> wire.Reply | None:
    """A GET /hello answered within `seconds` (retrying a refused connect)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        reply = get(copy, timeout=left)
        if reply.matched and reply.status:
            return reply
        if not (reply.refused or reply.reset or reply.eof):
            return None
        time.sleep(0.1)


def wait_children_exited(copy: Copy, server_pid: int, before: set[int],
                         timeout: float = S.CHILD_EXIT_WAIT):
    """Poll until every child made since `before` has exited (zombie or gone);
    returns the last look and how many are still running."""
    deadline = time.monotonic() + timeout
    look = copy.look()
    while look is not None:
        running = [p for p in look.children(server_pid) if p.pid not in before and not p.zombie]
        if not running or time.monotonic() > deadline:
            return look, len(running)
        time.sleep(0.1)
        look = copy.look()
    return None, 0


# ---------------------------------------------------------------- part 1

def check_hello(ctx: Ctx, copy: Copy) -> Result:
    # the browser's first: curl then waits for the EOF, which 3e's child sends
    # only as it exits, and that exit kills 3e (its lesson is sigchld's, not this)
    browser = wire.exchange(copy.address(), PORT, BROWSER, S.ANSWER_TIMEOUT, until=answered)
    url = f"http://{copy.address()}:{PORT}/hello"
    run = subprocess.run(["curl", "-sS", "--max-time", "3", "-o", "/dev/null", "-w",
                          "%{http_code} %{size_download}", url],
                         capture_output=True, text=True, timeout=15)
    code, _, size = run.stdout.strip().partition(" ")
    curl_note = " (no EOF: curl stopped after 3 s)" if run.returncode == 28 else ""
    problems = []
    if code != "200" or not size.isdigit() or int(size) == 0:
        problems.append(f"curl got {code or 'nothing'} with {size or 0} bytes "
                        f"({run.stderr.strip()[:80] or 'no error'})")
    if browser.status != 200 or not browser.body:
        problems.append(f"the browser-style request got {browser.summary()}")
    if problems:
        return bad("; ".join(problems))
    return ok(f"200 with a {size}-byte body from curl{curl_note} and "
              f"{len(browser.body)} bytes from a browser-style request in {fmt(browser.answered)}")


def check_http(ctx: Ctx) -> Result:
    import h11

    copy = ctx.copy("http")
    reply = wire.exchange(copy.address(), PORT, wire.request("GET", "/hello", HOST),
                          S.EOF_WAIT)
    if not reply.data:
        return bad(f"no response: {reply.summary()}")
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/hello",
                          headers=[("Host", HOST), ("Connection", "close")]))
    conn.send(h11.EndOfMessage())
    try:
        conn.receive_data(reply.data)
        if reply.eof or reply.reset:
            conn.receive_data(b"")
        head, body, done = None, 0, False
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                done = True
                break
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as error:
        first = reply.data.split(b"\r\n", 1)[0][:60]
        return bad(f"h11 refuses the response: {error} (it starts {first!r})")
    if head is None:
        return bad(f"h11 found no complete response head in {len(reply.data)} bytes")
    version = head.http_version.decode()
    framing = ("Content-Length" if any(k == b"content-length" for k, _ in head.headers)
               else "chunked" if any(k == b"transfer-encoding" for k, _ in head.headers)
               else "the close")
    if done:
        return ok(f"HTTP/{version} {head.status_code}, {len(head.headers)} headers, a {body}-byte "
                  f"body framed by {framing}")
    return ok(f"HTTP/{version} {head.status_code}, {len(head.headers)} headers, {body} body bytes "
              f"framed by {framing}, no EOF within {S.EOF_WAIT:g} s (see eof)")


# ---------------------------------------------------------------- part 2

def _not_wsgi(ctx: Ctx) -> Result | None:
    if ctx.target.wsgi:
        return None
    return skip("not a WSGI server: its image sets no APP (module of module:app) to take "
                "an application from")


def check_wsgi_apps(ctx: Ctx) -> Result:
    if (no := _not_wsgi(ctx)) is not None:
        return no
    results: dict[str, str] = {}

    def one(kind):
        try:
            copy = ctx.copy(f"wsgi-apps.{kind}", app=kind)
        except CopyError as error:
            results[kind] = f"did not start: {error}"
            return
        reply = get(copy, timeout=10)
        if reply.status == 200 and reply.body == GREETING[kind]:
            results[kind] = ""
        else:
            results[kind] = f"got {reply.summary()} {reply.body[:60]!r}"
        copy.remove()

    threads = [threading.Thread(target=one, args=(k,)) for k in APP]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    failed = {k: v for k, v in results.items() if v}
    missing = [k for k in APP if k not in results]
    if failed or missing:
        parts = [f"{APP_NAMES[k]}: {v}" for k, v in failed.items()]
        parts += [f"{APP_NAMES[k]}: no result" for k in missing]
        return bad("; ".join(parts))
    return ok("bare WSGI, Flask, Pyramid and Django each answered 200 with their own page")


def check_environ(ctx: Ctx) -> Result:
    if (no := _not_wsgi(ctx)) is not None:
        return no
    copy = ctx.copy("environ", app="wsgi")
    reply = wire.exchange(copy.address(), PORT, wire.request(
        "GET", "/environ?probe=1&x=%41", "grade.test:8888", [("X-Grade", "42")]),
        S.ANSWER_TIMEOUT, until=answered)
    if reply.status != 200:
        return bad(f"/environ got {reply.summary()}")
    try:
        report = json.loads(reply.body)
    except ValueError:
        return bad(f"/environ did not answer the grader's app's JSON: {reply.body[:80]!r}")
    if report["problems"]:
        n = len(report["problems"])
        return bad(f"{n} problem{'s' * (n > 1)}: " + "; ".join(report["problems"][:4]))
    return ok(f"{len(report['keys'])} keys; every PEP 3333 key present with its type and value")


def check_body(ctx: Ctx) -> Result:
    if (no := _not_wsgi(ctx)) is not None:
        return no
    copy = ctx.copy("body", app="wsgi")
    body = os.urandom(S.BODY_SIZE)
    reply = wire.exchange(copy.address(), PORT, wire.request(
        "POST", "/echo", HOST, [("Content-Type", "application/octet-stream")], body),
        10, until=answered)
    if reply.status != 200:
        how = "reset" if reply.reset else reply.summary()
        return bad(f"no answer from the app for a {len(body):,}-byte POST: {how} "
                   "(the server stopped reading the body?)")
    try:
        got = json.loads(reply.body)
    except ValueError:
        return bad(f"/echo did not answer the grader's app's JSON: {reply.body[:80]!r}")
    if got["length"] != len(body) or got["sha256"] != hashlib.sha256(body).hexdigest():
        return bad(f"the app got {got['length']:,} of {len(body):,} bytes"
                   + ("" if got["length"] != len(body) else ", different bytes"))
    return ok(f"the app read all {len(body):,} bytes (SHA-256 equal)")


def check_parity(ctx: Ctx) -> Result:
    if (no := _not_wsgi(ctx)) is not None:
        return no
    gunicorn = next((s for s in servers.servers() if s.name == GUNICORN_SERVICE), None)
    if gunicorn is None:
        return skip(f"no {GUNICORN_SERVICE} service in compose.yaml to compare with")
    try:
        ctx.copies.client.images.get(gunicorn.image)
    except Exception:
        return skip(f"no gunicorn image {gunicorn.image} to compare with: "
                    f"`docker compose build {GUNICORN_SERVICE}`")
    copies: dict[str, Copy] = {}
    errors: dict[str, str] = {}

    def start(role, image):
        try:
            copies[role] = ctx.copy(f"parity.{role}", app="wsgi", image=image)
        except CopyError as error:
            errors[role] = str(error)

    threads = [threading.Thread(target=start, args=a)
               for a in (("target", None), ("gunicorn", gunicorn.image))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if "gunicorn" in errors:
        return skip(f"the gunicorn copy did not start: {errors['gunicorn']}")
    if "target" in errors:
        return bad(f"the copy with the grader's app did not start: {errors['target']}")

    def seen(copy, data):
        reply = wire.exchange(copy.address(), PORT, data, S.ANSWER_TIMEOUT, until=answered)
        resp = reply.response()
        ctype = (resp.header("Content-Type") or "").replace(" ", "").lower()
        return resp.status, ctype, resp.body

    differ = []
    for label, data in PARITY:
        ours, theirs = seen(copies["target"], data), seen(copies["gunicorn"], data)
        if ours != theirs:
            differ.append(f"{label}: {_difference(ours, theirs)}")
    if differ:
        return bad(f"{len(differ)} of {len(PARITY)} answers differ from gunicorn's: "
                   + "; ".join(differ[:2]))
    return ok(f"{len(PARITY)} requests answered as gunicorn answers them (status, content type, "
              "body)")


def _difference(ours, theirs) -> str:
    """The first thing that differs, said briefly."""
    if ours[0] != theirs[0]:
        return f"status {ours[0]}, gunicorn {theirs[0]}"
    if ours[1] != theirs[1]:
        return f"content type {ours[1] or 'none'}, gunicorn {theirs[1] or 'none'}"
    try:
        a, b = json.loads(ours[2]), json.loads(theirs[2])
        key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        return f"the app saw {key} {a.get(key)!r}, under gunicorn {b.get(key)!r}"
    except (ValueError, StopIteration, AttributeError):
        return f"body {ours[2][:40]!r}, gunicorn {theirs[2][:40]!r}"


# ---------------------------------------------------------------- part 3

def check_concurrent(ctx: Ctx) -> Result:
    copy = ctx.copy("concurrent")
    silent = socket.create_connection((copy.address(), PORT), timeout=5)
    try:
        time.sleep(0.3)  # accepted (or queued) before the second one comes
        reply = get(copy, timeout=S.CONCURRENT_WITHIN)
    finally:
        silent.close()
    if reply.matched and reply.status:
        return ok(f"answered in {fmt(reply.answered)} with another connection open and silent")
    return bad(f"no answer within {S.CONCURRENT_WITHIN:g} s while one connection was open and "
               f"silent ({reply.summary()})")


def check_eof(ctx: Ctx) -> Result:
    copy = ctx.copy("eof")
    reply = get(copy, timeout=S.ANSWER_TIMEOUT, keep_open=True)
    if not reply.matched:
        reply.close()
        return bad(f"no response within {S.ANSWER_TIMEOUT:g} s ({reply.summary()})")
    at = reply.answered
    if reply.closed:
        return ok("EOF with the response")
    reply.finish(S.EOF_WAIT)
    if not reply.closed:
        return bad(f"no EOF {S.EOF_WAIT:g} s after the response (the connection stays open)")
    after = reply.elapsed - at
    if after > S.EOF_WITHIN:
        return bad(f"EOF {after:.1f} s after the response")
    return ok(f"EOF {after:.2f} s after the response")


def check_fd_leak(ctx: Ctx) -> Result:
    copy = ctx.copy("fd-leak")
    get(copy)  # a warm-up request: lazily opened files count in the baseline
    time.sleep(0.3)
    look = copy.look()
    server, before = look.server_pid, look.server_fds
    kids = {p.pid for p in look.children(server)}
    lock, counts = threading.Lock(), {"answered": 0}
    deadline = time.monotonic() + S.FD_BUDGET

    def worker(n):
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            reply = get(copy)
            with lock:
                counts["answered"] += bool(reply.matched and reply.status)

    threads = [threading.Thread(target=worker, args=(S.FD_REQUESTS // 10,)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wait_children_exited(copy, server, kids)  # their work done: what the parent keeps
    still, why = alive(copy, server)
    if not still:
        return bad(f"{why} during {S.FD_REQUESTS} requests")
    after = before
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        look = copy.look(extra_pids=[server])
        after = look.fds.get(server, after) if look else after
        if after <= before + S.FD_MARGIN:
            break
        time.sleep(0.2)
    n = counts["answered"]
    text = (f"the server holds {after} descriptors after {S.FD_REQUESTS} requests "
            f"({n} answered), {before} before")
    if after > before + S.FD_MARGIN:
        return bad(text)
    if n < S.FD_REQUESTS // 2:
        return skip(f"only {n} of {S.FD_REQUESTS} requests answered in {S.FD_BUDGET:g} s (a slow "
                    f"server): too few to tell ({after} descriptors, {before} before)")
    return ok(text)


def _children_run(ctx: Ctx, role: str, requests: int, parallel: bool):
    """Requests, then wait for the children they made to exit and for the
    reaper's grace. Returns (copy, server pid, children seen, zombies,
    still running, cminflt grew, replies)."""
    copy = ctx.copy(role)
    look = copy.look()
    server = look.server_pid
    before = {p.pid for p in look.children(server)}
    cminflt0 = look.cminflt.get(server, 0)
    watch = copy.watch(0.05)
    seen_early: dict[int, str] = {}
    if parallel:
        replies = wire.parallel(copy.address(), PORT, requests, wire.request("GET", "/hello", HOST),
                                S.ANSWER_TIMEOUT, until=answered)
    else:
        # One at a time, as a person with curl: connect, let the server fork
        # (a child per connection forks at accept) and look, then send; the
        # child must be gone (or a zombie) before the next. Children that
        # live a millisecond are seen this way too.
        replies = []
        for _ in range(requests):
            try:
                sock = socket.create_connection((copy.address(), PORT), timeout=S.ANSWER_TIMEOUT)
            except OSError as error:
                replies.append(wire.Reply(error=str(error)))
                continue
            time.sleep(0.1)
            if (now := copy.look()) is not None:
                for p in now.children(server):
                    if p.pid not in before:
                        seen_early[p.pid] = p.state
            replies.append(wire.exchange("", PORT, wire.request("GET", "/hello", HOST),
                                         S.ANSWER_TIMEOUT, until=answered, sock=sock))
            wait_children_exited(copy, server, before, timeout=S.ONE_AT_A_TIME_WAIT)
    final, running = wait_children_exited(copy, server, before)
    if final is not None and not running:
        time.sleep(S.REAP_GRACE)
        final = copy.look()
    watch.stop()
    seen = {**seen_early, **watch.children_seen(server, before)}
    zombies = [p for p in final.children(server) if p.zombie and p.pid not in before] \
        if final else []
    for p in zombies:
        seen[p.pid] = p.state
    grew = bool(final and final.cminflt.get(server, 0) > cminflt0)
    return copy, server, seen, zombies, running, grew, replies, final


def check_zombie(ctx: Ctx) -> Result:
    copy, server, seen, zombies, running, grew, replies, final = _children_run(
        ctx, "zombie", S.ZOMBIE_REQUESTS, parallel=False)
    if final is None:
        return bad(f"the server exited: {copy.crash_line()}")
    n_ok = sum(1 for r in replies if r.matched)
    if zombies:
        return bad(f"{len(zombies)} zombie children {S.REAP_GRACE:g} s after the children of "
                   f"{S.ZOMBIE_REQUESTS} requests exited")
    if running:
        return skip(f"{running} children still running {S.CHILD_EXIT_WAIT:g} s after the answers "
                    "(a long SLEEP?): cannot tell whether they will be reaped")
    if not seen and not grew:
        return skip(f"no child process per request ({n_ok} of {S.ZOMBIE_REQUESTS} answered, "
                    f"{len(final.children(server))} long-lived children): nothing to reap")
    how = f"{len(seen)} children seen" if seen else \
        "the children were reaped: their page faults joined the server's cminflt"
    return ok(f"0 zombies {S.REAP_GRACE:g} s after {S.ZOMBIE_REQUESTS} requests ({how})")


def check_sigchld(ctx: Ctx) -> Result:
    copy, server, seen, zombies, running, grew, replies, final = _children_run(
        ctx, "sigchld", S.SIGCHLD_REQUESTS, parallel=False)
    still, why = alive(copy, server)
    if not still:
        return bad(f"{why}, after its first children exited")
    if not seen and not grew and not zombies:
        return skip("no child process: no SIGCHLD to survive")
    if running and not grew and not zombies:
        return skip(f"{running} children still running {S.CHILD_EXIT_WAIT:g} s after the "
                    "answers: no child has exited yet")
    reply = answers_within(copy, S.ANSWER_TIMEOUT)
    if reply is None:
        return bad("alive after its children exited, but no answer within "
                   f"{S.ANSWER_TIMEOUT:g} s")
    return ok(f"alive after {len(seen) or 'its'} children exited; the next request answered in "
              f"{fmt(reply.answered)}")


def check_burst(ctx: Ctx) -> Result:
    copy = ctx.copy("burst")
    look = copy.look()
    server = look.server_pid
    before = {p.pid for p in look.children(server)}
    watch = copy.watch(0.1)
    socks = _connect_all(copy.address(), S.BURST_CLIENTS, S.BURST_CONNECT)
    if len(socks) < S.BURST_CLIENTS:
        for sock in socks:
            sock.close()
        watch.stop()
        return bad(f"only {len(socks)} of {S.BURST_CLIENTS} clients could connect within "
                   f"{S.BURST_CONNECT:g} s: the listen backlog was full, and the server, busy "
                   "with one connected client that had not sent yet, did not accept")
    replies = wire.release(socks, wire.request("GET", "/hello", HOST), S.BURST_ANSWER,
                           until=answered)
    n_ok = sum(1 for r in replies if r.matched and r.status == 200)
    took = max((r.answered or 0) for r in replies)
    final, running = wait_children_exited(copy, server, before)
    if final is not None and not running:
        time.sleep(S.REAP_GRACE)
        final = copy.look()
    watch.stop()
    if final is None:
        return bad(f"{n_ok}/{S.BURST_CLIENTS} answered, then the server exited: "
                   f"{copy.crash_line()}")
    seen = watch.children_seen(server, before)
    zombies = [p for p in final.children(server) if p.zombie and p.pid not in before]
    kids = f"{len(set(seen) | {p.pid for p in zombies})} children seen" if seen or zombies \
        else "no child processes"
    text = (f"{n_ok}/{S.BURST_CLIENTS} answered in {fmt(took)}; {len(zombies)} zombies "
            f"{S.REAP_GRACE:g} s after ({kids})")
    if n_ok == S.BURST_CLIENTS and not zombies:
        return ok(text)
    return bad(text)


def _connect_all(host: str, n: int, within: float) -> list[socket.socket]:
    """`n` connections opened at once, each silent; those made within `within` s.
    (wire.burst connects one after the other with no overall deadline: a server
    that frees a backlog slot every REQUEST_TIMEOUT would keep it for minutes.)"""
    deadline = time.monotonic() + within
    socks: list[socket.socket] = []
    lock = threading.Lock()

    def one():
        try:
            sock = socket.create_connection((host, PORT),
                                            timeout=max(0.1, deadline - time.monotonic()))
        except OSError:
            return
        with lock:
            socks.append(sock)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + 1))
    with lock:
        return list(socks)


# ---------------------------------------------------------------- beyond

def check_bad_input(ctx: Ctx) -> Result:
    copy = ctx.copy("bad-input")
    budget = time.monotonic() + S.BAD_INPUT_BUDGET
    wrong, tried = [], 0
    for label, data in MALFORMED:
        if time.monotonic() > budget:
            break
        tried += 1
        reply = wire.exchange(copy.address(), PORT, data, S.BAD_INPUT_TIMEOUT, until=status_line)
        status = reply.status
        if status:
            if not (400 <= status < 500 or status in (501, 505)):
                wrong.append((label, reply.summary().replace(" (left open)", "")))
        elif not (reply.eof or reply.reset or reply.refused):
            wrong.append((label, f"no answer, left open {S.BAD_INPUT_TIMEOUT:g} s"))
        after = get(copy, timeout=3)
        if not (after.matched and after.status):
            return bad(f"after {label!r} the server no longer answers ({after.summary()}); "
                       f"{len(wrong)} of {tried} malformed requests were accepted before")
    if wrong:
        examples = ", ".join(f"{lb} got {how}" for lb, how in wrong[:3])
        return bad(f"{len(wrong)} of {tried} malformed requests not refused: {examples}")
    if tried < len(MALFORMED):
        return skip(f"only {tried} of {len(MALFORMED)} malformed requests sent within "
                    f"{S.BAD_INPUT_BUDGET:g} s, "
                    "each refused")
    return ok(f"all {tried} malformed requests refused (4xx or a close); the server answered "
              "after each")


def check_slow_clients(ctx: Ctx) -> Result:
    copy = ctx.copy("slow-clients")
    rest = b"ET /hello HTTP/1.1\r\nHost: grade.test\r\nX-Slow: " + b"s" * 40
    socks: list[socket.socket] = []
    stop = threading.Event()

    def open_one():
        try:
            s = socket.create_connection((copy.address(), PORT), timeout=3)
            s.sendall(b"G")
            socks.append(s)
        except OSError:
            pass

    opener = [threading.Thread(target=open_one) for _ in range(S.SLOW_CLIENTS)]
    for t in opener:
        t.start()
    for t in opener:
        t.join(5)

    def drip():
        i = 0
        while not stop.wait(1.0) and i < len(rest):
            for s in list(socks):
                try:
                    s.sendall(rest[i:i + 1])
                except OSError:
                    pass
            i += 1

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        time.sleep(1.5)
        waiting = [s for s in socks if not _has_answer(s)]
        if socks and not waiting:
            return skip(f"the server answered all {len(socks)} slow clients after their first "
                        "byte (it does not wait for the whole head): none was holding it")
        reply = get(copy, timeout=S.SLOW_WITHIN)
    finally:
        stop.set()
        for s in socks:
            s.close()
    held = f"{len(waiting)} slow clients still sending their head"
    if reply.matched and reply.status:
        return ok(f"answered in {fmt(reply.answered)} with {held}")
    return bad(f"no answer within {S.SLOW_WITHIN:g} s with {held} ({reply.summary()})")


def _has_answer(sock: socket.socket) -> bool:
    """Has the server answered (or closed) this connection already?"""
    import select

    try:
        return bool(select.select([sock], [], [], 0)[0])  # data, EOF or a reset to read
    except (OSError, ValueError):
        return True


def _survive(copy: Copy, server: int, load: str, extra: str = "") -> Result:
    still, why = alive(copy, server)
    if not still:
        return bad(f"{why} ({load}{extra})")
    reply = answers_within(copy, S.SURVIVE_WITHIN)
    if reply is None:
        return bad(f"alive but no answer within {S.SURVIVE_WITHIN:g} s after {load}{extra}")
    return ok(f"survived {load}{extra}; answered {fmt(reply.answered)} after they closed")


def check_emfile(ctx: Ctx) -> Result:
    copy = ctx.copy("emfile", nofile=S.EMFILE_NOFILE, pids=1024)
    look = copy.look()
    server, copy_fds0 = look.server_pid, look.server_fds or 0
    watch = copy.watch(0.1)
    replies = wire.parallel(copy.address(), PORT, S.EMFILE_CONNECTIONS,
                            wire.request("GET", "/hello", HOST), 8, until=answered,
                            keep_open=True)
    time.sleep(1.0)
    connected = sum(1 for r in replies if r.connected is not None)
    n_ok = sum(1 for r in replies if r.matched)
    still, why = alive(copy, server)
    for r in replies:
        r.close()
    watch.stop()
    peak = max(watch.peak_fds(server), copy_fds0)
    load = (f"{connected} connections held ({n_ok} answered), the server's descriptors peaking "
            f"at {peak} (nofile {S.EMFILE_NOFILE})")
    if not still:
        return bad(f"{why}; {load}")
    time.sleep(0.5)
    return _survive(copy, server, load)


def check_eagain(ctx: Ctx) -> Result:
    copy = ctx.copy("eagain", pids=S.EAGAIN_PIDS)
    look = copy.look()
    server, procs0 = look.server_pid, len(look.table)
    before = {p.pid for p in look.children(server)}
    watch = copy.watch(0.1)
    socks: list[socket.socket] = []
    lock = threading.Lock()

    def open_one():
        try:
            s = socket.create_connection((copy.address(), PORT), timeout=3)
            with lock:
                socks.append(s)
        except OSError:
            pass

    openers = [threading.Thread(target=open_one) for _ in range(S.EAGAIN_CONNECTIONS)]
    for t in openers:
        t.start()
    for t in openers:
        t.join(6)
    time.sleep(2.0)
    still, why = alive(copy, server)
    for s in socks:
        s.close()
    watch.stop()
    peak = max(watch.peak_procs(), procs0)
    seen = watch.children_seen(server, before)
    load = (f"{len(socks)} silent connections held, {peak} processes at the peak "
            f"(pids limit {S.EAGAIN_PIDS})" if watch.looks else
            f"{len(socks)} silent connections held (pids limit {S.EAGAIN_PIDS})")
    if peak > S.EAGAIN_PIDS + 2:
        return skip(f"the engine did not apply the pids limit: {load}")
    if not still:
        return bad(f"{why}; {load}")
    if not seen and peak <= procs0 + 1:
        return skip(f"no process was made for {len(socks)} held connections ({peak} processes "
                    "at the peak): fork() never ran out, EAGAIN cannot happen here")
    time.sleep(0.5)
    return _survive(copy, server, load)


def check_sigterm(ctx: Ctx) -> Result:
    copy = ctx.app_copy("sigterm")
    result: dict[str, wire.Reply] = {}
    if ctx.target.wsgi:
        def in_flight():
            result["r"] = wire.exchange(copy.address(), PORT,
                                        wire.request("GET", "/slow?seconds=1", HOST), 8)
        what = "GET /slow (1 s in the app)"
        t = threading.Thread(target=in_flight)
        t.start()
        time.sleep(0.4)
        sent = copy.kill("SIGTERM")
    else:
        what = "a request whose head was half sent"
        sock = socket.create_connection((copy.address(), PORT), timeout=8)
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: grade.test\r\n")
        time.sleep(0.4)
        sent = copy.kill("SIGTERM")

        def in_flight():
            try:
                time.sleep(0.3)
                result["r"] = wire.exchange("", PORT, [b"Connection: close\r\n\r\n"], 6, sock=sock)
            except OSError as error:
                result["r"] = wire.Reply(error=str(error))
        t = threading.Thread(target=in_flight)
        t.start()
    status, ended = copy.wait_exit(8)
    t.join(10)
    reply = result.get("r") or wire.Reply(error="no reply")
    answer = str(reply.status) if reply.status else reply.summary()
    if status is None:
        return bad(f"still running 8 s after SIGTERM; the request in flight ({what}): {answer}")
    took = ended - sent
    how = "killed by SIGTERM (143)" if status == 143 else f"status {status}"
    text = f"the request in flight ({what}) got {answer}; the server exited, {how}, {took:.1f} s after SIGTERM"
    if reply.status == 200 and status == 0 and took <= S.SIGTERM_WITHIN:
        return ok(text)
    return bad(text)


# ---------------------------------------------------------------- the table of checks

SHARED = {"hello": check_hello}   # runs on the first (basic) copy
OWN = {
    "http": check_http, "wsgi-apps": check_wsgi_apps, "environ": check_environ, "body": check_body,
    "parity": check_parity, "concurrent": check_concurrent, "eof": check_eof,
    "fd-leak": check_fd_leak, "zombie": check_zombie, "sigchld": check_sigchld,
    "burst": check_burst, "bad-input": check_bad_input, "slow-clients": check_slow_clients,
    "emfile": check_emfile, "eagain": check_eagain, "sigterm": check_sigterm,
}
assert set(SHARED) | set(OWN) == set(S.IDS), "every stage has its check"
