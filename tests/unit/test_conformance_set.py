"""The HTTP conformance set (scripts/conformance) without Docker: the cases
are well-formed data, and a real webserver2 on 127.0.0.1 serving wsgiapp
answers every one of them right (the stack test does the same for every
server in the compose stack, gunicorn included).
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conformance import run as conformance
from conformance.cases import ABSENT, CASES, DEVIATIONS

ROOT = Path(__file__).resolve().parents[2]
PART2 = ROOT / "services" / "part2"


def test_every_case_is_well_formed():
    names = [case.name for case in CASES + DEVIATIONS]
    assert len(names) == len(set(names)) and len(CASES) >= 100
    for case in CASES + DEVIATIONS:
        assert re.fullmatch(r"[a-z0-9.-]+", case.name), case.name
        assert re.fullmatch(r"911[02] \d+(\.\d+)*", case.rfc), (case.name, case.rfc)
        assert type(case.data) is bytes and case.data
        assert case.env is not None or case.reject, case.name
        assert all(status == "close" or 100 <= status <= 599 for status in case.reject), case.name
        for value in (case.env or {}).values():
            for choice in value if isinstance(value, tuple) else (value,):
                assert choice is ABSENT or type(choice) is str, case.name


@pytest.fixture(scope="module")
def webserver2(tmp_path_factory):
    log = tmp_path_factory.mktemp("conformance") / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOST="127.0.0.1", PORT="0", PYTHONUNBUFFERED="1", REQUEST_TIMEOUT="5")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "webserver2.py", "wsgiapp:app"], cwd=PART2,
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while not (match := re.search(r"Serving HTTP on port (\d+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield conformance.Target("part2-wsgi", "127.0.0.1", int(match.group(1)))
    finally:
        proc.terminate()
        proc.wait(10)


def test_webserver2_answers_every_case_right(webserver2):
    results = conformance.run([webserver2], timeout=10)["part2-wsgi"]
    wrong = [f"{case.name}: {results[case.name].label}" for case in CASES
             if not results[case.name].right]
    assert wrong == []
    assert {case.name: results[case.name].answer for case in DEVIATIONS} == \
        {case.name: "200" if case.ours == "env" else str(case.ours) for case in DEVIATIONS}


def test_by_id_finds_every_case_and_names_an_unknown_id():
    from conformance.cases import by_id
    for case in CASES + DEVIATIONS:
        assert by_id(case.name) is case
    with pytest.raises(KeyError, match="no-such-case"):
        by_id("no-such-case")
