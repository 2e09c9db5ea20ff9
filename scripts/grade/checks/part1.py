"""Part 1's stages: hello (on the first copy) and http (a strict parser
reads the answer)."""

from __future__ import annotations

import subprocess

from instrument import wire
from instrument.copies import Copy

from grade import stages as S
from grade.checks.base import PORT, Ctx, Result, answered, bad, fmt, ok
from grade.requests import BROWSER, HOST


def check_hello(ctx: Ctx, copy: Copy) -> Result:
    # the browser's first: curl then waits for the EOF, which 3e's child sends
    # only as it exits, and that exit kills 3e (its lesson is sigchld's, not this)
    browser = wire.exchange(copy.address(), PORT, BROWSER, S.ANSWER_TIMEOUT, until=answered)
    url = f"http://{copy.address()}:{PORT}/hello"
    run = subprocess.run(["curl", "-sS", "--max-time", "3", "-o", "/dev/null", "-w",
                          "%{http_code} %{size_download}", url],
                         capture_output=True, text=True, timeout=15)
    code, _, size = run.stdout.strip().partition(" ")
    curl_note = " (no EOF: curl stopped after 3 s)" if run.returncode == 28 else ""
    problems = []
    if code != "200" or not size.isdigit() or int(size) == 0:
        problems.append(f"curl got {code or 'nothing'} with {size or 0} bytes "
                        f"({run.stderr.strip()[:80] or 'no error'})")
    if browser.status != 200 or not browser.body:
        problems.append(f"the browser-style request got {browser.summary()}")
    if problems:
        return bad("; ".join(problems))
    return ok(f"200 with a {size}-byte body from curl{curl_note} and "
              f"{len(browser.body)} bytes from a browser-style request in {fmt(browser.answered)}")


def check_http(ctx: Ctx) -> Result:
    import h11

    copy = ctx.copy("http")
    reply = wire.exchange(copy.address(), PORT, wire.request("GET", "/hello", HOST),
                          S.EOF_WAIT)
    if not reply.data:
        return bad(f"no response: {reply.summary()}")
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/hello",
                          headers=[("Host", HOST), ("Connection", "close")]))
    conn.send(h11.EndOfMessage())
    try:
        conn.receive_data(reply.data)
        if reply.eof or reply.reset:
            conn.receive_data(b"")
        head, body, done = None, 0, False
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                done = True
                break
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as error:
        first = reply.data.split(b"\r\n", 1)[0][:60]
        return bad(f"h11 refuses the response: {error} (it starts {first!r})")
    if head is None:
        return bad(f"h11 found no complete response head in {len(reply.data)} bytes")
    version = head.http_version.decode()
    framing = ("Content-Length" if any(k == b"content-length" for k, _ in head.headers)
               else "chunked" if any(k == b"transfer-encoding" for k, _ in head.headers)
               else "the close")
    if done:
        return ok(f"HTTP/{version} {head.status_code}, {len(head.headers)} headers, a {body}-byte "
                  f"body framed by {framing}")
    return ok(f"HTTP/{version} {head.status_code}, {len(head.headers)} headers, {body} body bytes "
              f"framed by {framing}, no EOF within {S.EOF_WAIT:g} s (see eof)")
