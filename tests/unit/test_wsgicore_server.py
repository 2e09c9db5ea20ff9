"""The HTTP and WSGI behaviour of a real webserver2 process on 127.0.0.1
(claims C8 and C9, and everything the article's 1024-byte server got wrong),
serving the misbehaving applications of wsgi_test_apps.py. Runs on the host:
no Docker needed. Malformed requests: test_wsgicore_malformed.py.
"""

import hashlib
import os
import re
import socket
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from instrument import wire
from instrument.local import LocalServer
from wsgicore_client import HOST, fetch, hello_works, read_to_close, request, serve_once

HERE = Path(__file__).resolve().parent
PART2 = HERE.parents[1] / "services" / "part2"


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


TIMEOUT = 1.0  # REQUEST_TIMEOUT of the test server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LocalServer([sys.executable, PART2 / "webserver2.py", "wsgi_test_apps:app"],
                      tmp_path_factory.mktemp("webserver2") / "server",
                      cwd=PART2, env={"PYTHONPATH": HERE, "REQUEST_TIMEOUT": TIMEOUT})
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
    # closed after the 408: an EOF, or a reset when a byte still on its way
    # reached the closed socket (seen on a loaded machine)
    assert reply.closed and reply.status == 408, reply.summary()
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
