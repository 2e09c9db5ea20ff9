"""procs: process tables, /proc/net/tcp, limits and descriptor lists, parsed.

Inside a container the instrument reads processes with `ps` (through the
engine's exec, see engine.Service.look). `ps` reads /proc, so it lists
zombies; the engine's own `top` does not (a zombie has left the cgroup).
Inside every server container PID 1 is docker-init (`init: true` in
compose.yaml) and the server is the python (or gunicorn) process whose
parent is PID 1 (`is_server`, the one definition); processes started by
`docker exec` (ps itself, a twin's shell) have parent 0.

On the host (the tests that start real servers as subprocesses) the same
`Proc` rows come from /proc directly: `local_table()`.

Everything but local_table is a pure function of text: the unit tests run
it on a host without docker.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

PS_COMMAND = ["ps", "-e", "-o", "pid=,ppid=,stat=,comm=,args="]

# One exec that reads everything the instrument looks at, so a busy engine
# (each exec can take seconds) is asked once per look: the process table,
# the TCP table, and for the server (its PID given as $1, or found by the awk
# line, which is is_server below written in awk) its descriptors and limits,
# and the container's pids limit.
PROBE = r"""
t=$(ps -e -o pid=,ppid=,stat=,comm=,args=)
echo "$t"
p=${1:-$(echo "$t" | awk '$2 == 1 && $3 !~ /^Z/ && $4 ~ /python|gunicorn/ {print $1; exit}')}
echo "@@pid $p"
echo "@@tcp"
cat /proc/net/tcp
echo "@@fd"
[ -n "$p" ] && ls /proc/$p/fd
echo "@@limits"
[ -n "$p" ] && cat /proc/$p/limits
echo "@@pids"
cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max 2>/dev/null
echo "@@end"
"""


def probe_complete(text: str) -> bool:
    """PROBE's output came whole: it ends with its marker (the engine can
    lose an exec's output, or the end of it)."""
    return text.rstrip().endswith("@@end")

STATE_NAMES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk wait",
    "I": "idle",
    "T": "stopped",
    "t": "traced",
    "X": "dead",
    "Z": "zombie",
}


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str  # ps STAT: first letter the state, then flags (s, +, l, <, N)
    args: str

    @property
    def zombie(self) -> bool:
        return self.state.startswith("Z")

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state[:1], self.state[:1] or "?")


def parse_ps(text: str) -> list[Proc]:
    """Parse `ps -e -o pid=,ppid=,stat=,comm=,args=` output.

    Lines that are not a process row (a header, a blank line, a warning) are
    skipped. A zombie has no command line left: ps prints `<defunct>` (or
    nothing) as its args, and the lab shows it as `[python] <defunct>`, the
    way `ps aux` does."""
    procs = []
    for line in text.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        pid, ppid, state, comm = parts[:4]
        args = parts[4].strip() if len(parts) > 4 else ""
        if args in ("", "<defunct>"):
            args = f"[{comm}]" + (" <defunct>" if state.startswith("Z") else "")
        procs.append(Proc(int(pid), int(ppid), state, args))
    return procs


@dataclass
class Look:
    """What one PROBE saw in a container."""

    table: list[Proc]
    server_pid: int | None
    tcp: str
    fds: int | None
    limits: str
    pids_max: str | None

    def queue(self, port: int) -> int | None:
        return listen_queue(self.tcp, port)

    @property
    def nofile(self) -> str | None:
        found = limit_of(self.limits, "Max open files")
        return found[0] if found else None

    @property
    def server(self) -> Proc | None:
        return next((p for p in self.table if p.pid == self.server_pid), None)


def parse_probe(text: str) -> Look:
    """Split PROBE's output into its sections."""
    sections = {"ps": []}
    name, server_pid = "ps", None
    for line in text.splitlines():
        if line.startswith("@@pid ") or line == "@@pid":
            value = line[6:].strip()
            server_pid = int(value) if value.isdigit() else None
            name = "pid"
            sections[name] = []
        elif line.strip() == "@@end":
            break
        elif line.startswith("@@") and line[2:].strip() in ("tcp", "fd", "limits", "pids"):
            name = line[2:].strip()
            sections[name] = []
        else:
            sections.setdefault(name, []).append(line)
    fd_lines = sections.get("fd")
    pids = "\n".join(sections.get("pids", [])).strip()
    return Look(
        table=[p for p in parse_ps("\n".join(sections["ps"])) if not _is_probe(p)],
        server_pid=server_pid,
        tcp="\n".join(sections.get("tcp", [])),
        fds=fd_count("\n".join(fd_lines)) if server_pid and fd_lines else None,
        limits="\n".join(sections.get("limits", [])),
        pids_max=pids or None,
    )


def _is_probe(p: Proc) -> bool:
    """The lab's own processes (the probe's sh, its subshell, ps) and the engine's
    exec machinery (runc init) are not the server's."""
    return " ".join(PS_COMMAND[1:]) in p.args or (p.ppid == 0 and p.args.startswith("runc"))


def is_server(proc: Proc) -> bool:
    """The server: a live python or gunicorn process whose parent is PID 1."""
    return (proc.ppid == 1 and not proc.zombie
            and any(word in proc.args for word in ("python", "gunicorn")))


def server_of(procs: list[Proc]) -> Proc | None:
    servers = [p for p in procs if is_server(p)]
    return min(servers, key=lambda p: p.pid) if servers else None


def children(procs: list[Proc], pid: int) -> list[Proc]:
    return [p for p in procs if p.ppid == pid]


def zombies(procs: list[Proc], parent: int | None = None) -> list[Proc]:
    """Zombie processes; of one parent if `parent` is given."""
    return [p for p in procs if p.zombie and (parent is None or p.ppid == parent)]


def state_counts(procs: list[Proc]) -> dict[str, int]:
    """How many processes per state name, e.g. {'sleeping': 3, 'zombie': 89}."""
    return dict(Counter(p.state_name for p in procs))


def excerpt(procs: list[Proc], limit: int = 12) -> tuple[list[Proc], int]:
    """The rows worth showing: PID 1, the server, then its children (zombies
    first, so a table of 128 rows still shows what matters). Returns the
    rows and how many were left out. `ps` itself is never shown."""
    shown = [p for p in procs if not _is_probe(p)]
    server = server_of(shown)
    head = [p for p in shown if p.pid == 1]
    rest = [p for p in shown if p.pid != 1]
    if server:
        head.append(server)
        rest = [p for p in rest if p.pid != server.pid]
        rest.sort(key=lambda p: (p.ppid != server.pid, not p.zombie, p.pid))
    rows = head + rest
    return rows[:limit], max(0, len(rows) - limit)


def fd_count(ls_output: str) -> int:
    """Entries of `ls /proc/PID/fd` (one name a line)."""
    return sum(1 for line in ls_output.splitlines() if line.strip().isdigit())


def limit_of(limits_text: str, name: str) -> tuple[str, str] | None:
    """(soft, hard) of one limit in /proc/PID/limits, e.g. 'Max open files'."""
    for line in limits_text.splitlines():
        if line.startswith(name):
            fields = line[len(name):].split()
            if len(fields) >= 2:
                return fields[0], fields[1]
    return None


@dataclass(frozen=True)
class TcpRow:
    """One socket of /proc/net/tcp. state: 0A LISTEN, 01 ESTABLISHED, ...;
    rx_queue: for a LISTEN socket, the connections waiting in its accept queue."""

    local_port: int
    remote_port: int
    state: str
    rx_queue: int
    inode: str

    @property
    def listening(self) -> bool:
        return self.state == "0A"


def tcp_rows(proc_net_tcp: str) -> list[TcpRow]:
    """Parse /proc/net/tcp (the header and malformed lines are skipped)."""
    rows = []
    for line in proc_net_tcp.splitlines():
        f = line.split()
        if len(f) < 10 or not f[0].rstrip(":").isdigit():
            continue
        try:
            rows.append(TcpRow(int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16), f[3],
                               int(f[4].split(":")[1], 16), f[9]))
        except (IndexError, ValueError):
            continue
    return rows


def listen_queue(proc_net_tcp: str, port: int) -> int | None:
    """Connections waiting in the accept queue of the LISTEN socket on `port`;
    None if nothing listens there."""
    for row in tcp_rows(proc_net_tcp):
        if row.local_port == port and row.listening:
            return row.rx_queue
    return None


def crash_line(logs: str) -> str:
    """The exception that ended a Python program: the last line of its last
    traceback, e.g. 'OSError: [Errno 24] Too many open files'; '' if none."""
    _, found, tail = logs.rpartition("Traceback (most recent call last):")
    if not found:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head and not head.startswith(("File ", "^", "~")) and (
                head.endswith(("Error", "Exception", "Interrupt")) or "." in head
                and head.rsplit(".", 1)[1].endswith("Error")):
            return line
    return lines[-1] if lines else ""


def last_count(logs: str, label: str) -> int | None:
    """The last number a server logged after `label`, e.g. webserver3d's
    'Connections held open by the parent: 252'; None if it never did."""
    found = re.findall(re.escape(label) + r"\s*(\d+)", logs)
    return int(found[-1]) if found else None


# ---------------------------------------------------------------- this machine's /proc

def parse_stat(pid: int, stat: str, cmdline: bytes = b"") -> Proc:
    """A Proc from /proc/PID/stat (and cmdline): the name in parentheses may
    hold spaces and parentheses, so the fields are read after the last ')'."""
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    args = cmdline.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    state = fields[0]
    if not args:
        args = f"[{name}]" + (" <defunct>" if state == "Z" else "")
    return Proc(pid, int(fields[1]), state, args)


def local_table() -> list[Proc]:
    """Every process of this machine (or container), from /proc."""
    import os

    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:  # it exited meanwhile
            continue
        table.append(parse_stat(int(entry), stat, cmdline))
    return table


def local_state(pid: int) -> str | None:
    """The state letter of process `pid` here (S, R, Z, ...); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(pid, f.read()).state
    except OSError:
        return None


def local_fds(pid: int) -> int:
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


# run inside a server's container by engine.Service.socket_owners
SOCKET_OWNERS = r"""
import json, os, sys
server_port, ports = int(sys.argv[1]), {int(p) for p in sys.argv[2:]}
inodes = {}
for line in open("/proc/net/tcp").readlines()[1:]:
    f = line.split()
    if int(f[1].split(":")[1], 16) == server_port and int(f[2].split(":")[1], 16) in ports:
        inodes[f[9]] = int(f[2].split(":")[1], 16)
owners = {p: [] for p in ports}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        ino = target[8:-1] if target.startswith("socket:[") else None
        if ino in inodes and int(pid) not in owners[inodes[ino]]:
            owners[inodes[ino]].append(int(pid))
print(json.dumps(owners))
"""


# run inside a server's container by engine.Twin._kill_leftover: the PIDs that hold
# the LISTEN socket of a port and were started by a twin's shell for it
TWIN_LISTENERS = r"""
import os, sys
port = int(sys.argv[1])
inodes = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(table).readlines()[1:]
    except OSError:
        continue
    for line in lines:
        f = line.split()
        if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f[9])
mark = f"lsbaws-twin-{port}.pid".encode()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
        parent = open(f"/proc/{ppid}/cmdline", "rb").read()
    except OSError:
        continue
    held = set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(target[8:-1])
    if held & inodes and mark in parent:
        print(pid)
"""
