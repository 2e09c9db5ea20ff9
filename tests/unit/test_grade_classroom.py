"""grade --class without an engine: its usage errors, which folders are
submissions, and what it writes into reports/class/ (the summary's shape,
the matrix, the page, one JUnit file per student)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from grade import class_report, classroom
from grade.checks import Result

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"


def grade(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LSBAWS_CLASS"}
    env["PYTHONPATH"] = str(ROOT / "scripts")
    return subprocess.run([sys.executable, "-m", "grade", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=env)


@pytest.mark.parametrize("args,says", [
    (["--class"], "LSBAWS_CLASS=./path/to/submissions"),
    (["--class", "/no/such/folder"], "no class folder at /no/such/folder"),
    (["--class", str(ROOT / "docs")], "no submissions in"),
    (["--class", str(FIXTURES), "--only", "nosuch"], "unknown stage nosuch"),
])
def test_usage_errors_exit_2_with_one_line(args, says):
    run = grade(*args)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], run.stderr


def test_every_subfolder_with_a_dockerfile_is_a_student_by_its_name(tmp_path):
    for name in ("bob", "alice", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "alice" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "bob" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")  # the folder itself is no student
    assert [s.name for s in classroom.submissions(tmp_path)] == ["alice", "bob"]
    names = {s.name for s in classroom.submissions(FIXTURES)}
    assert {"killer", "forkbomb", "chatty", "silent", "broken", "garbage", "spinner"} <= names


def _students():
    ok = classroom.Student("alice", Path("alice"), seconds=41.5, results={
        "hello": Result("pass", "200", 0.5), "eof": Result("fail", "no EOF", 3.0)})
    broken = classroom.Student("bob <b>", Path("bob"), error="does not build: COPY failed",
                               seconds=2.0)
    return [ok, broken]


def test_summary_json_has_exactly_the_issues_shape_and_no_pass_for_an_error(tmp_path):
    class_report.write_all(tmp_path, ["hello", "eof"], _students(), 50.0)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data == {"stages": ["hello", "eof"], "students": [
        {"name": "alice", "verdicts": {"hello": "pass", "eof": "fail"}, "error": None,
         "seconds": 41.5},
        {"name": "bob <b>", "verdicts": {"hello": "error", "eof": "error"},
         "error": "does not build: COPY failed", "seconds": 2.0}]}


def test_matrix_page_and_junit_files(tmp_path):
    (tmp_path / "junit").mkdir()
    (tmp_path / "junit" / "left-the-class.xml").write_text("<old/>")
    class_report.write_all(tmp_path, ["hello", "eof"], _students(), 50.0)
    md = (tmp_path / "summary.md").read_text()
    assert "| alice | ✓ | **✗** |" in md and "| bob <b> | E | E |" in md
    assert "- bob <b>: does not build: COPY failed" in md
    page = (tmp_path / "index.html").read_text()
    assert page.count("<details>") == 4 and "bob &lt;b&gt;" in page and "<b>" not in page
    assert "services/part3/webserver3g.py" in page   # a cell opens its lesson
    assert sorted(p.name for p in (tmp_path / "junit").iterdir()) == ["alice.xml", "bob_b_.xml"]
    bob = ET.parse(tmp_path / "junit" / "bob_b_.xml").getroot()
    assert bob.find("./testsuite").get("errors") == "2"
    assert len(bob.findall(".//error")) == 2
