"""The request-smuggling category: the framing ambiguities that let a front
end and a back end disagree on where one request ends and the next begins
(conflicting Content-Length and Transfer-Encoding, obfuscated `chunked`,
signed or listed lengths, chunk sizes a lax parser reads differently, bare
CR or LF in framing lines, control bytes in field values).

Each case names its RFC 9110/9112 section and the RFC's level for what it
tests (MUST, SHOULD, MAY): a wrong answer to a MUST is a `fail`, to a
SHOULD or MAY a `warn`. An accepted case must also have read the body the
RFC's framing gives (`hello`), never one a lax reading gives. Written for
this project from the RFC text.
"""

from __future__ import annotations

from .build import Case, get, post

HELLO = b"5\r\nhello\r\n0\r\n\r\n"  # "hello", chunked


def _case(name, rfc, level, data, env, reject, note, body=b"hello"):
    return Case("smuggle-" + name, rfc, data, env=env, body=None if env is None else body,
                reject=tuple(reject), note=note, level=level, category="smuggling")


def te(value: bytes, *fields, body=HELLO, version=b"HTTP/1.1"):
    """POST /environ with this raw Transfer-Encoding line (and `fields`)."""
    return get(b"/environ", b"Transfer-Encoding" + value, *fields, method=b"POST", body=body,
               version=version)


def cl(value: bytes, *fields, body=b"hello"):
    return post(body, b"Content-Length" + value, *fields)


def R(name, rfc, level, data, *reject, note=""):
    """Refused, with one of `reject` (default 400)."""
    return _case(name, rfc, level, data, None, reject or (400,), note)


def A(name, rfc, level, data, env=None, note=""):
    """Accepted, with the body the RFC's framing gives."""
    return _case(name, rfc, level, data, dict(env or {}), (), note)


def E(name, rfc, level, data, env=None, reject=(400,), note=""):
    """Either refused, or accepted with the right body."""
    return _case(name, rfc, level, data, dict(env or {}), reject, note)


NOT_FINAL = (400, 501)  # chunked not the final coding: 400 (MUST); an unknown coding: 501 too

SMUGGLING = [
    # ---- Content-Length and Transfer-Encoding together (RFC 9112 6.1, 6.3)
    E("cl-te", "9112 6.3", "MUST", te(b": chunked", b"Content-Length: 5"),
      note="MAY reject; if not, MUST frame by Transfer-Encoding alone (and close after)"),
    E("te-cl", "9112 6.3", "MUST", get(b"/environ", b"Content-Length: 5",
                                         b"Transfer-Encoding: chunked", method=b"POST", body=HELLO),
      note="the order of the two fields does not matter"),
    E("cl-zero-te", "9112 6.3", "MUST", te(b": chunked", b"Content-Length: 0"),
      note="Content-Length 0 beside chunked: the chunks are the body, or refuse"),
    E("cl-long-te", "9112 6.3", "MUST", te(b": chunked", b"Content-Length: 50"),
      note="a length past the chunked body: never wait for 50 bytes"),
    R("cl-te-xchunked", "9112 6.1", "MUST", te(b": xchunked", b"Content-Length: 5"), *NOT_FINAL,
      note="a coding that is not chunked: the length cannot be determined, MUST answer 400"),
    R("cl-te-space-before-colon", "9112 5.1", "MUST",
      te(b" : chunked", b"Content-Length: 5"),
      note="a server MUST reject whitespace between a field name and the colon: a lax "
      "one would frame by Content-Length while a stricter front end frames by chunks"),
    # ---- obfuscated Transfer-Encoding (RFC 9112 6.1, 7; RFC 9110 5.1, 5.5, 5.6.1)
    A("te-upper-case-value", "9112 7", "MUST", te(b": CHUNKED"),
      note="transfer-coding names are case-insensitive"),
    A("te-lower-case-name", "9110 5.1", "MUST",
      get(b"/environ", b"transfer-encoding: chunked", method=b"POST", body=HELLO),
      note="field names are case-insensitive"),
    A("te-trailing-space", "9112 5.1", "MUST", te(b": chunked "),
      note="OWS around a field value is not part of it"),
    A("te-tab-before-value", "9112 5.1", "MUST", te(b":\tchunked"), note="HTAB is OWS"),
    R("te-space-before-colon", "9112 5.1", "MUST", te(b" : chunked")),
    R("te-tab-before-colon", "9112 5.1", "MUST", te(b"\t: chunked")),
    E("te-trailing-comma", "9110 5.6.1", "SHOULD", te(b": chunked,"),
      note="a list with an empty element: MUST be parsed as chunked, or refused"),
    E("te-leading-comma", "9110 5.6.1", "SHOULD", te(b": , chunked")),
    R("te-xchunked", "9112 6.1", "MUST", te(b": xchunked"), *NOT_FINAL),
    R("te-chunked-suffix", "9112 6.1", "MUST", te(b": chunkedx"), *NOT_FINAL),
    R("te-quoted", "9112 6.1", "MUST", te(b': "chunked"'), *NOT_FINAL,
      note="a quoted string is not a coding name"),
    R("te-space-inside", "9112 6.1", "MUST", te(b": chun ked"), *NOT_FINAL),
    R("te-vertical-tab", "9110 5.5", "MUST", te(b": \x0bchunked"), *NOT_FINAL,
      note="VT is no OWS (Python's str.strip removes it)"),
    R("te-form-feed", "9110 5.5", "MUST", te(b": chunked\x0c"), *NOT_FINAL),
    R("te-chunked-then-identity", "9112 6.1", "MUST", te(b": chunked, identity"), *NOT_FINAL,
      note="chunked not last: MUST answer 400"),
    R("te-two-fields-chunked-first", "9112 6.1", "MUST",
      te(b": chunked", b"Transfer-Encoding: gzip"), *NOT_FINAL,
      note="two fields combine to 'chunked, gzip': chunked is not last"),
    R("te-two-fields-gzip-first", "9112 6.1", "SHOULD",
      te(b": gzip", b"Transfer-Encoding: chunked"), *NOT_FINAL,
      note="'gzip, chunked': a coding the server does not do, SHOULD answer 501"),
    R("te-two-fields-chunked-twice", "9112 6.1", "MUST",
      te(b": chunked", b"Transfer-Encoding: chunked"),
      note="chunked applied twice: the sender broke a MUST; the length is unreliable"),
    E("te-obs-fold", "9112 5.2", "MUST", te(b":\r\n chunked"),
      note="MUST reject with 400, or replace the fold with SP (then it is chunked)"),
    E("te-nul", "9110 5.5", "MUST", te(b": chunked\x00"),
      note="MUST reject, or replace NUL with SP (then it is 'chunked ')"),
    R("te-empty-name-line", "9112 5", "MUST",
      te(b": chunked", b": chunked"), note="an empty field name"),
    R("te-http-1.0-with-cl", "9112 6.1", "MUST",
      te(b": chunked", b"Content-Length: 5", version=b"HTTP/1.0"),
      note="Transfer-Encoding in HTTP/1.0 beside Content-Length: faulty framing, MUST close"),
    E("first-field-line-folded-te", "9112 2.2", "MUST",
      b"POST /environ HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: conformance.test\r\n"
      b"Content-Length: 5\r\n\r\nhello",
      note="whitespace before the first field: MUST reject, or ignore that line (then the "
      "body is framed by Content-Length)"),
    # ---- Content-Length values (RFC 9112 6.2, 6.3; RFC 9110 8.6)
    E("cl-many-leading-zeros", "9110 8.6", "MAY", cl(b": 00000000000000000000005"),
      reject=(400, 413), note="valid (1*DIGIT), but a recipient guarding against overflow "
      "MAY cap the digits it reads"),
    R("cl-minus-zero", "9110 8.6", "MUST", cl(b": -0", body=b"")),
    R("cl-decimal", "9110 8.6", "MUST", cl(b": 5.0")),
    R("cl-underscore", "9110 8.6", "MUST", cl(b": 0_5"),
      note="Python's int('0_5') is 5: not a Content-Length"),
    R("cl-trailing-comma", "9112 6.3", "MUST", cl(b": 5,")),
    R("cl-vertical-tab", "9110 8.6", "MUST", cl(b":\x0b5")),
    R("cl-space-before-colon", "9112 5.1", "MUST", cl(b" : 5")),
    R("cl-overflow-64-bit", "9112 6.3", "MUST", cl(b": 18446744073709551621"), 400, 413,
      note="2**64 + 5: a parser that wraps reads 5"),
    E("cl-obs-fold", "9112 5.2", "MUST", cl(b":\r\n 5"),
      note="MUST reject, or replace the fold with SP (then it is 5)"),
    E("cr-in-value-hides-te", "9110 5.5", "MUST",
      post(b"hello", b"Content-Length: 5", b"X-A: a\rTransfer-Encoding: chunked"),
      env={"HTTP_X_A": "a Transfer-Encoding: chunked"},
      note="MUST reject a bare CR, or replace it with SP: never a second field"),
    # ---- chunk sizes and chunk lines (RFC 9112 7.1, 2.2)
    R("chunk-size-underscore", "9112 7.1", "MUST", te(b": chunked", body=b"0_5\r\nhello\r\n0\r\n\r\n"),
      note="Python's int('0_5', 16) is 5"),
    R("chunk-size-plus", "9112 7.1", "MUST", te(b": chunked", body=b"+5\r\nhello\r\n0\r\n\r\n")),
    R("chunk-size-0x-upper", "9112 7.1", "MUST", te(b": chunked", body=b"0X5\r\nhello\r\n0\r\n\r\n")),
    R("chunk-size-overflow-64-bit", "9112 7.1", "MUST",
      te(b": chunked", body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400, 413,
      note="2**64 + 5: a parser that wraps reads 5"),
    E("chunk-size-many-leading-zeros", "9112 7.1", "MAY",
      te(b": chunked", body=b"00000000000000000000005\r\nhello\r\n0\r\n\r\n"),
      note="valid hex; a server MAY cap the digits it reads"),
    R("chunk-ext-bare-semicolon", "9112 7.1.1", "SHOULD",
      te(b": chunked", body=b"5;\r\nhello\r\n0\r\n\r\n")),
    R("chunk-ext-semicolon-junk", "9112 7.1.1", "SHOULD",
      te(b": chunked", body=b"5;;;\r\nhello\r\n0\r\n\r\n")),
    A("chunk-ext-tab-bws", "9112 7.1.1", "SHOULD",
      te(b": chunked", body=b"5\t;a=b\r\nhello\r\n0\r\n\r\n"), note="BWS may be HTAB"),
    R("chunk-size-bare-cr", "9112 2.2", "MUST", te(b": chunked", body=b"5\rhello\r\n0\r\n\r\n")),
    R("chunk-data-bare-lf", "9112 7.1", "MUST", te(b": chunked", body=b"5\r\nhello\n0\r\n\r\n"),
      note="chunk data ends with CRLF, not a bare LF"),
    R("chunk-data-bare-cr", "9112 7.1", "MUST", te(b": chunked", body=b"5\r\nhello\r0\r\n\r\n")),
    R("last-chunk-bare-lf", "9112 7.1", "MUST", te(b": chunked", body=b"5\r\nhello\r\n0\n\r\n"),
      "close", 400),
    R("last-crlf-missing", "9112 7.1", "MUST", te(b": chunked", body=b"5\r\nhello\r\n0\r\n\r"),
      400, "close"),
    # ---- a body where a lax reader sees none (RFC 9112 6.3)
    A("get-with-cl-body", "9112 6.3", "MUST",
      get(b"/environ", b"Content-Length: 5", body=b"hello"),
      env={"REQUEST_METHOD": "GET"}, note="the length holds whatever the method"),
    A("get-with-chunked-body", "9112 6.3", "MUST",
      get(b"/environ", b"Transfer-Encoding: chunked", body=HELLO), env={"REQUEST_METHOD": "GET"}),
]
