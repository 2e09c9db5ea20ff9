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


def test_the_smuggling_category_has_40_cases_each_with_a_section_and_a_level():
    smuggling = [case for case in CASES if case.group == "smuggling"]
    assert len(smuggling) >= 40
    for case in smuggling:
        assert case.name.startswith("smuggle-") and case.strength in ("MUST", "SHOULD", "MAY")
        assert re.fullmatch(r"911[02] \d+(\.\d+)*", case.section), case.name
    assert {case.strength for case in CASES} == {"MUST", "SHOULD", "MAY"}


def test_a_wrong_must_fails_a_wrong_should_warns_and_the_json_has_the_issues_shape():
    from conformance.cases import by_id
    must, should = by_id("smuggle-cl-te"), by_id("smuggle-chunk-ext-bare-semicolon")
    assert (must.verdict(True), must.verdict(False)) == ("pass", "fail")
    assert (should.verdict(True), should.verdict(False)) == ("pass", "warn")
    results = {"x-wsgi": {case.name: conformance.Result("400", False, case.name != must.name)
                          for case in CASES}}
    data = conformance.to_json(results, {"y-wsgi": "not reachable"})
    assert data["cases"][0] == {"id": CASES[0].name, "category": CASES[0].group,
                                "section": CASES[0].rfc, "level": CASES[0].strength}
    assert data["results"]["x-wsgi"][must.name] == "fail"
    assert set(data["results"]["x-wsgi"].values()) == {"pass", "fail"}
    assert data["absent"] == {"y-wsgi": "not reachable"}


def test_peers_are_not_counted_as_ours():
    assert [t.service for t in conformance.targets() if t.ours] == [
        "part2-wsgi", "part3-wsgi-wsgi", "part4-prefork-wsgi", "part4-evloop-wsgi"]
