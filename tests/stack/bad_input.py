"""The malformed requests every WSGI server of the stack is sent, what
gunicorn 27 answers to each today, and the two slow clients (a drip-fed
head, an idle connection). Used by test_wsgi_bad_input.py (webserver2,
webserver3h) and test_part4.py (webserver4a, 4b).

The bytes come from the one malformed-request corpus, conformance.cases,
by the case's name (`corpus`); what this suite expects of them (the status
ours answer, whether the client half-closes, gunicorn's answer) stays here
beside the name. The cases still written out here (`corpus` empty) have no
twin in the corpus yet: boundaries (6 empty lines, 101 fields, 17 hex
digits, 19 digits), request lines and folds it lacks, and a client that
goes away mid-head.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.cases import by_id
from instrument import clients, wire
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
    corpus: str = ""  # the conformance case whose bytes these are ("": written here)


def case(id: str, name: str, expect: int | None, shut_wr: bool = False, what: str = "") -> Bad:
    """The bad-input case `id`: the bytes of conformance case `name`."""
    return Bad(id, by_id(name).data, expect, shut_wr, what, corpus=name)


def head(*lines: bytes, start: bytes = b"POST /echo HTTP/1.1") -> bytes:
    return start + b"\r\n" + H + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


CASES = [
    # --- the request line
    Bad("garbage-line", b"HELLO\r\n\r\n", 400, what="no method, target, version"),
    case("http-0.9-style", "http-0.9", 400, what="two parts"),
    case("four-parts", "four-parts", 400),
    case("double-space", "two-spaces", 400),
    case("bad-method-char", "method-bad-char", 400),
    case("lowercase-version", "version-lowercase", 400),
    Bad("version-1.x", b"GET /hello HTTP/1.x\r\n" + H + b"\r\n", 400),
    Bad("version-1.10", b"GET /hello HTTP/1.10\r\n" + H + b"\r\n", 400),
    case("version-2.0", "version-2.0", 505, what="well-formed, unsupported"),
    Bad("version-0.9", b"GET /hello HTTP/0.9\r\n" + H + b"\r\n", 505),
    case("target-no-slash", "target-relative", 400),
    case("target-ftp-scheme", "absolute-form-ftp", 400),
    case("asterisk-with-get", "asterisk-not-options", 400),
    case("nul-in-target", "target-nul", 400),
    Bad("only-empty-lines", b"\r\n" * 6, 400, what="more than 4 CRLFs before the line"),
    case("request-line-9000", "target-too-long", 414),
    # --- header fields
    case("header-without-colon", "field-no-colon", 400),
    case("space-before-colon", "space-before-colon", 400),
    case("space-in-name", "field-name-space", 400),
    case("empty-name", "field-empty-name", 400),
    case("non-ascii-name", "field-name-non-ascii", 400),
    case("obs-fold", "obs-fold", 400),
    Bad("obs-fold-tab", head(b"X-A: 1", b"\tfolded"), 400),
    case("nul-in-value", "field-value-nul", 400),
    case("bare-cr-in-value", "field-value-bare-cr", 400),
    case("del-in-value", "field-value-del", 400),
    case("bare-lf-lines", "bare-lf", 400),
    case("bare-lf-one-header", "bare-lf-one-field", 400),
    case("two-hosts", "host-twice", 400),
    case("header-line-9000", "field-line-too-long", 431),
    Bad("101-header-fields", head(*[b"X-F%d: 1" % i for i in range(101)]), 431),
    # --- framing: Content-Length, Transfer-Encoding, Expect
    case("conflicting-content-length", "content-length-differing", 400),
    case("content-length-list", "content-length-list-differing", 400),
    case("negative-content-length", "content-length-negative", 400),
    case("non-digit-content-length", "content-length-letters", 400),
    case("plus-content-length", "content-length-plus", 400),
    case("hex-content-length", "content-length-hex", 400),
    Bad("19-digit-content-length", head(b"Content-Length: 1234567890123456789"), 400),
    Bad("content-length-and-chunked",
        head(b"Content-Length: 5", b"Transfer-Encoding: chunked") + chunked(b"hello"), 400,
        what="request smuggling's classic"),
    # the corpus's content-length-and-chunked sends Transfer-Encoding first
    case("chunked-and-content-length", "content-length-and-chunked", 400),
    case("transfer-encoding-gzip", "transfer-encoding-gzip", 501),
    case("transfer-encoding-chunked-twice", "chunked-twice", 400),
    case("transfer-encoding-empty", "transfer-encoding-empty", 400),
    case("chunked-in-http-1.0", "transfer-encoding-http-1.0", 400),
    case("chunk-size-not-hex", "chunk-size-not-hex", 400),
    Bad("chunk-size-17-digits", head(b"Transfer-Encoding: chunked")
        + b"1" * 17 + b"\r\nhello\r\n0\r\n\r\n", 400),
    case("chunk-without-crlf", "chunk-data-no-crlf", 400),
    case("chunked-body-truncated", "chunked-truncated-data", 400, shut_wr=True),
    case("expect-unknown", "expect-unknown", 417),
    # --- the client goes away
    Bad("head-truncated", b"GET /hello HTTP/1.1\r\n" + H, 400, shut_wr=True,
        what="closed before the empty line"),
    Bad("line-truncated", b"GET /hello HT", 400, shut_wr=True),
    case("body-truncated", "content-length-truncated", None, shut_wr=True,
         what="closed short of its Content-Length: nothing to answer"),
]

GUNICORN_SAYS = {  # what gunicorn 27 (sync) answers today: docs/wsgicore.md's table, asserted
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
    "target-no-slash": "400 Bad Request",
    "target-ftp-scheme": "200 OK",
    "asterisk-with-get": "400 Bad Request",
    "nul-in-target": "400 Bad Request",
    "only-empty-lines": "400 Bad Request",
    "request-line-9000": "414 URI Too Long",
    "header-without-colon": "400 Bad Request",
    "space-before-colon": "400 Bad Request",
    "space-in-name": "400 Bad Request",
    "empty-name": "400 Bad Request",
    "non-ascii-name": "400 Bad Request",
    "obs-fold": "400 Bad Request",
    "obs-fold-tab": "400 Bad Request",
    "nul-in-value": "400 Bad Request",
    "bare-cr-in-value": "400 Bad Request",
    "del-in-value": "400 Bad Request",
    "bare-lf-lines": "400 Bad Request",
    "bare-lf-one-header": "400 Bad Request",
    "two-hosts": "400 Bad Request",
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
    "transfer-encoding-gzip": "400 Bad Request",
    "transfer-encoding-chunked-twice": "400 Bad Request",
    "transfer-encoding-empty": "501 Bad Request",
    "chunked-in-http-1.0": "400 Bad Request",
    "chunk-size-not-hex": "400 Bad Request",
    "chunk-size-17-digits": "no answer (open)",
    "chunk-without-crlf": "400 Bad Request",
    "chunked-body-truncated": "close, no answer",
    "expect-unknown": "417 Expectation Failed",
    "head-truncated": "close, no answer",
    "line-truncated": "close, no answer",
    "body-truncated": "200 OK",
}
SLOW_GUNICORN = "no answer (open)"  # the drip-fed head and the idle connection


def drip(server: str, results: dict, key: str, seconds: float):
    """A head sent one byte every 0.5 s (instrument.clients' slow client): it
    would take ~45 s to finish."""
    data = clients.slow_head("lsbaws.test")
    slow = clients.slow_clients(server, data=data, interval=0.5, timeout=seconds)[0]
    results[key] = slow.wait(seconds + 5)


def idle(server: str, results: dict, key: str, seconds: float):
    """Connect and send nothing."""
    results[key] = wire.exchange(server, data=b"", timeout=seconds)
