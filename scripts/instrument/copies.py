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

What happens inside is read by an *observer*: a second container (the tests
image, which has Python) that shares the copy's PID namespace
(`pid_mode="container:<id>"`) and reads /proc: the process table with
zombies (the engine's `top` hides them), the server's open descriptors, its
LISTEN socket in /proc/PID/net/tcp. The copy's image needs nothing
installed: a static binary in an empty image is watched the same way. The
observer never connects to the server (a probe connection changes what a
leaky server shows). The observer only reads raw /proc text; parsing is
instrument.procs'.

Every container made here carries the label `lsbaws.copy` with the id of the
container that made it, so `sweep()` removes what an interrupted run left
(whose maker is gone) and `Copies.remove_all()` what this run made.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import threading
import time
from dataclasses import dataclass, field

from instrument import procs
from instrument.engine import EngineError, again_if_lost

LABEL = "lsbaws.copy"
PORT = 8888
DEFAULT_OBSERVER = "lsbaws/tests:dev"

# Runs in the observer (stdlib only). Prints one JSON line per sample: every
# process of the shared PID namespace as its raw /proc/PID/stat line, which
# of them hold the LISTEN socket of the port, the descriptor count of each
# process that holds it (and of the pids asked for), the namespace's last
# allocated pid, and for each holder its /proc/PID/exe and argv[0] (how it
# runs: an emulator's name there shows a binary built for another CPU; the
# holders are still found by the socket, never by a name). argv: port,
# samples, interval, extra pids.
OBSERVE = r"""
import json, os, sys, time
port, samples, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
extra = {int(p) for p in sys.argv[4:]}
me = os.getpid()

def listen_inodes():
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/1/net/{name}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                found.add(f[9])
    return found

for i in range(samples):
    if i:
        time.sleep(interval)
    inodes = listen_inodes()
    stat, holders, fds, exe = {}, [], {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            stat[pid] = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        held = False
        if inodes:
            for fd in names:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held = True
                    break
        if held:
            holders.append(pid)
            try:
                path = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                path = ""
            try:
                argv0 = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode(
                    errors="replace")
            except OSError:
                argv0 = ""
            exe[pid] = [path, argv0]
        if held or pid in extra:
            fds[pid] = len(names)
    try:
        last = int(open("/proc/sys/kernel/ns_last_pid").read())
    except (OSError, ValueError):
        last = None
    print(json.dumps({"t": time.time(), "listen": bool(inodes), "stat": stat,
                      "holders": holders, "fds": fds, "last_pid": last, "me": me,
                      "exe": exe}), flush=True)
"""


class CopyError(EngineError):
    """A copy that cannot be made or does not come up (code 2: a set-up problem)."""


@dataclass
class Look:
    """One sample of a copy, as the observer saw it."""

    t: float
    listening: bool
    table: list[procs.Proc]          # the copy's processes (the observer's left out)
    server_pid: int | None           # the topmost process holding the LISTEN socket
    fds: dict[int, int]              # descriptor counts (the server's among them)
    cminflt: dict[int, int]          # page faults of reaped children, per process
    last_pid: int | None             # the namespace's last pid (each exec takes several)
    # the LISTEN holders' /proc/PID/exe and argv[0] (grade.emulation reads them)
    exe: dict[int, tuple[str, str]] = field(default_factory=dict)

    @property
    def server(self) -> procs.Proc | None:
        return next((p for p in self.table if p.pid == self.server_pid), None)

    @property
    def server_fds(self) -> int | None:
        return self.fds.get(self.server_pid) if self.server_pid else None

    def children(self, pid: int | None = None) -> list[procs.Proc]:
        pid = pid or self.server_pid
        return procs.children(self.table, pid) if pid else []

    def zombies(self, pid: int | None = None) -> list[procs.Proc]:
        return [p for p in self.children(pid) if p.zombie]


def parse_sample(line: str) -> Look:
    data = json.loads(line)
    me = data.get("me")
    table, cminflt = [], {}
    for pid, text in data["stat"].items():
        try:
            proc = procs.parse_stat(int(pid), text)
        except (ValueError, IndexError):
            continue
        if proc.pid == me or (proc.ppid == 0 and proc.pid != 1):
            continue  # the observer's own processes (their parent is outside)
        table.append(proc)
        fields = text[text.rindex(")") + 2:].split()
        cminflt[proc.pid] = int(fields[8]) if len(fields) > 8 else 0
    holders = set(data["holders"])
    by_pid = {p.pid: p for p in table}

    def ancestors(pid):
        seen = set()
        while pid in by_pid and pid not in seen:
            seen.add(pid)
            pid = by_pid[pid].ppid
            yield pid

    top = [h for h in holders if h in by_pid and not holders & set(ancestors(h))]
    server = min(top) if top else None
    if server is None and 1 in by_pid:
        # not listening (yet, or any more): the init's first live child
        kids = [p for p in table if p.ppid == 1 and not p.zombie]
        server = min(kids, key=lambda p: p.pid).pid if kids else None
    return Look(data["t"], data["listen"], table, server,
                {int(k): v for k, v in data["fds"].items()}, cminflt, data.get("last_pid"),
                {int(k): (v[0], v[1]) for k, v in (data.get("exe") or {}).items()})


@dataclass
class Copy:
    copies: Copies
    name: str
    image: str
    role: str
    container: object
    observer: object | None = None
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
    def _observer(self):
        if self.observer is None:
            self.observer = self.copies._start_observer(self)
        return self.observer

    def look(self, extra_pids=()) -> Look | None:
        """One sample; None when the copy (and so its PID namespace) is gone."""
        found = self.sample(1, 0.0, extra_pids)
        return found[0] if found else None

    def sample(self, samples: int, interval: float, extra_pids=()) -> list[Look]:
        if not self.running():
            return []
        cmd = ["python3", "-c", OBSERVE, str(PORT), str(samples), str(interval),
               *map(str, extra_pids)]
        got: list = []

        def run():
            try:
                got.append(again_if_lost(lambda: self._observer().exec_run(cmd)))
            except self.copies.docker.errors.APIError:
                pass

        # An exec whose PID namespace dies under it (the copy crashed: its init
        # took every process of the namespace along) can hang for ever on this
        # engine: wait for it in a thread, with a deadline.
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(samples * interval + 15)
        if not got or got[0][0] != 0:
            return []
        return [parse_sample(line) for line in got[0][1].decode().splitlines()
                if line.startswith("{")]

    def watch(self, interval: float = 0.1) -> Watch:
        """Sample in the background until `.stop()`: peaks and every child seen."""
        return Watch(self, interval)

    def wait_listening(self, timeout: float = 30) -> Look:
        """Wait until the server LISTENs on 8888, reading /proc only. CopyError
        (with its last log lines) if it exits or does not listen in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state.get("Status") not in ("running", "created"):
                raise CopyError(f"{self.name} exited (status {state.get('ExitCode')}) before it "
                                f"listened on {PORT}; its last log lines: {self.last_lines()}")
            look = self.look() if state.get("Status") == "running" else None
            if look and look.listening and look.server_pid:
                return look
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
        for c in (self.observer, self.container):
            if c is None:
                continue
            try:
                c.remove(force=True)
            except self.copies.docker.errors.APIError:
                pass
        self.copies._forget(self)


class Watch:
    """A background sampler of one copy (a thread driving one long observer exec
    at a time): the peak of the server's descriptors and processes, and every
    child of the server seen, with its last state."""

    def __init__(self, copy: Copy, interval: float):
        self.copy, self.interval = copy, interval
        self.looks: list[Look] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            got = self.copy.sample(5, self.interval)
            if not got:
                if not self.copy.running():
                    return
                time.sleep(self.interval)
            self.looks.extend(got)

    def stop(self) -> Watch:
        self._stop.set()
        self._thread.join(15)
        return self

    def children_seen(self, server_pid: int, before=()) -> dict[int, str]:
        seen: dict[int, str] = {}
        for look in self.looks:
            for p in procs.children(look.table, server_pid):
                if p.pid not in before:
                    seen[p.pid] = p.state
        return seen

    def peak_fds(self, server_pid: int) -> int:
        return max((lk.fds.get(server_pid, 0) for lk in self.looks), default=0)

    def peak_procs(self) -> int:
        return max((len(lk.table) for lk in self.looks), default=0)


class Copies:
    """The copies one run makes, on the compose project's network."""

    def __init__(self, engine, owner: str | None = None, observer_image: str | None = None):
        self.engine = engine
        self.client = engine.client
        self.docker = engine.docker
        self.owner = owner or socket.gethostname()
        me = self._me()
        self.network = self._network(me)
        self.observer_image = observer_image or (me.image.id if me else DEFAULT_OBSERVER)
        self._made: list[Copy] = []
        self._lock = threading.Lock()
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
        name = f"lsbaws-copy-{self.owner[:12]}-{n}-{role}"[:63]
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
                copy.observer = self._start_observer(copy)
            except self.docker.errors.APIError:
                pass  # the copy exited at once: wait_listening says so, with its logs
        return copy

    def _start_observer(self, copy: Copy):
        return self.client.containers.run(
            self.observer_image, ["sleep", "infinity"], entrypoint=[], detach=True,
            name=f"{copy.name}-observer"[:63], pid_mode=f"container:{copy.container.id}",
            network_mode="none", cap_add=["SYS_PTRACE"], user="0", working_dir="/",
            labels={LABEL: self.owner, f"{LABEL}.role": "observer"}, mem_limit="128m")

    def _forget(self, copy: Copy):
        with self._lock:
            if copy in self._made:
                self._made.remove(copy)

    def remove_all(self) -> None:
        """Remove every copy (and observer) this run made; no new ones after it."""
        self.closed = True
        for copy in list(self._made):
            copy.remove()
        # anything labelled by this owner that a half-made copy left
        for row in self._labelled(f"{LABEL}={self.owner}"):
            self._remove(row["Id"])

    def sweep(self) -> int:
        """Remove the copies whose maker (a grade run's container) is gone."""
        removed = 0
        for row in self._labelled(LABEL):
            owner = (row.get("Labels") or {}).get(LABEL, "")
            if owner == self.owner:
                continue
            try:
                alive = self.client.containers.get(owner).status == "running"
            except self.docker.errors.APIError:
                alive = False
            if not alive:
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
