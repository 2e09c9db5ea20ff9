"""copies: run copies of a server's image through the engine, and watch them.

    copies = Copies(engine)                       # on this project's network
    copy = copies.start("lsbaws/part3-waitpid:dev", "zombie", env={"SLEEP": "1"},
                        nofile=256, pids=64, files={"/lsbaws-grade/app.py": b"..."})
    copy.wait_listening(30)                       # without ever connecting
    look = copy.look()                            # server pid, children, zombies, fds
    copy.remove()

A copy is a fresh container of the image (never the compose service's own
container, so grading never disturbs the running stack), with the settings a
measurement needs: an environment, a `nofile` or pids limit, files put into
it before it starts (`put_archive`: no host path, no volume). It runs under
an init, like every service of the stack, so the server's children stay its
own and SIGTERM reaches it.

What happens inside is read by an *observer*: one container per run (the
tests image, which has Python) in the engine's PID namespace, which enters a
copy's PID namespace for each look (`nsenter`, then a /proc of that
namespace mounted in a mount namespace of its own) and reads /proc: the
process table with zombies (the engine's `top` hides them), the server's
open descriptors, its LISTEN socket in /proc/PID/net/tcp. A sentinel
(`sleep infinity`, entered the same way) lives in each copy's namespace: a
copy that signals every process it can kills it, and the grader knows its
view was shot at. The copy's image needs nothing installed: a static binary
in an empty image is watched the same way. The observer never connects to
the server (a probe connection changes what a leaky server shows). The
observer only reads raw /proc text; parsing is instrument.observe's and
instrument.procs'. An engine that refuses the observer its capabilities gets
an observer container per copy in its PID namespace (`pid_mode`), the older way.

Every container made here carries the label `lsbaws.copy` with its run's
owner, `CONTAINER.PID-TOKEN` (the container that made it, the process, a
token of the run): `sweep()` removes what an interrupted run left (its
container or its process is gone) and `Copies.remove_all()` what this run
made, so several runs in one container (the suite's workers) never touch
each other's copies. LSBAWS_COPY_OWNER names the owner (a test that runs
`grade` as a command and looks for what it left).
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field

from instrument import procs
from instrument.engine import EngineError, again_if_lost
from instrument.observe import OBSERVE, Look, observe_argv, parse_sample, parsed_line, whole  # noqa: F401 - the copies' view
from instrument.relay import Relay

LABEL = "lsbaws.copy"
PORT = 8888
DEFAULT_OBSERVER = "lsbaws/tests:dev"
WAIT_INTERVAL, WAIT_SLICE = 0.05, 3.0   # wait_listening: look every 0.05 s, 3 s a command


def new_owner(kind: str = "") -> str:
    """A run's owner: CONTAINER.PID-TOKEN (see the module's docstring);
    CONTAINER.PID.KIND-TOKEN for another kind of container of the process (an
    Engine's relay), which no run's copies are mistaken for."""
    kind = f".{kind}" if kind else ""
    return f"{socket.gethostname()}.{os.getpid()}{kind}-{uuid.uuid4().hex[:6]}"


def owner_alive(client, owner: str) -> bool:
    """Whether the run that owns a label is still going: its container runs
    and, in this container, its process too (an owner without a readable
    process is alive as long as its container is)."""
    container, _, run = owner.partition(".")
    if container == socket.gethostname():
        pid = run.partition("-")[0].partition(".")[0]
        if not pid.isdigit():
            return True
        try:
            os.kill(int(pid), 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    try:
        return bool(container) and client.containers.get(container).status == "running"
    except Exception:  # noqa: BLE001 - the engine's NotFound/APIError: not running
        return False

class CopyError(EngineError):
    """A copy that cannot be made or does not come up (code 2: a set-up problem)."""


@dataclass
class Copy:
    copies: Copies
    name: str
    image: str
    role: str
    container: object
    observer: object | None = None   # its own observer container (the older way)
    sentinel: str | None = None      # the exec id of its sentinel (the run's observer)
    watching: object | None = None   # the Watch running on it (instrument.watch)
    started: float = field(default_factory=time.monotonic)

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        try:
            self.container.reload()
        except self.copies.docker.errors.NotFound:
            return {"Status": "removed", "ExitCode": None}
        return self.container.attrs["State"]

    def running(self) -> bool:
        return self.state().get("Status") == "running"

    def logs(self, tail: int = 200) -> str:
        try:
            return self.container.logs(tail=tail).decode("utf-8", "replace")
        except self.copies.docker.errors.APIError:
            return ""

    def last_lines(self, n: int = 3) -> str:
        lines = [ln.strip() for ln in self.logs(50).splitlines() if ln.strip()]
        return " | ".join(lines[-n:]) or "(no output)"

    def crash_line(self) -> str:
        return procs.crash_line(self.logs(400)) or self.last_lines(1)

    # ---------------------------------------------------------------- looking
    def _looker(self, argv: list[str]) -> tuple[object, list[str], str | None]:
        """Where a look runs, its command, and the hostname it must report: the
        run's observer entering the copy's PID, UTS and network namespaces (its
        init's pid read just now: a pid the engine reused after the copy ended
        shows another hostname, and the look is dropped), else its own observer."""
        shared = self.copies.observer()
        pid = self.container.attrs["State"].get("Pid")
        if shared is not None and pid:
            return shared, [*self.copies.enter(pid, uts=True, net=True), "unshare", "--mount",
                            "--mount-proc", *argv], self.container.attrs["Config"]["Hostname"]
        if self.observer is None:
            self.observer = self.copies._start_own_observer(self)
        return self.observer, argv, None

    def view_lost(self) -> str:
        """'' while the grader sees into the copy; else what became of its
        view: the sentinel (or own observer) in its PID namespace ended."""
        if self.sentinel:
            try:
                info = self.copies.client.api.exec_inspect(self.sentinel)
            except self.copies.docker.errors.APIError:
                return "its sentinel is gone"
            return "" if info.get("Running") else f"exited, exit {info.get('ExitCode')}"
        if self.observer is None:
            return ""
        try:
            self.observer.reload()
            state = self.observer.attrs["State"]
        except Exception:  # noqa: BLE001 - removed under us: the view is gone too
            state = {"Status": "removed", "ExitCode": None}
        if state.get("Status") == "running":
            return ""
        return f"{state.get('Status')}, exit {state.get('ExitCode')}"

    def look(self, extra_pids=()) -> Look | None:
        """One sample; None when the copy (and so its PID namespace) is gone.
        While a watch runs, its first sample taken after this call."""
        watch = self.watching
        if watch is not None and not extra_pids:
            if (found := watch.next_look(2 * watch.interval + 2)) is not None:
                return found
        found = self.sample(1, 0.0, extra_pids)
        return found[0] if found else None

    def stream(self, samples: int, interval: float, stop: threading.Event):
        """Samples as the observer takes them, from one exec (instrument.watch),
        until `samples` are taken, the exec ends or `stop` is set."""
        if not self.running():
            return
        argv = observe_argv(samples, interval)
        try:
            observer, cmd, hostname = self._looker(argv)
            api = self.copies.client.api
            chunks = api.exec_start(api.exec_create(observer.id, cmd)["Id"], stream=True)
        except self.copies.docker.errors.APIError:
            return
        pending = b""
        for chunk in chunks:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if (look := parsed_line(line, hostname)) is not None:
                    yield look
            if stop.is_set():
                return

    def sample(self, samples: int, interval: float, extra_pids=()) -> list[Look]:
        if not self.running():
            return []
        argv = observe_argv(samples, interval, extra_pids)
        got: list = []
        node: list = []

        def run():
            try:
                observer, cmd, hostname = self._looker(argv)
                node.append(hostname)
                relay = self.copies.relay() if hostname is not None else None
                got.append(again_if_lost(lambda: self.copies.run(observer, cmd, relay, timeout),
                                         complete=whole))
            except self.copies.docker.errors.APIError:
                pass

        # An exec whose PID namespace dies under it (the copy crashed: its init
        # took every process of the namespace along) can hang for ever on this
        # engine: wait for it in a thread, with a deadline, and give up on it
        # as soon as the copy is seen gone.
        timeout = abs(samples) * interval + 15
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + timeout
        while worker.is_alive() and time.monotonic() < deadline:
            worker.join(0.5)
            if worker.is_alive() and not self.running():
                break
        if not got or got[0][0] != 0:
            return []
        looks = (parsed_line(line, node[0] if node else None) for line in got[0][1].split(b"\n"))
        return [look for look in looks if look is not None]

    def watch(self, interval: float = 0.1):
        """Sample in the background until `.stop()`: peaks and every child
        seen (instrument.watch)."""
        from instrument.watch import Watch
        return Watch(self, interval)

    def wait_listening(self, timeout: float = 30) -> Look:
        """Wait until the server LISTENs on 8888, reading /proc only. CopyError
        (with its last log lines) if it exits or does not listen in time. The
        observer looks every WAIT_INTERVAL s inside one command of up to
        WAIT_SLICE s (one Python start a slice, not one a look)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state.get("Status") not in ("running", "created"):
                raise CopyError(f"{self.name} exited (status {state.get('ExitCode')}) before it "
                                f"listened on {PORT}; its last log lines: {self.last_lines()}")
            if state.get("Status") != "running":
                time.sleep(0.1)
                continue
            left = min(WAIT_SLICE, max(deadline - time.monotonic(), WAIT_INTERVAL))
            looks = self.sample(-max(1, round(left / WAIT_INTERVAL)), WAIT_INTERVAL)
            look = looks[-1] if looks else None
            if look and look.listening and look.server_pid:
                return look
            if not looks:
                time.sleep(0.15)
        raise CopyError(f"{self.name} did not listen on {PORT} within {timeout:g} s; its last "
                        f"log lines: {self.last_lines()}")

    # ---------------------------------------------------------------- changing it
    def kill(self, sig: str = "SIGTERM") -> float:
        """Signal the copy's init (which passes it to the server, as `docker stop`
        does); returns time.monotonic() when it was sent."""
        self.container.kill(signal=sig)
        return time.monotonic()

    def wait_exit(self, timeout: float) -> tuple[int | None, float | None]:
        """(exit status, monotonic time it was seen exited) or (None, None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state.get("Status") in ("exited", "dead", "removed"):
                return state.get("ExitCode"), time.monotonic()
            time.sleep(0.05)
        return None, None

    def address(self) -> str:
        return self.name

    def remove(self) -> None:
        # the sentinel ends with the copy's PID namespace
        for c in (self.observer, self.container):
            if c is not None:
                with contextlib.suppress(self.copies.docker.errors.APIError):
                    c.remove(force=True)
        self.copies._forget(self)


class Copies:
    """The copies one run makes, on the compose project's network."""

    def __init__(self, engine, owner: str | None = None, observer_image: str | None = None):
        self.engine = engine
        self.client = engine.client
        self.docker = engine.docker
        self.owner = owner or os.environ.get("LSBAWS_COPY_OWNER") or new_owner()
        me = self._me()
        self.network = self._network(me)
        self.observer_image = observer_image or (me.image.id if me else DEFAULT_OBSERVER)
        self._made: list[Copy] = []
        self._lock = threading.Lock()
        self._observer = None
        self._relay = None            # the observer's relay (instrument.relay)
        self._own_observers = False   # the engine refused the run's observer
        self._n = 0
        self.closed = False

    def _me(self):
        try:
            return self.client.containers.get(socket.gethostname())
        except self.docker.errors.APIError:
            return None

    def _network(self, me) -> str:
        if me is not None:
            nets = list(me.attrs["NetworkSettings"]["Networks"])
            if nets:
                return nets[0]
        return f"{self.engine.project}_default"

    # ---------------------------------------------------------------- making
    def start(self, image: str, role: str, env: dict | None = None, nofile: int | None = None,
              pids: int | None = 512, mem: str = "256m", files: dict[str, bytes] | None = None,
              user: str | None = None, observe: bool = True) -> Copy:
        with self._lock:
            if self.closed:
                raise CopyError("stopping: no new copies")
            self._n += 1
            n = self._n
        host, _, run = self.owner.partition(".")
        name = f"lsbaws-copy-{host[:12]}-{run}-{n}-{role}"[:63]
        kwargs = dict(
            image=image, name=name, detach=True, init=True, network=self.network,
            environment=env or {}, labels={LABEL: self.owner, f"{LABEL}.role": role},
            mem_limit=mem, pids_limit=pids or -1, stop_signal="SIGTERM",
            # the image's healthcheck would exec into the copy every few seconds:
            # a process that counts against its pids limit, and a load
            healthcheck={"test": ["NONE"]},
            # capped: a server that writes without end fills no disk (docker logs reads 1 MB)
            log_config=self.docker.types.LogConfig(type="json-file",
                                                   config={"max-size": "1m", "max-file": "1"}),
        )
        if nofile:
            kwargs["ulimits"] = [self.docker.types.Ulimit(name="nofile", soft=nofile, hard=nofile)]
        if user:
            kwargs["user"] = user
        try:
            container = self.client.containers.create(**kwargs)
        except self.docker.errors.ImageNotFound:
            raise CopyError(f"image {image} is missing: build it with `docker compose build`") \
                from None
        except self.docker.errors.APIError as error:
            raise CopyError(f"cannot create a copy of {image}: {error.explanation or error}") \
                from None
        copy = Copy(self, name, image, role, container)
        with self._lock:
            self._made.append(copy)
            if self.closed:
                copy.remove()
                raise CopyError("stopping: no new copies")
        if files:
            container.put_archive("/", _tar(files))
        container.start()
        if observe:
            try:
                self._guard(copy)
            except self.docker.errors.APIError:
                pass  # the copy exited at once: wait_listening says so, with its logs
        return copy

    def _guard(self, copy: Copy):
        """Put the copy's sentinel in its PID namespace (or, the older way,
        start its own observer there)."""
        shared = self.observer()
        if shared is None:
            copy.observer = self._start_own_observer(copy)
            return
        copy.container.reload()
        pid = copy.container.attrs["State"].get("Pid")
        if pid:
            made = self.client.api.exec_create(shared.id, [*self.enter(pid), "sleep", "infinity"])
            self.client.api.exec_start(made["Id"], detach=True)
            copy.sentinel = made["Id"]

    @staticmethod
    def enter(pid: int, uts: bool = False, net: bool = False) -> list[str]:
        """The command prefix that runs the rest in the PID (and UTS, network) namespaces
        of the engine's process `pid` (nsenter forks: the rest is inside)."""
        return ["nsenter", "--target", str(pid), "--pid", *(["--uts"] if uts else []),
                *(["--net"] if net else []), "--"]

    def observer(self):
        """The run's observer, made at first use: a relay's container
        (instrument.relay) in the engine's PID namespace, with the
        capabilities to enter a copy's namespaces and mount its /proc; None
        if the engine refuses it (each copy then gets its own)."""
        with self._lock:
            if self._observer is None and not self._own_observers and not self.closed:
                host, _, run = self.owner.partition(".")
                try:
                    self._relay = Relay.observer(
                        self.client, self.observer_image, self.owner, "observer",
                        f"lsbaws-copy-{host[:12]}-{run}-observer"[:63], "512m")
                    self._observer = self.client.containers.get(self._relay.container_id)
                except self.docker.errors.APIError:
                    self._own_observers = True
            return self._observer

    def relay(self):
        """The shared observer's relay; None without one, or once it is gone."""
        return self._relay if self._relay is not None and not self._relay.gone else None

    def run(self, observer, cmd: list[str], relay, timeout: float) -> tuple[int | None, bytes]:
        """`cmd` in the observer: through the relay, or an exec of its own
        when there is none (or it is gone)."""
        if relay is not None and (answer := relay.run(cmd, timeout)) is not None:
            return answer
        return observer.exec_run(cmd)

    def _start_own_observer(self, copy: Copy):
        return self.client.containers.run(
            self.observer_image, ["sleep", "infinity"], entrypoint=[], detach=True,
            name=f"{copy.name}-observer"[:63], pid_mode=f"container:{copy.container.id}",
            network_mode="none", cap_add=["SYS_PTRACE"], user="0", working_dir="/",
            labels={LABEL: self.owner, f"{LABEL}.role": "observer"}, mem_limit="128m")

    def _forget(self, copy: Copy):
        with self._lock, contextlib.suppress(ValueError):
            self._made.remove(copy)

    def remove_all(self) -> None:
        """Remove every copy (and observer) this run made; no new ones after it."""
        self.closed = True
        for copy in list(self._made):
            copy.remove()
        if self._relay is not None:
            self._relay.close()
        if self._observer is not None:
            try:
                self._observer.remove(force=True)
            except self.docker.errors.APIError:
                pass
        # anything labelled by this owner that a half-made copy left
        for row in self._labelled(f"{LABEL}={self.owner}"):
            self._remove(row["Id"])

    def sweep(self) -> int:
        """Remove the copies whose maker (a grade run: its container, its
        process) is gone."""
        removed, alive = 0, {self.owner: True}
        for row in self._labelled(LABEL):
            owner = (row.get("Labels") or {}).get(LABEL, "")
            if owner not in alive:
                alive[owner] = owner_alive(self.client, owner)
            if not alive[owner]:
                removed += self._remove(row["Id"])
        return removed

    def _labelled(self, label: str) -> list[dict]:
        """Containers with the label, as the engine lists them (no inspect: another
        run may remove one meanwhile)."""
        try:
            return self.client.api.containers(all=True, filters={"label": label})
        except self.docker.errors.APIError:
            return []

    def _remove(self, container_id: str) -> int:
        try:
            self.client.api.remove_container(container_id, force=True)
            return 1
        except self.docker.errors.APIError:
            return 0


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = set()
        for path in files:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
