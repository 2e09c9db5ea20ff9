"""The requests the grader sends: the ids of the malformed ones (bad-input,
read from conformance.cases), the ones compared with gunicorn (parity), a
browser's (hello). Data, in one place."""

from __future__ import annotations

from instrument.wire import request

HOST = "grade.test"

BROWSER = (
    b"GET /hello HTTP/1.1\r\n"
    b"Host: grade.test:8888\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Accept-Language: en-GB,en;q=0.9\r\n"
    b"\r\n"
)


# The bad-input stage's malformed requests: ids of the one corpus,
# conformance.cases (read with by_id, never copied here). Each is complete
# (its head ends with the empty line, any body it declares is sent), so a
# correct server answers at once; each is refused by gunicorn (its recorded
# answers) and by the stack's webserver2/3h/4a/4b: none is a matter of taste.
# Nothing is wrong only in a body (a server that streams the body to the app
# finds out only when the app reads it). What the grader expects of each:
# a 4xx, 501 or 505, or the connection closed.
BAD_INPUT_IDS: list[str] = [
    "no-version", "four-parts", "http-0.9", "method-bad-char", "method-empty",
    "version-lowercase", "version-no-minor", "version-two-digits", "version-2.0",
    "version-garbage", "target-too-long", "binary-garbage", "only-empty-lines",
    "space-before-colon", "tab-before-colon", "field-no-colon", "field-empty-name",
    "field-name-space", "field-name-at", "field-name-non-ascii", "field-line-too-long",
    "fields-too-many", "content-length-differing", "content-length-list-differing",
    "content-length-negative", "content-length-plus", "content-length-hex",
    "content-length-letters", "content-length-empty", "content-length-space-inside",
    "content-length-and-chunked", "chunked-twice", "transfer-encoding-empty",
    "transfer-encoding-http-1.0",
]


def malformed() -> list[tuple[str, bytes]]:
    """(id, bytes) of each bad-input request, from the corpus."""
    from conformance.cases import by_id

    return [(name, by_id(name).data) for name in BAD_INPUT_IDS]


# (label, request): compared with gunicorn serving the same app.
_PARITY_PATHS = ["/parity", "/parity/a/b/c", "/parity/x?y=1", "/parity?a=1&a=2&b=",
                 "/parity/%7Euser", "/parity/a%20b", "/parity/caf%C3%A9", "/parity?q=%E2%9C%93",
                 "/parity/trailing/", "/parity//double", "/parity/..%2Fup", "/parity?",
                 "/hello", "/hello?name=you", "/nothing/here"]
PARITY: list[tuple[str, bytes]] = (
    [(f"GET {p}", request("GET", p, HOST)) for p in _PARITY_PATHS]
    + [(f"GET /status/{c}", request("GET", f"/status/{c}", HOST))
       for c in (201, 301, 403, 404, 418, 500, 503)]
    + [(f"GET /type/{t}", request("GET", f"/type/{t}", HOST))
       for t in ("text/html", "application/json", "image/png")]
    + [("POST form", request("POST", "/parity/form", HOST,
                             [("Content-Type", "application/x-www-form-urlencoded")],
                             b"a=1&b=two&c=%20")),
       ("POST json", request("POST", "/parity/json", HOST, [("Content-Type", "application/json")],
                             b'{"x": [1, 2, 3]}')),
       ("POST 20 KB", request("POST", "/parity/big", HOST,
                              [("Content-Type", "application/octet-stream")], b"z" * 20000)),
       ("POST empty", request("POST", "/parity/empty", HOST, [("Content-Length", "0")])),
       ("PUT", request("PUT", "/parity/put", HOST, [("Content-Type", "text/plain")], b"put it")),
       ("DELETE", request("DELETE", "/parity/del", HOST)),
       ("OPTIONS", request("OPTIONS", "/parity/opt", HOST)),
       ("custom header", request("GET", "/parity/h", HOST, [("X-Grade", "7"),
                                                             ("Accept", "text/plain")])),
       ("HTTP/1.0", request("GET", "/parity/ten", HOST, version="HTTP/1.0")),
       ("PATCH", request("PATCH", "/parity/patch", HOST, [("Content-Type", "text/plain")],
                         b"patch")),
       ("GET 405", request("TRACE", "/hello", HOST))]
)
