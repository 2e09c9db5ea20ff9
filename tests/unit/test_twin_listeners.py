"""procs.TWIN_LISTENERS, which finds a twin an interrupted run left on its
port: the listener whose parent is a twin's shell for that port (its
command line names the pid file), never a plain listener. Local processes,
no engine."""

import os
import signal
import socket
import subprocess
import sys

import pytest
from instrument import procs, waiting
from instrument.local import holds_a_listen_socket


def test_twin_listeners_finds_a_twin_by_its_shell_not_by_the_pid_file(tmp_path):
    """A listener started by a twin's shell for the port is found (even when
    the pid file names another process); a plain listener is not."""
    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def ours(twin, plain, port, other):
        if twin.poll() is not None or plain.poll() is not None:
            return "exited"   # its port was taken before it bound (another worker's server)
        try:
            pid = child(tmp_path, port)
        except (OSError, ValueError):
            return False   # its shell has not written the pid file yet
        return holds_a_listen_socket(pid, port) and holds_a_listen_socket(plain.pid, other) \
            and "listening"

    serve = f"{sys.executable} -m http.server --bind 127.0.0.1"
    for _ in range(3):   # a busy run once gave a port away between free_port() and bind
        port, other = free_port(), free_port()
        twin = subprocess.Popen(["sh", "-c", f"{serve} {port} >/dev/null 2>&1 & "
                                 f"echo $! > {tmp_path}/lsbaws-twin-{port}.pid; wait $!"])
        plain = subprocess.Popen([*serve.split(), str(other)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        started = (twin, plain, port, other)
        if waiting.wait_for(lambda s=started: ours(*s), 10, 0.1,
                            "both servers to listen") == "listening":
            break
        stop(tmp_path, twin, plain, port)
    else:
        pytest.fail("three times a server's port was taken before it bound")
    try:
        def listeners(p):
            out = subprocess.run([sys.executable, "-c", procs.TWIN_LISTENERS, str(p)],
                                 capture_output=True, text=True, check=True).stdout
            return [int(pid) for pid in out.split()]

        assert listeners(port) == [child(tmp_path, port)]
        assert listeners(other) == []
    finally:
        stop(tmp_path, twin, plain, port)


def stop(tmp_path, twin, plain, port: int) -> None:
    plain.terminate()
    try:
        os.kill(child(tmp_path, port), signal.SIGTERM)  # the shell then ends too
    except (OSError, ValueError):
        pass   # it had exited (or never wrote its pid)
    twin.wait(10)
    plain.wait(10)


def child(tmp_path, port: int) -> int:
    return int((tmp_path / f"lsbaws-twin-{port}.pid").read_text())
