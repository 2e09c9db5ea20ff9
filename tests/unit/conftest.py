"""Fixtures for the host tests: `local_server` starts a lesson server as a
subprocess on 127.0.0.1 (instrument.local.LocalServer) and stops it, with
its children, when the test ends."""

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
