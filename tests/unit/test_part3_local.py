"""The article's servers (part 1 and part 3) run here as plain subprocesses.

No containers: each test starts one server on 127.0.0.1 with PORT=0 (the
kernel picks a free port; the server prints it), short sleeps, and a deadline
on every wait. The server and its children are killed when the test ends.
Linux only: zombies are read from /proc.
"""

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _services() -> Path:
    here = Path(__file__).resolve()
    for candidate in (
        os.environ.get("LSBAWS_SERVICES"),
        here.parents[2] / "services",
        "/srv/lsbaws",
    ):
        if candidate and (Path(candidate) / "part3" / "client3.py").is_file():
            return Path(candidate)
    raise RuntimeError("services/ not found: set LSBAWS_SERVICES")


SERVICES = _services()
CLIENT3 = SERVICES / "part3" / "client3.py"
GET = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\n\r\nHello, World!\n"


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    return predicate()


def process_table():
    """{pid: (ppid, state)} for every process, read from /proc/<pid>/stat."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # it exited meanwhile
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
            table[int(entry)] = (int(fields[1]), fields[0])
    return table


class Server:
    """One server file running as a subprocess; output goes to files."""

    def __init__(self, script, tmp_path, limits=None, uid=None, python=sys.executable, **env):
        self.name = Path(script).name
        self.out_path = tmp_path / f"{self.name}.out"
        self.err_path = tmp_path / f"{self.name}.err"
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": "0", **env}

        def preexec():
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell may have ignored it
            for limit, value in (limits or {}).items():
                resource.setrlimit(limit, value)
            if uid is not None:  # after setrlimit: root may raise a hard limit, uid may not
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)

        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [python, str(SERVICES / script)],
                cwd="/",
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                preexec_fn=preexec,
            )
        self.pid = self.proc.pid
        self.port = None

    def start(self, timeout=10):
        found = wait_for(
            lambda: (
                self.proc.poll() is not None
                or re.search(r"Serving HTTP on port (\d+)", self.stdout())
            ),
            timeout,
        )
        assert isinstance(found, re.Match), f"{self.name} did not start: {self.stderr()}"
        self.port = int(found.group(1))
        return self

    def stdout(self):
        return self.out_path.read_bytes().decode(errors="replace")

    def stderr(self):
        return self.err_path.read_bytes().decode(errors="replace")

    def children(self):
        return {pid: state for pid, (ppid, state) in process_table().items() if ppid == self.pid}

    def zombies(self):
        return [pid for pid, state in self.children().items() if state == "Z"]

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def server(tmp_path):
    """server("part3/webserver3c.py", SLEEP="1") starts one; it dies with the test."""
    started = []

    def start(script, limits=None, uid=None, python=sys.executable, **env):
        started.append(Server(script, tmp_path, limits, uid, python, **env))
        return started[-1].start()

    yield start
    for one in started:
        one.stop()


def connect(port, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_eof(sock, timeout=5.0):
    """Everything until the server closes; fails the test if it does not in time."""
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def client3(port, *args, timeout=60):
    command = [sys.executable, str(CLIENT3), "--host", "127.0.0.1", "--port", str(port)]
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    return done


# ---------------------------------------------------------------- part 1


@pytest.mark.parametrize(
    "request_bytes",
    [GET, b"garbage\r\n\r\n", b"\x00\xffNOT HTTP AT ALL", b"DELETE /nothing HTTP/9.9\r\n\r\n"],
)
def test_c1_c2_webserver1_answers_anything_with_hello_world(server, request_bytes):
    web = server("part1/webserver1.py")
    with connect(web.port) as sock:
        sock.sendall(request_bytes)
        assert read_until_eof(sock) == RESPONSE
    assert wait_for(lambda: request_bytes.decode(errors="replace") in web.stdout(), 5)


# ---------------------------------------------------------------- part 3: iterative


def test_c10_webserver3a_serves_one_client_at_a_time(server):
    web = server("part3/webserver3a.py")
    with connect(web.port) as first, connect(web.port) as second:
        second.sendall(GET)  # the server is still stuck on `first`, which sent nothing
        second.settimeout(0.7)
        with pytest.raises(TimeoutError):
            second.recv(4096)
        first.sendall(GET)
        assert read_until_eof(first) == RESPONSE
        assert read_until_eof(second) == RESPONSE  # only now


def test_c11_c12_c13_webserver3b_queues_the_second_client(server):
    web = server("part3/webserver3b.py", SLEEP="1.5")
    with connect(web.port) as first:
        first.sendall(GET)
        first.settimeout(5)
        assert first.recv(4096) == RESPONSE  # at once; EOF only after the sleep
        answered_first = time.monotonic()

        started = time.monotonic()
        with connect(web.port) as second:
            connect_took = time.monotonic() - started
            local_port = second.getsockname()[1]
            second.sendall(GET)
            assert read_until_eof(second, timeout=10) == RESPONSE
            answered_second = time.monotonic()
    # C12: the kernel completed the handshake while the server slept
    assert connect_took < 0.5
    # C11: nothing for the second client until the first one's sleep was over
    assert answered_second - answered_first >= 1.3
    # C13: the client got an ephemeral port from the kernel; the server has its own
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= local_port <= high and local_port != web.port


# ---------------------------------------------------------------- part 3: fork


def test_c14_c15_webserver3c_serves_many_clients_at_once(server):
    web = server("part3/webserver3c.py", SLEEP="3")
    socks = [connect(web.port) for _ in range(10)]
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(GET)
        for sock in socks:
            sock.settimeout(5)
            assert sock.recv(4096) == RESPONSE
        assert time.monotonic() - started < 2.5  # nobody waited for anyone's sleep
        children = wait_for(lambda: len(web.children()) == 10 and web.children(), 5)
        assert children, "10 children expected while they sleep"
        lines = re.findall(r"Child PID: (\d+)\. Parent PID (\d+)", web.stdout())
        assert len(lines) == 10
        assert {int(pid) for pid, _ in lines} == set(children)
        assert {int(ppid) for _, ppid in lines} == {web.pid}  # C15
    finally:
        for sock in socks:
            sock.close()


def test_c16_c18_c19_webserver3d_no_eof_and_a_zombie(server):
    web = server("part3/webserver3d.py")
    with connect(web.port) as sock:
        sock.sendall(GET)
        sock.settimeout(5)
        assert sock.recv(4096) == RESPONSE  # curl prints the body...
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):  # ...and then waits for an EOF that never comes
            sock.recv(4096)
        zombies = wait_for(web.zombies, 5)
        assert len(zombies) == 1  # C18: the child that served us is <defunct>
        os.kill(zombies[0], signal.SIGKILL)  # C19: kill -9 does not remove a zombie
        time.sleep(0.3)
        assert web.children().get(zombies[0]) == "Z"
    assert "Connections held open by the parent: 1" in web.stdout()


def test_c17_webserver3d_dies_of_emfile(server):
    # The article's `ulimit -n 256` scaled down to 64 so the test is quick.
    web = server("part3/webserver3d.py", limits={resource.RLIMIT_NOFILE: (64, 64)})
    client3(web.port, "--max-clients", "80", "--hold", "1", "--json")
    assert web.wait(10) == 1
    assert web.stderr().rstrip().endswith("OSError: [Errno 24] Too many open files")
    assert "Traceback (most recent call last)" in web.stderr()


UNUSED_UID = 54321  # a uid of its own: RLIMIT_NPROC counts every process of a uid


def python_for(uid):
    """A Python 3.11+ that `uid` may run, or None (then the test is skipped)."""
    if os.geteuid() != 0:
        return None
    for python in (sys.executable, "/usr/local/bin/python3", "/usr/bin/python3"):
        try:
            subprocess.run(
                [python, "-c", "import sys; assert sys.version_info >= (3, 11)"],
                preexec_fn=lambda: (os.setgroups([]), os.setgid(uid), os.setuid(uid)),
                cwd="/",
                check=True,
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        return python
    return None


def test_c20_webserver3d_dies_when_fork_fails_with_eagain(server):
    # The article's `ulimit -u 400` scaled down to 20. RLIMIT_NPROC never
    # applies to root, so the server runs as an unused uid; zombies count.
    python = python_for(UNUSED_UID)
    if python is None:
        pytest.skip("needs root and a Python 3.11+ that another uid may run")
    busy = [pid for pid in os.listdir("/proc") if pid.isdigit() and _uid(pid) == UNUSED_UID]
    assert busy == [], f"uid {UNUSED_UID} is in use"
    limits = {resource.RLIMIT_NPROC: (20, 20)}
    web = server("part3/webserver3d.py", limits=limits, uid=UNUSED_UID, python=python)
    client3(web.port, "--max-clients", "40", "--hold", "1", "--json")
    assert web.wait(10) == 1
    assert (
        web.stderr()
        .rstrip()
        .endswith("BlockingIOError: [Errno 11] Resource temporarily unavailable")
    )
    assert "pid = os.fork()" in web.stderr()  # the failing line


def _uid(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


# ---------------------------------------------------------------- part 3: SIGCHLD


def test_c21_webserver3e_dies_of_eintr_after_one_request(server):
    web = server("part3/webserver3e.py", SLEEP="0.3")
    with connect(web.port) as sock:
        sock.sendall(GET)
        assert read_until_eof(sock) == RESPONSE
    assert web.wait(5) == 1
    assert web.stderr().rstrip().endswith("InterruptedError: [Errno 4] Interrupted system call")
    assert re.search(r"Child \d+ terminated with status 0", web.stdout())  # reaped first


def test_c21_webserver3e_with_python_accept_survives_pep_475(server):
    web = server("part3/webserver3e.py", SLEEP="0.3", ACCEPT="python")
    for _ in range(3):
        with connect(web.port) as sock:
            sock.sendall(GET)
            assert read_until_eof(sock) == RESPONSE
    assert wait_for(lambda: web.stdout().count("terminated with status 0") == 3, 5)
    assert web.proc.poll() is None, web.stderr()
    assert web.zombies() == []


@pytest.mark.parametrize("accept", ["libc", "python"])
def test_c22_webserver3f_one_request_at_a_time_no_zombie_no_crash(server, accept):
    web = server("part3/webserver3f.py", ACCEPT=accept)
    for _ in range(3):
        with connect(web.port) as sock:
            sock.sendall(GET)
            assert read_until_eof(sock) == RESPONSE
        assert wait_for(lambda: web.children() == {}, 5), web.children()
    assert web.proc.poll() is None, web.stderr()


def test_c23_webserver3f_burst_leaves_zombies(server):
    web = server("part3/webserver3f.py")
    result = json.loads(
        client3(web.port, "--max-clients", "64", "--burst", "--hold", "0.5", "--json").stdout
    )
    assert result["answered"] == 64
    time.sleep(0.5)
    zombies = web.zombies()
    assert zombies, "a burst of 64 exits should outrun one wait() per handler call"
    assert web.proc.poll() is None, web.stderr()


@pytest.mark.parametrize("accept", ["libc", "python"])
def test_c24_webserver3g_burst_leaves_no_zombie(server, accept):
    web = server("part3/webserver3g.py", ACCEPT=accept)
    result = json.loads(
        client3(web.port, "--max-clients", "64", "--burst", "--hold", "0.5", "--json").stdout
    )
    assert result["answered"] == 64
    assert wait_for(lambda: web.children() == {}, 5), web.children()
    assert web.stdout().count("terminated with status 0") == 64
    assert web.proc.poll() is None, web.stderr()


# ---------------------------------------------------------------- settings and Ctrl-C

STEPS = ["part1/webserver1.py"] + [f"part3/webserver3{step}.py" for step in "abcdefg"]
SLEEPERS = [f"part3/webserver3{step}.py" for step in "bcefg"]
BAD = (
    [(step, "PORT", "http") for step in STEPS]
    + [(step, "REQUEST_QUEUE_SIZE", "-5") for step in STEPS[:2]]
    + [("part3/webserver3b.py", "SLEEP", value) for value in ("abc", "-1", "1e3", "nan", "")]
    + [(step, "SLEEP", "abc") for step in SLEEPERS[1:]]
    + [(f"part3/webserver3{step}.py", "ACCEPT", "rust") for step in "efg"]
)
MEANING = {
    "PORT": "a port number",
    "REQUEST_QUEUE_SIZE": "a whole number",
    "SLEEP": "a number of seconds",
    "ACCEPT": "libc or python",
}


@pytest.mark.parametrize(("step", "name", "value"), BAD)
def test_a_bad_setting_is_one_line_and_exit_2(step, name, value):
    done = subprocess.run(
        [sys.executable, str(SERVICES / step)],
        env={**os.environ, "PORT": "0", name: value},
        capture_output=True,
        text=True,
        timeout=10,
    )
    program = Path(step).name
    assert done.returncode == 2
    assert done.stderr == f"{program}: {name} must be {MEANING[name]}, got {value!r}\n"
    assert done.stdout == ""


@pytest.mark.parametrize("step", STEPS)
def test_ctrl_c_stops_a_server_without_a_traceback(server, step):
    web = server(step)
    web.proc.send_signal(signal.SIGINT)
    assert web.wait(5) == 130
    assert web.stderr().strip() == f"{Path(step).name}: stopped"


def test_the_response_has_no_content_length_and_crlf_lines(server):
    web = server("part3/webserver3a.py")
    with connect(web.port) as sock:
        sock.sendall(GET)
        head, _, body = read_until_eof(sock).partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK"  # the end of the body is the end of the connection
    assert body == b"Hello, World!\n"
