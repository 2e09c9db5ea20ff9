"""loads: the part 3 loads, one function per load kind of experiments.py.

Each restarts the service fresh, sends its bounded load, and returns an
observation (a plain dict) for lab.verdict; lab.runner picks the function
by `load["kind"]` (LOADS). The helpers above them (hello, unanswered, curl,
raise_nofile) serve the chart sweeps too.

Every load is bounded in count (the experiment's client count) and in time
(deadlines on every wait; client3's own --timeout and --hold), and is aimed
only at a compose service by name.
"""

from __future__ import annotations

import resource
import subprocess
import time

from instrument import client3, procs, wire
from instrument.engine import PORT, TWIN_PORT, Service
from instrument.twin import Twin
from instrument.waiting import poll

HELLO = b"Hello"
REAPED = "terminated with status"  # what grim_reaper writes for each child it waited for
HELD = "Connections held open by the parent:"  # what webserver3d writes after each fork


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


PART3_LOADS = {
    "twin_parallel": twin_parallel,
    "parallel": parallel_hold,
    "curl_hang": curl_hang,
    "flood": flood,
    "one_request": one_request,
    "eintr": eintr,
    "burst": burst,
}
