"""engine: the compose services, seen through the engine's socket.

The lab runs in its own container (`docker compose run --rm lab ...`) with
the engine's socket mounted. It finds its compose project from its own
container's labels (the hostname is the container id), then each service's
container by the compose labels. It reads: process tables (`ps` by exec),
/proc, logs, the container's state. The one thing it changes is the service
an experiment uses: it restarts it, and starts/kills a twin inside it.

Nothing here connects to a server to see whether it is up: a probe would
leave a descriptor and a zombie on 3d and kill 3e. Readiness is the LISTEN
row in the container's /proc/net/tcp, like the images' healthcheck.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import time
from pathlib import Path

from lab import procs
from lab.experiments import PORT

SOCKET_PATH = os.environ.get("LAB_DOCKER_SOCKET", "/var/run/docker.sock")


class LabError(Exception):
    """Bad input or a missing prerequisite: one line for the user, exit 2."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class Engine:
    def __init__(self, project: str | None = None):
        if not os.path.exists(SOCKET_PATH):
            raise LabError(
                f"no engine socket at {SOCKET_PATH}: run the lab with `docker compose run --rm "
                f"lab ...` (compose.yaml mounts it) or add -v {SOCKET_PATH}:{SOCKET_PATH}")
        import docker  # the SDK; imported here so the unit tests never need it

        self.docker = docker
        try:
            self.client = docker.DockerClient(base_url=f"unix://{SOCKET_PATH}", timeout=60)
            self.client.ping()
        except Exception as error:
            raise LabError(f"the engine at {SOCKET_PATH} does not answer: {error}") from None
        self.project, self.workdir = self._project(project)

    def _project(self, project: str | None) -> tuple[str, str]:
        """This container's compose project (and its working dir), from its labels."""
        project = project or os.environ.get("COMPOSE_PROJECT_NAME")
        try:
            me = self.client.containers.get(socket.gethostname())
            labels = me.labels
        except Exception:
            labels = {}
        if project:
            return project, labels.get("com.docker.compose.project.working_dir", "")
        if "com.docker.compose.project" not in labels:
            raise LabError("cannot tell which compose project to look at: run the lab with "
                           "`docker compose run --rm lab ...`, or set COMPOSE_PROJECT_NAME")
        return (labels["com.docker.compose.project"],
                labels.get("com.docker.compose.project.working_dir", ""))

    def compose_command(self, *args: str) -> str:
        """`docker compose ...` as the user would type it: with -p when the project
        is not the default one (the name of the directory compose.yaml is in)."""
        default = re.sub(r"[^a-z0-9_-]", "", Path(self.workdir).name.lower()) if self.workdir else ""
        p = [] if self.project == default else ["-p", self.project]
        return " ".join(["docker compose", *p, *args])

    def fix_command(self, *services: str) -> str:
        return self.compose_command("--profile", "all", "up", "-d", *services)

    def service(self, name: str) -> Service:
        return Service(self, name)

    def missing(self, names) -> list[str]:
        """The services that have no container in this project."""
        have = {c.labels.get("com.docker.compose.service") for c in self.client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={self.project}"})}
        return [n for n in names if n not in have]

    def require(self, names) -> None:
        names = list(dict.fromkeys(names))
        if missing := self.missing(names):
            what = "is" if len(missing) == 1 else "are"
            raise LabError(f"{', '.join(missing)} {what} not running in compose project "
                           f"{self.project}: run `{self.fix_command(*missing)}`")

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

    @property
    def container(self):
        if self._container is None:
            found = self.engine.client.containers.list(all=True, filters={"label": [
                f"com.docker.compose.project={self.engine.project}",
                f"com.docker.compose.service={self.name}"]})
            if not found:
                raise LabError(f"{self.name} is not running in compose project "
                               f"{self.engine.project}: run `{self.engine.fix_command(self.name)}`")
            self._container = found[0]
        return self._container

    # ---------------------------------------------------------------- state

    def state(self) -> dict:
        try:
            self.container.reload()
        except self.engine.docker.errors.NotFound:
            self._container = None
            self.container.reload()
        return self.container.attrs["State"]

    def running(self) -> bool:
        return self.state()["Status"] == "running"

    def env(self) -> dict[str, str]:
        """The container's environment (compose.yaml's and the image's)."""
        pairs = (e.partition("=") for e in self.container.attrs["Config"].get("Env") or [])
        return {k: v for k, _, v in pairs}

    def exec(self, cmd, user: str | None = None) -> tuple[int | None, str]:
        """Run `cmd` inside the container: (exit code, output), or (None, "")
        when it cannot run (the container is not running, out of processes)."""
        try:
            kwargs = {"user": user} if user else {}
            code, out = self.container.exec_run(cmd, **kwargs)
        except self.engine.docker.errors.APIError:
            return None, ""
        return code, out.decode("utf-8", "replace")

    def exec_detached(self, cmd) -> None:
        self.container.exec_run(cmd, detach=True)

    def look(self, pid: int | None = None) -> procs.Look | None:
        """One probe (lab.procs.PROBE): process table, TCP table, the server's
        descriptors and limits, the pids limit. None if it cannot run."""
        code, out = self.exec(["sh", "-c", procs.PROBE, "probe", str(pid or "")])
        return procs.parse_probe(out) if code == 0 else None

    def processes(self) -> list[procs.Proc] | None:
        look = self.look()
        return look.table if look else None

    def server(self) -> procs.Proc | None:
        look = self.look()
        return look.server if look else None

    def fds(self, pid: int) -> int | None:
        code, out = self.exec(["ls", f"/proc/{pid}/fd"])
        return procs.fd_count(out) if code == 0 else None

    def read(self, path: str) -> str | None:
        code, out = self.exec(["cat", path])
        return out if code == 0 else None

    def listen_queue(self, port: int = PORT) -> int | None:
        text = self.read("/proc/net/tcp")
        return procs.listen_queue(text, port) if text else None

    def listening(self, port: int = PORT) -> bool:
        return self.listen_queue(port) is not None

    def logs_since_start(self) -> str:
        """The output since the container's last start (the engine keeps older runs)."""
        started = _docker_time(self.state()["StartedAt"])
        out = []
        raw = self.container.logs(timestamps=True).decode("utf-8", "replace")
        for line in raw.splitlines():
            stamp, _, text = line.partition(" ")
            if _docker_time(stamp) >= started:
                out.append(text)
        return "\n".join(out)

    # ---------------------------------------------------------------- the one change

    def restart(self, timeout: float = 60) -> procs.Proc:
        """Restart afresh (an exited container too); wait, without connecting,
        until the server process is up and LISTENs on 8888. Returns the server."""
        self.container.restart(timeout=2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            look = self.look()
            if look and look.server and look.queue(PORT) is not None:
                return look.server
            if not self.running():
                break
            time.sleep(0.1)
        raise LabError(f"{self.name} did not come back within {timeout:g} s after a restart: "
                       f"see `{self.engine.compose_command('logs', self.name)}`", code=1)


class Twin:
    """The same lesson file, started again inside the same container on
    another port with other settings (a short SLEEP, ACCEPT=python); killed
    on exit. Its parent is the exec (PPID 0), not docker-init."""

    def __init__(self, svc: Service, script: str, port: int, **env):
        self.svc, self.script, self.port = svc, script, port
        self.env = {k: str(v) for k, v in env.items()}
        self.pidfile = f"/tmp/lsbaws-lab-twin-{port}.pid"
        self.logfile = f"/tmp/lsbaws-lab-twin-{port}.log"
        self.pid: int | None = None

    def __enter__(self) -> Twin:
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in {**self.env, "PORT": self.port}.items())
        self.svc.exec_detached(["sh", "-c", f"echo $$ > {self.pidfile}; exec env {env} python "
                                            f"{shlex.quote(self.script)} > {self.logfile} 2>&1"])
        deadline = time.monotonic() + 20
        while not self.svc.listening(self.port):
            if time.monotonic() > deadline:
                raise LabError(f"the twin {self.script} did not listen on {self.port} in "
                               f"{self.svc.name} within 20 s", code=1)
            time.sleep(0.1)
        self.pid = int((self.svc.read(self.pidfile) or "0").strip() or 0)
        return self

    def alive(self) -> bool:
        code, out = self.svc.exec(["ps", "-o", "stat=", "-p", str(self.pid)])
        return code == 0 and bool(out.strip()) and not out.strip().startswith("Z")

    def log(self) -> str:
        return self.svc.read(self.logfile) or ""

    def __exit__(self, *exc):
        if not self.pid:
            return
        self.svc.exec(["kill", str(self.pid)])
        deadline = time.monotonic() + 5
        while self.svc.exec(["kill", "-0", str(self.pid)])[0] == 0:
            if time.monotonic() > deadline:
                self.svc.exec(["kill", "-9", str(self.pid)])
                break
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while self.svc.listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)


def _docker_time(text: str) -> tuple[str, int]:
    """'2026-11-27T13:55:36.8189847Z' -> ('2026-11-27T13:55:36', 818984700): comparable."""
    text = text.rstrip("Z")
    whole, _, frac = text.partition(".")
    frac = frac.split("+")[0]
    return whole, int((frac + "000000000")[:9])
