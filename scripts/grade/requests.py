"""The requests the grader sends: the malformed ones (bad-input), the ones
compared with gunicorn (parity), a browser's (hello). Data, in one place."""

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


def _req(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return b"\r\n".join([line, *headers]) + b"\r\n\r\n" + body


_H = b"Host: grade.test"

# (id, bytes): each complete (it ends with its empty line and declares no body
# it does not send), so a correct server answers at once; none is a matter of
# taste (each is refused by gunicorn and by the stack's webserver2/3h alike).
# Nothing is wrong only in a body: a server that streams the body to the app
# finds that out only when the app reads it.
MALFORMED: list[tuple[str, bytes]] = [
    ("garbage-line", b"garbage\r\n\r\n"),
    ("garbage-words", b"hello there server\r\n\r\n"),
    ("only-method", b"GET\r\n\r\n"),
    ("no-version", b"GET /\r\n\r\n"),
    ("four-parts", _req(b"GET / HTTP/1.1 extra", _H)),
    ("double-space", _req(b"GET  / HTTP/1.1", _H)),
    ("leading-space", _req(b" GET / HTTP/1.1", _H)),
    ("bad-method-char", _req(b"G@T / HTTP/1.1", _H)),
    ("method-with-colon", _req(b"GE:T / HTTP/1.1", _H)),
    ("lowercase-version", _req(b"GET / http/1.1", _H)),
    ("version-1.x", _req(b"GET / HTTP/1.x", _H)),
    ("version-11", _req(b"GET / HTTP/11", _H)),
    ("version-empty", _req(b"GET / HTTP/", _H)),
    ("version-ftp", _req(b"GET / FTP/1.1", _H)),
    ("version-2.0", _req(b"GET / HTTP/2.0", _H)),
    ("version-0.9", _req(b"GET / HTTP/0.9", _H)),
    ("version-1.1.1", _req(b"GET / HTTP/1.1.1", _H)),
    ("version-no-slash", _req(b"GET / HTTP1.1", _H)),
    ("version-1.01", _req(b"GET / HTTP/1.01", _H)),
    ("space-in-target", _req(b"GET /a b HTTP/1.1", _H)),
    ("target-9000", _req(b"GET /" + b"a" * 9000 + b" HTTP/1.1", _H)),
    ("header-no-colon", _req(b"GET / HTTP/1.1", _H, b"NoColonHere")),
    ("header-empty-name", _req(b"GET / HTTP/1.1", _H, b": value")),
    ("header-space-in-name", _req(b"GET / HTTP/1.1", _H, b"Bad Name: value")),
    ("header-space-before-colon", _req(b"GET / HTTP/1.1", _H, b"Name : value")),
    ("header-first-folded", _req(b"GET / HTTP/1.1", b" Folded: value", _H)),
    ("header-nul-in-value", _req(b"GET / HTTP/1.1", _H, b"X-A: a\x00b")),
    ("header-del-in-name", _req(b"GET / HTTP/1.1", _H, b"X\x7fA: value")),
    ("header-9000", _req(b"GET / HTTP/1.1", _H, b"X-Long: " + b"v" * 9000)),
    ("fields-150", _req(b"GET / HTTP/1.1", _H, *[b"X-F%d: v" % i for i in range(150)])),
    ("content-length-word", _req(b"POST / HTTP/1.1", _H, b"Content-Length: abc")),
    ("content-length-negative", _req(b"POST / HTTP/1.1", _H, b"Content-Length: -1")),
    ("content-length-plus", _req(b"POST / HTTP/1.1", _H, b"Content-Length: +0")),
    ("content-length-hex", _req(b"POST / HTTP/1.1", _H, b"Content-Length: 0x0")),
    ("content-length-conflict", _req(b"POST / HTTP/1.1", _H, b"Content-Length: 0",
                                     b"Content-Length: 7")),
    ("content-length-and-chunked", _req(b"POST / HTTP/1.1", _H, b"Content-Length: 5",
                                        b"Transfer-Encoding: chunked", body=b"0\r\n\r\n")),
    ("transfer-encoding-unknown", _req(b"POST / HTTP/1.1", _H, b"Transfer-Encoding: zip")),
    ("header-slash-in-name", _req(b"GET / HTTP/1.1", _H, b"X/Y: value")),
    ("tls-hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) +
     b"\r\n\r\n"),
    ("binary", bytes(range(1, 32)) + b"\r\n\r\n"),
    ("utf8-method", _req("GÉT / HTTP/1.1".encode(), _H)),
    ("empty-lines-only", b"\r\n\r\n\r\n\r\n" * 3 + b"X\r\n\r\n"),
]

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
