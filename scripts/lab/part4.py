"""part4: the loads and sweeps beyond the article (webserver4a, 4b): normal
clients' answers per second while slow clients hold connections open, and
with one or many requests per connection (keep-alive).

The clients are instrument.clients' (slow_clients, answer_rate); this
module only shapes what they measure into the lab's observations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from instrument import clients
from instrument.engine import PORT, Service

from lab.experiments import Series

# none ever completes in a lab run: 245 bytes at a byte a second
SLOW_HEAD = clients.slow_head("slow", pad=200)
SLOW_LIMIT = 600.0  # seconds a slow client may live at most; the block ends it long before


@contextmanager
def slow_held(host: str, n: int) -> Iterator[list[clients.SlowClient]]:
    """`n` slow clients (a byte of SLOW_HEAD a second), every one connected
    and past its first byte, until the block ends."""
    held = clients.slow_clients(host, PORT, n, data=SLOW_HEAD, interval=1.0, timeout=SLOW_LIMIT)
    try:
        yield held
    finally:
        clients.stop_all(held)


def answer_rate(host: str, seconds: float, n: int = 4, per_connection: int = 1) -> dict:
    """instrument.clients.answer_rate in the lab's shape (results.json):
    answers, rate (per second), p50 (s), connections."""
    got = clients.answer_rate(host, PORT, seconds, n, per_connection)
    p50 = got["p50"]
    return {"answers": got["answered"], "rate": round(got["rps"], 1),
            "p50": round(p50, 4) if p50 is not None else None,
            "connections": got["connections"]}


def slow_clients(svc: Service, load: dict, ui) -> dict:
    """Answers to normal clients without, then with, slow clients held open."""
    n, seconds = int(load["slow"]), float(load["seconds"])
    ui.phase(f"restarting {svc.name}")
    svc.restart()
    ui.phase(f"{load['clients']} normal clients for {seconds:g} s")
    without = answer_rate(svc.name, seconds, int(load["clients"]))
    ui.phase(f"the same while {n} slow clients send a byte a second")
    with slow_held(svc.name, n):
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
        with slow_held(svc.name, n):
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


PART4_LOADS = {"slow_clients": slow_clients, "keep_alive": keep_alive}
