"""arbiter: the pre-fork arbiter webserver4a and webserver4b share.

gunicorn's model: the parent (the arbiter) opens the listening socket, loads
the application, and forks WORKERS workers that accept on the shared socket.
The arbiter only watches: its signal handlers record the signal, a byte goes
into the wakeup pipe, and the loop does the work; grim_reaper (webserver3g's
waitpid(-1, WNOHANG) loop) reaps a worker that died and a new one is forked
in its place; SIGTERM (docker stop) or SIGINT is passed to the workers as
SIGTERM, they finish what they hold and exit 0, and after SHUTDOWN_GRACE
the ones still busy are killed.

What a worker does is the lesson's: PreforkServer.serve_worker() (4a: one
blocking connection after the other; 4b: an event loop). This module also
holds what both need around it: the accept() back-off when the process is
out of descriptors, the buffered access log and the command line (main).
"""

import errno
import gc
import os
import select
import signal
import sys
import time
import traceback

PART2 = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                      os.pardir, "part2"))
if PART2 not in sys.path:
    sys.path.insert(1, PART2)  # wsgicore and the applications live in ../part2

import wsgicore  # noqa: E402

SHUTDOWN_GRACE = 2.5  # seconds for the workers to finish after SIGTERM
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 1.0  # accept() out of descriptors
GONE_ERRNOS = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM)  # that client is gone already


class PreforkServer(wsgicore.BaseWSGIServer):
    """The arbiter (serve_forever) and the life of a worker around serve_worker()."""

    request_queue_size = 1024
    multiprocess = True  # several worker processes share the listen socket
    prog = "arbiter"

    def __init__(self, *args, workers=2, log_buffer=0, **kwargs):
        super().__init__(*args, access_log=wsgicore.AccessLog(log_buffer), **kwargs)
        self.workers = {}  # pid -> worker number
        self.number_of_workers = workers
        self._stopping = False
        self.backoff = BACKOFF_FIRST

    # ---- the arbiter (the parent) ------------------------------------------

    def serve_forever(self):
        """Fork the workers, then watch them: reap, replace, stop on SIGTERM."""
        gc.freeze()  # the app is loaded: keep its objects out of the workers' GC work
        self._wakeup_r, self._wakeup_w = wakeup_pipe()
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select()
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        for number in range(self.number_of_workers):
            self.spawn_worker(number)
        while not self._stopping:
            select.select([self._wakeup_r], [], [], 1.0)
            self._drain_wakeup()
            for number in self.grim_reaper():
                if not self._stopping:
                    self.spawn_worker(number)  # a worker died: replace it
        self._shutdown()

    def grim_reaper(self):
        """webserver3g's waitpid loop; returns the numbers of the dead workers."""
        dead = []
        while True:
            try:
                pid, status = os.waitpid(
                    -1,  # wait for any child process
                    os.WNOHANG,  # do not block, return (0, 0) if none has exited
                )
            except ChildProcessError:  # ECHILD: no child processes at all
                return dead
            if pid == 0:  # children remain, but none has exited yet
                return dead
            number = self.workers.pop(pid, None)
            if number is not None:
                if not self._stopping:
                    self.log.message(f"{self.prog}: worker {pid} died "
                                     f"({_describe(status)}); starting a new one")
                dead.append(number)

    def spawn_worker(self, number):
        sys.stdout.flush()  # a child must not inherit (and repeat) buffered output
        try:
            pid = os.fork()
        except OSError as err:  # EAGAIN: pids limit; the next wakeup tries again
            self.log.message(f"{self.prog}: cannot fork worker {number}: {err.strerror}")
            time.sleep(0.1)
            os.write(self._wakeup_w, b"\0")  # come back to the loop soon
            return
        if pid:  # parent
            self.workers[pid] = number
            return
        status = 0  # child: become a worker, never return into the arbiter
        try:
            self._become_worker()
            self.serve_worker()
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            self.log.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _request_stop(self, signum, frame):
        self._stopping = True  # the wakeup pipe gets the loop out of its wait

    def _drain_wakeup(self):
        try:
            while os.read(self._wakeup_r, 512):
                pass
        except BlockingIOError:
            pass

    def _shutdown(self):
        """SIGTERM to every worker, wait up to SHUTDOWN_GRACE, then SIGKILL."""
        self.listen_socket.close()
        for pid in self.workers:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self.workers and time.monotonic() < deadline:
            self.grim_reaper()
            time.sleep(0.02)
        for pid in self.workers:
            self.log.message(f"{self.prog}: worker {pid} still busy after "
                             f"{SHUTDOWN_GRACE:g} s; killed")
            _kill(pid, signal.SIGKILL)
        while self.workers:
            pid, _ = os.waitpid(-1, 0)
            self.workers.pop(pid, None)

    # ---- a worker ------------------------------------------------------------

    def _become_worker(self):
        """Drop what belongs to the arbiter: its handlers and wakeup pipe."""
        signal.set_wakeup_fd(-1)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the arbiter stops us
        self.workers = {}
        self.listen_socket.setblocking(False)
        self.become_worker()

    def become_worker(self):
        """The lesson's own set-up in a new worker (its SIGTERM handler)."""
        raise NotImplementedError

    def serve_worker(self):
        """The lesson: accept and serve until self._stopping."""
        raise NotImplementedError

    def accept_failed(self, err):
        """accept() raised err: the seconds to wait before accepting again
        (out of descriptors: BACKOFF_FIRST, doubling to BACKOFF_MAX), 0 for
        a client that is gone already; anything else is raised again."""
        if err.errno in wsgicore.RESOURCE_ERRNOS:
            wait = self.backoff
            self.log.message(f"{self.prog}: accept() failed: {err}; trying again in {wait:g} s")
            self.backoff = min(wait * 2, BACKOFF_MAX)
            return wait
        if err.errno in GONE_ERRNOS:
            return 0
        raise err


def wakeup_pipe():
    """A non-blocking pipe that gets a byte for every signal."""
    read_end, write_end = os.pipe()
    for fd in (read_end, write_end):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    return read_end, write_end


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def main(server_class, argv, options, workers_are):
    """The command line: `module:callable`, the environment's settings (the
    common ones, WORKERS, ACCESS_LOG_BUFFER and `options`), the banner, the
    arbiter until SIGTERM. A bad setting: one line naming it, exit 2."""
    prog = server_class.prog

    def make_server(server_address, application, request_queue_size, request_timeout, **more):
        server = server_class(server_address, request_queue_size, request_timeout, **more)
        server.set_app(application)
        return server

    httpd = wsgicore.server_from_command_line(
        prog, argv, make_server, server_class.request_queue_size,
        (wsgicore.WORKERS, wsgicore.ACCESS_LOG_BUFFER, *options))
    print(f"WSGIServer: Serving HTTP on port {httpd.server_port} with "
          f"{httpd.number_of_workers} pre-forked {workers_are} ...", flush=True)
    print(f"Arbiter PID: {os.getpid()}\n", flush=True)
    httpd.serve_forever()
    httpd.log.message(f"{prog}: stopped")
    return 0
