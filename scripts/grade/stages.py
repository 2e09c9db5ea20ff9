"""The grader's stages as data: the one place `grade --list`, docs/grading.md's table,
the checks and the tests read. Ids are part of the interface (CI reports name
them); `lesson` is the article step, `teaches` the sentence printed with a
failure, `fix` the file of the stack that shows the fix, `threshold` the
numbers the check uses (with the margin it keeps on a loaded 2-core machine).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    id: str
    lesson: str
    checks: str
    threshold: str
    teaches: str
    fix: str
    wsgi: bool = False     # needs a WSGI target (one that takes APP)
    heavy: bool = False    # a load: runs alone (not beside another heavy stage)
    watches: bool = False  # reads the copy's processes (through its observer)
    # a time limit can decide the verdict: a server under emulation (another
    # CPU's image) that does not pass it is told so (grade.emulation)
    timed: bool = True


# Numbers the checks use, named once.
COPY_NOFILE = 1024          # every copy's nofile (soft and hard), unless a stage sets its own
LISTEN_TIMEOUT = 30.0       # a copy must LISTEN on 8888 within this
ANSWER_TIMEOUT = 5.0        # a plain request must be answered within this
CONCURRENT_WITHIN = 2.0     # the second connection's answer, one silent connection open
EOF_WITHIN = 1.0            # EOF after the response of a Connection: close request
EOF_WAIT = 3.0              # how long the eof stage waits for EOF at all
FD_REQUESTS = 100
FD_MARGIN = 2               # descriptors above the baseline that are not a leak
FD_BUDGET = 20.0            # seconds for the requests (a server that sleeps gets fewer)
ZOMBIE_REQUESTS = 10
REAP_GRACE = 2.0            # seconds a reaper gets after the children have exited
CHILD_EXIT_WAIT = 8.0       # how long to wait for the children of the requests to exit
ONE_AT_A_TIME_WAIT = 1.0    # zombie, sigchld: up to this for a child to exit before the next
UNANSWERED_IN_A_ROW = 3      # zombie, sigchld: no more requests after this many unanswered
SIGCHLD_REQUESTS = 3
BURST_CLIENTS = 128
BURST_CONNECT = 5.0         # all 128 connected (silent) within this
BURST_ANSWER = 15.0         # then released at once: each answered within this
BAD_INPUT_TIMEOUT = 2.0     # per malformed request: an answer or a close within this
BAD_INPUT_BUDGET = 30.0     # seconds for them all (a server that sleeps gets fewer)
SLOW_CLIENTS = 10
SLOW_WITHIN = 2.0
EMFILE_NOFILE = 256
EMFILE_CONNECTIONS = 300
EAGAIN_PIDS = 64
EAGAIN_CONNECTIONS = 100
SURVIVE_WITHIN = 5.0        # after the load: answered within this
SIGTERM_WITHIN = 3.0
PARITY_MIN = 30
BAD_INPUT_MIN = 30
KEEPALIVE_REQUESTS = 3
CLOSE_WITHIN = 1.0          # close: EOF within this after the answer
FRAMING_LINGER = 0.5        # framing: how long to watch for bytes after a whole response
BODY_SIZE = 100 * 1024

STAGES: list[Stage] = [
    Stage("hello", "part 1",
          "GET /hello gets a 200 and a body, from curl and from a browser-style request",
          f"both answered within {ANSWER_TIMEOUT:g} s",
          "A web server reads a request and answers with a status line, headers and a body.",
          "services/part1/webserver1.py"),
    Stage("http", "part 1",
          "the response is well-formed HTTP/1.x, read by a strict parser (h11)",
          "h11 reads the status line, the headers and the body framing without an error",
          "The response must be HTTP: a status line, CRLF-ended header lines, an empty line, "
          "then a body framed by Content-Length or by closing the connection.",
          "services/part2/wsgicore/response.py", timed=False),
    Stage("wsgi-apps", "part 2",
          "the four apps (bare WSGI, Flask, Pyramid, Django) each answer their page",
          "each app's /hello answered 200 with its own body",
          "A WSGI server runs any framework's application through the same interface: "
          "application(environ, start_response).",
          "services/part2/webserver2.py", wsgi=True, timed=False),
    Stage("environ", "part 2",
          "the environ has PEP 3333's keys with the right types (an environ-reporting app)",
          "every required CGI and wsgi.* key present with its PEP 3333 type and value",
          "The environ is the contract: PEP 3333 lists the keys an application may rely on.",
          "services/part2/wsgicore/environ.py", wsgi=True, timed=False),
    Stage("body", "part 2",
          f"a {BODY_SIZE // 1024} KB POST body reaches the app whole "
          "(the article's recv(1024) loses it)",
          "wsgi.input yields exactly the bytes sent (length and SHA-256)",
          "One recv() returns what has arrived, not the request: read the head to its empty "
          "line, then exactly Content-Length bytes of body.",
          "services/part2/wsgicore/readers.py", wsgi=True, timed=False),
    Stage("parity", "part 2",
          f"{PARITY_MIN}+ requests answered as gunicorn answers them "
          "(status, content type, body)",
          "every answer equal to a gunicorn copy's serving the same app",
          "A WSGI server is interchangeable: the same application must answer the same way "
          "under any of them.",
          "services/part2/webserver2.py", wsgi=True, timed=False),
    Stage("concurrent", "3a-3c",
          "with one connection open and silent, a second connection's request is answered "
          f"within {CONCURRENT_WITHIN:g} s",
          f"answered within {CONCURRENT_WITHIN:g} s",
          "An iterative server serves one client at a time: a silent client blocks everyone. "
          "Fork a child per connection (or use workers).",
          "services/part3/webserver3c.py"),
    Stage("eof", "3c-3d",
          "a `Connection: close` request: the server closes the connection promptly after "
          "the response",
          f"EOF within {EOF_WITHIN:g} s of the response (waits {EOF_WAIT:g} s)",
          "The client sees EOF only when every copy of the socket is closed: the parent must "
          "close its copy after fork(), and nobody may sleep before closing.",
          "services/part3/webserver3g.py"),
    Stage("fd-leak", "3d",
          f"the server's descriptor count is back to its baseline after {FD_REQUESTS} requests",
          f"at most {FD_MARGIN} descriptors above the count after one warm-up request; "
          f"skipped when fewer than half are answered in {FD_BUDGET:g} s",
          "Each accepted connection is a descriptor; a parent that keeps them runs out "
          "(EMFILE). Close the parent's copy.",
          "services/part3/webserver3g.py", heavy=True, watches=True),
    Stage("zombie", "3d-3e",
          f"no zombie child remains once the children of {ZOMBIE_REQUESTS} requests (one at a "
          "time, as a person with curl) have exited",
          f"0 zombie children {REAP_GRACE:g} s after the children exited; skipped when the "
          "server makes no child per request or answers fewer than half (it stops asking "
          f"after {UNANSWERED_IN_A_ROW} unanswered in a row)",
          "An exited child stays a zombie until its parent wait()s for it; reap them "
          "(a SIGCHLD handler with waitpid(-1, WNOHANG) in a loop).",
          "services/part3/webserver3g.py", watches=True),
    Stage("sigchld", "3e",
          "the server is still alive and answering after its first children exit",
          f"the same server process answers within {ANSWER_TIMEOUT:g} s after "
          f"{SIGCHLD_REQUESTS} children exited; skipped without children",
          "A signal handler interrupts a blocking accept(): restart it on EINTR "
          "(Python 3.5+ does for socket.accept()).",
          "services/part3/webserver3f.py", watches=True),
    Stage("burst", "3f-3g",
          f"{BURST_CLIENTS} clients connect, then all send at once: all answered, no zombie left",
          f"all connected within {BURST_CONNECT:g} s, each answered 200 within "
          f"{BURST_ANSWER:g} s, 0 zombies {REAP_GRACE:g} s after",
          "Many clients at once must all be accepted (a child per connection, workers or an "
          "event loop), and every exited child reaped: signals are not queued, one SIGCHLD may "
          "stand for many children, so wait in a loop until none is left.",
          "services/part3/webserver3g.py", heavy=True, watches=True),
    Stage("bad-input", "beyond",
          f"{BAD_INPUT_MIN}+ malformed requests (ids of the conformance corpus) each get a "
          "4xx or a close, and the next request is still answered",
          f"each answered 4xx (or 501/505) or closed within {BAD_INPUT_TIMEOUT:g} s; a good "
          "request answered after each",
          "Parse the request and refuse what is not HTTP: answering garbage with 200 "
          "hides bugs and invites request smuggling.",
          "services/part2/wsgicore/request.py"),
    Stage("slow-clients", "beyond",
          f"with {SLOW_CLIENTS} connections that send one header byte a second, a new request "
          f"is answered within {SLOW_WITHIN:g} s",
          f"answered within {SLOW_WITHIN:g} s",
          "A few slow clients must not occupy every worker: a process per connection, or "
          "an event loop, keeps serving.",
          "services/part3/webserver3h.py"),
    Stage("emfile", "beyond",
          f"under `nofile` {EMFILE_NOFILE} with {EMFILE_CONNECTIONS} connections held open, the "
          "server survives and answers once they close",
          f"the same server process alive; answered within {SURVIVE_WITHIN:g} s after",
          "accept() fails with EMFILE when the descriptors run out: close what you do not "
          "need, and back off instead of dying.",
          "services/part3/webserver3h.py", heavy=True, watches=True),
    Stage("eagain", "beyond",
          f"under a pids limit of {EAGAIN_PIDS} with {EAGAIN_CONNECTIONS} connections held open, "
          "the server survives and answers afterwards",
          f"the same server process alive; answered within {SURVIVE_WITHIN:g} s after; "
          "skipped when the server made no process under the load",
          "fork() fails with EAGAIN when the processes run out: answer 503 and keep serving.",
          "services/part3/webserver3h.py", heavy=True, watches=True),
    Stage("sigterm", "beyond",
          "SIGTERM: a request in flight completes, the server exits 0 within "
          f"{SIGTERM_WITHIN:g} s",
          f"the request answered 200; exit status 0 within {SIGTERM_WITHIN:g} s",
          "`docker stop` sends SIGTERM: stop accepting, finish the requests in flight, "
          "exit 0.",
          "services/part3/webserver3h.py"),
    Stage("keep-alive", "part 4",
          f"{KEEPALIVE_REQUESTS} HTTP/1.1 requests (no Connection header) on one connection, "
          "each sent once the one before is answered",
          f"all {KEEPALIVE_REQUESTS} answered in order within {ANSWER_TIMEOUT:g} s each, the "
          "connection open between them",
          "HTTP/1.1 connections persist unless one side says `Connection: close`: frame every "
          "body (Content-Length or chunked) and read the next request on the same socket.",
          "services/part4/webserver4b.py"),
    Stage("pipelining", "part 4",
          "two requests sent in one write: both answered, in order, nothing lost",
          f"two whole responses in request order within {ANSWER_TIMEOUT:g} s; skipped when the "
          "first answer says `Connection: close` (see keep-alive)",
          "A client may send its next request before the answer: keep what one recv() brought "
          "beyond the first request, and answer in order.",
          "services/part4/webserver4b.py"),
    Stage("close", "part 4",
          "`Connection: close` on HTTP/1.1, and HTTP/1.0 without keep-alive: each answered, "
          "then the connection closed by the server",
          f"each answered, EOF within {CLOSE_WITHIN:g} s of the answer",
          "A persistent server must still close when asked to (Connection: close) and by "
          "default for HTTP/1.0: the client waits for that EOF.",
          "services/part4/webserver4b.py"),
    Stage("framing", "part 4",
          "every response's body is exactly what its framing says (Content-Length, chunked, or "
          "the close); no byte follows a Content-Length body; a HEAD answer has no body",
          f"GET, HEAD (and a streamed body from the grader's app on WSGI servers): each framed "
          f"exactly, nothing more within {FRAMING_LINGER:g} s",
          "On a persistent connection the framing is the only way to tell where one response "
          "ends: a byte too many is read as the start of the next answer.",
          "services/part4/webserver4b.py", timed=False),
]

BY_ID = {s.id: s for s in STAGES}
IDS = [s.id for s in STAGES]


def readme_table() -> str:
    """The stage table docs/grading.md shows."""
    rows = ["| stage | lesson | what it checks | passes when | the fix to read |",
            "|---|---|---|---|---|"]
    for s in STAGES:
        rows.append(f"| `{s.id}` | {s.lesson} | {s.checks} | {s.threshold} | `{s.fix}` |")
    return "\n".join(rows)
