"""wsgicore's connection side for part 4: keep-alive framing (WSGIExchange),
the buffered access log. No sockets, no servers: fast."""

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "part2"))

import wsgicore  # noqa: E402


class Server:
    request_timeout = 10.0
    base_environ = {"wsgi.version": (1, 0), "wsgi.url_scheme": "http", "SCRIPT_NAME": "",
                    "SERVER_NAME": "test", "SERVER_PORT": "8888", "wsgi.errors": sys.stderr,
                    "wsgi.multithread": False, "wsgi.multiprocess": True,
                    "wsgi.run_once": False}
    log = wsgicore.AccessLog()


def answer(raw: bytes, app):
    parser = wsgicore.RequestParser()
    parser.feed(raw)
    request = parser.next_request()
    exchange = wsgicore.WSGIExchange(Server(), request, ("1.2.3.4", 5))
    exchange.run(app)
    return b"".join(exchange.out), exchange


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hi"]


def streamed(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"h"
    yield b"i"


def failing(environ, start_response):
    raise RuntimeError("boom")


def test_http11_keeps_the_connection_with_a_known_length_and_no_connection_field():
    data, ex = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", hello)
    head, _, body = data.partition(b"\r\n\r\n")
    assert ex.keep_alive and body == b"hi"
    assert b"Content-Length: 2" in head and b"Connection:" not in head


def test_http10_asking_keep_alive_is_told_so():
    data, ex = answer(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", hello)
    assert ex.keep_alive and b"Connection: keep-alive\r\n" in data


@pytest.mark.parametrize("raw", [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                 b"GET / HTTP/1.0\r\n\r\n"])
def test_a_client_that_does_not_ask_gets_connection_close(raw):
    data, ex = answer(raw, hello)
    assert not ex.keep_alive and b"Connection: close\r\n" in data


def test_a_body_of_unknown_length_is_chunked_and_keeps_an_http11_connection():
    data, ex = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", streamed)
    head, _, body = data.partition(b"\r\n\r\n")
    assert ex.keep_alive and b"\r\nTransfer-Encoding: chunked" in head
    assert b"Connection:" not in head and b"Content-Length" not in head
    assert body == b"1\r\nh\r\n1\r\ni\r\n0\r\n\r\n"


@pytest.mark.parametrize("raw", [b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                                 b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"])
def test_a_body_of_unknown_length_ends_with_the_connection_otherwise(raw):
    data, ex = answer(raw, streamed)
    assert not ex.keep_alive and b"Connection: close\r\n" in data and data.endswith(b"\r\n\r\nhi")
    assert b"chunked" not in data


def test_a_streamed_head_answer_is_not_chunked():
    data, ex = answer(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", streamed)
    assert ex.keep_alive and b"chunked" not in data and data.endswith(b"\r\n\r\n")


def test_an_error_in_a_chunked_body_closes_without_the_last_chunk():
    def broken(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"h"
        raise RuntimeError("boom in the middle")
    data, ex = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", broken)
    assert not ex.keep_alive and data.endswith(b"1\r\nh\r\n")


def test_an_application_error_is_a_500_and_a_close():
    data, ex = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", failing)
    assert data.startswith(b"HTTP/1.1 500 ") and not ex.keep_alive


def test_a_head_answer_keeps_the_connection_without_a_body():
    data, ex = answer(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", hello)
    assert ex.keep_alive and data.endswith(b"\r\n\r\n")


def test_the_request_body_reaches_the_application():
    def echo(environ, start_response):
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body[::-1]]
    data, _ = answer(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", echo)
    assert data.endswith(b"\r\n\r\ncba")


def test_access_lines_are_buffered_and_flushed_in_order(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    access_log = wsgicore.AccessLog(buffer=1000)
    access_log.access("one")
    access_log.access("two")
    assert err.getvalue() == ""
    access_log.message("an error")  # anything else goes out after the lines before it
    assert err.getvalue() == "one\ntwo\nan error\n"
    access_log.access("x" * 1200)  # past the buffer: written at once
    assert err.getvalue().endswith("x" * 1200 + "\n")
    access_log.flush()


def test_without_a_buffer_each_access_line_is_written_at_once(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    wsgicore.AccessLog().access("one")
    assert err.getvalue() == "one\n"


def test_two_logs_do_not_share_a_buffer(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    buffered, direct = wsgicore.AccessLog(buffer=1000), wsgicore.AccessLog()
    buffered.access("kept")
    direct.access("at once")
    assert err.getvalue() == "at once\n"
    buffered.flush()
    assert err.getvalue() == "at once\nkept\n"


def test_the_date_field_is_made_once_a_second(monkeypatch):
    monkeypatch.setattr(wsgicore.response.time, "time", lambda: 1_800_000_000.2)
    first = wsgicore.http_date()
    monkeypatch.setattr(wsgicore.response.time, "time", lambda: 1_800_000_000.9)
    assert wsgicore.http_date() is first
    monkeypatch.setattr(wsgicore.response.time, "time", lambda: 1_800_000_001.0)
    assert wsgicore.http_date() != first and wsgicore.http_date().endswith(" GMT")
