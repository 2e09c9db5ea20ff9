"""wsgicore: the HTTP/1.1 and WSGI (PEP 3333) core of webserver2, 3h, 4a and 4b.

The article's webserver2.py reads the request with one recv(1024), splits
the first line on spaces, and hands the rest to the application. That is
enough to show how WSGI works and wrong in every other way: a body longer
than 1024 bytes is cut off, a malformed request crashes the server, a
silent client hangs it. This module does the same job correctly, so that
the two lesson files (webserver2.py, iterative; webserver3h.py, one fork
per connection) stay small and only show what the article teaches.

For webserver2, webserver3h and webserver4a one connection carries one
request (WSGIConnection); webserver4b's event loop feeds a RequestParser and
answers each complete request with a WSGIExchange, keeping the connection
(keep-alive, pipelining). A request goes through named phases (the names
follow h11's habit of naming states; see Phase):

  READ_HEAD      read the request line and the header fields up to the empty
                 line (at once if the whole head is already buffered, else a
                 line at a time), within size limits and within one
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

WSGIConnection's responses say `Connection: close`; a WSGIExchange keeps
the connection when the request allows it and the response's end is known
(Content-Length), and says `Connection: close` otherwise. A request the
server cannot accept gets a short text/plain 4xx (or 5xx) answer and the
connection is closed.
An exception in the application gives 500 if no header was sent yet, and
the traceback goes to stderr; the server keeps serving either way.

The limits and the answers (RFC 9110 and RFC 9112 name the cases; the
numbers are the ones Apache and gunicorn use; scripts/conformance checks
them against the RFCs case by case, beside gunicorn):

  request line longer than 8190 bytes ................... 414
  a header field line longer than 8190 bytes ............ 431
  more than 100 header fields (or trailer fields) ....... 431
  more than one empty line before the request line ...... 400
  malformed request line, target or version ............. 400
  a byte outside printable ASCII in the target .......... 400
  userinfo (user@) or an empty host in an absolute-form
  target, an invalid Host value ......................... 400
  HTTP version other than 1.0 or 1.1 .................... 505
  header line without a colon, whitespace before the
  colon, obs-fold (a line starting with space or tab),
  a control character (NUL, CR, ...) in a line .......... 400
  a line ending in a bare LF instead of CRLF ............ 400
  Content-Length not 1-18 digits, or several differing . 400
  Content-Length together with Transfer-Encoding ........ 400
  Transfer-Encoding in an HTTP/1.0 request .............. 400
  a transfer-coding other than chunked .................. 501
  malformed chunked body (a chunk size is hex digits
  only, whitespace only before ';', extensions
  name[=token or "quoted"]) ............................. 400
  a trailer field that must come before the content
  (Content-Length, Host, Transfer-Encoding, ... see
  FORBIDDEN_TRAILERS) ................................... 400
  chunked body larger than MAX_CHUNKED_BODY (64 MiB) .... 413
  (RequestParser only) a body over MAX_BUFFERED_BODY .... 413
  Expect: anything but 100-continue (HTTP/1.1) .......... 417
  more than one Host field, differing Content-Types ..... 400
  head not complete within REQUEST_TIMEOUT .............. 408 (if anything
                                                          arrived; else the
                                                          connection is just
                                                          closed)

What it does NOT do (say it plainly, as h11 does):
  - keep-alive and pipelining only through RequestParser + WSGIExchange
    (webserver4b); WSGIConnection serves one request per connection;
  - no chunked responses: a response without Content-Length ends when the
    server closes the connection (HTTP/1.0 style, with `Connection: close`);
  - no TLS, no HTTP/2, no HTTP/0.9, no CONNECT, no Upgrade;
  - trailer fields of a chunked request are checked and then dropped;
  - HTTP/1.1 requests without Host are accepted (RFC 9112 says 400; the
    article's raw-socket clients send none); HTTP/1.2 gets 505 (RFC 9110
    asks to serve it as 1.1); a '#fragment' in the target is dropped (RFC
    9112 has no '#' in a target), as gunicorn does;
  - header fields whose name contains '_' are left out of environ (they
    would be indistinguishable from '-' in HTTP_* keys: a spoofing trick);
  - no wsgi.file_wrapper; wsgi.input_terminated is set for a chunked
    request only (every request body comes with CONTENT_LENGTH; Werkzeug
    needs it to trust CONTENT_LENGTH beside Transfer-Encoding: chunked);
  - a Content-Length body is not capped: the application decides how much
    it reads (Django and Flask have their own limits); a request with
    neither Content-Length nor Transfer-Encoding has an empty body;
  - `Expect: 100-continue` is answered when the application first reads
    wsgi.input (or before a chunked body is decoded), never eagerly.

Public API (what the servers, the tests and the tools import):
  BaseWSGIServer   listen socket, set_app, get_environ via WSGIConnection,
                   handle_one_request; the servers add serve_forever
  WSGIConnection   one connection: get_environ, start_response,
                   finish_response, run
  WSGIExchange     one request a RequestParser read whole, answered into
                   memory (the event loop of webserver4b)
  Request          a parsed request: method, path, query, version, headers,
                   content_length, chunked, expect_continue, keep_alive,
                   authority, request_line, body (RequestParser only)
  read_request, read_chunked_body, InputStream
                   the blocking parser (a buffered stream, a line at a time)
  RequestParser    the same grammar fed bytes as they arrive: feed,
                   next_request, feed_eof, idle, pending
  request_environ  a Request's environ on a copy of the server's base
  HTTPError, ClientDisconnected   the two ways a request ends early
  MAX_LINE, MAX_FIELDS, MAX_EMPTY_LINES, MAX_CHUNK_LINE, MAX_CHUNKED_BODY,
  MAX_BUFFERED_BODY, FORBIDDEN_TRAILERS   the limits above
  simple_response, refuse_connection   answer without the application (503
                   when fork() fails)
  log, access_line, access_log, flush_log   stderr and the access log
  UsageError, settings_from_env, load_application, server_from_command_line
                   the shared command line
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
MAX_EMPTY_LINES = 1  # empty lines ignored before the request line (RFC 9112 section 2.2)
MAX_CHUNK_LINE = 4096  # chunk size plus chunk extensions
MAX_CHUNKED_BODY = 64 * 1024 * 1024  # decoded size of a chunked body
MAX_BUFFERED_BODY = 64 * 1024 * 1024  # RequestParser keeps a whole body in memory
SPOOL_SIZE = 1024 * 1024  # a decoded chunked body moves to a temp file past this
READ_BUFFER = 64 * 1024
SEND_SLICE = 1024 * 1024  # see WSGIConnection._sendall
LINGER_SECONDS = 2.0  # see WSGIConnection.close
LINGER_BYTES = 1024 * 1024

# errno values that mean "out of descriptors or memory, try again later"
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_FRAMING_FIELDS = frozenset({  # the fields _check_framing looks at
    "content-length", "transfer-encoding", "host", "expect", "content-type", "connection"})
# fields a trailer must not carry: framing, routing, authentication, request
# modifiers and content format are needed before the content (RFC 9110 section 6.5.1)
FORBIDDEN_TRAILERS = frozenset({
    "content-length", "transfer-encoding", "trailer", "host", "connection", "keep-alive",
    "upgrade", "te", "expect", "authorization", "proxy-authorization", "cookie", "range",
    "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range",
    "max-forwards", "cache-control", "content-type", "content-encoding", "content-range",
})

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})

_TOKEN_CLASS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"  # tchar (RFC 9110 section 5.6.2)
_TOKEN = re.compile(_TOKEN_CLASS.encode() + b"+")
_TOKEN_STR = re.compile(_TOKEN_CLASS + "+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # everything below SP but HTAB, and DEL
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")  # no whitespace, controls, non-ASCII
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_ABSOLUTE_FORM = re.compile(rb"(?i)https?://([^/?]*)")
_AUTHORITY = re.compile(r"(?:\[[0-9A-Za-z:.\-_~!$&'()*+,;=]+\]|[0-9A-Za-z\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
# A whole common head (see _parse_head_block): the request line's
# METHOD /path?query HTTP/1.x ('#' excluded: _parse_request_line drops a
# fragment), then field lines: a token, a colon, a value without controls
_HEAD_BLOCK = re.compile(rf"({_TOKEN_CLASS}+) (/[!\"$-~]*) (HTTP/1\.[01])"
                         rf"((?:\r\n{_TOKEN_CLASS}+:[^\x00-\x08\x0a-\x1f\x7f]*)*)")
_FIELD = re.compile(  # name, and the value without the whitespace around it
    rf"\r\n({_TOKEN_CLASS}+):[ \t]*((?:[^\r\n \t]+(?:[ \t]+[^\r\n \t]+)*)?)[ \t]*")
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_EXT = re.compile(  # *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
    rb"(?:[ \t]*;[ \t]*" + _TOKEN.pattern + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN.pattern
    + rb"|" + _QUOTED + rb"))?)*")
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
    """A parsed request. Strings are WSGI "bytes as latin-1" strings."""

    method: str
    path: str  # percent-decoded: what goes into PATH_INFO
    query: str  # raw, as sent: QUERY_STRING
    version: str  # 'HTTP/1.0' or 'HTTP/1.1'
    headers: list = field(default_factory=list)  # [(name, value)], as sent
    content_length: int | None = None
    chunked: bool = False
    expect_continue: bool = False
    keep_alive: bool = False  # HTTP/1.1 without "Connection: close", or 1.0 with keep-alive
    authority: str | None = None  # from an absolute-form target
    request_line: str = ""
    body: bytes | None = None  # RequestParser only: the whole body, chunked decoded


# The grammar, one piece per function. Both ways of reading a request use
# exactly these: read_request / read_chunked_body (blocking, a line at a time
# from a buffered stream) and RequestParser (fed bytes as they arrive).


def _check_line(raw, limit, too_long_status):
    """A line up to its LF (the LF itself cut off) -> the line without CR."""
    if raw[-1:] != b"\r":
        raise HTTPError(400, "line ends in a bare LF, not CRLF")
    line = raw[:-1]
    if len(line) > limit:
        raise HTTPError(too_long_status, f"line longer than {limit} bytes")
    if _CONTROL.search(line):
        raise HTTPError(400, "control character in the request head")
    return line


def _read_line(rfile, limit, too_long_status):
    """One CRLF-terminated line without its CRLF; None at a clean EOF."""
    raw = rfile.readline(limit + 2)
    if raw[-1:] == b"\n":
        return _check_line(raw[:-1], limit, too_long_status)
    if not raw:
        return None
    if len(raw) >= limit + 2:
        raise HTTPError(too_long_status, f"line longer than {limit} bytes")
    raise HTTPError(400, "connection closed in the middle of a line")


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


def _parse_trailer_field(line):
    """A trailer field: a field, and not one that must come before the content."""
    name, value = _parse_field(line)
    if name.lower() in FORBIDDEN_TRAILERS:
        raise HTTPError(400, f"{name} is not allowed in a trailer (RFC 9110 section 6.5.1)")
    return name, value


def _parse_authority(authority):
    """The authority of an absolute-form target, or the Host field's value."""
    if "@" in authority:
        raise HTTPError(400, "userinfo (user@) in the authority (RFC 9110 section 4.2.4)")
    if not _AUTHORITY.fullmatch(authority):
        raise HTTPError(400, "invalid authority (host[:port])")
    return authority


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
        authority = _parse_authority(match.group(1).decode("latin-1"))
        if not authority or authority[0] == ":":
            raise HTTPError(400, "empty host in an http URI (RFC 9110 section 4.2.1)")
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
    """Content-Length, Transfer-Encoding, Expect, Host, Content-Type,
    Connection: RFC 9112 sections 3.2, 6 and 9.3, RFC 9110 section 5.3."""
    lengths, codings, hosts, expect, types, connection = [], [], [], None, None, ""
    for name, value in request.headers:
        lname = name.lower()
        if lname not in _FRAMING_FIELDS:
            continue
        if lname == "content-length":
            lengths.extend(item.strip() for item in value.split(","))
        elif lname == "transfer-encoding":
            items = [c.strip().lower() for c in value.split(",") if c.strip()]
            codings.extend(items or [""])  # an empty value is an error below
        elif lname == "host":
            hosts.append(value)
        elif lname == "expect":
            expect = value.strip().lower()
        elif lname == "content-type":
            if types is not None and value != types:
                raise HTTPError(400, "two differing Content-Type fields")
            types = value
        elif lname == "connection":
            connection += "," + value.lower()
    if len(hosts) > 1:
        raise HTTPError(400, "more than one Host field")
    if hosts and hosts[0]:
        _parse_authority(hosts[0])
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
    options = {item.strip() for item in connection.split(",")} if connection else ()
    if request.version == "HTTP/1.1":
        if expect is not None:
            if expect != "100-continue":
                raise HTTPError(417, "only 'Expect: 100-continue' is understood")
            request.expect_continue = True
        request.keep_alive = "close" not in options
    else:
        request.keep_alive = "keep-alive" in options and "close" not in options


def _parse_chunk_size(line):
    """chunk-size [ chunk-ext ] (RFC 9112 section 7.1) -> the size."""
    size_text, semicolon, extensions = line.partition(b";")
    if semicolon:
        size_text = size_text.rstrip(b" \t")  # BWS before ';' only
        if not _CHUNK_EXT.fullmatch(b";" + extensions):
            raise HTTPError(400, "invalid chunk extension")
    if not _HEX.fullmatch(size_text):
        raise HTTPError(400, "invalid chunk size")
    return int(size_text, 16)


def _parse_head_block(block):
    """The common case in one pass: a whole head (up to the CRLF CRLF that
    ends it, not included) that is an origin-form request line and at most
    MAX_FIELDS well-formed fields, none longer than MAX_LINE. One match of
    _HEAD_BLOCK (made of the same token and character classes as
    _parse_request_line, _check_line and _parse_field) and one findall do
    in C what the line-by-line path does per line in Python. Returns None
    for anything else: the caller then reads the head line by line, which
    finds the first error in order.
    """
    if len(block) > MAX_LINE:
        return None  # a long line may hide in it: the line-by-line path measures each
    text = block.decode("latin-1")
    match = _HEAD_BLOCK.fullmatch(text)
    if match is None:
        return None
    method, target, version, fields = match.groups()
    headers = _FIELD.findall(fields)
    if len(headers) > MAX_FIELDS:
        return None
    path, _, query = target.partition("?")
    if "%" in path:
        path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    request = Request(method, path, query, version, headers, request_line=text[:match.end(3)])
    try:
        _check_framing(request)
    except HTTPError as err:
        err.request_line = request.request_line
        raise
    return request


class _Head:
    """The request head, one line at a time: empty lines before the request
    line, the request line, the fields, the empty line that ends the head.
    Lines come without their CRLF, length and characters already checked."""

    __slots__ = ("request", "empty_lines", "first")

    def __init__(self):
        self.request = None
        self.empty_lines = 0
        self.first = None  # the request line's bytes, for the access log

    @property
    def too_long_status(self):
        return 414 if self.request is None else 431

    def add(self, line):
        """Returns the Request when this line ended the head, else None."""
        request = self.request
        if request is None:
            if not line:
                self.empty_lines += 1
                if self.empty_lines > MAX_EMPTY_LINES:
                    raise HTTPError(400, "more than one empty line before the request line")
                return None
            self.first = line
            self.request = _parse_request_line(line)
            return None
        if not line:
            _check_framing(request)
            return request
        if len(request.headers) == MAX_FIELDS:
            raise HTTPError(431, f"more than {MAX_FIELDS} header fields")
        request.headers.append(_parse_field(line))
        return None

    def annotate(self, err):
        if self.first is not None:
            err.request_line = self.first.decode("latin-1")  # for the access log
        return err


def read_request(rfile):
    """READ_HEAD: read and check one request head from a buffered stream.

    Returns a Request, or None if the stream ended before a request line.
    Raises HTTPError for anything the server must refuse, and nothing else
    for any input (the stream's own errors, like a socket timeout, pass).
    A Content-Length body stays in the stream (see InputStream).
    """
    peek = getattr(rfile, "peek", None)  # a BufferedReader: is the whole head there?
    if peek is not None:
        data = peek(READ_BUFFER)
        end = data.find(b"\r\n\r\n")
        if end > 0:
            request = _parse_head_block(data[:end])
            if request is not None:
                rfile.read(end + 4)
                return request
    head = _Head()
    try:
        while True:
            line = _read_line(rfile, MAX_LINE, head.too_long_status)
            if line is None:
                if head.request is None:
                    return None
                raise HTTPError(400, "connection closed before the end of the request head")
            request = head.add(line)
            if request is not None:
                return request
    except HTTPError as err:
        head.annotate(err)
        raise


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
            size = _parse_chunk_size(line)
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
            _parse_trailer_field(line)
        else:
            raise HTTPError(431, f"more than {MAX_FIELDS} trailer fields")
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body, total


# RequestParser's states (named, h11's habit)
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER = (
    "head", "body", "chunk size", "chunk data", "chunk end", "trailer")


class RequestParser:
    """The same parser, fed bytes as they arrive (for an event loop).

        parser = RequestParser()
        parser.feed(data)              # HTTPError as soon as the input is known bad
        while (request := parser.next_request()) is not None:
            ...                        # request.body: the whole body, bytes
        parser.feed_eof()              # the peer closed: 400 if a request was cut short

    next_request() returns a Request whose head is parsed and whose body has
    fully arrived (a chunked body decoded), or None while more bytes are
    needed. Pipelined requests come out one after another: the bytes after a
    complete request are parsed only once it was handed out, so an error in
    a later request is raised by the next_request() call after the good
    ones, never before them. After an HTTPError the parser is dead: every
    call raises it again (answer it and close the connection).

    The limits are read_request's (MAX_LINE, MAX_FIELDS, MAX_EMPTY_LINES,
    MAX_CHUNK_LINE), and one more because the body is kept in memory: a
    Content-Length or chunked body over max_body gets 413.
    `pending` is the Request whose head is complete while its body is still
    arriving (look at its expect_continue to send "100 Continue"); `idle` is
    true when no part of a request is buffered (an idle keep-alive
    connection, closed quietly on a timeout, not with 408).
    """

    __slots__ = ("max_body", "_buf", "_pos", "_state", "_head", "_request", "_ready",
                 "_error", "_eof", "_left", "_parts", "_total", "_trailers")

    def __init__(self, max_body=MAX_BUFFERED_BODY):
        self.max_body = max_body
        self._buf = bytearray()
        self._pos = 0  # where the unparsed bytes start in _buf
        self._state = _HEAD
        self._head = _Head()
        self._request = None  # head parsed, body still arriving
        self._ready = None  # complete, not yet handed out
        self._error = None
        self._eof = False
        self._left = 0  # body or chunk bytes still to come
        self._parts = []  # decoded chunks
        self._total = 0
        self._trailers = 0

    @property
    def idle(self):
        return (self._ready is None and self._state is _HEAD and self._head.request is None
                and self._pos == len(self._buf))

    @property
    def pending(self):
        return self._request

    def feed(self, data):
        if self._error is not None:
            raise self._error
        self._buf += data
        if self._ready is None:
            self._parse()

    def feed_eof(self):
        self._eof = True
        if self._error is not None:
            raise self._error
        if self._ready is None:
            self._check_eof()

    def next_request(self):
        request = self._ready
        if request is None:
            if self._error is not None:
                raise self._error
            self._parse()
            request = self._ready
            if request is None:
                if self._eof:
                    self._check_eof()
                return None
        self._ready = None
        return request

    def _check_eof(self):
        if self.idle:
            return
        state = self._state
        if state is _HEAD:
            detail = "connection closed before the end of the request head"
        elif state is _BODY:
            got = len(self._buf) - self._pos
            detail = f"client closed the connection after {got} of " \
                     f"{self._request.content_length} body bytes"
        else:
            detail = "connection closed inside the chunked body"
        self._fail(HTTPError(400, detail))

    def _fail(self, err):
        self._error = self._head.annotate(err)
        raise err

    def _parse(self):
        """Parse the buffered bytes until a request is ready or more are needed."""
        try:
            while self._ready is None:
                state = self._state
                if state is _HEAD:
                    progress = self._parse_head()
                elif state is _BODY:
                    progress = self._parse_body()
                elif state is _CHUNK_SIZE:
                    progress = self._parse_chunk_size()
                elif state is _CHUNK_DATA:
                    progress = self._parse_chunk_data()
                elif state is _CHUNK_END:
                    progress = self._parse_chunk_end()
                else:
                    progress = self._parse_trailer()
                if not progress:
                    break
        except HTTPError as err:
            self._fail(err)
        if self._pos:  # drop what was parsed (cheap: bytearray trims its front)
            del self._buf[:self._pos]
            self._pos = 0

    def _line(self, limit, too_long_status):
        """The next complete line without CRLF, checked; None if incomplete."""
        buf, pos = self._buf, self._pos
        end = buf.find(b"\n", pos)
        if end < 0:
            if len(buf) - pos >= limit + 2:
                raise HTTPError(too_long_status, f"line longer than {limit} bytes")
            return None
        self._pos = end + 1
        return _check_line(bytes(buf[pos:end]), limit, too_long_status)

    def _parse_head(self):
        head = self._head
        if head.request is None and not head.empty_lines:  # the common case first
            buf, pos = self._buf, self._pos
            end = buf.find(b"\r\n\r\n", pos)
            if end > pos:
                request = _parse_head_block(bytes(buf[pos:end]))
                if request is not None:
                    self._pos = end + 4
                    self._start_body(request)
                    return True
        while True:
            line = self._line(MAX_LINE, head.too_long_status)
            if line is None:
                return False
            request = head.add(line)
            if request is not None:
                self._start_body(request)
                return True

    def _start_body(self, request):
        if request.chunked:
            self._request, self._state = request, _CHUNK_SIZE
            self._parts, self._total = [], 0
        elif request.content_length:
            if request.content_length > self.max_body:
                raise HTTPError(413, f"body larger than {self.max_body} bytes")
            self._request, self._state = request, _BODY
            self._left = request.content_length
        else:
            request.body = b""
            self._done(request)

    def _done(self, request):
        self._ready = request
        self._request = None
        self._state = _HEAD
        head = self._head
        if head.request is not None or head.empty_lines:
            self._head = _Head()
        else:
            head.first = None

    def _parse_body(self):
        pos, left = self._pos, self._left
        if len(self._buf) - pos < left:
            return False
        self._pos = pos + left
        request = self._request
        request.body = bytes(self._buf[pos:pos + left])
        self._done(request)
        return True

    def _parse_chunk_size(self):
        line = self._line(MAX_CHUNK_LINE, 400)
        if line is None:
            return False
        size = _parse_chunk_size(line)
        if size == 0:
            self._state, self._trailers = _TRAILER, 0
            return True
        self._total += size
        if self._total > self.max_body:
            raise HTTPError(413, f"chunked body larger than {self.max_body} bytes")
        self._state, self._left = _CHUNK_DATA, size
        return True

    def _parse_chunk_data(self):
        buf, pos = self._buf, self._pos
        take = min(len(buf) - pos, self._left)
        if take:
            self._parts.append(bytes(buf[pos:pos + take]))
            self._pos = pos + take
            self._left -= take
        if self._left:
            return False
        self._state = _CHUNK_END
        return True

    def _parse_chunk_end(self):
        pos = self._pos
        crlf = bytes(self._buf[pos:pos + 2])
        if crlf != b"\r\n"[:len(crlf)]:
            raise HTTPError(400, "chunk data not followed by CRLF")
        if len(crlf) < 2:
            return False
        self._pos = pos + 2
        self._state = _CHUNK_SIZE
        return True

    def _parse_trailer(self):
        line = self._line(MAX_LINE, 431)
        if line is None:
            return False
        if not line:
            request = self._request
            request.body = b"".join(self._parts)
            self._parts = []
            self._done(request)
            return True
        if self._trailers == MAX_FIELDS:
            raise HTTPError(431, f"more than {MAX_FIELDS} trailer fields")
        _parse_trailer_field(line)
        self._trailers += 1
        return True


def request_environ(request, base_environ, wsgi_input, content_length, client_address):
    """The request's part of the environ (PEP 3333), on a copy of the
    server's base_environ: the CGI keys, HTTP_* for each field, wsgi.input.

    CONTENT_LENGTH is the body's length whenever the request has a body
    (a chunked one is decoded by then). For a chunked request
    HTTP_TRANSFER_ENCODING stays, as sent, and wsgi.input_terminated says
    that wsgi.input ends where the body does: without it Werkzeug ignores
    CONTENT_LENGTH when the field says chunked, and a Flask app reads an
    empty body. It is left out otherwise: an application that sees it may
    call read() without a size, which PEP 3333 (and wsgiref's validator)
    does not allow.
    """
    environ = base_environ.copy()
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = request.path
    environ["QUERY_STRING"] = request.query
    environ["SERVER_PROTOCOL"] = request.version
    environ["REMOTE_ADDR"] = str(client_address[0])
    environ["REMOTE_PORT"] = str(client_address[1])
    environ["wsgi.input"] = wsgi_input
    if request.chunked:
        environ["wsgi.input_terminated"] = True
    if request.content_length is not None or request.chunked:
        environ["CONTENT_LENGTH"] = str(content_length)
    for name, value in request.headers:
        if "_" in name:
            continue  # X_Forwarded would pose as X-Forwarded: leave it out
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":  # several are refused unless all the same
            environ["CONTENT_TYPE"] = value
            continue
        if key == "CONTENT_LENGTH":
            continue  # set above, from the body
        key = "HTTP_" + key
        if key in environ:
            joiner = "; " if key == "HTTP_COOKIE" else ", "
            environ[key] = environ[key] + joiner + value
        else:
            environ[key] = value
    if request.authority is not None:  # absolute-form target wins over Host
        environ["HTTP_HOST"] = request.authority
    return environ


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
        return request_environ(self.request, self.server.base_environ, self.input,
                               self.input.length, self.client_address)

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
