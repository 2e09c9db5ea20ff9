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
- `record(table, key, text, header)`: a row of a table for README (ours
  against gunicorn); the tables are printed at the end of the run and
  written to reports/TABLE.md when that directory is writable.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from instrument import servers
from instrument.engine import Engine, EngineError

RECORDS = pytest.StashKey[dict]()
REPORTS = Path("/lsbaws/reports")


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
    return eng


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


@pytest.fixture(scope="session")
def record(request):
    tables = request.config.stash.setdefault(RECORDS, {})

    def record(table: str, key: str, text: str, header: str = "") -> None:
        tables.setdefault(table, {"": header})[key] = text
    return record


def pytest_terminal_summary(terminalreporter, config):
    for table, rows in config.stash.get(RECORDS, {}).items():
        header = rows.pop("", "")
        text = "\n".join([header] * bool(header)
                         + [f"| {key} | {value} |" for key, value in rows.items()])
        terminalreporter.write_sep("-", table)
        terminalreporter.write_line(text)
        if REPORTS.is_dir() and os.access(REPORTS, os.W_OK):
            (REPORTS / f"{table}.md").write_text(text + "\n")

