"""Part 2 of the article: claim C9, the environ a WSGI application receives.

The bare application (wsgiapp.py) answers GET /environ with every key the
server passed it, as {"KEY": {"type": "str", "value": ...}} (str values as
they are, the others as repr()), and POST /echo with the length and sha256
of the body it read from wsgi.input.
"""

import hashlib
import json

import pytest
from instrument import wire
from servicelocks import SHARED, held

HOST = "part2-wsgi"

WSGI_KEYS = {  # key: (type name, repr of the value PEP 3333 asks for, or None)
    "wsgi.version": ("tuple", "(1, 0)"),
    "wsgi.url_scheme": ("str", "http"),
    "wsgi.input": (None, None),
    "wsgi.errors": (None, None),
    "wsgi.multithread": ("bool", "False"),
    "wsgi.multiprocess": ("bool", "False"),  # webserver2: one process, one request
    "wsgi.run_once": ("bool", "False"),
}
CGI_KEYS = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
            "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL"]
SCALARS = {"str", "bytes", "int", "float", "bool", "NoneType", "tuple", "list", "dict"}


def _request(method, target, headers=(), body=b""):
    head = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:8888", "Connection: close",
            *headers]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _json_reply(data):
    reply = wire.exchange(HOST, data=data, timeout=10)
    assert reply.eof, reply.summary()
    assert reply.status == 200, reply.data[:300]
    return json.loads(reply.body)


@pytest.fixture(scope="module")
def environ(up):
    up(HOST)
    with held(SHARED, [HOST]):  # only asks (tests/servicelocks.py)
        return _json_reply(_request("GET", "/environ?lesson=2&claim=9",
                                    ["X-Lsbaws-Probe: forty-two", "User-Agent: lsbaws-tests"]))


@pytest.mark.parametrize("key", sorted(WSGI_KEYS))
def test_c9_environ_holds_the_required_wsgi_key(environ, key):
    assert key in environ, f"{key} missing from the environ: {sorted(environ)}"
    type_name, value = WSGI_KEYS[key]
    got = environ[key]
    if type_name is not None:
        assert got["type"] == type_name, f"{key} is a {got['type']}, PEP 3333 wants {type_name}"
    if value is not None:
        assert got["value"] == value, f"{key} = {got['value']!r}, expected {value!r}"


def test_c9_wsgi_input_and_errors_are_streams_not_values(environ):
    for key in ("wsgi.input", "wsgi.errors"):
        assert environ[key]["type"] not in SCALARS, f"{key} is a plain {environ[key]['type']}"
    assert "TextIO" in environ["wsgi.errors"]["type"] or "StringIO" in environ["wsgi.errors"]["type"]


def test_c9_wsgi_input_is_the_request_body(up):
    """wsgi.input really is a binary stream holding the body: the app reads it
    and reports its length and sha256."""
    up(HOST)
    body = bytes(range(256)) * 300 + b"end"
    got = _json_reply(_request("POST", "/echo", ["Content-Type: application/octet-stream"], body))
    assert got == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("key", CGI_KEYS)
def test_c9_environ_holds_the_cgi_key_as_a_native_string(environ, key):
    assert key in environ, f"{key} missing from the environ: {sorted(environ)}"
    assert environ[key]["type"] == "str", f"{key} is a {environ[key]['type']}, not str"


def test_c9_cgi_values_describe_this_request(environ):
    value = {k: v["value"] for k, v in environ.items()}
    assert value["REQUEST_METHOD"] == "GET"
    assert value["PATH_INFO"] == "/environ"
    assert value["QUERY_STRING"] == "lesson=2&claim=9"
    assert value["SCRIPT_NAME"] == ""
    assert value["SERVER_PORT"] == "8888"
    assert value["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert value["SERVER_NAME"], "SERVER_NAME is empty"
    # the request's header fields arrive as HTTP_* keys
    assert value["HTTP_X_LSBAWS_PROBE"] == "forty-two"
    assert value["HTTP_USER_AGENT"] == "lsbaws-tests"


def test_c9_every_cgi_and_http_key_is_a_native_string(environ):
    """PEP 3333: every key not starting with 'wsgi.' holds a str."""
    not_str = {k: v["type"] for k, v in environ.items()
               if not k.startswith("wsgi.") and v["type"] != "str"}
    assert not not_str, not_str
