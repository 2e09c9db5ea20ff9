"""What every copy the grader makes is held by, shown on a hostile
fixture (tests/fixtures/submissions/chatty: it writes to stdout and stderr
without end): a capped log, and an explicit `nofile` (the engine's default
differs between Linux and Docker Desktop)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from grade import stages as S
from grade.checks import Ctx
from grade.target import Target
from instrument.build import build
from instrument.copies import Copies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "submissions"


@pytest.fixture(scope="module")
def chatty(engine):
    copies = Copies(engine)
    # untagged and as a class run builds it: the image stays as the build cache
    image = build(engine, FIXTURES / "chatty")
    try:
        yield Ctx(Target("chatty", image), copies).copy("chatty")
    finally:
        copies.remove_all()


def test_a_server_that_writes_without_end_fills_one_capped_log(chatty):
    time.sleep(4)  # ~12 MB a second: about 50 MB written by now
    size = len(chatty.container.logs())
    assert 0 < size < 2 * 1024 * 1024, f"{size} bytes of log"
    assert chatty.running()
    assert chatty.container.attrs["HostConfig"]["LogConfig"] == {
        "Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}}


def test_every_copy_has_its_nofile_set(chatty):
    limits = chatty.container.attrs["HostConfig"]["Ulimits"] or []
    assert {(u["Name"], u["Soft"], u["Hard"]) for u in limits} == \
        {("nofile", S.COPY_NOFILE, S.COPY_NOFILE)}
