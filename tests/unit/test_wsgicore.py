"""wsgicore: the parser on its own, then the HTTP and WSGI behaviour of a real
webserver2 process on 127.0.0.1 (claims C8 and C9, and everything the
article's 1024-byte server got wrong). Runs on the host: no Docker needed.
"""

import hashlib
import importlib.util
import io
import os
import re
import socket
import sys
import textwrap
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PART2 = ROOT / "services" / "part2"
sys.path.insert(0, str(PART2))

if os.environ.get("WSGICORE"):  # the parser tests against another wsgicore.py, e.g.
    # git show HEAD~3:services/part2/wsgicore.py > /tmp/old.py; WSGICORE=/tmp/old.py pytest -k finding
    _spec = importlib.util.spec_from_file_location("wsgicore", os.environ["WSGICORE"])
    wsgicore = importlib.util.module_from_spec(_spec)
    sys.modules["wsgicore"] = wsgicore
    _spec.loader.exec_module(wsgicore)
else:
    import wsgicore  # noqa: E402

from instrument import wire  # noqa: E402
from instrument.local import LocalServer  # noqa: E402

# --------------------------------------------------------------------------
# helpers: the server is an instrument.local.LocalServer, the client
# instrument.wire; these only fix the defaults of these tests
# --------------------------------------------------------------------------

HOST = "127.0.0.1"


def request(method, path, headers=(), body=b"", version="HTTP/1.1"):
    """A request as bytes: Host 127.0.0.1, no Connection field added."""
    return wire.request(method, path, HOST, headers, body, version, close=False)


def read_to_close(sock, timeout=10.0):
    """What comes on a connected socket until the server closes it (FIN);
    a reset or a server that keeps it open fails the test."""
    reply = wire.exchange(HOST, 0, timeout=timeout, sock=sock)
    assert reply.eof, f"the connection did not end with a close: {reply.summary()}"
    return reply.data


def fetch(port, method, path, headers=(), body=b""):
    """One request on a fresh connection, read until the server closes it."""
    reply = wire.exchange(HOST, port, request(method, path, headers, body), timeout=10.0)
    assert reply.eof, f"the connection did not end with a close: {reply.summary()}"
    response = reply.response()
    assert response.status, f"no response head in {reply.data[:300]!r}"
    return response


def hello_works(port):
    response = fetch(port, "GET", "/hello")
    assert response.status == 200, response.raw[:300]
    assert response.raw_body == b"Hello world from a simple WSGI application!\n"


# --------------------------------------------------------------------------
# 1. the parser alone: read_request on an in-memory stream
# --------------------------------------------------------------------------


def parse(data):
    return wsgicore.read_request(io.BytesIO(data))


def test_parser_reads_a_full_head():
    req = parse(b"POST /a%20b/%C3%A9?x=1%202&y HTTP/1.1\r\nHost: h:1\r\n"
                b"Content-Length: 3\r\nX-Many: 1\r\nx-many: 2\r\nContent-Type: text/plain\r\n\r\nabc")
    assert (req.method, req.version, req.content_length, req.chunked) == ("POST", "HTTP/1.1", 3, False)
    assert req.path == "/a b/\xc3\xa9"  # percent-decoded bytes, as latin-1 (PEP 3333)
    assert req.query == "x=1%202&y"  # raw
    assert ("X-Many", "1") in req.headers and ("x-many", "2") in req.headers


def test_parser_accepts_one_leading_empty_line_absolute_form_and_options_star():
    assert parse(b"\r\nGET / HTTP/1.0\r\n\r\n").path == "/"
    req = parse(b"GET http://example.org:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n")
    assert (req.authority, req.path, req.query) == ("example.org:81", "/p", "q")
    assert parse(b"OPTIONS * HTTP/1.1\r\n\r\n").path == "*"


def test_parser_returns_none_for_a_connection_that_sent_nothing():
    assert parse(b"") is None


def test_parser_limits_are_exact():
    line = b"GET /" + b"a" * (wsgicore.MAX_LINE - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == wsgicore.MAX_LINE
    assert parse(line + b"\r\n\r\n").method == "GET"
    with pytest.raises(wsgicore.HTTPError) as err:
        parse(line[:5] + b"a" + line[5:] + b"\r\n\r\n")
    assert err.value.status == 414
    field = b"X: " + b"v" * (wsgicore.MAX_LINE - 3)
    assert parse(b"GET / HTTP/1.1\r\n" + field + b"\r\n\r\n").headers[0][0] == "X"
    with pytest.raises(wsgicore.HTTPError) as err:
        parse(b"GET / HTTP/1.1\r\n" + field + b"v\r\n\r\n")
    assert err.value.status == 431
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(wsgicore.MAX_FIELDS))
    assert len(parse(b"GET / HTTP/1.1\r\n" + fields + b"\r\n").headers) == 100
    with pytest.raises(wsgicore.HTTPError) as err:
        parse(b"GET / HTTP/1.1\r\n" + fields + b"Y: 1\r\n\r\n")
    assert err.value.status == 431


@pytest.mark.parametrize("content_length", [b"5", b"5, 5", b"05"])
def test_parser_accepts_repeated_equal_content_length(content_length):
    req = parse(b"POST / HTTP/1.1\r\nContent-Length: " + content_length + b"\r\n\r\n")
    assert req.content_length == 5


def test_chunked_decoding_with_extensions_and_trailers():
    body = (b"4;ext=1\r\nWiki\r\n5 ; a = \"q \\\" s\" ;b\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
            b"0\r\nX-Trailer: t\r\n\r\n")
    file, length = wsgicore.read_chunked_body(io.BytesIO(body))
    assert (file.read(), length) == (b"Wikipedia in\r\n\r\nchunks.", 23)


@pytest.mark.parametrize("body, status", [
    (b"z\r\nabc\r\n0\r\n\r\n", 400),  # not hex
    (b"-1\r\nabc\r\n0\r\n\r\n", 400),
    (b"3\r\nabcX\r\n0\r\n\r\n", 400),  # data not followed by CRLF
    (b"3\r\nab", 400),  # truncated
    (b"3\r\nabc\r\n", 400),  # no last chunk
    (b"3\nabc\r\n0\r\n\r\n", 400),  # bare LF
    (b"1" * 17 + b"\r\n", 400),  # more than 16 hex digits
    (b"3;" + b"e" * 5000 + b"\r\nabc\r\n0\r\n\r\n", 400),  # chunk line too long
    (b"0\r\n" + b"T: 1\r\n" * 101 + b"\r\n", 431),  # too many trailer fields
    (b"0\r\nBad trailer\r\n\r\n", 400),
])
def test_chunked_decoding_refuses_malformed_bodies(body, status):
    with pytest.raises(wsgicore.HTTPError) as err:
        wsgicore.read_chunked_body(io.BytesIO(body))
    assert err.value.status == status


def test_chunked_decoding_has_a_size_limit():
    with pytest.raises(wsgicore.HTTPError) as err:
        wsgicore.read_chunked_body(io.BytesIO(b"10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"), max_size=15)
    assert err.value.status == 413


def test_input_stream_is_bounded_by_its_length():
    rest = b"GET /next HTTP/1.1\r\n\r\n"
    make = lambda: wsgicore.InputStream(io.BytesIO(b"line1\nline2\nend" + rest), 15)  # noqa: E731
    assert make().read() == b"line1\nline2\nend"
    stream = make()
    assert [stream.read(4), stream.read(100), stream.read(1)] == [b"line", b"1\nline2\nend", b""]
    stream = make()
    assert [stream.readline(), stream.readline(3), stream.readline(), stream.readline(),
            stream.readline()] == [b"line1\n", b"lin", b"e2\n", b"end", b""]
    assert make().readlines() == [b"line1\n", b"line2\n", b"end"]
    assert make().readlines(3) == [b"line1\n"]
    assert list(make()) == [b"line1\n", b"line2\n", b"end"]


def test_input_stream_raises_when_the_client_stops_early():
    stream = wsgicore.InputStream(io.BytesIO(b"only ten b"), 100)
    with pytest.raises(wsgicore.ClientDisconnected, match="10 of 100"):
        stream.read()
    with pytest.raises(wsgicore.ClientDisconnected):
        wsgicore.InputStream(io.BytesIO(b"no newline"), 100).readline()


def test_input_stream_calls_the_continue_callback_once_on_first_read():
    calls = []
    stream = wsgicore.InputStream(io.BytesIO(b"abcdef"), 6, lambda: calls.append(1))
    assert calls == []
    stream.read(2)
    stream.read(2)
    assert calls == [1]


# --------------------------------------------------------------------------
# 1b. the findings of a conformance run, one test each. Each failed
#     on the wsgicore before the fix: WSGICORE=<old wsgicore.py> -k finding
# --------------------------------------------------------------------------


def serve_once(data, app):
    """One request through BaseWSGIServer.handle_one_request on a real
    socket, in-process: returns the raw response."""
    server = wsgicore.BaseWSGIServer(("127.0.0.1", 0), request_timeout=5.0)
    server.set_app(app)
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as client:
            conn, address = server.listen_socket.accept()
            worker = threading.Thread(target=server.handle_one_request, args=(conn, address))
            worker.start()
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
            raw = read_to_close(client)
            worker.join(10)
    finally:
        server.server_close()
    return raw


def environ_and_body(data):
    """The environ and the body an application gets for these bytes."""
    seen = {}

    def app(environ, start_response):
        seen["environ"] = dict(environ)
        seen["body"] = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    raw = serve_once(data, app)
    assert b" 200 " in raw.split(b"\r\n", 1)[0], raw[:300]
    return seen["environ"], seen["body"]


CHUNKED_FORM = (b"POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                b"3\r\na=1\r\n5\r\n&b=22\r\n0\r\n\r\n")


def test_finding_chunked_request_keeps_transfer_encoding_with_content_length():
    environ, body = environ_and_body(CHUNKED_FORM)
    assert body == b"a=1&b=22"
    assert environ["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert environ["CONTENT_LENGTH"] == "8"
    assert environ["wsgi.input_terminated"] is True
    # only there: an application that sees it may call read() without a size,
    # which PEP 3333 and wsgiref's validator do not allow
    environ, body = environ_and_body(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
    assert body == b"hi" and "wsgi.input_terminated" not in environ


@pytest.mark.parametrize("spec, path", [
    ("flaskapp:app", b"/form"), ("pyramidapp:app", b"/form"), ("djangoapp:app", b"/upload")])
def test_the_frameworks_read_a_chunked_body(spec, path):
    # Werkzeug reads CONTENT_LENGTH only with wsgi.input_terminated when the
    # field says chunked; Django and WebOb read CONTENT_LENGTH
    module_name, _, name = spec.partition(":")
    app = getattr(pytest.importorskip(module_name), name)
    raw = serve_once(CHUNKED_FORM.replace(b"/form", path), app)
    response = wire.parse_response(raw)
    assert response.status == 200, raw[:500]
    assert response.json() == {"fields": 2, "bytes": 5}


def refused(data, chunked_body=None):
    """The status read_request (and read_chunked_body) refuse data with."""
    with pytest.raises(wsgicore.HTTPError) as err:
        if chunked_body is None:
            parse(data)
        else:
            wsgicore.read_chunked_body(io.BytesIO(chunked_body))
    return err.value.status


def test_finding_userinfo_in_an_absolute_form_target_is_refused():
    # RFC 9110 section 4.2.4: a recipient SHOULD treat userinfo as an error
    assert refused(b"GET http://user:pass@example.org:8080/x HTTP/1.1\r\nHost: e\r\n\r\n") == 400


def test_finding_chunk_size_with_whitespace_and_no_extension_is_refused():
    # RFC 9112 section 7.1: BWS is allowed before ';' only
    assert refused(None, b"3\r\nabc\r\n0 \r\n\r\n") == 400
    assert refused(None, b"3 \r\nabc\r\n0\r\n\r\n") == 400
    assert wsgicore.read_chunked_body(io.BytesIO(b"3 ;x\r\nabc\r\n0\r\n\r\n"))[1] == 3


@pytest.mark.parametrize("target", [b"/caf\xc3\xa9", b"/a?q=\xff", b"/\x80"])
def test_finding_non_ascii_bytes_in_the_target_are_refused(target):
    # RFC 9112 section 3: an invalid request-line gets 400
    assert refused(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n") == 400


@pytest.mark.parametrize("name", [b"Content-Length", b"Host", b"Transfer-Encoding", b"content-type"])
def test_finding_framing_and_routing_fields_in_a_trailer_are_refused(name):
    # RFC 9110 section 6.5.1
    assert refused(None, b"3\r\nabc\r\n0\r\n" + name + b": 5\r\n\r\n") == 400


def test_finding_two_empty_lines_before_the_request_line_are_refused():
    # RFC 9112 section 2.2 asks a server to ignore at least one; one it is
    assert parse(b"\r\nGET / HTTP/1.1\r\n\r\n").method == "GET"
    assert refused(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n") == 400
    assert refused(b"\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n") == 400


def test_finding_two_differing_content_type_fields_are_refused():
    # RFC 9110 section 5.3: Content-Type is a singleton field
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Type: text/plain\r\n"
    assert refused(head + b"Content-Type: application/json\r\n\r\n") == 400
    assert parse(head + b"Content-Type: text/plain\r\n\r\n").method == "POST"


# --------------------------------------------------------------------------
# 1c. RequestParser: the same grammar, fed bytes as they arrive
# --------------------------------------------------------------------------

needs_parser = pytest.mark.skipif(not hasattr(wsgicore, "RequestParser"),
                                  reason="this wsgicore has no RequestParser")

VALID_REQUESTS = [
    (b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8888\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n", b""),
    (b"POST /echo?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Type: a/b\r\n\r\nhello",
     b"hello"),
    (b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5;e=1\r\nhello\r\n1\r\n!\r\n0\r\nT: 1\r\n\r\n", b"hello!"),
    (b"\r\nGET http://example.org:81/a%20b?q HTTP/1.0\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n", b""),
    (b"OPTIONS * HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", b""),
    (b"GET /x HTTP/1.1\r\nX-Empty:\r\nX-Spaces:  a  b \t\r\nX-Obs: caf\xe9\r\n\r\n", b""),
]


def same_request(got, want):
    for name in ("method", "path", "query", "version", "headers", "content_length", "chunked",
                 "expect_continue", "authority", "request_line"):
        assert getattr(got, name) == getattr(want, name), name


def blocking_read(data):
    """read_request and a chunked body, as WSGIConnection reads them."""
    rfile = io.BytesIO(data)
    request = wsgicore.read_request(rfile)
    if request.chunked:
        body = wsgicore.read_chunked_body(rfile)[0].read()
    else:
        body = rfile.read(request.content_length or 0)
    return request, body


@needs_parser
@pytest.mark.parametrize("data, body", VALID_REQUESTS)
def test_feeding_all_at_once_or_byte_by_byte_gives_what_read_request_gives(data, body):
    want, want_body = blocking_read(data)
    assert want_body == body
    for pieces in ([data], [data[i:i + 1] for i in range(len(data))],
                   [data[:len(data) // 2], data[len(data) // 2:]]):
        parser = wsgicore.RequestParser()
        got = None
        for piece in pieces:
            assert got is None  # nothing complete before the last byte
            parser.feed(piece)
            got = parser.next_request()
        same_request(got, want)
        assert got.body == body
        assert parser.next_request() is None and parser.idle


@needs_parser
def test_the_fast_path_and_the_line_by_line_path_agree():
    # all at once takes _parse_head_block; a byte at a time never does
    for data, _ in VALID_REQUESTS:
        whole, drip = wsgicore.RequestParser(), wsgicore.RequestParser()
        whole.feed(data)
        for i in range(len(data)):
            drip.feed(data[i:i + 1])
        same_request(whole.next_request(), drip.next_request())


@needs_parser
def test_pipelined_requests_come_out_one_after_another():
    data = b"".join(request for request, _ in VALID_REQUESTS)
    parser = wsgicore.RequestParser()
    parser.feed(data)
    got = []
    while (request := parser.next_request()) is not None:
        got.append((request.method, request.body))
    assert got == [(blocking_read(r)[0].method, body) for r, body in VALID_REQUESTS]
    assert parser.idle
    parser.feed_eof()  # idle: a clean close


@needs_parser
def test_a_bad_request_behind_good_ones_is_raised_after_they_were_handed_out():
    parser = wsgicore.RequestParser()
    parser.feed(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/9.9\r\n\r\n")
    assert parser.next_request().path == "/1"
    assert parser.next_request().path == "/2"
    with pytest.raises(wsgicore.HTTPError) as err:
        parser.next_request()
    assert err.value.status == 505
    assert err.value.request_line == "GET /3 HTTP/9.9"
    with pytest.raises(wsgicore.HTTPError):  # dead from now on
        parser.feed(b"GET / HTTP/1.1\r\n\r\n")


@needs_parser
def test_an_error_is_raised_by_feed_as_soon_as_the_input_is_known_bad():
    parser = wsgicore.RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n")
    with pytest.raises(wsgicore.HTTPError) as err:
        parser.feed(b"Bad Field\r\n")  # the head is not complete yet
    assert err.value.status == 400
    parser = wsgicore.RequestParser()
    with pytest.raises(wsgicore.HTTPError):
        parser.feed(b"GET / HTTP/1.1\n")  # a bare LF, at once


@needs_parser
def test_idle_pending_and_feed_eof():
    parser = wsgicore.RequestParser()
    assert parser.idle
    parser.feed_eof()  # nothing was sent: a clean close
    parser = wsgicore.RequestParser()
    parser.feed(b"\r\n")  # the one empty line RFC 9112 section 2.2 lets us ignore
    assert parser.idle
    parser.feed(b"GE")
    assert not parser.idle
    with pytest.raises(wsgicore.HTTPError) as err:
        parser.feed_eof()
    assert err.value.status == 400
    parser = wsgicore.RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nab")
    assert parser.next_request() is None and not parser.idle
    assert parser.pending.expect_continue  # time to send 100 Continue
    with pytest.raises(wsgicore.HTTPError, match="2 of 4 body bytes"):
        parser.feed_eof()
    parser = wsgicore.RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
    with pytest.raises(wsgicore.HTTPError, match="chunked"):
        parser.feed_eof()
    parser = wsgicore.RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n\r\n")
    parser.feed_eof()  # a complete request, then the peer's half-close
    assert parser.next_request().path == "/"
    assert parser.next_request() is None


@needs_parser
@pytest.mark.parametrize("head, keep_alive", [
    (b"GET / HTTP/1.1\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", False),
])
def test_keep_alive(head, keep_alive):
    parser = wsgicore.RequestParser()
    parser.feed(head)
    assert parser.next_request().keep_alive is keep_alive
    assert parse(head).keep_alive is keep_alive


def fed_status(data, max_body=None, pieces=1):
    """Feed data (in `pieces` parts), then EOF: the HTTPError status, or None."""
    parser = wsgicore.RequestParser() if max_body is None else wsgicore.RequestParser(max_body)
    step = max(1, -(-len(data) // pieces))
    try:
        for start in range(0, len(data), step):
            parser.feed(data[start:start + step])
            while parser.next_request() is not None:
                pass
        parser.feed_eof()
    except wsgicore.HTTPError as err:
        return err.status
    return None


@needs_parser
@pytest.mark.parametrize("pieces", [1, 7, 1000])
def test_each_limit_through_the_feed_api(pieces):
    limit = wsgicore.MAX_LINE
    line = b"GET /" + b"a" * (limit - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert fed_status(line + b"\r\n\r\n", pieces=pieces) is None
    assert fed_status(line[:5] + b"a" + line[5:] + b"\r\n\r\n", pieces=pieces) == 414
    field = b"X: " + b"v" * (limit - 3)
    assert fed_status(b"GET / HTTP/1.1\r\n" + field + b"\r\n\r\n", pieces=pieces) is None
    assert fed_status(b"GET / HTTP/1.1\r\n" + field + b"v\r\n\r\n", pieces=pieces) == 431
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(wsgicore.MAX_FIELDS))
    assert fed_status(b"GET / HTTP/1.1\r\n" + fields + b"\r\n", pieces=pieces) is None
    assert fed_status(b"GET / HTTP/1.1\r\n" + fields + b"Y: 1\r\n\r\n", pieces=pieces) == 431
    assert fed_status(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", pieces=pieces) == 400
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    ext = b";" + b"e" * (wsgicore.MAX_CHUNK_LINE - 2)
    assert fed_status(chunked + b"1" + ext + b"\r\nx\r\n0\r\n\r\n", pieces=pieces) is None
    assert fed_status(chunked + b"1" + ext + b"e\r\nx\r\n0\r\n\r\n", pieces=pieces) == 400
    trailers = b"".join(b"T-%d: v\r\n" % i for i in range(wsgicore.MAX_FIELDS))
    assert fed_status(chunked + b"0\r\n" + trailers + b"\r\n", pieces=pieces) is None
    assert fed_status(chunked + b"0\r\n" + trailers + b"U: 1\r\n\r\n", pieces=pieces) == 431
    assert fed_status(chunked + b"10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", 16, pieces) is None
    assert fed_status(chunked + b"10\r\n" + b"x" * 16 + b"\r\n1\r\ny\r\n0\r\n\r\n", 16, pieces) == 413
    length = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
    assert fed_status(length % 16 + b"x" * 16, 16, pieces) is None
    assert fed_status(length % 17 + b"x" * 17, 16, pieces) == 413


@needs_parser
def test_limits_are_enforced_before_the_line_is_complete():
    # a client that never sends the CRLF is refused once the line is too long
    for prefix, status in ((b"", 414), (b"GET / HTTP/1.1\r\n", 431),
                           (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400)):
        parser = wsgicore.RequestParser()
        parser.feed(prefix)
        with pytest.raises(wsgicore.HTTPError) as err:
            for _ in range(10):
                parser.feed(b"a" * 1000)
        assert err.value.status == status


@needs_parser
def test_a_drip_fed_large_body_is_not_quadratic():
    size = 2 * 1024 * 1024
    parser = wsgicore.RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size)
    piece = b"x" * 512
    started = time.monotonic()
    for _ in range(size // len(piece)):
        parser.feed(piece)
    assert len(parser.next_request().body) == size
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------
# 2. a real webserver2 with misbehaving test applications
# --------------------------------------------------------------------------

TEST_APPS = textwrap.dedent('''
    """Applications that break the rules, one per path; others go to wsgiapp."""
    import json
    import sys

    from wsgiapp import app as wsgi_app

    TEXT = [("Content-Type", "text/plain")]


    def fixed(status, headers, body=(b"should not be seen\\n",)):
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
        return [b"custom error page\\n"]


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
        return [b"then the iterable\\n"]


    def late_start(environ, start_response):
        def body():
            start_response("200 OK", TEXT)
            yield b""
            yield b""
            yield b"started late\\n"
        return body()


    class Closing:
        def __init__(self, environ, chunks, fail=False):
            self.environ, self.chunks, self.fail = environ, chunks, fail

        def __iter__(self):
            yield from self.chunks
            if self.fail:
                raise RuntimeError("fail in iteration")

        def close(self):
            self.environ["wsgi.errors"].write("CLOSE CALLED " + self.environ["PATH_INFO"] + "\\n")
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
        yield b"one\\n"
        yield b"two\\n"


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
        "/status-no-reason": fixed("200 ", TEXT, [b"ok\\n"]),
        "/status-short": fixed("200", TEXT),
        "/status-bytes": fixed(b"200 OK", TEXT),
        "/status-999": fixed("999 Nope", TEXT),
        "/status-100": fixed("100 Continue", TEXT),
        "/headers-tuple": fixed("200 OK", tuple(TEXT)),
        "/header-list-item": fixed("200 OK", [["Content-Type", "text/plain"]]),
        "/header-bytes": fixed("200 OK", [(b"Content-Type", b"text/plain")]),
        "/header-crlf": fixed("200 OK", TEXT + [("X-Evil", "a\\r\\nSet-Cookie: x=1")]),
        "/header-unicode": fixed("200 OK", TEXT + [("X-Name", "caf\\u20ac")]),
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
''')

TIMEOUT = 1.0  # REQUEST_TIMEOUT of the test server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    apps = tmp_path_factory.mktemp("apps")
    (apps / "testapps.py").write_text(TEST_APPS)
    srv = LocalServer([sys.executable, PART2 / "webserver2.py", "testapps:app"], apps / "server",
                      cwd=PART2, env={"PYTHONPATH": apps, "REQUEST_TIMEOUT": TIMEOUT})
    with srv:
        yield srv


def test_c9_environ_holds_every_required_key_with_native_str_values(server):
    response = fetch(server.port, "GET", "/environ?x=1%202&y=caf%C3%A9",
                     headers=[("X-Multi", "a"), ("X-Multi", "b"), ("Cookie", "a=1"),
                              ("Cookie", "b=2"), ("X_Spoofed", "1"), ("User-Agent", "t/1")])
    assert response.status == 200
    env = response.json()
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
                "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT",
                "wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors",
                "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert key in env, key
    for key, item in env.items():
        if "." not in key:
            assert item["type"] == "str", (key, item)
    values = {key: item["value"] for key, item in env.items()}
    assert values["REQUEST_METHOD"] == "GET"
    assert values["SCRIPT_NAME"] == ""
    assert values["PATH_INFO"] == "/environ"
    assert values["QUERY_STRING"] == "x=1%202&y=caf%C3%A9"
    assert values["SERVER_PORT"] == str(server.port)
    assert values["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert values["REMOTE_ADDR"] == "127.0.0.1"
    assert values["REMOTE_PORT"].isdigit()
    assert values["HTTP_X_MULTI"] == "a, b"
    assert values["HTTP_COOKIE"] == "a=1; b=2"
    assert values["HTTP_USER_AGENT"] == "t/1"
    assert "HTTP_X_SPOOFED" not in values  # a name with '_' is left out
    assert "CONTENT_LENGTH" not in values and "CONTENT_TYPE" not in values
    assert (values["wsgi.version"], env["wsgi.version"]["type"]) == ("(1, 0)", "tuple")
    assert values["wsgi.url_scheme"] == "http"
    assert values["wsgi.multithread"] == "False"
    assert values["wsgi.multiprocess"] == "False"  # webserver2: one process
    assert values["wsgi.run_once"] == "False"
    assert "stderr" in values["wsgi.errors"]
    assert env["wsgi.input"]["type"] == "InputStream"


def test_path_info_is_percent_decoded_as_latin1_and_content_headers_become_cgi_keys(server):
    response = fetch(server.port, "POST", "/dump/caf%C3%A9%20x%2Fy", body=b"abc",
                     headers=[("Content-Type", "text/plain")])
    env = response.json()
    assert env["PATH_INFO"] == "/dump/caf\xc3\xa9 x/y"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/dump/café x/y"
    assert (env["CONTENT_LENGTH"], env["CONTENT_TYPE"]) == ("3", "text/plain")
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert "REQUEST_URI" not in env


def test_percent_encoded_path_reaches_the_route(server):
    assert fetch(server.port, "GET", "/%65nviron").json()["PATH_INFO"]["value"] == "/environ"


@pytest.mark.parametrize("size", [64 * 1024 + 1, 300 * 1024, 5 * 1024 * 1024])
def test_a_big_post_body_is_read_exactly(server, size):
    body = os.urandom(size)
    response = fetch(server.port, "POST", "/echo", body=body)
    assert response.status == 200
    assert response.json() == {"length": size, "sha256": hashlib.sha256(body).hexdigest()}


def chunked(body, size=7000):
    parts = [b"%x;name=value\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
             for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\nX-Checksum: none\r\n\r\n"


def test_a_chunked_body_is_decoded_and_framed_by_content_length(server):
    body = os.urandom(100 * 1024)
    response = fetch(server.port, "POST", "/echo", body=chunked(body),
                     headers=[("Transfer-Encoding", "chunked")])
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    env = fetch(server.port, "POST", "/dump", body=chunked(b"hello"),
                headers=[("Transfer-Encoding", "chunked")]).json()
    assert env["CONTENT_LENGTH"] == "5"
    assert env["HTTP_TRANSFER_ENCODING"] == "chunked"  # kept, as sent


def test_expect_100_continue_gets_an_interim_response_before_the_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request("POST", "/echo", [("Content-Length", "5"), ("Expect", "100-continue")]))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        final = wire.parse_response(read_to_close(sock))
    assert final.status == 200 and final.json()["length"] == 5


def test_c8_headers_the_app_sets_two_the_server_adds_date_and_server(server):
    response = fetch(server.port, "GET", "/hello")
    names = [name.lower() for name, _ in response.headers]
    assert names[:2] == ["content-type", "content-length"]  # the application's, in its order
    assert response.header("content-length") == str(len(response.raw_body))
    date = response.header("date")
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", date), date
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 60
    assert re.fullmatch(r"WSGIServer/0\.3 Python/3\.\d+\.\d+\S*", response.header("server"))
    assert response.header("connection") == "close"
    assert response.version == "HTTP/1.1"
    assert server.wait_for_log('"GET /hello HTTP/1.1" 200 44')  # the access line


def test_head_gets_the_same_headers_and_no_body(server):
    get, head = fetch(server.port, "GET", "/hello"), fetch(server.port, "HEAD", "/hello")
    assert head.status == 200 and head.raw_body == b""
    drop_date = lambda r: [(n, v) for n, v in r.headers if n.lower() != "date"]  # noqa: E731
    assert drop_date(head) == drop_date(get)
    streamed = fetch(server.port, "HEAD", "/stream")
    assert streamed.status == 200 and streamed.raw_body == b""


def test_the_server_adds_content_length_when_a_list_is_returned_and_not_when_streaming(server):
    written = fetch(server.port, "GET", "/write")
    assert written.raw_body == b"via write, then the iterable\n"
    streamed = fetch(server.port, "GET", "/stream")
    assert streamed.raw_body == b"one\ntwo\n"
    assert streamed.header("content-length") is None  # ends at close: Connection: close
    dumped = fetch(server.port, "GET", "/dump")
    assert dumped.header("content-length") == str(len(dumped.raw_body))


def test_start_response_may_come_with_the_first_iteration_and_empty_chunks_wait(server):
    response = fetch(server.port, "GET", "/late-start")
    assert (response.status, response.raw_body) == (200, b"started late\n")


def test_exc_info_before_headers_replaces_the_status(server):
    response = fetch(server.port, "GET", "/exc-info-early")
    assert (response.status, response.reason, response.raw_body) == (500, "Oops", b"custom error page\n")


def test_exc_info_after_headers_reraises_and_the_connection_just_closes(server):
    response = fetch(server.port, "GET", "/exc-info-late")
    assert response.status == 200 and response.raw_body == b"already sent "
    assert "ValueError: too late" in server.stderr()
    hello_works(server.port)


def test_content_length_of_the_app_is_kept_and_never_exceeded(server):
    for path in ("/too-long", "/too-long-stream"):
        response = fetch(server.port, "GET", path)
        assert response.header("content-length") == "5"
        assert response.raw_body == b"01234", path


def test_204_sends_no_body(server):
    response = fetch(server.port, "GET", "/no-content")
    assert response.status == 204 and response.raw_body == b""
    assert response.header("content-length") is None


def test_close_is_called_on_the_body_iterable_even_when_iteration_fails(server):
    assert fetch(server.port, "GET", "/closing").raw_body == b"ab"
    assert server.wait_for_log("CLOSE CALLED /closing\n")
    fetch(server.port, "GET", "/closing-fail")
    assert server.wait_for_log("CLOSE CALLED /closing-fail\n")
    hello_works(server.port)


@pytest.mark.parametrize("path", [
    "/crash", "/body-str", "/twice", "/no-start", "/status-short", "/status-bytes",
    "/status-999", "/status-100", "/headers-tuple", "/header-list-item", "/header-bytes",
    "/header-crlf", "/header-unicode", "/header-name-space", "/hop-connection",
    "/hop-transfer-encoding", "/bad-content-length",
])
def test_an_application_error_gives_500_and_the_server_keeps_serving(server, path):
    response = fetch(server.port, "GET", path)
    assert response.status == 500, response.raw[:300]
    assert response.header("content-type").startswith("text/plain")
    assert b"should not be seen" not in response.raw and b"Set-Cookie" not in response.raw
    assert server.wait_for_log(re.escape(f'"GET {path} HTTP/1.1" 500'))
    hello_works(server.port)


def test_the_traceback_goes_to_stderr(server):
    fetch(server.port, "GET", "/crash")
    assert server.wait_for_log(r"Traceback[\s\S]*RuntimeError: boom before start_response")


def test_an_error_after_the_headers_closes_the_connection(server):
    response = fetch(server.port, "GET", "/crash-after-headers")
    assert response.status == 200 and response.raw_body == b"partial body "
    assert server.wait_for_log("RuntimeError: boom after the headers")
    hello_works(server.port)


def test_a_status_without_reason_phrase_is_allowed(server):
    assert fetch(server.port, "GET", "/status-no-reason").status == 200


def test_an_unread_body_does_not_reset_the_connection(server):
    # the app reads 10 of 768 KiB: the server drains the rest (up to its
    # LINGER_BYTES, 1 MiB) before closing, so the client gets the response
    # and not an RST
    body = b"x" * (768 * 1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request("POST", "/read-some", body=body))
        response = wire.parse_response(read_to_close(sock))
    assert (response.status, response.raw_body) == (200, b"read xxxxxxxxxx")
    hello_works(server.port)


def test_a_truncated_body_is_logged_and_the_server_keeps_serving(server):
    reply = wire.exchange(HOST, server.port,
                          request("POST", "/echo", [("Content-Length", "1000")]) + b"x" * 10,
                          timeout=10.0, shut_wr=True)
    assert reply.eof and b"200 OK" not in reply.data
    assert server.wait_for_log("client closed the connection after 10 of 1000 body bytes")
    hello_works(server.port)


def test_an_idle_client_is_closed_without_a_response(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert read_to_close(sock) == b""
    assert TIMEOUT - 0.2 < time.monotonic() - started < TIMEOUT + 2
    assert server.wait_for_log("idle for 1 s, closed")
    hello_works(server.port)


def test_a_drip_fed_head_times_out_with_408(server):
    # one byte every 0.25 s: each recv is quick, but the head never completes in time
    pieces = [bytes([b]) for b in request("GET", "/hello")]
    started = time.monotonic()
    # pieces 0.25 s apart; the sending stops when the server answers or closes
    reply = wire.exchange(HOST, server.port, pieces, timeout=10.0, pause=0.25)
    assert reply.eof and reply.status == 408
    assert time.monotonic() - started < TIMEOUT + 2
    hello_works(server.port)


def test_a_stalled_body_times_out_with_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request("POST", "/echo", [("Content-Length", "100")]) + b"x" * 10)
        response = wire.parse_response(read_to_close(sock))
    assert response.status == 408
    hello_works(server.port)


def test_a_connection_closed_without_a_byte_is_not_an_error(server):
    socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    hello_works(server.port)
    assert "internal error" not in server.stderr()  # wsgicore's own last-resort handler


# --------------------------------------------------------------------------
# 3. malformed requests: a 4xx/5xx (or a plain close), then the next request
#    is answered. At least 30 cases, one per line.
# --------------------------------------------------------------------------

GOOD = b"GET /hello HTTP/1.1\r\nHost: x\r\n"
MALFORMED = [
    ("no target", b"GET\r\n\r\n", 400),
    ("HTTP/0.9 style", b"GET /\r\n\r\n", 400),
    ("four words", b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    ("double space", b"GET  / HTTP/1.1\r\n\r\n", 400),
    ("tab separator", b"GET\t/ HTTP/1.1\r\n\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n", 505),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n\r\n", 505),
    ("HTTP/0.9 version", b"GET / HTTP/0.9\r\n\r\n", 505),
    ("bad protocol name", b"GET / HTTX/1.1\r\n\r\n", 400),
    ("lowercase protocol", b"GET / http/1.1\r\n\r\n", 400),
    ("version without dot", b"GET / HTTP/11\r\n\r\n", 400),
    ("bad method", b"G(T / HTTP/1.1\r\n\r\n", 400),
    ("relative target", b"GET hello HTTP/1.1\r\n\r\n", 400),
    ("ftp target", b"GET ftp://x/ HTTP/1.1\r\n\r\n", 400),
    ("NUL in target", b"GET /a\x00b HTTP/1.1\r\n\r\n", 400),
    ("DEL in target", b"GET /a\x7fb HTTP/1.1\r\n\r\n", 400),
    ("request line too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    ("header line too long", GOOD + b"X-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
    ("101 header fields", GOOD + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
    ("header without colon", GOOD + b"Host x\r\n\r\n", 400),
    ("whitespace before colon", GOOD + b"X-A : 1\r\n\r\n", 400),
    ("empty header name", GOOD + b": value\r\n\r\n", 400),
    ("non-ascii header name", GOOD + b"X-\xe9: 1\r\n\r\n", 400),
    ("obs-fold with space", GOOD + b"X-A: 1\r\n  continued\r\n\r\n", 400),
    ("obs-fold with tab", GOOD + b"X-A: 1\r\n\tcontinued\r\n\r\n", 400),
    ("NUL in header value", GOOD + b"X-A: a\x00b\r\n\r\n", 400),
    ("CR in header value", GOOD + b"X-A: a\rb\r\n\r\n", 400),
    ("ESC in header value", GOOD + b"X-A: a\x1bb\r\n\r\n", 400),
    ("bare LF everywhere", b"GET /hello HTTP/1.1\nHost: x\n\n", 400),
    ("bare LF in one header", GOOD + b"X-A: 1\n\r\n", 400),
    ("negative Content-Length", GOOD + b"Content-Length: -1\r\n\r\n", 400),
    ("non-digit Content-Length", GOOD + b"Content-Length: abc\r\n\r\n", 400),
    ("exponent Content-Length", GOOD + b"Content-Length: 1e3\r\n\r\n", 400),
    ("plus-signed Content-Length", GOOD + b"Content-Length: +5\r\n\r\n", 400),
    ("huge Content-Length", GOOD + b"Content-Length: 99999999999999999999\r\n\r\n", 400),
    ("empty Content-Length", GOOD + b"Content-Length: \r\n\r\n", 400),
    ("conflicting Content-Length list", GOOD + b"Content-Length: 5, 6\r\n\r\nhello!", 400),
    ("duplicate differing Content-Length",
     GOOD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("Content-Length and Transfer-Encoding",
     GOOD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("unknown transfer-coding", GOOD + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    ("gzip then chunked", GOOD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("chunked twice", GOOD + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("empty Transfer-Encoding", GOOD + b"Transfer-Encoding: \r\n\r\n", 400),
    ("Transfer-Encoding in HTTP/1.0",
     b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("bad chunk size", GOOD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk without CRLF", GOOD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", 400),
    ("chunk line too long",
     GOOD + b"Transfer-Encoding: chunked\r\n\r\n3;" + b"x" * 5000 + b"\r\nabc\r\n0\r\n\r\n", 400),
    ("unknown expectation", GOOD + b"Expect: 200-ok\r\n\r\n", 417),
    ("two Host fields", GOOD + b"Host: y\r\n\r\n", 400),
    ("only empty lines", b"\r\n" * 6, 400),
    ("binary junk", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
]
HALF_CLOSED = [
    ("head cut short", GOOD + b"X-A: 1\r\n", 400),
    ("line cut short", b"GET /hello HT", 400),
    ("chunked body cut short", GOOD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab", 400),
]


@pytest.mark.parametrize("name, data, status", MALFORMED + HALF_CLOSED,
                         ids=[case[0] for case in MALFORMED + HALF_CLOSED])
def test_a_malformed_request_gets_an_error_and_the_next_request_is_answered(
        server, name, data, status):
    reply = wire.exchange(HOST, server.port, data, timeout=10.0,
                          shut_wr=(name, data, status) in HALF_CLOSED)
    response, raw = reply.response(), reply.data
    assert response.status == status, raw[:300]
    assert response.header("connection") == "close"
    assert response.header("content-type").startswith("text/plain")
    assert response.raw_body.startswith(str(status).encode())
    assert reply.eof and not reply.reset
    hello_works(server.port)


@needs_parser
@pytest.mark.parametrize("name, data, status", MALFORMED + HALF_CLOSED,
                         ids=[case[0] for case in MALFORMED + HALF_CLOSED])
@pytest.mark.parametrize("pieces", [1, 3])
def test_request_parser_refuses_each_malformed_request_with_the_same_status(
        name, data, status, pieces):
    assert fed_status(data, pieces=pieces) == status


def test_at_least_thirty_malformed_cases():
    assert len(MALFORMED) + len(HALF_CLOSED) >= 30


def test_every_error_is_logged_and_nothing_crashed(server):
    wire.exchange(HOST, server.port, b"GET / HTTP/2.0\r\n\r\n", timeout=10.0)
    assert server.wait_for_log(r'"GET / HTTP/2.0" 505 \d+ \(HTTP/2.0 is not supported')
    assert server.proc.poll() is None
    assert "internal error" not in server.stderr()
