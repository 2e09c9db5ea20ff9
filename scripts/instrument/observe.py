"""observe: what a copy's observer runs, and what its output means.

The observer (instrument.copies) enters a copy's PID namespace (or, the
older way, is a container sharing it); it runs OBSERVE (stdlib Python) there
by exec and prints JSON lines.
`parse_sample` turns one line into a Look: the copy's process table, the
server (the topmost holder of the LISTEN socket), descriptor counts, the
children's page faults, the namespace's last pid, how the server runs.
Nothing here talks to the engine: the unit tests read Looks from text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from instrument import procs

# Runs in the observer (stdlib only). Prints one JSON line per sample: every
# process of the shared PID namespace as its raw /proc/PID/stat line, which
# of them hold the LISTEN socket of the port, the descriptor count of each
# process that holds it (and of the pids asked for), the namespace's last
# allocated pid, and for each holder its /proc/PID/exe and argv[0] (how it
# runs: an emulator's name there shows a binary built for another CPU; the
# holders are still found by the socket, never by a name), and the hostname
# it ran under (a look that entered the wrong namespaces is told). argv: port,
# samples, interval, extra pids. Negative samples: up to that many, printing
# only the first that shows the port held (or the last): a wait in one exec.
# The LISTEN sockets come from the kernel's sock_diag (netlink) when the look
# runs in the copy's network namespace: reading /proc/PID/net/tcp walks the
# whole machine's connection table, about 4 ms of CPU a read here (two files
# a sample, 20 samples a second while a copy starts); the dump of listening
# sockets walks those only. /proc/1/net/tcp{,6} otherwise (an observer that
# shares only the PID namespace), or with LSBAWS_OBSERVE_PROCFS=1.
OBSERVE = r"""
import json, os, socket, struct, sys, time
port, samples, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
until, samples = samples < 0, abs(samples)
extra = {int(p) for p in sys.argv[4:]}
me = os.getpid()

def same_net():
    try:
        return os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net")
    except OSError:
        return False

diag = same_net() and not os.environ.get("LSBAWS_OBSERVE_PROCFS")

def diag_inodes():
    # SOCK_DIAG_BY_FAMILY dump of TCP sockets in LISTEN (1 << 10), v4 then v6;
    # each answer is an inet_diag_msg: sport at 4 (big-endian), inode at 68
    found = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as nl:
            body = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 1 << 10) + bytes(48)
            nl.send(struct.pack("=IHHII", 16 + len(body), 20, 0x301, 1, 0) + body)
            done = False
            while not done:
                data, at = nl.recv(65536), 0
                if not data:
                    break
                while at + 16 <= len(data):
                    size, kind = struct.unpack_from("=IH", data, at)
                    if kind == 2:
                        raise OSError("sock_diag refused the dump")
                    done = done or kind == 3
                    if kind == 20 and size >= 88 and struct.unpack_from("!H", data, at + 20)[0] == port:
                        found.add(str(struct.unpack_from("=I", data, at + 84)[0]))
                    at += max(16, (size + 3) & ~3)
    return found

def listen_inodes():
    global diag
    if diag:
        try:
            return diag_inodes()
        except OSError:
            diag = False
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/1/net/{name}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                found.add(f[9])
    return found

for i in range(samples):
    if i:
        time.sleep(interval)
    inodes = listen_inodes()
    stat, holders, fds, exe = {}, [], {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            stat[pid] = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        held = False
        if inodes:
            for fd in names:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held = True
                    break
        if held:
            holders.append(pid)
            try:
                path = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                path = ""
            try:
                argv0 = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode(
                    errors="replace")
            except OSError:
                argv0 = ""
            exe[pid] = [path, argv0]
        if held or pid in extra:
            fds[pid] = len(names)
    found = bool(inodes and holders)
    if until and not found and i < samples - 1:
        continue
    try:
        last = int(open("/proc/sys/kernel/ns_last_pid").read())
    except (OSError, ValueError):
        last = None
    print(json.dumps({"t": time.time(), "listen": bool(inodes), "stat": stat,
                      "holders": holders, "fds": fds, "last_pid": last, "me": me,
                      "exe": exe, "node": os.uname().nodename,
                      "via": "sock_diag" if diag else "procfs"}), flush=True)
    if until and found:
        break
"""


@dataclass
class Look:
    """One sample of a copy, as the observer saw it."""

    t: float
    listening: bool
    table: list[procs.Proc]          # the copy's processes (the observer's left out)
    server_pid: int | None           # the topmost process holding the LISTEN socket
    fds: dict[int, int]              # descriptor counts (the server's among them)
    cminflt: dict[int, int]          # page faults of reaped children, per process
    last_pid: int | None             # the namespace's last pid (each exec takes several)
    # the LISTEN holders' /proc/PID/exe and argv[0] (grade.emulation reads them)
    exe: dict[int, tuple[str, str]] = field(default_factory=dict)
    node: str = ""                   # the hostname where it ran (the copy's, entered)

    @property
    def server(self) -> procs.Proc | None:
        return next((p for p in self.table if p.pid == self.server_pid), None)

    @property
    def server_fds(self) -> int | None:
        return self.fds.get(self.server_pid) if self.server_pid else None

    def children(self, pid: int | None = None) -> list[procs.Proc]:
        pid = pid or self.server_pid
        return procs.children(self.table, pid) if pid else []

    def zombies(self, pid: int | None = None) -> list[procs.Proc]:
        return [p for p in self.children(pid) if p.zombie]


def whole(out: bytes) -> bool:
    """An exec's samples came whole: each ends its line with "}". The engine
    can cut an exec's output short (procs.probe_complete guards the probe); a
    copy at its pids limit makes a sample of 512 processes' stat lines, and
    a cut sample parses as no look at all."""
    return out.rstrip().endswith(b"}")


def parse_sample(line: str) -> Look:
    data = json.loads(line)
    me = data.get("me")
    table, cminflt = [], {}
    for pid, text in data["stat"].items():
        try:
            proc = procs.parse_stat(int(pid), text)
        except (ValueError, IndexError):
            continue
        if proc.pid == me or (proc.ppid == 0 and proc.pid != 1):
            continue  # the observer's own processes (their parent is outside)
        table.append(proc)
        fields = text[text.rindex(")") + 2:].split()
        cminflt[proc.pid] = int(fields[8]) if len(fields) > 8 else 0
    holders = set(data["holders"])
    by_pid = {p.pid: p for p in table}

    def ancestors(pid):
        seen = set()
        while pid in by_pid and pid not in seen:
            seen.add(pid)
            pid = by_pid[pid].ppid
            yield pid

    top = [h for h in holders if h in by_pid and not holders & set(ancestors(h))]
    server = min(top) if top else None
    if server is None and 1 in by_pid:
        # not listening (yet, or any more): the init's first live child
        kids = [p for p in table if p.ppid == 1 and not p.zombie]
        server = min(kids, key=lambda p: p.pid).pid if kids else None
    return Look(data["t"], data["listen"], table, server,
                {int(k): v for k, v in data["fds"].items()}, cminflt, data.get("last_pid"),
                {int(k): (v[0], v[1]) for k, v in (data.get("exe") or {}).items()},
                data.get("node", ""))


def observe_argv(samples: int, interval: float, extra_pids=(), port: int = 8888) -> list[str]:
    """The observer's command: OBSERVE on `port` (argv: see OBSERVE)."""
    return ["python3", "-S", "-c", OBSERVE, str(port), str(samples), str(interval),
            *map(str, extra_pids)]


def parsed_line(line: bytes, hostname: str | None) -> Look | None:
    """A sample line as a Look, or None: OBSERVE prints ASCII JSON; a line the
    engine's stream mangled (seen once: a byte 0xb9 in the middle of a
    sample) is dropped, not guessed, and so is a sample from another
    namespace than the copy's (its init's pid reused by the engine)."""
    text = line.decode("utf-8", "replace").strip()
    if not text.startswith("{"):
        return None
    try:
        look = parse_sample(text)
    except (ValueError, KeyError, TypeError):
        return None
    return None if hostname and look.node != hostname else look
