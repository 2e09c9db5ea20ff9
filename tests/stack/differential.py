"""The differential cases: what every WSGI server of the stack is asked, and
how its answer is read, beside gunicorn. Used by test_wsgi_differential.py
(webserver2, webserver3h) and test_part4.py (webserver4a, 4b).

Every case below goes to gunicorn-<app> (gunicorn 27, 2 sync workers, the
yardstick) and to our two servers with the same application, part2-<app>
(webserver2, iterative) and part3-wsgi-<app> (webserver3h, fork per
connection), all inside the compose network. The status, the
Content-Type and the body must be the same. Each server gets the same
bytes, with the same `Host: lsbaws.test`, so nothing in a body depends on
which server answered; what still legitimately differs is normalised
explicitly, case by case (Django's CSRF token, which is random per
response; the environ keys a server adds of its own).

Over 25 cases per application: GET, HEAD, 404, 405, OPTIONS, HTTP/1.0,
query strings, percent-encoded and raw UTF-8 paths, absolute-form targets,
repeated headers, a 6 KiB cookie, a 7 KiB header, 90 header fields, form
POSTs over 64 KiB (plain, chunked, with Expect: 100-continue), the Flask
JSON endpoint, the Pyramid route with a matchdict, and Django's form with
its CSRF token (GET the form, POST it back with the cookie and the token:
200; without either: 403).

Where our servers differ from gunicorn on purpose, the case is in
DIFFERS_BY_DESIGN: it asserts what ours must answer and prints what
gunicorn answered. The list below is docs/wsgicore.md's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from instrument import wire
from instrument.engine import PORT
from instrument.wire import chunked, parse_response, request

# The differences that remain by design (docs/wsgicore.md copies this list).
DIFFERENCES_BY_DESIGN = [
    "Repeated header fields are joined with ', ' (and Cookie fields with '; ', the "
    "separator cookie parsers split on); gunicorn joins with a bare ',', so two Cookie "
    "fields 'a=1' and 'b=2' reach the application as 'a=1,b=2' and Django reads one "
    "cookie a='1,b=2'.",
    "A raw (not percent-encoded) UTF-8 request target is not a URI: ours answers 400 "
    "(RFC 9112 section 3), and so does gunicorn 27 (gunicorn 23 accepted it and encoded "
    "it twice, so Pyramid's /greet/café greeted 'cafÃ©'). Percent-encoded paths are the "
    "same on both.",
    "An absolute-form target (GET http://host/path) sets HTTP_HOST from the target, as "
    "RFC 9112 section 3.2.2 requires; gunicorn keeps the Host header.",
    "A chunked request body is decoded before the application runs and handed over "
    "with CONTENT_LENGTH, HTTP_TRANSFER_ENCODING as sent and wsgi.input_terminated; "
    "gunicorn passes the stream on with wsgi.input_terminated and no CONTENT_LENGTH. "
    "Frameworks that only read CONTENT_LENGTH (Django) see an empty body under "
    "gunicorn and the real body under ours.",
    "Ours sets GATEWAY_INTERFACE and SERVER_NAME = the container's host name, reports "
    "wsgi.multiprocess False in the iterative webserver2 (True in webserver3h) and has "
    "no wsgi.file_wrapper, wsgi.input_terminated, RAW_URI, gunicorn.socket or "
    "wsgi.early_hints (gunicorn 27's); gunicorn sets SERVER_NAME to its bind address (0.0.0.0).",
    "A HEAD answer never has a body, with ours and with gunicorn 27 (gunicorn 23 sent "
    "whatever the application returned: the bare wsgiapp's HEAD /hello got the 44-byte "
    "body after its head, which a keep-alive client would read as the next response).",
    "Every response of ours carries Connection: close and a Content-Length when the "
    "application's body is a list; gunicorn uses chunked transfer-coding for an "
    "HTTP/1.1 response without Content-Length. The bodies are the same once decoded.",
]

APPS = ["wsgi", "flask", "pyramid", "django"]
HOST = "lsbaws.test"  # the same Host for every server: bodies do not depend on it
KIB = 1024


def ours(app: str) -> list[str]:
    return [f"part2-{app}", f"part3-wsgi-{app}"]


def gunicorn(app: str) -> str:
    return f"gunicorn-{app}"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes


@dataclass
class Case:
    """One request (or a short flow, for CSRF) and how to compare its answer."""

    id: str
    method: str = "GET"
    target: str | bytes = "/hello"
    headers: tuple = ()
    body: bytes = b""
    version: str = "HTTP/1.1"
    host: str | None = HOST
    expect: int | None = None  # what gunicorn must answer: the case tests what it says
    normalise: Callable[[bytes], bytes] | None = None
    flow: Callable[[str, int], Answer] | None = None  # several requests: the last answer

    def raw(self) -> bytes:
        return request(self.method, self.target, self.host, self.headers, self.body, self.version)


def ask(server: str, case: Case, strict: bool = True, port: int = PORT) -> Answer:
    """Send the case to `server`; the answer with the body normalised.
    `strict`: the server must close cleanly (no reset) after a complete answer.
    (Not strict: returns (the answer, a summary of the connection).)"""
    if case.flow is not None:
        answer = case.flow(server, port)
    else:
        got = wire.exchange(server, port, case.raw(), timeout=20)
        if not strict:
            resp = parse_response(got.data, head_request=case.method == "HEAD")
            return Answer(resp.status, resp.content_type, resp.body), got.summary()
        assert got.closed and not got.reset, f"{server}: {case.id}: {got.summary()}"
        resp = parse_response(got.data, head_request=case.method == "HEAD")
        assert resp.complete, f"{server}: {case.id}: incomplete response {got.data[:300]!r}"
        answer = Answer(resp.status, resp.content_type, resp.body)
    if case.normalise is not None:
        answer = Answer(answer.status, answer.content_type, case.normalise(answer.body))
    return answer


# ---------------------------------------------------------------- bodies

def form_body(size: int) -> bytes:
    """An urlencoded form of about `size` bytes: many fields, some non-ASCII."""
    fields, total, i = [], 0, 0
    while total < size:
        value = f"value {i} é&=+ " + "x" * 900
        fields.append((f"field{i}", value))
        total += len(urlencode([fields[-1]])) + 1
        i += 1
    return urlencode(fields).encode()


BIG_FORM = form_body(100 * KIB)  # over 64 KiB: past any single recv() and read buffer
FORM_CT = ("Content-Type", "application/x-www-form-urlencoded")
COOKIE_6K = ("Cookie", "big=" + "c" * 6 * KIB + "; small=1")
BIG_HEADER = ("X-Big", "h" * 7 * KIB)
MANY_FIELDS = tuple((f"X-Field-{i}", str(i)) for i in range(90))


# ---------------------------------------------------------------- normalisers

# environ keys a server adds of its own, or that differ by design (see the list above)
ENVIRON_SKIP = {"SERVER_SOFTWARE", "SERVER_NAME", "REMOTE_PORT", "GATEWAY_INTERFACE",
                "RAW_URI", "gunicorn.socket", "wsgi.errors", "wsgi.input", "wsgi.file_wrapper",
                "wsgi.input_terminated", "wsgi.multiprocess", "wsgi.early_hints"}


def environ_view(drop: tuple = (), joined: tuple = ()) -> Callable[[bytes], bytes]:
    """/environ's JSON without the keys a server adds of its own; `joined`
    keys are repeated headers, compared as the list of their parts."""
    def normalise(body: bytes) -> bytes:
        data = json.loads(body)
        view = {}
        for key, item in data.items():
            if key in ENVIRON_SKIP or key in drop:
                continue
            value = item["value"]
            if key in joined:
                value = re.split(r"\s*[,;]\s*", value)
            view[key] = value
        return json.dumps(view, sort_keys=True, indent=1).encode()
    return normalise


_CSRF_IN_FORM = re.compile(rb'name="csrfmiddlewaretoken" value="[A-Za-z0-9]{32,64}"')


def csrf_token_out(body: bytes) -> bytes:
    """Django masks the CSRF token afresh in every response: keep its place."""
    new, count = _CSRF_IN_FORM.subn(b'name="csrfmiddlewaretoken" value="<token>"', body)
    assert count == 1, f"no CSRF token in the form: {body[:300]!r}"
    return new


# ---------------------------------------------------------------- Django's CSRF flows

def _get_form(server: str, port: int) -> tuple[str, str]:
    got = wire.exchange(server, port, request("GET", "/form", HOST), timeout=20)
    resp = got.response()
    assert resp.status == 200, f"{server}: GET /form: {got.summary()}"
    cookie = next((c.split(";")[0] for c in resp.header_all("Set-Cookie")
                   if c.startswith("csrftoken=")), None)
    assert cookie, f"{server}: GET /form set no csrftoken cookie: {resp.headers}"
    token = re.search(rb'name="csrfmiddlewaretoken" value="([A-Za-z0-9]+)"', resp.body)
    assert token, f"{server}: no token in the form"
    return cookie, token.group(1).decode()


def csrf_flow(with_cookie: bool, with_token: bool, extra: dict | None = None,
              wrong_cookie: bool = False) -> Callable[[str, int], Answer]:
    def flow(server: str, port: int) -> Answer:
        cookie, token = _get_form(server, port)
        if wrong_cookie:
            cookie = "csrftoken=" + "A" * 32
        fields = {"name": "wörld", **(extra or {})}
        if with_token:
            fields["csrfmiddlewaretoken"] = token
        headers = [FORM_CT] + ([("Cookie", cookie)] if with_cookie else [])
        body = urlencode(fields).encode()
        got = wire.exchange(server, port, request("POST", "/form", HOST, headers, body),
                            timeout=20)
        resp = got.response()
        return Answer(resp.status, resp.content_type, resp.body)
    return flow


# ---------------------------------------------------------------- the cases

def common_cases(app: str) -> list[Case]:
    """The requests every application gets: the server's part of HTTP."""
    hello = 200
    missing = 200 if app == "wsgi" else 404  # the bare app answers every path
    # Django's CSRF check runs before the view's method check: unsafe methods get 403
    post_hello = {"wsgi": 200, "flask": 405, "pyramid": 200, "django": 403}[app]
    options = {"wsgi": 200, "flask": 200, "pyramid": 200, "django": 405}[app]
    return [
        Case("get", expect=hello),
        Case("head", "HEAD", expect=hello),
        Case("http-1.0-no-host", version="HTTP/1.0", host=None, expect=hello),
        Case("query-string", target="/hello?x=1&y=two%20words&z=%E2%9C%93", expect=hello),
        Case("empty-query", target="/hello?", expect=hello),
        Case("percent-encoded-path", target="/%68%65llo", expect=hello),
        Case("404", target="/nothere", expect=missing),
        Case("head-404", "HEAD", "/nothere", expect=missing),
        Case("percent-utf8-path", target="/caf%C3%A9", expect=missing),
        Case("post-to-get-route", "POST", headers=(FORM_CT,), body=b"a=1", expect=post_hello),
        Case("put", "PUT", body=b"x", expect=post_hello),
        Case("delete", "DELETE", expect=post_hello),
        Case("options", "OPTIONS", expect=options),
        Case("repeated-headers", headers=(("Accept", "text/plain"), ("Accept", "*/*"),
                                          ("X-Rep", "a"), ("X-Rep", "b")), expect=hello),
        Case("cookie-6k", headers=(COOKIE_6K,), expect=hello),
        Case("header-7k", headers=(BIG_HEADER,), expect=hello),
        Case("90-header-fields", headers=MANY_FIELDS, expect=hello),
        Case("trailing-slash", target="/hello/", expect=missing),
        Case("double-slash", target="//hello",
             expect={"wsgi": 200, "flask": 200, "pyramid": 404, "django": 404}[app]),
        Case("absolute-form", target=f"http://{HOST}/hello", expect=hello),
        Case("get-with-body", headers=(("Content-Type", "text/plain"),), body=b"hello body",
             expect=hello),
        Case("keep-alive-asked", headers=(("Connection", "keep-alive"),), expect=hello),
        Case("underscore-header", headers=(("X_Forwarded_For", "1.2.3.4"),), expect=hello),
        Case("lowercase-header-names", headers=(("accept", "*/*"), ("user-agent", "t")),
             expect=hello),
        Case("fragment-in-target", target="/hello#frag", expect=hello),
    ]


def form_cases(path: str, expect: int = 200) -> list[Case]:
    """A form over 64 KiB: plain, chunked, with Expect: 100-continue; and empty."""
    return [
        Case("post-form-100k", "POST", path, (FORM_CT,), BIG_FORM, expect=expect),
        Case("post-form-100k-chunked", "POST", path,
             (FORM_CT, ("Transfer-Encoding", "chunked")), chunked(BIG_FORM), expect=expect),
        Case("post-form-100k-expect-100", "POST", path,
             (FORM_CT, ("Expect", "100-continue")), BIG_FORM, expect=expect),
        Case("post-form-empty", "POST", path, (FORM_CT, ("Content-Length", "0")), expect=expect),
    ]


def wsgi_cases() -> list[Case]:
    env = environ_view()
    return common_cases("wsgi") + form_cases("/echo") + [
        Case("environ", target="/environ", normalise=env, expect=200),
        Case("environ-query", target="/environ?a=1&a=2&b=%20c+d&e=%E2%9C%93&f",
             normalise=env, expect=200),
        Case("environ-percent-path", target="/%65nviron", normalise=env, expect=200),
        Case("environ-http-1.0", target="/environ", version="HTTP/1.0", host=None,
             normalise=env, expect=200),
        Case("environ-repeated-headers", target="/environ",
             headers=(("X-Rep", "a"), ("X-Rep", "b, c"), ("Cookie", "a=1"), ("Cookie", "b=2")),
             normalise=environ_view(joined=("HTTP_X_REP", "HTTP_COOKIE")), expect=200),
        Case("environ-cookie-6k", target="/environ", headers=(COOKIE_6K,), normalise=env,
             expect=200),
        Case("environ-underscore-dropped", target="/environ",
             headers=(("X_Forwarded_For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8")),
             normalise=env, expect=200),
        Case("environ-post-form", "POST", "/environ", (FORM_CT,), b"a=1&b=2", normalise=env,
             expect=200),
        Case("environ-head", "HEAD", "/environ", expect=200),
    ]


def flask_cases() -> list[Case]:
    json_ct = ("Content-Type", "application/json")
    doc = json.dumps({"k": [1, 2], "s": "é ✓", "n": None}).encode()
    return common_cases("flask") + form_cases("/form") + [
        Case("api-echo", target="/api/echo", expect=200),
        Case("api-echo-query", target="/api/echo?a=1&a=2&b=%E2%9C%93&c=x+y&d=", expect=200),
        Case("api-echo-json", "POST", "/api/echo", (json_ct,), doc, expect=200),
        Case("api-echo-json-chunked", "POST", "/api/echo",
             (json_ct, ("Transfer-Encoding", "chunked")), chunked(doc, 7), expect=200),
        Case("api-echo-json-big", "POST", "/api/echo", (json_ct,),
             json.dumps({"big": "x" * 80 * KIB}).encode(), expect=200),
        Case("api-echo-not-json", "POST", "/api/echo", (("Content-Type", "text/plain"),),
             b"plain", expect=200),
        Case("api-echo-bad-json", "POST", "/api/echo", (json_ct,), b"{nope", expect=200),
        Case("api-echo-head", "HEAD", "/api/echo", expect=200),
        Case("form-get-405", target="/form", expect=405),
        Case("form-multipart", "POST", "/form",
             (("Content-Type", "multipart/form-data; boundary=XyZ"),),
             b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
             b"--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nzwei\r\n--XyZ--\r\n",
             expect=200),
    ]


def pyramid_cases() -> list[Case]:
    return common_cases("pyramid") + form_cases("/form") + [
        Case("greet", target="/greet/world", expect=200),
        Case("greet-percent-utf8", target="/greet/caf%C3%A9", expect=200),
        Case("greet-query", target="/greet/world?lang=fr", expect=200),
        Case("greet-encoded-slash", target="/greet/a%2Fb", expect=404),
        Case("greet-empty", target="/greet/", expect=404),
        Case("greet-head", "HEAD", "/greet/world", expect=200),
        Case("form-get-404", target="/form", expect=404),
    ]


def django_cases() -> list[Case]:
    return common_cases("django") + form_cases("/upload") + [
        Case("form-get", target="/form", normalise=csrf_token_out, expect=200),
        Case("form-head", "HEAD", "/form", expect=200),
        Case("csrf-post-with-cookie-and-token", flow=csrf_flow(True, True), expect=200),
        Case("csrf-post-100k-with-cookie-and-token",
             flow=csrf_flow(True, True, {"big": "é" * 50 * KIB}), expect=200),
        Case("csrf-post-without-cookie-and-token", "POST", "/form", (FORM_CT,), b"name=x",
             expect=403),
        Case("csrf-post-token-without-cookie", flow=csrf_flow(False, True), expect=403),
        Case("csrf-post-cookie-without-token", flow=csrf_flow(True, False), expect=403),
        Case("csrf-post-wrong-cookie", flow=csrf_flow(True, True, wrong_cookie=True),
             expect=403),
        Case("form-put-csrf-403", "PUT", "/form", body=b"x", expect=403),
        Case("upload-get-405", target="/upload", expect=405),
    ]


CASES = {"wsgi": wsgi_cases(), "flask": flask_cases(), "pyramid": pyramid_cases(),
         "django": django_cases()}

# Cases where ours differs on purpose: (app, case id) -> what ours must answer.
# The chunked uploads to Django are left out of the common cases for this
# reason (Django reads CONTENT_LENGTH only).
DIFFERS_BY_DESIGN = {
    ("wsgi", "head-no-body"): (
        Case("head-no-body", "HEAD", "/hello"),
        Answer(200, "text/plain", b"")),
    ("pyramid", "greet-raw-utf8"): (
        Case("greet-raw-utf8", target="/greet/café".encode()),
        Answer(400, "text/plain; charset=utf-8",  # RFC 9112 section 3: not a URI
               b"400 Bad Request: invalid character in the request target\n")),
    ("django", "upload-100k-chunked"): (
        Case("upload-100k-chunked", "POST", "/upload",
             (FORM_CT, ("Transfer-Encoding", "chunked")), chunked(BIG_FORM)),
        None),  # filled in below: the same answer as the plain 100 KiB upload
    ("wsgi", "environ-absolute-form"): (
        Case("environ-absolute-form", target="http://other.example:8080/environ?q=1"),
        None),  # checked by key: HTTP_HOST comes from the target
    ("wsgi", "environ-chunked"): (
        Case("environ-chunked", "POST", "/environ",
             (("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")),
             chunked(b"0123456789" * 10, 30)),
        None),  # checked by key: CONTENT_LENGTH 100, HTTP_TRANSFER_ENCODING kept
    ("wsgi", "environ-repeated-raw"): (
        Case("environ-repeated-raw", target="/environ",
             headers=(("X-Rep", "a"), ("X-Rep", "b"), ("Cookie", "a=1"), ("Cookie", "b=2"))),
        None),  # checked by key: 'a, b' and 'a=1; b=2'
}
# The chunked case is also in the common list for Django: drop it there.
CASES["django"] = [c for c in CASES["django"] if c.id != "post-form-100k-chunked"]


# what a validated run must not log; an answer without the twin's port
BAD_LOG = re.compile(r"AssertionError|Traceback|WSGIWarning|Exception ignored|"
                     r'" 5\d\d \d+')


def without_port(answer):
    """Under wsgiref.validate (a twin on port 8899): /environ's SERVER_PORT says so, rightly."""
    if answer.content_type == "application/json" and b'"SERVER_PORT"' in answer.body:
        data = json.loads(answer.body)
        data.pop("SERVER_PORT")
        return Answer(answer.status, answer.content_type, json.dumps(data).encode())
    return answer
