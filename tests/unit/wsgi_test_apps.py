"""WSGI applications that break the rules, one per path, for the tests of a
real webserver2 (test_wsgicore_server.py, which serves `wsgi_test_apps:app`
with this folder on PYTHONPATH); any other path goes to ../part2's wsgiapp.
Also `stream`, an application that yields its body in pieces, for the part 4
tests (a response of unknown length)."""

import json
import sys

from wsgiapp import app as wsgi_app

TEXT = [("Content-Type", "text/plain")]


def fixed(status, headers, body=(b"should not be seen\n",)):
    def view(environ, start_response):
        start_response(status, headers)
        return list(body)
    return view


def crash(environ, start_response):
    raise RuntimeError("boom before start_response")


def crash_after_headers(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"partial body "
    raise RuntimeError("boom after the headers")


def body_str(environ, start_response):
    start_response("200 OK", TEXT)
    return ["a str, not bytes"]


def twice(environ, start_response):
    start_response("200 OK", TEXT)
    start_response("200 OK", TEXT)
    return [b"x"]


def exc_info_early(environ, start_response):
    start_response("200 OK", TEXT)
    try:
        raise ValueError("changed my mind")
    except ValueError:
        start_response("500 Oops", TEXT, sys.exc_info())
    return [b"custom error page\n"]


def exc_info_late(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"already sent ")
    try:
        raise ValueError("too late")
    except ValueError:
        start_response("500 Oops", TEXT, sys.exc_info())  # re-raises
    return [b"never"]


def use_write(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"via write, ")
    return [b"then the iterable\n"]


def late_start(environ, start_response):
    def body():
        start_response("200 OK", TEXT)
        yield b""
        yield b""
        yield b"started late\n"
    return body()


class Closing:
    def __init__(self, environ, chunks, fail=False):
        self.environ, self.chunks, self.fail = environ, chunks, fail

    def __iter__(self):
        yield from self.chunks
        if self.fail:
            raise RuntimeError("fail in iteration")

    def close(self):
        self.environ["wsgi.errors"].write("CLOSE CALLED " + self.environ["PATH_INFO"] + "\n")
        self.environ["wsgi.errors"].flush()


def closing(environ, start_response):
    start_response("200 OK", TEXT)
    return Closing(environ, [b"a", b"b"])


def closing_fail(environ, start_response):
    start_response("200 OK", TEXT)
    return Closing(environ, [b"a"], fail=True)


def too_long_stream(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "5")])
    yield b"0123"
    yield b"4567"
    yield b"89"


def no_start(environ, start_response):
    return [b"x"]


def stream(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"one\n"
    yield b"two\n"


def read_some(environ, start_response):
    data = environ["wsgi.input"].read(10)
    start_response("200 OK", TEXT)
    return [b"read " + data]


def dump(environ, start_response):
    body = json.dumps({k: v for k, v in environ.items() if type(v) is str}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


ROUTES = {
    "/crash": crash,
    "/crash-after-headers": crash_after_headers,
    "/body-str": body_str,
    "/twice": twice,
    "/exc-info-early": exc_info_early,
    "/exc-info-late": exc_info_late,
    "/write": use_write,
    "/late-start": late_start,
    "/closing": closing,
    "/closing-fail": closing_fail,
    "/too-long": fixed("200 OK", TEXT + [("Content-Length", "5")], [b"0123456789"]),
    "/too-long-stream": too_long_stream,
    "/no-start": no_start,
    "/no-content": fixed("204 No Content", [], [b"body that must not be sent"]),
    "/stream": stream,
    "/read-some": read_some,
    "/status-no-reason": fixed("200 ", TEXT, [b"ok\n"]),
    "/status-short": fixed("200", TEXT),
    "/status-bytes": fixed(b"200 OK", TEXT),
    "/status-999": fixed("999 Nope", TEXT),
    "/status-100": fixed("100 Continue", TEXT),
    "/headers-tuple": fixed("200 OK", tuple(TEXT)),
    "/header-list-item": fixed("200 OK", [["Content-Type", "text/plain"]]),
    "/header-bytes": fixed("200 OK", [(b"Content-Type", b"text/plain")]),
    "/header-crlf": fixed("200 OK", TEXT + [("X-Evil", "a\r\nSet-Cookie: x=1")]),
    "/header-unicode": fixed("200 OK", TEXT + [("X-Name", "caf\u20ac")]),
    "/header-name-space": fixed("200 OK", TEXT + [("Bad Name", "x")]),
    "/hop-connection": fixed("200 OK", TEXT + [("Connection", "keep-alive")]),
    "/hop-transfer-encoding": fixed("200 OK", TEXT + [("Transfer-Encoding", "chunked")]),
    "/bad-content-length": fixed("200 OK", TEXT + [("Content-Length", "ten")]),
}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/dump"):
        return dump(environ, start_response)
    return ROUTES.get(path, wsgi_app)(environ, start_response)
