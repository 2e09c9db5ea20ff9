"""sweeps: the part 3 chart sweeps (lab.experiments CHARTS), the loads of
lab.loads again with more points: zombies per client count, the leaky
server's descriptors per connection held, answer times per client count.
"""

from __future__ import annotations

from instrument import procs, wire
from instrument.engine import PORT, TWIN_PORT, Service
from instrument.twin import Twin
from instrument.waiting import poll

from lab.experiments import BY_ID, Series
from lab.loads import burst, hello, raise_nofile

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
                s = wire.connect(svc.name, PORT, timeout=10)
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
