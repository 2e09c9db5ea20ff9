"""Rows (medians of the rounds), ratios against the goals, and the tables."""

from __future__ import annotations

import statistics

from .comparisons import (
    COMPARISONS,
    FLASK_SHARE,
    PEER_GOALS,
    PEER_REPORTED,
    PEER_SERVERS,
    Comparison,
)
from .targets import describe


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def median_row(target: str, runs: list[dict], load: str, slow: int, key: str) -> dict:
    server, app = describe(target)
    if slow:
        server = f"{server}, {slow} slow clients"
    p50, p99 = _median(r["p50_ms"] for r in runs), _median(r["p99_ms"] for r in runs)
    cpu = _median(r.get("cpu_us") for r in runs)
    return {
        "target": target, "server": server,
        "app": app if load == "close" else f"{app}, keep-alive",
        "rps": round(statistics.median(r["rps"] for r in runs), 1),
        "p50_ms": None if p50 is None else round(p50, 3),
        "p99_ms": None if p99 is None else round(p99, 3),
        "errors": sum(r["errors"] for r in runs),
        "cpu_us_per_request": None if cpu is None else round(cpu, 1),
        "comparison": key, "load": load, "slow_clients": slow,
        "runs_rps": [r["rps"] for r in runs],
    }


def peer_row(target: str, runs: list[dict], load: str) -> dict:
    """bench --peers' row: {target, load, rps, p50_ms, p99_ms, errors,
    cpu_ms_per_1000, server, app, runs_rps} (CPU µs per request is the same
    number as CPU ms per 1,000 requests)."""
    row = median_row(target, runs, load, 0, "peers")
    server, app = describe(target)
    return {"target": target, "load": load, "rps": row["rps"], "p50_ms": row["p50_ms"],
            "p99_ms": row["p99_ms"], "errors": row["errors"],
            "cpu_ms_per_1000": row["cpu_us_per_request"], "server": server, "app": app,
            "runs_rps": row["runs_rps"]}


def verdict(comp: Comparison, ours: dict, theirs: dict) -> dict:
    ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else 0.0
    cpu_ours, cpu_theirs = ours.get("cpu_us_per_request"), theirs.get("cpu_us_per_request")
    return {"comparison": comp.key, "what": comp.what, "load": comp.load,
            "ours": ours["target"], "theirs": theirs["target"], "ratio": round(ratio, 2),
            "goal": comp.goal, "reached": ratio >= comp.goal,
            # how many times less CPU a request costs ours (the same measure, per request)
            "cpu_ratio": (round(cpu_theirs / cpu_ours, 2) if cpu_ours and cpu_theirs
                          else None)}


def table(rows: list[dict], verdicts: list[dict]) -> str:
    """The pairwise table: one line per comparison, A then B."""
    by = {(r["comparison"], r["target"], r["slow_clients"]): r for r in rows}
    lines = ["| comparison | load | server (service) | req/s | p50 | p99 | server CPU "
             "per request | ratio (req/s) | goal |",
             "|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        comp = next(c for c in COMPARISONS if c.key == v["comparison"])
        ours = by[(comp.key, comp.ours, comp.slow_clients)]
        theirs = by[(comp.key, comp.theirs, 0)]
        mark = "reached" if v["reached"] else "**not reached**"
        for i, row in enumerate((ours, theirs)):
            cpu = row.get("cpu_us_per_request")
            lines.append(
                f"| {comp.key if not i else ''} | {comp.load if not i else ''} | "
                f"{row['server']} ({row['target']}) | {row['rps']:,.0f} | "
                f"{_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} | "
                + (f"{cpu:,.0f} µs | " if cpu else "- | ")
                + (f"**{v['ratio']:.2f}x** | >= {comp.goal:g}x, {mark} |" if not i else " | |"))
    return "\n".join(lines)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def peer_verdicts(rows: list[dict]) -> list[dict]:
    """Every goal of PEER_GOALS (bare, and Flask at 75%) and the reported
    ratios, from the rows of one run: {ours, theirs, load, app, ratio, goal,
    reached (None: no goal), cpu_ratio (theirs' CPU per request / ours')}."""
    by = {(r["target"], r["load"]): r for r in rows}
    out = []
    for g in PEER_GOALS + PEER_REPORTED:
        for app in ("wsgi", "flask"):
            ours, theirs = by.get((f"{g.ours}-{app}", g.load)), by.get((f"{g.theirs}-{app}", g.load))
            if not ours or not theirs:
                continue
            goal = round(g.goal * (FLASK_SHARE if app == "flask" else 1.0), 2)
            ratio = round(ours["rps"] / theirs["rps"], 2) if theirs["rps"] else 0.0
            cpu_o, cpu_t = ours.get("cpu_ms_per_1000"), theirs.get("cpu_ms_per_1000")
            out.append({"ours": ours["target"], "theirs": theirs["target"], "load": g.load,
                        "app": app, "ratio": ratio, "goal": goal or None,
                        "reached": (ratio >= goal) if goal else None, "why": g.why,
                        "cpu_ratio": round(cpu_t / cpu_o, 2) if cpu_o and cpu_t else None})
    return out


def peer_table(rows: list[dict], verdicts: list[dict]) -> str:
    """Every server x load x app, then the goals as ratios."""
    order = {stem: i for i, (_, stem) in enumerate(PEER_SERVERS)}

    def key(r):
        stem = r["target"].rsplit("-", 1)[0]
        return (r["load"] != "close", r["app"] != "wsgi", order.get(stem, 99))

    lines = ["| load | app | server (service) | req/s | p50 | p99 | errors | "
             "CPU ms per 1,000 req |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=key):
        cpu = r.get("cpu_ms_per_1000")
        lines.append(f"| {r['load']} | {'bare' if r['app'] == 'wsgi' else r['app']} | "
                     f"{r['server']} ({r['target']}) | {r['rps']:,.0f} | {_ms(r['p50_ms'])} | "
                     f"{_ms(r['p99_ms'])} | {r['errors']} | "
                     + ("-" if cpu is None else f"{cpu:,.0f}") + " |")
    lines += ["", "| ours | against | load | req/s ratio | goal | CPU per request "
              "(theirs / ours) |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        if v["goal"] is None:
            mark = f"none ({v['why']})"
        else:
            mark = f">= {v['goal']:g}x, " + ("met" if v["reached"] else "**missed**")
        cpu = "-" if v["cpu_ratio"] is None else f"{v['cpu_ratio']:.2f}x"
        lines.append(f"| {v['ours']} | {v['theirs']} | {v['load']} | **{v['ratio']:.2f}x** | "
                     f"{mark} | {cpu} |")
    return "\n".join(lines)
