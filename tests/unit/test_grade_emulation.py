"""grade.emulation: a server under user-mode emulation is told from what its
/proc/PID/exe and argv[0] say (as the observer samples them), and a
time-decided stage that does not pass says so while its verdict stays."""

from __future__ import annotations

import json

import pytest
from grade import emulation, runner
from grade import stages as S
from grade.checks import Result
from grade.target import Target
from instrument.copies import parse_sample

# what this machine showed for webserver3g on lsbaws/arm64-base:dev (qemu-user-static)
QEMU_EXE = "/usr/bin/qemu-aarch64-static"
QEMU_ARGV0 = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"


@pytest.mark.parametrize("exe, argv0, emulator, guest", [
    (QEMU_EXE, QEMU_ARGV0, "qemu", "arm64"),
    ("", QEMU_ARGV0, "qemu", "arm64"),                   # exe unreadable: argv[0] tells
    (QEMU_EXE, "/usr/bin/python3", "qemu", "arm64"),     # binfmt without the P flag
    ("/usr/bin/qemu-riscv64", "", "qemu", "riscv64"),
    ("/usr/bin/qemu-x86_64-static", "", "qemu", "amd64"),
    ("/usr/libexec/qemu-binfmt/arm-binfmt-P", "", "qemu", "arm"),
    ("/run/rosetta/rosetta", "/run/rosetta/rosetta", "rosetta", "amd64"),  # Docker Desktop
])
def test_an_emulator_is_told_with_the_cpu_it_emulates(exe, argv0, emulator, guest):
    found = emulation.detect(exe, argv0, host="x86_64")
    assert found is not None
    assert (found.emulator, found.guest, found.host) == (emulator, guest, "x86_64")


@pytest.mark.parametrize("exe, argv0", [
    ("/usr/bin/python3.11", "python3"),
    ("/usr/local/bin/python3.12", "/usr/local/bin/python3.12"),
    ("/usr/sbin/busybox", "busybox"),
    ("/srv/qemu-notes/server", "./server"),    # a path that mentions qemu is not qemu
    ("/usr/bin/qemu-system-x86_64", ""),        # not user-mode: never an exec interpreter
    ("", ""),
])
def test_a_native_server_is_not_emulated(exe, argv0):
    assert emulation.detect(exe, argv0, host="x86_64") is None


def sample(exe: dict) -> str:
    stat = {"1": "1 (docker-init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0",
            "7": "7 (python3) S 1 7 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0"}
    data = {"t": 1.0, "listen": True, "stat": stat, "holders": [7], "fds": {"7": 4},
            "last_pid": 7, "me": 99}
    if exe is not None:
        data["exe"] = exe
    return json.dumps(data)


def test_the_observers_sample_carries_the_servers_exe_and_argv0():
    look = parse_sample(sample({"7": [QEMU_EXE, QEMU_ARGV0]}))
    assert look.server_pid == 7 and look.exe == {7: (QEMU_EXE, QEMU_ARGV0)}
    found = emulation.of_look(look, host="x86_64")
    assert found and found.guest == "arm64" and found.path == QEMU_EXE


def test_an_old_sample_without_exe_reads_as_native():
    look = parse_sample(sample(None))
    assert look.exe == {} and emulation.of_look(look) is None
    assert emulation.of_look(None) is None


def test_the_statement_says_emulation_and_the_native_limits():
    found = emulation.detect(QEMU_EXE, QEMU_ARGV0, host="x86_64")
    text = found.statement(S.BY_ID["burst"].threshold)
    assert text.startswith("ran under emulation (qemu, arm64 on x86_64)")
    assert "a native machine's" in text and "within 15 s" in text
    assert "emulation (qemu, arm64 on x86_64" in found.note()


class FakeCtx:
    """Just what runner.run touches: a target, copies that start, an emulation."""

    def __init__(self, emulated):
        self.target = Target("t", "img")
        self.emulation = emulation.detect(QEMU_EXE, QEMU_ARGV0, "x86_64") if emulated else None

    def copy(self, role):
        return object()

    def release(self, stage):
        pass

    def release_all(self):
        pass

    def at_pids_limit(self, role):
        return ""

    def lost_view(self, role):
        return ""


def run_with(monkeypatch, emulated, verdicts):
    from grade import checks

    for stage_id, verdict in verdicts.items():
        table = checks.SHARED if stage_id in checks.SHARED else checks.OWN
        monkeypatch.setitem(table, stage_id, lambda ctx, *a, v=verdict: Result(v, f"saw {v}"))
    ctx = FakeCtx(emulated)
    out = runner.run(ctx, list(verdicts), runner.Progress("t", 0, enabled=False))
    return ctx, out


VERDICTS = {"hello": "pass", "http": "fail", "burst": "fail", "fd-leak": "skip",
            "concurrent": "pass", "framing": "fail"}


def test_an_emulated_servers_timed_failures_say_so_and_keep_their_verdict(monkeypatch):
    ctx, out = run_with(monkeypatch, True, VERDICTS)
    assert {i: r.verdict for i, r in out.items()} == VERDICTS
    said = {i for i, r in out.items() if "ran under emulation (qemu, arm64 on x86_64)" in r.evidence}
    # timed and not passed: burst, fd-leak; http and framing are not decided by a clock
    assert said == {"burst", "fd-leak"}
    assert any("ran under emulation" in n for n in ctx.target.notes)


def test_a_native_server_gets_no_emulation_statement(monkeypatch):
    ctx, out = run_with(monkeypatch, False, VERDICTS)
    assert {i: r.verdict for i, r in out.items()} == VERDICTS
    assert not any("emulation" in r.evidence for r in out.values())
    assert ctx.target.notes == []


def test_the_untimed_stages_are_the_content_checks():
    assert {s.id for s in S.STAGES if not s.timed} == \
        {"http", "wsgi-apps", "environ", "body", "parity", "framing"}
