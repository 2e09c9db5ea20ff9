"""Part 4's stages: persistent connections (keep-alive, pipelining, close,
framing). Responses are cut apart by grade.framing, from the bytes alone.
Every connection is made by instrument.wire; a persistent one is the socket
the first exchange kept open."""

from __future__ import annotations

import threading

from instrument import wire

from grade import framing
from grade import stages as S
from grade.checks.base import PORT, Ctx, Result, answered, bad, fmt, ok, skip
from grade.requests import HOST

ALIVE = wire.request("GET", "/hello", HOST, close=False)   # HTTP/1.1, no Connection header


def _show(data: bytes, n: int = 60) -> str:
    return repr(data[:n]) + ("..." if len(data) > n else "")


def _why_no_answer(reply: wire.Reply, data: bytes, i: int) -> str:
    if reply.error and not reply.data:
        return f"request {i} could not be sent: {reply.error}"
    if reply.closed and not reply.data:
        return f"request {i} got no answer: the server had closed the connection"
    resp = framing.one(data, closed=reply.closed)
    if resp.problem:
        return f"answer {i} cannot be read: {resp.problem}"
    if resp.framing == "close":
        return (f"answer {i} has neither Content-Length nor chunked framing: only the close "
                "ends its body, so nothing can follow it on this connection")
    return f"answer {i}: {reply.summary()} within {S.ANSWER_TIMEOUT:g} s ({_show(data)})"


def check_keep_alive(ctx: Ctx) -> Result:
    copy = ctx.copy("keep-alive")
    sock, statuses, took, said = None, [], [], ""
    for i in range(1, S.KEEPALIVE_REQUESTS + 1):
        if i > 1 and sock is None:
            return bad(f"answer {i - 1} ({statuses[-1]}) was followed by the close{said}: "
                       f"{i - 1} of {S.KEEPALIVE_REQUESTS} requests on one connection")
        reply = wire.exchange(copy.address(), PORT, ALIVE, S.ANSWER_TIMEOUT,
                              until=framing.whole(1), keep_open=True, sock=sock)
        sock = reply.sock
        resp = framing.one(reply.data, closed=reply.closed)
        if not (reply.matched and resp.complete and not resp.problem):
            if sock is not None:
                reply.close()
            before = f" ({i - 1} of {S.KEEPALIVE_REQUESTS} answered before)" if i > 1 else ""
            return bad(_why_no_answer(reply, reply.data, i) + said + before)
        extra = reply.data[resp.size:]
        if extra:
            reply.close()
            return bad(f"answer {i} was followed by {len(extra)} bytes no framing announced: "
                       f"{_show(extra)}")
        statuses.append(resp.status)
        said = " (it said Connection: close)" if resp.says_close else ""
        took.append(reply.answered or 0.0)
    reply.close()
    return ok(f"{S.KEEPALIVE_REQUESTS} requests answered on one connection "
              f"({', '.join(map(str, statuses))}; slowest {fmt(max(took))})")


def check_pipelining(ctx: Ctx) -> Result:
    wsgi = ctx.target.wsgi
    copy = ctx.app_copy("pipelining")
    if wsgi:   # the grader's app answers these with their own status: the order shows
        paths, want = ["/status/201", "/status/403"], [201, 403]
    else:
        paths, want = ["/hello", "/hello"], None
    both = b"".join(wire.request("GET", p, HOST, close=False) for p in paths)
    reply = wire.exchange(copy.address(), PORT, both, S.ANSWER_TIMEOUT,
                          until=framing.whole(2), keep_open=True)
    reply.close()
    got, rest = framing.split(reply.data, [False, False], closed=reply.closed)
    bad_one = next((r for r in got if r.problem), None)
    if bad_one is not None:
        return bad(f"an answer cannot be read: {bad_one.problem}")
    statuses = [r.status for r in got]
    if len(got) < 2:
        if got and got[0].says_close:
            return skip(f"the first answer ({statuses[0]}) says Connection: close: one request "
                        "per connection, announced (keep-alive fails for it)")
        how = "the connection closed" if reply.closed else f"nothing more in {S.ANSWER_TIMEOUT:g} s"
        lost = "both" if not got else "the second"
        extra = f" (then {_show(rest)})" if rest and got else ""
        return bad(f"two requests in one write: {len(got)} answered, {lost} lost; {how}{extra}")
    if rest:
        return bad(f"both answered ({statuses}), then {len(rest)} bytes no framing announced: "
                   f"{_show(rest)}")
    if want and statuses != want:
        return bad(f"answered out of order: {statuses} for {paths}")
    order = f"in order ({statuses[0]}, {statuses[1]})" if want else \
        f"({statuses[0]}, {statuses[1]}; the same page twice: the order is not visible)"
    return ok(f"two requests in one write, both answered {order} in {fmt(reply.answered)}")


def _closes(copy, data: bytes) -> str:
    """'' if answered and closed within CLOSE_WITHIN, else what happened."""
    reply = wire.exchange(copy.address(), PORT, data, S.ANSWER_TIMEOUT, until=answered,
                          keep_open=True)
    if not reply.matched:
        reply.close()
        return f"no answer within {S.ANSWER_TIMEOUT:g} s ({reply.summary()})"
    at = reply.answered
    if reply.closed:
        return ""
    reply.finish(S.EOF_WAIT)
    if not reply.closed:
        return f"still open {S.EOF_WAIT:g} s after the answer"
    after = reply.elapsed - at
    return "" if after <= S.CLOSE_WITHIN else f"closed {after:.1f} s after the answer"


def check_close(ctx: Ctx) -> Result:
    copy = ctx.copy("close")
    asks = {"HTTP/1.1 with Connection: close": wire.request("GET", "/hello", HOST),
            "HTTP/1.0": wire.request("GET", "/hello", HOST, version="HTTP/1.0", close=False)}
    found: dict[str, str] = {}

    def one(label):
        found[label] = _closes(copy, asks[label])

    threads = [threading.Thread(target=one, args=(k,)) for k in asks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(S.ANSWER_TIMEOUT + S.EOF_WAIT + 5)
    wrong = [f"{k}: {found.get(k, 'no result')}" for k in asks if found.get(k, "?")]
    if wrong:
        return bad("; ".join(wrong))
    return ok(f"both answered and closed by the server within {S.CLOSE_WITHIN:g} s "
              f"({' and '.join(asks)})")


def _framed(copy, label: str, data: bytes, head: bool) -> str:
    """'' if the answer is framed exactly, else the problem."""
    reply = wire.exchange(copy.address(), PORT, data, S.ANSWER_TIMEOUT,
                          until=framing.whole(1, [head]), keep_open=True)
    if reply.matched:
        reply.finish(S.FRAMING_LINGER)  # whatever else comes soon
    else:
        reply.close()
    resp = framing.one(reply.data, head, closed=reply.closed)
    if resp.problem:
        return f"{label}: {resp.problem}"
    if not resp.complete:
        if resp.framing == "close":
            return (f"{label}: no Content-Length, not chunked, and the connection stayed open: "
                    "the client cannot tell where the body ends")
        return f"{label}: {_why_no_answer(reply, reply.data, 1)}"
    extra = reply.data[resp.size:]
    if extra:
        what = "a HEAD answer with a body" if head and resp.framing == "none" else \
            f"a {resp.framing}-framed body followed by bytes"
        return f"{label}: {what}: {len(extra)} bytes more ({_show(extra)})"
    return ""


def check_framing(ctx: Ctx) -> Result:
    copy = ctx.app_copy("framing")
    asks = [("GET, Connection: close", wire.request("GET", "/hello", HOST), False),
            ("GET, kept alive", ALIVE, False),
            ("HEAD", wire.request("HEAD", "/hello", HOST), True)]
    if ctx.target.wsgi:
        asks.append(("a streamed body, kept alive",
                     wire.request("GET", "/stream", HOST, close=False), False))
    found: dict[str, str] = {}

    def one(label, data, head):
        found[label] = _framed(copy, label, data, head)

    threads = [threading.Thread(target=one, args=a) for a in asks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(S.ANSWER_TIMEOUT + S.FRAMING_LINGER + 5)
    wrong = [found.get(label, f"{label}: no result") for label, _, _ in asks
             if found.get(label, "?")]
    if wrong:
        return bad("; ".join(wrong))
    return ok(f"{len(asks)} answers framed exactly ({', '.join(a[0] for a in asks)}); "
              "nothing after any body, no body after HEAD")
