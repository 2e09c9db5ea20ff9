"""The grader's pure parts: the stages and the calibration as data,
README's tables, the reports, the command line's usage errors, the parsing of
what the observer prints. No engine: runs on the host
(`python3 -m pytest tests/unit/test_grader_parts.py`)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import types
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from grade import calibration, report
from grade import stages as S
from grade.checks import Result, answered
from grade.requests import BAD_INPUT_IDS, PARITY, malformed
from instrument import servers

ROOT = Path(__file__).resolve().parents[2]
ISSUE_IDS = ["hello", "http", "wsgi-apps", "environ", "body", "parity", "concurrent", "eof",
             "fd-leak", "zombie", "sigchld", "burst", "bad-input", "slow-clients", "emfile",
             "eagain", "sigterm", "keep-alive", "pipelining", "close", "framing"]


def grade(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grade", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "scripts"), **(env or {})})


# ---------------------------------------------------------------- stages

def test_stage_ids_are_the_issues_in_its_order():
    assert S.IDS == ISSUE_IDS


def test_every_stage_says_its_lesson_threshold_and_a_fix_file_that_exists():
    for s in S.STAGES:
        assert s.checks and s.threshold and s.teaches.endswith("."), s.id
        assert (ROOT / s.fix).is_file(), f"{s.id}: {s.fix} does not exist"
        assert s.lesson in ("part 1", "part 2", "part 4", "beyond") or s.lesson[0] == "3", s.id
    assert {s.id for s in S.STAGES if s.wsgi} == {"wsgi-apps", "environ", "body", "parity"}


def test_the_request_lists_are_as_long_as_the_stages_say():
    cases = malformed()
    assert len(cases) >= S.BAD_INPUT_MIN and len(set(BAD_INPUT_IDS)) == len(BAD_INPUT_IDS)
    assert len(PARITY) >= S.PARITY_MIN
    for label, data in cases:
        assert b"\r\n\r\n" in data, label


def test_bad_input_reads_refused_cases_of_the_one_corpus_by_id():
    from conformance.cases import by_id

    for name in BAD_INPUT_IDS:
        case = by_id(name)
        assert case.kind == "invalid", name
        assert all(r == "close" or 400 <= r < 500 or r in (501, 505) for r in case.reject), name


def test_answered_waits_for_the_framed_body_or_one_byte_of_a_close_framed_one():
    assert not answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    assert answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde")
    assert not answered(b"HTTP/1.1 200 OK\r\n\r\n")
    assert answered(b"HTTP/1.1 200 OK\r\n\r\nHello")
    assert not answered(b"garbage")


# ---------------------------------------------------------------- calibration

def test_every_row_grades_a_service_of_compose_yaml_on_every_stage():
    names = servers.names()
    for row in calibration.ROWS:
        assert row.service in names, row.service
        assert list(row.expect) == S.IDS, row.service
        assert set(row.expect.values()) <= {"pass", "fail", "skip"}
        assert row.prove and set(row.prove) <= set(S.IDS), row.service
        if row.source:
            assert (ROOT / row.source / "Dockerfile").is_file()


def test_the_calibration_tells_the_issues_story():
    e = {r.service: r.expect for r in calibration.ROWS}
    for svc in ("part1", "part3-iterative", "part3-iterative-sleep"):
        assert e[svc]["concurrent"] == "fail", svc
    for svc in ("part3-iterative-sleep", "part3-fork"):
        assert e[svc]["eof"] == "fail", svc
    assert {e["part3-fork-leaky"][i] for i in ("eof", "fd-leak", "zombie")} == {"fail"}
    assert e["part3-fork"]["zombie"] == "fail"
    assert e["part3-sigchld"]["sigchld"] == "fail"
    assert e["part3-eintr"]["burst"] == "fail"
    part3 = [s.id for s in S.STAGES if s.lesson[0] == "3"]
    assert all(e["part3-waitpid"][i] == "pass" for i in part3)
    for svc in ("part1", "part3-iterative", "part3-fork", "part3-fork-leaky", "part3-eintr",
                "part3-waitpid"):
        assert e[svc]["bad-input"] == "fail", svc
    part2 = [s.id for s in S.STAGES if s.lesson == "part 2"]
    assert all(e["part2-wsgi"][i] == "pass" for i in part2)
    assert e["part2-wsgi"]["concurrent"] == "fail"
    assert {e["part3-wsgi-wsgi"][s.id] for s in S.STAGES if s.lesson != "part 4"} == {"pass"}
    assert set(e["part4-evloop-wsgi"][i] for i in ("keep-alive", "pipelining", "close",
                                                     "framing")) == {"pass"}
    for svc in ("part1", "part3-waitpid", "part2-wsgi", "part3-wsgi-wsgi", "gunicorn-wsgi",
                "part4-prefork-wsgi"):
        assert e[svc]["keep-alive"] == "fail", svc
    assert e["gunicorn-gthread-wsgi"]["keep-alive"] == "pass"
    assert e["gunicorn-wsgi"]["slow-clients"] == "fail"
    starter = e["yours"]
    assert all(starter[i] == "pass" for i in ("hello", "http", "wsgi-apps", "environ"))
    assert starter["concurrent"] == starter["slow-clients"] == "fail"


# ---------------------------------------------------------------- README

def _between(text: str, name: str) -> str:
    start, end = f"<!-- {name}:start -->\n", f"\n<!-- {name}:end -->"
    assert start in text and end in text, f"README lost its {name} markers"
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_readme_shows_the_stages_and_the_matrix_grade_readme_prints():
    readme = (ROOT / "docs" / "grading.md").read_text(encoding="utf-8")  # README's depth
    printed = grade("--readme")
    assert printed.returncode == 0, printed.stderr
    assert _between(readme, "grade-stages") == S.readme_table(), \
        "README's stage table is stale: paste `grade --readme`"
    assert _between(readme, "grade-matrix") == calibration.readme_matrix(), \
        "README's matrix is stale: paste `grade --readme`"
    assert S.readme_table() in printed.stdout and calibration.readme_matrix() in printed.stdout


# ---------------------------------------------------------------- reports

RESULTS = {"hello": Result("pass", "200", 0.5), "eof": Result("fail", "no EOF", 3.1),
           "zombie": Result("skip", "no children", 1.0)}


def test_json_report_has_exactly_the_issues_shape():
    data = report.to_json("yours", RESULTS)
    assert set(data) == {"target", "stages"}
    assert data["stages"][1] == {"id": "eof", "verdict": "fail", "evidence": "no EOF",
                                 "seconds": 3.1}


def test_junit_has_one_testcase_per_stage_with_failure_and_skipped():
    root = ET.fromstring(report.to_junit("yours", RESULTS))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["hello", "eof", "zombie"]
    assert cases[1].find("failure") is not None
    assert "webserver3g.py" in cases[1].find("failure").text
    assert cases[2].find("skipped").get("message") == "no children"


def test_table_names_the_lesson_and_the_fix_for_a_failure_only():
    text = report.table("yours", "lsbaws/yours:dev", RESULTS, 12.0)
    assert "FAIL" in text and "services/part3/webserver3g.py" in text
    assert "1 pass, 1 FAIL, 1 skip" in text
    assert text.count("lesson (") == 1


def test_write_creates_the_directory(tmp_path):
    out = report.write_json(str(tmp_path / "reports" / "g.json"), "yours", RESULTS)
    assert json.loads(out.read_text())["target"] == "yours"


# ---------------------------------------------------------------- the command line

def test_list_prints_every_stage_with_its_threshold():
    run = grade("--list")
    assert run.returncode == 0, run.stderr
    for s in S.STAGES:
        assert s.id in run.stdout and s.fix in run.stdout


@pytest.mark.parametrize("args,says", [
    (["part3-waitpid", "--only", "zombie,nosuch"], "unknown stage nosuch; valid: hello, http"),
    (["no-such-service"], "unknown service 'no-such-service'; valid: part1"),
    ([], "name a service"),
    (["part1", "--bogus"], "unrecognized arguments"),
    (["part1", "--env", "NOEQUALS"], "--env wants NAME=VALUE"),
])
def test_usage_errors_exit_2_with_one_line(args, says):
    run = grade(*args)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], run.stderr
    assert not run.stdout


def test_no_engine_socket_is_one_line_saying_how_to_mount_it():
    run = grade("part1", env={"LSBAWS_DOCKER_SOCKET": "/nonexistent/docker.sock"})
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "-v /nonexistent/docker.sock" in lines[0], run.stderr


# ---------------------------------------------------------------- copies

def test_copies_tar_puts_the_files_under_their_directories():
    from instrument.copies import _tar

    tar = tarfile.open(fileobj=io.BytesIO(_tar({"/lsbaws-grade/a.py": b"x = 1\n"})))
    assert tar.getnames() == ["lsbaws-grade", "lsbaws-grade/a.py"]
    assert tar.extractfile("lsbaws-grade/a.py").read() == b"x = 1\n"


def _stat(pid, ppid, state, name="python", cminflt=0):
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt ...
    return f"{pid} ({name}) {state} {ppid} 1 1 0 -1 0 10 {cminflt} 0 0 1 1 0 0 20 0 1 0 0"


def test_the_server_is_the_topmost_holder_of_the_listen_socket_and_observers_are_left_out():
    from instrument.copies import parse_sample

    line = json.dumps({"t": 1.0, "listen": True, "me": 40, "last_pid": 41, "holders": [7, 12],
                       "fds": {"7": 5, "12": 6},
                       "stat": {"1": _stat(1, 0, "S", "docker-init"), "7": _stat(7, 1, "S",
                                cminflt=300), "12": _stat(12, 7, "S"), "13": _stat(13, 7, "Z"),
                                "30": _stat(30, 0, "S", "sleep"), "40": _stat(40, 0, "R")}})
    look = parse_sample(line)
    assert look.server_pid == 7 and look.server_fds == 5
    assert [p.pid for p in look.children()] == [12, 13]
    assert [p.pid for p in look.zombies()] == [13]
    assert {p.pid for p in look.table} == {1, 7, 12, 13}
    assert look.cminflt[7] == 300


# ---------------------------------------------------------------- the starter

def test_the_starter_is_small_self_contained_and_runs_app_from_the_environment():
    source = (ROOT / "services" / "yours" / "webserver.py").read_text()
    assert len(source.splitlines()) <= 140
    assert "wsgicore" not in source and "import" in source
    dockerfile = (ROOT / "services" / "yours" / "Dockerfile").read_text()
    assert 'python webserver.py \\"$APP:app\\"' in dockerfile
    assert (ROOT / "services" / "yours" / "README.md").is_file()


class ClimbingCopy:
    """A copy whose process count is read from a list, one look each."""
    role, name = "hello", "c1"

    def __init__(self, counts):
        self.counts, self.looks = list(counts), 0

    def look(self):
        count = self.counts[min(self.looks, len(self.counts) - 1)]
        self.looks += 1
        return types.SimpleNamespace(table=[None] * count)


@pytest.mark.parametrize("counts, looks, said", [
    ([120, 340, 511], 3, True),    # a bomb still filling its limit on a slow machine
    ([129, 129, 129], 2, False),   # 128 zombies and their server: stable, not a bomb
    ([3], 1, False),               # a lesson server: one look
])
def test_a_fork_bomb_still_filling_its_pids_limit_is_looked_at_again(monkeypatch, counts,
                                                                    looks, said):
    from grade.checks import base
    monkeypatch.setattr(base, "PIDS_LOOK_GAP", 0.01)
    ctx = base.Ctx.__new__(base.Ctx)
    copy = ClimbingCopy(counts)
    ctx._made, ctx._pids, ctx._lock = [copy], {copy.name: 512}, threading.Lock()
    found = ctx.at_pids_limit("hello")
    assert ("pids limit (511 processes of 512)" in found) == said, found
    assert copy.looks == looks


class StagesCtx:
    """A Ctx that makes no container: it notes each copy's role."""

    def __init__(self):
        self.made, self.emulation = [], None
        self.target = types.SimpleNamespace(notes=[])

    def copy(self, role, **_):
        self.made.append(role)
        return types.SimpleNamespace(name=role)

    def at_pids_limit(self, role):
        return ""

    def lost_view(self, role):
        return ""

    def release(self, stage):
        pass

    def release_all(self):
        pass


@pytest.mark.parametrize("ids, start_check, made", [
    (["eof"], True, ["basic", "eof"]),            # `grade`: the start check first
    (["eof"], False, ["eof"]),                    # the calibration: no copy for nothing
    (["hello", "eof"], False, ["basic", "eof"]),  # hello still runs on the first copy
])
def test_the_first_copy_is_made_for_the_start_check_or_for_hello(monkeypatch, ids, start_check,
                                                                  made):
    from grade import runner
    from grade.checks import Result
    monkeypatch.setattr(runner, "SHARED", {"hello": lambda ctx, basic: Result("pass", basic.name)})
    monkeypatch.setattr(runner, "OWN", {"eof": lambda ctx: Result("pass", ctx.copy("eof").name)})
    ctx = StagesCtx()
    got = runner.run(ctx, ids, runner.Progress("t", len(ids), enabled=False),
                     start_check=start_check)
    assert sorted(ctx.made) == sorted(made)
    assert {i: r.evidence for i, r in got.items()} == {i: "basic" if i == "hello" else i
                                                       for i in ids}
