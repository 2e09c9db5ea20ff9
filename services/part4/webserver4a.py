"""webserver4a.py: beyond the article: a pre-fork WSGI server (gunicorn's sync model).

Shows:   the fork cost is paid once per worker, not once per request. The
         parent (the arbiter) opens the listening socket, loads the
         application, and forks WORKERS workers; each worker accepts and
         serves one connection after the other with webserver2's
         handle_one_request, in a loop, for ever. The arbiter only watches:
         grim_reaper's waitpid(-1, WNOHANG) loop reaps a worker that died
         and forks a new one in its place; SIGTERM (docker stop) is passed
         to the workers, which finish the request in hand and exit 0.
Bug:     a slow client holds a worker. With WORKERS clients that send one
         header byte a second, nobody else is answered until they finish or
         REQUEST_TIMEOUT (10 s) ends them (claim P3). webserver4b fixes it.
Try it:  cd services/part4 && python webserver4a.py flaskapp:app
         (the applications and wsgicore.py live in ../part2), then
         curl http://localhost:8888/hello, and `ps -o pid,ppid,args`: the
         same two worker PIDs answer every request; kill -9 one of them and
         a new one takes its place.
         docker compose up part4-prefork-flask; curl http://127.0.0.1:8402/hello
Env:     PORT=8888 (0 picks a free port)  HOST='' (all interfaces)
         WORKERS=2  REQUEST_QUEUE_SIZE=1024  REQUEST_TIMEOUT=10 (seconds)
         ACCESS_LOG_BUFFER=16384 bytes of access lines per write, written
         at once whenever no client waits (0: one write per line)
         WSGI_VALIDATE=1 wraps the application in wsgiref.validate.validator
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
    sys.path.insert(1, PART2)  # after this file's own directory

import wsgicore  # noqa: E402  (lives in ../part2)

PROG = os.path.basename(__file__)
SHUTDOWN_GRACE = 2.5  # seconds for the workers to finish after SIGTERM
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 1.0  # accept() out of descriptors


class _Stop(Exception):
    """Raised by a worker's SIGTERM handler while it waits in accept()."""


class WSGIServer(wsgicore.BaseWSGIServer):
    request_queue_size = 1024
    multiprocess = True  # several worker processes share the listen socket

    def __init__(self, *args, workers=2, **kwargs):
        super().__init__(*args, **kwargs)
        self.workers = {}  # pid -> worker number
        self.number_of_workers = workers
        self._stopping = False
        self._busy = False

    # ---- the arbiter (the parent) ------------------------------------------

    def serve_forever(self):
        """Fork the workers, then watch them: reap, replace, stop on SIGTERM.

        The signal handlers only record (gunicorn's arbiter style): a byte
        goes into the wakeup pipe for every signal, and this loop wakes up
        from select() and does the work.
        """
        gc.freeze()  # the app is loaded: keep its objects out of the workers' GC work
        self._wakeup_r, self._wakeup_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
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
                    wsgicore.log(f"{PROG}: worker {pid} died "
                                 f"({_describe(status)}); starting a new one")
                dead.append(number)

    def spawn_worker(self, number):
        sys.stdout.flush()  # a child must not inherit (and repeat) buffered output
        try:
            pid = os.fork()
        except OSError as err:  # EAGAIN: pids limit; the next wakeup tries again
            wsgicore.log(f"{PROG}: cannot fork worker {number}: {err.strerror}")
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
            wsgicore.flush_log()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _request_stop(self, signum, frame):
        self._stopping = True  # the wakeup pipe gets the loop out of select()

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
            wsgicore.log(f"{PROG}: worker {pid} still busy after {SHUTDOWN_GRACE:g} s; killed")
            _kill(pid, signal.SIGKILL)
        while self.workers:
            pid, _ = os.waitpid(-1, 0)
            self.workers.pop(pid, None)

    # ---- a worker ------------------------------------------------------------

    def _become_worker(self):
        """Drop what belongs to the arbiter: its signal handlers and pipe."""
        signal.set_wakeup_fd(-1)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the arbiter stops us
        signal.signal(signal.SIGTERM, self._worker_stop)
        self.workers = {}

    def serve_worker(self):
        """Accept a connection, serve it, repeat: the same worker for ever."""
        listen_socket = self.listen_socket
        listen_socket.setblocking(False)
        handle = self.handle_one_request
        backoff = BACKOFF_FIRST
        try:
            while not self._stopping:
                try:
                    client_connection, client_address = listen_socket.accept()
                except BlockingIOError:  # no one waiting: the moment to write the log
                    wsgicore.flush_log()
                    select.select([listen_socket], [], [])
                    continue
                except OSError as err:
                    if err.errno in wsgicore.RESOURCE_ERRNOS:
                        wsgicore.log(f"{PROG}: accept() failed: {err}; "
                                     f"trying again in {backoff:g} s")
                        time.sleep(backoff)
                        backoff = min(backoff * 2, BACKOFF_MAX)
                        continue
                    if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                        continue  # that client is gone already
                    raise
                backoff = BACKOFF_FIRST
                self._busy = True
                handle(client_connection, client_address)  # never raises
                self._busy = False
        except _Stop:  # SIGTERM while idle
            pass

    def _worker_stop(self, signum, frame):
        """SIGTERM in a worker: finish the request in hand, then exit."""
        self._stopping = True
        if not self._busy:
            raise _Stop  # out of accept(); PEP 475 would restart it otherwise


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def make_server(server_address, application, request_queue_size=None,
                request_timeout=10.0, workers=2):
    server = WSGIServer(server_address, request_queue_size, request_timeout, workers=workers)
    server.set_app(application)
    return server


def main(argv):
    workers = os.environ.get("WORKERS", "2").strip() or "2"
    if not workers.isdigit() or not 1 <= int(workers) <= 64:
        print(f"{PROG}: WORKERS must be a whole number 1-64, got {workers!r}", file=sys.stderr)
        return 2
    buffer = os.environ.get("ACCESS_LOG_BUFFER", "16384").strip() or "16384"
    if not buffer.isdigit():
        print(f"{PROG}: ACCESS_LOG_BUFFER must be a number of bytes, got {buffer!r}",
              file=sys.stderr)
        return 2
    wsgicore.LOG_BUFFER = int(buffer)
    httpd = wsgicore.server_from_command_line(
        PROG, argv,
        lambda *args: make_server(*args, workers=int(workers)),
        WSGIServer.request_queue_size)
    print(f"WSGIServer: Serving HTTP on port {httpd.server_port} with "
          f"{workers} pre-forked workers ...", flush=True)
    print(f"Arbiter PID: {os.getpid()}\n", flush=True)
    httpd.serve_forever()
    wsgicore.log(f"{PROG}: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
