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
        # read the LISTEN state from /proc/net/tcp: a probe connection would
        # leave a descriptor and a zombie on 3d, sleep 3b for 60 s, kill 3e
        wait_for(lambda: listening(self), timeout, 0.2, f"{self.name}:8888 to listen")

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


# ================================================================ part 3 helpers
# Added for the part 2 environ and part 3 tests (C9-C25). They never connect to
# a server to see whether it is up: a probe connection changes what a leaky
# server shows (a held descriptor, a zombie), makes 3b sleep 60 s and makes 3e
# die of EINTR 3 s later. They read the LISTEN state from /proc/net/tcp instead,
# like the image's healthcheck.

TWIN_PORT = 8899  # a second instance of a step, inside the same container


def exec_quiet(svc: Service, cmd: list[str] | str, user: str | None = None) -> tuple[int | None, str]:
    """Like Service.exec, but (None, "") instead of failing when the container
    is not running (while it restarts or after it crashed)."""
    import docker

    try:
        c = svc.container
        c.reload()
        if c.status != "running":
            return None, ""
        kwargs = {"user": user} if user else {}
        code, out = c.exec_run(cmd, **kwargs)
    except docker.errors.APIError:
        return None, ""
    return code, out.decode("utf-8", "replace")


def tcp_table(svc: Service) -> list[dict]:
    """The container's IPv4 TCP sockets from /proc/net/tcp: local and remote
    port, state (0A LISTEN, 01 ESTABLISHED, ...), rx_queue (for a LISTEN
    socket: the connections waiting in its accept queue) and the inode."""
    code, out = exec_quiet(svc, ["cat", "/proc/net/tcp"])
    if code != 0:
        return []
    rows = []
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        rows.append({
            "local_port": int(f[1].split(":")[1], 16),
            "remote_port": int(f[2].split(":")[1], 16),
            "state": f[3],
            "rx_queue": int(f[4].split(":")[1], 16),
            "inode": f[9],
        })
    return rows


def listening(svc: Service, port: int = PORT) -> bool:
    return any(r["local_port"] == port and r["state"] == "0A" for r in tcp_table(svc))


def accept_queue(svc: Service, port: int = PORT) -> int:
    """How many connections wait in the kernel's listen backlog of `port`."""
    rows = [r for r in tcp_table(svc) if r["local_port"] == port and r["state"] == "0A"]
    assert rows, f"nothing listens on {port} in {svc.name}"
    return rows[0]["rx_queue"]


def restart_quietly(svc: Service, timeout: float = 60):
    """Restart (a crashed container too) and wait until the server LISTENs on
    8888 again, without ever connecting to it. (The engine's health status
    follows at its next check; nothing here waits for it.)"""
    svc.container.restart(timeout=2)
    wait_for(lambda: svc.running() and listening(svc), timeout, 0.2,
             f"{svc.name} to run and listen on {PORT} again")


def ensure_listening(svc: Service, timeout: float = 60):
    """Up and listening (probed without a connection); restart it otherwise."""
    deadline = time.monotonic() + timeout
    while svc.running() and time.monotonic() < deadline:
        if listening(svc):
            return
        time.sleep(0.2)  # still starting: importing Django takes a moment
    restart_quietly(svc, timeout)


def wait_exited(svc: Service, timeout: float) -> dict:
    """Wait until the container has stopped; return its State."""
    return wait_for(lambda: (st := svc.state())["Status"] == "exited" and st, timeout, 0.2,
                    f"{svc.name} to exit")


def _docker_time(text: str) -> tuple[str, int]:
    """'2026-11-27T13:55:36.8189847Z' -> ('2026-11-27T13:55:36', 818984700): comparable."""
    text = text.rstrip("Z")
    whole, _, frac = text.partition(".")
    frac = frac.split("+")[0]
    return whole, int((frac + "000000000")[:9])


def logs_since_start(svc: Service) -> str:
    """The container's output since its last start: the engine keeps the
    logs of earlier runs of the same container, which must not count."""
    started = _docker_time(svc.state()["StartedAt"])
    out = []
    for line in svc.container.logs(timestamps=True).decode("utf-8", "replace").splitlines():
        stamp, _, text = line.partition(" ")
        if _docker_time(stamp) >= started:
            out.append(text)
    return "\n".join(out)


def proc_limit(svc: Service, pid: int, name: str) -> tuple[str, str]:
    """(soft, hard) of a limit in /proc/PID/limits, e.g. 'Max open files'."""
    for line in svc.read(f"/proc/{pid}/limits").splitlines():
        if line.startswith(name):
            soft, hard = line[len(name):].split()[:2]
            return soft, hard
    raise AssertionError(f"{name!r} not in /proc/{pid}/limits of {svc.name}")


def proc_uid(svc: Service, pid: int) -> int:
    for line in svc.read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status of {svc.name}")


def pids_max(svc: Service) -> str:
    """The container's pids cgroup limit: cgroup v1 or v2 path."""
    code, out = svc.exec(["sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null "
                                      "|| cat /sys/fs/cgroup/pids.max"])
    assert code == 0, f"no pids.max in {svc.name} (neither cgroup v1 nor v2 path): {out}"
    return out.strip()


def zombie_children(svc: Service, pid: int | None = None) -> list[Proc]:
    """The server's children that have exited and were not waited for."""
    return [p for p in svc.children(pid) if p.zombie]


_OWNERS_SCRIPT = r"""
import json, os, sys
server_port, ports = int(sys.argv[1]), {int(p) for p in sys.argv[2:]}
inodes = {}
for line in open("/proc/net/tcp").readlines()[1:]:
    f = line.split()
    if int(f[1].split(":")[1], 16) == server_port and int(f[2].split(":")[1], 16) in ports:
        inodes[f[9]] = int(f[2].split(":")[1], 16)
owners = {p: [] for p in ports}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        ino = target[8:-1] if target.startswith("socket:[") else None
        if ino in inodes and int(pid) not in owners[inodes[ino]]:
            owners[inodes[ino]].append(int(pid))
print(json.dumps(owners))
"""


def socket_owners(svc: Service, client_ports, server_port: int = PORT) -> dict[int, list[int]]:
    """For each client port: the PIDs in the server's container that hold a
    descriptor of the server side of that connection (from /proc/*/fd)."""
    import json

    code, out = svc.exec(["python", "-c", _OWNERS_SCRIPT, str(server_port),
                          *map(str, client_ports)])
    assert code == 0, out
    return {int(k): v for k, v in json.loads(out).items()}


class Twin:
    """A second instance of a step's file inside the same container, on
    another port, with other settings (e.g. a short SLEEP)."""

    def __init__(self, svc: Service, script: str, port: int, env: dict):
        self.svc, self.script, self.port, self.env = svc, script, port, env
        self.pidfile = f"/tmp/lsbaws-twin-{port}.pid"
        self.logfile = f"/tmp/lsbaws-twin-{port}.log"
        self.pid: int | None = None

    def start(self, timeout: float = 20) -> Twin:
        import shlex

        self._kill_leftover()
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in {**self.env, "PORT": self.port}.items())
        self.svc.exec(["sh", "-c", f"echo $$ > {self.pidfile}; exec env {env} "
                                   f"python {shlex.quote(self.script)} > {self.logfile} 2>&1"],
                      detach=True)
        wait_for(lambda: listening(self.svc, self.port), timeout, 0.3,
                 f"the twin {self.script} {self.env} to listen on {self.port} in {self.svc.name}")
        self.pid = int(self.svc.read(self.pidfile).strip())
        return self

    def alive(self) -> bool:
        code, out = exec_quiet(self.svc, ["ps", "-o", "stat=", "-p", str(self.pid)])
        return code == 0 and not out.strip().startswith("Z")

    def log(self) -> str:
        return self.svc.read(self.logfile)

    def stop(self):
        if self.pid and self.svc.running():
            self._kill(self.pid)

    def _kill(self, pid: int):
        exec_quiet(self.svc, ["kill", str(pid)])
        gone = lambda: exec_quiet(self.svc, ["kill", "-0", str(pid)])[0] != 0  # noqa: E731
        deadline = time.monotonic() + 5
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not gone():
            exec_quiet(self.svc, ["kill", "-9", str(pid)])
        wait_for(lambda: not listening(self.svc, self.port), 10, 0.1,
                 f"port {self.port} in {self.svc.name} to be free")

    def _kill_leftover(self):
        """A twin left by an interrupted run (the servers outlive the tests container)."""
        code, out = exec_quiet(self.svc, ["cat", self.pidfile])
        if code == 0 and out.strip().isdigit():
            pid = out.strip()
            code, cmd = exec_quiet(self.svc, ["cat", f"/proc/{pid}/cmdline"])
            if code == 0 and self.script in cmd:
                self._kill(int(pid))

    def __enter__(self) -> Twin:
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def twin(svc: Service, script: str, port: int = TWIN_PORT, **env) -> Twin:
    """`with twin(svc, "webserver3b.py", SLEEP=2) as t:` ... killed on exit."""
    return Twin(svc, script, port, {k: str(v) for k, v in env.items()})


# ---------------------------------------------------------------- many clients

@dataclass
class Reply:
    data: bytes = b""
    elapsed: float = 0.0      # from the common start until the marker (or the end)
    eof: bool = False         # the server closed the connection
    local_port: int = 0
    error: str = ""
    sock: socket.socket | None = None  # still open when keep_open

    @property
    def status(self) -> int:
        line = self.data.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]


def fetch(host: str, data: bytes, marker: bytes | None = None, timeout: float = 10,
          port: int = PORT, keep_open: bool = False, start: float | None = None) -> Reply:
    """Connect, send `data`, read until `marker` (None: until EOF)."""
    start = time.monotonic() if start is None else start
    reply = Reply()
    sock = None
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        reply.local_port = sock.getsockname()[1]
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while (marker is None or marker not in reply.data) and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                reply.eof = True
                break
            reply.data += chunk
    except OSError as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
    reply.elapsed = time.monotonic() - start
    if keep_open and sock is not None and not reply.error:
        reply.sock = sock
    elif sock is not None:
        sock.close()
    return reply


def fetch_parallel(host: str, n: int, data: bytes, marker: bytes | None = None,
                   timeout: float = 10, port: int = PORT, keep_open: bool = False) -> list[Reply]:
    """`n` clients at once (threads released together by a barrier)."""
    import threading

    barrier = threading.Barrier(n)
    replies: list[Reply | None] = [None] * n

    def one(i):
        barrier.wait()
        replies[i] = fetch(host, data, marker, timeout, port, keep_open)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    return [r or Reply(error="thread did not finish") for r in replies]


def http_get(path: str = "/hello", host: str = "localhost") -> bytes:
    """A GET that asks the server to close after the response."""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lsbaws-tests\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n").encode()


# ---------------------------------------------------------------- client3

def client3_start(*args: str, log_dir: str = "/tmp") -> subprocess.Popen:
    """client3 in the background, in its own session (its forked clients
    too), so client3_stop can end all of them at once."""
    import tempfile

    if not CLIENT3.exists():
        pytest.fail(f"{CLIENT3} is missing: the tests image has no client3")
    out = tempfile.TemporaryFile(dir=log_dir)
    proc = subprocess.Popen([sys.executable, str(CLIENT3), *args], stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc._lsbaws_out = out  # type: ignore[attr-defined]
    return proc


def client3_stop(proc: subprocess.Popen, grace: float = 5) -> str:
    """End client3 and every client it forked; return what it printed."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            try:  # the forked clients may outlive their parent
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        break
    out = proc._lsbaws_out  # type: ignore[attr-defined]
    out.seek(0)
    text = out.read().decode("utf-8", "replace")
    out.close()
    return text


def client3_json(*args: str, timeout: float = 120) -> dict:
    """Run client3 with --json to the end and return its report."""
    import json

    if not CLIENT3.exists():
        pytest.fail(f"{CLIENT3} is missing: the tests image has no client3")
    result = client3(*args, "--json", timeout=timeout)
    assert result.returncode == 0, f"client3 {' '.join(args)}: exit {result.returncode}\n" \
                                   f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    lines = [ln for ln in result.stdout.splitlines() if ln.strip().startswith("{")]
    assert lines, f"client3 printed no JSON report: {result.stdout[-2000:]}"
    return json.loads(lines[-1])
