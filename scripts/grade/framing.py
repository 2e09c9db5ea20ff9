"""Where one response ends and the next begins, on a persistent connection.

Bytes in, responses out (no socket): each response's head, its body as its
framing says (RFC 9112 6.3): none for a HEAD request and for 1xx/204/304,
chunked, Content-Length, or everything to the close. What follows the last
whole response is `rest`: the next response, or bytes no framing announced.
The persistent-connection stages (checks/persistent.py) read with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CRLF = b"\r\n"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] [0-9]{3}( [^\r\n]*)?")


@dataclass
class Framed:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    framing: str = ""         # "none" | "chunked" | "length" | "close"
    size: int = 0             # bytes of the stream this response took (head, body)
    complete: bool = False
    problem: str = ""         # not HTTP, or a framing that contradicts itself

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None

    @property
    def says_close(self) -> bool:
        return "close" in (self.header("Connection") or "").lower()


def one(data: bytes, head_request: bool = False, closed: bool = False) -> Framed:
    """The first response of `data` (1xx interim responses skipped and counted
    in its size). `closed`: the connection has ended after `data`, so a
    response framed by the close is complete."""
    start = 0
    while True:
        if not data[start:]:
            return Framed()   # nothing (more) came: no response, not a broken one
        end = data.find(CRLF + CRLF, start)
        if end < 0:
            first = data[start:start + 7]
            if first and not b"HTTP/1.".startswith(first):
                return Framed(problem=f"not a status line: {data[start:start + 40]!r}")
            return Framed(problem="the head is cut off" if closed else "")
        lines = data[start:end].split(CRLF)
        if not STATUS_LINE.fullmatch(lines[0]):
            return Framed(problem=f"not a status line: {lines[0][:40]!r}")
        status = int(lines[0][9:12])
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                return Framed(status, problem=f"a header line that is not a field: {line[:40]!r}")
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        body_at = end + 4
        if 100 <= status < 200:
            start = body_at
            continue
        break
    resp = Framed(status, headers)
    coding = (resp.header("Transfer-Encoding") or "").lower()
    lengths = {v.strip() for k, v in headers if k.lower() == "content-length"}
    if head_request or status in (204, 304):
        resp.framing, resp.size, resp.complete = "none", body_at, True
    elif coding:
        if coding.split(",")[-1].strip() != "chunked":
            resp.problem = f"Transfer-Encoding {coding!r} does not end in chunked"
            return resp
        if lengths:
            resp.problem = "both Transfer-Encoding and Content-Length"
            return resp
        resp.framing = "chunked"
        _chunks(resp, data, body_at, closed)
    elif lengths:
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            resp.problem = f"Content-Length {', '.join(sorted(lengths))!r}"
            return resp
        n = int(next(iter(lengths)))
        resp.framing, resp.body = "length", data[body_at:body_at + n]
        resp.size, resp.complete = body_at + n, len(data) - body_at >= n
        if closed and not resp.complete:
            resp.problem = f"closed after {len(data) - body_at} of the {n} bytes announced"
    else:
        resp.framing, resp.body, resp.size, resp.complete = "close", data[body_at:], len(data), \
            closed
    return resp


def _chunks(resp: Framed, data: bytes, at: int, closed: bool) -> None:
    body = []
    while True:
        eol = data.find(CRLF, at)
        if eol < 0:
            break
        size_text = data[at:eol].split(b";")[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
            resp.problem = f"a chunk size that is not hex: {data[at:eol][:20]!r}"
            return
        size = int(size_text, 16)
        at = eol + 2
        if size == 0:
            end = data.find(CRLF + CRLF, at - 2)  # the trailer section's empty line
            if end < 0:
                break
            resp.body, resp.size, resp.complete = b"".join(body), end + 4, True
            return
        if len(data) < at + size + 2:
            break
        if data[at + size:at + size + 2] != CRLF:
            resp.problem = f"chunk data longer than its size {size}"
            return
        body.append(data[at:at + size])
        at += size + 2
    resp.body = b"".join(body)
    if closed:
        resp.problem = "closed before the last chunk"


def split(data: bytes, heads: list[bool], closed: bool = False) -> tuple[list[Framed], bytes]:
    """The responses to requests sent in order (`heads[i]`: request i was a
    HEAD), as far as `data` holds them whole; and the bytes after them."""
    out: list[Framed] = []
    for head in heads:
        resp = one(data, head, closed)
        if resp.problem:
            return out + [resp], data
        if not resp.complete:
            return out, data
        out.append(resp)
        data = data[resp.size:]
    return out, data


def whole(count: int, heads: list[bool] | None = None):
    """An `until` for wire.exchange: `count` whole responses have arrived."""
    heads = heads or [False] * count

    def match(data: bytes) -> bool:
        got, _ = split(data, heads[:count])
        return len(got) == count and all(r.complete and not r.problem for r in got)
    return match
