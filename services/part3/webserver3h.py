"""webserver3h.py: the article's exercise: the part 2 WSGI server, concurrent.

Shows:   webserver2's WSGIServer plus webserver3g's lessons: one fork() per
         connection, the child serves one request and exits, and grim_reaper
         reaps with waitpid(-1, WNOHANG) in a loop, so no zombie is left
         however many children exit at once. It serves the same Flask,
         Pyramid, Django and bare WSGI applications, many clients at once.
         It also survives where the article's servers (and gunicorn's
         arbiter, for the first two) die:
           - fork() fails with EAGAIN (pids limit, ulimit -u): that client
             gets 503 with Retry-After, the server keeps serving;
           - accept() fails with EMFILE/ENFILE (ulimit -n): back off 0.1 s,
             doubling to 1 s, and keep serving;
           - SIGTERM (docker stop): stop accepting, give the children in
             flight 1.5 s, exit 0.
Bug:     none left; this is the end of part 3.
Try it:  cd services/part3 && python webserver3h.py flaskapp:app
         (the applications and wsgicore live in ../part2, which this file
         puts on sys.path itself), then curl http://localhost:8888/hello
         docker compose up part3-wsgi-flask; curl http://127.0.0.1:8312/hello
Env:     PORT=8888 (0 picks a free port)  HOST='' (all interfaces)
         REQUEST_QUEUE_SIZE=1024  REQUEST_TIMEOUT=10 (seconds for a request head)
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
SHUTDOWN_GRACE = 1.5  # seconds for the children in flight after SIGTERM
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 1.0  # accept() out of descriptors


def grim_reaper(signum, frame):
    """The SIGCHLD handler of webserver3g: reap every child that has exited.

    Signals are not queued: one SIGCHLD may stand for many exited children,
    so loop until waitpid says there is none left to reap right now.
    """
    while True:
        try:
            pid, status = os.waitpid(
                -1,  # wait for any child process
                os.WNOHANG,  # do not block, return (0, 0) if none has exited
            )
        except ChildProcessError:  # ECHILD: no child processes at all
            return
        if pid == 0:  # children remain, but none has exited yet
            return


class WSGIServer(wsgicore.BaseWSGIServer):
    request_queue_size = 1024
    multiprocess = True  # each request runs in its own forked process

    def serve_forever(self):
        """Accept, fork, repeat. grim_reaper (SIGCHLD) reaps at once, as in
        webserver3g; the SIGTERM/SIGINT handler only records, the loop stops.

        gunicorn's arbiter style: signal.set_wakeup_fd() writes a byte into
        a pipe for every signal, and the loop sleeps in poll() on the listen
        socket and that pipe. socket.accept() is Python's (PEP 475: it is
        never interrupted by a handler); the listen socket is non-blocking,
        so accept() never waits after poll() said there was a connection.
        """
        # The application is loaded: freeze every object there is into the
        # collector's permanent generation, so that no collection (in the
        # parent or a child) walks them and writes to the pages they share.
        # Measured here (README, "Part 4"): it changes little, about 540
        # minor page faults per request either way; the fork() itself is
        # the cost (72% of the parent's time under load, py-spy).
        gc.freeze()
        self._stopping = False
        self._wakeup_r, self._wakeup_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, grim_reaper)
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        listen_socket = self.listen_socket
        listen_socket.setblocking(False)
        poller = select.poll()
        poller.register(listen_socket, select.POLLIN)
        poller.register(self._wakeup_r, select.POLLIN)
        backoff = BACKOFF_FIRST
        try:
            while not self._stopping:
                ready = {fd for fd, _ in poller.poll()}
                if self._wakeup_r in ready:
                    self._drain_wakeup()
                    continue  # the loop condition sees a SIGTERM
                try:
                    client_connection, client_address = listen_socket.accept()
                except BlockingIOError:  # another process or a reset took it
                    continue
                except OSError as err:
                    if err.errno in wsgicore.RESOURCE_ERRNOS:
                        wsgicore.log(f"{PROG}: accept() failed: {err}; "
                                     f"trying again in {backoff:g} s")
                        self._pause(backoff)
                        backoff = min(backoff * 2, BACKOFF_MAX)
                        continue
                    if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                        continue  # that client is gone already
                    raise
                backoff = BACKOFF_FIRST
                self.fork_and_serve(client_connection, client_address)
        finally:
            self._shutdown()

    def fork_and_serve(self, client_connection, client_address):
        sys.stdout.flush()  # a child must not inherit (and repeat) buffered output
        try:
            pid = os.fork()
        except OSError as err:  # EAGAIN: pids limit or ulimit -u; ENOMEM
            wsgicore.refuse_connection(
                client_connection, client_address, 503,
                f"cannot start a worker process now (fork: {err.strerror})",
                headers=[("Retry-After", "1")])
            return
        if pid == 0:  # child
            status = 0
            try:
                self._become_child()
                self.handle_one_request(client_connection, client_address)
            except BaseException:
                traceback.print_exc()
                status = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)  # child exits here, never back into the loop
        else:  # parent
            client_connection.close()  # close parent copy and loop over

    def _become_child(self):
        """Drop what belongs to the parent: its signals, pipe and listen socket."""
        gc.disable()  # one request and out: a collection would only copy pages
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        self.listen_socket.close()  # close child copy

    def _request_stop(self, signum, frame):
        self._stopping = True  # the wakeup pipe gets the loop out of poll()

    def _drain_wakeup(self):
        try:
            while os.read(self._wakeup_r, 512):
                pass
        except BlockingIOError:
            pass

    def _pause(self, seconds):
        """Sleep, but wake up at once for a signal (SIGTERM must stay quick)."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([self._wakeup_r], [], [], left)
            self._drain_wakeup()

    def _shutdown(self):
        """Stop accepting, wait up to SHUTDOWN_GRACE for the children, clean up."""
        self.listen_socket.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # we reap below ourselves
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break  # every child is done
            if pid == 0:
                if time.monotonic() >= deadline:
                    wsgicore.log(f"{PROG}: children still serving after "
                                 f"{SHUTDOWN_GRACE:g} s; leaving them to finish")
                    break
                time.sleep(0.02)


def make_server(server_address, application, request_queue_size=None, request_timeout=10.0):
    server = WSGIServer(server_address, request_queue_size, request_timeout)
    server.set_app(application)
    return server


def main(argv):
    httpd = wsgicore.server_from_command_line(PROG, argv, make_server,
                                              WSGIServer.request_queue_size)
    print(f"WSGIServer: Serving HTTP on port {httpd.server_port} ...", flush=True)
    print(f"Parent PID (PPID): {os.getpid()}\n", flush=True)
    httpd.serve_forever()
    wsgicore.log(f"{PROG}: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
