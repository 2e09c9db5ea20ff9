"""runner: the loads, and what is read while and after they run.

Each load kind in experiments.py (`load["kind"]`) is one function here that
restarts the service fresh, sends the bounded load, and returns an
observation (a plain dict) for lab.verdict. The chart sweeps (CHARTS) reuse
the same pieces with more points.

Every load is bounded in count (the experiment's client count) and in time
(deadlines on every wait; client3's own --timeout and --hold), and is aimed
only at a compose service by name.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

from instrument import client3, procs, wire
from instrument.engine import PORT, TWIN_PORT, EngineError, Service, Twin
from instrument.waiting import TimedOut, poll

from lab.experiments import BY_ID, Chart, Experiment, Series
from lab.verdict import Verdict, judge

HELLO = b"Hello"
REAPED = "terminated with status"  # what grim_reaper writes for each child it waited for
HELD = "Connections held open by the parent:"  # what webserver3d writes after each fork
FAILURES = (OSError, subprocess.SubprocessError, ValueError, TimedOut, EngineError)


class NullUi:
    """What the runner tells the user; lab.__main__ draws it with rich."""

    def phase(self, text: str, total: float | None = None) -> None:
        pass

    def update(self, done: float, total: float | None = None) -> None:
        pass


# ---------------------------------------------------------------- results

@dataclass
class Outcome:
    experiment: Experiment
    observation: dict
    verdict: Verdict
    seconds: float
    status: str = ""                 # the container's state after the load
    exit_code: int | None = None
    table: list[procs.Proc] = field(default_factory=list)
    server_pid: int | None = None
    fds: int | None = None
    nofile: str | None = None

    def as_dict(self) -> dict:
        shown, more = procs.excerpt(self.table, 12)
        return {
            "id": self.experiment.id, "step": self.experiment.step,
            "claims": list(self.experiment.claims), "service": self.experiment.service,
            "title": self.experiment.title, "load": self.experiment.load_text,
            "expects": self.experiment.expects, "agrees": self.verdict.agrees,
            "observed": self.verdict.observed, "verdict": self.verdict.sentence,
            "observation": self.observation, "seconds": round(self.seconds, 1),
            "status": self.status, "exit_code": self.exit_code, "server_pid": self.server_pid,
            "fds": self.fds, "nofile": self.nofile,
            "processes": [[p.pid, p.ppid, p.state, p.args] for p in shown], "processes_more": more,
            "zombies_in_container": len(procs.zombies(self.table)),
        }


def run_experiment(svc: Service, exp: Experiment, ui=None) -> Outcome:
    ui = ui or NullUi()
    t0 = time.monotonic()
    try:
        obs = LOADS[exp.load["kind"]](svc, exp.load, ui)
    except FAILURES as error:
        obs = {"service": svc.name, "error": f"{type(error).__name__}: {error}"}
    obs.setdefault("service", svc.name)
    verdict = judge(exp, obs)
    outcome = Outcome(exp, obs, verdict, time.monotonic() - t0)
    ui.phase(f"reading {svc.name}'s process table")
    state = svc.state()
    outcome.status, outcome.exit_code = state["Status"], state.get("ExitCode")
    look = svc.look() if state["Status"] == "running" else None
    if look:
        outcome.table = look.table
        outcome.server_pid, outcome.fds, outcome.nofile = look.server_pid, look.fds, look.nofile
    return outcome


# ---------------------------------------------------------------- the wire

def hello(host: str, port: int, n: int, timeout: float, keep_open: bool = False,
          during=None) -> list[wire.Reply]:
    """`n` clients at once, each reading until the body's first word arrives."""
    return wire.parallel(host, port, n, wire.get("/hello", host), timeout, until=HELLO,
                         keep_open=keep_open, during=during)


def unanswered(replies: list[wire.Reply]) -> list[str]:
    return [r.error or f"no answer ({r.data[:60]!r}, {r.summary()})"
            for r in replies if not r.matched]


def curl(url: str, max_time: float) -> tuple[int, str, float]:
    t = time.monotonic()
    result = subprocess.run(["curl", "-sS", "--max-time", f"{max_time:g}", url],
                            capture_output=True, text=True, timeout=max_time + 10)
    return result.returncode, result.stdout, time.monotonic() - t


def raise_nofile(need: int) -> None:
    """The lab holds many sockets itself (the descriptor sweep)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


# ---------------------------------------------------------------- the loads

def twin_parallel(svc: Service, load: dict, ui) -> dict:
    """N clients at once on a short-sleep twin: when is each answered?"""
    sleep, n = float(load["sleep"]), int(load["clients"])
    ui.phase(f"restarting {svc.name}")
    svc.restart()
    ui.phase(f"starting a SLEEP={sleep:g} twin of {load['script']} on port {TWIN_PORT}")
    backlog: list[int | None] = [None]
    with Twin(svc, load["script"], TWIN_PORT, SLEEP=sleep) as twin:
        ui.phase(f"{n} clients at once on the twin", total=n)

        def look(start):
            """The most connections seen waiting in the twin's listen backlog,
            read again and again until the last client could be answered."""
            while time.monotonic() < start + n * sleep:
                queue = svc.listen_queue(TWIN_PORT)
                if queue is not None:
                    backlog[0] = max(backlog[0] or 0, queue)
                time.sleep(0.1)

        replies = hello(svc.name, TWIN_PORT, n, timeout=n * sleep + 10, keep_open=True,
                        during=look)
        ui.update(sum(r.matched for r in replies), n)
        kids = procs.children(svc.processes(), twin.pid)  # alive or a zombie: each served one
        for r in replies:
            r.close()
        ui.phase("stopping the twin")
    errors = unanswered(replies)
    obs = {"service": svc.name, "clients": n, "sleep": sleep, "server_pid": twin.pid,
           "answers": [r.answered for r in replies],
           "connects": [r.connected for r in replies if r.connected is not None],
           "backlog": backlog[0], "children_of_server": len(kids)}
    if errors:
        obs["errors"] = errors[:5]
    return obs


def parallel_hold(svc: Service, load: dict, ui) -> dict:
    """N clients at once on the service itself; who serves them?"""
    n = int(load["clients"])
    sleep = float(svc.env().get("SLEEP", load["sleep"]))
    ui.phase(f"restarting {svc.name}")
    server = svc.restart()
    ui.phase(f"{n} clients at once on {svc.name}", total=n)
    replies = hello(svc.name, PORT, n, timeout=min(sleep / 2, 30), keep_open=True)
    ui.update(sum(r.matched for r in replies), n)
    ui.phase(f"reading {svc.name}'s process table")
    look = svc.look(server.pid)
    kids = procs.children(look.table, server.pid) if look else []
    for r in replies:
        r.close()
    obs = {"service": svc.name, "clients": n, "sleep": sleep, "server_pid": server.pid,
           "answers": [r.answered for r in replies], "children_of_server": len(kids)}
    if errors := unanswered(replies):
        obs["errors"] = errors[:5]
    return obs


def curl_hang(svc: Service, load: dict, ui) -> dict:
    ui.phase(f"restarting {svc.name}")
    server = svc.restart()
    ui.phase(f"curl --max-time {load['max_time']} http://{svc.name}:{PORT}/hello")
    rc, out, took = curl(f"http://{svc.name}:{PORT}/hello", load["max_time"])
    return {"service": svc.name, "curl_rc": rc, "curl_out": out, "seconds": took,
            "fds": svc.fds(server.pid)}  # the connection curl gave up on is still held


def flood(svc: Service, load: dict, ui) -> dict:
    """client3, every connection held, until the server dies (or the deadline)."""
    n, deadline = int(load["clients"]), float(load["deadline"])
    ui.phase(f"restarting {svc.name}")
    server = svc.restart()
    look = svc.look(server.pid)
    if load["watch"] == "fds":
        limit, what = (look.nofile if look else None), "open descriptors"
    else:
        limit, what = (look.pids_max if look else None), "processes"
    total = int(limit) if limit and limit.isdigit() else None
    ui.phase(f"client3 --max-clients={n}: {what} of {svc.name} (limit {limit})", total=total)
    running = client3.start("--host", svc.name, "--port", str(PORT), "--max-clients", str(n),
                            "--max-conns", "1", "--hold", str(deadline + 10),
                            "--timeout", str(deadline))
    peak, t0, exited = 0, time.monotonic(), False
    try:
        while time.monotonic() - t0 < deadline:
            if svc.state()["Status"] != "running":
                exited = True
                break
            look = svc.look(server.pid)
            value = (look.fds if load["watch"] == "fds" else len(look.table)) if look else None
            if value:
                peak = max(peak, value)
                ui.update(value, total)
            time.sleep(0.3)
        took = time.monotonic() - t0
    finally:
        ui.phase("stopping client3")
        client3.stop(running)
    state = svc.state()
    logs = svc.logs_since_start()
    return {"service": svc.name, "clients": n, "exited": exited,
            "exit_code": state.get("ExitCode") if exited else None, "seconds": took,
            "crash": procs.crash_line(logs), "peak": peak, "peak_what": what, "limit": limit,
            "held": procs.last_count(logs, HELD)}


def one_request(svc: Service, load: dict, ui) -> dict:
    ui.phase(f"restarting {svc.name}")
    server = svc.restart()
    ui.phase(f"GET /hello on {svc.name}")
    reply = wire.exchange(svc.name, PORT, wire.get("/hello", svc.name), timeout=5, until=HELLO)
    if not reply.matched:
        return {"service": svc.name, "error": unanswered([reply])[0]}
    ui.phase("waiting for the child to exit")

    def zombie():
        look = svc.look(server.pid)
        return procs.zombies(look.table, server.pid) if look else []

    found = poll(zombie, 10) or []
    now = svc.server()
    obs = {"service": svc.name, "clients": 1, "zombies": len(found),
           "survived": svc.running() and now is not None and now.pid == server.pid}
    if found:
        z = found[0]
        obs["sample"] = {"pid": z.pid, "ppid": z.ppid, "state": z.state, "args": z.args}
    return obs


def eintr(svc: Service, load: dict, ui) -> dict:
    """The ACCEPT=python twin survives SIGCHLDs; the server itself dies of EINTR."""
    n = int(load["twin_requests"])
    ui.phase(f"restarting {svc.name}")
    svc.restart()
    ui.phase(f"an ACCEPT=python twin on port {TWIN_PORT}: {n} curls, one at a time", total=n)
    retry = {"requests": n, "answered": 0}
    with Twin(svc, "webserver3e.py", TWIN_PORT, ACCEPT="python",
              SLEEP=load["twin_sleep"]) as twin:
        for i in range(n):
            rc, out, _ = curl(f"http://{svc.name}:{TWIN_PORT}/hello", 10)
            retry["answered"] += rc == 0 and out.strip() == "Hello, World!"
            poll(lambda k=i + 1: twin.log().count(REAPED) >= k, 10, 0.1)
            ui.update(i + 1, n)
            if not twin.alive():
                break
        log = twin.log()
        retry.update(alive=twin.alive(), reaped=log.count(REAPED),
                     interrupted="Interrupted system call" in log)
    ui.phase(f"one curl on {svc.name}:{PORT}; waiting for SIGCHLD to interrupt accept()")
    t0 = time.monotonic()
    curl(f"http://{svc.name}:{PORT}/hello", 15)
    exited = poll(lambda: svc.state()["Status"] != "running", 20)
    logs = svc.logs_since_start()
    crash = {"exited": bool(exited), "seconds": time.monotonic() - t0,
             "exit_code": svc.state().get("ExitCode"), "crash": procs.crash_line(logs),
             # stdout and stderr reach the log through two pipes: their order in
             # it is not the order they were written in, so no "before" here
             "reaped": next((ln.strip() for ln in logs.splitlines() if REAPED in ln), "")}
    return {"service": svc.name, "retry": retry, "crash": crash}


def burst(svc: Service, load: dict, ui, restart: bool = True) -> dict:
    """client3 --burst: connect all, release all; then count what is left."""
    n = int(load["clients"])
    if restart:
        ui.phase(f"restarting {svc.name}")
        svc.restart()
    look = svc.look()
    server = look.server if look else None
    table = look.table if look else []
    if server is None:
        return {"service": svc.name, "clients": n, "error": "no server process before the load"}
    baseline = {p.pid for p in procs.children(table, server.pid)}  # gunicorn's workers
    ui.phase(f"client3 --max-clients {n} --burst on {svc.name}")
    try:
        report = client3.run_json("--host", svc.name, "--port", str(PORT), "--max-clients",
                                  str(n), "--max-conns", "1", "--hold", str(load.get("hold", 2)),
                                  "--burst", "--timeout", "10", timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        return {"service": svc.name, "clients": n, "error": f"{type(error).__name__}: {error}"}
    ui.phase("waiting until every child has exited (reaped or a zombie)", total=n)
    last, peak, zombies, died = None, 0, 0, False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if svc.state()["Status"] != "running":
            died = True
            break
        look = svc.look(server.pid)
        if look is None:
            time.sleep(0.2)
            continue
        table = look.table
        kids = [p for p in procs.children(table, server.pid) if p.pid not in baseline]
        zombies = len(procs.zombies(table, server.pid))
        peak = max(peak, zombies)
        live = [p for p in kids if not p.zombie]
        ui.update(n - len(live), n)
        signature = sorted((p.pid, p.state) for p in kids)
        if not live and signature == last:
            break
        last = signature
        time.sleep(0.3)
    survived = not died and (svc.server() or procs.Proc(0, 0, "", "")).pid == server.pid
    obs = {"service": svc.name, "clients": n, "connected": report["connected"],
           "answered": report["answered"], "failed": report["failed"],
           "errors": report.get("errors", {}), "zombies": 0 if died else zombies,
           "peak_zombies": peak, "survived": survived}
    if not survived:
        obs["crash"] = procs.crash_line(svc.logs_since_start()) if died else "replaced"
    elif zombies and load.get("nudge"):
        obs["reaped_by_next"] = nudge(svc, server.pid, ui)
    return obs


def nudge(svc: Service, server_pid: int, ui) -> int:
    """A reaper left zombies: send one more request (its child's SIGCHLD runs
    the handler again) and count how many of them are reaped then.

    A SIGCHLD that arrives after the interpreter last checked for signals but
    before accept(2) blocks is handled only when accept returns: the zombies
    wait for the next connection. The lab says so instead of guessing."""
    look = svc.look(server_pid)
    before = {p.pid for p in procs.zombies(look.table, server_pid)} if look else set()
    ui.phase(f"{len(before)} zombies left: one more GET, to see whether the next SIGCHLD "
             "reaps them")
    wire.exchange(svc.name, PORT, wire.get("/hello", svc.name), timeout=10, until=HELLO)

    def left() -> set[int]:
        look = svc.look(server_pid)
        return before & {p.pid for p in procs.zombies(look.table, server_pid)} if look else before

    poll(lambda: not left(), 10, 0.3)
    return len(before - left())


LOADS = {
    "twin_parallel": twin_parallel,
    "parallel": parallel_hold,
    "curl_hang": curl_hang,
    "flood": flood,
    "one_request": one_request,
    "eintr": eintr,
    "burst": burst,
}


# ---------------------------------------------------------------- the chart sweeps

ROW_KEYS = ("zombies", "peak_zombies", "connected", "answered", "failed", "survived", "crash",
            "error", "reaped_by_next")


def zombie_sweep(svc: Service, series: Series, points, ui, known=None) -> list[dict]:
    """client3 --burst with each client count. `known`: observations of the
    same load the experiments already made ({(service, clients): obs}); they
    are used as they are, not made again."""
    rows, dirty = [], True
    for n in points:
        if (svc.name, n) in (known or {}):
            obs = known[svc.name, n]
            rows.append({"clients": n, **{k: obs.get(k) for k in ROW_KEYS},
                         "from": series.experiment})
            continue
        if dirty:
            ui.phase(f"{series.label}: restarting {svc.name}")
            svc.restart()
        nudge_too = BY_ID[series.experiment].load.get("nudge", False)
        obs = burst(svc, {"clients": n, "nudge": nudge_too}, ui, restart=False)
        rows.append({"clients": n, **{k: obs.get(k) for k in ROW_KEYS}})
        dirty = bool(obs.get("zombies") or not obs.get("survived") or obs.get("error"))
    return rows


def fd_sweep(svc: Service, series: Series, points, ui, known=None) -> dict:
    ui.phase(f"{series.label}: restarting {svc.name}")
    server = svc.restart()
    raise_nofile(max(points) + 64)
    look = svc.look(server.pid)
    rows, socks = [{"connections": 0, "fds": look.fds if look else None}], []
    nofile = look.nofile if look else None
    try:
        for k in points:
            ui.phase(f"{series.label}: holding {k} connections to {svc.name}", total=k)
            while len(socks) < k:
                s = socket.create_connection((svc.name, PORT), timeout=10)
                s.sendall(wire.get("/hello", svc.name))
                socks.append(s)
                ui.update(len(socks), k)

            def accepted(k=k):
                look = svc.look(server.pid)
                done = (look and len(procs.children(look.table, server.pid)) >= k
                        and look.queue(PORT) == 0)
                return look if done else None

            look = poll(accepted, 15)
            if not svc.running():
                rows.append({"connections": k, "fds": None,
                             "crash": procs.crash_line(svc.logs_since_start())})
                break
            look = look or svc.look(server.pid)
            rows.append({"connections": k, "fds": look.fds if look else None})
    finally:
        for s in socks:
            s.close()
    return {"rows": rows, "nofile": nofile}


def answer_sweep(svc: Service, series: Series, points, ui, known=None) -> list[dict]:
    sleep = float(series.params["sleep"])
    ui.phase(f"{series.label}: restarting {svc.name}")
    svc.restart()
    rows = []
    with Twin(svc, series.params["script"], TWIN_PORT, SLEEP=sleep):
        for n in points:
            ui.phase(f"{series.label}: {n} clients at once (SLEEP={sleep:g} twin)", total=n)
            replies = hello(svc.name, TWIN_PORT, n, timeout=n * sleep + 10, keep_open=True)
            answers = [r.answered for r in replies if r.matched]
            ui.update(len(answers), n)
            rows.append({"clients": n, "answered": len(answers),
                         "last": max(answers) if answers else None,
                         "answers": sorted(answers)})
            for r in replies:  # each connection ends after its sleep: then the twin is idle
                r.finish(sleep + 10)
    return rows


# ---------------------------------------------------------------- part 4: slow clients, keep-alive

SLOW_HEAD = b"GET /hello HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"s" * 200 + b"\r\n\r\n"


class SlowClients:
    """`n` connections that each send one byte of a request head a second
    (none ever completes in a lab run) until the block ends."""

    def __init__(self, host: str, n: int):
        self.host, self.n = host, n
        self.release = threading.Event()
        self.started = threading.Semaphore(0)  # one per connection that sent its first byte
        self.threads = [threading.Thread(target=self._drip, daemon=True) for _ in range(n)]

    def _drip(self):
        try:
            sock = socket.create_connection((self.host, PORT), timeout=5)
        except OSError:
            self.started.release()  # counted: it will not drip
            return
        with sock:
            for i in range(len(SLOW_HEAD)):
                try:
                    sock.sendall(SLOW_HEAD[i:i + 1])
                except OSError:
                    return
                finally:
                    if i == 0:
                        self.started.release()
                if self.release.wait(1.0):
                    return

    def __enter__(self) -> SlowClients:
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + 10
        for _ in range(self.n):  # every slow connection is open and has sent a byte
            self.started.acquire(timeout=max(0.0, deadline - time.monotonic()))
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        for t in self.threads:
            t.join(5)


def _complete(data: bytes) -> bool:
    return wire.parse_response(data).complete


def answer_rate(host: str, seconds: float, clients: int = 4, per_connection: int = 1,
                timeout: float = 1.0) -> dict:
    """`clients` threads asking GET /hello for `seconds`, `per_connection`
    requests on a connection (the last one says Connection: close; a server
    that closes earlier gets a new connection): answers per second, the
    median answer time, and how many connections that took."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    times: list[float] = []
    connections = [0]

    def one():
        mine, conns = [], 0
        while time.monotonic() < deadline:
            try:
                sock = socket.create_connection((host, PORT), timeout=timeout)
            except OSError:
                time.sleep(0.05)
                continue
            conns += 1
            with sock:
                for i in range(per_connection):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    data = wire.request("GET", "/hello", host, close=i == per_connection - 1)
                    got = wire.exchange(host, PORT, data, timeout=min(timeout, left),
                                        until=_complete, sock=sock, keep_open=True)
                    if not got.matched:
                        break
                    mine.append(got.elapsed)
                    if got.sock is None or (got.header("Connection") or "").lower() == "close":
                        break
        with lock:
            times.extend(mine)
            connections[0] += conns

    threads = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + timeout + 5)
    times.sort()
    return {"answers": len(times), "rate": round(len(times) / seconds, 1),
            "p50": round(times[len(times) // 2], 4) if times else None,
            "connections": connections[0]}


def slow_clients(svc: Service, load: dict, ui) -> dict:
    """Answers to normal clients without, then with, slow clients held open."""
    n, seconds = int(load["slow"]), float(load["seconds"])
    ui.phase(f"restarting {svc.name}")
    svc.restart()
    ui.phase(f"{load['clients']} normal clients for {seconds:g} s")
    without = answer_rate(svc.name, seconds, int(load["clients"]))
    ui.phase(f"the same while {n} slow clients send a byte a second")
    with SlowClients(svc.name, n):
        held = answer_rate(svc.name, seconds, int(load["clients"]))
    return {"service": svc.name, "slow": n, "without": without, "with": held}


def keep_alive(svc: Service, load: dict, ui) -> dict:
    """Answers per second with a new connection per request, then with many
    requests per connection."""
    seconds, k = float(load["seconds"]), int(load["per_connection"])
    ui.phase(f"restarting {svc.name}")
    svc.restart()
    ui.phase(f"{load['clients']} clients, one request per connection, {seconds:g} s")
    close = answer_rate(svc.name, seconds, int(load["clients"]), 1)
    ui.phase(f"{load['clients']} clients, {k} requests per connection, {seconds:g} s")
    kept = answer_rate(svc.name, seconds, int(load["clients"]), k)
    return {"service": svc.name, "per_connection": k, "close": close, "kept": kept}


def slow_sweep(svc: Service, series: Series, points, ui, known=None) -> list[dict]:
    ui.phase(f"{series.label}: restarting {svc.name}")
    svc.restart()
    rows = []
    for n in points:
        ui.phase(f"{series.label}: normal clients while {n} slow clients are held open")
        with SlowClients(svc.name, n):
            got = answer_rate(svc.name, 2.0)
        rows.append({"slow": n, **got})
    return rows


def keepalive_sweep(svc: Service, series: Series, points, ui, known=None) -> list[dict]:
    ui.phase(f"{series.label}: restarting {svc.name}")
    svc.restart()
    rows = []
    for k in points:
        ui.phase(f"{series.label}: {k} requests per connection")
        rows.append({"per_connection": k, **answer_rate(svc.name, 2.0, per_connection=k)})
    return rows


SWEEPS = {"zombie_sweep": zombie_sweep, "fd_sweep": fd_sweep, "answer_sweep": answer_sweep,
          "slow_sweep": slow_sweep, "keepalive_sweep": keepalive_sweep}
LOADS.update({"slow_clients": slow_clients, "keep_alive": keep_alive})


def run_chart(engine, chart: Chart, series: list[Series], points, ui, known=None) -> dict:
    """{series label: its rows, or {"error": what stopped it}}: a series that
    fails keeps its own error text and never stops the others."""
    data = {}
    for s in series:
        svc = engine.service(s.service)
        try:
            data[s.label] = SWEEPS[chart.kind](svc, s, points, ui, known)
        except FAILURES as error:
            data[s.label] = {"error": f"{type(error).__name__}: {error}"}
    return data
