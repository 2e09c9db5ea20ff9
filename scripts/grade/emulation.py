"""Is the server running under user-mode emulation? A submission built for
another CPU (an arm64 image here, an amd64 one on an Apple silicon Mac) runs
through an emulator the kernel starts for it (binfmt_misc): qemu-user, or
Docker Desktop's Rosetta. Everything it does is several times slower, so a
stage that a time limit decides may fail for the emulator's sake.

The grader finds the server as always (the process that holds the LISTEN
socket, never by its name); only then does it read that process's
/proc/PID/exe and the first word of /proc/PID/cmdline (the observer's
sample carries both) to tell how it runs:

    /proc/7/exe      /usr/bin/qemu-aarch64-static
    /proc/7/cmdline  /usr/libexec/qemu-binfmt/aarch64-binfmt-P /usr/bin/python3 python3 ...

A stage that a time limit may decide and that does not pass then says so in
its evidence (the check does not tell which limit decided, so the words say
"where"); the verdict itself stays what the check saw (docs/grading.md).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# qemu's names for a CPU -> the name an image's Architecture uses
ARCH = {"aarch64": "arm64", "x86_64": "amd64", "i386": "386", "arm": "arm",
        "armeb": "armeb", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
        "riscv64": "riscv64", "mips64el": "mips64le", "mipsel": "mipsle", "loongarch64": "loong64"}

_QEMU = re.compile(r"qemu-([a-z0-9_]+?)(?:-static)?")      # /usr/bin/qemu-aarch64-static
_BINFMT = re.compile(r"([a-z0-9_]+)-binfmt-P")              # Debian's /usr/libexec/qemu-binfmt/
_ROSETTA = re.compile(r"rosetta")                           # /run/rosetta/rosetta


@dataclass(frozen=True)
class Emulation:
    emulator: str        # "qemu" or "rosetta"
    guest: str           # the CPU the server was built for (an image Architecture name)
    host: str            # this machine's CPU (as uname says it)
    path: str            # what /proc/PID/exe (or argv[0]) named

    def note(self) -> str:
        """One line for the report's head."""
        return (f"the server ran under emulation ({self.emulator}, {self.guest} on {self.host}: "
                f"{self.path}): built for another CPU, it runs several times slower than "
                "natively; a stage a time limit decides may fail for the emulator's sake")

    def statement(self, limits: str) -> str:
        """What a time-decided stage that did not pass adds to its evidence."""
        return (f"ran under emulation ({self.emulator}, {self.guest} on {self.host}), several "
                f"times slower than natively: where a time limit decided this, it is a native "
                f"machine's ({limits}); built for {self.host}, the server shows its own speed")


def _name(path: str) -> str:
    return os.path.basename(path.strip().rstrip("\0").split("\0")[0].rstrip("/"))


def detect(exe: str, argv0: str = "", host: str | None = None) -> Emulation | None:
    """The emulation that /proc/PID/exe (`exe`) and the first word of
    /proc/PID/cmdline (`argv0`) show, or None for a process running natively."""
    host = host or os.uname().machine
    for path in (exe, argv0):
        name = _name(path or "")
        if not name:
            continue
        if m := _BINFMT.fullmatch(name) or _QEMU.fullmatch(name):
            cpu = m.group(1)
            return Emulation("qemu", ARCH.get(cpu, cpu), host, path.strip())
        if _ROSETTA.fullmatch(name):
            return Emulation("rosetta", "amd64", host, path.strip())
    return None


def of_look(look, host: str | None = None) -> Emulation | None:
    """The emulation of the server a copy's sample (instrument.copies.Look) shows."""
    if look is None or not look.server_pid:
        return None
    exe, argv0 = (getattr(look, "exe", None) or {}).get(look.server_pid, ("", ""))
    return detect(exe, argv0, host)
