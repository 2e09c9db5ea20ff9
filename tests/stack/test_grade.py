"""The grader graded: the stack's own servers get the verdicts that
tell the article's story (grade/calibration.py, one row per server, the
stages that prove it), and `grade` behaves as a command.

The rows run two at a time, each on its own copies of the server's image
(the running stack is never touched). A verdict that differs fails with the
grader's evidence.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from grade import calibration
from instrument.copies import LABEL

ROOT = Path(__file__).resolve().parents[2]
PARALLEL_ROWS = 2


def _available(engine, row) -> str | None:
    """Why a row cannot run here (an image another helper's service has not
    built), or None."""
    from instrument import servers

    if row.service not in servers.names():
        return f"{row.service} is not in compose.yaml"
    if row.source or row.service in ("busybox", "yours"):
        return None  # the grader builds it
    image = next(s.image for s in servers.servers() if s.name == row.service)
    try:
        engine.client.images.get(image)
    except engine.docker.errors.ImageNotFound:
        return f"no image {image}"
    return None


def test_calibration_matrix_tells_the_articles_story(engine):
    rows = [r for r in calibration.ROWS if not _available(engine, r)]
    missing = [f"{r.service}: {_available(engine, r)}" for r in calibration.ROWS
               if _available(engine, r)]
    out = calibration.grade_rows(engine, rows, jobs=3, rows_at_once=PARALLEL_ROWS,
                                 say=lambda _: None, join_timeout=300)
    report = "\n".join(f"  {s}: {seconds:.0f} s" for s, (_, seconds, _) in out.items())
    print(f"\ncalibration rows graded (seconds each):\n{report}")
    if missing:
        print("not graded (image missing): " + "; ".join(missing))
    errors = {s: error for s, (_, _, error) in out.items() if error}
    assert not errors, errors
    diffs = [d for r in rows for d in calibration.differences(r, out[r.service][0])]
    assert not diffs, "\n".join(diffs)
    mine = f"{socket.gethostname()}.{os.getpid()}-"  # the owner grade_rows's copies carry
    leftovers = [c for c in engine.client.api.containers(all=True, filters={"label": LABEL})
                 if c["Labels"].get(LABEL, "").startswith(mine)]
    assert not leftovers, [c["Names"] for c in leftovers]


def _grade(*args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grade", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_grade_command_writes_json_and_junit_and_exits_1_on_a_failure(tmp_path):
    out_json, out_xml = tmp_path / "g.json", tmp_path / "g.xml"
    run_ = _grade("part3-fork-leaky", "--only", "eof,zombie", "--json", str(out_json),
                  "--junit-xml", str(out_xml), "--quiet")
    assert run_.returncode == 1, run_.stdout + run_.stderr
    assert "eof" in run_.stdout and "FAIL" in run_.stdout
    assert "services/part3/webserver3g.py" in run_.stdout, run_.stdout
    data = json.loads(out_json.read_text())
    assert data["target"] == "part3-fork-leaky"
    assert [s["id"] for s in data["stages"]] == ["eof", "zombie"]
    assert {s["verdict"] for s in data["stages"]} == {"fail"}
    assert all(set(s) == {"id", "verdict", "evidence", "seconds"} for s in data["stages"])
    xml = out_xml.read_text()
    assert xml.count("<testcase ") == 2 and xml.count("<failure ") == 2


def test_grade_command_exits_0_when_every_stage_passes():
    run_ = _grade("part3-waitpid", "--only", "concurrent,eof", "--quiet")
    assert run_.returncode == 0, run_.stdout + run_.stderr
    assert "2 pass, 0 FAIL, 0 skip" in run_.stdout


def test_a_target_that_does_not_listen_is_a_usage_error(engine):
    """part2-wsgi with an APP that does not exist exits at once: exit 2, one line."""
    run_ = _grade("part2-wsgi", "--env", "APP=no_such_module", "--only", "hello", "--quiet",
                  timeout=90)
    assert run_.returncode == 2, run_.stdout + run_.stderr
    lines = run_.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not start" in lines[0], run_.stderr
    assert "No module named" in lines[0] or "no_such_module" in lines[0], lines[0]
