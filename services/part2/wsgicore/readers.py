"""wsgicore.readers: the blocking servers' side of reading a request.

read_request and read_chunked_body feed wsgicore.parser.RequestParser
(stream_body mode) with what a buffered stream holds, and take from the
stream exactly the bytes the parser used: the rest (a Content-Length body)
stays there for wsgi.input, an InputStream that never reads past the body.
_SocketReader is the raw stream under a connection's BufferedReader: one
deadline for a whole request head. The streams are anything with read()
and peek() (a BufferedReader) or read(), tell() and seek() (io.BytesIO).
"""

import io
import tempfile
import time

from .parser import RequestParser
from .request import MAX_CHUNKED_BODY, ClientDisconnected

SPOOL_SIZE = 1024 * 1024  # a decoded chunked body moves to a temp file past this
READ_BUFFER = 64 * 1024


class _SeekablePeek:
    """peek() for a stream without one (io.BytesIO): read, then seek back."""

    def __init__(self, rfile):
        self.rfile = rfile

    def __call__(self, size):
        where = self.rfile.tell()
        data = self.rfile.read(size)
        self.rfile.seek(where)
        return data


def _pump(rfile, parser):
    """Feed parser from rfile until it hands out a request; take from rfile
    the bytes it parsed, no more. None if rfile ended cleanly before one.
    peek() gives the bytes ahead without taking them; it waits for more only
    when nothing is buffered."""
    peek = getattr(rfile, "peek", None) or _SeekablePeek(rfile)
    feed, next_request, read = parser.feed, parser.next_request, rfile.read
    while True:
        data = peek(READ_BUFFER)
        if not data:
            parser.feed_eof()  # HTTPError if a request was cut short
            return next_request()
        feed(data)
        request = next_request()
        if request is not None:
            read(len(data) - parser.unparsed)
            return request
        read(len(data))


def read_request(rfile):
    """READ_HEAD: read and check one request head from a buffered stream.

    Returns a Request, or None if the stream ended before a request line.
    Raises HTTPError for anything the server must refuse, and nothing else
    for any input (the stream's own errors, like a socket timeout, pass).
    A Content-Length body stays in the stream (see InputStream).
    """
    return _pump(rfile, RequestParser(stream_body=True))


def read_chunked_body(rfile, max_size=MAX_CHUNKED_BODY):
    """READ_BODY for Transfer-Encoding: chunked. Returns (file, length).

    The decoded body goes into a SpooledTemporaryFile (memory up to 1 MiB,
    then disk), positioned at 0. Raises HTTPError on a malformed or
    truncated body and 413 past max_size.
    """
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE)
    try:
        parser = RequestParser(stream_body=True)
        parser.decode_chunked(body.write, max_size)
        _pump(rfile, parser)
        length = body.tell()
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body, length


class SocketReader(io.RawIOBase):
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
