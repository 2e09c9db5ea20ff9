"""Part 3's stages: what a concurrent server does with its connections and
its children (concurrent, eof, fd-leak, zombie, sigchld, burst), read from
/proc by the copy's observer."""

from __future__ import annotations

import threading
import time

from instrument import clients, wire

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
    wait_children_exited,
)
from grade.requests import HOST


def check_concurrent(ctx: Ctx) -> Result:
    copy = ctx.copy("concurrent")
    silent = clients.hold_silent(copy.address(), PORT, 1, timeout=5)[0]
    try:
        time.sleep(0.3)  # accepted (or queued) before the second one comes
        reply = get(copy, timeout=S.CONCURRENT_WITHIN)
    finally:
        silent.close()
    if reply.matched and reply.status:
        return ok(f"answered in {fmt(reply.answered)} with another connection open and silent")
    return bad(f"no answer within {S.CONCURRENT_WITHIN:g} s while one connection was open and "
               f"silent ({reply.summary()})")


def check_eof(ctx: Ctx) -> Result:
    copy = ctx.copy("eof")
    reply = get(copy, timeout=S.ANSWER_TIMEOUT, keep_open=True)
    if not reply.matched:
        reply.close()
        return bad(f"no response within {S.ANSWER_TIMEOUT:g} s ({reply.summary()})")
    at = reply.answered
    if reply.closed:
        return ok("EOF with the response")
    reply.finish(S.EOF_WAIT)
    if not reply.closed:
        return bad(f"no EOF {S.EOF_WAIT:g} s after the response (the connection stays open)")
    after = reply.elapsed - at
    if after > S.EOF_WITHIN:
        return bad(f"EOF {after:.1f} s after the response")
    return ok(f"EOF {after:.2f} s after the response")


def check_fd_leak(ctx: Ctx) -> Result:
    copy = ctx.copy("fd-leak")
    get(copy)  # a warm-up request: lazily opened files count in the baseline
    time.sleep(0.3)
    look = copy.look()
    server, before = look.server_pid, look.server_fds
    kids = {p.pid for p in look.children(server)}
    lock, counts = threading.Lock(), {"answered": 0}
    deadline = time.monotonic() + S.FD_BUDGET

    def worker(n):
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            reply = get(copy)
            with lock:
                counts["answered"] += bool(reply.matched and reply.status)

    threads = [threading.Thread(target=worker, args=(S.FD_REQUESTS // 10,)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wait_children_exited(copy, server, kids)  # their work done: what the parent keeps
    still, why = alive(copy, server)
    if not still:
        return bad(f"{why} during {S.FD_REQUESTS} requests")
    after = before
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        look = copy.look(extra_pids=[server])
        after = look.fds.get(server, after) if look else after
        if after <= before + S.FD_MARGIN:
            break
        time.sleep(0.2)
    n = counts["answered"]
    text = (f"the server holds {after} descriptors after {S.FD_REQUESTS} requests "
            f"({n} answered), {before} before")
    if after > before + S.FD_MARGIN:
        return bad(text)
    if n < S.FD_REQUESTS // 2:
        return skip(f"only {n} of {S.FD_REQUESTS} requests answered in {S.FD_BUDGET:g} s (a slow "
                    f"server): too few to tell ({after} descriptors, {before} before)")
    return ok(text)


def _children_run(ctx: Ctx, role: str, requests: int, parallel: bool):
    """Requests, then wait for the children they made to exit and for the
    reaper's grace. Returns (copy, server pid, children seen, zombies,
    still running, cminflt grew, replies)."""
    copy = ctx.copy(role)
    look = copy.look()
    server = look.server_pid
    before = {p.pid for p in look.children(server)}
    cminflt0 = look.cminflt.get(server, 0)
    watch = copy.watch(0.05)
    seen_early: dict[int, str] = {}
    if parallel:
        replies = wire.parallel(copy.address(), PORT, requests, wire.request("GET", "/hello", HOST),
                                S.ANSWER_TIMEOUT, until=answered)
    else:
        # One at a time, as a person with curl: connect, let the server fork
        # (a child per connection forks at accept) and look, then send; the
        # child must be gone (or a zombie) before the next. Children that
        # live a millisecond are seen this way too.
        replies = []
        for _ in range(requests):
            if len(replies) >= S.UNANSWERED_IN_A_ROW and not any(
                    r.matched for r in replies[-S.UNANSWERED_IN_A_ROW:]):
                break  # it stopped answering: waiting out the rest tells no more
            try:
                sock = wire.connect(copy.address(), PORT, S.ANSWER_TIMEOUT)
            except OSError as error:
                replies.append(wire.Reply(error=str(error)))
                continue
            time.sleep(0.1)
            if (now := copy.look()) is not None:
                for p in now.children(server):
                    if p.pid not in before:
                        seen_early[p.pid] = p.state
            replies.append(wire.exchange("", PORT, wire.request("GET", "/hello", HOST),
                                         S.ANSWER_TIMEOUT, until=answered, sock=sock))
            wait_children_exited(copy, server, before, timeout=S.ONE_AT_A_TIME_WAIT)
    final, running = wait_children_exited(copy, server, before)
    if final is not None and not running:
        time.sleep(S.REAP_GRACE)
        final = copy.look()
    watch.stop()
    seen = {**seen_early, **watch.children_seen(server, before)}
    zombies = [p for p in final.children(server) if p.zombie and p.pid not in before] \
        if final else []
    for p in zombies:
        seen[p.pid] = p.state
    grew = bool(final and final.cminflt.get(server, 0) > cminflt0)
    return copy, server, seen, zombies, running, grew, replies, final


def check_zombie(ctx: Ctx) -> Result:
    copy, server, seen, zombies, running, grew, replies, final = _children_run(
        ctx, "zombie", S.ZOMBIE_REQUESTS, parallel=False)
    if final is None:
        return bad(f"the server exited: {copy.crash_line()}")
    n_ok = sum(1 for r in replies if r.matched)
    if zombies:
        return bad(f"{len(zombies)} zombie children {S.REAP_GRACE:g} s after the children of "
                   f"{S.ZOMBIE_REQUESTS} requests exited")
    if running:
        return skip(f"{running} children still running {S.CHILD_EXIT_WAIT:g} s after the answers "
                    "(a long SLEEP?): cannot tell whether they will be reaped")
    if n_ok < S.ZOMBIE_REQUESTS // 2:
        stopped = (f" (it stopped answering: {S.UNANSWERED_IN_A_ROW} unanswered in a row)"
                   if len(replies) < S.ZOMBIE_REQUESTS else "")
        return skip(f"only {n_ok} of {S.ZOMBIE_REQUESTS} requests answered with HTTP{stopped}: "
                    "the children did not serve, too few to tell")
    if not seen and not grew:
        return skip(f"no child process per request ({n_ok} of {S.ZOMBIE_REQUESTS} answered, "
                    f"{len(final.children(server))} long-lived children): nothing to reap")
    how = f"{len(seen)} children seen" if seen else \
        "the children were reaped: their page faults joined the server's cminflt"
    return ok(f"0 zombies {S.REAP_GRACE:g} s after {S.ZOMBIE_REQUESTS} requests ({how})")


def check_sigchld(ctx: Ctx) -> Result:
    copy, server, seen, zombies, running, grew, replies, final = _children_run(
        ctx, "sigchld", S.SIGCHLD_REQUESTS, parallel=False)
    still, why = alive(copy, server)
    if not still:
        return bad(f"{why}, after its first children exited")
    if not seen and not grew and not zombies:
        return skip("no child process: no SIGCHLD to survive")
    if running and not grew and not zombies:
        return skip(f"{running} children still running {S.CHILD_EXIT_WAIT:g} s after the "
                    "answers: no child has exited yet")
    reply = answers_within(copy, S.ANSWER_TIMEOUT)
    if reply is None:
        return bad("alive after its children exited, but no answer within "
                   f"{S.ANSWER_TIMEOUT:g} s")
    return ok(f"alive after {len(seen) or 'its'} children exited; the next request answered in "
              f"{fmt(reply.answered)}")


def check_burst(ctx: Ctx) -> Result:
    copy = ctx.copy("burst")
    look = copy.look()
    server = look.server_pid
    before = {p.pid for p in look.children(server)}
    watch = copy.watch(0.1)
    # all at once, each silent, within BURST_CONNECT in all (one after the other with
    # no overall deadline, a server that frees a backlog slot every REQUEST_TIMEOUT
    # would keep the stage for minutes)
    socks, _ = clients.open_many(copy.address(), PORT, S.BURST_CLIENTS, S.BURST_CONNECT)
    if len(socks) < S.BURST_CLIENTS:
        clients.close_all(socks)
        watch.stop()
        return bad(f"only {len(socks)} of {S.BURST_CLIENTS} clients could connect within "
                   f"{S.BURST_CONNECT:g} s: the listen backlog was full, and the server, busy "
                   "with one connected client that had not sent yet, did not accept")
    replies = wire.release(socks, wire.request("GET", "/hello", HOST), S.BURST_ANSWER,
                           until=answered)
    n_ok = sum(1 for r in replies if r.matched and r.status == 200)
    took = max((r.answered or 0) for r in replies)
    final, running = wait_children_exited(copy, server, before)
    if final is not None and not running:
        time.sleep(S.REAP_GRACE)
        final = copy.look()
    watch.stop()
    if final is None:
        return bad(f"{n_ok}/{S.BURST_CLIENTS} answered, then the server exited: "
                   f"{copy.crash_line()}")
    seen = watch.children_seen(server, before)
    zombies = [p for p in final.children(server) if p.zombie and p.pid not in before]
    kids = f"{len(set(seen) | {p.pid for p in zombies})} children seen" if seen or zombies \
        else "no child processes"
    text = (f"{n_ok}/{S.BURST_CLIENTS} answered in {fmt(took)}; {len(zombies)} zombies "
            f"{S.REAP_GRACE:g} s after ({kids})")
    if n_ok == S.BURST_CLIENTS and not zombies:
        return ok(text)
    return bad(text)
