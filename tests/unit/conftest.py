"""Fixtures for the host tests: `local_server` starts a lesson server as a
subprocess on 127.0.0.1 (instrument.local.LocalServer) and stops it, with
its children, when the test ends; `unused_uid` lends a test the uid its
servers run under when RLIMIT_NPROC must count them alone."""

import os
import sys
from pathlib import Path

import pytest
from instrument.local import LocalServer

SERVICES = Path(__file__).resolve().parents[2] / "services"


@pytest.fixture
def local_server(tmp_path):
    """local_server("part3/webserver3c.py", SLEEP="1") -> a started LocalServer.
    Also: args (after the script), limits, uid, python, argv (instead of
    `python script args`), popen (more Popen arguments), cwd (default: the
    script's directory)."""
    started = []

    def start(script, *args, limits=None, uid=None, python=sys.executable, argv=None,
              popen=None, cwd=None, **env):
        path = SERVICES / script
        server = LocalServer(argv or [python, path, *args], tmp_path / f"server{len(started)}",
                             cwd=cwd or path.parent, env=env, limits=limits, uid=uid,
                             popen=popen)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def unused_uid():
    """instrument.local.UNUSED_UID, for this test alone. RLIMIT_NPROC counts
    every process of a uid on the kernel, so two tests running servers as
    that uid at once (two workers of the parallel run) take each other's
    forks: the real EAGAIN came to the wrong test once. An exclusive lock
    (tests/servicelocks.py), then no process of that uid left. Ask for it
    before `local_server`, so that it is let go after the servers stop."""
    from instrument.local import UNUSED_UID
    from instrument.waiting import wait_for
    from servicelocks import EXCLUSIVE, held

    def busy():
        return [p for p in os.listdir("/proc") if p.isdigit() and _owner(p) == UNUSED_UID]

    with held(EXCLUSIVE, [f"uid-{UNUSED_UID}"]):
        wait_for(lambda: not busy(), 15, 0.1, f"no process of uid {UNUSED_UID} left")
        yield UNUSED_UID


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
