"""webserver4b.py: beyond the article: pre-forked workers, each an event loop.

Shows:   slow clients cost a socket, not a worker. The arbiter is
         arbiter.py, webserver4a's too (forks WORKERS workers, grim_reaper
         replaces a dead one, SIGTERM stops them gracefully); each worker
         runs one event loop (selectors: epoll on Linux) over non-blocking sockets.
         Bytes are read as they arrive and fed to wsgicore.RequestParser;
         when a request is complete the application is called inline (as
         bjoern and meinheld do) and the answer is written as fast as the
         client takes it. So a client that sends one byte a second, or
         reads one, holds nothing but its own socket (claim P3). HTTP/1.1
         keep-alive: a connection carries request after request, pipelined
         ones answered in order (P4), a streamed answer chunked, and is
         closed after KEEP_ALIVE idle seconds.
Bug:     the application runs inside the loop: while it computes (or
         sleeps, or waits for a database) that worker answers nobody else.
         That is why gunicorn's async workers need monkey-patching and why
         asyncio servers need async applications (ASGI).
Try it:  cd services/part4 && python webserver4b.py flaskapp:app
         (the applications and wsgicore live in ../part2), then
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

import os
import selectors
import signal
import socket
import sys
import time

import arbiter  # the pre-fork arbiter; it puts ../part2 (wsgicore) on sys.path
import wsgicore

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


class WSGIServer(arbiter.PreforkServer):
    prog = os.path.basename(__file__)

    def __init__(self, *args, keep_alive=5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_alive = keep_alive

    # ---- a worker: the event loop --------------------------------------------

    def become_worker(self):
        """A wakeup pipe of the worker's own: SIGTERM wakes the loop."""
        self._wakeup_r, self._wakeup_w = arbiter.wakeup_pipe()
        signal.signal(signal.SIGTERM, self._request_stop)  # finish, then exit

    def serve_worker(self):
        """One loop: accept, read, answer, write, time out; never block."""
        self.selector = selector = selectors.DefaultSelector()
        self.clients = {}  # fd -> Client
        selector.register(self.listen_socket, READ, None)
        selector.register(self._wakeup_r, READ, WAKEUP)
        self._accepting, self._resume_at = True, 0.0
        next_sweep = time.monotonic() + 1.0
        while True:
            if self._stopping and not self._wind_down():
                break
            self.log.flush()  # about to wait: the access lines go out now
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
                wait = self.accept_failed(err)
                if wait:  # out of descriptors: stop watching the listen socket
                    # for a while (sleeping would stall every client of the loop)
                    self.selector.unregister(self.listen_socket)
                    self._accepting = False
                    self._resume_at = now + wait
                    return
                continue
            self.backoff = arbiter.BACKOFF_FIRST
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
                self.log.access(wsgicore.access_line(
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
        self.log.access(wsgicore.access_line(
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


if __name__ == "__main__":
    sys.exit(arbiter.main(WSGIServer, sys.argv[1:], (wsgicore.KEEP_ALIVE,),
                          "event-loop workers"))
