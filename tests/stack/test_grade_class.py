"""grade --class on a folder of submissions: the stack's own servers as
Dockerfiles, the starter and the hostile fixtures (tests/fixtures/submissions/).
Each gets the verdict the calibration predicts or, for a hostile one, never
a pass the grader did not see; the run finishes, exits 0, writes
reports/class/ and leaves no container or image behind (checked by label).

The default run grades the hostile fixtures and webserver3g on two stages
(HOSTILE_STAGES) so the suite stays quick; LSBAWS_CLASS_FULL=1 adds the
starter and webserver4b, grades every stage and prints the run's time
against the sum of the single grades (docs/grading.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grade import calibration
from grade import stages as S
from instrument.copies import LABEL as COPY_LABEL

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
HOSTILE_STAGES = ["hello", "zombie"]   # what the hostile ones need shown: kept short
# stack servers as a student would hand them in: a Dockerfile on the image
STACK = {"waitpid": "part3-waitpid", "evloop": "part4-evloop-wsgi"}
QUICK = {"waitpid": "part3-waitpid"}   # the default run's one stack server


def make_class(folder: Path, full: bool = True) -> Path:
    for name in sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()):
        shutil.copytree(FIXTURES / name, folder / name)
    if full:
        shutil.copytree(ROOT / "services" / "yours", folder / "starter")
    for name, service in (STACK if full else QUICK).items():
        (folder / name).mkdir()
        (folder / name / "Dockerfile").write_text(f"FROM lsbaws/{service}:dev\n")
    return folder


# every run of this module's grade commands is owned by this test process, so
# what it left is told apart from what other workers' runs are making now
OWNER = f"{socket.gethostname()}.{os.getpid()}-class"


def grade_class(folder: Path, out: Path, *args: str, timeout: float = 600):
    return subprocess.run([sys.executable, "-m", "grade", "--class", str(folder), "--out",
                           str(out), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "LSBAWS_COPY_OWNER": OWNER})


def left_behind(engine) -> list[str]:
    """The containers (copies, observers) this module's class runs made and
    did not remove, and any image tag a class run would have made (its
    images are built untagged: the engine's build cache)."""
    api = engine.client.api
    mine = api.containers(all=True, filters={"label": f"{COPY_LABEL}={OWNER}"})
    tags = [t for i in api.images() for t in (i.get("RepoTags") or [])
            if t.startswith("lsbaws-class/")]
    return [c["Names"][0] for c in mine] + tags


@pytest.fixture(scope="module")
def hostile_class(engine, tmp_path_factory):
    """One class run over the hostile fixtures (and webserver3g): the tests
    below read what it wrote."""
    tmp = tmp_path_factory.mktemp("hostile")
    folder, out = make_class(tmp / "class", full=False), tmp / "out"
    run = grade_class(folder, out, "--only", ",".join(HOSTILE_STAGES), "--at-once", "3")
    return folder, out, run


def test_a_class_with_hostile_submissions_is_graded_and_nothing_is_left(engine, hostile_class):
    folder, out, run = hostile_class
    assert run.returncode == 0, run.stdout + run.stderr
    assert "grade --class: grading killer" in run.stderr and "to go" in run.stderr
    data = json.loads((out / "summary.json").read_text())
    assert data["stages"] == HOSTILE_STAGES
    by = {s["name"]: s for s in data["students"]}
    assert sorted(by) == sorted(p.name for p in folder.iterdir())
    report = json.dumps(data, indent=1)
    wrong = []   # every broken expectation at once: one run shows them all

    def expect(ok, what):
        if not ok:
            wrong.append(what)

    for name, service in QUICK.items():
        row = calibration.BY_SERVICE[service]
        expect(by[name]["error"] is None and by[name]["verdicts"] ==
               {i: row.expect[i] for i in HOSTILE_STAGES}, f"{name}: as {service}'s row")
    for name in by:
        if by[name]["error"]:
            expect("pass" not in by[name]["verdicts"].values(), f"{name}: error, no pass")
    expect((by["broken"]["error"] or "").startswith("does not build")
           and "webserver.py" in by["broken"]["error"], "broken: does not build, with its log")
    expect("did not listen on 8888 within 30 s" in (by["silent"]["error"] or ""),
           "silent: never listens")
    # killer: its kill(-1) took the observer; what needed it is an error, not a verdict
    expect(by["killer"]["verdicts"]["zombie"] == "error", "killer: zombie is an error")
    expect(by["killer"]["verdicts"]["hello"] == "pass", "killer: hello seen on the wire")
    expect(by["forkbomb"]["verdicts"]["hello"] == "fail", "forkbomb: hello fails")
    expect(by["chatty"]["verdicts"]["hello"] == "pass", "chatty: serves")
    for name in ("garbage", "spinner"):
        expect("pass" not in by[name]["verdicts"].values(), f"{name}: no pass")
    evidence = "".join(f"\n{x}: {(out / 'junit' / f'{x}.xml').read_text()[-3000:]}"
                       for x in sorted({w.split(":")[0] for w in wrong} & set(by)))
    assert not wrong, "\n".join(wrong) + "\n" + report + evidence
    junit = sorted(p.name for p in (out / "junit").iterdir())
    assert junit == sorted(f"{n}.xml" for n in by)
    md = (out / "summary.md").read_text()
    assert all(f"| {n} |" in md for n in by)
    assert (out / "index.html").read_text().count("<tr>") == len(by) + 1
    assert not left_behind(engine), left_behind(engine)


def test_the_forkbomb_failure_names_the_pids_limit(engine, hostile_class):
    _, out, run = hostile_class
    assert run.returncode == 0, run.stdout + run.stderr
    got = {s["name"]: s for s in json.loads((out / "summary.json").read_text())["students"]}
    assert got["forkbomb"]["verdicts"]["hello"] == "fail", got["forkbomb"]
    junit = (out / "junit" / "forkbomb.xml").read_text()
    assert "pids limit" in junit, junit
    assert not left_behind(engine)


@pytest.mark.timeout(3600)
@pytest.mark.skipif(not os.environ.get("LSBAWS_CLASS_FULL"),
                    reason="the full class run takes minutes: LSBAWS_CLASS_FULL=1")
def test_full_class_run_takes_under_60_percent_of_the_single_grades(engine, tmp_path):
    folder, out = make_class(tmp_path / "class"), tmp_path / "out"
    t0 = time.monotonic()
    run = grade_class(folder, out, timeout=1800)
    together = time.monotonic() - t0
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads((out / "summary.json").read_text())
    assert data["stages"] == S.IDS
    alone = 0.0
    for student in sorted(p.name for p in folder.iterdir()):
        one = tmp_path / "alone" / student
        shutil.copytree(folder / student, one / student)
        t1 = time.monotonic()
        grade_class(one, tmp_path / "alone-out" / student, "--at-once", "1", timeout=900)
        alone += time.monotonic() - t1
    by = {s["name"]: s for s in data["students"]}
    for name, service in {**STACK, "starter": "yours"}.items():
        assert by[name]["verdicts"] == calibration.BY_SERVICE[service].expect, name
    print(f"\nclass run: {together:.0f} s for {len(by)} submissions; one at a time: "
          f"{alone:.0f} s; {100 * together / alone:.0f}%")
    assert together < 0.6 * alone
    assert not left_behind(engine)


def test_a_server_that_stops_answering_is_not_asked_ten_times(engine, hostile_class):
    """spinner answers once, then spins: zombie stops asking after
    UNANSWERED_IN_A_ROW unanswered requests (not ten waits of 5 s) and skips."""
    _, out, run = hostile_class
    assert run.returncode == 0, run.stdout + run.stderr
    got = {s["name"]: s for s in json.loads((out / "summary.json").read_text())["students"]}
    assert got["spinner"]["verdicts"]["zombie"] == "skip", got["spinner"]
    junit = (out / "junit" / "spinner.xml").read_text()
    assert f"it stopped answering: {S.UNANSWERED_IN_A_ROW} unanswered in a row" in junit, junit
