"""runner: runs an experiment or a chart, and reads what is left after it.

Each load kind in experiments.py (`load["kind"]`) is one function of
lab.loads (part 3) or lab.part4 (slow clients, keep-alive), found here in
LOADS; it restarts the service fresh, sends the bounded load, and returns
an observation (a plain dict) for lab.verdict. run_experiment adds the
container's state and process table after the load (Outcome, the shape of
results.json). The chart sweeps (CHARTS; lab.sweeps and lab.part4) reuse
the same pieces with more points, found in SWEEPS.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from instrument import procs
from instrument.engine import EngineError, Service
from instrument.waiting import TimedOut

from lab.experiments import Chart, Experiment, Series
from lab.loads import PART3_LOADS
from lab.part4 import PART4_LOADS, keepalive_sweep, slow_sweep
from lab.sweeps import answer_sweep, fd_sweep, zombie_sweep
from lab.verdict import Verdict, judge

FAILURES = (OSError, subprocess.SubprocessError, ValueError, TimedOut, EngineError)


class NullUi:
    """What the runner tells the user; lab.__main__ draws it with rich."""

    def phase(self, text: str, total: float | None = None) -> None:
        pass

    def update(self, done: float, total: float | None = None) -> None:
        pass


# ---------------------------------------------------------------- results

@dataclass
class Outcome:
    experiment: Experiment
    observation: dict
    verdict: Verdict
    seconds: float
    status: str = ""                 # the container's state after the load
    exit_code: int | None = None
    table: list[procs.Proc] = field(default_factory=list)
    server_pid: int | None = None
    fds: int | None = None
    nofile: str | None = None

    def as_dict(self) -> dict:
        shown, more = procs.excerpt(self.table, 12)
        return {
            "id": self.experiment.id, "step": self.experiment.step,
            "claims": list(self.experiment.claims), "service": self.experiment.service,
            "title": self.experiment.title, "load": self.experiment.load_text,
            "expects": self.experiment.expects, "agrees": self.verdict.agrees,
            "observed": self.verdict.observed, "verdict": self.verdict.sentence,
            "observation": self.observation, "seconds": round(self.seconds, 1),
            "status": self.status, "exit_code": self.exit_code, "server_pid": self.server_pid,
            "fds": self.fds, "nofile": self.nofile,
            "processes": [[p.pid, p.ppid, p.state, p.args] for p in shown], "processes_more": more,
            "zombies_in_container": len(procs.zombies(self.table)),
        }


def run_experiment(svc: Service, exp: Experiment, ui=None) -> Outcome:
    ui = ui or NullUi()
    t0 = time.monotonic()
    try:
        obs = LOADS[exp.load["kind"]](svc, exp.load, ui)
    except FAILURES as error:
        obs = {"service": svc.name, "error": f"{type(error).__name__}: {error}"}
    obs.setdefault("service", svc.name)
    verdict = judge(exp, obs)
    outcome = Outcome(exp, obs, verdict, time.monotonic() - t0)
    ui.phase(f"reading {svc.name}'s process table")
    state = svc.state()
    outcome.status, outcome.exit_code = state["Status"], state.get("ExitCode")
    look = svc.look() if state["Status"] == "running" else None
    if look:
        outcome.table = look.table
        outcome.server_pid, outcome.fds, outcome.nofile = look.server_pid, look.fds, look.nofile
    return outcome


# ---------------------------------------------------------------- the tables

LOADS = {**PART3_LOADS, **PART4_LOADS}
SWEEPS = {"zombie_sweep": zombie_sweep, "fd_sweep": fd_sweep, "answer_sweep": answer_sweep,
          "slow_sweep": slow_sweep, "keepalive_sweep": keepalive_sweep}


def run_chart(engine, chart: Chart, series: list[Series], points, ui, known=None) -> dict:
    """{series label: its rows, or {"error": what stopped it}}: a series that
    fails keeps its own error text and never stops the others."""
    data = {}
    for s in series:
        svc = engine.service(s.service)
        try:
            data[s.label] = SWEEPS[chart.kind](svc, s, points, ui, known)
        except FAILURES as error:
            data[s.label] = {"error": f"{type(error).__name__}: {error}"}
    return data
