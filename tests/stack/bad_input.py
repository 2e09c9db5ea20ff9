"""The malformed requests every WSGI server of the stack is sent, what
gunicorn 23 answers to each today, and the two slow clients (a drip-fed
head, an idle connection). Used by test_wsgi_bad_input.py (webserver2,
webserver3h) and test_part4.py (webserver4a, 4b)."""

from __future__ import annotations

from dataclasses import dataclass

from instrument import wire
from instrument.wire import chunked

REQUEST_TIMEOUT = 10.0  # the services' default (wsgicore.settings_from_env)
H = b"Host: lsbaws.test\r\n"


@dataclass(frozen=True)
class Bad:
    id: str
    data: bytes
    expect: int | None  # None: a close without an answer
    shut_wr: bool = False  # the client closes its sending side after the data
    what: str = ""


def head(*lines: bytes, start: bytes = b"POST /echo HTTP/1.1") -> bytes:
    return start + b"\r\n" + H + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


LONG = b"a" * 9000
CASES = [
    # --- the request line
    Bad("garbage-line", b"HELLO\r\n\r\n", 400, what="no method, target, version"),
    Bad("http-0.9-style", b"GET /hello\r\n\r\n", 400, what="two parts"),
    Bad("four-parts", b"GET /hello HTTP/1.1 extra\r\n" + H + b"\r\n", 400),
    Bad("double-space", b"GET  /hello HTTP/1.1\r\n" + H + b"\r\n", 400),
    Bad("bad-method-char", b"G(T /hello HTTP/1.1\r\n" + H + b"\r\n", 400),
    Bad("lowercase-version", b"GET /hello http/1.1\r\n" + H + b"\r\n", 400),
    Bad("version-1.x", b"GET /hello HTTP/1.x\r\n" + H + b"\r\n", 400),
    Bad("version-1.10", b"GET /hello HTTP/1.10\r\n" + H + b"\r\n", 400),
    Bad("version-2.0", b"GET /hello HTTP/2.0\r\n" + H + b"\r\n", 505, what="well-formed, unsupported"),
    Bad("version-0.9", b"GET /hello HTTP/0.9\r\n" + H + b"\r\n", 505),
    Bad("target-no-slash", b"GET hello HTTP/1.1\r\n" + H + b"\r\n", 400),
    Bad("target-ftp-scheme", b"GET ftp://x/hello HTTP/1.1\r\n" + H + b"\r\n", 400),
    Bad("asterisk-with-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    Bad("nul-in-target", b"GET /he\x00llo HTTP/1.1\r\n" + H + b"\r\n", 400),
    Bad("only-empty-lines", b"\r\n" * 6, 400, what="more than 4 CRLFs before the line"),
    Bad("request-line-9000", b"GET /" + LONG + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    # --- header fields
    Bad("header-without-colon", head(b"X-Bad header"), 400),
    Bad("space-before-colon", head(b"X-Bad : 1"), 400),
    Bad("space-in-name", head(b"X Bad: 1"), 400),
    Bad("empty-name", head(b": value"), 400),
    Bad("non-ascii-name", head("X-Ä: 1".encode()), 400),
    Bad("obs-fold", head(b"X-A: 1", b"  folded"), 400),
    Bad("obs-fold-tab", head(b"X-A: 1", b"\tfolded"), 400),
    Bad("nul-in-value", head(b"X-A: a\x00b"), 400),
    Bad("bare-cr-in-value", head(b"X-A: a\rb"), 400),
    Bad("del-in-value", head(b"X-A: a\x7fb"), 400),
    Bad("bare-lf-lines", b"GET /hello HTTP/1.1\nHost: lsbaws.test\n\n", 400),
    Bad("bare-lf-one-header", b"GET /hello HTTP/1.1\r\nX-A: 1\n" + H + b"\r\n", 400),
    Bad("two-hosts", b"GET /hello HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    Bad("header-line-9000", head(b"X-Big: " + LONG), 431),
    Bad("101-header-fields", head(*[b"X-F%d: 1" % i for i in range(101)]), 431),
    # --- framing: Content-Length, Transfer-Encoding, Expect
    Bad("conflicting-content-length", head(b"Content-Length: 5", b"Content-Length: 6") + b"hello!",
        400),
    Bad("content-length-list", head(b"Content-Length: 5, 6") + b"hello!", 400),
    Bad("negative-content-length", head(b"Content-Length: -5") + b"hello", 400),
    Bad("non-digit-content-length", head(b"Content-Length: abc") + b"hello", 400),
    Bad("plus-content-length", head(b"Content-Length: +5") + b"hello", 400),
    Bad("hex-content-length", head(b"Content-Length: 0x5") + b"hello", 400),
    Bad("19-digit-content-length", head(b"Content-Length: 1234567890123456789"), 400),
    Bad("content-length-and-chunked",
        head(b"Content-Length: 5", b"Transfer-Encoding: chunked") + chunked(b"hello"), 400,
        what="request smuggling's classic"),
    Bad("chunked-and-content-length",
        head(b"Transfer-Encoding: chunked", b"Content-Length: 5") + chunked(b"hello"), 400),
    Bad("transfer-encoding-gzip", head(b"Transfer-Encoding: gzip") + b"hello", 501),
    Bad("transfer-encoding-chunked-twice", head(b"Transfer-Encoding: chunked, chunked")
        + chunked(b"hello"), 400),
    Bad("transfer-encoding-empty", head(b"Transfer-Encoding: ") + b"hello", 400),
    Bad("chunked-in-http-1.0", head(b"Transfer-Encoding: chunked",
                                    start=b"POST /echo HTTP/1.0") + chunked(b"hello"), 400),
    Bad("chunk-size-not-hex", head(b"Transfer-Encoding: chunked") + b"zz\r\nhello\r\n0\r\n\r\n", 400),
    Bad("chunk-size-17-digits", head(b"Transfer-Encoding: chunked")
        + b"1" * 17 + b"\r\nhello\r\n0\r\n\r\n", 400),
    Bad("chunk-without-crlf", head(b"Transfer-Encoding: chunked") + b"5\r\nhelloXX0\r\n\r\n", 400),
    Bad("chunked-body-truncated", head(b"Transfer-Encoding: chunked") + b"a\r\nhel", 400,
        shut_wr=True),
    Bad("expect-unknown", head(b"Expect: 200-ok", b"Content-Length: 5") + b"hello", 417),
    # --- the client goes away
    Bad("head-truncated", b"GET /hello HTTP/1.1\r\n" + H, 400, shut_wr=True,
        what="closed before the empty line"),
    Bad("line-truncated", b"GET /hello HT", 400, shut_wr=True),
    Bad("body-truncated", head(b"Content-Length: 100") + b"only 10 b", None, shut_wr=True,
        what="closed 90 bytes short: nothing to answer"),
]

GUNICORN_SAYS = {  # what gunicorn 23 (sync) answers today: README's table, asserted
    "garbage-line": "400 Bad Request",
    "http-0.9-style": "400 Bad Request",
    "four-parts": "400 Bad Request",
    "double-space": "400 Bad Request",
    "bad-method-char": "400 Bad Request",
    "lowercase-version": "400 Bad Request",
    "version-1.x": "400 Bad Request",
    "version-1.10": "400 Bad Request",
    "version-2.0": "400 Bad Request",
    "version-0.9": "400 Bad Request",
    "target-no-slash": "200 OK",
    "target-ftp-scheme": "200 OK",
    "asterisk-with-get": "200 OK",
    "nul-in-target": "200 OK",
    "only-empty-lines": "400 Bad Request",
    "request-line-9000": "400 Bad Request + reset",
    "header-without-colon": "400 Bad Request",
    "space-before-colon": "400 Bad Request",
    "space-in-name": "400 Bad Request",
    "empty-name": "400 Bad Request",
    "non-ascii-name": "400 Bad Request",
    "obs-fold": "400 Bad Request",
    "obs-fold-tab": "400 Bad Request",
    "nul-in-value": "400 Bad Request",
    "bare-cr-in-value": "400 Bad Request",
    "del-in-value": "200 OK",
    "bare-lf-lines": "no answer (open)",
    "bare-lf-one-header": "400 Bad Request",
    "two-hosts": "200 OK",
    "header-line-9000": "431 Request Header Fields Too Large",
    "101-header-fields": "431 Request Header Fields Too Large",
    "conflicting-content-length": "400 Bad Request",
    "content-length-list": "400 Bad Request",
    "negative-content-length": "400 Bad Request",
    "non-digit-content-length": "400 Bad Request",
    "plus-content-length": "400 Bad Request",
    "hex-content-length": "400 Bad Request",
    "19-digit-content-length": "no answer (open)",
    "content-length-and-chunked": "400 Bad Request",
    "chunked-and-content-length": "400 Bad Request",
    "transfer-encoding-gzip": "200 OK",
    "transfer-encoding-chunked-twice": "400 Bad Request",
    "transfer-encoding-empty": "501 Bad Request",
    "chunked-in-http-1.0": "400 Bad Request",
    "chunk-size-not-hex": "close, no answer",
    "chunk-size-17-digits": "no answer (open)",
    "chunk-without-crlf": "close, no answer",
    "chunked-body-truncated": "close, no answer",
    "expect-unknown": "200 OK",
    "head-truncated": "close, no answer",
    "line-truncated": "close, no answer",
    "body-truncated": "200 OK",
}
SLOW_GUNICORN = "no answer (open)"  # the drip-fed head and the idle connection


def drip(server: str, results: dict, key: str, seconds: float):
    """A head sent one byte every 0.5 s: it would take ~20 s to finish."""
    data = b"GET /hello HTTP/1.1\r\nHost: lsbaws.test\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n"
    results[key] = wire.exchange(server, data=[bytes([b]) for b in data], timeout=seconds,
                                 pause=0.5)


def idle(server: str, results: dict, key: str, seconds: float):
    """Connect and send nothing."""
    results[key] = wire.exchange(server, data=b"", timeout=seconds)
