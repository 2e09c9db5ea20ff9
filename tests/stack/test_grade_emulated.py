"""A submission built for another CPU, graded: webserver3g in an arm64 image
(tests/fixtures/emulated/webserver3g-arm64), run on this x86_64 machine under
qemu's user-mode emulation, as an amd64 image runs under Rosetta on an Apple
silicon Mac, against the same server built natively (FROM
lsbaws/part3-waitpid:dev, as tests/stack/test_grade_class.py hands in the
stack's servers).

It must get the native verdict on every stage that speed does not decide;
where a time limit decides and the verdicts differ, the evidence says plainly
that it ran under emulation (grade.emulation), and the class report notes it.

Behind the marker `emulated` (its base takes minutes to make):

    bash scripts/make-emulated-base.sh
    docker compose run --rm --no-deps tests \\
        python -m pytest tests/stack/test_grade_emulated.py -m emulated -p no:randomly -s

It needs no compose service running: only the images lsbaws/part3-waitpid:dev
and lsbaws/arm64-base:dev, and the engine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from grade import calibration, classroom, report
from grade import stages as S
from instrument.engine import Engine, EngineError

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "emulated" / "webserver3g-arm64"
LESSON = ROOT / "services" / "part3" / "webserver3g.py"
BASE = "lsbaws/arm64-base:dev"
NATIVE = "part3-waitpid"
SAID = "ran under emulation (qemu, arm64 on "

pytestmark = [pytest.mark.emulated, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def emu_engine(request):
    if "emulated" not in (request.config.getoption("-m") or ""):
        pytest.skip("behind the marker: run with -m emulated (after "
                    "`bash scripts/make-emulated-base.sh`), docs/grading.md")
    try:
        engine = Engine()
    except EngineError as error:
        pytest.skip(str(error))
    try:
        engine.client.images.get(BASE)
    except engine.docker.errors.ImageNotFound:
        pytest.skip(f"no image {BASE}: make it with `bash scripts/make-emulated-base.sh` "
                    "(about 3 minutes, from Debian's archive)")
    try:
        engine.client.images.get(f"lsbaws/{NATIVE}:dev")
    except engine.docker.errors.ImageNotFound:
        pytest.skip(f"no image lsbaws/{NATIVE}:dev: run `docker compose --profile '*' build`")
    try:
        engine.client.containers.run(BASE, ["python3", "-c", "pass"], remove=True)
    except engine.docker.errors.APIError as error:
        pytest.skip(f"{BASE} does not run here (no binfmt handler for arm64 since the machine "
                    f"started? run `bash scripts/make-emulated-base.sh`): {error}")
    return engine


@pytest.fixture(scope="module")
def graded(emu_engine, tmp_path_factory):
    """Both graded on every stage, one at a time (neither loads the other's clock)."""
    folder = tmp_path_factory.mktemp("class")
    shutil.copytree(FIXTURE, folder / "arm64")
    shutil.copy(LESSON, folder / "arm64" / LESSON.name)   # the build context, made here
    (folder / "native").mkdir()
    (folder / "native" / "Dockerfile").write_text(f"FROM lsbaws/{NATIVE}:dev\n")
    out = folder.parent / "out"
    lines: list[str] = []
    students = classroom.grade_class(emu_engine, folder, out, list(S.IDS), at_once=1,
                                     say=lines.append)
    by = {s.name: s for s in students}
    print("\n" + "\n".join(lines))
    print("\n| stage | native | seconds | arm64 under qemu | seconds |\n|---|---|---|---|---|")
    for i in S.IDS:
        n, e = by["native"].results.get(i), by["arm64"].results.get(i)
        print(f"| `{i}` | {n and n.verdict} | {n and n.seconds} | {e and e.verdict} | "
              f"{e and e.seconds} |")
    for i in S.IDS:
        if (e := by["arm64"].results.get(i)) and e.verdict != "pass":
            print(f"arm64 {i}: {e.evidence}")
    return by, out


def test_both_are_graded_and_only_the_arm64_one_is_said_to_be_emulated(graded):
    by, _ = graded
    assert by["native"].error is None and by["arm64"].error is None, \
        (by["native"].error, by["arm64"].error)
    assert not any("emulation" in n for n in by["native"].notes), by["native"].notes
    assert any("the server ran under emulation (qemu, arm64 on " in n
               for n in by["arm64"].notes), by["arm64"].notes


def test_the_native_twin_gets_its_calibration_row(graded):
    by, _ = graded
    expect = calibration.BY_SERVICE[NATIVE].expect
    got = by["native"].verdicts(S.IDS)
    assert got == expect, {i: (got[i], expect[i]) for i in S.IDS if got[i] != expect[i]}


def test_the_emulated_one_gets_the_native_verdict_where_speed_does_not_decide(graded):
    by, _ = graded
    native, emulated = by["native"].results, by["arm64"].results
    wrong = []
    for i in S.IDS:
        n, e = native[i], emulated[i]
        if not S.BY_ID[i].timed and e.verdict != n.verdict:
            wrong.append(f"{i} (no time limit decides it): {e.verdict}, native {n.verdict}: "
                         f"{e.evidence}")
        elif e.verdict != n.verdict and SAID not in e.evidence:
            wrong.append(f"{i}: {e.verdict}, native {n.verdict}, and no word of emulation: "
                         f"{e.evidence}")
        if e.verdict != "pass" and S.BY_ID[i].timed and SAID not in e.evidence:
            wrong.append(f"{i}: {e.verdict} against a time limit, emulation unsaid: {e.evidence}")
        if SAID in n.evidence:
            wrong.append(f"{i}: the native one is said to be emulated: {n.evidence}")
    assert not wrong, "\n".join(wrong)


def test_the_class_report_notes_the_emulation(graded):
    _, out = graded
    md = (out / "summary.md").read_text()
    assert "Notes:" in md and "- arm64: the server ran under emulation (qemu, arm64" in md, md
    page = (out / "index.html").read_text()
    assert "arm64 *" in page and "ran under emulation" in page
    junit = (out / "junit" / "arm64.xml").read_text()
    results = graded[0]["arm64"].results
    if any(r.verdict == "fail" and S.BY_ID[i].timed for i, r in results.items()):
        assert SAID in junit, junit[:2000]


def test_the_single_grade_table_prints_the_note(graded):
    """What `grade yours` prints for it: the note in the table's head."""
    by, _ = graded
    s = by["arm64"]
    text = report.table("yours", "arm64", s.results, s.seconds, s.notes)
    assert "  note: the server ran under emulation (qemu, arm64 on" in text, text
