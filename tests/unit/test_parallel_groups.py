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
        from servicelocks import LOCKS
        locks = session.config.stash.get(LOCKS, {})
        rows = []
        for item in session.items:
            marks = [m.args[0] for m in item.iter_markers("xdist_group")]
            rows.append([item.nodeid.split("@")[0], marks[0] if marks else None])
        print("GROUPS " + json.dumps(rows))
        print("LOCKS " + json.dumps(locks))

pytest.main(["tests", "--collect-only", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
            plugins=[Dump()])
"""


@pytest.fixture(scope="module")
def dumped() -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", DUMP], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in done.stdout.splitlines()
             if ln.startswith(("GROUPS ", "LOCKS "))}
    assert len(lines) == 2, done.stdout[-3000:] + done.stderr[-3000:]
    return lines


@pytest.fixture(scope="module")
def collected(dumped) -> list[tuple[str, str | None]]:
    return [tuple(row) for row in json.loads(dumped["GROUPS"])]


@pytest.fixture(scope="module")
def locks(dumped) -> dict[str, tuple[str, list[str]]]:
    """nodeid -> (shared or exclusive, the locked services it touches)."""
    return {nodeid: tuple(v) for nodeid, v in json.loads(dumped["LOCKS"]).items()}


def locks_of(locks, *fragments: str) -> dict[str, tuple[str, list[str]]]:
    return {n: v for n, v in locks.items() if any(f in n for f in fragments)}


def groups_of(collected, *fragments: str, where: str = "tests/stack/") -> set:
    return {group for nodeid, group in collected
            if nodeid.startswith(where) and any(f in nodeid for f in fragments)}


def test_the_graders_tests_run_anywhere_but_keep_a_shared_fixture_together(collected):
    """Every grade run's copies carry an owner of their own (process and
    run), so the grader's tests need no group; the two tests on one chatty
    copy (a module fixture) stay on one worker."""
    calibration = groups_of(collected, "test_calibration_matrix", "test_grade_command_")
    assert calibration == {None}, calibration
    chatty = groups_of(collected, "test_grade_hostile.py")
    assert len(chatty) == 1 and None not in chatty, chatty


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


def test_twins_of_one_container_do_not_meet(locks):
    """Twins take port 8899 of their service's container: one at a time (an
    exclusive lock on gunicorn-wsgi each)."""
    twins = locks_of(locks, "test_wsgi_robustness.py::test_gunicorn_")
    assert len(twins) >= 2 and all(mode == "exclusive" and "gunicorn-wsgi" in services
                                   for mode, services in twins.values()), twins


def test_what_holds_gunicorns_workers_never_runs_beside_what_needs_them(locks):
    """The drip-fed head holds a sync worker of gunicorn-wsgi for 14 s; P3
    needs both of them: each takes gunicorn-wsgi alone."""
    both = locks_of(locks, "test_slow_drip_fed_head_and_idle",
                    "as_many_slow_clients_as_workers_hold_a_prefork_server[gunicorn-wsgi]")
    assert len(both) == 2 and all(mode == "exclusive" and "gunicorn-wsgi" in services
                                  for mode, services in both.values()), both


def test_only_the_readers_share_a_wsgi_server(locks):
    """The differential and conformance requests only ask: shared. A test that
    counts, holds, restarts or twins a WSGI server takes it alone."""
    shared = {n for n, (mode, _) in locks.items() if mode == "shared"}
    assert any("test_same_answer_as_gunicorn[" in n for n in shared)
    assert any("test_conformance.py::test_ours_" in n for n in shared)
    for alone in ("test_no_zombie_and_no_fd_leak_after_1000_requests", "test_p2_",
                  "test_p3_", "test_emfile_in_accept", "test_slow_drip_fed_head",
                  "test_application_passes_wsgiref_validator"):
        found = locks_of(locks, alone)
        assert found and all(mode == "exclusive" for mode, _ in found.values()), (alone, found)
    assert not locks_of(locks, "tests/unit/", "tests/stack/test_grade")


def test_independent_servers_run_side_by_side(collected):
    assert groups_of(collected, "test_c24_") != groups_of(collected, "test_c10_")
    assert groups_of(collected, "tests/stack/test_grade") != groups_of(collected, "test_c17_")


def test_unit_tests_run_anywhere_unless_they_share_a_module_fixture(collected):
    """A unit test runs anywhere; those that share a module-scoped fixture (a
    local server, this module's collection of the suite) run on one worker,
    so the fixture is made once, not once a worker."""
    assert groups_of(collected, "test_core_request.py", "test_client3.py",
                     where="tests/unit/") == {None}
    shared = groups_of(collected, "test_parallel_groups.py::test_unit",
                       "test_parallel_groups.py::test_twins", where="tests/unit/")
    assert len(shared) == 1 and None not in shared, shared
    assert groups_of(collected, "test_parallel_groups.py::test_a_group_really_runs",
                     where="tests/unit/") == {None}  # no module fixture: anywhere


def test_the_longest_tests_start_first(collected):
    """xdist hands out the groups in this order, one to each worker (five)
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

def _alone(name):  # an exclusive lock on part2-wsgi: its interval, to compare
    t0 = time.time()
    time.sleep(0.4)
    with open(os.path.join(os.environ["TOY_OUT"], name), "w") as f:
        f.write(f"{t0} {time.time()}")

def test_holds_webserver2_first():
    service = "part2-wsgi"
    _alone("alone-1-" + service)

def test_holds_webserver2_second():
    service = "part2-wsgi"
    _alone("alone-2-" + service)

def test_holds_webserver2_third():
    service = "part2-wsgi"
    _alone("alone-3-" + service)

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
    for name in ("conftest.py", "servicelocks.py", "stack/conftest.py"):
        (tmp_path / "tests" / name).write_text((ROOT / "tests" / name).read_text())
    (tmp_path / "tests" / "stack" / "test_toy.py").write_text(TOY)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {**__import__("os").environ, "TOY_OUT": str(out),
           "LSBAWS_COMPOSE": str(ROOT / "compose.yaml"),
           "PYTHONPATH": str(ROOT / "scripts"), "LSBAWS_LOCKS": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup",
                           "--no-loadscope-reorder", "-p", "no:randomly", "-p", "no:cacheprovider",
                           "-q"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "xdist groups" in done.stdout, done.stdout[-2000:]
    alone = sorted(tuple(map(float, p.read_text().split())) for p in out.glob("alone-*"))
    assert len(alone) == 3, alone
    assert all(a[1] <= b[0] for a, b in zip(alone, alone[1:], strict=False)), \
        f"two tests held webserver2 at once: {alone}"
    worker = {p.name: p.read_text() for p in out.iterdir() if not p.name.startswith("alone-")}
    assert len(worker) == 6, worker
    assert worker["param-part3-sigchld"] == worker["name-part3-sigchld"], worker
    assert worker["param-part3-fork"] == worker["name-part3-fork"], worker
