"""The parallel run's groups (tests/conftest.py): tests that would disturb
each other share an xdist group, the longest start first, the unit tests run
anywhere. Read from a real collection of the whole suite, in a subprocess
(`pytest --collect-only` with a plugin that prints each test's group)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DUMP = r"""
import json, sys
import pytest

class Dump:
    def pytest_collection_finish(self, session):
        rows = []
        for item in session.items:
            marks = [m.args[0] for m in item.iter_markers("xdist_group")]
            rows.append([item.nodeid.split("@")[0], marks[0] if marks else None])
        print("GROUPS " + json.dumps(rows))

pytest.main(["tests", "--collect-only", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
            plugins=[Dump()])
"""


@pytest.fixture(scope="module")
def collected() -> list[tuple[str, str | None]]:
    done = subprocess.run([sys.executable, "-c", DUMP], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("GROUPS ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    return [tuple(row) for row in json.loads(line[len("GROUPS "):])]


def groups_of(collected, *fragments: str, where: str = "tests/stack/") -> set:
    return {group for nodeid, group in collected
            if nodeid.startswith(where) and any(f in nodeid for f in fragments)}


def test_the_graders_copies_are_one_group(collected):
    """Every copy carries the tests container's name: two grade runs at once
    would remove each other's copies."""
    assert groups_of(collected, "tests/stack/test_grade") == {"copies"}


def test_what_crashes_or_fills_a_server_shares_a_group_with_everything_else_on_it(collected):
    leaky = groups_of(collected, "test_c16_leaky", "test_c17_", "test_c18_", "test_c19_",
                      "test_c23_", "tests/stack/test_lab_e2e.py",
                      "answers_hello_with_the_article_body[part3-fork-leaky]",
                      "answers_hello_with_the_article_body[part3-eintr]")
    assert len(leaky) == 1 and None not in leaky, leaky
    sigchld = groups_of(collected, "test_c21_",
                        "answers_hello_with_the_article_body[part3-sigchld]")
    assert len(sigchld) == 1 and None not in sigchld, sigchld
    assert sigchld != leaky


def test_a_module_scoped_fixture_keeps_its_tests_together(collected):
    for pair in (("test_c11_", "test_c12_"), ("test_c14_", "test_c15_")):
        groups = groups_of(collected, *pair)
        assert len(groups) == 1 and None not in groups, (pair, groups)


def test_twins_of_one_container_do_not_meet(collected):
    """Twins take port 8899 of their service's container: one at a time."""
    groups = groups_of(collected, "test_wsgi_robustness.py::test_gunicorn_",
                       "test_wsgi_robustness.py::test_record_gunicorn")
    assert len(groups) == 1 and None not in groups, groups


def test_what_holds_gunicorns_workers_meets_what_needs_them(collected):
    """The drip-fed head holds a sync worker of gunicorn-wsgi for 14 s; P3
    needs both of them."""
    groups = groups_of(collected, "test_slow_drip_fed_head_and_idle",
                       "as_many_slow_clients_as_workers_hold_a_prefork_server[gunicorn-wsgi]")
    assert len(groups) == 1 and None not in groups, groups


def test_independent_servers_run_side_by_side(collected):
    assert groups_of(collected, "test_c24_") != groups_of(collected, "test_c10_")
    assert groups_of(collected, "tests/stack/test_grade") != groups_of(collected, "test_c17_")


def test_unit_tests_run_anywhere(collected):
    assert groups_of(collected, "", where="tests/unit/") == {None}


def test_the_longest_tests_start_first(collected):
    """xdist hands out the groups in this order, one to each of the 4 workers
    first: the grader's calibration (~110 s) and the lab are among them."""
    units = list(dict.fromkeys(group or nodeid for nodeid, group in collected))
    for slow in ("test_calibration_matrix", "test_lab_report_"):
        group = next(g or n for n, g in collected if slow in n)
        assert units.index(group) < 4, (slow, units[:6])


TOY = '''
import os, time
import pytest

def _mark(name):
    time.sleep(0.3)
    with open(os.path.join(os.environ["TOY_OUT"], name), "w") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "none"))

@pytest.mark.parametrize("name", ["part3-sigchld", "part3-fork", "part1", "gunicorn-wsgi"])
def test_by_param(name):
    _mark(f"param-{name}")

def test_sigchld_by_name():
    service = "part3-sigchld"
    _mark("name-" + service)

def test_fork_by_name():
    service = "part3-fork"
    _mark("name-" + service)
'''


def test_a_group_really_runs_on_one_worker(tmp_path):
    """Under xdist itself (3 workers): the tests that name part3-sigchld ran on
    one worker, those of part3-fork on one worker, whatever the others did."""
    (tmp_path / "tests" / "stack").mkdir(parents=True)
    (tmp_path / "tests" / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "tests" / "stack" / "test_toy.py").write_text(TOY)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {**__import__("os").environ, "TOY_OUT": str(out),
           "LSBAWS_COMPOSE": str(ROOT / "compose.yaml"),
           "PYTHONPATH": str(ROOT / "scripts")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup",
                           "--no-loadscope-reorder", "-p", "no:randomly", "-p", "no:cacheprovider",
                           "-q"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "xdist groups" in done.stdout, done.stdout[-2000:]
    worker = {p.name: p.read_text() for p in out.iterdir()}
    assert len(worker) == 6, worker
    assert worker["param-part3-sigchld"] == worker["name-part3-sigchld"], worker
    assert worker["param-part3-fork"] == worker["name-part3-fork"], worker
