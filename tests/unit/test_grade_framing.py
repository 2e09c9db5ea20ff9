"""grade.framing: where one response ends on a persistent connection, from
the bytes alone (the keep-alive, pipelining and framing stages read with it)."""

from __future__ import annotations

from grade import framing

OK5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"


def test_a_content_length_body_ends_where_it_says_and_the_rest_is_left_over():
    resp = framing.one(OK5 + b"X")
    assert resp.complete and resp.body == b"hello" and resp.framing == "length"
    got, rest = framing.split(OK5 + b"X", [False])
    assert [r.status for r in got] == [200] and rest == b"X"


def test_two_pipelined_answers_chunked_then_empty_are_cut_apart():
    nobody = b"HTTP/1.1 204 No Content\r\n\r\n"
    got, rest = framing.split(CHUNKED + nobody, [False, False])
    assert [(r.status, r.framing, r.body) for r in got] == [(200, "chunked", b"hello"),
                                                            (204, "none", b"")]
    assert rest == b""
    assert framing.whole(2)(CHUNKED + nobody) and not framing.whole(2)(CHUNKED)


def test_a_head_answer_has_no_body_whatever_its_content_length():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    got, rest = framing.split(head + b"hello", [True])
    assert got[0].framing == "none" and rest == b"hello"


def test_a_body_framed_by_the_close_is_whole_only_once_the_connection_closed():
    data = b"HTTP/1.1 200 OK\r\n\r\nHello, World!\n"
    assert not framing.one(data).complete
    assert framing.one(data, closed=True).body == b"Hello, World!\n"
    assert not framing.whole(1)(data)


def test_interim_responses_are_skipped_and_broken_framing_is_named():
    assert framing.one(b"HTTP/1.1 100 Continue\r\n\r\n" + OK5).body == b"hello"
    assert "not a status line" in framing.one(b"garbage\r\n\r\n").problem
    assert "not a status line" in framing.one(b"\x00\x01").problem
    assert framing.one(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").problem
    assert "not hex" in framing.one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    b"zz\r\n").problem
    cut = framing.one(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", closed=True)
    assert "3 of the 9" in cut.problem


def test_nothing_at_all_is_no_response_not_a_broken_one():
    got, rest = framing.split(OK5, [False, False], closed=True)
    assert len(got) == 1 and not got[0].problem and rest == b""
    assert framing.one(b"", closed=True).problem == ""
