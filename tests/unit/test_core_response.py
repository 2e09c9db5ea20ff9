"""wsgicore.response with bytes alone: ResponseWriter's framing decision
(Content-Length, chunked, close, none), PEP 3333's checks of start_response,
the application's Content-Length kept and never exceeded; simple_response.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "part2"))

from wsgicore.response import ResponseWriter, simple_response  # noqa: E402

TEXT = [("Content-Type", "text/plain")]


def streamed(writer, pieces, status="200 OK", headers=TEXT):
    writer.start(status, list(headers))
    return b"".join(writer.body(piece) for piece in pieces) + writer.end()


def split(data):
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n"), body


def test_an_http11_stream_on_a_kept_connection_is_chunked():
    writer = ResponseWriter("GET", "HTTP/1.1", keep_alive=True)
    head, body = split(streamed(writer, [b"one\n", b"", b"two\n"]))
    assert "Transfer-Encoding: chunked" in head and not any("Content-Length" in h for h in head)
    assert not any(h.startswith("Connection:") for h in head)
    assert body == b"4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n"
    assert (writer.framing, writer.keep_alive, writer.complete, writer.sent) == (
        "chunked", True, True, 8)


@pytest.mark.parametrize("version, keep_alive", [("HTTP/1.1", False), ("HTTP/1.0", True),
                                                 ("HTTP/1.0", False)])
def test_a_stream_otherwise_ends_with_the_connection(version, keep_alive):
    writer = ResponseWriter("GET", version, keep_alive)
    head, body = split(streamed(writer, [b"one\n", b"two\n"]))
    assert "Connection: close" in head and not any("chunked" in h for h in head)
    assert body == b"one\ntwo\n"
    assert (writer.framing, writer.keep_alive) == ("close", False)


def test_a_list_body_gets_its_content_length_and_keeps_the_connection():
    writer = ResponseWriter("GET", "HTTP/1.0", keep_alive=True)
    writer.start("200 OK", list(TEXT))
    head, body = split(writer.whole([b"ab", b"c"]))
    assert "Content-Length: 3" in head and "Connection: keep-alive" in head and body == b"abc"
    assert (writer.framing, writer.complete) == ("length", True)


@pytest.mark.parametrize("method, status", [("HEAD", "200 OK"), ("GET", "204 No Content"),
                                            ("GET", "304 Not Modified")])
def test_no_body_is_never_chunked_nor_sent(method, status):
    writer = ResponseWriter(method, "HTTP/1.1", keep_alive=True)
    head, body = split(streamed(writer, [b"must not be sent"], status))
    assert body == b"" and not any("chunked" in h or "Content-Length" in h for h in head)
    assert (writer.framing, writer.keep_alive, writer.sent) == ("none", True, 0)


def test_the_applications_content_length_is_kept_and_never_exceeded():
    writer = ResponseWriter("GET", "HTTP/1.1", keep_alive=True)
    head, body = split(streamed(writer, [b"0123", b"4567"], headers=TEXT + [("Content-Length",
                                                                            "5")]))
    assert body == b"01234" and writer.framing == "length" and writer.complete
    assert writer.note == "application sent more than its Content-Length; cut"


def test_a_body_shorter_than_its_content_length_is_not_complete():
    writer = ResponseWriter("GET", "HTTP/1.1", keep_alive=True)
    streamed(writer, [b"01"], headers=TEXT + [("Content-Length", "5")])
    assert not writer.complete  # only a close can end it now


def test_an_empty_stream_gets_content_length_0():
    writer = ResponseWriter("GET", "HTTP/1.1", keep_alive=True)
    head, body = split(streamed(writer, []))
    assert "Content-Length: 0" in head and body == b"" and writer.framing == "length"


def test_date_and_server_are_added_unless_the_application_set_them():
    writer = ResponseWriter("GET", "HTTP/1.1")
    writer.start("200 OK", [("Server", "mine"), ("Date", "then")])
    head, _ = split(writer.whole([b""]))
    assert head.count("Server: mine") == 1 and not any(h.startswith("Server: WSGI") for h in head)
    assert [h for h in head if h.startswith("Date:")] == ["Date: then"]


@pytest.mark.parametrize("status, headers, error", [
    (b"200 OK", TEXT, TypeError), ("200", TEXT, ValueError), ("999 Nope", TEXT, ValueError),
    ("100 Continue", TEXT, ValueError), ("200 OK", tuple(TEXT), TypeError),
    ("200 OK", [["Content-Type", "text/plain"]], TypeError),
    ("200 OK", [("X-Evil", "a\r\nSet-Cookie: x=1")], ValueError),
    ("200 OK", [("X-Name", "caf\u20ac")], ValueError), ("200 OK", [("Bad Name", "x")], ValueError),
    ("200 OK", [("Connection", "keep-alive")], ValueError),
    ("200 OK", [("Transfer-Encoding", "chunked")], ValueError),
    ("200 OK", [("Content-Length", "ten")], ValueError),
])
def test_start_response_refuses_what_pep_3333_forbids(status, headers, error):
    with pytest.raises(error):
        ResponseWriter("GET", "HTTP/1.1").start(status, headers)


def test_body_data_must_be_bytes_and_come_after_start_response():
    writer = ResponseWriter("GET", "HTTP/1.1")
    with pytest.raises(RuntimeError):
        writer.body(b"x")
    writer.start("200 OK", list(TEXT))
    with pytest.raises(TypeError):
        writer.body("a str")
    with pytest.raises(TypeError):
        writer.whole(["a str"])


def test_simple_response_is_a_whole_closing_answer():
    head, body = split(simple_response(404, "no such page", [("X-A", "1")]))
    assert head[0] == "HTTP/1.1 404 Not Found" and "Connection: close" in head
    assert "X-A: 1" in head and body == b"404 Not Found: no such page\n"
    assert f"Content-Length: {len(body)}" in head
    assert simple_response(404, "x", head_only=True).endswith(b"\r\n\r\n")
