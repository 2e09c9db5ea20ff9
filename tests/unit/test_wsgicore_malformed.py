"""Malformed requests: a 4xx/5xx (or a plain close), then the next request is
answered, by a real webserver2 on 127.0.0.1; and the one parser refuses each
with the same status, fed whole or in pieces. The requests are the
malformed-request corpus's (scripts/conformance/cases.py), named by id; the
status beside each name is what wsgicore answers (for an `either` case of
the corpus, the refusal we chose).
"""

import sys

import pytest
from conformance.cases import by_id
from instrument import wire
from instrument.local import LocalServer
from wsgicore_client import HOST, fed_status, hello_works
from wsgicore_client import wsgicore as core

PART2 = core.__file__.rsplit("/wsgicore/", 1)[0]

# (corpus id, our status): sent, and answered without the client's EOF
MALFORMED = [
    ("http-0.9", 400), ("no-version", 400), ("four-parts", 400), ("two-spaces", 400),
    ("tab-separator", 400), ("trailing-space", 400), ("leading-space", 400), ("version-2.0", 505),
    ("version-1.2", 505), ("version-garbage", 400), ("version-lowercase", 400),
    ("version-no-minor", 400), ("version-two-digits", 400), ("method-bad-char", 400),
    ("method-empty", 400), ("target-relative", 400), ("absolute-form-ftp", 400),
    ("absolute-form-empty-host", 400), ("absolute-form-userinfo", 400),
    ("asterisk-not-options", 400), ("authority-form-not-connect", 400), ("target-nul", 400),
    ("target-del", 400), ("target-raw-utf8", 400), ("target-raw-latin1-query", 400),
    ("target-too-long", 414), ("bare-cr-in-request-line", 400), ("field-line-too-long", 431),
    ("fields-too-many", 431), ("field-no-colon", 400), ("space-before-colon", 400),
    ("tab-before-colon", 400), ("field-empty-name", 400), ("field-name-space", 400),
    ("field-name-at", 400), ("field-name-non-ascii", 400), ("obs-fold", 400),
    ("field-value-nul", 400), ("field-value-bare-cr", 400), ("field-value-esc", 400),
    ("field-value-del", 400), ("bare-lf", 400), ("bare-lf-one-field", 400),
    ("bare-cr-in-field", 400), ("host-twice", 400), ("host-invalid-space", 400),
    ("host-userinfo", 400), ("content-type-twice-differing", 400),
    ("content-length-negative", 400), ("content-length-letters", 400),
    ("content-length-hex", 400), ("content-length-plus", 400), ("content-length-huge", 400),
    ("content-length-empty", 400), ("content-length-space-inside", 400),
    ("content-length-list-differing", 400), ("content-length-differing", 400),
    ("content-length-and-chunked", 400), ("transfer-encoding-gzip", 501),
    ("transfer-encoding-gzip-chunked", 501), ("transfer-encoding-identity", 501),
    ("chunked-not-final", 501), ("chunked-twice", 400), ("transfer-encoding-empty", 400),
    ("transfer-encoding-http-1.0", 400), ("chunk-size-not-hex", 400),
    ("chunk-size-negative", 400), ("chunk-size-0x", 400), ("chunk-size-trailing-space", 400),
    ("chunk-size-leading-space", 400), ("chunk-size-empty", 400), ("chunk-size-overflow", 400),
    ("chunk-extension-no-name", 400), ("chunk-extension-space-in-name", 400),
    ("chunk-data-too-long", 400), ("chunk-data-no-crlf", 400), ("chunk-size-bare-lf", 400),
    ("trailer-content-length", 400), ("trailer-transfer-encoding", 400), ("trailer-host", 400),
    ("trailer-no-colon", 400), ("trailer-obs-fold", 400), ("trailer-space-before-colon", 400),
    ("expect-unknown", 417), ("empty-lines-two-first", 400), ("only-empty-lines", 400),
    ("binary-garbage", 400),
]
# (corpus id, our status): cut short, answered once the client half-closes
HALF_CLOSED = [
    ("content-length-truncated", 400), ("chunked-no-last-chunk", 400),
    ("chunked-truncated-data", 400), ("chunked-no-final-crlf", 400),
]
# a Content-Length body cut short reaches the application, whose read fails:
# webserver2 closes without an answer (the parser alone, as in webserver4b's
# loop, knows it at EOF: 400)
CLOSED_WITHOUT_ANSWER = {"content-length-truncated"}
CASES = [(name, status, False) for name, status in MALFORMED] + \
    [(name, status, True) for name, status in HALF_CLOSED]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LocalServer([sys.executable, "webserver2.py", "wsgiapp:app"],
                      tmp_path_factory.mktemp("malformed") / "server", cwd=PART2,
                      env={"REQUEST_TIMEOUT": 1.0})
    with srv:
        yield srv


@pytest.mark.parametrize("name, status, half_close", CASES, ids=[case[0] for case in CASES])
def test_a_malformed_request_gets_an_error_and_the_next_request_is_answered(
        server, name, status, half_close):
    reply = wire.exchange(HOST, server.port, by_id(name).data, timeout=10.0, shut_wr=half_close)
    if name in CLOSED_WITHOUT_ANSWER:
        assert reply.eof and reply.data == b"", reply.summary()
        hello_works(server.port)
        return
    response, raw = reply.response(), reply.data
    assert response.status == status, raw[:300]
    assert response.header("connection") == "close"
    assert response.header("content-type").startswith("text/plain")
    assert response.raw_body.startswith(str(status).encode())
    assert reply.eof and not reply.reset
    hello_works(server.port)


@pytest.mark.parametrize("name, status, half_close", CASES, ids=[case[0] for case in CASES])
@pytest.mark.parametrize("pieces", [1, 3])
def test_the_parser_refuses_each_malformed_request_with_the_same_status(
        name, status, half_close, pieces):
    data = by_id(name).data
    if half_close:  # nothing wrong until the end: no answer before the EOF
        assert fed_status(data, pieces=pieces, eof=False) is None
    assert fed_status(data, pieces=pieces) == status


def test_at_least_thirty_malformed_cases():
    assert len(CASES) >= 30


def test_every_error_is_logged_and_nothing_crashed(server):
    wire.exchange(HOST, server.port, by_id("version-2.0").data, timeout=10.0)
    assert server.wait_for_log(r'"GET /environ HTTP/2.0" 505 \d+ \(HTTP/2.0 is not supported')
    assert server.proc.poll() is None
    assert "internal error" not in server.stderr()
