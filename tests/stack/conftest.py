"""Fixtures for the tests against the compose services (see stackkit.py)."""

import os
from pathlib import Path

import pytest
from stackkit import ALL_SERVERS, SOCKET_PATH, Stack


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack() -> Stack:
    if not os.path.exists(SOCKET_PATH):
        pytest.exit(f"no engine socket at {SOCKET_PATH}: run the tests with "
                    "`docker compose run --rm tests` (compose.yaml mounts it), or add "
                    f"-v {SOCKET_PATH}:{SOCKET_PATH}", returncode=2)
    try:
        s = Stack()
        s.client.ping()
    except pytest.exit.Exception:
        raise
    except Exception as exc:
        pytest.exit(f"the engine at {SOCKET_PATH} does not answer: {exc}", returncode=2)
    missing = [n for n in ALL_SERVERS if not s.client.containers.list(all=True, filters={
        "label": [f"com.docker.compose.project={s.project}",
                  f"com.docker.compose.service={n}"]})]
    if missing:
        pytest.exit(f"services not created: {' '.join(missing)}; run "
                    "`docker compose run --rm tests`, which starts them", returncode=2)
    return s


@pytest.fixture
def service(stack, request):
    """`service` parametrised indirectly by name: a healthy Service."""
    svc = stack[request.param]
    svc.ensure_running()
    return svc


