"""grade --class: every submission of a folder, graded at once.

    LSBAWS_CLASS=./path/to/submissions docker compose run --rm tests grade --class

Each subfolder that holds a Dockerfile is one student (the folder's name).
Each is built through the engine (untagged), graded on every stage on its
own copies. A build that fails, or a
server that never listens on 8888, is that student's `error`: the class goes
on. STUDENTS_AT_ONCE students are graded at a time, each with its stages
three at a time and its loads one at a time: the same load the suite's
calibration puts on two cores (two rows at once), whose verdicts it checks.

Every copy and observer a run makes carries the label `lsbaws.copy` with the
run's owner (instrument.copies) and is removed when the run ends, even on
Ctrl-C; a later run removes what a killed one left. The submissions' images
are built untagged, with no label, and kept as the engine's build cache:
a label or a tag removed at the end would throw the cache away, and on this
project's engine (fuse-overlayfs) re-committing a submission's last step
cost 5-26 s a student; unchanged, it now builds from the cache at once.
`docker image prune` removes them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grade import stages as S
from grade.checks import Result

STUDENTS_AT_ONCE = 2
BUILD_TAIL = 6          # lines of a failed build's log in the student's error


@dataclass
class Student:
    name: str
    path: Path
    results: dict[str, Result] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def verdicts(self, ids: list[str]) -> dict[str, str]:
        if self.error:
            return {i: "error" for i in ids}
        return {i: self.results[i].verdict if i in self.results else "error" for i in ids}


def submissions(folder: Path) -> list[Student]:
    """Every subfolder with a Dockerfile, by name."""
    return [Student(p.name, p) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.is_dir() and (p / "Dockerfile").is_file()]


def build(engine, student: Student) -> tuple[str | None, str | None]:
    """Build the submission, untagged: (its image id, None), or (None, the
    error with its build log's last lines)."""
    from instrument.build import BuildFailed
    from instrument.build import build as build_image

    try:
        return build_image(engine, student.path, tail=BUILD_TAIL), None
    except BuildFailed as error:
        return None, f"does not build: {error}"
    except Exception as error:  # noqa: BLE001 - a broken context (unreadable file, ...)
        return None, f"does not build: {type(error).__name__}: {error}"


def grade_one(engine, copies, student: Student, ids: list[str], jobs: int) -> None:
    from instrument.copies import CopyError

    from grade.checks import Ctx
    from grade.runner import Progress, run
    from grade.target import Target

    t0 = time.monotonic()
    try:
        image, student.error = build(engine, student)
        if student.error:
            return
        config = engine.client.images.get(image).attrs["Config"]
        image_env = dict(e.partition("=")[::2] for e in config.get("Env") or [])
        target = Target(student.name, image, {}, image_env)
        try:
            student.results = run(Ctx(target, copies), ids,
                                  Progress(student.name, 0, enabled=False), jobs)
            student.notes = target.notes   # e.g. it ran under emulation (grade.emulation)
        except CopyError as error:
            student.error = f"does not start: {error}"
    finally:
        student.seconds = round(time.monotonic() - t0, 1)


def grade_class(engine, folder: Path, out: Path, ids: list[str] | None = None,
                at_once: int = STUDENTS_AT_ONCE, jobs: int = 3, say=None) -> list[Student]:
    """Grade every submission; write out/summary.json, summary.md, index.html
    and junit/NAME.xml; remove everything the run made."""
    from instrument.copies import Copies

    from grade import class_report

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    ids = ids or list(S.IDS)
    students = submissions(folder)
    copies = Copies(engine)
    copies.sweep()
    slots = threading.Semaphore(at_once)
    lock = threading.Lock()
    state = {"done": 0, "grading": []}
    t0 = time.monotonic()

    def one(student: Student):
        with slots:
            with lock:
                state["grading"].append(student.name)
                left = len(students) - state["done"]
                say(f"grade --class: grading {student.name} "
                    f"(now: {', '.join(state['grading'])}; {left} of {len(students)} to go)")
            try:
                grade_one(engine, copies, student, ids, jobs)
            except Exception as error:  # noqa: BLE001 - that student's error, not the run's
                student.error = f"the grader failed on it: {type(error).__name__}: {error}"
            with lock:
                state["grading"].remove(student.name)
                state["done"] += 1
                left = len(students) - state["done"]
                counts = student.verdicts(ids)
                what = student.error[:100] if student.error else ", ".join(
                    f"{sum(v == k for v in counts.values())} {k}" for k in ("pass", "fail", "skip"))
                say(f"grade --class: {student.name} done in {student.seconds:.0f} s ({what}); "
                    f"{left} to go")

    threads = [threading.Thread(target=one, args=(s,), daemon=True) for s in students]
    try:
        for t in threads:
            t.start()
            time.sleep(0.05)  # keep the order: the semaphore is not fair
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    finally:
        copies.remove_all()
    seconds = time.monotonic() - t0
    written = class_report.write_all(out, ids, students, seconds)
    say(f"grade --class: {len(students)} submissions in {seconds:.0f} s; wrote "
        f"{', '.join(str(p) for p in written)}")
    return students


def folder_from(arg: str | None) -> Path:
    """The class folder: the argument, else /class when LSBAWS_CLASS is set."""
    if arg:
        return Path(arg)
    if os.environ.get("LSBAWS_CLASS"):
        return Path(os.environ.get("LSBAWS_CLASS_MOUNT", "/class"))
    return Path("")
