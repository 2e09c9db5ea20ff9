"""bench: our servers against gunicorn, pair by pair, in one run, with goals.

    docker compose run --rm tests bench                 (every comparison below)
    bench --only 4a-bare,4b-bare --duration 3s --rounds 1
    bench part3-wsgi-wsgi gunicorn-wsgi                 (just these targets, once)

Run it inside the compose network (the tests container): load through the
host's published ports is throttled by the port proxy, and a client
outside the tests container's network namespace lacks its
net.ipv4.tcp_tw_reuse=1, so connection-per-request load runs it out of
ephemeral ports within seconds. Only the project's own services are
targets; every load is bounded (wrk -d, at most 25 s a run).

Each comparison is ours (A) against its yardstick (B) under the same load,
measured A, B, A, B, A, B (--rounds pairs, so drifting noise hits both
alike); the figures are the medians of the rounds. Beside req/s it reads
the CPU time each server's container used during each run (cgroup
cpuacct, through the engine's socket): CPU per request hardly moves when
other work loads the machine, req/s does. The loads:

    close       wrk -t2 -c50 -d5s --latency -H 'Connection: close' .../hello
                (a new connection per request: gunicorn's sync worker and
                webserver4a serve one request per connection anyway)
    keep-alive  wrk -t2 -c50 -d5s --latency .../hello (50 connections, each
                carrying request after request)
    keep-alive + 10 slow clients: the same, while 10 more connections each
                send one byte of a request head a second

It prints each run, then a table with req/s, p50 and p99 (medians), the
ratio A/B and the goal of each comparison (reached or not), and writes the
rows (a list of {target, server, app, rps, p50_ms, p99_ms, errors, ...},
the shape `lab report` charts) to /lsbaws/reports/bench.json when that
directory is writable, or to --json PATH. It exits 1 if a target did not
answer; a goal not reached is reported, not an error (machines differ).

Without wrk on PATH it falls back to a small Python load generator (one
thread per connection; the GIL makes it the bottleneck above ~1,500 req/s,
so its figures are lower bounds and it says so).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from instrument import wire
from instrument.engine import Engine, EngineError

PORT = 8888
PATH = "/hello"
REPORTS = "/lsbaws/reports"
SLOW_CLIENTS = 10

# service -> (server, app), for the rows and the lab's chart labels
KNOWN = {
    "part3-wsgi-wsgi": ("webserver3h", "wsgi"), "part3-wsgi-flask": ("webserver3h", "flask"),
    "part3-wsgi-pyramid": ("webserver3h", "pyramid"), "part3-wsgi-django": ("webserver3h", "django"),
    "part3-waitpid": ("webserver3g", "bare"),
    "part2-wsgi": ("webserver2", "wsgi"), "part2-flask": ("webserver2", "flask"),
}
for _app in ("wsgi", "flask", "pyramid", "django"):
    KNOWN[f"gunicorn-{_app}"] = ("gunicorn sync", _app)
    KNOWN[f"part4-prefork-{_app}"] = ("webserver4a", _app)
    KNOWN[f"part4-evloop-{_app}"] = ("webserver4b", _app)
for _app in ("wsgi", "flask"):
    KNOWN[f"gunicorn-gthread-{_app}"] = ("gunicorn gthread", _app)


@dataclass(frozen=True)
class Comparison:
    key: str
    ours: str  # service
    theirs: str  # service (the same one with slow clients: its own rate without them)
    load: str  # "close" or "keep-alive"
    goal: float  # ours/theirs req/s must be at least this
    what: str
    slow_clients: int = 0  # held open against `ours` while it is measured


# The six comparisons; the goals are the bar, never lowered here.
COMPARISONS = [
    Comparison("4a-bare", "part4-prefork-wsgi", "gunicorn-wsgi", "close", 2.0,
               "webserver4a vs gunicorn sync, both 2 workers, bare app"),
    Comparison("4a-flask", "part4-prefork-flask", "gunicorn-flask", "close", 1.5,
               "webserver4a vs gunicorn sync, Flask"),
    Comparison("4b-bare", "part4-evloop-wsgi", "gunicorn-gthread-wsgi", "keep-alive", 2.0,
               "webserver4b vs gunicorn gthread, both 2 workers, bare app"),
    Comparison("4b-flask", "part4-evloop-flask", "gunicorn-gthread-flask", "keep-alive", 1.5,
               "webserver4b vs gunicorn gthread, Flask"),
    Comparison("3h-bare", "part3-wsgi-wsgi", "gunicorn-wsgi", "close", 0.3,
               "webserver3h (fork per connection) vs gunicorn sync, bare app"),
    Comparison("4b-slow", "part4-evloop-wsgi", "part4-evloop-wsgi", "keep-alive", 0.8,
               f"webserver4b with {SLOW_CLIENTS} slow clients held open vs without",
               slow_clients=SLOW_CLIENTS),
]

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


# ---------------------------------------------------------------- wrk's output

def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def _seconds(text: str) -> float:
    return _ms(text) / 1000 if text[-1:].isalpha() else float(text)


def parse_wrk(output: str) -> dict:
    """wrk --latency's report -> {rps, p50_ms, p99_ms, requests, errors}."""
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.M)
    if not rps:
        raise ValueError("no 'Requests/sec:' line in wrk's output:\n" + output)
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", output, re.M)}
    if 50 not in pct or 99 not in pct:
        raise ValueError("no latency distribution (was --latency given?):\n" + output)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    return {"rps": float(rps.group(1)), "p50_ms": round(pct[50], 3),
            "p99_ms": round(pct[99], 3),
            "requests": int(total.group(1)) if total else None, "errors": errors}


def wrk_command(host: str, load: str, args) -> list[str]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}",
           f"--timeout={args.timeout}", "--latency"]
    if load == "close":
        cmd += ["-H", "Connection: close"]
    return cmd + [f"http://{host}:{PORT}{PATH}"]


def run_wrk(host: str, load: str, args) -> dict:
    cmd = wrk_command(host, load, args)
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=_seconds(args.duration) + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr}")
    return parse_wrk(proc.stdout)


# ---------------------------------------------------------------- fallback

def _read_response(sock, buffer: bytes) -> tuple[bytes, bytes]:
    """One response framed by Content-Length (or by EOF): (response, rest)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return buffer, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if not match:
        while chunk := sock.recv(65536):
            rest += chunk
        return head + b"\r\n\r\n" + rest, b""
    length = int(match.group(1))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def run_python(host: str, load: str, args) -> dict:
    """One thread per connection: GET, read the answer, repeat (a new
    connection each time for `close`, the same one for keep-alive)."""
    seconds = _seconds(args.duration)
    close = load == "close"
    request = (f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\n"
               + ("Connection: close\r\n" if close else "") + "\r\n").encode()
    timeout = _seconds(args.timeout)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client():
        mine, bad, sock, rest = [], 0, None, b""
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection((host, PORT), timeout=timeout)
                sock.sendall(request)
                data, rest = _read_response(sock, rest)
                ok = data.startswith(b"HTTP/1.") and data[9:10] in b"23"
                if close or not data:
                    sock.close()
                    sock, rest = None, b""
            except OSError:
                ok = False
                if sock is not None:
                    sock.close()
                sock, rest = None, b""
            if ok:
                mine.append((time.perf_counter() - t0) * 1000)
            else:
                bad += 1
        if sock is not None:
            sock.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client) for _ in range(args.connections)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + timeout + 5)
    took = time.monotonic() - t0
    if len(latencies) < 2:
        return {"rps": 0.0, "p50_ms": None, "p99_ms": None, "requests": len(latencies),
                "errors": errors[0]}
    cuts = statistics.quantiles(latencies, n=100)
    return {"rps": round(len(latencies) / took, 2), "p50_ms": round(cuts[49], 3),
            "p99_ms": round(cuts[98], 3), "requests": len(latencies), "errors": errors[0]}


# ---------------------------------------------------------------- slow clients

class SlowClients:
    """N connections that each send one byte of a request head a second (a
    new connection when the server gives up on one), while a run lasts."""

    HEAD = b"GET /hello HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"s" * 200 + b"\r\n\r\n"

    def __init__(self, host: str, count: int):
        self.host, self.count = host, count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.reconnects = 0

    def __enter__(self):
        self._thread.start()
        time.sleep(1.2)  # every slow connection is open and has sent its first byte
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def _open(self):
        try:
            return [socket.create_connection((self.host, PORT), timeout=2), 0]
        except OSError:
            return None

    def _run(self):
        conns = [self._open() for _ in range(self.count)]
        while not self._stop.is_set():
            for i, conn in enumerate(conns):
                if conn is None:
                    conns[i] = self._open()
                    self.reconnects += 1
                    continue
                sock, sent = conn
                try:
                    sock.sendall(self.HEAD[sent % len(self.HEAD):][:1])
                    conn[1] = sent + 1
                except OSError:
                    sock.close()
                    conns[i] = None
            self._stop.wait(1.0)
        for conn in conns:
            if conn is not None:
                conn[0].close()


# ---------------------------------------------------------------- around the load

def answers(host: str) -> str | None:
    """None if GET /hello works, else why not."""
    reply = wire.exchange(host, PORT, wire.get(PATH, host), timeout=5)
    if not reply.ok:
        return reply.error
    if reply.reset or reply.timed_out:
        return reply.summary()
    data = reply.data
    return None if data.startswith(b"HTTP/1.1 200") else f"answered {data[:40]!r}"


@functools.cache
def _engine():
    """The compose project's engine (instrument.engine), or None when this
    container has no engine socket (or no docker SDK); made once a run."""
    try:
        return Engine()
    except Exception:  # EngineError, or the docker SDK missing
        return None


def limits(services: list[str]) -> dict[str, str]:
    """The containers' cpu, memory and pids limits, through the engine (if
    this container has its socket); the load is only fair if they match."""
    engine = _engine()
    if engine is None:
        return {}
    out = {}
    for name in services:
        try:
            container = engine.service(name).container
        except EngineError:
            continue
        if container.status != "running":
            continue
        hc = container.attrs["HostConfig"]
        cpus = hc.get("NanoCpus") or 0
        out[name] = (f"cpus {cpus / 1e9:g}" if cpus else "cpus unlimited") + \
            f", memory {hc.get('Memory', 0) // 2**20} MiB, pids {hc.get('PidsLimit') or '-'}"
    return out


CPU_READ = ("cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || "
            "awk '/^usage_usec/ {print $2 * 1000}' /sys/fs/cgroup/cpu.stat")


class CpuMeter:
    """The CPU time a service's container used (cgroup v1 cpuacct, or v2
    cpu.stat), read through the engine before and after a run: CPU per
    request barely depends on what else loads the machine, req/s does."""

    def __init__(self):
        self.engine = _engine()
        self.services = {}

    def read(self, service: str) -> int | None:
        """Nanoseconds of CPU used by the container so far, or None."""
        if self.engine is None:
            return None
        try:
            svc = self.services.setdefault(service, self.engine.service(service))
            code, out = svc.exec(["sh", "-c", CPU_READ])
            return int(float(out.split()[0])) if code == 0 else None
        except Exception:
            return None


def median_row(target: str, runs: list[dict], load: str, slow: int, key: str) -> dict:
    server, app = KNOWN.get(target, ("?", "?"))
    if slow:
        server = f"{server}, {slow} slow clients"
    good = [r for r in runs if r["p50_ms"] is not None]
    return {
        "target": target, "server": server,
        "app": app if load == "close" else f"{app}, keep-alive",
        "rps": round(statistics.median(r["rps"] for r in runs), 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in good), 3) if good else None,
        "p99_ms": round(statistics.median(r["p99_ms"] for r in good), 3) if good else None,
        "errors": sum(r["errors"] for r in runs),
        "cpu_us_per_request": (round(statistics.median(cpu), 1)
                               if (cpu := [r["cpu_us"] for r in runs if r.get("cpu_us")])
                               else None),
        "comparison": key, "load": load, "slow_clients": slow,
        "runs_rps": [r["rps"] for r in runs],
    }


def verdict(comp: Comparison, ours: dict, theirs: dict) -> dict:
    ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else 0.0
    cpu_ours, cpu_theirs = ours.get("cpu_us_per_request"), theirs.get("cpu_us_per_request")
    return {"comparison": comp.key, "what": comp.what, "load": comp.load,
            "ours": ours["target"], "theirs": theirs["target"], "ratio": round(ratio, 2),
            "goal": comp.goal, "reached": ratio >= comp.goal,
            # how many times less CPU a request costs ours (the same measure, per request)
            "cpu_ratio": (round(cpu_theirs / cpu_ours, 2) if cpu_ours and cpu_theirs
                          else None)}


def measure(target: str, load: str, slow: int, args, use_wrk, meter=None) -> dict:
    run = run_wrk if use_wrk else run_python
    before = meter.read(target) if meter else None
    if not slow:
        result = run(target, load, args)
    else:
        with SlowClients(target, slow):
            result = run(target, load, args)
    after = meter.read(target) if meter else None
    if before is not None and after is not None and result.get("requests"):
        result["cpu_us"] = round((after - before) / 1000 / result["requests"], 1)
    return result


def print_run(label: str, result: dict):
    p50 = "-" if result["p50_ms"] is None else f"{result['p50_ms']:8.2f}"
    p99 = "-" if result["p99_ms"] is None else f"{result['p99_ms']:8.2f}"
    cpu = f"   cpu {result['cpu_us']:7.1f} us/req" if result.get("cpu_us") else ""
    print(f"    {label:42} {result['rps']:9.1f} req/s   p50 {p50} ms   p99 {p99} ms   "
          f"errors {result['errors']}{cpu}", flush=True)


def table(rows: list[dict], verdicts: list[dict]) -> str:
    """The README's table: one line per comparison, A then B."""
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
                f"{row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms | "
                + (f"{cpu:,.0f} µs | " if cpu else "- | ")
                + (f"**{v['ratio']:.2f}x** | >= {comp.goal:g}x, {mark} |" if not i else " | |"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="measure just these services, once each "
                        "(the load: --load); default: every comparison")
    parser.add_argument("--only", help="comma-separated comparisons: "
                        + ",".join(c.key for c in COMPARISONS))
    parser.add_argument("--rounds", type=int, default=3, help="A/B pairs per comparison "
                        "(medians of them); default 3: A, B, A, B, A, B")
    parser.add_argument("--load", choices=("close", "keep-alive"), default="close",
                        help="for explicit targets")
    parser.add_argument("-d", "--duration", default="5s", help="per run (wrk syntax), <= 25s")
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--timeout", default="5s", help="per request")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds between runs (TIME_WAIT settles, children exit)")
    parser.add_argument("--json", help=f"write the figures here (default: {REPORTS}/bench.json "
                        "if that directory is writable)")
    parser.add_argument("--python", action="store_true", help="use the Python load generator")
    args = parser.parse_args(argv)
    try:
        seconds = _seconds(args.duration)
    except ValueError:
        parser.error(f"--duration {args.duration!r}: give seconds, e.g. 5s")
    if not 0 < seconds <= 25:
        parser.error("--duration must be more than 0 and at most 25 s (30 s per run, all in)")
    if not 1 <= args.rounds <= 5:
        parser.error("--rounds must be 1-5")
    comparisons = COMPARISONS
    if args.only:
        keys = args.only.split(",")
        unknown = [k for k in keys if k not in {c.key for c in COMPARISONS}]
        if unknown:
            parser.error(f"--only: no comparison {unknown[0]!r}")
        comparisons = [c for c in COMPARISONS if c.key in keys]

    use_wrk = not args.python and shutil.which("wrk")
    tool = (f"wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency"
            if use_wrk else
            f"Python load generator, {args.connections} connections, {args.duration} "
            "(a lower bound: the generator is the bottleneck past ~1,500 req/s)")
    print(f"bench: {tool}, GET {PATH}, from {socket.gethostname()}")
    services = sorted({t for t in args.targets} if args.targets else
                      {s for c in comparisons for s in (c.ours, c.theirs)})
    for name, text in limits(services).items():
        print(f"  {name:24} {text}")
    down = {}
    for name in services:
        why = answers(name)
        if why:
            down[name] = why
            print(f"  {name}: GET {PATH} failed: {why}", file=sys.stderr)

    rows: list[dict] = []
    verdicts: list[dict] = []
    first = True
    meter = CpuMeter()
    if args.targets:  # plain measurements, no goals
        for target in args.targets:
            if target in down:
                continue
            if not first:
                time.sleep(args.pause)
            first = False
            result = measure(target, args.load, 0, args, use_wrk, meter)
            print_run(f"{target} ({args.load})", result)
            rows.append(median_row(target, [result], args.load, 0, "-"))
    for comp in ([] if args.targets else comparisons):
        if comp.ours in down or comp.theirs in down:
            print(f"{comp.key}: skipped, a target does not answer", file=sys.stderr)
            continue
        print(f"\n  {comp.key}: {comp.what} ({comp.load}); goal >= {comp.goal:g}x")
        sides = [(comp.ours, comp.slow_clients), (comp.theirs, 0)]
        runs: dict[int, list[dict]] = {0: [], 1: []}
        for _ in range(args.rounds):
            for side, (target, slow) in enumerate(sides):
                if not first:
                    time.sleep(args.pause)
                first = False
                result = measure(target, comp.load, slow, args, use_wrk, meter)
                runs[side].append(result)
                print_run(f"{'AB'[side]} {target}" + (f" + {slow} slow clients" if slow else ""),
                          result)
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
    path = args.json
    if path is None and os.path.isdir(REPORTS) and os.access(REPORTS, os.W_OK):
        path = os.path.join(REPORTS, "bench.json")
    if path and rows:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
        with open(os.path.splitext(path)[0] + "-verdicts.json", "w") as f:
            json.dump({"tool": tool, "rounds": args.rounds, "verdicts": verdicts}, f, indent=1)
            f.write("\n")
        print(f"wrote {path}")
    elif not path:
        print(f"({REPORTS} is not writable here: figures printed only)")
    return 0 if rows and not down else 1


if __name__ == "__main__":
    sys.exit(main())
