"""Around the load: does a target answer, its container's limits, the CPU
time its cgroup used, and one measured run (with slow clients if asked)."""

from __future__ import annotations

import functools

from instrument import clients, wire
from instrument.engine import Engine, EngineError

from .load import PATH, PORT, run_python, run_wrk


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
            code, out = svc.query(["sh", "-c", CPU_READ])
            return int(float(out.split()[0])) if code == 0 else None
        except Exception:
            return None


def measure(target: str, load: str, slow: int, args, use_wrk, meter=None) -> dict:
    """One run against `target`; with `slow`, that many instrument.clients
    slow clients (reconnecting when the server gives up on one) are held
    open against it meanwhile. cpu_us: the container's CPU per request."""
    run = run_wrk if use_wrk else run_python
    before = meter.read(target) if meter else None
    if not slow:
        result = run(target, load, args)
    else:
        held = clients.slow_clients(target, PORT, n=slow, interval=1.0, timeout=60.0,
                                    reconnect=True)
        try:
            result = run(target, load, args)
        finally:
            clients.stop_all(held)
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
