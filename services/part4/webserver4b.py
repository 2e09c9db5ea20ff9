"""webserver4b.py: beyond the article: pre-forked workers, each an event loop.

Shows:   slow clients cost a socket, not a worker. The arbiter is
         webserver4a's (forks WORKERS workers, grim_reaper replaces a dead
         one, SIGTERM stops them gracefully); each worker now runs one
         event loop (selectors: epoll on Linux) over non-blocking sockets.
         Bytes are read as they arrive and fed to wsgicore.RequestParser;
         when a request is complete the application is called inline (as
         bjoern and meinheld do) and the answer is written as fast as the
         client takes it. So a client that sends one byte a second, or
         reads one, holds nothing but its own socket (claim P3). HTTP/1.1
         keep-alive: a connection carries request after request, pipelined
         ones answered in order (P4), and is closed after KEEP_ALIVE idle
         seconds.
Bug:     the application runs inside the loop: while it computes (or
         sleeps, or waits for a database) that worker answers nobody else.
         That is why gunicorn's async workers need monkey-patching and why
         asyncio servers need async applications (ASGI).
Try it:  cd services/part4 && python webserver4b.py flaskapp:app
         (the applications and wsgicore.py live in ../part2), then
         curl -v http://localhost:8888/hello http://localhost:8888/hello
         (one connection, two answers: "Re-using existing connection").
         docker compose up part4-evloop-flask; curl http://127.0.0.1:8412/hello
Env:     PORT=8888 (0 picks a free port)  HOST='' (all interfaces)
         WORKERS=2  REQUEST_QUEUE_SIZE=1024  REQUEST_TIMEOUT=10 (seconds for
         a request, and for a client that takes none of its answer)
         KEEP_ALIVE=5 (seconds an idle keep-alive connection stays open)
         ACCESS_LOG_BUFFER=16384 bytes of access lines per write, written
         before the loop waits (0: one write per line)
         WSGI_VALIDATE=1 wraps the application in wsgiref.validate.validator
"""

import errno
import gc
import os
import select
import selectors
import signal
import socket
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
READ_SIZE = 64 * 1024
OUT_HIGH = 256 * 1024  # stop reading a client whose answers pile up unread
ACCEPT_BATCH = 4  # connections taken per wakeup: the other workers get some too
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
WAKEUP = "wakeup"  # the selector's data for the signal pipe


class Client:
    """One connection in the loop: its parser, its unsent bytes, its clock."""

    __slots__ = ("sock", "address", "parser", "out", "events", "closing", "lingering",
                 "since", "requests", "continued", "eof")

    def __init__(self, sock, address, now):
        self.sock = sock
        self.address = address
        self.parser = wsgicore.RequestParser()
        self.out = bytearray()  # answers not yet taken by the client
        self.events = READ  # what the selector watches for it
        self.closing = False  # close once `out` is sent
        self.lingering = 0.0  # deadline of the lingering close, once started
        self.since = now  # last progress: bytes in, bytes out, or the accept
        self.requests = 0
        self.continued = None  # the request "100 Continue" was sent for
        self.eof = False


class WSGIServer(wsgicore.BaseWSGIServer):
    request_queue_size = 1024
    multiprocess = True  # several worker processes share the listen socket

    def __init__(self, *args, workers=2, keep_alive=5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.workers = {}  # pid -> worker number
        self.number_of_workers = workers
        self.keep_alive = keep_alive
        self._stopping = False

    # ---- the arbiter (the parent): webserver4a's ---------------------------

    def serve_forever(self):
        """Fork the workers, then watch them: reap, replace, stop on SIGTERM."""
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
                pid, status = os.waitpid(-1, os.WNOHANG)
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

    # ---- a worker: the event loop --------------------------------------------

    def _become_worker(self):
        """A wakeup pipe of the worker's own; drop the arbiter's handlers."""
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        self._wakeup_r, self._wakeup_w = os.pipe()  # the arbiter's stays its own
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the arbiter stops us
        signal.signal(signal.SIGTERM, self._request_stop)  # finish, then exit
        self.workers = {}

    def serve_worker(self):
        """One loop: accept, read, answer, write, time out; never block."""
        self.selector = selector = selectors.DefaultSelector()
        self.clients = {}  # fd -> Client
        listen_socket = self.listen_socket
        listen_socket.setblocking(False)
        selector.register(listen_socket, READ, None)
        selector.register(self._wakeup_r, READ, WAKEUP)
        self._accepting, self._resume_at, self._backoff = True, 0.0, BACKOFF_FIRST
        next_sweep = time.monotonic() + 1.0
        while True:
            if self._stopping and not self._wind_down():
                break
            wsgicore.flush_log()  # about to wait: the access lines go out now
            events = selector.select(1.0)
            now = time.monotonic()
            for key, mask in events:
                client = key.data
                if client is None:
                    self._accept(now)
                elif client is WAKEUP:
                    self._drain_wakeup()
                else:
                    if mask & READ:
                        self._on_readable(client, now)
                    if mask & WRITE and client.sock is not None:
                        self._on_writable(client, now)
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + 1.0

    def _accept(self, now):
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.listen_socket.accept()
            except BlockingIOError:  # another worker took it
                return
            except OSError as err:
                if err.errno in wsgicore.RESOURCE_ERRNOS:
                    # out of descriptors: stop watching the listen socket for
                    # a while (sleeping would stall every client of the loop)
                    wsgicore.log(f"{PROG}: accept() failed: {err}; "
                                 f"trying again in {self._backoff:g} s")
                    self.selector.unregister(self.listen_socket)
                    self._accepting = False
                    self._resume_at = now + self._backoff
                    self._backoff = min(self._backoff * 2, BACKOFF_MAX)
                    return
                if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that client is gone already
                raise
            self._backoff = BACKOFF_FIRST
            sock.setblocking(False)
            client = Client(sock, address, now)
            self.clients[sock.fileno()] = client
            self.selector.register(sock, READ, client)

    def _on_readable(self, client, now):
        try:
            data = client.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the client
            self._close(client)
            return
        if client.lingering:  # the answer is out; discard what still comes
            if not data:
                self._close(client)
            return
        parser = client.parser
        if parser.idle and client.requests:
            client.since = now  # a new request starts its REQUEST_TIMEOUT
        try:
            if data:
                parser.feed(data)
            else:
                client.eof = True
                parser.feed_eof()
        except wsgicore.HTTPError as err:
            if not data and parser.pending is not None and not parser.pending.chunked:
                # gone in the middle of a Content-Length body: as in webserver3h
                # (the application's read fails), no answer; log and close
                wsgicore.access_log(wsgicore.access_line(
                    client.address, parser.pending.request_line, "-", 0, err.detail))
                self._close(client)
                return
            self._refuse(client, err)
            self._send(client, now)
            return
        self._answer(client)
        if client.eof and not client.closing:
            client.closing = True  # the client sent all it will send
        self._send(client, now)

    def _answer(self, client):
        """Call the application for every complete request, in order."""
        parser = client.parser
        while not client.closing and len(client.out) < OUT_HIGH:
            try:
                request = parser.next_request()
            except wsgicore.HTTPError as err:
                self._refuse(client, err)
                return
            if request is None:
                pending = parser.pending
                if (pending is not None and pending.expect_continue
                        and client.continued is not pending):
                    client.continued = pending
                    client.out += CONTINUE
                return
            exchange = wsgicore.WSGIExchange(self, request, client.address)
            exchange.run(self.application)  # never raises
            client.out += b"".join(exchange.out)
            client.requests += 1
            if not exchange.keep_alive:
                client.closing = True

    def _refuse(self, client, err):
        """A request the parser refused: the 4xx, its access line, then close."""
        data = wsgicore.simple_response(err.status, err.detail, err.headers)
        client.out += data
        client.closing = True
        wsgicore.access_log(wsgicore.access_line(
            client.address, err.request_line, err.status,
            len(data) - data.index(b"\r\n\r\n") - 4, err.detail))

    def _on_writable(self, client, now):
        self._send(client, now)
        if (client.sock is not None and not client.out and not client.closing
                and not client.lingering):
            self._answer(client)  # requests that waited while answers piled up
            self._send(client, now)

    def _send(self, client, now):
        """Write what the socket takes now; watch for what comes next."""
        if client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # the client is gone
                self._close(client)
                return
            if sent:
                del client.out[:sent]
                client.since = now
        if client.out:
            events = WRITE if len(client.out) >= OUT_HIGH else READ | WRITE
        elif client.closing:
            if not client.lingering:
                self._start_linger(client, now)
            return
        else:
            events = READ
        if events != client.events:
            client.events = events
            self.selector.modify(client.sock, events, client)

    def _start_linger(self, client, now):
        """All sent: FIN to the client, then read (and drop) until its EOF, so
        that bytes it still sends cannot turn our close into a reset."""
        if client.eof:
            self._close(client)
            return
        try:
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(client)
            return
        client.lingering = now + wsgicore.LINGER_SECONDS
        if client.events != READ:
            client.events = READ
            self.selector.modify(client.sock, READ, client)

    def _close(self, client):
        if client.sock is None:
            return
        self.selector.unregister(client.sock)
        del self.clients[client.sock.fileno()]
        client.sock.close()
        client.sock = None

    def _sweep(self, now):
        """Once a second: the clocks of every connection, and the accept pause."""
        if not self._accepting and not self._stopping and now >= self._resume_at:
            self.selector.register(self.listen_socket, READ, None)
            self._accepting = True
        timeout = self.request_timeout
        for client in list(self.clients.values()):
            idle = now - client.since
            if client.lingering:
                if now >= client.lingering:
                    self._close(client)
            elif client.out or client.closing:
                if idle >= timeout:  # a client that takes none of its answer
                    self._close(client)
            elif client.parser.idle:
                if idle >= (self.keep_alive if client.requests else timeout):
                    self._close(client)  # quietly: no request was started
            elif idle >= timeout:  # a request not complete in time
                self._refuse(client, wsgicore.HTTPError(
                    408, f"request not complete within {timeout:g} s"))
                self._send(client, now)

    def _wind_down(self):
        """SIGTERM in a worker: stop accepting, close the idle connections,
        go on serving the others. False when nothing is left to do."""
        if self._accepting:
            self.selector.unregister(self.listen_socket)
            self._accepting = False
        self._resume_at = float("inf")
        for client in list(self.clients.values()):
            if client.parser.idle and not client.out and not client.lingering:
                self._close(client)
        return bool(self.clients)


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
                request_timeout=10.0, workers=2, keep_alive=5.0):
    server = WSGIServer(server_address, request_queue_size, request_timeout,
                        workers=workers, keep_alive=keep_alive)
    server.set_app(application)
    return server


def _env_number(name, default, low, high):
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        print(f"{PROG}: {name} must be a number {low:g}-{high:g}, got {text!r}", file=sys.stderr)
        sys.exit(2)
    return value


def main(argv):
    workers = int(_env_number("WORKERS", 2, 1, 64))
    keep_alive = _env_number("KEEP_ALIVE", 5, 0.1, 3600)
    wsgicore.LOG_BUFFER = int(_env_number("ACCESS_LOG_BUFFER", 16384, 0, 1 << 24))
    httpd = wsgicore.server_from_command_line(
        PROG, argv,
        lambda *args: make_server(*args, workers=workers, keep_alive=keep_alive),
        WSGIServer.request_queue_size)
    print(f"WSGIServer: Serving HTTP on port {httpd.server_port} with "
          f"{workers} pre-forked event-loop workers ...", flush=True)
    print(f"Arbiter PID: {os.getpid()}\n", flush=True)
    httpd.serve_forever()
    wsgicore.log(f"{PROG}: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
