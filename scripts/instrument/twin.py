"""twin: the same server started again inside a service's container (its
own port and settings), watched and stopped through the engine."""

from __future__ import annotations

import shlex

from instrument import procs
from instrument.engine import TWIN_PORT, EngineError, Service
from instrument.waiting import wait_for

# A twin is started and stopped with as few execs as the steps allow (each
# costs the engine about 0.1 s of CPU). argv: port, pid file, then the
# files to remove. Prints the live pid in the pid file (with its command
# line) and "listening" when the port is taken; "clean" when neither is so
# (and the files are removed then).
LEFTOVER = r"""
row=$(printf ':%04X 00000000:0000 0A' "$1"); pid=$(cat "$2" 2>/dev/null); shift
found=
if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ]; then
  echo "pid $pid $(tr '\0' ' ' < "/proc/$pid/cmdline")"; found=1
fi
grep -q "$row" /proc/net/tcp && echo listening && found=1
[ -n "$found" ] || { rm -f "$@"; echo clean; }
"""
# SIGTERM, up to 5 s for the process to end, then SIGKILL; then up to 15 s
# for the port to be free (gunicorn's workers may outlive a killed arbiter
# for a moment). argv: pid, port. Exit 0 once the port is free.
KILL = r"""
pid=$1; row=$(printf ':%04X 00000000:0000 0A' "$2"); i=0
kill "$pid" 2>/dev/null
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
i=0
while grep -q "$row" /proc/net/tcp && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
! grep -q "$row" /proc/net/tcp
"""


class Twin:
    """The same server started again inside a service's container, on another
    port with other settings (a short SLEEP, ACCEPT=python, WSGI_VALIDATE=1):

        with Twin(svc, "webserver3b.py", SLEEP=2) as twin: ...

    `argv` is a script (run with python) or a whole command line. The shell
    that starts it records its pid, its output, and when it ends its exit
    status and the container's clock, so a test can signal it, lower its
    limits (prlimit) and read how it ended. Every file is named by the port,
    /tmp/lsbaws-twin-PORT.{pid,log,status}: one twin per port and container.
    A twin an interrupted run left on that port is killed first; anything
    else listening there is an error. Killed on exit."""

    def __init__(self, svc: Service, argv: str | list[str], port: int = TWIN_PORT,
                 workdir: str | None = None, **env):
        self.svc, self.port, self.workdir = svc, port, workdir
        self.argv = ["python", argv] if isinstance(argv, str) else list(argv)
        self.env = {**{k: str(v) for k, v in env.items()}, "PORT": str(port)}
        base = f"/tmp/lsbaws-twin-{port}"
        self.pidfile, self.logfile, self.statusfile = f"{base}.pid", f"{base}.log", f"{base}.status"
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"Twin({self.svc.name}, {' '.join(self.argv)}, port {self.port}, {self.env})"

    def start(self, timeout: float = 30) -> Twin:
        self._kill_leftover()
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in self.env.items())
        cmd = " ".join(map(shlex.quote, self.argv))
        cd = f"cd {shlex.quote(self.workdir)} && " if self.workdir else ""
        f = {"pid": self.pidfile, "log": self.logfile, "status": self.statusfile}
        self.svc.exec_detached(["sh", "-c", (
            f"{cd}env {env} {cmd} > {f['log']} 2>&1 & "
            f"echo $! > {f['pid']}; wait $!; "
            f"echo \"$? $(date +%s.%N)\" > {f['status']}.tmp && mv {f['status']}.tmp {f['status']}")])
        # one command waits (Service.await_listen)
        listens = self.svc.await_listen(self.port, timeout, unless=self.statusfile)
        # its status (if it ended) and its pid, in one exec
        _, out = self.svc.query(["sh", "-c", 'cat "$1" 2>/dev/null; echo @@; cat "$2" 2>/dev/null',
                                 "read", self.statusfile, self.pidfile])
        status, _, pid = out.partition("@@")
        if ended := _status(status):
            raise EngineError(f"{self} exited with status {ended[0]} before it listened; its "
                              f"log: {self.log()[-800:]!r}", code=1)
        if not listens:
            raise EngineError(f"timed out after {timeout:g} s waiting for {self} to listen; its "
                              f"log: {self.log()[-500:]!r}", code=1)
        self.pid = int(pid.strip() if pid.strip().isdigit() else wait_for(
            lambda: (self.svc.read(self.pidfile) or "").strip(), 5, 0.1, "the twin's pid file"))
        return self

    # -- looking at it
    def log(self) -> str:
        return self.svc.read(self.logfile) or ""

    def alive(self) -> bool:
        code, out = self.svc.query(["ps", "-o", "stat=", "-p", str(self.pid)])
        return code == 0 and bool(out.strip()) and not out.strip().startswith("Z")

    def exit_status(self) -> tuple[int, float] | None:
        """(status, the container's clock when it ended), once it has ended."""
        return _status(self.svc.read(self.statusfile) or "")

    def signal(self, sig: str = "TERM") -> float:
        """Send a signal; return the container's clock when it was sent."""
        return float(self.svc.once(f"date +%s.%N; kill -{sig} {self.pid}").split()[0])

    def children(self) -> list[procs.Proc]:
        return self.svc.children(self.pid)

    def fds(self) -> int | None:
        return self.svc.fds(self.pid)

    # -- stopping it
    def stop(self) -> None:
        if self.pid and self.svc.running():
            self._kill(self.pid)

    def _kill(self, pid: int) -> None:
        code, _ = self.svc.exec(["sh", "-c", KILL, "kill", str(pid), str(self.port)])
        if code != 0:  # the port still taken (or the exec lost): look again, then say so
            wait_for(lambda: not self.svc.listening(self.port), 15, 0.1,
                     f"port {self.port} in {self.svc.name} to be free")

    def _kill_leftover(self) -> None:
        files = [self.pidfile, self.statusfile, self.logfile]
        code, out = self.svc.query(["sh", "-c", LEFTOVER, "leftover", str(self.port), *files])
        lines = out.splitlines()
        if code == 0 and "clean" in lines:
            return  # nothing of an earlier twin, and its files are gone
        for line in lines:   # "pid PID CMDLINE": the pid file's process, alive
            _, pid, cmdline = (line.split(" ", 2) + ["", ""])[:3]
            if line.startswith("pid ") and pid.isdigit() and self.argv[-1] in cmdline:
                self._kill(int(pid))
        if self.svc.listening(self.port):
            # the pid file may name another twin than the one listening (two
            # starts on one port at once overwrite it): a listener whose
            # parent is a twin's shell for this port is a twin too
            code, out = self.svc.query(["python", "-c", procs.TWIN_LISTENERS, str(self.port)])
            for leftover in (out.split() if code == 0 else []):
                self._kill(int(leftover))
        if self.svc.listening(self.port):
            raise EngineError(f"port {self.port} in {self.svc.name} is taken by something "
                              "that is not a twin", code=1)
        self.svc.exec(["rm", "-f", *files])

    def __enter__(self) -> Twin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _status(text: str) -> tuple[int, float] | None:
    """A status file's "EXIT CLOCK" as (status, the container's clock)."""
    parts = text.split()
    return (int(parts[0]), float(parts[1])) if len(parts) == 2 else None
