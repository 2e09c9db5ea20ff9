"""The observer's one-exec wait (instrument.observe.OBSERVE), run here on the
host's own /proc: the first sample that shows the port held, or the last;
and a sample the engine cut short, taken again (instrument.copies)."""

import functools
import os
import socket
import time

import pytest


def _observe(port: int, samples: int, env: dict | None = None) -> list[str]:
    import subprocess
    import sys

    from instrument.observe import OBSERVE
    done = subprocess.run([sys.executable, "-S", "-c", OBSERVE, str(port), str(samples), "0.05"],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_observer_waits_for_a_listen_in_one_exec_and_prints_the_first_sample_that_shows_it():
    """wait_listening's one exec: up to N looks 0.05 s apart, printing only
    the one that sees the port held (or, never held, the last)."""
    from instrument.observe import parse_sample
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        t0 = time.monotonic()
        lines = _observe(port, -40)
        assert len(lines) == 1 and time.monotonic() - t0 < 1.5, lines
        look = parse_sample(lines[0])
        assert look.listening and os.getpid() in {p for p, _ in look.exe.items()}
    finally:
        listener.close()
    t0 = time.monotonic()
    lines = _observe(port, -10)   # closed now: ten looks, the last printed
    assert len(lines) == 1 and time.monotonic() - t0 >= 0.45, lines
    assert not parse_sample(lines[0]).listening
    assert len(_observe(port, 3)) == 3   # a positive count still prints every sample


def test_sock_diag_finds_the_same_listen_sockets_as_proc_net_tcp():
    """The kernel's dump of listening sockets (what a look uses in the copy's
    network namespace) and /proc/net/tcp{,6} (the older way) agree: the
    holders of an IPv4 and of an IPv6 listener, and nothing on a port no one
    listens on."""
    import json

    try:
        same = os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net")
    except OSError:
        same = False
    if not same:
        pytest.skip("not in the network namespace of this /proc's pid 1 (sock_diag is not used)")
    listeners = [socket.socket(socket.AF_INET)]
    if socket.has_ipv6:
        listeners.append(socket.socket(socket.AF_INET6))
    try:
        for listener, host in zip(listeners, ("127.0.0.1", "::1"), strict=False):
            try:
                listener.bind((host, 0))
            except OSError:   # no IPv6 on this machine
                continue
            listener.listen()
            port = listener.getsockname()[1]
            diag, procfs = (json.loads(_observe(port, 1, env)[0])
                            for env in ({}, {"LSBAWS_OBSERVE_PROCFS": "1"}))
            assert (diag["via"], procfs["via"]) == ("sock_diag", "procfs")
            assert diag["listen"] and procfs["listen"], host
            assert diag["holders"] == procfs["holders"] and os.getpid() in diag["holders"], host
        closed = listeners[0].getsockname()[1]
        listeners[0].close()
        assert not json.loads(_observe(closed, 1)[0])["listen"]
    finally:
        for listener in listeners:
            listener.close()


def test_a_sample_the_engine_cut_short_is_taken_again():
    """A look whose output the engine cut (a copy at its pids limit makes a
    sample of hundreds of processes) is run again, not read as no look."""
    import types

    from instrument.copies import Copies, Copy
    sample = _observe(1, 1)[0].encode() + b"\n"
    outputs = [(0, sample[: len(sample) // 2]), (0, sample)]
    observer = types.SimpleNamespace(id="observer", exec_run=lambda cmd: outputs.pop(0))
    copies = types.SimpleNamespace(observer=lambda: observer, enter=Copies.enter,
                                   relay=lambda: None, run=functools.partial(Copies.run, None))
    container = types.SimpleNamespace(attrs={"State": {"Pid": 4242},
                                             "Config": {"Hostname": os.uname().nodename}})
    copy = Copy(copies, "lsbaws-copy-x", "image", "basic", container)
    copy.running = lambda: True
    looks = copy.sample(1, 0.0)
    assert len(looks) == 1 and looks[0].table, looks
    assert outputs == [], "the cut sample was not taken again"
