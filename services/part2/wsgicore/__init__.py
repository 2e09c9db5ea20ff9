"""wsgicore: the HTTP/1.1 and WSGI (PEP 3333) core of webserver2, 3h, 4a and 4b.

The article's webserver2.py reads the request with one recv(1024), splits
the first line on spaces, and hands the rest to the application. That is
enough to show how WSGI works and wrong in every other way: a body longer
than 1024 bytes is cut off, a malformed request crashes the server, a
silent client hangs it. This package does the same job correctly, so that
the lesson files (webserver2.py, iterative; webserver3h.py, one fork per
connection; webserver4a.py and 4b.py, pre-forked workers) stay small and
only show what they teach. One module a role (docs/wsgicore.md draws it):

  request.py     the grammar of a request head: limits, HTTPError, Request
  parser.py      RequestParser: the one parser, fed bytes (every server's)
  readers.py     the blocking servers' reading: the parser fed from a
                 socket, wsgi.input (InputStream), a chunked body spooled
  environ.py     a Request -> the environ
  response.py    ResponseWriter: status, headers, the body -> bytes, and
                 the framing (Content-Length, chunked, close)
  log.py         AccessLog (its buffering a parameter), access_line, log
  connection.py  WSGIConnection (one request per connection: webserver2,
                 3h, 4a) and WSGIExchange (keep-alive: webserver4b),
                 siblings over BaseConnection
  server.py      BaseWSGIServer: the listen socket, base environ, set_app
  cli.py         `module:callable` and the environment's settings

request.py, parser.py, environ.py and response.py do no I/O: they are
tested with bytes alone. A request goes through named phases (h11's habit
of naming states; see Phase):

  READ_HEAD      read the request line and the header fields up to the empty
                 line, within size limits and within one deadline for the
                 whole head (REQUEST_TIMEOUT, 10 s), so a client that drips
                 bytes cannot hold the server forever.
  READ_BODY      a chunked body is decoded here, before the application
                 runs, and handed over with a CONTENT_LENGTH like any other.
                 A Content-Length body stays in the socket: the application
                 reads it through wsgi.input, which never reads past it
                 (webserver4b's loop has the whole body by then).
  CALL_APP       build environ (get_environ) and call
                 application(environ, start_response).
  SEND_RESPONSE  iterate the body; status and headers go out with the first
                 non-empty chunk (or at the end); result.close() always runs.
  CLOSED         one access line goes to stderr; WSGIConnection closes the
                 socket, a WSGIExchange tells the loop whether to keep it.

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
  (webserver4b only) a body over MAX_BUFFERED_BODY ...... 413
  Expect: anything but 100-continue (HTTP/1.1) .......... 417
  more than one Host field, differing Content-Types ..... 400
  head not complete within REQUEST_TIMEOUT .............. 408 (if anything
                                                          arrived; else the
                                                          connection is just
                                                          closed)

What it does NOT do (say it plainly, as h11 does):
  - keep-alive and pipelining only through WSGIExchange (webserver4b);
    WSGIConnection serves one request per connection, `Connection: close`;
  - a response of unknown length is chunked only where the connection stays
    open (HTTP/1.1 keep-alive, webserver4b); elsewhere it ends when the
    server closes the connection;
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
  - a Content-Length body is not capped in the blocking servers: the
    application decides how much it reads (Django and Flask have their own
    limits); a request with neither Content-Length nor Transfer-Encoding
    has an empty body;
  - `Expect: 100-continue` is answered when the application first reads
    wsgi.input (or before a chunked body is decoded), never eagerly.
"""

import errno

from .cli import (
    ACCESS_LOG_BUFFER,
    KEEP_ALIVE,
    WORKERS,
    Option,
    Settings,
    UsageError,
    load_application,
    server_from_command_line,
    settings_from_env,
)
from .connection import (
    LINGER_BYTES,
    LINGER_SECONDS,
    SEND_SLICE,
    BaseConnection,
    WSGIConnection,
    WSGIExchange,
    refuse_connection,
)
from .environ import request_environ
from .log import AccessLog, access_line, log
from .parser import RequestParser
from .readers import READ_BUFFER, SPOOL_SIZE, InputStream, read_chunked_body, read_request
from .request import (
    FORBIDDEN_TRAILERS,
    MAX_BUFFERED_BODY,
    MAX_CHUNK_LINE,
    MAX_CHUNKED_BODY,
    MAX_EMPTY_LINES,
    MAX_FIELDS,
    MAX_LINE,
    ClientDisconnected,
    HTTPError,
    Phase,
    Request,
)
from .response import (
    HOP_BY_HOP,
    SERVER_HEADER,
    SERVER_SOFTWARE,
    ResponseWriter,
    http_date,
    simple_response,
)
from .server import BaseWSGIServer

# errno values that mean "out of descriptors or memory, try again later"
# (accept() in every server: back off, keep serving)
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

__all__ = [
    "ACCESS_LOG_BUFFER", "FORBIDDEN_TRAILERS", "HOP_BY_HOP", "KEEP_ALIVE", "LINGER_BYTES",
    "LINGER_SECONDS", "MAX_BUFFERED_BODY", "MAX_CHUNKED_BODY", "MAX_CHUNK_LINE",
    "MAX_EMPTY_LINES", "MAX_FIELDS", "MAX_LINE", "READ_BUFFER", "RESOURCE_ERRNOS",
    "SEND_SLICE", "SERVER_HEADER", "SERVER_SOFTWARE", "SPOOL_SIZE", "WORKERS", "AccessLog",
    "BaseConnection", "BaseWSGIServer", "ClientDisconnected", "HTTPError", "InputStream",
    "Option", "Phase", "Request", "RequestParser", "ResponseWriter", "Settings", "UsageError",
    "WSGIConnection", "WSGIExchange", "access_line", "http_date", "load_application", "log",
    "read_chunked_body", "read_request", "refuse_connection", "request_environ",
    "server_from_command_line", "settings_from_env", "simple_response",
]
