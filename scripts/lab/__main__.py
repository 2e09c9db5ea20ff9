"""lab: watch each lesson of "Let's Build A Web Server" happen.

  docker compose run --rm lab list                 the experiments
  docker compose run --rm lab run zombies-under-load
  docker compose run --rm lab watch part3-eintr    (Ctrl-C to stop)
  docker compose run --rm lab report               reports/index.html
  docker compose run --rm lab readme-table         the table docs/lab.md embeds

Exit status: 0 when what was seen agrees with the article, 1 when it does
not (or when a chart could not be measured), 2 on bad input (an unknown
experiment or service, no engine socket, a service that was never created:
one line says what fixes it). `run` and `report` start the services they
need when they are stopped or have crashed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from instrument import servers

from lab.experiments import BY_ID, CHARTS, EXPERIMENTS, readme_table

REPORTS = Path("/lsbaws/reports")


def _console():
    from rich.console import Console

    return Console(highlight=False)


class RichUi:
    """The runner's progress, on a rich Progress with one task."""

    def __init__(self, progress, prefix: str = ""):
        self.progress, self.prefix = progress, prefix
        self.task = progress.add_task(prefix or "starting", total=None)

    def phase(self, text: str, total: float | None = None) -> None:
        self.progress.update(self.task, description=f"{self.prefix}{text}", total=total,
                             completed=0)

    def update(self, done: float, total: float | None = None) -> None:
        if total is not None:
            self.progress.update(self.task, total=total)
        self.progress.update(self.task, completed=done)


def _progress(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)


def _bad(kind: str, name: str, valid) -> int:
    print(f"lab: unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}", file=sys.stderr)
    return 2


def _engine(args):
    from instrument.engine import Engine

    return Engine(args.project)


# ---------------------------------------------------------------- commands

def cmd_list(args) -> int:
    from rich import box
    from rich.table import Table

    table = Table(title="lab experiments: docker compose run --rm lab run ID",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    rows = [(e.id, f"{e.step} {' '.join(e.claims)}", e.service, e.title) for e in EXPERIMENTS]
    for i, col in enumerate(("id", "step, claims", "service")):
        table.add_column(col, no_wrap=True, min_width=max(len(r[i]) for r in rows))
    table.add_column("what it shows", no_wrap=True, overflow="ellipsis")
    for row in rows:  # one line each
        table.add_row(*row)
    _console().print(table)
    return 0


def cmd_readme_table(args) -> int:
    print(readme_table())
    return 0


def show_outcome(console, outcome) -> None:
    from instrument import procs
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    v = outcome.verdict
    text = Text()
    text.append(v.observed + "\n", style="bold")
    text.append(f"The article expects {v.expects}\n")
    text.append(("✔ " if v.agrees else "✘ ") + v.label,
                style="bold green" if v.agrees else "bold red")
    console.print(Panel(text, title=f"{outcome.experiment.id} ({outcome.experiment.step}, "
                                    f"{', '.join(outcome.experiment.claims)})",
                        subtitle=f"{outcome.seconds:.1f} s"))
    if outcome.status != "running":
        console.print(f"{outcome.experiment.service}: container {outcome.status} "
                      f"(exit code {outcome.exit_code}); its process table is gone.")
        return
    rows, more = procs.excerpt(outcome.table)
    table = Table(title=f"processes in {outcome.experiment.service} (ps inside the container)")
    for col, just in (("PID", "right"), ("PPID", "right"), ("STAT", "left"), ("COMMAND", "left")):
        table.add_column(col, justify=just)
    for p in rows:
        style = "red" if p.zombie else ("bold" if p.pid == outcome.server_pid else "")
        table.add_row(str(p.pid), str(p.ppid), p.state, escape(p.args[:80]), style=style)
    if more:
        table.add_row("", "", "", f"... {more} more", style="dim")
    console.print(table)
    zombies = len(procs.zombies(outcome.table))
    console.print(f"server PID {outcome.server_pid}: {outcome.fds} open descriptors "
                  f"(nofile {outcome.nofile}); {zombies} "
                  f"{'zombie' if zombies == 1 else 'zombies'} in the container")


def cmd_run(args) -> int:
    if args.experiment not in BY_ID:
        return _bad("experiment", args.experiment, BY_ID)
    from lab.runner import run_experiment

    exp = BY_ID[args.experiment]
    engine = _engine(args)
    console = _console()
    _started(console, engine.ensure([exp.service]))
    console.print(f"[bold]{exp.id}[/]: {exp.title} on {exp.service} ({exp.load_text})")
    with _progress(console) as progress:
        outcome = run_experiment(engine.service(exp.service), exp, RichUi(progress))
    show_outcome(console, outcome)
    if args.json:
        print(json.dumps(outcome.as_dict()))
    return 0 if outcome.verdict.agrees else 1


def cmd_watch(args) -> int:
    names = servers.names()
    if args.service not in names:
        return _bad("service", args.service, names)
    from lab.watch import watch

    engine = _engine(args)
    _started(_console(), engine.ensure([args.service]))
    return watch(engine.service(args.service), _console(), args.seconds, args.interval)


def _started(console, names: list[str]) -> None:
    if names:
        console.print(f"started {', '.join(names)} (stopped or crashed before)")


def _ids(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cmd_report(args) -> int:
    only = _ids(args.only) or [e.id for e in EXPERIMENTS]
    unknown = [i for i in only if i not in BY_ID]
    if unknown:
        return _bad("experiment", unknown[0], BY_ID)
    try:
        points = [int(p) for p in _ids(args.points)] or None
    except ValueError:
        print(f"lab: --points wants whole numbers separated by commas, got {args.points!r}",
              file=sys.stderr)
        return 2
    if points and not all(1 <= p <= 300 for p in points):
        print("lab: --points must be between 1 and 300", file=sys.stderr)
        return 2
    from rich.markup import escape

    from lab import report
    from lab.runner import run_chart, run_experiment

    experiments = [e for e in EXPERIMENTS if e.id in only]
    charts = [(c, [s for s in c.series if s.experiment in only]) for c in CHARTS
              if c.kind != "bench"]
    charts = [(c, s) for c, s in charts if s]
    engine = _engine(args)
    console = _console()
    _started(console, engine.ensure([e.service for e in experiments]
                                    + [s.service for _, ss in charts for s in ss]))
    t0 = time.monotonic()
    results = {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "command": "lab report" + (f" --only {','.join(only)}" if args.only else "")
               + (f" --points {args.points}" if args.points else ""),
               "machine": engine.machine(), "experiments": [], "charts": {}}
    outcomes = []
    steps = len(experiments) + len(charts)
    with _progress(console) as progress:
        for i, exp in enumerate(experiments, 1):
            ui = RichUi(progress, f"[{i}/{steps} {exp.id}] ")
            outcome = run_experiment(engine.service(exp.service), exp, ui)
            progress.remove_task(ui.task)
            outcomes.append(outcome)
            progress.console.print(("[green]✔[/] " if outcome.verdict.agrees else "[red]✘[/] ")
                                   + escape(f"{exp.id}: {outcome.verdict.observed}"))
        known = {(o.experiment.service, o.observation["clients"]): o.observation
                 for o in outcomes if o.experiment.load["kind"] == "burst"
                 and "clients" in o.observation and not o.observation.get("error")}
        for j, (chart, series) in enumerate(charts, len(experiments) + 1):
            ui = RichUi(progress, f"[{j}/{steps} chart {chart.id}] ")
            pts = points or list(chart.points)
            if chart.kind == "answer_sweep":
                pts = [p for p in pts if p <= 5] or [1, 2]
            if chart.kind == "fd_sweep":
                pts = [p for p in pts if p <= 240] or [1, 16]
            data = run_chart(engine, chart, series, pts, ui, known)
            results["charts"][chart.id] = data
            progress.remove_task(ui.task)
            failed = {label: d["error"] for label, d in data.items()
                      if isinstance(d, dict) and "error" in d}
            progress.console.print(
                ("[red]✘[/] " if failed else "[green]✔[/] ")
                + escape(f"chart {chart.id}: {len(series) - len(failed)} of {len(series)} "
                         f"series measured, points {pts}"))
            for label, error in failed.items():
                progress.console.print(escape(f"    {label}: could not measure: {error}"))
    results["experiments"] = [o.as_dict() for o in outcomes]
    results["seconds"] = round(time.monotonic() - t0)
    out = Path(args.out)
    bench = [Path(args.bench)] if args.bench else [out / "bench.json"]
    written = report.write(out, results, bench)
    _summary(console, outcomes)
    console.print(f"wrote {out / 'index.html'}" + (
        f" and {', '.join(p.name for p in written.values())}" if written else ""))
    if not results.get("bench", {}).get("results"):
        console.print(report.BENCH_HOWTO)
    measured = not any(isinstance(d, dict) and "error" in d
                       for data in results["charts"].values() for d in data.values())
    return 0 if measured and all(o.verdict.agrees for o in outcomes) else 1


def _summary(console, outcomes) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="lab report")
    for col in ("experiment", "step", "verdict", "observed"):
        table.add_column(col)
    for o in outcomes:
        table.add_row(o.experiment.id, o.experiment.step,
                      "[green]agrees[/]" if o.verdict.agrees else "[red]does NOT agree[/]",
                      escape(o.verdict.observed))
    console.print(table)


# ---------------------------------------------------------------- arguments

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lab", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", help="the compose project (default: this container's own)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="the experiments").set_defaults(func=cmd_list)
    r = sub.add_parser("run", help="restart a service, run one experiment, print the verdict")
    r.add_argument("experiment", metavar="EXPERIMENT")
    r.add_argument("--json", action="store_true", help="also print the outcome as JSON")
    r.set_defaults(func=cmd_run)
    w = sub.add_parser("watch", help="a live view of one service's processes (Ctrl-C stops)")
    w.add_argument("service", metavar="SERVICE")
    w.add_argument("--seconds", type=float, help="stop by itself after this many seconds")
    w.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    w.set_defaults(func=cmd_watch)
    rep = sub.add_parser("report", help="run every experiment, write index.html with charts")
    rep.add_argument("--only", metavar="ID,ID", help="only these experiments (and their charts)")
    rep.add_argument("--points", metavar="N,N", help="client counts for the charts' x axes "
                                                     "(default: each chart's own)")
    rep.add_argument("--out", default=str(REPORTS), metavar="DIR",
                     help=f"where to write index.html and the PNGs (default: {REPORTS})")
    rep.add_argument("--bench", metavar="FILE", help="the benchmark's figures to chart "
                                                     "(default: bench.json in the --out DIR)")
    rep.set_defaults(func=cmd_report)
    sub.add_parser("readme-table", help="the markdown table README embeds").set_defaults(
        func=cmd_readme_table)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from instrument.engine import EngineError

    try:
        return args.func(args)
    except EngineError as error:
        print(f"lab: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("\nlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
