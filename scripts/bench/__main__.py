"""bench: our concurrent WSGI server against gunicorn, same load, same run.

    docker compose run --rm tests bench            (the default targets below)
    bench --duration 5s --connections 20 part3-wsgi-wsgi gunicorn-wsgi

Run it inside the compose network (the tests container): load through the
host's published ports is throttled by the port proxy, and a client
outside the tests container's network namespace lacks its
net.ipv4.tcp_tw_reuse=1, so connection-per-request load runs it out of
ephemeral ports within seconds. Only the project's own services are
targets.

Each target gets the same bounded load, one after the other, in the order
ours, gunicorn, ours, gunicorn (so drifting noise hits both alike):

    wrk -t2 -c50 -d10s --timeout 5s --latency -H 'Connection: close' \\
        http://TARGET:8888/hello

Every request opens a new connection (our servers serve one request per
connection; gunicorn's sync workers close after each one as well, so the
two do the same work). It prints requests per second, the p50 and p99
latency, and the ratio ours/gunicorn for the bare WSGI app and for Flask,
then writes the figures as JSON, a list of
{target, server, app, rps, p50_ms, p99_ms, errors}, to
/lsbaws/reports/bench.json (the lab's chart reads it) when that directory
exists and is writable, or to --json PATH.

Without wrk on PATH it falls back to a small Python load generator (one
thread per connection; the GIL makes it the bottleneck above ~1,500 req/s,
so its figures are lower bounds and it says so).
"""

from __future__ import annotations

import argparse
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

PORT = 8888
PATH = "/hello"
REPORTS = "/lsbaws/reports"

# (service, server, app): ours first, then gunicorn with the same app
DEFAULT_TARGETS = [
    ("part3-wsgi-wsgi", "webserver3h", "wsgi"),
    ("gunicorn-wsgi", "gunicorn", "wsgi"),
    ("part3-wsgi-flask", "webserver3h", "flask"),
    ("gunicorn-flask", "gunicorn", "flask"),
    ("part3-waitpid", "webserver3g", "bare"),  # the article's 3g: no WSGI at all
]
KNOWN = {service: (server, app) for service, server, app in DEFAULT_TARGETS}
KNOWN.update({
    "part3-wsgi-pyramid": ("webserver3h", "pyramid"), "gunicorn-pyramid": ("gunicorn", "pyramid"),
    "part3-wsgi-django": ("webserver3h", "django"), "gunicorn-django": ("gunicorn", "django"),
    "part2-wsgi": ("webserver2", "wsgi"), "part2-flask": ("webserver2", "flask"),
})

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


def run_wrk(host: str, args) -> dict:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}",
           f"--timeout={args.timeout}", "--latency", "-H", "Connection: close",
           f"http://{host}:{PORT}{PATH}"]
    seconds = _seconds(args.duration)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr}")
    return parse_wrk(proc.stdout)


# ---------------------------------------------------------------- fallback

def run_python(host: str, args) -> dict:
    """One thread per connection, each: connect, GET, read to EOF, repeat."""
    seconds = _seconds(args.duration)
    request = (f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").encode()
    timeout = _seconds(args.timeout)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client():
        mine, bad = [], 0
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                with socket.create_connection((host, PORT), timeout=timeout) as sock:
                    sock.sendall(request)
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                ok = data.startswith(b"HTTP/1.") and data[9:10] in b"23"
            except OSError:
                ok = False
            if ok:
                mine.append((time.perf_counter() - t0) * 1000)
            else:
                bad += 1
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


# ---------------------------------------------------------------- around the load

def answers(host: str) -> str | None:
    """None if GET /hello works, else why not."""
    try:
        with socket.create_connection((host, PORT), timeout=5) as sock:
            sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if data.startswith(b"HTTP/1.1 200") else f"answered {data[:40]!r}"


def limits(services: list[str]) -> dict[str, str]:
    """The containers' cpu, memory and pids limits, through the engine (if
    this container has its socket); the load is only fair if they match."""
    try:
        import docker

        client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=10)
        project = os.environ.get("COMPOSE_PROJECT_NAME") or \
            client.containers.get(socket.gethostname()).labels["com.docker.compose.project"]
    except Exception:
        return {}
    out = {}
    for name in services:
        found = client.containers.list(filters={"label": [
            f"com.docker.compose.project={project}", f"com.docker.compose.service={name}"]})
        if not found:
            continue
        hc = found[0].attrs["HostConfig"]
        cpus = hc.get("NanoCpus") or 0
        out[name] = (f"cpus {cpus / 1e9:g}" if cpus else "cpus unlimited") + \
            f", memory {hc.get('Memory', 0) // 2**20} MiB, pids {hc.get('PidsLimit') or '-'}"
    return out


def ratio(rows: list[dict], app: str) -> str:
    ours = next((r for r in rows if r["app"] == app and r["server"] == "webserver3h"), None)
    theirs = next((r for r in rows if r["app"] == app and r["server"] == "gunicorn"), None)
    if not ours or not theirs or not theirs["rps"] or not ours["p50_ms"] or not theirs["p50_ms"]:
        return f"{app}: no pair to compare"
    return (f"{app:6} ours/gunicorn: req/s {ours['rps'] / theirs['rps']:.2f}, "
            f"p50 {ours['p50_ms'] / theirs['p50_ms']:.2f}x, "
            f"p99 {ours['p99_ms'] / theirs['p99_ms']:.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="services (default: "
                        + " ".join(t[0] for t in DEFAULT_TARGETS) + ")")
    parser.add_argument("-d", "--duration", default="10s", help="per target (wrk syntax), <= 25s")
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--timeout", default="5s", help="per request")
    parser.add_argument("--pause", type=float, default=2.0,
                        help="seconds between targets (children exit, TIME_WAIT settles)")
    parser.add_argument("--json", help=f"write the figures here (default: {REPORTS}/bench.json "
                        "if that directory is writable)")
    parser.add_argument("--python", action="store_true", help="use the Python load generator")
    args = parser.parse_args(argv)
    try:
        seconds = _seconds(args.duration)
    except ValueError:
        parser.error(f"--duration {args.duration!r}: give seconds, e.g. 10s")
    if not 0 < seconds <= 25:
        parser.error("--duration must be more than 0 and at most 25 s (30 s per target, all in)")

    targets = [(t, *KNOWN.get(t, ("?", "?"))) for t in args.targets] or DEFAULT_TARGETS
    use_wrk = not args.python and shutil.which("wrk")
    tool = (f"wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency "
            "-H 'Connection: close'" if use_wrk else
            f"Python load generator, {args.connections} connections, {args.duration} "
            "(a lower bound: the generator is the bottleneck past ~1,500 req/s)")
    print(f"bench: {tool}, GET {PATH}, one connection per request, from {socket.gethostname()}")
    for name, text in limits([t[0] for t in targets]).items():
        print(f"  {name:20} {text}")

    rows = []
    for i, (service, server, app) in enumerate(targets):
        if i:
            time.sleep(args.pause)
        why = answers(service)
        if why:
            print(f"{service}: skipped, GET {PATH} failed: {why}", file=sys.stderr)
            continue
        result = run_wrk(service, args) if use_wrk else run_python(service, args)
        row = {"target": service, "server": server, "app": app, "rps": result["rps"],
               "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
               "errors": result["errors"]}
        rows.append(row)
        print(f"  {service:20} {server:12} {app:7} {row['rps']:9.1f} req/s   "
              f"p50 {row['p50_ms']:8.2f} ms   p99 {row['p99_ms']:8.2f} ms   "
              f"errors {row['errors']}", flush=True)
        if server == "webserver3g" and use_wrk and result["errors"]:
            print("  (3g sends no Content-Length: wrk counts each EOF-ended answer as a "
                  "read error, and as a request)")

    print()
    for app in ("wsgi", "flask"):
        print(ratio(rows, app))
    bare = next((r for r in rows if r["server"] == "webserver3g"), None)
    guni = next((r for r in rows if r["app"] == "wsgi" and r["server"] == "gunicorn"), None)
    if bare and guni and guni["rps"]:
        print(f"3g (the article's bare fork server)/gunicorn-wsgi: req/s {bare['rps'] / guni['rps']:.2f}")

    path = args.json
    if path is None and os.path.isdir(REPORTS) and os.access(REPORTS, os.W_OK):
        path = os.path.join(REPORTS, "bench.json")
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
        print(f"wrote {path}")
    else:
        print(f"({REPORTS} is not writable here: figures printed only)")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
