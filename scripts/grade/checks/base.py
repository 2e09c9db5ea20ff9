"""What every check gets and uses: a Result (pass, fail or skip, and the
evidence in numbers), the Ctx that makes copies of the target, and the
helpers that ask a copy something (a GET, is the same server alive, have
its children exited).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from instrument import wire
from instrument.copies import Copies, Copy

from grade import emulation
from grade import stages as S
from grade.requests import HOST
from grade.target import Target, grader_files

PORT = 8888
# at_pids_limit: a copy with at least PIDS_CLIMBING processes whose count
# still climbs is looked at again, PIDS_LOOK_GAP s apart, up to PIDS_LOOKS looks
PIDS_CLIMBING, PIDS_LOOKS, PIDS_LOOK_GAP = 64, 6, 1.0
APP = {"wsgi": "lsbaws_grade_wsgi", "flask": "lsbaws_grade_flask",
       "pyramid": "lsbaws_grade_pyramid", "django": "lsbaws_grade_django"}
GREETING = {"wsgi": b"Hello from the grader's bare WSGI app!\n",
            "flask": b"Hello from the grader's Flask app!\n",
            "pyramid": b"Hello from the grader's Pyramid app!\n",
            "django": b"Hello from the grader's Django app!\n"}
APP_NAMES = {"wsgi": "bare WSGI", "flask": "Flask", "pyramid": "Pyramid", "django": "Django"}


@dataclass
class Result:
    verdict: str          # "pass" | "fail" | "skip" | "error" (the grader could not see)
    evidence: str
    seconds: float = 0.0


def ok(evidence: str) -> Result:
    return Result("pass", evidence)


def bad(evidence: str) -> Result:
    return Result("fail", evidence)


def skip(evidence: str) -> Result:
    return Result("skip", evidence)


class Ctx:
    """What every check gets: the target and a way to make copies of it."""

    def __init__(self, target: Target, copies: Copies):
        self.target = target
        self.copies = copies
        self._files = grader_files()
        self.basic: Copy | None = None
        self._made: list[Copy] = []   # this grade's copies (others may share `copies`)
        self._pids: dict[str, int] = {}  # each copy's pids limit
        self._lock = threading.Lock()
        # set when a copy's server runs under emulation (another CPU's binary)
        self.emulation: emulation.Emulation | None = None

    def copy(self, role: str, app: str | None = None, nofile: int | None = None,
             pids: int | None = 512, image: str | None = None, wait: bool = True) -> Copy:
        wsgi_app = APP.get(app) if app else None
        env = self.target.copy_env(wsgi_app)
        # nofile always set: the engine's default differs (Docker Desktop's is not Linux's)
        copy = self.copies.start(image or self.target.image, role, env=env,
                                 nofile=nofile or S.COPY_NOFILE,
                                 pids=pids, files=self._files if wsgi_app else None)
        with self._lock:
            self._made.append(copy)
            self._pids[copy.name] = pids or 0
        if wait:
            look = copy.wait_listening(S.LISTEN_TIMEOUT)
            if self.emulation is None:
                self.emulation = emulation.of_look(look)
        return copy

    def lost_view(self, stage: str) -> str:
        """Why the grader can no longer see into a running copy of this stage
        (its observer, in the copy's PID namespace, was killed), or ''."""
        with self._lock:
            mine = [c for c in self._made if c.role == stage or c.role.startswith(stage + ".")]
        for copy in mine:
            if not copy.running():
                continue  # the copy ended: its sentinel went with its namespace
            lost = copy.view_lost()
            if lost and copy.running():
                return (f"the grader's observer in {copy.name}'s PID namespace was killed "
                        f"({lost}) while the server ran on: something in the copy signals "
                        "every process it can")
        return ""

    def at_pids_limit(self, stage: str) -> str:
        """'the copy was at its pids limit (...)' for a copy of this stage whose
        processes fill its limit (a fork bomb, say), or ''."""
        with self._lock:
            mine = [c for c in self._made if c.role == stage or c.role.startswith(stage + ".")]
        for copy in mine:
            limit, before = self._pids.get(copy.name, 0), -1
            # a bomb still filling the limit (slow on a loaded machine) is
            # looked at again while its count climbs, up to PIDS_LOOKS times
            for _ in range(PIDS_LOOKS if limit else 0):
                look = copy.look()
                count = len(look.table) if look is not None else 0
                if count >= limit - 2:
                    return (f"the copy was at its pids limit ({count} processes of "
                            f"{limit}): fork() fails with EAGAIN; something forks without end")
                if count < PIDS_CLIMBING or count <= before:
                    break
                before = count
                time.sleep(PIDS_LOOK_GAP)
        return ""

    def release(self, stage: str) -> None:
        """Remove this grade's copies of one stage (role `stage` or `stage.*`)."""
        with self._lock:
            mine = [c for c in self._made if c.role == stage or c.role.startswith(stage + ".")]
            self._made = [c for c in self._made if c not in mine]
        for copy in mine:
            copy.remove()

    def release_all(self) -> None:
        with self._lock:
            mine, self._made = self._made, []
        for copy in mine:
            copy.remove()

    def app_copy(self, role: str, **kw) -> Copy:
        """A copy serving the grader's bare WSGI app when the target is a WSGI
        server (so /slow and /echo exist), else the image as it is."""
        return self.copy(role, app="wsgi" if self.target.wsgi else None, **kw)


# ---------------------------------------------------------------- helpers

def answered(data: bytes) -> bool:
    """A whole response: its head, and its framed body (or, framed by the
    close, at least one body byte)."""
    resp = wire.parse_response(data)
    if not resp.status or not resp.complete:
        return False
    framed = resp.header("Content-Length") is not None or \
        "chunked" in (resp.header("Transfer-Encoding") or "").lower()
    return framed or bool(resp.body) or resp.status in (204, 304)


def status_line(data: bytes) -> bool:
    return b"\r\n" in data or len(data) > 64


def get(copy: Copy, path: str = "/hello", timeout: float = S.ANSWER_TIMEOUT,
        **kw) -> wire.Reply:
    return wire.exchange(copy.address(), PORT, wire.request("GET", path, HOST), timeout,
                         until=answered, **kw)


def fmt(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def alive(copy: Copy, server_pid: int | None) -> tuple[bool, str]:
    """Is the same server process still there? (False, why) if not."""
    if not copy.running():
        st = copy.state()
        return False, (f"the server exited (container status {st.get('ExitCode')}): "
                       f"{copy.crash_line()}")
    look = copy.look()
    if look is None:
        time.sleep(0.5)  # it is stopping: let the engine say how it ended
        st = copy.state()
        return False, (f"the server exited (container status {st.get('ExitCode')}): "
                       f"{copy.crash_line()}")
    if server_pid and look.server_pid != server_pid:
        return False, (f"the server process {server_pid} is gone"
                       + (f" (now {look.server_pid})" if look.server_pid else "")
                       + f": {copy.crash_line()}")
    return True, ""


def answers_within(copy: Copy, seconds: float) -> wire.Reply | None:
    """A GET /hello answered within `seconds` (retrying a refused connect)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        reply = get(copy, timeout=left)
        if reply.matched and reply.status:
            return reply
        if not (reply.refused or reply.reset or reply.eof):
            return None
        time.sleep(0.1)


def wait_children_exited(copy: Copy, server_pid: int, before: set[int],
                         timeout: float = S.CHILD_EXIT_WAIT):
    """Poll until every child made since `before` has exited (zombie or gone);
    returns the last look and how many are still running."""
    deadline = time.monotonic() + timeout
    look = copy.look()
    while look is not None:
        running = [p for p in look.children(server_pid) if p.pid not in before and not p.zombie]
        if not running or time.monotonic() > deadline:
            return look, len(running)
        time.sleep(0.1)
        look = copy.look()
    return None, 0
