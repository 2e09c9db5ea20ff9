"""watch: a live view of one service's process tree, states and descriptors.

`lab watch part3-eintr` redraws once a second until Ctrl-C (or --seconds):
PID 1 (docker-init), the server under it, the server's children with their
states (zombies in red), the server's open descriptors against its nofile
limit, the container's processes against its pids limit, and the listen
backlog. Run curl or client3 in another terminal and watch it change.
It only reads.
"""

from __future__ import annotations

import time

from instrument import procs
from instrument.engine import Service
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text
from rich.tree import Tree

SHOW_CHILDREN = 16

STYLE = {"Z": "bold red", "R": "green", "S": "cyan", "D": "yellow", "T": "magenta"}


def _label(p: procs.Proc) -> Text:
    text = Text(f"{p.pid:>6} ", style="bold")
    text.append(f"{p.state:<4} ", style=STYLE.get(p.state[:1], ""))
    text.append(f"{p.state_name:<9} ", style=STYLE.get(p.state[:1], "dim"))
    text.append(p.args[:90])
    return text


def snapshot(svc: Service) -> Group | Panel:
    state = svc.state()
    if state["Status"] != "running":
        return Panel(Text(f"{svc.name} is {state['Status']} (exit code {state.get('ExitCode')})"
                          f"; start it with `{svc.engine.up_command(svc.name)}`",
                          style="bold red"), title=svc.name)
    look = svc.look()
    if look is None:
        return Panel(Text(f"cannot read {svc.name}'s processes (exec failed: out of "
                          "processes?)", style="yellow"), title=svc.name)
    table, server = look.table, look.server
    head = Text()
    if server:
        fds, nofile = look.fds, look.nofile
        kids = procs.children(table, server.pid)
        zombies = procs.zombies(table, server.pid)
        head.append(f"server PID {server.pid}   ")
        head.append(f"children {len(kids)}   ")
        head.append(f"zombies {len(zombies)}   ", style="bold red" if zombies else "green")
        head.append(f"open fds {fds} of {nofile}   ")
    else:
        head.append("no server process (python/gunicorn under PID 1)   ", style="yellow")
    head.append(f"processes {len(table)} of {look.pids_max}   ")
    queue = look.queue(8888)
    head.append(f"backlog {queue if queue is not None else 'not listening'}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(procs.state_counts(table).items()))
    head.append(f"\nstates: {counts}", style="dim")

    tree = Tree(Text(f"{svc.name}  (container {svc.container.short_id})", style="bold"))
    by_pid = {p.pid: p for p in table}

    def add(node, pid, depth=0):
        kids = procs.children(table, pid)
        kids.sort(key=lambda p: (not p.zombie, p.pid))
        for k in kids[:SHOW_CHILDREN]:
            add(node.add(_label(k)), k.pid, depth + 1)
        if len(kids) > SHOW_CHILDREN:
            rest = kids[SHOW_CHILDREN:]
            summary = ", ".join(f"{n} {s}" for s, n in procs.state_counts(rest).items())
            node.add(Text(f"... {len(rest)} more ({summary})", style="dim"))

    if 1 in by_pid:
        add(tree.add(_label(by_pid[1])), 1)
    others = [p for p in table if p.ppid == 0 and p.pid != 1]  # started by docker exec (twins)
    for p in others:
        add(tree.add(_label(p)), p.pid)
    return Group(Panel(head, title=f"lab watch {svc.name}", subtitle=time.strftime("%H:%M:%S")),
                 tree)


def watch(svc: Service, console, seconds: float | None = None, interval: float = 1.0) -> int:
    end = time.monotonic() + seconds if seconds else None
    try:
        with Live(snapshot(svc), console=console, refresh_per_second=4,
                  transient=False) as live:
            while end is None or time.monotonic() < end:
                time.sleep(interval if end is None else max(0.0, min(interval,
                                                                      end - time.monotonic())))
                live.update(snapshot(svc))
    except KeyboardInterrupt:
        pass
    if not console.is_terminal:
        console.line()
    return 0
