"""wsgicore.readers with bytes alone: a chunked body decoded by the one
parser (read_chunked_body, spooled), and wsgi.input (InputStream) that ends
where the body does.
"""

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "part2"))

import wsgicore  # noqa: E402


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
