"""The load: wrk (its report parsed), or a Python fallback built on
instrument.clients.answer_rate when wrk is not on PATH."""

from __future__ import annotations

import re
import subprocess

from instrument import clients

from . import targets

PORT = 8888
PATH = "/hello"
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def seconds(text: str) -> float:
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


def wrk_command(host: str, load: str, args, port: int = PORT) -> list[str]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}",
           f"--timeout={args.timeout}", "--latency"]
    if load == "close":
        cmd += ["-H", "Connection: close"]
    return cmd + [f"http://{host}:{port}{PATH}"]


def run_wrk(host: str, load: str, args) -> dict:
    cmd = wrk_command(host, load, args, targets.port(host, load))
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=seconds(args.duration) + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr}")
    return parse_wrk(proc.stdout)


def run_python(host: str, load: str, args) -> dict:
    """instrument.clients.answer_rate with --connections threads: one request
    per connection for `close`, up to 1,000 for keep-alive. A lower bound
    (the GIL makes the generator the bottleneck past ~1,500 req/s); no p99."""
    got = clients.answer_rate(host, targets.port(host, load), seconds=seconds(args.duration),
                              clients=args.connections,
                              per_connection=1 if load == "close" else 1000,
                              timeout=seconds(args.timeout))
    p50 = got.get("p50")
    return {"rps": round(got["rps"], 2), "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None, "requests": got["answered"], "errors": got["errors"]}
