"""client3: the article's load client (services/part3/client3.py), driven.

    report = client3.run_json("--host", "part3-eintr", "--max-clients", "128", "--burst")
    running = client3.start("--host", "part3-fork-leaky", "--max-clients", "300")
    output = client3.stop(running)

`start` puts client3 in its own session, so `stop` ends it and every client
it forked at once (SIGTERM, then SIGKILL for the stragglers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


class Client3Error(OSError):
    """client3 could not run, or ended without its report."""


def path() -> Path:
    """services/part3/client3.py, in a checkout or in the tests image."""
    here = Path(__file__).resolve()
    for candidate in (os.environ.get("LSBAWS_CLIENT3", ""),
                      here.parents[2] / "services" / "part3" / "client3.py",
                      "/lsbaws/services/part3/client3.py"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise Client3Error("services/part3/client3.py not found: set LSBAWS_CLIENT3")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(path()), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def run_json(*args: str, timeout: float = 120) -> dict:
    """Run to the end with --json; its report. Client3Error if it failed."""
    result = run(*args, "--json", timeout=timeout)
    lines = [ln for ln in result.stdout.splitlines() if ln.strip().startswith("{")]
    if result.returncode != 0 or not lines:
        raise Client3Error(f"client3 {' '.join(args)} exited {result.returncode}: "
                           f"{(result.stderr or result.stdout)[-600:]}")
    return json.loads(lines[-1])


class Running:
    """A client3 started in the background."""

    def __init__(self, args):
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, str(path()), *args], stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)


def start(*args: str) -> Running:
    return Running(args)


def stop(running: Running, grace: float = 5) -> str:
    """End client3 and every client it forked; return what it printed."""
    pgid = running.proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            running.proc.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # the forked clients may outlive their parent
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    running.out.seek(0)
    text = running.out.read().decode("utf-8", "replace")
    running.out.close()
    return text
