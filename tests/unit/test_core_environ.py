"""wsgicore.environ with bytes alone: the bytes of a request, parsed by the
one parser, and the environ request_environ makes of them (PEP 3333)."""

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "part2"))

from wsgicore import RequestParser  # noqa: E402
from wsgicore.environ import request_environ  # noqa: E402

BASE = {"SCRIPT_NAME": "", "SERVER_NAME": "test", "SERVER_PORT": "8888",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http"}


def environ_of(data, address=("10.0.0.1", 4321)):
    parser = RequestParser()
    parser.feed(data)
    request = parser.next_request()
    body = io.BytesIO(request.body)
    return request_environ(request, BASE, body, len(request.body), address)


def test_the_cgi_keys_of_a_get():
    env = environ_of(b"GET /caf%C3%A9/x?a=1%202&b HTTP/1.1\r\nHost: h:1\r\n"
                     b"User-Agent: t/1\r\n\r\n")
    assert (env["REQUEST_METHOD"], env["PATH_INFO"], env["QUERY_STRING"]) == (
        "GET", "/caf\xc3\xa9/x", "a=1%202&b")  # decoded bytes as latin-1; the query raw
    assert (env["SERVER_PROTOCOL"], env["REMOTE_ADDR"], env["REMOTE_PORT"]) == (
        "HTTP/1.1", "10.0.0.1", "4321")
    assert (env["HTTP_HOST"], env["HTTP_USER_AGENT"]) == ("h:1", "t/1")
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env
    assert "wsgi.input_terminated" not in env
    assert env["SERVER_NAME"] == "test" and BASE.get("REQUEST_METHOD") is None  # a copy


def test_repeated_fields_join_and_cookies_join_with_a_semicolon():
    env = environ_of(b"GET / HTTP/1.1\r\nX-Multi: a\r\nx-multi: b\r\nCookie: a=1\r\n"
                     b"Cookie: b=2\r\n\r\n")
    assert (env["HTTP_X_MULTI"], env["HTTP_COOKIE"]) == ("a, b", "a=1; b=2")


def test_a_name_with_an_underscore_is_left_out():
    env = environ_of(b"GET / HTTP/1.1\r\nX_Spoofed: 1\r\nX-Real: 2\r\n\r\n")
    assert "HTTP_X_SPOOFED" not in env and env["HTTP_X_REAL"] == "2"


def test_content_fields_become_cgi_keys():
    env = environ_of(b"POST / HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc")
    assert (env["CONTENT_LENGTH"], env["CONTENT_TYPE"]) == ("3", "text/plain")
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert env["wsgi.input"].read() == b"abc"


def test_a_chunked_request_has_its_decoded_length_and_input_terminated():
    env = environ_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert env["CONTENT_LENGTH"] == "5" and env["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert env["wsgi.input_terminated"] is True


def test_an_absolute_form_target_wins_over_host():
    env = environ_of(b"GET http://example.org:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n")
    assert (env["HTTP_HOST"], env["PATH_INFO"], env["QUERY_STRING"]) == ("example.org:81", "/p",
                                                                         "q")
