"""relay: run short commands from an observer without an exec each.

An exec costs the engine about 0.06 CPU-seconds on two cores (dockerd,
containerd, runc), whatever it runs: the suite made about 920 a run, most of
them looks that read /proc for a few milliseconds. A relay is the main
process of an observer container (in the engine's PID namespace, with the
capabilities to enter another container's namespaces): it reads requests on
its stdin, one JSON line each, runs each command as a child process of its
own, and writes each answer as one JSON line on its stdout. The commands are
the ones an exec would run (`nsenter ...` in front): what a look sees does
not change, only the way there. The copies' observer (instrument.copies) is
one; an Engine starts one for the services' looks (`entering`).

    relay = Relay.observer(client, image, owner)
    code, out = relay.run(["nsenter", "--target", "4242", "--all", "--", "cat",
                           "/proc/net/tcp"], timeout=10)

`run` answers (exit code, output bytes), with None for the code when the
command outlived its timeout (its process group killed), or None when the
relay itself is gone: the caller then takes the exec way.
"""

from __future__ import annotations

import base64
import json
import struct
import threading

# Runs in the observer (stdlib only, python3 -S -u). One thread a request:
# a slow look (a copy starting) never holds up another worker's. A command
# gets a process group of its own, killed whole at its timeout (nsenter forks
# into the namespace: killing nsenter alone would leave its child running).
SERVE = r"""
import base64, json, os, signal, subprocess, sys, threading
lock = threading.Lock()

def answer(req):
    try:
        p = subprocess.Popen(req["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=req["timeout"])
            code = p.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            out, code = p.communicate()[0], None
    except OSError as error:
        out, code = str(error).encode(), 127
    line = json.dumps({"id": req["id"], "code": code, "out": base64.b64encode(out).decode()})
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

for line in sys.stdin:
    threading.Thread(target=answer, args=(json.loads(line),), daemon=True).start()
"""


class Relay:
    """The client side: requests out on the container's stdin, answers read
    by a thread from its stdout (the engine's stream: an 8-byte header a frame)."""

    def __init__(self, sock):
        self._sock = getattr(sock, "_sock", sock)   # docker-py hands a SocketIO on unix sockets
        self._io = sock   # kept: it holds the HTTP response, whose end would close the socket
        self._lock = threading.Lock()
        self._waiting: dict[int, list] = {}
        self._n = 0
        self.gone = False
        threading.Thread(target=self._read, daemon=True, name="relay-reader").start()

    @classmethod
    def observer(cls, client, image: str, owner: str, role: str = "relay",
                 name: str | None = None, mem: str = "256m") -> Relay:
        """An observer container whose main process is a relay: in the
        engine's PID namespace, with the capabilities to enter another
        container's namespaces and mount a /proc there. Its stdin is this
        process's connection: when that closes, however this process ends,
        the relay reads EOF and exits, and the engine removes the container.
        `.container_id` names it (execs into it: a sentinel, a stream)."""
        from instrument.copies import LABEL

        api = client.api
        made = api.create_container(
            image, ["python3", "-S", "-u", "-c", SERVE], name=name, entrypoint=[], user="0",
            working_dir="/", stdin_open=True, detach=False, healthcheck={"test": ["NONE"]},
            labels={LABEL: owner, f"{LABEL}.role": role},
            host_config=api.create_host_config(
                pid_mode="host", network_mode="none", cap_add=["SYS_ADMIN", "SYS_PTRACE"],
                security_opt=["apparmor=unconfined"], auto_remove=True, mem_limit=mem))
        try:
            sock = api.attach_socket(made["Id"], params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                         "stream": 1})
            api.start(made["Id"])
        except Exception:
            api.remove_container(made["Id"], force=True)
            raise
        relay = cls(sock)
        relay.container_id = made["Id"]
        return relay

    def run(self, argv: list[str], timeout: float) -> tuple[int | None, bytes] | None:
        done = threading.Event()
        slot: list = [done, None]
        with self._lock:
            if self.gone:
                return None
            self._n += 1
            n = self._n
            self._waiting[n] = slot
            line = json.dumps({"id": n, "argv": list(argv), "timeout": timeout}) + "\n"
            try:
                self._sock.sendall(line.encode())
            except OSError:
                self._close()
                return None
        # the relay kills the command at its timeout and answers: a little more here
        if not done.wait(timeout + 10):
            with self._lock:
                self._waiting.pop(n, None)
            return None
        return slot[1]

    def close(self) -> None:
        with self._lock:
            self._close()
        try:
            self._sock.close()
        except OSError:
            pass

    def _close(self) -> None:
        """Gone: every waiting request is answered None (lock held)."""
        self.gone = True
        for slot in self._waiting.values():
            slot[0].set()
        self._waiting.clear()

    def _read(self) -> None:
        pending, lines = b"", b""
        try:
            while True:
                while len(pending) < 8:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                stream, size = struct.unpack(">BxxxL", pending[:8])
                while len(pending) < 8 + size:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                payload, pending = pending[8:8 + size], pending[8 + size:]
                if stream != 1:
                    continue   # stderr: the relay writes nothing there unless it breaks
                lines += payload
                *whole, lines = lines.split(b"\n")
                for line in whole:
                    self._answer(line)
        except OSError:
            return
        finally:
            with self._lock:
                self._close()

    def _answer(self, line: bytes) -> None:
        try:
            got = json.loads(line)
            result = (got["code"], base64.b64decode(got["out"]))
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            slot = self._waiting.pop(got["id"], None)
        if slot is not None:
            slot[1] = result
            slot[0].set()


def entering(pid: int, config: dict, cmd: list[str]) -> list[str] | None:
    """`cmd` as the relay runs it in place of an exec into the container
    whose init is the engine's process `pid`: in every namespace of that
    process (its files, processes, network), as the container's user, in its
    working directory, with its environment and hostname (`config`: the
    container's Config). Not in its cgroup, nor under its rlimits: the
    observer's, so a look into a container at its process limit still runs.
    None for a user given by name (the exec way: only the container's
    /etc/passwd knows it)."""
    user, _, group = (config.get("User") or "").partition(":")
    if user and not (user.isdigit() and group.isdigit()):
        return None
    ids = ["--setuid", user, "--setgid", group] if user else []
    env = [*(config.get("Env") or []), f"HOSTNAME={config.get('Hostname', '')}"]
    return ["nsenter", "--target", str(pid), "--all", *ids, "--", "env", "-i",
            "-C", config.get("WorkingDir") or "/", *env, *cmd]
