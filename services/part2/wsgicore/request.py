"""wsgicore.request: the grammar of a request head, its limits and errors.

Bytes in, a Request or an HTTPError out: no socket, no file, no clock.
Each piece of RFC 9112 / RFC 9110 is one function (the request line, a
field line, the framing fields, a chunk-size line, a trailer field); the
one parser that drives them over a byte stream is wsgicore.parser.
"""

import enum
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

MAX_LINE = 8190  # request line and each header field line, without CRLF
MAX_FIELDS = 100  # header fields in the head, trailer fields after a chunked body
MAX_EMPTY_LINES = 1  # empty lines ignored before the request line (RFC 9112 section 2.2)
MAX_CHUNK_LINE = 4096  # chunk size plus chunk extensions
MAX_CHUNKED_BODY = 64 * 1024 * 1024  # decoded size of a chunked body
MAX_BUFFERED_BODY = 64 * 1024 * 1024  # the event loop keeps a whole body in memory

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

TOKEN_CLASS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"  # tchar (RFC 9110 section 5.6.2)
_TOKEN = re.compile(TOKEN_CLASS.encode() + b"+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # everything below SP but HTAB, and DEL
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")  # no whitespace, controls, non-ASCII
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_ABSOLUTE_FORM = re.compile(rb"(?i)https?://([^/?]*)")
_AUTHORITY = re.compile(r"(?:\[[0-9A-Za-z:.\-_~!$&'()*+,;=]+\]|[0-9A-Za-z\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
# A whole common head (see parse_head_block): the request line's
# METHOD /path?query HTTP/1.x ('#' excluded: _parse_request_line drops a
# fragment), then field lines: a token, a colon, a value without controls
_HEAD_BLOCK = re.compile(rf"({TOKEN_CLASS}+) (/[!\"$-~]*) (HTTP/1\.[01])"
                         rf"((?:\r\n{TOKEN_CLASS}+:[^\x00-\x08\x0a-\x1f\x7f]*)*)")
_FIELD = re.compile(  # name, and the value without the whitespace around it
    rf"\r\n({TOKEN_CLASS}+):[ \t]*((?:[^\r\n \t]+(?:[ \t]+[^\r\n \t]+)*)?)[ \t]*")
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_EXT = re.compile(  # *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
    rb"(?:[ \t]*;[ \t]*" + _TOKEN.pattern + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN.pattern
    + rb"|" + _QUOTED + rb"))?)*")
DIGITS = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class Phase(enum.Enum):
    """Where a connection is (see wsgicore's docstring)."""

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
    body: bytes | None = None  # the whole body, when the parser was asked to keep it


def check_line(raw, limit, too_long_status):
    """A line up to its LF (the LF itself cut off) -> the line without CR."""
    if raw[-1:] != b"\r":
        raise HTTPError(400, "line ends in a bare LF, not CRLF")
    line = raw[:-1]
    if len(line) > limit:
        raise HTTPError(too_long_status, f"line longer than {limit} bytes")
    if _CONTROL.search(line):
        raise HTTPError(400, "control character in the request head")
    return line


def parse_field(line):
    """'Name: value' -> ('Name', 'value'), or HTTPError(400)."""
    if line[:1] in (b" ", b"\t"):
        raise HTTPError(400, "obsolete line folding (a line starting with whitespace)")
    name, colon, value = line.partition(b":")
    if not colon:
        raise HTTPError(400, "header field without a colon")
    if not _TOKEN.fullmatch(name):
        raise HTTPError(400, "invalid header field name (whitespace before the colon?)")
    return name.decode("ascii"), value.strip(b" \t").decode("latin-1")


def parse_trailer_field(line):
    """A trailer field: a field, and not one that must come before the content."""
    name, value = parse_field(line)
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


def parse_request_line(line):
    """METHOD target HTTP/1.x -> a Request with no fields yet."""
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


def check_framing(request):
    """Content-Length, Transfer-Encoding, Expect, Host, Content-Type,
    Connection: RFC 9112 sections 3.2, 6 and 9.3, RFC 9110 section 5.3.
    Sets the request's content_length, chunked, expect_continue, keep_alive."""
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
        if not all(DIGITS.fullmatch(item) for item in lengths):
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


def parse_chunk_size(line):
    """chunk-size [ chunk-ext ] (RFC 9112 section 7.1) -> the size."""
    size_text, semicolon, extensions = line.partition(b";")
    if semicolon:
        size_text = size_text.rstrip(b" \t")  # BWS before ';' only
        if not _CHUNK_EXT.fullmatch(b";" + extensions):
            raise HTTPError(400, "invalid chunk extension")
    if not _HEX.fullmatch(size_text):
        raise HTTPError(400, "invalid chunk size")
    return int(size_text, 16)


def parse_head_block(block):
    """The common case in one pass: a whole head (up to the CRLF CRLF that
    ends it, not included) that is an origin-form request line and at most
    MAX_FIELDS well-formed fields, none longer than MAX_LINE. One match of
    _HEAD_BLOCK (made of the same token and character classes as
    parse_request_line, check_line and parse_field) and one findall do
    in C what the line-by-line path (Head) does per line in Python. Returns
    None for anything else: the caller then takes the head line by line,
    which finds the first error in order.
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
        check_framing(request)
    except HTTPError as err:
        err.request_line = request.request_line
        raise
    return request


class Head:
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
            self.request = parse_request_line(line)
            return None
        if not line:
            check_framing(request)
            return request
        if len(request.headers) == MAX_FIELDS:
            raise HTTPError(431, f"more than {MAX_FIELDS} header fields")
        request.headers.append(parse_field(line))
        return None

    def annotate(self, err):
        if self.first is not None:
            err.request_line = self.first.decode("latin-1")  # for the access log
        return err
