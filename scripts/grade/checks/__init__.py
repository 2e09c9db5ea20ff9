"""The stages' checks, one module a role: base (Result, Ctx, the helpers),
part1, wsgi (part 2), part3 (connections and children), beyond (malformed
requests, slow clients, limits, SIGTERM), persistent (part 4: keep-alive,
pipelining, close, framing). Each stage runs on its own copy of
the target's image (see instrument.copies), so one stage's leftovers (a
zombie, a held descriptor, a crash) never change another's result; hello runs
on the first copy, the one that shows the target starts at all.

A check returns a Result: pass, fail or skip, and the evidence in numbers.
Where a check cannot be made (no children to reap, not a WSGI server) it
skips, and the evidence says why: no stage passes vacuously.
"""

from __future__ import annotations

from grade import stages as S
from grade.checks import beyond, part1, part3, persistent, wsgi
from grade.checks.base import Ctx, Result, answered, bad, ok, skip

__all__ = ["Ctx", "OWN", "Result", "SHARED", "answered", "bad", "ok", "skip"]

SHARED = {"hello": part1.check_hello}   # runs on the first (basic) copy
OWN = {
    "http": part1.check_http,
    "wsgi-apps": wsgi.check_wsgi_apps, "environ": wsgi.check_environ, "body": wsgi.check_body,
    "parity": wsgi.check_parity,
    "concurrent": part3.check_concurrent, "eof": part3.check_eof,
    "fd-leak": part3.check_fd_leak, "zombie": part3.check_zombie,
    "sigchld": part3.check_sigchld, "burst": part3.check_burst,
    "bad-input": beyond.check_bad_input, "slow-clients": beyond.check_slow_clients,
    "emfile": beyond.check_emfile, "eagain": beyond.check_eagain,
    "sigterm": beyond.check_sigterm,
    "keep-alive": persistent.check_keep_alive, "pipelining": persistent.check_pipelining,
    "close": persistent.check_close, "framing": persistent.check_framing,
}
assert set(SHARED) | set(OWN) == set(S.IDS), "every stage has its check"
