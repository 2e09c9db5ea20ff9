"""wsgicore.response: what goes out, as bytes. No socket, no I/O.

ResponseWriter takes what the application gives (start_response's status
and headers, then the body: a list at once, or chunk after chunk) and
returns the bytes to send, having decided the framing when the head goes
out:

  "length"   the application's Content-Length, or the server's when the
             body is a list or tuple (its length is known);
  "chunked"  an HTTP/1.1 response of unknown length on a connection that
             may stay open (Transfer-Encoding: chunked, ended by 0 CRLF CRLF);
  "close"    unknown length otherwise: the body ends when the connection
             does (`Connection: close`, HTTP/1.0 style);
  "none"     no body at all: HEAD, 204, 304.

Whether the connection may stay open is the caller's to say (keep_alive:
the client asked for it and the server keeps connections); the writer says
`Connection: close` whenever it cannot. simple_response is the server's own
short text/plain answer (errors, 503).
"""

import re
import sys
import time
from email.utils import formatdate
from http import HTTPStatus

from .request import DIGITS, TOKEN_CLASS

SERVER_SOFTWARE = "WSGIServer/0.3"
SERVER_HEADER = f"{SERVER_SOFTWARE} Python/{sys.version.split()[0]}"

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
_STATUS = re.compile(r"[2-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*")
_TOKEN_STR = re.compile(TOKEN_CLASS + "+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
LAST_CHUNK = b"0\r\n\r\n"

_date_cache = [0, ""]  # [second, its Date value]


def http_date():
    """The Date field's value, made once a second (formatdate costs 5 us)."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[1] = formatdate(now, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


def simple_response(status, detail, headers=(), head_only=False):
    """A complete short text/plain response, as bytes; it closes the connection."""
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


def check_start_response(status, response_headers):
    """PEP 3333's rules for start_response's arguments -> the application's
    Content-Length (or None), and whether it set Date and Server."""
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
            if not DIGITS.fullmatch(value.strip()):
                raise ValueError(f"invalid Content-Length {value!r}")
            app_length = int(value)
        elif lname == "date":
            has_date = True
        elif lname == "server":
            has_server = True
    return app_length, has_date, has_server


class ResponseWriter:
    """One response to one request, bytes out (see the module docstring).

        writer = ResponseWriter(method, version, keep_alive)
        writer.start(status, headers)     # start_response's checks; again with exc_info
        send(writer.body(b"chunk"))       # head first, then framed data ...
        send(writer.whole([b"a", b"b"]))  # ... or a list body at once, with its length
        send(writer.end())                # what ends the body (0 CRLF CRLF, or the head)

    After the head: `framing`, `keep_alive` (the connection may carry the
    next request once end() is sent), `status_code` for the log; `sent` counts
    the body bytes the application gave (not the chunk framing); `note` says
    when the application gave more than its Content-Length (cut).
    """

    __slots__ = ("method", "version", "keep_alive", "status", "headers", "framing",
                 "headers_sent", "ended", "sent", "note", "_app_length", "_has_date",
                 "_has_server", "_left")

    def __init__(self, method, version, keep_alive=False):
        self.method = method
        self.version = version
        self.keep_alive = keep_alive
        self.status = None
        self.headers = None
        self.framing = None
        self.headers_sent = False
        self.ended = False
        self.sent = 0
        self.note = ""
        self._app_length = None
        self._has_date = self._has_server = False
        self._left = None  # body bytes still allowed by the application's Content-Length

    @property
    def status_code(self):
        return self.status[:3] if self.status else None

    @property
    def complete(self):
        """The whole body went out, as framed: the connection may go on."""
        return self.ended and not (self._left and self.framing == "length")

    def start(self, status, response_headers):
        """Record a status and headers (PEP 3333's checks)."""
        checked = check_start_response(status, response_headers)
        self.status, self.headers = status, response_headers
        self._app_length, self._has_date, self._has_server = checked
        self._left = self._app_length

    def _body_allowed(self):
        return self.method != "HEAD" and self.status[:3] not in ("204", "304")

    def _head(self, body_length=None):
        self.headers_sent = True
        lines = [f"HTTP/1.1 {self.status}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        if not self._has_date:
            lines.append(f"Date: {http_date()}\r\n")
        if not self._has_server:
            lines.append(f"Server: {SERVER_HEADER}\r\n")
        no_content = self.status[:3] in ("204", "304")
        if self._app_length is None and body_length is not None and not no_content:
            lines.append(f"Content-Length: {body_length}\r\n")
        if not self._body_allowed():
            self.framing = "none"
        elif self._app_length is not None or body_length is not None:
            self.framing = "length"
        elif self.keep_alive and self.version == "HTTP/1.1":
            self.framing = "chunked"
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            self.framing = "close"
            self.keep_alive = False  # the end of the body is the end of the connection
        if self.keep_alive:  # HTTP/1.1's default; HTTP/1.0 must be told
            if self.version == "HTTP/1.0":
                lines.append("Connection: keep-alive\r\n")
            lines.append("\r\n")
        else:
            lines.append("Connection: close\r\n\r\n")
        return "".join(lines).encode("latin-1")

    def _fit(self, data):
        """Cut data to what the application's own Content-Length allows."""
        if self._left is not None:
            if len(data) > self._left:
                data = data[:self._left]
                if not self.note:
                    self.note = "application sent more than its Content-Length; cut"
            self._left -= len(data)
        return data

    @property
    def truncating(self):
        return bool(self.note)

    def body(self, data):
        """The bytes to send for one piece of the body (b"" for an empty one)."""
        if self.status is None:
            raise RuntimeError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"body data must be bytes, not {type(data).__name__}")
        data = self._fit(data)
        if not data:
            return b""
        head = b"" if self.headers_sent else self._head()
        if self.framing == "none":
            return head
        self.sent += len(data)
        if self.framing == "chunked":
            return b"%s%x\r\n%s\r\n" % (head, len(data), data)
        return head + data if head else data

    def whole(self, result):
        """A list or tuple body: head with its Content-Length and the body, at once."""
        if self.status is None:
            raise RuntimeError("the application returned without calling start_response()")
        for data in result:
            if type(data) is not bytes:
                raise TypeError(f"body data must be bytes, not {type(data).__name__}")
        if self.headers_sent:  # write() came first: the rest goes as more pieces
            out = b"".join([self.body(data) for data in result])
            return out + self.end()
        body = self._fit(result[0] if len(result) == 1 else b"".join(result))
        head = self._head(len(body))
        self.ended = True
        if self.framing == "none":
            return head
        self.sent += len(body)
        return head + body

    def end(self):
        """The bytes that end the response: the head if nothing was sent yet,
        the last chunk of a chunked body, else nothing."""
        if self.status is None:
            raise RuntimeError("the application returned without calling start_response()")
        if self.ended:
            return b""
        self.ended = True
        if not self.headers_sent:
            return self._head(0)
        return LAST_CHUNK if self.framing == "chunked" else b""
