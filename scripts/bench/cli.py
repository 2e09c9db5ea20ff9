"""The command line: `bench` (ours against gunicorn, pair by pair) and
`bench --peers` (every server, both loads, both apps, one table)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

from . import __doc__ as DOC
from .comparisons import COMPARISONS, PEER_APPS, PEER_LOADS, PEER_SERVERS, peer_services
from .load import PATH, seconds
from .measure import CpuMeter, answers, limits, measure, print_run
from .table import median_row, peer_row, peer_table, peer_verdicts, table, verdict

REPORTS = "/lsbaws/reports"


def parse(argv):
    parser = argparse.ArgumentParser(prog="bench", description=DOC.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="measure just these services, once each "
                        "(the load: --load); default: every comparison")
    parser.add_argument("--peers", action="store_true", help="every server (ours and the "
                        "peers) x {close, keep-alive} x {bare, Flask}, one table")
    parser.add_argument("--only", help="comma-separated comparisons: "
                        + ",".join(c.key for c in COMPARISONS) + "; with --peers: service "
                        "stems (" + ",".join(stem for _, stem in PEER_SERVERS) + ")")
    parser.add_argument("--rounds", type=int, help="rounds (medians of them); default 3, "
                        "2 with --peers")
    parser.add_argument("--load", choices=("close", "keep-alive"), default="close",
                        help="for explicit targets")
    parser.add_argument("-d", "--duration", help="per run (wrk syntax), <= 25s; default 5s, "
                        "3s with --peers")
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--timeout", default="5s", help="per request")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds between runs (TIME_WAIT settles, children exit)")
    parser.add_argument("--json", help=f"write the figures here (default: {REPORTS}/bench.json "
                        "if that directory is writable)")
    parser.add_argument("--python", action="store_true", help="use the Python load generator")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.peers else 3)
    args.duration = args.duration or ("3s" if args.peers else "5s")
    try:
        secs = seconds(args.duration)
    except ValueError:
        parser.error(f"--duration {args.duration!r}: give seconds, e.g. 5s")
    if not 0 < secs <= 25:
        parser.error("--duration must be more than 0 and at most 25 s (30 s per run, all in)")
    if not 1 <= args.rounds <= 5:
        parser.error("--rounds must be 1-5")
    if args.peers and args.targets:
        parser.error("--peers measures its own targets: name none")
    args.comparisons = COMPARISONS
    args.stems = [stem for _, stem in PEER_SERVERS]
    if args.only:
        keys = args.only.split(",")
        known = args.stems if args.peers else [c.key for c in COMPARISONS]
        if unknown := [k for k in keys if k not in known]:
            parser.error(f"--only: no {'server' if args.peers else 'comparison'} {unknown[0]!r}")
        args.comparisons = [c for c in COMPARISONS if c.key in keys]
        args.stems = [s for s in args.stems if s in keys]
    return args


class Runner:
    def __init__(self, args, use_wrk):
        self.args, self.use_wrk, self.first, self.meter = args, use_wrk, True, CpuMeter()
        self.failed: list[str] = []

    def run(self, target, load, slow=0, label=None):
        if not self.first:
            time.sleep(self.args.pause)
        self.first = False
        try:
            result = measure(target, load, slow, self.args, self.use_wrk, self.meter)
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            # the target went away mid-run (stopped, restarted): a failed run, not a crash
            print(f"    {label or target}: the run failed: {str(error).strip()[-200:]}",
                  file=sys.stderr, flush=True)
            self.failed.append(target)
            result = {"rps": 0.0, "p50_ms": None, "p99_ms": None, "requests": 0, "errors": 1}
        print_run(label or f"{target} ({load})", result)
        return result


def run_pairs(args, runner, down) -> tuple[list, list]:
    rows, verdicts = [], []
    for comp in args.comparisons:
        if comp.ours in down or comp.theirs in down:
            print(f"{comp.key}: skipped, a target does not answer", file=sys.stderr)
            continue
        print(f"\n  {comp.key}: {comp.what} ({comp.load}); goal >= {comp.goal:g}x")
        sides = [(comp.ours, comp.slow_clients), (comp.theirs, 0)]
        runs: dict[int, list[dict]] = {0: [], 1: []}
        for _ in range(args.rounds):
            for side, (target, slow) in enumerate(sides):
                runs[side].append(runner.run(target, comp.load, slow, f"{'AB'[side]} {target}"
                                             + (f" + {slow} slow clients" if slow else "")))
        ours = median_row(comp.ours, runs[0], comp.load, comp.slow_clients, comp.key)
        theirs = median_row(comp.theirs, runs[1], comp.load, 0, comp.key)
        rows += [ours, theirs]
        v = verdict(comp, ours, theirs)
        verdicts.append(v)
        cpu = ""
        if v["cpu_ratio"]:
            cpu = (f"; CPU per request {v['cpu_ratio']:.2f}x less" if v["cpu_ratio"] >= 1 else
                   f"; CPU per request {1 / v['cpu_ratio']:.2f}x more")
        print(f"  {comp.key}: {v['ratio']:.2f}x (goal {comp.goal:g}x: "
              f"{'reached' if v['reached'] else 'NOT reached'}){cpu}; p50 "
              f"{ours['p50_ms']} vs {theirs['p50_ms']} ms, p99 {ours['p99_ms']} vs "
              f"{theirs['p99_ms']} ms")
    if verdicts:
        print("\n" + table(rows, verdicts))
    return rows, verdicts


def run_peers(args, runner, down) -> tuple[list, list]:
    """Round after round, each (load, app) cell: every server in turn, the
    order rotated a step each round so no server always follows the same one."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(args.rounds):
        for load in PEER_LOADS:
            for app in PEER_APPS:
                print(f"\n  round {rnd + 1}: {load}, {'bare' if app == 'wsgi' else app}")
                stems = [s for s in args.stems if f"{s}-{app}" not in down]
                shift = rnd % max(1, len(stems))
                for stem in stems[shift:] + stems[:shift]:
                    target = f"{stem}-{app}"
                    runs.setdefault((target, load), []).append(runner.run(target, load))
    rows = [peer_row(target, got, load) for (target, load), got in runs.items()]
    verdicts = peer_verdicts(rows)
    print("\n" + peer_table(rows, verdicts))
    by = {(r["target"], r["load"]): r for r in rows}
    h, a = by.get(("part3-wsgi-wsgi", "close")), by.get(("part4-prefork-wsgi", "close"))
    if h and a and h.get("cpu_ms_per_1000") and a.get("cpu_ms_per_1000"):
        print(f"\nwebserver3h's fork per connection: {h['cpu_ms_per_1000'] - a['cpu_ms_per_1000']:,.0f}"
              " ms of CPU per 1,000 requests more than webserver4a (the fork, the child's exit "
              "and its reaping)")
    return rows, verdicts


def main(argv=None) -> int:
    args = parse(argv)
    use_wrk = not args.python and shutil.which("wrk")
    tool = (f"wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency"
            if use_wrk else
            f"Python load generator, {args.connections} connections, {args.duration} "
            "(a lower bound: the generator is the bottleneck past ~1,500 req/s)")
    print(f"bench: {tool}, GET {PATH}, from {socket.gethostname()}")
    if args.peers:
        services = peer_services(args.stems)
    elif args.targets:
        services = sorted(set(args.targets))
    else:
        services = sorted({s for c in args.comparisons for s in (c.ours, c.theirs)})
    for name, text in limits(services).items():
        print(f"  {name:24} {text}")
    down = {}
    for name in services:
        if why := answers(name):
            down[name] = why
            print(f"  {name}: GET {PATH} failed: {why}", file=sys.stderr)

    runner = Runner(args, use_wrk)
    rows, verdicts = [], []
    if args.peers:
        rows, verdicts = run_peers(args, runner, down)
    elif args.targets:  # plain measurements, no goals
        for target in args.targets:
            if target not in down:
                rows.append(median_row(target, [runner.run(target, args.load)], args.load, 0,
                                       "-"))
    else:
        rows, verdicts = run_pairs(args, runner, down)
    write(args, tool, rows, verdicts)
    return 0 if rows and not down and not runner.failed else 1


def write(args, tool, rows, verdicts):
    path = args.json
    if path is None and os.path.isdir(REPORTS) and os.access(REPORTS, os.W_OK):
        path = os.path.join(REPORTS, "bench.json")
    if path and rows:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
        with open(os.path.splitext(path)[0] + "-verdicts.json", "w") as f:
            json.dump({"tool": tool, "rounds": args.rounds, "peers": args.peers,
                       "verdicts": verdicts}, f, indent=1)
            f.write("\n")
        print(f"wrote {path}")
    elif not path:
        print(f"({REPORTS} is not writable here: figures printed only)")
