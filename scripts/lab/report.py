"""report: reports/index.html, its charts (matplotlib, Agg) and results.json.

The charts are PNGs written beside index.html (zombies.png, fds.png, ...)
and embedded in it as data: URIs, so the page also works on its own.
The benchmark's numbers come from bench.json (scripts/bench writes it); when
it is missing the page says how to make it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from lab.experiments import CHARTS, EXPERIMENTS, Chart

BENCH_HOWTO = ("The benchmark has not been run: run `docker compose run --rm tests bench` "
               "(scripts/bench; it writes reports/bench.json), then `docker compose run --rm "
               "lab report` again.")


# ---------------------------------------------------------------- the benchmark file

def parse_bench(data) -> list[tuple[str, float]]:
    """(label, requests per second) from what scripts/bench writes: a list of
    {target, server, app, rps, p50_ms, p99_ms, errors}."""
    if not isinstance(data, list):
        return []
    found = []
    for item in data:
        if isinstance(item, dict) and "target" in item and isinstance(item.get("rps"), int | float):
            extra = [str(item[k]) for k in ("server", "app") if item.get(k)]
            if item.get("load") and not item.get("comparison"):  # bench --peers: both loads
                extra.append(str(item["load"]))
            label = f"{item['target']} ({', '.join(extra)})" if extra else str(item["target"])
            if item.get("comparison"):  # one service can be in several comparisons
                label = f"{item['comparison']}: {label}"
            found.append((label, float(item["rps"])))
    return found


def load_bench(*paths: Path) -> tuple[list[tuple[str, float]], str, str]:
    """(results, the file it came from, a note for the page)."""
    for path in paths:
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                return [], str(path), f"{path.name} is not readable JSON ({error})."
            rows = parse_bench(data)
            if not rows:
                return [], str(path), (f"{path.name} holds no results this page understands "
                                       "(expected scripts/bench's list of {target, rps, ...}).")
            return rows, str(path), ""
    return [], "", BENCH_HOWTO


# ---------------------------------------------------------------- the charts

def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=110)
    ax.grid(True, alpha=0.3)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _short(crash: str | None) -> str:
    crash = crash or "died"
    for word, short in (("Errno 24", "EMFILE"), ("Errno 11", "EAGAIN"), ("Errno 4", "EINTR")):
        if word in crash:
            return short
    return crash.split(":")[0][:20]


def chart_zombies(chart: Chart, data: dict) -> bytes:
    """One panel per server, the same axes: bars of zombies left for each
    client count; a server that died during the load gets a cross and the
    error's name instead of a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(label, rows) for label, rows in data.items() if isinstance(rows, list)]
    cols = 3 if len(series) > 4 else max(1, len(series))
    nrows = math.ceil(len(series) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.9 * nrows + 0.6), dpi=110,
                             sharey=True, squeeze=False)
    top = max([r.get("zombies") or 0 for _, rows in series for r in rows] + [max(chart.points)])
    services = {s.label: s.service for s in chart.series}
    for k, (label, rows) in enumerate(series):
        ax = axes[k // cols][k % cols]
        xs = list(range(len(rows)))
        color = f"C{k}"
        for x, r in zip(xs, rows, strict=True):
            if r.get("error"):
                ax.text(x, top * 0.04, "?", ha="center", fontsize=9)
            elif not r.get("survived"):
                ax.plot([x], [top * 0.04], "X", color="#b00020", markersize=10)
                ax.text(x, top * 0.1, f"died\n{_short(r.get('crash'))}", ha="center",
                        va="bottom", fontsize=7, color="#b00020")
            else:
                z = r.get("zombies") or 0
                ax.bar([x], [z], color=color, width=0.6)
                ax.text(x, z + top * 0.02, str(z), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(r["clients"]) for r in rows])
        ax.set_ylim(0, top * 1.18)
        ax.set_title(f"{label}\n({services.get(label, '')})", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel(chart.ylabel, fontsize=8)
        if k // cols == nrows - 1:
            ax.set_xlabel("concurrent clients", fontsize=8)
    for k in range(len(series), nrows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(chart.title)
    return _png(plt, fig)


def chart_fds(chart: Chart, data: dict) -> bytes:
    plt, fig, ax = _figure()
    top = 0
    for i, (label, d) in enumerate(data.items()):
        if not isinstance(d, dict) or "rows" not in d:
            continue
        rows = [r for r in d["rows"] if r.get("fds") is not None]
        ax.plot([r["connections"] for r in rows], [r["fds"] for r in rows], "o-",
                color=f"C{i}", label=label)
        nofile = d.get("nofile")
        most = max((r["fds"] for r in rows), default=0)
        top = max(top, most)
        if nofile and nofile.isdigit() and int(nofile) < 2 * max(most, 64):
            top = max(top, int(nofile))
            ax.axhline(int(nofile), color=f"C{i}", linestyle="--", alpha=0.7)
            ax.annotate(f"{label.split()[0]}: ulimit -n {nofile} (EMFILE beyond)",
                        (0, int(nofile)), textcoords="offset points", xytext=(4, -12),
                        fontsize=8, color=f"C{i}")
    ax.set_ylim(0, top * 1.12 + 1)
    ax.set_title(chart.title)
    ax.set_xlabel(chart.xlabel)
    ax.set_ylabel(chart.ylabel)
    ax.legend(fontsize=8, loc="center right")
    return _png(plt, fig)


def chart_answer(chart: Chart, data: dict) -> bytes:
    plt, fig, ax = _figure()
    for i, (label, rows) in enumerate(data.items()):
        if not isinstance(rows, list):
            continue
        rows = [r for r in rows if r.get("last") is not None]
        ax.plot([r["clients"] for r in rows], [r["last"] for r in rows], "o-",
                color=f"C{i}", label=label)
    ax.set_xticks(list(chart.points))
    ax.set_title(chart.title)
    ax.set_xlabel(chart.xlabel)
    ax.set_ylabel(chart.ylabel)
    ax.legend(fontsize=8, loc="upper left")
    return _png(plt, fig)


def chart_bench(chart: Chart, rows: list[tuple[str, float]]) -> bytes:
    plt, fig, ax = _figure()
    fig.set_size_inches(8, max(4.6, 0.45 * len(rows) + 1.2))
    names = [n for n, _ in rows]
    # ours blue, the others (gunicorn, the peers) orange
    colors = ["C0" if ("webserver" in n or "(part" in n) else "C1" for n in names]
    # bars by position: a service measured in two comparisons keeps two bars
    ax.barh(range(len(rows)), [r for _, r in rows], color=colors)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    for y, (_, rate) in enumerate(rows):
        ax.annotate(f"{rate:,.0f}", (rate, y), textcoords="offset points", xytext=(3, -3),
                    fontsize=8)
    ax.invert_yaxis()
    fig.suptitle(chart.title)  # over the whole figure: the long labels take the left
    ax.set_xlabel(chart.ylabel)
    ax.grid(True, axis="x", alpha=0.3)
    return _png(plt, fig)


def chart_rate(chart: Chart, data: dict) -> bytes:
    """Part 4's sweeps: answers per second against the chart's x."""
    x = "slow" if chart.kind == "slow_sweep" else "per_connection"
    plt, fig, ax = _figure()
    for i, (label, rows) in enumerate(data.items()):
        if not isinstance(rows, list):
            continue
        ax.plot([r[x] for r in rows], [r["rate"] for r in rows], "o-", color=f"C{i}",
                label=label)
    if chart.kind == "keepalive_sweep":
        ax.set_xscale("log")
    ax.set_xticks(list(chart.points))
    ax.set_xticklabels([str(p) for p in chart.points])
    ax.set_ylim(bottom=0)
    ax.set_title(chart.title)
    ax.set_xlabel(chart.xlabel)
    ax.set_ylabel(chart.ylabel)
    ax.legend(fontsize=8, loc="best")
    return _png(plt, fig)


DRAW = {"zombie_sweep": chart_zombies, "fd_sweep": chart_fds, "answer_sweep": chart_answer,
        "slow_sweep": chart_rate, "keepalive_sweep": chart_rate}


# ---------------------------------------------------------------- the page

CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { padding: .2rem .6rem;
        border: 1px solid #ddd; vertical-align: top; text-align: left; }
.agrees { color: #176f2c; font-weight: bold; } .disagrees { color: #b00020; font-weight: bold; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .2rem 1rem 1rem; margin: 1rem 0; }
.card.bad { border-color: #b00020; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; font-size: 13px; }
img { max-width: 100%; } .note { color: #555; font-size: 14px; } code { background: #f3f3f3; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _verdict_html(agrees: bool) -> str:
    return ('<span class="agrees">agrees with the article</span>' if agrees
            else '<span class="disagrees">does NOT agree with the article</span>')


def _process_table(rows: list, more: int = 0) -> str:
    """The excerpt of the process table (instrument.procs.excerpt) the outcome kept."""
    if not rows:
        return ""
    lines = [f"{'PID':>6} {'PPID':>6} {'STAT':<5} COMMAND"]
    for pid, ppid, state, args in rows:
        lines.append(f"{pid:>6} {ppid:>6} {state:<5} {args}")
    if more:
        lines.append(f"... {more} more")
    return "<pre>" + _e("\n".join(lines)) + "</pre>"


def _n(n, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _chart_table(chart: Chart, data: dict) -> str:
    """The numbers behind a chart, under it."""
    out = ['<table><tr><th>series</th><th>service</th><th>numbers</th></tr>']
    services = {s.label: s.service for s in chart.series}
    for label, d in data.items():
        if isinstance(d, dict) and "error" in d:
            cell = f"could not measure: {_e(d['error'])}"
        elif chart.kind == "zombie_sweep":
            cell = "; ".join(
                f"{_n(r['clients'], 'client')}: " + (
                    f"could not measure ({_e(r['error'])})" if r.get("error") else
                    _n(r["zombies"], "zombie")
                    + (f" ({r['connected']} connected)" if r.get("connected") not in
                       (None, r["clients"]) else "")
                    + ("" if r.get("survived") else
                                                 f", died ({_e(r.get('crash') or '?')})")
                    + (f" ({r['reaped_by_next']} reaped by one more request)"
                       if r.get("reaped_by_next") is not None else ""))
                for r in d)
        elif chart.kind == "fd_sweep":
            cell = "; ".join(f"{r['connections']} connections: {r['fds']} fds"
                             + (f" (died: {_e(r['crash'])})" if r.get("crash") else "")
                             for r in d["rows"])
            if d.get("nofile"):
                cell += f"; nofile {d['nofile']}"
        elif chart.kind in ("slow_sweep", "keepalive_sweep"):
            if chart.kind == "slow_sweep":
                cell = "; ".join(f"{_n(r['slow'], 'slow client')}: {r['rate']:g} answers/s"
                                 for r in d)
            else:
                cell = "; ".join(f"{r['per_connection']} per connection: {r['rate']:g} "
                                 "answers/s" for r in d)
        else:
            cell = "; ".join(f"{_n(r['clients'], 'client')}: last answer after "
                             + (f"{r['last']:.2f} s" if r.get("last") is not None else "never")
                             for r in d)
        out.append(f"<tr><td>{_e(label)}</td><td>{_e(services.get(label, ''))}</td>"
                   f"<td>{cell}</td></tr>")
    return "".join(out) + "</table>"


ARTICLE_PARTS = 3  # the article has parts 1-3; the project's part 4 goes beyond it


def title() -> str:
    """The page's heading: the parts whose steps the experiments run (from
    experiments.py, so that it stays true when a part gains experiments)."""
    parts = sorted({int(e.step[0]) for e in EXPERIMENTS if e.step[:1].isdigit()})
    names = " and ".join(str(p) for p in parts)
    beyond = [str(p) for p in parts if p > ARTICLE_PARTS]
    note = f" (part {' and '.join(beyond)} beyond the article)" if beyond else ""
    return f"Let's Build A Web Server, part{'s' if len(parts) > 1 else ''} {names}{note}: the lab report"


def _img(png: bytes, name: str, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return (f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}" '
            f'data-file="{_e(name)}">')


def write(out_dir: Path, results: dict, bench_paths: list[Path]) -> dict:
    """Draw the charts, write index.html, the PNGs and results.json.
    Returns {chart id: PNG path} for what was drawn."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    charts_html = []
    for chart in CHARTS:
        if chart.kind == "bench":
            rows, source, note = load_bench(*bench_paths)
            results["bench"] = {"source": source, "results": rows, "note": note}
            section = [f"<h3>{_e(chart.title)}</h3>"]
            if rows:
                png = chart_bench(chart, rows)
                (out_dir / f"{chart.id}.png").write_bytes(png)
                written[chart.id] = out_dir / f"{chart.id}.png"
                section.append(_img(png, f"{chart.id}.png", chart.title))
                section.append(f'<p class="note">From {_e(source)}.</p>')
            else:
                section.append(f'<p class="note">{_e(note)}</p>')
            charts_html.append("".join(section))
            continue
        data = results.get("charts", {}).get(chart.id)
        if not data:
            continue
        measured = {k: v for k, v in data.items() if not (isinstance(v, dict) and "error" in v)}
        picture = ('<p class="disagrees">The chart could not be drawn: no series was measured '
                   '(the errors are below).</p>')
        if measured:
            png = DRAW[chart.kind](chart, measured)
            (out_dir / f"{chart.id}.png").write_bytes(png)
            written[chart.id] = out_dir / f"{chart.id}.png"
            picture = _img(png, f"{chart.id}.png", chart.title)
        charts_html.append(
            f"<h3>{_e(chart.title)}</h3>{picture}"
            f'<p class="note">{_e(chart.caption)}</p>{_chart_table(chart, data)}')

    outcomes = results.get("experiments", [])
    agree = sum(o["agrees"] for o in outcomes)
    summary = ['<table><tr><th>experiment</th><th>step</th><th>claims</th><th>service</th>'
               '<th>verdict</th></tr>']
    cards = []
    order = {e.id: i for i, e in enumerate(EXPERIMENTS)}
    for o in sorted(outcomes, key=lambda o: order.get(o["id"], 99)):
        summary.append(f'<tr><td><a href="#{_e(o["id"])}">{_e(o["id"])}</a></td>'
                       f'<td>{_e(o["step"])}</td><td>{_e(", ".join(o["claims"]))}</td>'
                       f'<td>{_e(o["service"])}</td><td>{_verdict_html(o["agrees"])}</td></tr>')
        exp = next((e for e in EXPERIMENTS if e.id == o["id"]), None)
        state = f"container {o['status']}" + (
            f" (exit code {o['exit_code']})" if o["status"] == "exited" else "")
        fds = (f"; the server (PID {o['server_pid']}) holds {o['fds']} open descriptors"
               f" (nofile {o['nofile']})" if o.get("fds") is not None else "")
        cards.append(
            f'<div class="card{"" if o["agrees"] else " bad"}" id="{_e(o["id"])}">'
            f'<h3>{_e(o["id"])}: {_e(o["title"])} ({_e(o["step"])}, '
            f'{_e(", ".join(o["claims"]))})</h3>'
            f'<p><b>Service</b> {_e(o["service"])}. <b>Load</b> {_e(o["load"])}. '
            f'<b>Measured</b> {_e(exp.measure if exp else "")}.</p>'
            f'<p><b>The article expects</b> {_e(o["expects"])}</p>'
            f'<p><b>Observed</b> {_e(o["observed"])}</p>'
            f'<p><b>Verdict</b> {_verdict_html(o["agrees"])} '
            f'<span class="note">({o["seconds"]} s; {_e(state)}{_e(fds)})</span></p>'
            + (f'<p class="note">{_e(exp.note)}</p>' if exp and exp.note else "")
            + _process_table(o.get("processes", []), o.get("processes_more", 0))
            + "</div>")
    summary.append("</table>")

    machine = results.get("machine", {})
    machine_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                           for k, v in machine.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Let's Build A Web Server: the lab report</title>
<style>{CSS}</style></head><body>
<h1>{_e(title())}</h1>
<p>Generated {_e(results.get("generated", ""))} by <code>{_e(results.get("command", "lab report"))}</code>
in {_e(results.get("seconds", "?"))} s. <b>{agree} of {len(outcomes)}</b> experiments agree
with the article.</p>
{"".join(summary)}
<h2>Charts</h2>
{"".join(charts_html)}
<h2>Experiments</h2>
{"".join(cards)}
<h2>The machine it ran on</h2>
<table>{machine_rows}</table>
<p class="note">Regenerate: <code>docker compose run --rm lab report</code> (it prints
the command that creates a service it lacks). Run one experiment:
<code>docker compose run --rm lab run ID</code>; watch a service:
<code>docker compose run --rm lab watch SERVICE</code>.</p>
</body></html>
"""
    (out_dir / "index.html").write_text(page)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    return written


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
