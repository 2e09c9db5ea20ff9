"""wsgicore: the HTTP/1.1 and WSGI (PEP 3333) core of webserver2 and webserver3h.

The article's webserver2.py reads the request with one recv(1024), splits
the first line on spaces, and hands the rest to the application. That is
enough to show how WSGI works and wrong in every other way: a body longer
than 1024 bytes is cut off, a malformed request crashes the server, a
silent client hangs it. This module does the same job correctly, so that
the two lesson files (webserver2.py, iterative; webserver3h.py, one fork
per connection) stay small and only show what the article teaches.

One connection carries one request. It goes through named phases (the
names follow h11's habit of naming states; see Phase):

  READ_HEAD      read the request line and the header fields up to the empty
                 line, a line at a time, within size limits and within one
                 deadline for the whole head (REQUEST_TIMEOUT, 10 s), so a
                 client that drips bytes cannot hold the server forever.
  READ_BODY      a chunked body is decoded here, before the application
                 runs, and handed over with a CONTENT_LENGTH like any other.
                 A Content-Length body stays in the socket: the application
                 reads it through wsgi.input, which never reads past it.
  CALL_APP       build environ (get_environ) and call
                 application(environ, start_response).
  SEND_RESPONSE  iterate the body; status and headers go out with the first
                 non-empty chunk (or at the end); result.close() always runs.
  CLOSED         the socket is closed; one access line goes to stderr.

Every response says `Connection: close`. A request the server cannot accept
gets a short text/plain 4xx (or 5xx) answer and the connection is closed.
An exception in the application gives 500 if no header was sent yet, and
the traceback goes to stderr; the server keeps serving either way.

The limits and the answers (RFC 9112 names the cases; the numbers are the
ones Apache and gunicorn use):

  request line longer than 8190 bytes ................... 414
  a header field line longer than 8190 bytes ............ 431
  more than 100 header fields (or trailer fields) ....... 431
  malformed request line, target or version ............. 400
  HTTP version other than 1.0 or 1.1 .................... 505
  header line without a colon, whitespace before the
  colon, obs-fold (a line starting with space or tab),
  a control character (NUL, CR, ...) in a line .......... 400
  a line ending in a bare LF instead of CRLF ............ 400
  Content-Length not 1-18 digits, or several differing . 400
  Content-Length together with Transfer-Encoding ........ 400
  Transfer-Encoding in an HTTP/1.0 request .............. 400
  a transfer-coding other than chunked .................. 501
  malformed chunked body ................................ 400
  chunked body larger than MAX_CHUNKED_BODY (64 MiB) .... 413
  Expect: anything but 100-continue (HTTP/1.1) .......... 417
  more than one Host field .............................. 400
  head not complete within REQUEST_TIMEOUT .............. 408 (if anything
                                                          arrived; else the
                                                          connection is just
                                                          closed)

What it does NOT do (say it plainly, as h11 does):
  - no keep-alive and no pipelining: one request per connection;
  - no chunked responses: a response without Content-Length ends when the
    server closes the connection (HTTP/1.0 style; right because of
    `Connection: close`);
  - no TLS, no HTTP/2, no HTTP/0.9, no CONNECT, no Upgrade;
  - trailer fields of a chunked request are checked and then dropped;
  - HTTP/1.1 requests without Host are accepted (RFC 9112 says 400; the
    article's raw-socket clients send none);
  - header fields whose name contains '_' are left out of environ (they
    would be indistinguishable from '-' in HTTP_* keys: a spoofing trick);
  - no wsgi.file_wrapper, and wsgi.input_terminated is not set (every
    request body comes with CONTENT_LENGTH, so it is not needed);
  - a Content-Length body is not capped: the application decides how much
    it reads (Django and Flask have their own limits); a request with
    neither Content-Length nor Transfer-Encoding has an empty body;
  - `Expect: 100-continue` is answered when the application first reads
    wsgi.input (or before a chunked body is decoded), never eagerly.

Public API (what webserver2.py and webserver3h.py import):
  BaseWSGIServer   listen socket, set_app, get_environ via WSGIConnection,
                   handle_one_request; the servers add serve_forever
  WSGIConnection   one connection: get_environ, start_response,
                   finish_response, run
  read_request, read_chunked_body, InputStream, HTTPError,
  ClientDisconnected   the parser pieces (the fuzz tests call them directly)
  refuse_connection    answer a connection without serving it (503 when
                       fork() fails)
  UsageError, settings_from_env, load_application   the shared command line
"""

import enum
import errno
import importlib
import io
import os
import re
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

SERVER_SOFTWARE = "WSGIServer/0.3"
SERVER_HEADER = f"{SERVER_SOFTWARE} Python/{sys.version.split()[0]}"

MAX_LINE = 8190  # request line and each header field line, without CRLF
MAX_FIELDS = 100  # header fields in the head, trailer fields after a chunked body
MAX_EMPTY_LINES = 4  # CRLFs ignored before the request line (RFC 9112 section 2.2)
MAX_CHUNK_LINE = 4096  # chunk size plus chunk extensions
MAX_CHUNKED_BODY = 64 * 1024 * 1024  # decoded size of a chunked body
SPOOL_SIZE = 1024 * 1024  # a decoded chunked body moves to a temp file past this
READ_BUFFER = 64 * 1024
SEND_SLICE = 1024 * 1024  # see WSGIConnection._sendall
LINGER_SECONDS = 2.0  # see WSGIConnection.close
LINGER_BYTES = 1024 * 1024

# errno values that mean "out of descriptors or memory, try again later"
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # everything below SP but HTAB, and DEL
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")  # no whitespace or controls in a target
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_ABSOLUTE_FORM = re.compile(rb"(?i)https?://([^/?]*)")
_DIGITS = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_STATUS = re.compile(r"[2-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*")
_UNPRINTABLE = re.compile(r'[^\x20-\x21\x23-\x7e]')  # escaped in the access log (and ")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


class Phase(enum.Enum):
    """Where a connection is (see the module docstring)."""

    READ_HEAD = "read head"
    READ_BODY = "read body"
    CALL_APP = "call app"
    SEND_RESPONSE = "send response"
    CLOSED = "closed"


class HTTPError(Exception):
    """A request the server refuses: the clean 4xx/5xx path of the parser."""

    def __init__(self, status, detail, headers=()):
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail
        self.headers = list(headers)
        self.request_line = "-"


class ClientDisconnected(ConnectionError):
    """The client went away (or stalled) while the body or response was moving."""

    def __init__(self, message, timed_out=False):
        super().__init__(message)
        self.timed_out = timed_out


class UsageError(Exception):
    """A bad command line or environment setting: one line, exit status 2."""


# --------------------------------------------------------------------------
# READ_HEAD: the parser. It reads from any buffered binary stream with
# readline(limit) and read(n): a socket's BufferedReader, or io.BytesIO.
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    """A parsed request head. Strings are WSGI "bytes as latin-1" strings."""

    method: str
    path: str  # percent-decoded: what goes into PATH_INFO
    query: str  # raw, as sent: QUERY_STRING
    version: str  # 'HTTP/1.0' or 'HTTP/1.1'
    headers: list = field(default_factory=list)  # [(name, value)], as sent
    content_length: int | None = None
    chunked: bool = False
    expect_continue: bool = False
    authority: str | None = None  # from an absolute-form target
    request_line: str = ""


def _read_line(rfile, limit, too_long_status):
    """One CRLF-terminated line without its CRLF; None at a clean EOF."""
    line = rfile.readline(limit + 2)
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        raise HTTPError(400, "line ends in a bare LF, not CRLF")
    elif not line:
        return None
    elif len(line) >= limit + 2:
        raise HTTPError(too_long_status, f"line longer than {limit} bytes")
    else:
        raise HTTPError(400, "connection closed in the middle of a line")
    if _CONTROL.search(line):
        raise HTTPError(400, "control character in the request head")
    return line


def _parse_field(line):
    """'Name: value' -> ('Name', 'value'), or HTTPError(400)."""
    if line[:1] in (b" ", b"\t"):
        raise HTTPError(400, "obsolete line folding (a line starting with whitespace)")
    name, colon, value = line.partition(b":")
    if not colon:
        raise HTTPError(400, "header field without a colon")
    if not _TOKEN.fullmatch(name):
        raise HTTPError(400, "invalid header field name (whitespace before the colon?)")
    return name.decode("ascii"), value.strip(b" \t").decode("latin-1")


def _parse_request_line(line):
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HTTPError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HTTPError(400, "invalid method")
    if not _VERSION.fullmatch(version):
        raise HTTPError(400, "malformed HTTP version")
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise HTTPError(505, f"{version.decode()} is not supported, use HTTP/1.1")
    if _BAD_TARGET.search(target):
        raise HTTPError(400, "invalid character in the request target")
    authority = None
    # a '#fragment' is the client's business and is never part of a request
    # target (RFC 9110 section 4.2.4); drop it, as gunicorn does
    target = target.partition(b"#")[0] or b"/"
    if target[:1] == b"/":  # origin-form: /path?query
        path, _, query = target.partition(b"?")
    elif target == b"*" and method == b"OPTIONS":  # asterisk-form
        path, query = b"*", b""
    elif match := _ABSOLUTE_FORM.match(target):  # absolute-form: http://host/path
        authority = match.group(1).decode("latin-1")
        path, _, query = target[match.end():].partition(b"?")
        path = path or b"/"
    else:
        raise HTTPError(400, "unsupported request target")
    return Request(
        method=method.decode("ascii"),
        path=unquote_to_bytes(path).decode("latin-1"),
        query=query.decode("latin-1"),
        version=version.decode("ascii"),
        authority=authority,
        request_line=line.decode("latin-1"),
    )


def _check_framing(request):
    """Content-Length, Transfer-Encoding, Expect, Host: RFC 9112 section 6."""
    lengths, codings, hosts, expect = [], [], 0, None
    for name, value in request.headers:
        lname = name.lower()
        if lname == "content-length":
            lengths.extend(item.strip() for item in value.split(","))
        elif lname == "transfer-encoding":
            items = [c.strip().lower() for c in value.split(",") if c.strip()]
            codings.extend(items or [""])  # an empty value is an error below
        elif lname == "host":
            hosts += 1
        elif lname == "expect":
            expect = value.strip().lower()
    if hosts > 1:
        raise HTTPError(400, "more than one Host field")
    if codings:
        if lengths:
            raise HTTPError(400, "both Content-Length and Transfer-Encoding")
        if request.version == "HTTP/1.0":
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if "" in codings:
            raise HTTPError(400, "empty Transfer-Encoding")
        unknown = [c for c in codings if c != "chunked"]
        if unknown:
            raise HTTPError(501, f"transfer-coding {unknown[0]!r} is not implemented")
        if len(codings) > 1:
            raise HTTPError(400, "chunked applied more than once")
        request.chunked = True
    elif lengths:
        if not all(_DIGITS.fullmatch(item) for item in lengths):
            raise HTTPError(400, "invalid Content-Length")
        if len(set(map(int, lengths))) != 1:
            raise HTTPError(400, "conflicting Content-Length values")
        request.content_length = int(lengths[0])
    if expect is not None and request.version == "HTTP/1.1":
        if expect != "100-continue":
            raise HTTPError(417, "only 'Expect: 100-continue' is understood")
        request.expect_continue = True


def read_request(rfile):
    """READ_HEAD: read and check one request head from a buffered stream.

    Returns a Request, or None if the stream ended before a request line.
    Raises HTTPError for anything the server must refuse, and nothing else
    for any input (the stream's own errors, like a socket timeout, pass).
    """
    for _ in range(MAX_EMPTY_LINES + 1):
        line = _read_line(rfile, MAX_LINE, 414)
        if line is None:
            return None
        if line:
            break
    else:
        raise HTTPError(400, "only empty lines, no request line")
    try:
        request = _parse_request_line(line)
        headers = request.headers
        while True:
            field_line = _read_line(rfile, MAX_LINE, 431)
            if field_line is None:
                raise HTTPError(400, "connection closed before the end of the request head")
            if not field_line:
                break
            if len(headers) == MAX_FIELDS:
                raise HTTPError(431, f"more than {MAX_FIELDS} header fields")
            headers.append(_parse_field(field_line))
        _check_framing(request)
    except HTTPError as err:
        err.request_line = line.decode("latin-1")  # for the access log
        raise
    return request


def read_chunked_body(rfile, max_size=MAX_CHUNKED_BODY):
    """READ_BODY for Transfer-Encoding: chunked. Returns (file, length).

    The decoded body goes into a SpooledTemporaryFile (memory up to 1 MiB,
    then disk), positioned at 0. Raises HTTPError on a malformed or
    truncated body and 413 past max_size.
    """
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE)
    try:
        total = 0
        while True:
            line = _read_line(rfile, MAX_CHUNK_LINE, 400)
            if line is None:
                raise HTTPError(400, "connection closed inside the chunked body")
            size_text = line.split(b";", 1)[0].rstrip(b" \t")  # drop chunk extensions
            if not _HEX.fullmatch(size_text):
                raise HTTPError(400, "invalid chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > max_size:
                raise HTTPError(413, f"chunked body larger than {max_size} bytes")
            while size:
                data = rfile.read(min(size, READ_BUFFER))
                if not data:
                    raise HTTPError(400, "connection closed inside a chunk")
                body.write(data)
                size -= len(data)
            if rfile.read(2) != b"\r\n":
                raise HTTPError(400, "chunk data not followed by CRLF")
        for _ in range(MAX_FIELDS + 1):  # the trailer section: checked, dropped
            line = _read_line(rfile, MAX_LINE, 431)
            if line is None:
                raise HTTPError(400, "connection closed inside the chunked trailer")
            if not line:
                break
            _parse_field(line)
        else:
            raise HTTPError(431, f"more than {MAX_FIELDS} trailer fields")
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body, total


class InputStream:
    """wsgi.input: the request body, a binary stream that ends where it does.

    It reads at most `length` bytes from the connection and then reports end
    of file, so an application can never read into whatever follows. A
    client that closes (or stalls past REQUEST_TIMEOUT) before the whole
    body arrived makes the reads raise ClientDisconnected, rather than hand
    the application a truncated body as if it were complete.
    """

    def __init__(self, rfile, length, on_first_read=None):
        self._rfile = rfile
        self.length = length
        self.remaining = length
        self._on_first_read = on_first_read  # sends "100 Continue" if asked

    def _start(self):
        if self._on_first_read is not None:
            callback, self._on_first_read = self._on_first_read, None
            callback()

    def _take(self, method, size):
        self._start()
        try:
            data = method(size)
        except OSError as err:  # TimeoutError included
            raise ClientDisconnected(
                f"reading the request body failed: {err or 'timed out'}",
                timed_out=isinstance(err, TimeoutError)) from err
        self.remaining -= len(data)
        return data

    def _truncated(self):
        got = self.length - self.remaining
        return ClientDisconnected(
            f"client closed the connection after {got} of {self.length} body bytes")

    def read(self, size=-1):
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._take(self._rfile.read, size)
        if len(data) < size:
            raise self._truncated()
        return data

    def readline(self, size=-1):
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        line = self._take(self._rfile.readline, size)
        if len(line) < size and not line.endswith(b"\n"):
            raise self._truncated()
        return line

    def readlines(self, hint=-1):
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readable(self):
        return True


# --------------------------------------------------------------------------
# Responses the server makes itself (errors, 503), and the access log.
# --------------------------------------------------------------------------


_date_cache = [0, ""]  # [second, its Date value]


def http_date():
    """The Date field's value, made once a second (formatdate costs 5 us)."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[1] = formatdate(now, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


def simple_response(status, detail, headers=(), head_only=False):
    """A complete short text/plain response, as bytes."""
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}: {detail}\n".encode("ascii", "backslashreplace")
    lines = [f"HTTP/1.1 {status} {phrase}\r\n",
             "Content-Type: text/plain; charset=utf-8\r\n",
             f"Content-Length: {len(body)}\r\n",
             f"Date: {http_date()}\r\n",
             f"Server: {SERVER_HEADER}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    lines.append("Connection: close\r\n\r\n")
    head = "".join(lines).encode("latin-1")
    return head if head_only else head + body


def log(message):
    if _log_lines:
        flush_log()  # the access lines before it go out first, in order
    sys.stderr.write(message + "\n")  # stderr is line-buffered: one write per line


# The access log: one line per request, like every server here. A write(2)
# per line into the container's log pipe costs a worker about a third of
# its time under load (py-spy, webserver4a), so a pre-fork server may keep
# the lines and write them LOG_BUFFER bytes at a time, as nginx's
# `access_log ... buffer=` does; it must call flush_log() before it waits
# for work (nothing sits in the buffer while the server is idle) and before
# a worker exits. LOG_BUFFER = 0 (the default): a write per line.
LOG_BUFFER = 0
_log_lines = []
_log_size = [0]


def access_log(line):
    if not LOG_BUFFER:
        sys.stderr.write(line + "\n")
        return
    _log_lines.append(line)
    _log_size[0] += len(line) + 1
    if _log_size[0] >= LOG_BUFFER:
        flush_log()


def flush_log():
    if _log_lines:
        text = "\n".join(_log_lines) + "\n"
        _log_lines.clear()
        _log_size[0] = 0
        sys.stderr.write(text)


def access_line(client_address, request_line, status, size, note=""):
    """Common Log Format, the way http.server writes it."""
    host = client_address[0] if client_address else "-"
    when = time.strftime("%d/%b/%Y %H:%M:%S")
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", request_line)
    if len(text) > 200:
        text = text[:200] + "..."
    line = f'{host} - - [{when}] "{text}" {status} {size}'
    return f"{line} ({note})" if note else line


def _linger(sock, seconds, max_bytes):
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


def refuse_connection(sock, client_address, status, detail, headers=(), linger=0.2):
    """Answer a connection with a short error without serving it, then close.

    webserver3h calls this in the parent when fork() fails (503): the
    request itself is not read, so the linger is short.
    """
    try:
        sock.settimeout(1.0)
        sock.sendall(simple_response(status, detail, headers))
        _linger(sock, linger, LINGER_BYTES)
    except OSError:
        pass
    finally:
        sock.close()
    log(access_line(client_address, "-", status, 0, detail))


# --------------------------------------------------------------------------
# One connection: the phases, get_environ, start_response, finish_response.
# --------------------------------------------------------------------------


class _SocketReader(io.RawIOBase):
    """The raw stream under the connection's BufferedReader.

    It counts the bytes received (a timeout answers 408 only if anything
    arrived) and enforces one deadline for the whole request head: a
    per-recv timeout alone never fires for a client sending a byte a second.
    """

    def __init__(self, sock):
        self.sock = sock
        self.received = 0
        self.deadline = None

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request head not complete in time")
            self.sock.settimeout(left)
        count = self.sock.recv_into(buffer)
        self.received += count
        return count


class WSGIConnection:
    """One client connection, one request: see the phases in the module doc."""

    keep_alive = False  # WSGIExchange may keep its connection open

    def __init__(self, server, sock, client_address):
        self.server = server
        self.sock = sock
        self.client_address = client_address
        self.timeout = server.request_timeout
        self.phase = Phase.READ_HEAD
        self.raw = _SocketReader(sock)
        self.rfile = io.BufferedReader(self.raw, READ_BUFFER)
        self.request = None
        self.input = None
        self._spool = None
        # the response, as start_response() set it
        self.status = None
        self.response_headers = None
        self._app_length = None  # the application's Content-Length, if any
        self._has_date = self._has_server = False
        self._left = None  # body bytes still allowed by _app_length
        self._truncating = False
        self.headers_sent = False
        self.continue_sent = False
        self.bytes_sent = 0  # body bytes, for the access log
        self.log_status = None
        self.note = ""
        self.linger = False  # read what the client still sends before close?
        self.client_gone = False
        self.bad_request_line = "-"

    # ---- the whole life of the connection ---------------------------------

    def run(self, application):
        """Serve the connection and close it. Never raises an Exception."""
        try:
            self._serve(application)
        except Exception:  # a bug here must not take the server down
            log(f"internal error in phase {self.phase.name} serving {self.client_address}:\n"
                f"{traceback.format_exc()}")
            if not self.headers_sent:
                self._send_error(HTTPError(500, "internal server error"))
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

    def _call_app(self, application):
        """CALL_APP and SEND_RESPONSE: environ, the application, its body."""
        request = self.request
        self.phase = Phase.CALL_APP
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
            log(f"Application error for {request.request_line!r}:\n{traceback.format_exc()}")
            if self.headers_sent:
                self.note = "application error after the headers were sent; closed"
            else:
                self.linger = True
                self._send_error(HTTPError(500, "the application failed; see the server log"))

    def close(self):
        """CLOSED: linger if the client may still be sending, close, log."""
        self.phase = Phase.CLOSED
        if self.input is not None and self.input.remaining > 0:
            self.linger = True  # the application left part of the body unread
        try:
            if self.linger and not self.client_gone:
                _linger(self.sock, LINGER_SECONDS, LINGER_BYTES)
        finally:
            self.sock.close()
            if self._spool is not None:
                self._spool.close()
        if self.request is not None or self.log_status is not None:
            line = self.request.request_line if self.request else self.bad_request_line
            access_log(access_line(self.client_address, line, self.log_status or "-",
                                   self.bytes_sent, self.note))
        elif self.note:
            access_log(access_line(self.client_address, "-", "-", 0, self.note))

    # ---- CALL_APP ---------------------------------------------------------

    def get_environ(self):
        """The environ dictionary: PEP 3333's CGI and wsgi.* keys."""
        request = self.request
        environ = self.server.base_environ.copy()
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = request.path
        environ["QUERY_STRING"] = request.query
        environ["SERVER_PROTOCOL"] = request.version
        environ["REMOTE_ADDR"] = str(self.client_address[0])
        environ["REMOTE_PORT"] = str(self.client_address[1])
        environ["wsgi.input"] = self.input
        if request.content_length is not None or request.chunked:
            environ["CONTENT_LENGTH"] = str(self.input.length)
        for name, value in request.headers:
            if "_" in name:
                continue  # X_Forwarded would pose as X-Forwarded: leave it out
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
                continue
            if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue  # the body is framed by CONTENT_LENGTH alone now
            key = "HTTP_" + key
            if key in environ:
                joiner = "; " if key == "HTTP_COOKIE" else ", "
                environ[key] = environ[key] + joiner + value
            else:
                environ[key] = value
        if request.authority is not None:  # absolute-form target wins over Host
            environ["HTTP_HOST"] = request.authority
        return environ

    def start_response(self, status, response_headers, exc_info=None):
        """Record status and headers; return write(). PEP 3333's rules."""
        if exc_info:
            try:
                if self.headers_sent:  # too late to change anything: re-raise
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise RuntimeError("start_response() called again without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be str, not {type(status).__name__}")
        if not _STATUS.fullmatch(status):
            raise ValueError(f"status {status!r} is not three digits, a space and a reason")
        if type(response_headers) is not list:
            raise TypeError("response_headers must be a list of (name, value) tuples")
        app_length, has_date, has_server = None, False, False
        for item in response_headers:
            if type(item) is not tuple or len(item) != 2:
                raise TypeError(f"header {item!r} is not a (name, value) tuple")
            name, value = item
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"header {item!r}: name and value must be str")
            if not _TOKEN_STR.fullmatch(name):
                raise ValueError(f"invalid header name {name!r}")
            if _BAD_VALUE.search(value):
                raise ValueError(f"header {name!r}: control character or non-latin-1 in value")
            lname = name.lower()
            if lname in HOP_BY_HOP:
                raise ValueError(f"hop-by-hop header {name!r} is the server's business")
            if lname == "content-length":
                if not _DIGITS.fullmatch(value.strip()):
                    raise ValueError(f"invalid Content-Length {value!r}")
                app_length = int(value)
            elif lname == "date":
                has_date = True
            elif lname == "server":
                has_server = True
        self.status = status
        self.response_headers = response_headers
        self._app_length, self._has_date, self._has_server = app_length, has_date, has_server
        self._left = app_length
        return self.write

    # ---- SEND_RESPONSE ----------------------------------------------------

    def _body_allowed(self):
        return self.request.method != "HEAD" and self.status[:3] not in ("204", "304")

    def _response_head(self, body_length=None):
        lines = [f"HTTP/1.1 {self.status}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in self.response_headers)
        if not self._has_date:
            lines.append(f"Date: {http_date()}\r\n")
        if not self._has_server:
            lines.append(f"Server: {SERVER_HEADER}\r\n")
        if (self._app_length is None and body_length is not None
                and self.status[:3] not in ("204", "304")):
            lines.append(f"Content-Length: {body_length}\r\n")
        if self.keep_alive and (self._app_length is not None or body_length is not None
                                or not self._body_allowed()):
            # the client can tell where this response ends: the connection
            # stays open (HTTP/1.1's default; HTTP/1.0 must be told)
            if self.request.version == "HTTP/1.0":
                lines.append("Connection: keep-alive\r\n")
            lines.append("\r\n")
        else:
            self.keep_alive = False  # the end of the body is the end of the connection
            lines.append("Connection: close\r\n\r\n")
        self.log_status = self.status[:3]
        return "".join(lines).encode("latin-1")

    def _sendall(self, data):
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

    def _write_raw(self, data):
        self.sock.sendall(data)

    def _send_continue(self):
        if not self.continue_sent and not self.headers_sent:
            self.continue_sent = True
            self._sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _fit(self, data):
        """Cut data to what the application's own Content-Length allows."""
        if self._left is not None:
            if len(data) > self._left:
                data = data[:self._left]
                if not self._truncating:
                    self._truncating = True
                    self.note = "application sent more than its Content-Length; cut"
            self._left -= len(data)
        return data

    def write(self, data):
        """The write() callable of start_response; also sends each body chunk."""
        if self.status is None:
            raise RuntimeError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"body data must be bytes, not {type(data).__name__}")
        data = self._fit(data)
        if not data:
            return
        if not self.headers_sent:
            head = self._response_head()
            self.headers_sent = True
            if self._body_allowed():
                self._sendall(head + data)
                self.bytes_sent += len(data)
            else:
                self._sendall(head)
        elif self._body_allowed():
            self._sendall(data)
            self.bytes_sent += len(data)

    def finish_response(self, result):
        """Send what the application returned: at once for a list, else per chunk."""
        if type(result) in (list, tuple):  # the whole body is known: one sendall
            if self.status is None:
                raise RuntimeError("the application returned without calling start_response()")
            for data in result:
                if type(data) is not bytes:
                    raise TypeError(f"body data must be bytes, not {type(data).__name__}")
            if self.headers_sent:  # it used write() as well
                for data in result:
                    self.write(data)
                return
            body = self._fit(result[0] if len(result) == 1 else b"".join(result))
            head = self._response_head(len(body))
            self.headers_sent = True
            if self._body_allowed():
                self._sendall(head + body)
                self.bytes_sent += len(body)
            else:
                self._sendall(head)
            return
        for data in result:
            self.write(data)  # checks the type, skips empty chunks
            if self._truncating:
                break  # enough was sent (PEP 3333): stop iterating
        if not self.headers_sent:
            if self.status is None:
                raise RuntimeError("the application returned without calling start_response()")
            self.headers_sent = True
            self._sendall(self._response_head(0))

    def _send_error(self, err):
        """Answer with a short text/plain error and close (never raises)."""
        head_only = self.request is not None and self.request.method == "HEAD"
        self.log_status = err.status
        self.note = err.detail if not self.note else self.note
        self.headers_sent = True
        data = simple_response(err.status, err.detail, err.headers, head_only)
        if not head_only:
            self.bytes_sent = len(data) - data.index(b"\r\n\r\n") - 4
        self.keep_alive = False  # an error answer always closes the connection
        try:
            self._write_raw(data)
        except OSError as exc:
            self.note = f"{err.detail}; could not send the {err.status}: {exc}"


# --------------------------------------------------------------------------
# The server side that both servers share: the listen socket and environ.
# --------------------------------------------------------------------------


class BaseWSGIServer:
    """Listen socket and WSGI plumbing; subclasses add serve_forever()."""

    request_queue_size = 5
    multiprocess = False

    def __init__(self, server_address, request_queue_size=None, request_timeout=10.0):
        host = server_address[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listen_socket = listen_socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Allow to reuse the same address right after a restart
            listen_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listen_socket.bind(server_address)
            listen_socket.listen(request_queue_size or self.request_queue_size)
        except BaseException:
            listen_socket.close()
            raise
        host, port = listen_socket.getsockname()[:2]
        # The article calls socket.getfqdn(host), which may wait for DNS.
        self.server_name = socket.gethostname() if host in ("0.0.0.0", "::") else host
        self.server_port = port
        self.request_timeout = request_timeout
        self.application = None
        self.base_environ = {  # the same for every request: copied per request
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SCRIPT_NAME": "",
            "SERVER_NAME": self.server_name,
            "SERVER_PORT": str(port),
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": self.multiprocess,
            "wsgi.run_once": False,
        }

    def set_app(self, application):
        self.application = application

    def handle_one_request(self, client_connection, client_address):
        """Serve one request on the connection, then close it. Never raises."""
        WSGIConnection(self, client_connection, client_address).run(self.application)

    def server_close(self):
        self.listen_socket.close()


class WSGIExchange(WSGIConnection):
    """One request that a RequestParser read whole, answered into memory.

    For an event loop (webserver4b), which owns the socket: it feeds the
    parser, makes an exchange for each complete request, calls run(), and
    sends `out` (a list of bytes) when the socket can take it. The answer is
    WSGIConnection's (environ, start_response, finish_response, errors, the
    access line); after run(), `keep_alive` says whether the connection may
    carry the next request: the client asked for it (Request.keep_alive) and
    the response's end is known (Content-Length, HEAD, 204, 304).
    """

    def __init__(self, server, request, client_address):
        self.server = server
        self.sock = None
        self.client_address = client_address
        self.timeout = server.request_timeout
        self.phase = Phase.CALL_APP
        self.request = request
        body = request.body or b""
        self.input = InputStream(io.BytesIO(body), len(body))
        self._spool = None
        self.out = []
        self.keep_alive = request.keep_alive
        self.status = None
        self.response_headers = None
        self._app_length = None
        self._has_date = self._has_server = False
        self._left = None
        self._truncating = False
        self.headers_sent = False
        self.continue_sent = True  # the event loop answers Expect: 100-continue
        self.bytes_sent = 0
        self.log_status = None
        self.note = ""
        self.client_gone = False

    def run(self, application):
        """Answer the request into self.out. Never raises an Exception."""
        try:
            self._call_app(application)
        except Exception:  # a bug here must not take the worker down
            log(f"internal error in phase {self.phase.name} serving {self.client_address}:\n"
                f"{traceback.format_exc()}")
            if not self.headers_sent:
                self._send_error(HTTPError(500, "internal server error"))
        if self.log_status == "500" or self.client_gone or (self._left and self._body_allowed()):
            self.keep_alive = False  # a failed or short body: only a close can end it
        self.phase = Phase.CLOSED
        access_log(access_line(self.client_address, self.request.request_line,
                               self.log_status or "-", self.bytes_sent, self.note))

    def _sendall(self, data):
        self.out.append(data)

    _write_raw = _sendall


# --------------------------------------------------------------------------
# The command line both servers share: settings and `module:callable`.
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    request_queue_size: int
    request_timeout: float
    validate: bool


def _number(name, default, kind, low, high, meaning):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise UsageError(f"{name} must be {meaning}, got {text!r}")
    return value


def settings_from_env(request_queue_size):
    """PORT, HOST, REQUEST_QUEUE_SIZE, REQUEST_TIMEOUT, WSGI_VALIDATE."""
    validate = os.environ.get("WSGI_VALIDATE", "").strip().lower()
    if validate not in ("", "0", "1", "false", "true", "no", "yes"):
        raise UsageError(f"WSGI_VALIDATE must be 0 or 1, got {validate!r}")
    return Settings(
        host=os.environ.get("HOST", ""),
        port=_number("PORT", 8888, int, 0, 65535, "a port number 0-65535"),
        request_queue_size=_number("REQUEST_QUEUE_SIZE", request_queue_size, int, 1, 65535,
                                   "a whole number 1-65535"),
        request_timeout=_number("REQUEST_TIMEOUT", 10.0, float, 0.01, 86400.0,
                                "a number of seconds (0.01-86400)"),
        validate=validate in ("1", "true", "yes"),
    )


def load_application(spec, validate=False):
    """'module:callable' -> the application (wrapped in wsgiref's validator
    if asked). A bad spec, a missing module or attribute: UsageError. An
    error inside the module's own code propagates with its traceback."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise UsageError(f"{spec!r} is not of the form module:callable")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise UsageError(f"no module named {module_name!r} (looked in {sys.path[0]!r} "
                             "and the rest of sys.path)") from None
        raise
    try:
        application = getattr(module, name)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no attribute {name!r}") from None
    if not callable(application):
        raise UsageError(f"{spec} is not callable")
    if validate:
        from wsgiref.validate import validator  # once, at start-up

        application = validator(application)
    return application


def server_from_command_line(prog, argv, make_server, request_queue_size):
    """The command line webserver2 and webserver3h share: `module:callable`
    and the settings in the environment. Returns the listening server; a
    usage error or a port that cannot be had is one line on stderr and exit 2."""
    if not argv:
        sys.exit("Provide a WSGI application object as module:callable")
    try:
        settings = settings_from_env(request_queue_size=request_queue_size)
        application = load_application(argv[0], validate=settings.validate)
    except UsageError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        return make_server((settings.host, settings.port), application,
                           settings.request_queue_size, settings.request_timeout)
    except OSError as err:
        print(f"{prog}: cannot listen on {settings.host or '*'}:{settings.port}: {err.strerror}",
              file=sys.stderr)
        sys.exit(2)
