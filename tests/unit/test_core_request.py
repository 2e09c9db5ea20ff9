"""wsgicore's one request parser with bytes alone, no socket: the grammar
(wsgicore.request), RequestParser fed all at once, a byte at a time or in
pieces (wsgicore.parser, as webserver4b feeds it), and read_request /
read_chunked_body (wsgicore.readers, as the blocking servers read: the same
parser fed from a stream). The chunked decoding and wsgi.input are in
test_core_readers.py; the findings of the conformance runs, one test each,
in test_core_findings.py.
"""

import io
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "part2"))

import wsgicore  # noqa: E402
from wsgicore_client import Drip, fed_status  # noqa: E402


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


def test_the_fast_path_and_the_line_by_line_path_agree():
    # all at once takes _parse_head_block; a byte at a time never does
    for data, _ in VALID_REQUESTS:
        whole, drip = wsgicore.RequestParser(), wsgicore.RequestParser()
        whole.feed(data)
        for i in range(len(data)):
            drip.feed(data[i:i + 1])
        same_request(whole.next_request(), drip.next_request())


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


def test_an_error_is_raised_by_feed_as_soon_as_the_input_is_known_bad():
    parser = wsgicore.RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n")
    with pytest.raises(wsgicore.HTTPError) as err:
        parser.feed(b"Bad Field\r\n")  # the head is not complete yet
    assert err.value.status == 400
    parser = wsgicore.RequestParser()
    with pytest.raises(wsgicore.HTTPError):
        parser.feed(b"GET / HTTP/1.1\n")  # a bare LF, at once


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
# the blocking path: read_request feeds the parser from a stream and takes
# from it exactly the head, however the bytes arrive
# --------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 7, 64 * 1024])
@pytest.mark.parametrize("data, body", VALID_REQUESTS)
def test_read_request_takes_the_head_and_leaves_what_follows_in_the_stream(data, body, step):
    rfile = io.BufferedReader(Drip(data + b"NEXT", step), 64 * 1024)
    request = wsgicore.read_request(rfile)
    fed = wsgicore.RequestParser()
    fed.feed(data)
    same_request(request, fed.next_request())
    if request.chunked:
        spool, length = wsgicore.read_chunked_body(rfile)
        assert (spool.read(), length) == (body, len(body))
    else:
        assert rfile.read(request.content_length or 0) == body
    assert rfile.read() == b"NEXT"  # nothing taken past the request


def test_read_request_reports_a_head_cut_short_as_the_parser_does():
    for data in (b"GET / HTTP/1.1\r\nHost: h\r\n", b"GET /hello HT"):
        with pytest.raises(wsgicore.HTTPError) as err:
            parse(data)
        assert (err.value.status, err.value.detail) == (
            400, "connection closed before the end of the request head")
    assert parse(b"\r\n") is None  # one empty line, then a clean close
