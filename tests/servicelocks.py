"""Locks on compose services, held by the suite's workers while a test runs.

The WSGI servers (part2-*, part3-wsgi-*, part4-*, gunicorn-wsgi) are asked by
hundreds of tests: most only send requests and read the answers, a few
disturb the server (a drip-fed head holds the iterative webserver2 for 10 s,
a test counts its children and descriptors, kills a worker, starts a twin).
An xdist group would chain all of them on one worker. Instead each test
takes a lock per service it touches, at run time: *shared* for a test that
only asks (READERS in tests/conftest.py), *exclusive* for any other. Readers
of a server run side by side; a test that disturbs it runs alone on it;
tests on other servers are not held at all.

The locks are flock(2) locks on files in one folder of the tests container,
which every worker shares; a lock dies with its process. A test's locks are
taken in the order of the services' names, so two tests never wait on each
other in a circle.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path

import pytest

FOLDER = Path(os.environ.get("LSBAWS_LOCKS") or tempfile.gettempdir()) / "lsbaws-service-locks"
SHARED, EXCLUSIVE = "shared", "exclusive"
# nodeid -> (SHARED or EXCLUSIVE, services): tests/conftest.py's assign_locks
# puts it into the config's stash at collection; tests/stack/conftest.py's
# autouse fixture holds a test's locks while it runs
LOCKS = pytest.StashKey[dict]()


@contextlib.contextmanager
def held(mode: str, services, waited: list | None = None):
    """Hold a lock on each service (`mode`: SHARED or EXCLUSIVE) inside the
    block; `waited`, if given, gets the seconds spent waiting for them."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    flag = fcntl.LOCK_SH if mode == SHARED else fcntl.LOCK_EX
    files = []
    t0 = time.monotonic()
    try:
        for name in sorted(set(services)):
            f = open(FOLDER / name, "a+")  # noqa: SIM115 - closed below, in order
            files.append(f)
            fcntl.flock(f, flag)
        if waited is not None:
            waited.append(time.monotonic() - t0)
        yield
    finally:
        for f in reversed(files):
            f.close()  # closing the file releases its lock
