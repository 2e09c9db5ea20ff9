"""watch: a copy sampled in the background, every `interval` s, by one
long observer exec whose samples stream in as they are taken (an exec each
few samples would cost the engine ~0.1 s of CPU each: a core's worth while
a zombie stage waits on ten children).

    watch = copy.watch(0.05)          # instrument.copies
    ...                               # the load; copy.look() now reads the watch
    watch.stop()
    watch.children_seen(server_pid, before), watch.peak_fds(server_pid)

While a watch runs, `copy.look()` returns the watch's first sample taken
after the call: the same fresh look, without an exec of its own.
"""

from __future__ import annotations

import threading
import time

from instrument import procs

SLICE = 5.0   # seconds one exec streams (and at most runs on after a stop)


class Watch:
    """The peak of the server's descriptors and processes, and every child of
    the server seen, with its last state."""

    def __init__(self, copy, interval: float):
        self.copy, self.interval = copy, interval
        self.looks: list = []
        self._new = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        copy.watching = self
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            samples = max(1, round(SLICE / self.interval))
            got = False
            for look in self.copy.stream(samples, self.interval, self._stop):
                with self._new:
                    if self._stop.is_set():
                        break
                    self.looks.append(look)
                    self._new.notify_all()
                got = True
            if not got:
                if not self.copy.running():
                    break
                time.sleep(self.interval)
        with self._new:
            self._new.notify_all()

    def next_look(self, timeout: float):
        """The first sample taken after now, or None (stopped, the copy gone,
        or nothing within `timeout` s)."""
        now = time.time()
        deadline = time.monotonic() + timeout
        with self._new:
            while not (self.looks and self.looks[-1].t >= now):
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or not self._thread.is_alive():
                    return None
                self._new.wait(min(left, 0.5))
            return next(lk for lk in self.looks if lk.t >= now)

    def stop(self) -> Watch:
        self._stop.set()
        if self.copy.watching is self:
            self.copy.watching = None
        # an exec cut off from a copy that died can hang: what was seen is kept
        self._thread.join(2 * self.interval + 3)
        return self

    def children_seen(self, server_pid: int, before=()) -> dict[int, str]:
        seen: dict[int, str] = {}
        for look in list(self.looks):
            for p in procs.children(look.table, server_pid):
                if p.pid not in before:
                    seen[p.pid] = p.state
        return seen

    def peak_fds(self, server_pid: int) -> int:
        return max((lk.fds.get(server_pid, 0) for lk in list(self.looks)), default=0)

    def peak_procs(self) -> int:
        return max((len(lk.table) for lk in list(self.looks)), default=0)
