"""stackkit: plumbing for the tests that run against the compose services.

These tests run in the `tests` container (`docker compose run --rm tests`).
They reach each server by its compose service name on port 8888, and they
look inside the servers' containers through the engine's socket with the
docker SDK: the process table and /proc by `exec`, a crashed container's
exit code and logs, and a restart to put back what a test broke.

Everything waits by polling with a deadline (`wait_for`), never by a fixed
sleep.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SOCKET_PATH = "/var/run/docker.sock"
PORT = 8888
ROOT = Path(__file__).resolve().parents[2]
CLIENT3 = ROOT / "services" / "part3" / "client3.py"

ALL_SERVERS = [
    "part1",
    "part2-wsgi", "part2-flask", "part2-pyramid", "part2-django",
    "part3-iterative", "part3-iterative-sleep", "part3-fork", "part3-fork-leaky",
    "part3-fork-leaky-nproc", "part3-sigchld", "part3-eintr", "part3-waitpid",
    "part3-wsgi-wsgi", "part3-wsgi-flask", "part3-wsgi-pyramid", "part3-wsgi-django",
    "gunicorn-wsgi", "gunicorn-flask", "gunicorn-pyramid", "gunicorn-django",
]


# ---------------------------------------------------------------- waiting

def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------- the engine

@dataclass
class Proc:
    pid: int
    ppid: int
    state: str
    args: str

    @property
    def zombie(self) -> bool:
        return self.state.startswith("Z")


class Service:
    """One compose service's container, seen through the engine."""

    def __init__(self, stack: Stack, name: str):
        self.stack = stack
        self.name = name

    @property
    def container(self):
        found = self.stack.client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.stack.project}",
            f"com.docker.compose.service={self.name}",
        ]})
        if not found:
            pytest.fail(f"service {self.name} has no container in project "
                        f"{self.stack.project}: run `docker compose up -d {self.name}`")
        return found[0]

    def exec(self, cmd: list[str] | str, user: str | None = None, detach=False) -> tuple[int, str]:
        c = self.container
        c.reload()
        if c.status != "running":
            pytest.fail(f"service {self.name} is {c.status}, not running")
        kwargs = {"user": user} if user else {}
        if detach:
            c.exec_run(cmd, detach=True, **kwargs)
            return 0, ""
        code, out = c.exec_run(cmd, **kwargs)
        return code, out.decode("utf-8", "replace")

    def processes(self) -> list[Proc]:
        """The container's process table, from ps (reads /proc: zombies included,
        unlike the engine's `top`)."""
        code, out = self.exec(["ps", "-e", "-o", "pid=,ppid=,stat=,args="])
        assert code == 0, out
        return parse_ps(out)

    def server_pid(self) -> int:
        """The server: the python process whose parent is the init (PID 1)."""
        procs = self.processes()
        servers = [p for p in procs if p.ppid == 1 and "python" in p.args or
                   p.ppid == 1 and "gunicorn" in p.args]
        assert servers, f"no server process in {self.name}: {procs}"
        return servers[0].pid

    def children(self, pid: int | None = None) -> list[Proc]:
        pid = pid or self.server_pid()
        return [p for p in self.processes() if p.ppid == pid]

    def zombies(self) -> list[Proc]:
        return [p for p in self.processes() if p.zombie]

    def read(self, path: str) -> str:
        code, out = self.exec(["cat", path])
        assert code == 0, f"cat {path} in {self.name}: {out}"
        return out

    def open_fds(self, pid: int | None = None) -> int:
        pid = pid or self.server_pid()
        code, out = self.exec(["sh", "-c", f"ls /proc/{pid}/fd | wc -l"])
        assert code == 0, out
        return int(out.strip())

    def logs(self) -> str:
        return self.container.logs().decode("utf-8", "replace")

    def state(self) -> dict:
        c = self.container
        c.reload()
        return c.attrs["State"]

    def running(self) -> bool:
        return self.state()["Status"] == "running"

    def healthy(self) -> bool:
        st = self.state()
        return st["Status"] == "running" and st.get("Health", {}).get("Status") == "healthy"

    def wait_healthy(self, timeout: float = 60):
        wait_for(self.healthy, timeout, 0.2, f"{self.name} to be healthy")
        wait_for(lambda: can_connect(self.name), timeout, 0.2, f"{self.name}:8888 to accept")

    def restart(self):
        """Start afresh (a crashed one too) and wait until it is healthy again."""
        self.container.restart(timeout=2)
        self.wait_healthy()

    def ensure_running(self):
        if not self.healthy():
            if self.running():
                wait_for(self.healthy, 60, 0.2, f"{self.name} to be healthy")
            else:
                self.restart()


class Stack:
    def __init__(self):
        import docker  # the SDK; imported here so a unit-only run never needs it

        self.client = docker.DockerClient(base_url=f"unix://{SOCKET_PATH}", timeout=60)
        self.project = self._project()

    def _project(self) -> str:
        if os.environ.get("COMPOSE_PROJECT_NAME"):
            return os.environ["COMPOSE_PROJECT_NAME"]
        try:
            me = self.client.containers.get(socket.gethostname())
        except Exception:
            pytest.exit("cannot find this container through the engine; set "
                        "COMPOSE_PROJECT_NAME to the compose project's name", returncode=2)
        return me.labels["com.docker.compose.project"]

    def __getitem__(self, name: str) -> Service:
        return Service(self, name)


def parse_ps(text: str) -> list[Proc]:
    procs = []
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 3:
            continue
        pid, ppid, state = parts[:3]
        procs.append(Proc(int(pid), int(ppid), state, parts[3] if len(parts) > 3 else ""))
    return procs


# ---------------------------------------------------------------- the wire

def can_connect(host: str, port: int = PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def raw_exchange(host: str, data: bytes, timeout: float = 5.0, port: int = PORT) -> bytes:
    """Send `data`, read until the server closes (or `timeout`), return what came."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def curl(*args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                          capture_output=True, text=True, timeout=timeout + 5)


def client3(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLIENT3), *args],
                          capture_output=True, text=True, timeout=timeout)


def read_until(host: str, data: bytes, marker: bytes, timeout: float = 5.0,
               port: int = PORT) -> tuple[bytes, bool]:
    """Send `data` and read until `marker` arrives; do not wait for EOF (some
    steps never send one). Returns (what came, whether the server closed)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while marker not in got and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                return got, True
            got += chunk
        return got, False


def get(path: str = "/hello", host: str = "localhost") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lsbaws-tests\r\n"
            "Accept: */*\r\n\r\n").encode()
