"""The observer's one-exec wait (instrument.observe.OBSERVE), run here on the
host's own /proc: the first sample that shows the port held, or the last."""

import os
import socket
import time


def _observe(port: int, samples: int) -> list[str]:
    import subprocess
    import sys

    from instrument.observe import OBSERVE
    done = subprocess.run([sys.executable, "-S", "-c", OBSERVE, str(port), str(samples), "0.05"],
                          capture_output=True, text=True, timeout=30)
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
