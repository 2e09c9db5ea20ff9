"""The HTTP/1.1 request conformance set: cases written from RFC 9110 and
RFC 9112, each with its section, the raw bytes, and what a server must do.

Every case is sent on its own connection, followed by a half-close (the
server sees EOF after the bytes), to a server serving wsgiapp, whose
/environ route answers with the environ and the body it read. A case is:

- valid (`env` set, `reject` empty): 200, and the environ holds `env`
  (a value may be a tuple of equally right answers, or ABSENT), and the
  application read `body` from wsgi.input;
- invalid (`env` None): refused, with a status in `reject` ("close": the
  connection closed without an answer);
- either (both set): the RFC lets the server refuse or accept (for example
  "reject the message or replace each CR with SP"); both are right.

DEVIATIONS are the places where our servers differ from the RFC on purpose;
they are shown beside the scores, not counted in them.

Written for this project from the RFC text; no other project's corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

ABSENT = object()  # the key must not be in the environ
HOST = b"Host: conformance.test\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    rfc: str  # "9112 6.3": RFC number and section
    data: bytes
    env: dict | None = None  # expected environ subset when accepted
    body: bytes | None = b""  # what the application reads from wsgi.input
    reject: tuple = ()  # acceptable refusals: statuses, or "close"
    note: str = ""
    echo: bool = True  # False: the answer has no environ (HEAD, OPTIONS *): status only
    ours: object = None  # DEVIATIONS only: what our servers answer ("env" or a status)

    @property
    def kind(self) -> str:
        if not self.reject:
            return "valid"
        return "invalid" if self.env is None else "either"


def get(target=b"/environ", *fields, method=b"GET", version=b"HTTP/1.1", host=HOST, body=b""):
    head = method + b" " + target + b" " + version + b"\r\n" + (host or b"")
    return head + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def post(body, *fields, target=b"/environ"):
    return get(target, *fields, method=b"POST", body=body)


def chunked(encoded, *fields, target=b"/environ"):
    return get(target, b"Transfer-Encoding: chunked", *fields, method=b"POST", body=encoded)


def valid(name, rfc, data, env=None, body=b"", note="", echo=True):
    return Case(name, rfc, data, env=dict(env or {}), body=body, note=note, echo=echo)


def invalid(name, rfc, data, *reject, note=""):
    return Case(name, rfc, data, env=None, body=None, reject=tuple(reject or (400,)), note=note)


def either(name, rfc, data, env, reject=(400,), body=b"", note=""):
    return Case(name, rfc, data, env=dict(env), body=body, reject=tuple(reject), note=note)


LONG = b"a" * 8000

CASES = [
    # ---- the request line (RFC 9112 section 3) ---------------------------------
    valid("get-origin-form", "9112 3.2.1", get(),
          {"REQUEST_METHOD": "GET", "PATH_INFO": "/environ", "QUERY_STRING": "",
           "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "", "HTTP_HOST": "conformance.test"}),
    valid("http-1.0", "9112 2.3", get(version=b"HTTP/1.0", host=None),
          {"SERVER_PROTOCOL": "HTTP/1.0", "PATH_INFO": "/environ"}),
    valid("query", "9112 3.2.1", get(b"/environ?a=1&b=2"),
          {"PATH_INFO": "/environ", "QUERY_STRING": "a=1&b=2"}),
    valid("query-empty", "9112 3.2.1", get(b"/environ?"), {"QUERY_STRING": ""}),
    valid("query-with-slash-and-question-mark", "9110 4.1", get(b"/environ?a=/b?c"),
          {"QUERY_STRING": "a=/b?c"}),
    valid("query-percent-kept-raw", "9110 4.1", get(b"/environ?q=%20x%2B"),
          {"QUERY_STRING": "q=%20x%2B"}),
    valid("path-percent-space", "9110 4.1", get(b"/environ/a%20b"),
          {"PATH_INFO": "/environ/a b"}),
    valid("path-percent-utf8", "9110 4.1", get(b"/environ/caf%C3%A9"),
          {"PATH_INFO": "/environ/caf\u00c3\u00a9"}, note="PEP 3333: the bytes as latin-1"),
    valid("path-percent-lowercase-hex", "9110 4.1", get(b"/environ/%7euser"),
          {"PATH_INFO": "/environ/~user"}),
    valid("path-sub-delims", "9110 4.1", get(b"/environ/a;b=c,d!$&'()*+"),
          {"PATH_INFO": "/environ/a;b=c,d!$&'()*+"}),
    valid("path-colon-at", "9110 4.1", get(b"/environ/a:b@c"), {"PATH_INFO": "/environ/a:b@c"}),
    valid("path-double-slash", "9110 4.1", get(b"/environ//x"), {"PATH_INFO": "/environ//x"}),
    valid("method-extension", "9110 9.1", get(method=b"PURGE"), {"REQUEST_METHOD": "PURGE"}),
    valid("method-with-tchar", "9110 9.1", get(method=b"M-SEARCH"),
          {"REQUEST_METHOD": "M-SEARCH"}),
    valid("method-case-sensitive", "9110 9.1", get(method=b"get"), {"REQUEST_METHOD": "get"},
          note="methods are case-sensitive: 'get' is another method than GET"),
    valid("method-put-with-body", "9110 9.3.4",
          get(b"/environ", b"Content-Length: 3", method=b"PUT", body=b"abc"),
          {"REQUEST_METHOD": "PUT", "CONTENT_LENGTH": "3"}, body=b"abc"),
    valid("method-delete", "9110 9.3.5", get(method=b"DELETE"), {"REQUEST_METHOD": "DELETE"}),
    valid("head", "9110 9.3.2", get(b"/hello", method=b"HEAD"), echo=False,
          note="status only: a HEAD answer has no body"),
    valid("options-asterisk", "9112 3.2.4", get(b"*", method=b"OPTIONS"), echo=False,
          note="status only: wsgiapp answers * with its greeting"),
    valid("absolute-form", "9112 3.2.2", get(b"http://example.org/environ", host=None),
          {"HTTP_HOST": "example.org", "PATH_INFO": "/environ"}),
    valid("absolute-form-port-query", "9112 3.2.2",
          get(b"http://example.org:8080/environ?x=1", host=None),
          {"HTTP_HOST": "example.org:8080", "PATH_INFO": "/environ", "QUERY_STRING": "x=1"}),
    valid("absolute-form-wins-over-host", "9112 3.2.2",
          get(b"http://example.org/environ", b"Host: other.test", host=None),
          {"HTTP_HOST": "example.org"},
          note="the server MUST ignore the Host field and use the target's authority"),
    valid("absolute-form-scheme-case", "9110 4.2.3",
          get(b"HTTP://example.org/environ", host=None), {"HTTP_HOST": "example.org"},
          note="the scheme is case-insensitive"),
    valid("absolute-form-ipv6", "9110 4.2.1",
          get(b"http://[::1]:8080/environ", host=None), {"HTTP_HOST": "[::1]:8080"}),
    valid("request-line-8000-bytes", "9112 3", get(b"/environ/" + LONG),
          {"PATH_INFO": "/environ/" + LONG.decode()},
          note="RFC 9112 asks for at least 8000 octets"),
    valid("one-empty-line-first", "9112 2.2", b"\r\n" + get(), {"PATH_INFO": "/environ"},
          note="a server SHOULD ignore at least one empty line before the request line"),
    invalid("no-version", "9112 3", b"GET /environ\r\n" + HOST + b"\r\n"),
    either("two-spaces", "9112 3", b"GET  /environ HTTP/1.1\r\n" + HOST + b"\r\n",
           {"PATH_INFO": "/environ"}, note="MAY parse on whitespace-delimited words"),
    either("tab-separator", "9112 3", b"GET\t/environ HTTP/1.1\r\n" + HOST + b"\r\n",
           {"PATH_INFO": "/environ"}, note="MAY treat HTAB as the separator"),
    either("trailing-space", "9112 3", b"GET /environ HTTP/1.1 \r\n" + HOST + b"\r\n",
           {"PATH_INFO": "/environ"}, note="MAY ignore trailing whitespace"),
    either("leading-space", "9112 3", b" GET /environ HTTP/1.1\r\n" + HOST + b"\r\n",
           {"PATH_INFO": "/environ"}, note="MAY ignore preceding whitespace"),
    invalid("four-parts", "9112 3", b"GET /environ x HTTP/1.1\r\n" + HOST + b"\r\n"),
    invalid("version-lowercase", "9112 2.3", get(version=b"http/1.1")),
    invalid("version-no-minor", "9112 2.3", get(version=b"HTTP/1")),
    invalid("version-two-digits", "9112 2.3", get(version=b"HTTP/01.1")),
    invalid("version-2.0", "9112 2.3", get(version=b"HTTP/2.0"), 505, 400),
    invalid("version-garbage", "9112 2.3", get(version=b"HTXP/1.1")),
    invalid("method-bad-char", "9110 9.1", get(method=b"GE(T")),
    invalid("method-empty", "9112 3", b" /environ HTTP/1.1\r\n" + HOST + b"\r\n"),
    invalid("target-relative", "9112 3.2", get(b"environ")),
    invalid("target-raw-utf8", "9112 3", get("/environ/café".encode()), 400, 301,
            note="not a URI: SHOULD answer 400 or redirect to the percent-encoded target"),
    invalid("target-raw-latin1-query", "9112 3", get(b"/environ?q=\xff"), 400, 301),
    invalid("target-nul", "9112 3", get(b"/environ\x00")),
    invalid("target-del", "9112 3", get(b"/environ\x7f")),
    invalid("target-too-long", "9112 3", get(b"/environ/" + b"a" * 9000), 414,
            note="MUST answer 414 to a target longer than the server wishes to parse"),
    either("absolute-form-userinfo", "9110 4.2.4",
           get(b"http://user:pass@example.org:8080/environ", host=None),
           {"HTTP_HOST": "example.org:8080"},
           note="a recipient SHOULD treat userinfo as an error; never part of the host"),
    invalid("absolute-form-empty-host", "9110 4.2.1", get(b"http:///environ", host=None),
            note="a recipient MUST reject an http URI with an empty host"),
    invalid("absolute-form-ftp", "9112 3.2.2", get(b"ftp://example.org/environ", host=None)),
    invalid("asterisk-not-options", "9112 3.2.4", get(b"*")),
    invalid("authority-form-not-connect", "9112 3.2.3", get(b"example.org:80")),
    invalid("http-0.9", "9112 2.3", b"GET /environ\r\n\r\n"),
    either("bare-cr-in-request-line", "9112 2.2",
           b"GET /environ\rHTTP/1.1\r\n" + HOST + b"\r\n", {"PATH_INFO": "/environ"},
           note="MUST treat a bare CR as invalid or replace it with SP"),
    invalid("binary-garbage", "9112 2.2", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n"),
    invalid("only-empty-lines", "9112 2.2", b"\r\n\r\n\r\n\r\n", 400, "close"),

    # ---- header fields (RFC 9110 section 5, RFC 9112 section 5) ----------------
    valid("field-ows-trimmed", "9112 5.1", get(b"/environ", b"X-A:   v  "), {"HTTP_X_A": "v"}),
    valid("field-no-space", "9112 5.1", get(b"/environ", b"X-A:v"), {"HTTP_X_A": "v"}),
    valid("field-tab-ows", "9112 5.1", get(b"/environ", b"X-A:\tv\t"), {"HTTP_X_A": "v"}),
    valid("field-empty-value", "9110 5.5", get(b"/environ", b"X-Empty:"), {"HTTP_X_EMPTY": ""}),
    valid("field-inner-spaces-kept", "9110 5.5", get(b"/environ", b"X-A: a  b\tc"),
          {"HTTP_X_A": "a  b\tc"}),
    valid("field-obs-text", "9110 5.5", get(b"/environ", b"X-A: caf\xe9"),
          {"HTTP_X_A": "caf\u00e9"}, note="obs-text: latin-1 in the environ (PEP 3333)"),
    valid("field-name-case", "9110 5.1", get(b"/environ", b"x-CuStOm: 1"),
          {"HTTP_X_CUSTOM": "1"}),
    valid("field-name-tchar", "9110 5.1", get(b"/environ", b"X-A.b~c: 1"),
          {"HTTP_X_A.B~C": "1"}),
    valid("field-list-combined", "9110 5.3", get(b"/environ", b"Accept: a/b", b"Accept: c/d"),
          {"HTTP_ACCEPT": ("a/b, c/d", "a/b,c/d")},
          note="field lines of a list field combine, comma-separated, in order"),
    valid("field-value-with-colon", "9110 5.5", get(b"/environ", b"X-Url: http://a:1/"),
          {"HTTP_X_URL": "http://a:1/"}),
    valid("field-underscore", "9110 5.1", get(b"/environ", b"X_Under: 1"),
          {"HTTP_X_UNDER": ("1", ABSENT)},
          note="a valid name; ours leaves it out of the environ (it would pose as X-Under)"),
    valid("field-100", "9112 5", get(b"/environ", *[b"X-%d: v" % i for i in range(99)]),
          {"HTTP_X_98": "v"}, note="99 fields and Host"),
    valid("field-line-8000-bytes", "9112 5", get(b"/environ", b"X-Big: " + LONG),
          {"HTTP_X_BIG": LONG.decode()}),
    valid("host-with-port", "9112 3.2", get(b"/environ", host=b"Host: example.org:8080\r\n"),
          {"HTTP_HOST": "example.org:8080"}),
    valid("host-ipv6", "9112 3.2", get(b"/environ", host=b"Host: [::1]:8888\r\n"),
          {"HTTP_HOST": "[::1]:8888"}),
    valid("host-empty", "9112 3.2", get(b"/environ", host=b"Host:\r\n"), {"HTTP_HOST": ""},
          note="an empty Host is what a client sends when the URI has no authority"),
    valid("content-type", "9110 8.3", post(b"x", b"Content-Type: text/plain", b"Content-Length: 1"),
          {"CONTENT_TYPE": "text/plain", "HTTP_CONTENT_TYPE": ABSENT}, body=b"x"),
    valid("content-type-twice-same", "9110 5.3",
          post(b"x", b"Content-Type: text/plain", b"Content-Type: text/plain",
               b"Content-Length: 1"),
          {"CONTENT_TYPE": ("text/plain", "text/plain,text/plain", "text/plain, text/plain")},
          body=b"x"),
    invalid("space-before-colon", "9112 5.1", get(b"/environ", b"X-A : v"),
            note="a server MUST reject it with 400"),
    invalid("tab-before-colon", "9112 5.1", get(b"/environ", b"X-A\t: v")),
    invalid("field-no-colon", "9112 5", get(b"/environ", b"X-A v")),
    invalid("field-empty-name", "9112 5", get(b"/environ", b": v")),
    invalid("field-name-space", "9110 5.1", get(b"/environ", b"X A: v")),
    invalid("field-name-at", "9110 5.1", get(b"/environ", b"X@A: v")),
    invalid("field-name-non-ascii", "9110 5.1", get(b"/environ", b"X-\xe9: v")),
    either("field-value-esc", "9110 5.5", get(b"/environ", b"X-A: a\x1bb"),
           {"HTTP_X_A": "a\x1bb"}, note="invalid; a recipient MAY retain other CTLs"),
    either("field-value-del", "9110 5.5", get(b"/environ", b"X-A: a\x7fb"),
           {"HTTP_X_A": "a\x7fb"}, note="invalid; a recipient MAY retain other CTLs"),
    invalid("field-line-too-long", "9112 5", get(b"/environ", b"X-Big: " + b"v" * 9000), 431, 400),
    invalid("fields-too-many", "9112 5", get(b"/environ", *[b"X-%d: v" % i for i in range(150)]),
            431, 400),
    invalid("host-twice", "9112 3.2", get(b"/environ", b"Host: b.test"),
            note="a server MUST answer 400 to more than one Host field"),
    invalid("host-invalid-space", "9112 3.2", get(b"/environ", host=b"Host: a b\r\n"),
            note="a server MUST answer 400 to an invalid Host value"),
    invalid("host-userinfo", "9112 3.2", get(b"/environ", host=b"Host: u@example.org\r\n")),
    invalid("content-type-twice-differing", "9110 5.3",
            post(b"x", b"Content-Type: text/plain", b"Content-Type: application/json",
                 b"Content-Length: 1"),
            note="a sender MUST NOT send a singleton field twice; the two values "
            "combined are not a media type"),
    either("expect-unknown", "9110 10.1.1", get(b"/environ", b"Expect: 200-ok"),
           {"HTTP_EXPECT": "200-ok"}, reject=(417,), note="MAY answer 417"),
    either("obs-fold", "9112 5.2", get(b"/environ", b"X-A: a", b" b"), {"HTTP_X_A": "a b"},
           note="MUST reject with 400 or replace the fold with SP"),
    either("field-value-nul", "9110 5.5", get(b"/environ", b"X-A: a\x00b"),
           {"HTTP_X_A": "a b"}, note="MUST reject the message or replace NUL with SP"),
    either("field-value-bare-cr", "9110 5.5", get(b"/environ", b"X-A: a\rb"),
           {"HTTP_X_A": "a b"}, note="MUST reject the message or replace CR with SP"),

    # ---- message body framing (RFC 9112 section 6) -------------------------------
    valid("content-length", "9112 6.2", post(b"hello", b"Content-Length: 5"),
          {"CONTENT_LENGTH": "5", "REQUEST_METHOD": "POST"}, body=b"hello"),
    valid("content-length-zero", "9112 6.2", post(b"", b"Content-Length: 0"),
          {"CONTENT_LENGTH": ("0", ABSENT)}, body=b""),
    valid("content-length-leading-zeros", "9112 6.2", post(b"hello", b"Content-Length: 005"),
          {"CONTENT_LENGTH": ("5", "005")}, body=b"hello"),
    valid("content-length-ows", "9112 6.2", post(b"hello", b"Content-Length:   5  "),
          {"CONTENT_LENGTH": "5"}, body=b"hello"),
    valid("body-binary", "9112 6", post(bytes(range(256)), b"Content-Length: 256"),
          {"CONTENT_LENGTH": "256"}, body=bytes(range(256))),
    valid("no-length-no-body", "9112 6.3", get(b"/environ", method=b"POST"),
          {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": ("", "0", ABSENT)},
          note="neither Content-Length nor Transfer-Encoding: the body is empty"),
    valid("expect-100-continue", "9110 10.1.1",
          post(b"hello", b"Content-Length: 5", b"Expect: 100-continue"),
          {"HTTP_EXPECT": "100-continue"}, body=b"hello"),
    valid("expect-100-continue-case", "9110 10.1.1",
          post(b"hello", b"Content-Length: 5", b"Expect: 100-Continue"), {}, body=b"hello"),
    valid("expect-in-http-1.0-ignored", "9110 10.1.1",
          get(b"/environ", b"Expect: 100-continue", b"Content-Length: 5", method=b"POST",
              version=b"HTTP/1.0", host=None, body=b"hello"),
          {"SERVER_PROTOCOL": "HTTP/1.0"}, body=b"hello",
          note="a server MUST ignore a 100-continue expectation in HTTP/1.0"),
    valid("connection-close", "9112 9.6", get(b"/environ", b"Connection: close"),
          {"HTTP_CONNECTION": "close"}),
    either("content-length-list-equal", "9112 6.3", post(b"hello", b"Content-Length: 5, 5"),
           {"CONTENT_LENGTH": ("5", "5, 5", "5,5")}, body=b"hello",
           note="MAY reject, or use the one value"),
    either("content-length-twice-equal", "9112 6.3",
           post(b"hello", b"Content-Length: 5", b"Content-Length: 5"),
           {"CONTENT_LENGTH": ("5", "5, 5", "5,5")}, body=b"hello",
           note="MAY reject, or use the one value"),
    invalid("content-length-differing", "9112 6.3",
            post(b"hello!", b"Content-Length: 5", b"Content-Length: 6")),
    invalid("content-length-list-differing", "9112 6.3", post(b"hello!", b"Content-Length: 5, 6")),
    invalid("content-length-negative", "9112 6.2", post(b"", b"Content-Length: -1")),
    invalid("content-length-plus", "9112 6.2", post(b"hello", b"Content-Length: +5")),
    invalid("content-length-hex", "9112 6.2", post(b"hello", b"Content-Length: 0x5")),
    invalid("content-length-letters", "9112 6.2", post(b"hello", b"Content-Length: five")),
    invalid("content-length-empty", "9112 6.2", post(b"", b"Content-Length:")),
    invalid("content-length-space-inside", "9112 6.2", post(b"hello", b"Content-Length: 1 2")),
    invalid("content-length-huge", "9112 6.2",
            post(b"", b"Content-Length: 99999999999999999999999"), 400, 413),
    invalid("content-length-truncated", "9112 8", post(b"hel", b"Content-Length: 5"),
            400, "close", note="the client closed before the whole body arrived"),
    invalid("content-length-and-chunked", "9112 6.3",
            chunked(b"0\r\n\r\n", b"Content-Length: 5"),
            note="ought to be handled as an error (request smuggling)"),
    invalid("chunked-not-final", "9112 6.3",
            get(b"/environ", b"Transfer-Encoding: chunked, gzip", method=b"POST", body=b"0\r\n\r\n"),
            400, 501, note="MUST answer 400 when chunked is not the final coding"),
    invalid("transfer-encoding-gzip", "9112 6.3",
            get(b"/environ", b"Transfer-Encoding: gzip", method=b"POST", body=b"x"), 400, 501),
    invalid("transfer-encoding-gzip-chunked", "9112 6.1",
            get(b"/environ", b"Transfer-Encoding: gzip, chunked", method=b"POST",
                body=b"0\r\n\r\n"), 501, 400,
            note="a coding the server does not understand: SHOULD answer 501"),
    invalid("transfer-encoding-identity", "9112 6.1",
            get(b"/environ", b"Transfer-Encoding: identity", method=b"POST", body=b"x"), 501, 400,
            note="identity is no longer a transfer coding"),
    invalid("chunked-twice", "9112 6.1",
            get(b"/environ", b"Transfer-Encoding: chunked, chunked", method=b"POST",
                body=b"0\r\n\r\n"), note="a sender MUST NOT apply chunked more than once"),
    invalid("transfer-encoding-empty", "9112 6.1",
            get(b"/environ", b"Transfer-Encoding:", method=b"POST", body=b"0\r\n\r\n"), 400, 501),
    invalid("transfer-encoding-http-1.0", "9112 6.1",
            get(b"/environ", b"Transfer-Encoding: chunked", method=b"POST", version=b"HTTP/1.0",
                body=b"0\r\n\r\n"), note="faulty in HTTP/1.0"),

    # ---- chunked transfer coding (RFC 9112 section 7) ------------------------------
    valid("chunked", "9112 7.1", chunked(b"5\r\nhello\r\n0\r\n\r\n"),
          {"CONTENT_LENGTH": ("5", ABSENT), "HTTP_TRANSFER_ENCODING": "chunked"}, body=b"hello"),
    valid("chunked-several", "9112 7.1", chunked(b"3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"),
          {"HTTP_TRANSFER_ENCODING": "chunked"}, body=b"abcdef"),
    valid("chunked-empty", "9112 7.1", chunked(b"0\r\n\r\n"), {}, body=b""),
    valid("chunked-hex-upper-lower", "9112 7.1",
          chunked(b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"),
          {}, body=b"0123456789abcdefghij"),
    valid("chunked-leading-zeros", "9112 7.1", chunked(b"0005\r\nhello\r\n000\r\n\r\n"), {},
          body=b"hello"),
    valid("chunked-extension", "9112 7.1.1", chunked(b"5;name=value\r\nhello\r\n0;x\r\n\r\n"), {},
          body=b"hello"),
    valid("chunked-extension-quoted", "9112 7.1.1",
          chunked(b'5;n="a \\"b\\" c"\r\nhello\r\n0\r\n\r\n'), {}, body=b"hello"),
    valid("chunked-extension-bws", "9112 7.1.1", chunked(b"5 ; n = v\r\nhello\r\n0\r\n\r\n"), {},
          body=b"hello"),
    valid("chunked-trailer", "9112 7.1.2",
          chunked(b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"), {}, body=b"hello"),
    valid("chunked-case-insensitive", "9112 7",
          get(b"/environ", b"Transfer-Encoding: Chunked", method=b"POST",
              body=b"2\r\nok\r\n0\r\n\r\n"), {}, body=b"ok"),
    valid("chunked-with-crlf-in-data", "9112 7.1", chunked(b"4\r\n\r\n\r\n\r\n0\r\n\r\n"), {},
          body=b"\r\n\r\n"),
    invalid("chunk-size-not-hex", "9112 7.1", chunked(b"g\r\nabc\r\n0\r\n\r\n")),
    invalid("chunk-size-negative", "9112 7.1", chunked(b"-5\r\nhello\r\n0\r\n\r\n")),
    invalid("chunk-size-0x", "9112 7.1", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    invalid("chunk-size-trailing-space", "9112 7.1", chunked(b"5\r\nhello\r\n0 \r\n\r\n"),
            note="whitespace only before ';' (BWS of chunk-ext)"),
    invalid("chunk-size-leading-space", "9112 7.1", chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
    invalid("chunk-size-empty", "9112 7.1", chunked(b"\r\nhello\r\n0\r\n\r\n")),
    invalid("chunk-size-overflow", "9112 7.1", chunked(b"1" * 40 + b"\r\nhello\r\n0\r\n\r\n"),
            400, 413),
    invalid("chunk-extension-no-name", "9112 7.1.1", chunked(b"5;=v\r\nhello\r\n0\r\n\r\n")),
    invalid("chunk-extension-space-in-name", "9112 7.1.1",
            chunked(b"5;a b\r\nhello\r\n0\r\n\r\n")),
    invalid("chunk-data-too-long", "9112 7.1", chunked(b"3\r\nhello\r\n0\r\n\r\n")),
    invalid("chunk-data-no-crlf", "9112 7.1", chunked(b"5\r\nhello0\r\n\r\n")),
    invalid("chunk-size-bare-lf", "9112 7.1", chunked(b"5\nhello\r\n0\r\n\r\n")),
    invalid("chunked-no-last-chunk", "9112 7.1", chunked(b"5\r\nhello\r\n"), 400, "close"),
    invalid("chunked-truncated-data", "9112 7.1", chunked(b"10\r\nhello"), 400, "close"),
    invalid("chunked-no-final-crlf", "9112 7.1", chunked(b"5\r\nhello\r\n0\r\n"), 400, "close"),
    either("trailer-content-length", "9110 6.5.1",
           chunked(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"),
           {"CONTENT_LENGTH": ("5", ABSENT)}, body=b"hello",
           note="framing fields cannot be trailers: refuse, or drop it, never merge it"),
    either("trailer-transfer-encoding", "9110 6.5.1",
           chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: gzip\r\n\r\n"),
           {"HTTP_TRANSFER_ENCODING": ("chunked", ABSENT)}, body=b"hello",
           note="refuse, or drop it, never merge it"),
    either("trailer-host", "9110 6.5.1",
           chunked(b"5\r\nhello\r\n0\r\nHost: evil.test\r\n\r\n"),
           {"HTTP_HOST": "conformance.test"}, body=b"hello",
           note="routing fields cannot be trailers: refuse, or drop it, never merge it"),
    invalid("trailer-no-colon", "9112 7.1.2", chunked(b"5\r\nhello\r\n0\r\nX-T 1\r\n\r\n")),
    either("trailer-obs-fold", "9112 5.2",
           chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"), {}, body=b"hello",
           note="MUST reject with 400 or replace the fold with SP"),
    invalid("trailer-space-before-colon", "9112 7.1.2",
            chunked(b"5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n")),

    # ---- line endings (RFC 9112 section 2.2) ---------------------------------------
    either("empty-lines-two-first", "9112 2.2", b"\r\n\r\n" + get(), {"PATH_INFO": "/environ"},
           note="SHOULD ignore at least one; more is the server's choice"),
    either("bare-lf", "9112 2.2", b"GET /environ HTTP/1.1\n" + HOST.replace(b"\r\n", b"\n") + b"\n",
           {"PATH_INFO": "/environ"}, note="a recipient MAY accept a bare LF as a line end"),
    either("bare-lf-one-field", "9112 2.2", get(b"/environ", b"X-A: 1\nX-B: 2"),
           {"HTTP_X_A": "1", "HTTP_X_B": "2"}, note="MAY accept a bare LF"),
    either("bare-cr-in-field", "9112 2.2", get(b"/environ", b"X-A: 1\rX-B: 2"),
           {"HTTP_X_A": "1 X-B: 2"}, note="MUST treat a bare CR as invalid or replace it with SP"),
]

# Where our servers answer otherwise than the RFC says, on purpose: shown in
# the report with every server's answer, not scored. `ours`: "env" (accepted)
# or the status they answer.
DEVIATIONS = [
    Case("no-host-http-1.1", "9112 3.2", b"GET /environ HTTP/1.1\r\n\r\n", env={}, reject=(400,),
         ours="env", note="RFC: a server MUST answer 400 to an HTTP/1.1 request without Host. "
         "Ours accepts it: the article's raw-socket clients send none."),
    Case("version-1.2", "9110 2.5", get(version=b"HTTP/1.2"), env={"PATH_INFO": "/environ"},
         reject=(), ours=505,
         note="RFC: a higher minor version of a major version the server implements SHOULD "
         "be processed as the highest it conforms to (HTTP/1.1). Ours answers 505: a client "
         "speaking HTTP/1.2 does not exist, and 'HTTP/1.1' in the environ would be a lie."),
    Case("fragment-in-target", "9112 3.2", get(b"/environ#frag"), env={"PATH_INFO": "/environ"},
         reject=(400,), ours="env",
         note="RFC: '#' is not allowed in a request target. Ours drops the fragment, "
         "as gunicorn does, rather than refuse a client's mistake."),
]

assert len({case.name for case in CASES + DEVIATIONS}) == len(CASES) + len(DEVIATIONS)

_BY_ID = {case.name: case for case in CASES + DEVIATIONS}


def by_id(name: str) -> Case:
    """The case (or deviation) with this id; KeyError naming the id when there is none."""
    try:
        return _BY_ID[name]
    except KeyError:
        raise KeyError(f"no conformance case with id {name!r}") from None
