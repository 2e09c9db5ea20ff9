"""wsgicore.connection: one request answered, over a socket or into memory.

BaseConnection is what both ways share: the environ, start_response,
finish_response (through a ResponseWriter), the application's errors, the
server's own error answers. Its two subclasses, siblings, differ in where
the request comes from and where the bytes go:

  WSGIConnection  webserver2, 3h, 4a: one connection, one request. It reads
                  the head (the parser, fed from the socket), the body as
                  the application asks (wsgi.input), sends as it goes, and
                  closes: `Connection: close` on every response.
  WSGIExchange    webserver4b: a request the event loop's parser read
                  whole; the answer goes into `out` (bytes for the loop to
                  send) and `keep_alive` says whether the connection may
                  carry the next request.
"""

import io
import socket
import time
import traceback

from .environ import request_environ
from .log import access_line, log
from .readers import READ_BUFFER, InputStream, SocketReader, read_chunked_body, read_request
from .request import ClientDisconnected, HTTPError, Phase
from .response import ResponseWriter, simple_response

SEND_SLICE = 1024 * 1024  # see WSGIConnection._send
LINGER_SECONDS = 2.0  # see WSGIConnection.close
LINGER_BYTES = 1024 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BaseConnection:
    """One request and its answer, without the I/O: subclasses give _send()."""

    keep_alive = False  # may the connection carry another request afterwards?

    def __init__(self, server, client_address, phase, request=None):
        self.server = server
        self.client_address = client_address
        self.timeout = server.request_timeout
        self.log = server.log  # the server's AccessLog
        self.phase = phase
        self.request = request
        self.input = None  # wsgi.input
        self.writer = None  # the ResponseWriter, once the application runs
        self.continue_sent = False
        self.responded = False  # the server's own error answer went out
        self.log_status = None  # the status of that answer
        self.bytes_sent = 0
        self.note = ""
        self.linger = False  # read what the client still sends before close?
        self.client_gone = False

    def _send(self, data):
        raise NotImplementedError

    @property
    def headers_sent(self):
        return self.responded or (self.writer is not None and self.writer.headers_sent)

    def _guarded(self, step, application):
        """step(application), and a 500 for a bug of ours. Never raises an Exception."""
        try:
            step(application)
        except Exception:  # a bug here must not take the server down
            self.log.message(f"internal error in phase {self.phase.name} serving "
                             f"{self.client_address}:\n{traceback.format_exc()}")
            if not self.headers_sent:
                self._send_error(HTTPError(500, "internal server error"))

    def _access_line(self, request_line):
        writer = self.writer
        status = self.log_status or (writer.status_code if writer and writer.headers_sent
                                     else None)
        sent = self.bytes_sent if self.responded else (writer.sent if writer else 0)
        note = self.note or (writer.note if writer else "")
        return access_line(self.client_address, request_line, status or "-", sent, note)

    # ---- CALL_APP and SEND_RESPONSE -----------------------------------------

    def _call_app(self, application):
        """environ, the application, its body, result.close()."""
        request = self.request
        self.phase = Phase.CALL_APP
        self.writer = ResponseWriter(request.method, request.version, self.keep_alive)
        environ = self.get_environ()
        try:
            result = application(environ, self.start_response)
            try:
                self.phase = Phase.SEND_RESPONSE
                self.finish_response(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except ClientDisconnected as err:
            self.note = str(err)
            self.client_gone = True
            if err.timed_out and not self.headers_sent:
                self._send_error(HTTPError(408, "request body stalled"))
        except Exception:
            self.log.message(f"Application error for {request.request_line!r}:\n"
                             f"{traceback.format_exc()}")
            if self.headers_sent:
                self.note = "application error after the headers were sent; closed"
            else:
                self.linger = True
                self._send_error(HTTPError(500, "the application failed; see the server log"))

    def get_environ(self):
        """The environ dictionary: PEP 3333's CGI and wsgi.* keys."""
        return request_environ(self.request, self.server.base_environ, self.input,
                               self.input.length, self.client_address)

    def start_response(self, status, response_headers, exc_info=None):
        """Record status and headers; return write(). PEP 3333's rules."""
        writer = self.writer
        if exc_info:
            try:
                if writer.headers_sent:  # too late to change anything: re-raise
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif writer.status is not None:
            raise RuntimeError("start_response() called again without exc_info")
        writer.start(status, response_headers)
        return self.write

    def write(self, data):
        """The write() callable of start_response; also sends each body chunk."""
        out = self.writer.body(data)
        if out:
            self._send(out)

    def finish_response(self, result):
        """Send what the application returned: at once for a list, else per chunk."""
        writer = self.writer
        if type(result) in (list, tuple):  # the whole body is known: one send
            self._send(writer.whole(result))
            return
        for data in result:
            self.write(data)  # checks the type, skips empty chunks
            if writer.truncating:
                break  # enough was sent (PEP 3333): stop iterating
        end = writer.end()
        if end:
            self._send(end)

    def _send_error(self, err):
        """Answer with a short text/plain error and close (never raises)."""
        head_only = self.request is not None and self.request.method == "HEAD"
        self.log_status = err.status
        self.note = self.note or err.detail
        self.responded = True
        data = simple_response(err.status, err.detail, err.headers, head_only)
        if not head_only:
            self.bytes_sent = len(data) - data.index(b"\r\n\r\n") - 4
        self.keep_alive = False  # an error answer always closes the connection
        try:
            self._send(data)
        except OSError as exc:  # ClientDisconnected included
            self.note = f"{err.detail}; could not send the {err.status}: {exc}"


class WSGIConnection(BaseConnection):
    """One client connection, one request: see the phases in wsgicore's docstring."""

    def __init__(self, server, sock, client_address):
        super().__init__(server, client_address, Phase.READ_HEAD)
        self.sock = sock
        self.raw = SocketReader(sock)
        self.rfile = io.BufferedReader(self.raw, READ_BUFFER)
        self._spool = None
        self.bad_request_line = "-"

    def run(self, application):
        """Serve the connection and close it. Never raises an Exception."""
        try:
            self._guarded(self._serve, application)
        finally:
            self.close()

    def _serve(self, application):
        self.sock.settimeout(self.timeout)
        self.raw.deadline = time.monotonic() + self.timeout
        try:
            self.request = read_request(self.rfile)
        except HTTPError as err:
            self.linger = True  # the client may still be sending its head or body
            self.bad_request_line = err.request_line
            self._send_error(err)
            return
        except TimeoutError:
            if self.raw.received:
                self._send_error(HTTPError(408, f"request head not complete within {self.timeout:g} s"))
            else:
                self.note = f"idle for {self.timeout:g} s, closed"
            return
        except OSError as err:
            self.note = f"reading the request failed: {err}"
            return
        if self.request is None:
            if self.raw.received:
                self.note = "closed after empty lines"
            return
        self.raw.deadline = None
        self.sock.settimeout(self.timeout)
        request = self.request

        self.phase = Phase.READ_BODY
        if request.chunked:
            try:
                if request.expect_continue:
                    self._send_continue()
                self._spool, length = read_chunked_body(self.rfile)
            except HTTPError as err:
                self.linger = True
                self._send_error(err)
                return
            except TimeoutError:
                self._send_error(HTTPError(408, "chunked body stalled"))
                return
            except OSError as err:
                self.note = f"reading the chunked body failed: {err}"
                return
            self.input = InputStream(self._spool, length)
        else:
            self.input = InputStream(
                self.rfile, request.content_length or 0,
                self._send_continue if request.expect_continue else None)

        self._call_app(application)

    def _send(self, data):
        """sendall, in slices when big: since Python 3.5 a socket timeout bounds
        a whole sendall() call, and REQUEST_TIMEOUT is meant as an idle time,
        not as the time to send a large body to a slow client."""
        try:
            if len(data) <= SEND_SLICE:
                self.sock.sendall(data)
            else:
                view = memoryview(data)
                for start in range(0, len(data), SEND_SLICE):
                    self.sock.sendall(view[start:start + SEND_SLICE])
        except OSError as err:
            raise ClientDisconnected(
                f"sending the response failed: {err or 'timed out'}") from err

    def _send_continue(self):
        if not self.continue_sent and not self.headers_sent:
            self.continue_sent = True
            self._send(CONTINUE)

    def close(self):
        """CLOSED: linger if the client may still be sending, close, log."""
        self.phase = Phase.CLOSED
        if self.input is not None and self.input.remaining > 0:
            self.linger = True  # the application left part of the body unread
        try:
            if self.linger and not self.client_gone:
                linger(self.sock, LINGER_SECONDS, LINGER_BYTES)
        finally:
            self.sock.close()
            if self._spool is not None:
                self._spool.close()
        if self.request is not None or self.log_status is not None:
            line = self.request.request_line if self.request else self.bad_request_line
            self.log.access(self._access_line(line))
        elif self.note:
            self.log.access(access_line(self.client_address, "-", "-", 0, self.note))


class WSGIExchange(BaseConnection):
    """One request that the event loop's RequestParser read whole, answered
    into memory (webserver4b). The loop owns the socket: it makes an
    exchange for each complete request, calls run(), and sends `out` (a list
    of bytes) when the socket can take it. After run(), `keep_alive` says
    whether the connection may carry the next request: the client asked for
    it, and the response ended where its framing says (Content-Length, a
    chunked body's last chunk, or no body: HEAD, 204, 304).
    """

    def __init__(self, server, request, client_address):
        super().__init__(server, client_address, Phase.CALL_APP, request)
        body = request.body or b""
        self.input = InputStream(io.BytesIO(body), len(body))
        self.out = []
        self.keep_alive = request.keep_alive
        self.continue_sent = True  # the event loop answers Expect: 100-continue

    def run(self, application):
        """Answer the request into self.out. Never raises an Exception."""
        self._guarded(self._call_app, application)
        writer = self.writer
        if (self.responded or self.client_gone or writer is None or not writer.complete
                or not writer.keep_alive):
            self.keep_alive = False  # a failed or short body: only a close can end it
        self.phase = Phase.CLOSED
        self.log.access(self._access_line(self.request.request_line))

    def _send(self, data):
        self.out.append(data)


def linger(sock, seconds, max_bytes):
    """Read and discard what the client still sends, until EOF or a limit.

    Closing a socket with unread data makes the kernel send RST instead of
    FIN, and a client that is still sending may then lose our response.
    So after an early answer: shut down our sending side (the client sees
    EOF after the response) and read what is still coming before close.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        received = 0
        while received < max_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            data = sock.recv(READ_BUFFER)
            if not data:
                break
            received += len(data)
    except OSError:
        pass


def refuse_connection(sock, client_address, status, detail, headers=(), linger_seconds=0.2):
    """Answer a connection with a short error without serving it, then close.

    webserver3h calls this in the parent when fork() fails (503): the
    request itself is not read, so the linger is short.
    """
    try:
        sock.settimeout(1.0)
        sock.sendall(simple_response(status, detail, headers))
        linger(sock, linger_seconds, LINGER_BYTES)
    except OSError:
        pass
    finally:
        sock.close()
    log(access_line(client_address, "-", status, 0, detail))
