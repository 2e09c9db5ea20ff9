"""wsgikit: the raw HTTP client and the server twins of the WSGI server tests.

Used by test_wsgi_differential.py, test_wsgi_bad_input.py,
test_wsgi_validator.py and test_wsgi_robustness.py (issue 4).

- `exchange` sends bytes exactly as given (repeated headers, raw UTF-8,
  broken framing) over a fresh connection, reads until the server closes or
  a deadline passes, and never raises: a reset or a timeout is part of the
  answer. `parse_response` turns what came into status, headers and a body
  (interim 1xx answers skipped, chunked bodies decoded, bytes after a HEAD
  answer kept so a test can see them).
- `ServerTwin` runs a second server inside a service's container, on
  another port, with its output in a file and its exit status and exit time
  recorded by the shell that started it, so a test can send it signals,
  lower its limits (prlimit) and read how it ended.
"""

from __future__ import annotations

import select
import shlex
import socket
import time
from dataclasses import dataclass, field

import pytest
from stackkit import PORT, Service, exec_quiet, listening, wait_for

CRLF = b"\r\n"


# ---------------------------------------------------------------- the wire

@dataclass
class Exchange:
    """What a connection brought back."""

    data: bytes = b""
    eof: bool = False        # the server closed cleanly (FIN)
    reset: bool = False      # the server reset the connection
    timed_out: bool = False  # the deadline passed with the connection open
    refused: bool = False    # nothing listens
    error: str = ""
    elapsed: float = 0.0

    @property
    def closed(self) -> bool:
        return self.eof or self.reset

    def response(self) -> Response:
        return parse_response(self.data)

    def summary(self) -> str:
        """'400 Bad Request', 'close (no answer)', 'reset', 'timeout', ..."""
        if self.data:
            line = self.data.split(CRLF, 1)[0].decode("latin-1", "replace")
            parts = line.split(" ", 1)
            text = parts[1] if len(parts) > 1 else line
            final = self.response().status if self.data.startswith(b"HTTP/1.1 100") else None
            if final:
                text = f"100 then {final}"
            if self.reset:
                text += " + reset"
            elif not self.eof:
                text += " (left open)"
            return text
        if self.refused:
            return "refused"
        if self.reset:
            return "reset, no answer"
        if self.eof:
            return "close, no answer"
        if self.timed_out:
            return "no answer (open)"
        return self.error or "?"


def exchange(host: str, data: bytes | list[bytes], timeout: float = 5.0, port: int = PORT,
             shut_wr: bool = False, pause: float = 0.0) -> Exchange:
    """Send `data` (a list: pieces with `pause` seconds between them), then
    read until the server closes or `timeout` (from the connect) passes."""
    pieces = [data] if isinstance(data, bytes) else list(data)
    result = Exchange()
    start = time.monotonic()
    deadline = start + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError as exc:
        result.refused, result.error = True, str(exc)
        return result
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    chunks = []
    with sock:
        try:
            for i, piece in enumerate(pieces):
                if i and pause:
                    # wait, but stop sending once the server answers or closes,
                    # or the deadline passes
                    wait = min(pause, deadline - time.monotonic())
                    if wait <= 0 or select.select([sock], [], [], wait)[0]:
                        break
                sock.sendall(piece)
            if shut_wr:
                sock.shutdown(socket.SHUT_WR)
        except (ConnectionResetError, BrokenPipeError):
            result.reset = True  # it may still have answered: read what came
        except OSError as exc:
            result.error = f"sending: {type(exc).__name__}: {exc}"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                result.timed_out = True
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                result.timed_out = True
                break
            except ConnectionResetError:
                result.reset = True
                break
            except OSError as exc:
                result.error = f"receiving: {type(exc).__name__}: {exc}"
                break
            if not chunk:
                result.eof = True
                break
            chunks.append(chunk)
    result.data = b"".join(chunks)
    result.elapsed = time.monotonic() - start
    return result


@dataclass
class Response:
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw_body: bytes = b""   # as it came after the head (chunked: still encoded)
    interim: list[int] = field(default_factory=list)  # 1xx statuses before it
    complete: bool = True   # the body was framed and all of it arrived

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    body, rest = [], data
    while True:
        line, sep, rest = rest.partition(CRLF)
        if not sep:
            return b"".join(body), False
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            return b"".join(body), False
        if size == 0:
            return b"".join(body), True
        if len(rest) < size + 2:
            return b"".join(body) + rest[:size], False
        body.append(rest[:size])
        rest = rest[size + 2:]


def parse_response(data: bytes, head_request: bool = False) -> Response:
    """Parse one response (after any 1xx). A HEAD answer's body is whatever
    came after its head: it should be empty."""
    resp = Response()
    rest = data
    while True:
        head, sep, rest = rest.partition(CRLF + CRLF)
        lines = head.split(CRLF)
        status_line = lines[0].decode("latin-1", "replace").split(" ", 2)
        if len(status_line) < 2 or not status_line[1].isdigit():
            resp.complete = False
            resp.body = data
            return resp
        status = int(status_line[1])
        if 100 <= status < 200 and sep:
            resp.interim.append(status)
            continue
        resp.status = status
        resp.reason = status_line[2] if len(status_line) > 2 else ""
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers.append((name.strip(), value.strip()))
        break
    resp.raw_body = rest
    if not sep:
        resp.complete = False
    elif head_request or status in (204, 304):
        resp.body = rest
    elif "chunked" in (resp.header("Transfer-Encoding") or "").lower():
        resp.body, resp.complete = _dechunk(rest)
    elif resp.header("Content-Length") is not None:
        length = int(resp.header("Content-Length"))
        resp.body = rest[:length]
        resp.complete = len(rest) >= length
    else:
        resp.body = rest  # ends with the connection
    return resp


def request(method: str, target: str | bytes, host: str | None, headers=(), body: bytes = b"",
            version: str = "HTTP/1.1", close: bool = True) -> bytes:
    """A request as bytes. `target` may be bytes (raw UTF-8). `headers` are
    sent in order, repeated names included; Content-Length is added for a
    body unless the headers frame it already."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [method.encode() + b" " + target + b" " + version.encode()]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    names = {name.lower() for name, _ in headers}
    for name, value in headers:
        lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
    if body and not {"content-length", "transfer-encoding"} & names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if close and "connection" not in names:
        lines.append(b"Connection: close")
    return CRLF.join(lines) + CRLF + CRLF + body


def chunked(body: bytes, size: int = 8000) -> bytes:
    """`body` in the chunked transfer-coding, in pieces of `size` bytes."""
    out = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
           for i in range(0, len(body), size)]
    return b"".join(out) + b"0\r\n\r\n"


def hello_ok(host: str, port: int = PORT, path: str = "/hello", timeout: float = 10) -> Exchange:
    """GET /hello; the caller asserts on .response().status."""
    return exchange(host, request("GET", path, host), timeout=timeout, port=port)


# ---------------------------------------------------------------- twins

class ServerTwin:
    """A second server process inside `svc`'s container, on `port`.

    The shell that starts it records its pid, its output, and, when it
    ends, its exit status and the container's clock (`date +%s.%N`), so a
    test can tell how fast it stopped after a signal sent at a known time.
    The twin is killed at the end (`with ServerTwin(...) as twin:`).
    """

    def __init__(self, svc: Service, argv: list[str], port: int, workdir: str,
                 env: dict | None = None, tag: str = "twin"):
        self.svc, self.argv, self.port, self.workdir = svc, argv, port, workdir
        self.env = {**(env or {}), "PORT": str(port)}
        base = f"/tmp/wsgidev-{tag}-{port}"
        self.pidfile, self.logfile, self.statusfile = f"{base}.pid", f"{base}.log", f"{base}.status"
        self.pid: int | None = None

    def start(self, timeout: float = 30) -> ServerTwin:
        self._kill_leftover()
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in self.env.items())
        cmd = " ".join(map(shlex.quote, self.argv))
        script = (f"cd {shlex.quote(self.workdir)} && rm -f {self.statusfile} && "
                  f"env {env} {cmd} > {self.logfile} 2>&1 & "
                  f"echo $! > {self.pidfile}; wait $!; "
                  f"echo \"$? $(date +%s.%N)\" > {self.statusfile}.tmp && "
                  f"mv {self.statusfile}.tmp {self.statusfile}")
        self.svc.exec(["sh", "-c", script], detach=True)
        wait_for(lambda: listening(self.svc, self.port), timeout, 0.1,
                 f"{' '.join(self.argv)} to listen on {self.port} in {self.svc.name} "
                 f"(log: {self._log_quiet()[-500:]!r})")
        self.pid = int(wait_for(lambda: self._read_quiet(self.pidfile).strip(), 5, 0.1,
                                "the twin's pid file"))
        return self

    # -- looking at it
    def _read_quiet(self, path: str) -> str:
        code, out = exec_quiet(self.svc, ["cat", path])
        return out if code == 0 else ""

    def _log_quiet(self) -> str:
        return self._read_quiet(self.logfile)

    def log(self) -> str:
        return self._log_quiet()

    def alive(self) -> bool:
        code, out = exec_quiet(self.svc, ["ps", "-o", "stat=", "-p", str(self.pid)])
        return code == 0 and bool(out.strip()) and not out.strip().startswith("Z")

    def exit_status(self) -> tuple[int, float] | None:
        """(status, the container's clock when it ended), once it has ended."""
        text = self._read_quiet(self.statusfile).split()
        return (int(text[0]), float(text[1])) if len(text) == 2 else None

    def signal(self, sig: str = "TERM") -> float:
        """Send a signal; return the container's clock when it was sent."""
        code, out = self.svc.exec(["sh", "-c", f"date +%s.%N; kill -{sig} {self.pid}"])
        assert code == 0, out
        return float(out.split()[0])

    def children(self) -> list:
        return self.svc.children(self.pid)

    def open_fds(self) -> int:
        return self.svc.open_fds(self.pid)

    # -- stopping it
    def stop(self):
        if self.pid is None or not self.svc.running():
            return
        self._kill(self.pid)

    def _kill(self, pid: int):
        exec_quiet(self.svc, ["kill", str(pid)])
        deadline = time.monotonic() + 5
        while exec_quiet(self.svc, ["kill", "-0", str(pid)])[0] == 0:
            if time.monotonic() > deadline:
                exec_quiet(self.svc, ["kill", "-9", str(pid)])
                break
            time.sleep(0.1)
        # gunicorn's workers may outlive a killed arbiter for a moment
        wait_for(lambda: not listening(self.svc, self.port), 15, 0.1,
                 f"port {self.port} in {self.svc.name} to be free")

    def _kill_leftover(self):
        """A twin left by an interrupted run (the servers outlive the tests)."""
        pid = self._read_quiet(self.pidfile).strip()
        if pid.isdigit():
            cmdline = self._read_quiet(f"/proc/{pid}/cmdline")
            if cmdline and self.argv[-1] in cmdline:
                self._kill(int(pid))
        if listening(self.svc, self.port):
            pytest.fail(f"port {self.port} in {self.svc.name} is taken by something else")

    def __enter__(self) -> ServerTwin:
        return self.start()

    def __exit__(self, *exc):
        self.stop()
