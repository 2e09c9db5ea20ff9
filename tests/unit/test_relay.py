"""instrument.relay: the relay's own loop (SERVE) run here as a process, its
stdout framed as the engine frames a container's stream, the client on the
other end of a socket pair. No engine: what runs inside the observer and
what reads it are the same code as in a run."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from instrument import procs
from instrument.relay import SERVE, Relay, entering
from instrument.waiting import wait_for


@pytest.fixture
def relay():
    """A Relay talking to SERVE through a stand-in for the engine: stdin
    passed on as it comes, stdout and stderr cut into the engine's frames
    (8-byte header: stream, size), in pieces of odd sizes."""
    ours, engines = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-S", "-u", "-c", SERVE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stdin():
        with contextlib.suppress(OSError, ValueError):   # the test is over
            while data := engines.recv(4096):
                proc.stdin.write(data)
                proc.stdin.flush()
            proc.stdin.close()

    def out(pipe, stream):
        with contextlib.suppress(OSError, ValueError):
            while data := os.read(pipe.fileno(), 7):   # frames cut small on purpose
                engines.sendall(struct.pack(">BxxxL", stream, len(data)) + data)
            if stream == 1:
                engines.shutdown(socket.SHUT_WR)   # the container ended: so does its stream

    for target, args in ((stdin, ()), (out, (proc.stdout, 1)), (out, (proc.stderr, 2))):
        threading.Thread(target=target, args=args, daemon=True).start()
    client = Relay(ours)
    try:
        yield client, proc
    finally:
        proc.kill()
        proc.wait()
        client.close()
        engines.close()


def test_a_command_answers_its_exit_code_and_output(relay):
    client, _ = relay
    assert client.run(["sh", "-c", "echo one; echo two >&2; exit 3"], 5) == (3, b"one\ntwo\n")
    assert client.run(["sh", "-c", "head -c 100000 /dev/zero"], 5) == (0, bytes(100000))
    assert client.run(["/no/such/program"], 5)[0] == 127


def in_background(client: Relay, argv: list[str], timeout: float):
    """client.run(argv) in a thread, given a moment to reach the relay:
    (the thread, the list its answer goes into)."""
    answers: list = []
    t = threading.Thread(target=lambda: answers.append(client.run(argv, timeout)))
    t.start()
    time.sleep(0.3)
    return t, answers


def test_a_slow_command_holds_up_no_other(relay):
    client, _ = relay
    t, slow = in_background(client, ["sleep", "2"], 10)
    started = time.monotonic()
    assert client.run(["echo", "quick"], 5) == (0, b"quick\n")
    assert time.monotonic() - started < 1.5
    t.join()
    assert slow == [(0, b"")]


def test_a_command_past_its_timeout_is_killed_with_its_whole_group(relay, tmp_path):
    """nsenter forks into the namespace: a kill of the first process alone
    would leave the second running, as `sh` leaves its `sleep` here."""
    client, _ = relay
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    code, _ = client.run(["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"], 0.5)
    assert code is None and time.monotonic() - started < 5
    grandchild = int(pid_file.read_text())
    wait_for(lambda: procs.local_state(grandchild) in (None, "Z"), 5, 0.05,
             f"the timed-out command's child {grandchild} to be killed")


def test_a_relay_that_ended_answers_none_at_once(relay):
    client, proc = relay
    t, waiting = in_background(client, ["sleep", "20"], 30)
    proc.kill()
    t.join(5)
    assert waiting == [None] and client.gone
    assert client.run(["echo", "x"], 5) is None


def test_entering_runs_as_an_exec_would_or_says_it_cannot():
    config = {"User": "1000:1000", "WorkingDir": "/srv/lsbaws/part3", "Hostname": "c0ffee",
              "Env": ["PATH=/opt/venv/bin:/usr/bin:/bin", "SLEEP=60"]}
    argv = entering(4242, config, ["cat", "/proc/net/tcp"])
    assert argv[:4] == ["nsenter", "--target", "4242", "--all"]
    assert argv[4:8] == ["--setuid", "1000", "--setgid", "1000"]
    at = argv.index("env")
    assert argv[at:at + 4] == ["env", "-i", "-C", "/srv/lsbaws/part3"]
    assert argv[at + 4:] == [*config["Env"], "HOSTNAME=c0ffee", "cat", "/proc/net/tcp"]
    root = entering(7, {"Env": []}, ["id"])
    assert "--setuid" not in root and root[root.index("-C") + 1] == "/"
    assert entering(7, {"User": "lsbaws"}, ["id"]) is None       # a name: the exec way
    assert entering(7, {"User": "1000"}, ["id"]) is None         # no group: the exec way
