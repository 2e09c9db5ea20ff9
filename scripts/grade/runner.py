"""Run the stages of one target: its first copy (the start check, then hello
on it), every other stage on its own copy, a few at once, the loads
(`heavy`) one at a time. A progress line on stderr while they run. The
calibration, whose servers are known to start, makes the first copy only
when hello is asked for (`start_check=False`)."""

from __future__ import annotations

import sys
import threading
import time
import traceback

from instrument.copies import CopyError

from grade import stages as S
from grade.checks import OWN, SHARED, Ctx, Result

JOBS = 3   # stages at once: copies are cheap, two cores are not


class Progress:
    """`grading part3-waitpid: burst 4s, emfile 1s | 9/17 done` on a terminal;
    one line per stage started otherwise (CI logs)."""

    def __init__(self, target: str, total: int, stream=None, enabled: bool = True):
        self.target, self.total = target, total
        self.stream = stream or sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.enabled = enabled
        self.running: dict[str, float] = {}
        self.done = 0
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if self.tty:
            threading.Thread(target=self._tick, daemon=True).start()

    def start(self, stage: str):
        with self._lock:
            self.running[stage] = time.monotonic()
        if self.enabled and not self.tty:
            print(f"grade {self.target}: [{time.monotonic() - self.t0:5.1f} s] {stage} ...",
                  file=self.stream, flush=True)

    def finish(self, stage: str):
        with self._lock:
            self.running.pop(stage, None)
            self.done += 1

    def _line(self) -> str:
        now = time.monotonic()
        with self._lock:
            parts = [f"{s} {now - t:.0f}s" for s, t in self.running.items()]
        return (f"grading {self.target}: {', '.join(parts) or 'starting'} | "
                f"{self.done}/{self.total} done")

    def _tick(self):
        while not self._stop.wait(0.5):
            self.stream.write("\r\033[K" + self._line())
            self.stream.flush()

    def close(self):
        self._stop.set()
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run(ctx: Ctx, ids: list[str], progress: Progress, jobs: int = JOBS,
        start_check: bool = True) -> dict[str, Result]:
    """Every stage in `ids`; CopyError (code 2) if the target does not start."""
    results: dict[str, Result] = {}
    basic = None
    if start_check or any(i in SHARED for i in ids):
        progress.start("start")
        try:
            basic = ctx.copy("basic")
        finally:
            progress.finish("start")
            progress.done -= 1
    if ctx.emulation:
        ctx.target.notes.append(ctx.emulation.note())
    heavy = threading.Lock()
    slots = threading.Semaphore(jobs)

    def timed(stage_id, fn, *args):
        progress.start(stage_id)
        t0 = time.monotonic()
        try:
            result = fn(ctx, *args)
        except CopyError as error:
            result = Result("fail", f"its copy did not start: {error}")
        except Exception as error:  # a check that breaks says so in its row
            tb = traceback.format_exc(limit=-2).strip().splitlines()
            result = Result("fail", f"the check itself failed: {type(error).__name__}: {error} "
                                    f"({tb[-3].strip() if len(tb) > 2 else ''})")
        role = "basic" if stage_id in SHARED else stage_id   # hello runs on the first copy
        if result.verdict == "fail" and (full := ctx.at_pids_limit(role)):
            result.evidence += f" ({full})"
        if ctx.emulation and result.verdict != "pass" and S.BY_ID[stage_id].timed:
            # never a verdict changed: the report says plainly what was slow
            result.evidence += f" ({ctx.emulation.statement(S.BY_ID[stage_id].threshold)})"
        if S.BY_ID[stage_id].watches and (lost := ctx.lost_view(role)):
            # never a verdict the grader did not see: what it read of the processes is void
            result = Result("error", f"{lost}; its own verdict ({result.verdict}: "
                                     f"{result.evidence[:160]}) is not trusted")
        result.seconds = round(time.monotonic() - t0, 2)
        results[stage_id] = result
        progress.finish(stage_id)
        ctx.release(stage_id)

    def shared():
        with slots:
            for stage_id in [i for i in ids if i in SHARED]:
                timed(stage_id, SHARED[stage_id], basic)
            ctx.release("basic")

    def own(stage_id):
        with slots:
            if S.BY_ID[stage_id].heavy:
                with heavy:
                    timed(stage_id, OWN[stage_id])
            else:
                timed(stage_id, OWN[stage_id])

    # the loads first: they are the longest, the light stages fill in beside them
    order = sorted((i for i in ids if i in OWN), key=lambda i: not S.BY_ID[i].heavy)
    # daemon threads: on Ctrl-C the command removes its copies and exits at once
    threads = [threading.Thread(target=shared, daemon=True)] if basic else []
    threads += [threading.Thread(target=own, args=(i,), daemon=True) for i in order]
    for t in threads:
        t.start()
        time.sleep(0.05)  # keep the start order: the semaphore is not fair
    for t in threads:
        while t.is_alive():
            t.join(0.5)  # a short join: the main thread must see KeyboardInterrupt
    ctx.release_all()
    return {i: results[i] for i in ids if i in results}
