"""wsgicore.parser: the one request parser, fed bytes as they arrive.

Every server here parses with it: webserver4b's event loop feeds it what
recv() returned; the blocking servers (webserver2, 3h, 4a) feed it what
they read from the socket (wsgicore.readers). No I/O of its own.

    parser = RequestParser()
    parser.feed(data)              # HTTPError as soon as the input is known bad
    while (request := parser.next_request()) is not None:
        ...                        # request.body: the whole body, bytes
    parser.feed_eof()              # the peer closed: 400 if a request was cut short

next_request() returns a Request whose head is parsed and whose body has
fully arrived (a chunked body decoded), or None while more bytes are
needed. Pipelined requests come out one after another: the bytes after a
complete request are parsed only once it was handed out, so an error in a
later request is raised by the next_request() call after the good ones,
never before them. After an HTTPError the parser is dead: every call raises
it again (answer it and close the connection).

RequestParser(stream_body=True) is the blocking servers' mode: the request
comes out as soon as its head is complete and the parser stops there; the
bytes after the head (`unparsed`) are the caller's (a Content-Length body
is read by the application through wsgi.input). decode_chunked(write) then
decodes a chunked body through the same states, handing each piece of
data to write() (a spool file) instead of keeping it.
"""

from .request import (
    MAX_BUFFERED_BODY,
    MAX_CHUNK_LINE,
    MAX_FIELDS,
    MAX_LINE,
    Head,
    HTTPError,
    Request,
    check_line,
    parse_chunk_size,
    parse_head_block,
    parse_trailer_field,
)

# the parser's states (named, h11's habit)
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _CALLER = (
    "head", "body", "chunk size", "chunk data", "chunk end", "trailer", "body is the caller's")


class RequestParser:
    """See the module docstring. `pending` is the Request whose head is
    complete while its body is still arriving (look at its expect_continue
    to send "100 Continue"); `idle` is true when no part of a request is
    buffered (an idle keep-alive connection, closed quietly on a timeout,
    not with 408). The limits are wsgicore.request's, and one more because
    the body is kept in memory: a body over max_body gets 413.
    """

    __slots__ = ("max_body", "_stream", "_buf", "_pos", "_state", "_head", "_request", "_ready",
                 "_error", "_eof", "_left", "_parts", "_write", "_total", "_trailers")

    def __init__(self, max_body=MAX_BUFFERED_BODY, stream_body=False):
        self.max_body = max_body
        self._stream = stream_body
        self._buf = bytearray()
        self._pos = 0  # where the unparsed bytes start in _buf
        self._state = _HEAD
        self._head = Head()
        self._request = None  # head parsed, body still arriving
        self._ready = None  # complete, not yet handed out
        self._error = None
        self._eof = False
        self._left = 0  # body or chunk bytes still to come
        self._parts = None  # decoded chunks, kept in memory (a chunked body)
        self._write = None  # where decoded chunk data goes
        self._total = 0
        self._trailers = 0

    @property
    def idle(self):
        return (self._ready is None and self._state is _HEAD and self._head.request is None
                and self._pos == len(self._buf))

    @property
    def pending(self):
        return self._request

    @property
    def unparsed(self):
        """How many fed bytes the parser has not parsed (after the head, in
        stream_body mode: the start of the body)."""
        return len(self._buf) - self._pos

    def feed(self, data):
        if self._error is not None:
            raise self._error
        if self._ready is None and not self._buf and self._state is _HEAD:
            # the common case: a whole head in one piece, nothing before it
            # buffered: parse it from data itself (no copy into _buf first)
            end = data.find(b"\r\n\r\n")
            if end > 0 and self._head.request is None and not self._head.empty_lines:
                try:
                    request = parse_head_block(data[:end])
                    if request is not None:
                        self._start_body(request)
                except HTTPError as err:
                    self._fail(err)
                if request is not None:
                    data = data[end + 4:]
                    if not data:
                        return
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

    def decode_chunked(self, write, max_size, request=None):
        """stream_body mode, after a chunked request's head: decode the body
        that follows, each piece to write(); next_request() gives the
        request again once the body and its trailer are complete."""
        self._request = request or Request("POST", "/", "", "HTTP/1.1", chunked=True)
        self._write, self.max_body = write, max_size
        self._total, self._state = 0, _CHUNK_SIZE
        self._parse()

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
        elif state is _CALLER:
            return
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
                elif state is _TRAILER:
                    progress = self._parse_trailer()
                else:  # _CALLER: what follows is not ours to parse
                    break
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
        return check_line(bytes(buf[pos:end]), limit, too_long_status)

    def _parse_head(self):
        head = self._head
        if head.request is None and not head.empty_lines:  # the common case first
            buf, pos = self._buf, self._pos
            end = buf.find(b"\r\n\r\n", pos)
            if end > pos:
                request = parse_head_block(bytes(buf[pos:end]))
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
        if self._stream:  # the head is all: the caller reads the body
            self._ready, self._state = request, _CALLER
        elif request.chunked:
            self._request, self._state = request, _CHUNK_SIZE
            self._parts, self._total = [], 0
            self._write = self._parts.append
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
        self._state = _CALLER if self._stream else _HEAD
        head = self._head
        if head.request is not None or head.empty_lines:
            self._head = Head()
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
        size = parse_chunk_size(line)
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
            self._write(bytes(buf[pos:pos + take]))
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
            if not self._stream:
                request.body = b"".join(self._parts)
                self._parts = []
            self._done(request)
            return True
        if self._trailers == MAX_FIELDS:
            raise HTTPError(431, f"more than {MAX_FIELDS} trailer fields")
        parse_trailer_field(line)
        self._trailers += 1
        return True
