"""local: a lesson server started on this machine as a subprocess.

The host tests (tests/unit/test_*_real_servers.py) run the servers without
containers: on 127.0.0.1 with PORT=0 (the kernel picks a free port, the
server prints it), output in files, limits and another uid set before the
exec, children and zombies read from /proc (procs.local_table).

    with LocalServer([sys.executable, "webserver3c.py"], tmp_path, cwd=part3,
                     env={"SLEEP": "1"}) as srv:
        ... srv.port, srv.children(), srv.zombies(), srv.stderr()
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

from instrument import procs
from instrument.waiting import poll, wait_for

SERVING = re.compile(r"Serving HTTP on port (\d+)")


class LocalServer:
    def __init__(self, argv: list[str], workdir: Path, cwd: Path | str | None = None,
                 env: dict | None = None, limits: dict | None = None, uid: int | None = None,
                 popen: dict | None = None):
        self.argv, self.workdir = [str(a) for a in argv], Path(workdir)
        self.cwd = cwd or "/"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env.update(HOST="127.0.0.1", PORT="0", PYTHONUNBUFFERED="1")
        self.env.update({k: str(v) for k, v in (env or {}).items()})
        self.limits, self.uid, self.popen = limits or {}, uid, popen or {}
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def _preexec(self):
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell may have ignored it
        for limit, value in self.limits.items():
            resource.setrlimit(limit, value)
        if self.uid is not None:  # after setrlimit: root may raise a hard limit, uid may not
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)

    def start(self, timeout: float = 20) -> LocalServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        name = Path(self.argv[1] if len(self.argv) > 1 else self.argv[0]).name
        self.out_path = self.workdir / f"{name}.out"
        self.err_path = self.workdir / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out,
                                         stderr=err, stdin=subprocess.DEVNULL,
                                         preexec_fn=self._preexec, **self.popen)
        found = poll(lambda: SERVING.search(self.stdout()) or self.proc.poll() is not None,
                     timeout, 0.02)
        if not isinstance(found, re.Match):
            self.stop()
            raise AssertionError(f"{' '.join(self.argv)} did not start: {self.stderr()[-2000:]}")
        self.port = int(found.group(1))
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out_path.read_bytes().decode(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_bytes().decode(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 5.0, stream: str = "stderr"):
        """The first match of `pattern` in the output; TimedOut if none in time."""
        read = self.stderr if stream == "stderr" else self.stdout
        return wait_for(lambda: re.search(pattern, read()), timeout, 0.02,
                        f"{pattern!r} in the server's {stream}")

    def children(self) -> list[procs.Proc]:
        return procs.children(procs.local_table(), self.pid)

    def asleep(self) -> bool:
        """Whether the server sleeps in the kernel now (state S). After its
        "Serving HTTP" line, the one place a lesson server sleeps is where it
        waits for a client (accept, select): a signal sent then interrupts
        that wait. One sent a moment sooner, as it is about to call it, is
        noted by Python and acted on only when that call returns."""
        return procs.local_state(self.pid) == "S"

    def zombies(self) -> list[procs.Proc]:
        return [p for p in self.children() if p.zombie]

    def settled(self, timeout: float = 5.0) -> list[procs.Proc]:
        """Wait until the server has no child left; return the children still
        there after `timeout` (zombies or not)."""
        return poll(lambda: not self.children(), timeout, 0.05) and [] or self.children()

    def fds(self) -> int:
        return procs.local_fds(self.pid)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is None:
            return
        for child in self.children():
            try:
                os.kill(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(5) is None:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


UNUSED_UID = 54321  # a uid of its own: RLIMIT_NPROC counts every process of a uid


def python_for(uid: int, code: str = "import sys; assert sys.version_info >= (3, 11)",
               cwd: str = "/") -> tuple[str | None, str]:
    """A Python that `uid` may run and that runs `code` (as root only: only
    root may switch uids). Returns (the interpreter or None, why not)."""
    if os.geteuid() != 0:
        return None, "not root: cannot run a process as another uid"
    problems = []
    for python in dict.fromkeys([sys.executable, "/usr/local/bin/python3", "/usr/bin/python3"]):
        try:
            probe = subprocess.run([python, "-c", code], cwd=cwd, capture_output=True,
                                   timeout=30, user=uid, group=uid, extra_groups=[])
        except (OSError, subprocess.SubprocessError) as error:
            problems.append(f"{python}: {error}")
            continue
        if probe.returncode == 0:
            return python, ""
        problems.append(f"{python}: {probe.stderr.decode(errors='replace').strip()[-80:]}")
    return None, "; ".join(problems)


def listening(port: int) -> int | None:
    """The accept queue of a LISTEN socket on `port` here (None: nothing listens)."""
    return procs.listen_queue(Path("/proc/net/tcp").read_text(), port)


def holds_a_listen_socket(pid: int, port: int) -> bool:
    """Does process `pid` hold the LISTEN socket of `port` (by inode)?"""
    inodes = {f"socket:[{row.inode}]" for row in procs.tcp_rows(
        Path("/proc/net/tcp").read_text()) if row.local_port == port and row.listening}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            continue
    return False
