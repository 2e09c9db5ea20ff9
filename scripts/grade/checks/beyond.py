"""The stages beyond the article: malformed requests, slow clients, the
limits (nofile, pids) and SIGTERM."""

from __future__ import annotations

import threading
import time

from instrument import clients, wire
from instrument.copies import Copy

from grade import stages as S
from grade.checks.base import (
    PORT,
    Ctx,
    Result,
    alive,
    answered,
    answers_within,
    bad,
    fmt,
    get,
    ok,
    skip,
    status_line,
)
from grade.requests import HOST, malformed


def check_bad_input(ctx: Ctx) -> Result:
    copy = ctx.copy("bad-input")
    budget = time.monotonic() + S.BAD_INPUT_BUDGET
    wrong, tried = [], 0
    cases = malformed()
    for label, data in cases:
        if time.monotonic() > budget:
            break
        tried += 1
        reply = wire.exchange(copy.address(), PORT, data, S.BAD_INPUT_TIMEOUT, until=status_line)
        status = reply.status
        if status:
            if not (400 <= status < 500 or status in (501, 505)):
                wrong.append((label, reply.summary().replace(" (left open)", "")))
        elif not (reply.eof or reply.reset or reply.refused):
            wrong.append((label, f"no answer, left open {S.BAD_INPUT_TIMEOUT:g} s"))
        after = get(copy, timeout=3)
        if not (after.matched and after.status):
            return bad(f"after {label!r} the server no longer answers ({after.summary()}); "
                       f"{len(wrong)} of {tried} malformed requests were accepted before")
    if wrong:
        examples = ", ".join(f"{lb} got {how}" for lb, how in wrong[:3])
        return bad(f"{len(wrong)} of {tried} malformed requests not refused: {examples}")
    if tried < len(cases):
        return skip(f"only {tried} of {len(cases)} malformed requests sent within "
                    f"{S.BAD_INPUT_BUDGET:g} s, "
                    "each refused")
    return ok(f"all {tried} malformed requests refused (4xx or a close); the server answered "
              "after each")


def check_slow_clients(ctx: Ctx) -> Result:
    copy = ctx.copy("slow-clients")
    head = b"GET /hello HTTP/1.1\r\nHost: grade.test\r\nX-Slow: " + b"s" * 40
    slow = clients.slow_clients(copy.address(), PORT, S.SLOW_CLIENTS, data=head, interval=1.0,
                                timeout=30.0)
    try:
        time.sleep(1.5)
        sending = [c for c in slow if c.sent]
        # held: still sending its head a byte a second (one the server answered stops
        # sending, though a leaky server may keep its connection open)
        waiting = [c for c in sending if c.waiting and c.sent > 1]
        if sending and not waiting:
            return skip(f"the server answered all {len(sending)} slow clients after their first "
                        "byte (it does not wait for the whole head): none was holding it")
        reply = get(copy, timeout=S.SLOW_WITHIN)
    finally:
        clients.stop_all(slow)
    held = f"{len(waiting)} slow clients still sending their head"
    if reply.matched and reply.status:
        return ok(f"answered in {fmt(reply.answered)} with {held}")
    return bad(f"no answer within {S.SLOW_WITHIN:g} s with {held} ({reply.summary()})")


def _survive(copy: Copy, server: int, load: str, extra: str = "") -> Result:
    still, why = alive(copy, server)
    if not still:
        return bad(f"{why} ({load}{extra})")
    reply = answers_within(copy, S.SURVIVE_WITHIN)
    if reply is None:
        return bad(f"alive but no answer within {S.SURVIVE_WITHIN:g} s after {load}{extra}")
    return ok(f"survived {load}{extra}; answered {fmt(reply.answered)} after they closed")


def check_emfile(ctx: Ctx) -> Result:
    copy = ctx.copy("emfile", nofile=S.EMFILE_NOFILE, pids=1024)
    look = copy.look()
    server, copy_fds0 = look.server_pid, look.server_fds or 0
    watch = copy.watch(0.1)
    replies = wire.parallel(copy.address(), PORT, S.EMFILE_CONNECTIONS,
                            wire.request("GET", "/hello", HOST), 8, until=answered,
                            keep_open=True)
    time.sleep(1.0)
    connected = sum(1 for r in replies if r.connected is not None)
    n_ok = sum(1 for r in replies if r.matched)
    still, why = alive(copy, server)
    for r in replies:
        r.close()
    watch.stop()
    peak = max(watch.peak_fds(server), copy_fds0)
    load = (f"{connected} connections held ({n_ok} answered), the server's descriptors peaking "
            f"at {peak} (nofile {S.EMFILE_NOFILE})")
    if not still:
        return bad(f"{why}; {load}")
    time.sleep(0.5)
    return _survive(copy, server, load)


def check_eagain(ctx: Ctx) -> Result:
    copy = ctx.copy("eagain", pids=S.EAGAIN_PIDS)
    look = copy.look()
    server, procs0 = look.server_pid, len(look.table)
    before = {p.pid for p in look.children(server)}
    watch = copy.watch(0.1)
    socks, _ = clients.open_many(copy.address(), PORT, S.EAGAIN_CONNECTIONS, timeout=6)
    time.sleep(2.0)
    still, why = alive(copy, server)
    clients.close_all(socks)
    watch.stop()
    peak = max(watch.peak_procs(), procs0)
    seen = watch.children_seen(server, before)
    load = (f"{len(socks)} silent connections held, {peak} processes at the peak "
            f"(pids limit {S.EAGAIN_PIDS})" if watch.looks else
            f"{len(socks)} silent connections held (pids limit {S.EAGAIN_PIDS})")
    if peak > S.EAGAIN_PIDS + 2:
        return skip(f"the engine did not apply the pids limit: {load}")
    if not still:
        return bad(f"{why}; {load}")
    if not seen and peak <= procs0 + 1:
        return skip(f"no process was made for {len(socks)} held connections ({peak} processes "
                    "at the peak): fork() never ran out, EAGAIN cannot happen here")
    time.sleep(0.5)
    return _survive(copy, server, load)


def check_sigterm(ctx: Ctx) -> Result:
    copy = ctx.app_copy("sigterm")
    result: dict[str, wire.Reply] = {}
    if ctx.target.wsgi:
        def in_flight():
            result["r"] = wire.exchange(copy.address(), PORT,
                                        wire.request("GET", "/slow?seconds=1", HOST), 8)
        what = "GET /slow (1 s in the app)"
        t = threading.Thread(target=in_flight)
        t.start()
        time.sleep(0.4)
        sent = copy.kill("SIGTERM")
    else:
        what = "a request whose head was half sent"
        sock = wire.connect(copy.address(), PORT, 8)
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: grade.test\r\n")
        time.sleep(0.4)
        sent = copy.kill("SIGTERM")

        def in_flight():
            try:
                time.sleep(0.3)
                result["r"] = wire.exchange("", PORT, [b"Connection: close\r\n\r\n"], 6, sock=sock)
            except OSError as error:
                result["r"] = wire.Reply(error=str(error))
        t = threading.Thread(target=in_flight)
        t.start()
    status, ended = copy.wait_exit(8)
    t.join(10)
    reply = result.get("r") or wire.Reply(error="no reply")
    answer = str(reply.status) if reply.status else reply.summary()
    if status is None:
        return bad(f"still running 8 s after SIGTERM; the request in flight ({what}): {answer}")
    took = ended - sent
    how = "killed by SIGTERM (143)" if status == 143 else f"status {status}"
    text = f"the request in flight ({what}) got {answer}; the server exited, {how}, {took:.1f} s after SIGTERM"
    if reply.status == 200 and status == 0 and took <= S.SIGTERM_WITHIN:
        return ok(text)
    return bad(text)
