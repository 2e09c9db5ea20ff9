"""Fixtures for the tests against the compose services: thin, over the instrument.

These tests run in the `tests` container (`docker compose run --rm tests`).
They reach each server by its compose service name on port 8888 with
instrument.wire, and look inside the servers' containers through the
engine's socket with instrument.engine (process tables and /proc by exec,
logs since the last start, restarts, twins). Everything waits by polling
with a deadline (instrument.waiting.wait_for), never by a fixed sleep, and
nothing connects to a server to see whether it is up (readiness is LISTEN
in the container's /proc/net/tcp).

- `engine`: the session's Engine (exits with one line if there is none).
- `up(name)`: that service's Service, started if it was stopped or crashed.
- `service`: the same, parametrised indirectly by name.
- `curl(*args)`: curl -sS with a --max-time.
- `record(table, key, text, header)` (tests/conftest.py): a row of a table
  for the docs (ours against gunicorn); the tables are printed at the end of
  the run and written to reports/TABLE.md, from every xdist worker.

Which of these tests may run at the same time is tests/conftest.py's
table (xdist groups by service and module, locks on the WSGI servers);
`_service_locks` holds a test's locks while it runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from instrument import servers
from instrument.engine import Engine, EngineError, ReadySeen
from servicelocks import EXCLUSIVE, FOLDER, LOCKS, held


@pytest.fixture(autouse=True)
def _service_locks(request):
    """The locks of the services this test touches (tests/servicelocks.py),
    shared or exclusive, held while it runs."""
    mode, services = request.config.stash.get(LOCKS, {}).get(request.node.nodeid, (None, []))
    if not services:
        yield
        return
    with held(mode, services):
        yield


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def engine() -> Engine:
    try:
        eng = Engine()
    except EngineError as error:
        pytest.exit(str(error), returncode=2)
    if missing := eng.missing(s.name for s in servers.article()):
        pytest.exit(f"services not created: {' '.join(missing)}; run "
                    "`docker compose run --rm tests`, which starts them", returncode=2)
    _wait_listening(eng)
    # a server one worker saw ready is not probed again by the others (until
    # its container starts again): an exec saved per service and worker
    eng.ready_seen = ReadySeen(FOLDER / f"ready-{_run()}")
    return eng


def _run() -> str:
    """This test run's id, the same in every xdist worker."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID", f"solo-{os.getpid()}")


def _wait_listening(eng: Engine, timeout: float = 90) -> None:
    """compose starts the servers without waiting for their healthchecks
    (`service_started`: a check runs every 30 s), so wait here until every
    running server LISTENs, each waited for inside its container (one exec
    every few seconds), a few at a time, once a run (not once a worker).
    One that does not is left to the tests that need it (they say why)."""
    from concurrent.futures import ThreadPoolExecutor

    # once a run: the first worker waits, the others find its mark
    with held(EXCLUSIVE, ["session-start"]):
        mark = FOLDER / f"listening-{_run()}"
        if mark.exists():
            return
        ours = set(servers.names())
        running = [n for n, c in eng.containers().items() if n in ours and c.status == "running"]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: eng.service(n).await_listen(timeout=timeout), running))
        mark.touch()


@pytest.fixture(scope="session")
def up(engine):
    def up(name: str):
        svc = engine.service(name)
        svc.ensure_up()
        return svc
    return up


@pytest.fixture
def service(up, request):
    """`service` parametrised indirectly by name: a Service that is up."""
    return up(request.param)


@pytest.fixture(scope="session")
def curl():
    def curl(*args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(["curl", "-sS", "--max-time", f"{timeout:g}", *args],
                              capture_output=True, text=True, timeout=timeout + 5)
    return curl
