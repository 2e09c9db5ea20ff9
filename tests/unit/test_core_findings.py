"""The findings of the conformance runs (scripts/conformance), one test
each, at the parser: each failed on the wsgicore before its fix. The ones
that need a server (the environ of a chunked request, the frameworks
reading it) are in test_wsgicore_server.py. `pytest -k finding` runs them all.
"""

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "part2"))

import wsgicore  # noqa: E402


def parse(data):
    return wsgicore.read_request(io.BytesIO(data))


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
