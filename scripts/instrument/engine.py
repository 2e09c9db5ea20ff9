"""engine: the compose services, seen through the engine's socket.

The tests, the lab, the bench and the grader run in a container of the
compose project (`docker compose run --rm tests|lab ...`) with the engine's
socket mounted. `Engine()` finds the project from its own container's
labels (the hostname is the container id) or COMPOSE_PROJECT_NAME, then
each service's container by the compose labels. A `Service` reads: the
process table, /proc and limits (`look`, one exec), logs since the last
start, the container's state. What it changes: it starts or restarts a
service, and a `Twin` starts the same lesson file a second time inside the
container, on another port with other settings.

Readiness is one rule: the container runs and something LISTENs on the
port in the container's /proc/net/tcp, as the images' healthcheck reads
it. Nothing here connects to a server to see whether it is up: a probe
connection would leave a descriptor and a zombie on 3d, make 3b sleep 60 s
and kill 3e.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path

from instrument import procs
from instrument.relay import Relay, entering
from instrument.waiting import poll, wait_for

SOCKET_PATH = os.environ.get("LSBAWS_DOCKER_SOCKET", "/var/run/docker.sock")
PORT = 8888        # every server, inside the compose network
TWIN_PORT = 8899   # a Twin, unless told otherwise
AWAIT_SLICE = 3.0  # Service.await_listen: the longest one command waits
# Service.await_listen's exec: wait (looking every 0.05 s) until a LISTEN row
# for the port is in /proc/net/tcp (exit 0) or one of the files is written
# (exit 3); exit 1 after `ticks` looks. argv: port, ticks, files.
AWAIT_LISTEN = r"""
row=$(printf ':%04X 00000000:0000 0A' "$1"); ticks=$2; shift 2; i=0
while [ "$i" -lt "$ticks" ]; do
  grep -q "$row" /proc/net/tcp && exit 0
  for f in "$@"; do [ -s "$f" ] && exit 3; done
  sleep 0.05; i=$((i + 1))
done
exit 1
"""


def again_if_lost(run, tries: int = 6, prints_on_failure: bool = False, complete=bool):
    """run() -> (exit code, output), once more (up to `tries` in all) while it
    comes back with exit 0 and no output at all. This engine now and then
    loses a short exec's output and still reports its exit code (docker-py
    #2042, moby #27289; seen here with four test workers exec'ing at once:
    `cat /proc/7/limits` and `date; kill` both came back empty). Only for
    commands that read and always print something when they succeed: running
    such a command again is harmless. A command that changes something runs
    through `Service.once`. With `prints_on_failure`, a failure that printed
    nothing counts as lost too (a program that always says why it failed).
    `complete(out)` says whether the output came whole (the probe ends with a
    marker: a cut-short table would otherwise read as "no server process")."""
    code, out = run()
    for attempt in range(1, tries):
        if complete(out) or (code != 0 and not (prints_on_failure and not out)):
            break
        time.sleep(0.1 * attempt)
        code, out = run()
    return code, out


class EngineError(Exception):
    """A missing prerequisite (no socket, a service never created, a twin that
    will not start): one line that says what fixes it. `code` is the exit
    status a command-line user should get (2: set-up, 1: what was measured)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class ReadySeen:
    """Service -> (its container's StartedAt, its server) when last seen
    ready (Service.ensure_up). In memory; with a folder, also one small file
    a service there, so the processes of one run (the suite's workers) probe
    a service once between two starts of its container, not once each."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self.mine: dict[str, tuple[str, procs.Proc]] = {}

    def get(self, name: str) -> tuple[str, procs.Proc] | None:
        if self.folder is not None:
            try:
                started, pid, ppid, state, args = json.loads((self.folder / name).read_text())
                return started, procs.Proc(pid, ppid, state, args)
            except (OSError, ValueError):
                pass
        return self.mine.get(name)

    def __setitem__(self, name: str, seen: tuple[str, procs.Proc]) -> None:
        self.mine[name] = seen
        if self.folder is not None:
            started, p = seen
            self.folder.mkdir(parents=True, exist_ok=True)
            part = self.folder / f".{name}.{os.getpid()}"
            part.write_text(json.dumps([started, p.pid, p.ppid, p.state, p.args]))
            part.replace(self.folder / name)   # whole or not at all, for the other readers


class Engine:
    def __init__(self, project: str | None = None):
        if not os.path.exists(SOCKET_PATH):
            raise EngineError(
                f"no engine socket at {SOCKET_PATH}: run this with `docker compose run --rm "
                f"tests|lab ...` (compose.yaml mounts it) or add -v {SOCKET_PATH}:{SOCKET_PATH}")
        import docker  # the SDK; imported here so the unit tests never need it

        self.docker = docker
        try:
            self.client = docker.DockerClient(base_url=f"unix://{SOCKET_PATH}", timeout=60)
            self.client.ping()
        except Exception as error:
            raise EngineError(f"the engine at {SOCKET_PATH} does not answer: {error}") from None
        self.project, self.workdir = self._project(project)
        self._relay, self._relay_lock = None, threading.Lock()
        # Service.ensure_up: service -> (its container's StartedAt, its
        # server) when this engine last saw it ready
        self.ready_seen = ReadySeen()

    def relay(self):
        """This process's relay (instrument.relay), started at first use: the
        services' looks without an exec each. None where the engine refuses
        its observer (the exec way then)."""
        with self._relay_lock:
            if self._relay is None:
                from instrument.copies import DEFAULT_OBSERVER, new_owner
                try:
                    me = self.client.containers.get(socket.gethostname()).image.id
                except self.docker.errors.APIError:
                    me = DEFAULT_OBSERVER
                try:
                    self._relay = Relay.observer(self.client, me, new_owner("relay"))
                except Exception:  # noqa: BLE001 - refused, or cut off: the exec way is always there
                    self._relay = False
            return self._relay or None

    def _project(self, project: str | None) -> tuple[str, str]:
        """This container's compose project (and its working dir), from its labels."""
        project = project or os.environ.get("COMPOSE_PROJECT_NAME")
        try:
            labels = self.client.containers.get(socket.gethostname()).labels
        except Exception:
            labels = {}
        workdir = labels.get("com.docker.compose.project.working_dir", "")
        if project:
            return project, workdir
        if "com.docker.compose.project" not in labels:
            raise EngineError("cannot tell which compose project to look at: run this with "
                              "`docker compose run --rm ...`, or set COMPOSE_PROJECT_NAME")
        return labels["com.docker.compose.project"], workdir

    def compose_command(self, *args: str) -> str:
        """`docker compose ...` as the user would type it: with -p when the project
        is not the default one (the name of the directory compose.yaml is in)."""
        default = re.sub(r"[^a-z0-9_-]", "", Path(self.workdir).name.lower()) if self.workdir else ""
        p = [] if self.project == default else ["-p", self.project]
        return " ".join(["docker compose", *p, *args])

    def up_command(self, *services: str) -> str:
        return self.compose_command("--profile", "all", "up", "-d", *services)

    def service(self, name: str) -> Service:
        return Service(self, name)

    def containers(self, service: str | None = None) -> dict[str, object]:
        """{service name: container} for every container of this project (of
        one service, if named), as the engine's list shows them: its state
        as a word, its labels. Sparse: docker-py's list otherwise inspects
        every container it lists, one request each (a Service's first look
        up asked for all 45 of them: 46 requests where two do)."""
        labels = [f"com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        # ignore_removed: `compose run --rm` containers of the project come and go
        found = self.client.containers.list(all=True, sparse=True, ignore_removed=True,
                                            filters={"label": labels})
        return {(c.attrs.get("Labels") or {}).get("com.docker.compose.service"): c
                for c in found}

    def missing(self, names) -> list[str]:
        """The services that have no container in this project (never created)."""
        have = self.containers()
        return [n for n in dict.fromkeys(names) if n not in have]

    def ensure(self, names, timeout: float = 60) -> list[str]:
        """Every named service up and listening: a stopped or exited container is
        started (returns their names); one that was never created is an
        EngineError naming the `docker compose up -d` command (creating it
        needs compose.yaml's build and networks, which compose owns)."""
        names = list(dict.fromkeys(names))
        if missing := self.missing(names):
            what = "has" if len(missing) == 1 else "have"
            raise EngineError(f"{', '.join(missing)} {what} no container in compose project "
                              f"{self.project}: run `{self.up_command(*missing)}`")
        started = [name for name in names if not self.service(name).running()]
        for name in names:
            self.service(name).ensure_up(timeout)
        return started

    def machine(self) -> dict:
        info, version = self.client.info(), self.client.version()
        return {
            "engine": f"{version.get('Platform', {}).get('Name') or 'Docker Engine'} "
                      f"{info.get('ServerVersion', '?')} (API {version.get('ApiVersion', '?')})",
            "kernel": info.get("KernelVersion", "?"),
            "os": info.get("OperatingSystem", "?"),
            "architecture": info.get("Architecture", "?"),
            "cpus": info.get("NCPU", "?"),
            "memory": f"{info.get('MemTotal', 0) / 2**30:.1f} GiB",
            "cgroup": f"v{info.get('CgroupVersion', '?')} ({info.get('CgroupDriver', '?')} driver)",
            "storage driver": info.get("Driver", "?"),
            "compose project": self.project,
        }


class Service:
    """One compose service's container."""

    def __init__(self, engine: Engine, name: str):
        self.engine, self.name = engine, name
        self._container = None

    def __repr__(self) -> str:
        return f"Service({self.name!r})"

    @property
    def container(self):
        if self._container is None:
            found = self.engine.containers(self.name).get(self.name)
            if found is None:
                raise EngineError(f"{self.name} has no container in compose project "
                                  f"{self.engine.project}: run "
                                  f"`{self.engine.up_command(self.name)}`")
            self._container = self.engine.client.containers.get(found.id)  # inspected, whole
        return self._container

    def _on(self, action):
        """action(container); once more with a fresh look-up if compose has
        re-created the container meanwhile (`up -d` after a build)."""
        try:
            return action(self.container)
        except self.engine.docker.errors.NotFound:
            self._container = None
            return action(self.container)

    # ---------------------------------------------------------------- state

    def state(self) -> dict:
        self._on(lambda c: c.reload())
        return self.container.attrs["State"]

    def running(self) -> bool:
        return self.state()["Status"] == "running"

    def env(self) -> dict[str, str]:
        """The container's environment (compose.yaml's and the image's)."""
        pairs = (e.partition("=") for e in self.container.attrs["Config"].get("Env") or [])
        return {k: v for k, _, v in pairs}

    def exec(self, cmd, user: str | None = None) -> tuple[int | None, str]:
        """Run `cmd` inside the container once: (exit code, output), or
        (None, "") when it cannot run (the container is not running, out of
        processes). The output may be lost (see `again_if_lost`): a command
        whose output matters runs through `query` or `once`."""
        try:
            kwargs = {"user": user} if user else {}
            code, out = self._on(lambda c: c.exec_run(cmd, **kwargs))
        except self.engine.docker.errors.APIError:
            return None, ""
        return code, out.decode("utf-8", "replace")

    def read_only(self, cmd, timeout: float = 30) -> tuple[int | None, str]:
        """`exec` for a command that only reads, run by the engine's relay in
        the container's namespaces as an exec would run it (no exec: see
        instrument.relay), the exec way where there is no relay."""
        if (relay := self.engine.relay()) is not None:
            state = self.state()
            if state.get("Status") != "running" or not state.get("Pid"):
                return None, ""
            argv = entering(state["Pid"], self.container.attrs["Config"], cmd)
            if argv and (answer := relay.run(argv, timeout)) is not None:
                return answer[0], answer[1].decode("utf-8", "replace")
        return self.exec(cmd)

    def query(self, cmd, user: str | None = None,
              prints_on_failure: bool = False, complete=bool) -> tuple[int | None, str]:
        """A command that only reads and prints something whenever it succeeds
        (a /proc file, the probe): run again if its output is lost."""
        run = (lambda: self.exec(cmd, user)) if user else (lambda: self.read_only(cmd))
        return again_if_lost(run, prints_on_failure=prints_on_failure, complete=complete)

    def must(self, cmd, user: str | None = None) -> str:
        """query that must succeed: its output, or EngineError."""
        code, out = self.query(cmd, user)
        if code != 0:
            raise EngineError(f"{cmd!r} in {self.name}: exit {code}: {out[-500:]}", code=1)
        return out

    def once(self, script: str, *args: str) -> str:
        """A shell script that changes something (sends a signal), run exactly
        once, that must succeed: its output. The script's output also goes to
        a file in the container, read back if the engine loses the exec's."""
        keep = f"/tmp/lsbaws-once-{uuid.uuid4().hex}"
        code, out = self.exec(["sh", "-c", f"( {script}\n) > {keep} 2>&1; s=$?; cat {keep}; "
                               "exit $s", "once", *args])
        if code == 0 and not out:
            out = self.query(["cat", keep])[1]
        self.exec(["rm", "-f", keep])
        if code != 0:
            raise EngineError(f"{script.strip()[:200]!r} in {self.name}: exit {code}: "
                              f"{out[-500:]}", code=1)
        return out

    def exec_detached(self, cmd) -> None:
        self._on(lambda c: c.exec_run(cmd, detach=True))

    def look(self, pid: int | None = None) -> procs.Look | None:
        """One exec (procs.PROBE): process table, TCP table, the server's
        descriptors and limits, the pids limit. None if it cannot run."""
        code, out = self.query(["sh", "-c", procs.PROBE, "probe", str(pid or "")],
                               complete=procs.probe_complete)
        return procs.parse_probe(out) if code == 0 and procs.probe_complete(out) else None

    def processes(self) -> list[procs.Proc]:
        look = self.look()
        return look.table if look else []

    def server(self) -> procs.Proc | None:
        look = self.look()
        return look.server if look else None

    def server_pid(self, within: float = 5.0) -> int:
        """The server's PID, looked for again for up to `within` seconds (a
        probe can fail once on a loaded engine; a restarting server is back)."""
        server = poll(self.server, within, 0.25)
        if server is None:
            raise EngineError(f"no server process (python/gunicorn under PID 1) in {self.name}",
                              code=1)
        return server.pid

    def children(self, pid: int | None = None) -> list[procs.Proc]:
        look = self.look()
        if not look:
            return []
        pid = pid or look.server_pid
        return procs.children(look.table, pid) if pid else []

    def zombies(self, parent: int | None = None) -> list[procs.Proc]:
        return procs.zombies(self.processes(), parent)

    def fds(self, pid: int) -> int | None:
        code, out = self.query(["ls", f"/proc/{pid}/fd"])
        return procs.fd_count(out) if code == 0 else None

    def read(self, path: str) -> str | None:
        code, out = self.query(["cat", path])
        return out if code == 0 else None

    def limit(self, pid: int, name: str) -> tuple[str, str]:
        """(soft, hard) of a limit in /proc/PID/limits, e.g. 'Max open files'."""
        found = procs.limit_of(self.read(f"/proc/{pid}/limits") or "", name)
        if not found:
            raise EngineError(f"{name!r} not in /proc/{pid}/limits of {self.name}", code=1)
        return found

    def uid(self, pid: int) -> int:
        for line in (self.read(f"/proc/{pid}/status") or "").splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
        raise EngineError(f"no Uid in /proc/{pid}/status of {self.name}", code=1)

    def pids_max(self) -> str | None:
        look = self.look()
        return look.pids_max if look else None

    def tcp(self) -> list[procs.TcpRow]:
        return procs.tcp_rows(self.read("/proc/net/tcp") or "")

    def listen_queue(self, port: int = PORT) -> int | None:
        text = self.read("/proc/net/tcp")
        return procs.listen_queue(text, port) if text else None

    def listening(self, port: int = PORT) -> bool:
        return self.listen_queue(port) is not None

    def await_listen(self, port: int = PORT, timeout: float = 30, unless: str = "") -> bool:
        """Wait until something in the container LISTENs on `port`, looking at
        /proc/net/tcp every 0.05 s inside one command of up to AWAIT_SLICE s
        (run by the relay, or an exec: ~0.06 s of the engine's CPU); False at the
        deadline, or as soon as the file `unless` is written or the
        container stops."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ticks = max(1, round(min(AWAIT_SLICE, deadline - time.monotonic()) / 0.05))
            code, _ = self.read_only(["sh", "-c", AWAIT_LISTEN, "await", str(port), str(ticks),
                                      *([unless] if unless else [])], timeout=ticks * 0.05 + 10)
            if code == 0:
                return True
            if code == 3 or (code is None and not self.running()):
                return False
            if code is None:
                time.sleep(0.1)
        return self.listening(port)

    def socket_owners(self, client_ports, server_port: int = PORT) -> dict[int, list[int]]:
        """For each client port: the PIDs in the container that hold a descriptor
        of the server's side of that connection (from /proc/*/fd)."""
        out = self.must(["python", "-c", procs.SOCKET_OWNERS, str(server_port), *map(str, client_ports)])
        return {int(k): v for k, v in json.loads(out).items()}

    def logs_since_start(self) -> str:
        """The output since the container's last start (the engine keeps older runs)."""
        started = docker_time(self.state()["StartedAt"])
        out = []
        raw = self._on(lambda c: c.logs(timestamps=True)).decode("utf-8", "replace")
        for line in raw.splitlines():
            stamp, _, text = line.partition(" ")
            if docker_time(stamp) >= started:
                out.append(text)
        return "\n".join(out)

    # ---------------------------------------------------------------- changing it

    def _ready(self) -> procs.Proc | None:
        look = self.look()
        return look.server if look and look.server and look.queue(PORT) is not None else None

    def _wait_ready(self, timeout: float, why: str) -> procs.Proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server := self._ready():
                return server
            if not self.running():
                state = self.state()
                raise EngineError(f"{self.name} is {state['Status']} (exit code "
                                  f"{state.get('ExitCode')}) instead of running: it did not "
                                  f"{why}; see `{self.engine.compose_command('logs', self.name)}`",
                                  code=1)
            # wait in one exec; listening but not yet seen ready: look again soon
            if self.await_listen(PORT, max(0.05, min(AWAIT_SLICE, deadline - time.monotonic()))):
                time.sleep(0.1)
        raise EngineError(f"{self.name} runs but its server did not LISTEN on {PORT} within "
                          f"{timeout:g} s: it did not {why}; see "
                          f"`{self.engine.compose_command('logs', self.name)}`", code=1)

    def restart(self, timeout: float = 60) -> procs.Proc:
        """Restart afresh (an exited container too); wait, without connecting,
        until the server process is up and LISTENs on 8888. Returns the server.
        A container the restart left stopped is started once more."""
        self._on(lambda c: c.restart(timeout=2))
        if not self.running():
            self._on(lambda c: c.start())
        return self._wait_ready(timeout, "come back after a restart")

    def ensure_up(self, timeout: float = 60) -> procs.Proc:
        """Up and listening: a stopped or exited container is started, one that
        is still starting (Django takes a moment) is waited for. Returns the
        server. A server this process saw ready since its container last
        started is taken as up without a probe: every service runs its server
        under an init, so a server that ends ends its container."""
        state = self.state()
        if state.get("Status") != "running":
            self._on(lambda c: c.start())
            return self._wait_ready(timeout, "start")
        seen = self.engine.ready_seen.get(self.name)
        if seen and seen[0] == state.get("StartedAt"):
            return seen[1]
        if server := self._ready() or (self.await_listen(PORT, min(timeout, 20))
                                       and poll(self._ready, 5, 0.2)):
            self.engine.ready_seen[self.name] = (state.get("StartedAt"), server)
            return server
        return self.restart(timeout)  # running but not listening: a twin's leftover, a hang

    def wait_exited(self, timeout: float) -> dict:
        """Wait until the container has stopped; return its State."""
        return wait_for(lambda: (st := self.state())["Status"] == "exited" and st, timeout, 0.2,
                        f"{self.name} to exit")


def docker_time(text: str) -> tuple[str, int]:
    """'2026-11-27T13:55:36.8189847Z' -> ('2026-11-27T13:55:36', 818984700): comparable."""
    text = text.rstrip("Z")
    whole, _, frac = text.partition(".")
    frac = frac.split("+")[0]
    return whole, int((frac + "000000000")[:9])
