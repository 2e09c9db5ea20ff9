"""experiments: what the lab runs, as data, in one place.

Every run-time behaviour of the article is one Experiment: the compose
service it uses, the load it sends, what it measures, what the article
expects, and the rule that decides whether what was seen agrees. `lab list`,
`lab run`, `lab report` and `lab readme-table` (the table docs/lab.md embeds) all
read EXPERIMENTS and CHARTS below; there is no second copy.

Loads are bounded: a fixed number of clients, each with a deadline, aimed
only at a compose service by name (port 8888 inside the network, or 8899
for a *twin*: the same lesson file started again inside the same container
with a short SLEEP, killed afterwards, because 3b and 3c sleep 60 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from instrument.engine import TWIN_PORT

TWIN_SLEEP = 2.0  # seconds: the short-sleep twins of 3b and 3c


@dataclass(frozen=True)
class Experiment:
    id: str
    step: str                    # the article's file, e.g. "3f" for webserver3f
    claims: tuple[str, ...]      # ids of the claims table (docs/claims.md) (C1-C25)
    service: str                 # the compose service it restarts and loads
    title: str
    load: dict                   # kind + parameters, run by lab.runner
    load_text: str               # the same load, for people
    measure: str                 # what is read, and where
    expects: str                 # the article's expectation, one plain sentence
    rule: dict                   # name + parameters, judged by lab.verdict
    note: str = ""               # where this edition differs from the article, and why


EXPERIMENTS: list[Experiment] = [
    Experiment(
        id="serialisation",
        step="3b",
        claims=("C11", "C12"),
        service="part3-iterative-sleep",
        title="one client at a time",
        load={"kind": "twin_parallel", "script": "webserver3b.py", "sleep": TWIN_SLEEP,
              "clients": 3},
        load_text=f"3 clients at once on a SLEEP={TWIN_SLEEP:g} twin of webserver3b (port {TWIN_PORT})",
        measure="when each client gets its answer; connect() time; the listen backlog "
                "(/proc/net/tcp) while the server sleeps",
        expects="the second client to get nothing until the first request's sleep is over, "
                "while its connect() succeeds at once because the kernel's listen backlog "
                "holds it.",
        rule={"name": "serialised", "tolerance": 0.1},
        note="part3-iterative-sleep keeps the article's 60 s sleep; the lab starts the same "
             f"file again inside the same container with SLEEP={TWIN_SLEEP:g} on port "
             f"{TWIN_PORT} and kills it afterwards.",
    ),
    Experiment(
        id="concurrency",
        step="3c",
        claims=("C14", "C15"),
        service="part3-fork",
        title="many clients at once, one child each",
        load={"kind": "parallel", "clients": 20, "sleep": 60},
        load_text="20 clients at once; each child sleeps 60 s after its answer, as in the article",
        measure="when each client gets its answer; the children of the server and their PPID (ps)",
        expects="every client to be answered at once, without waiting for the others' sleep, "
                "each by a child whose PPID is the server's PID.",
        rule={"name": "concurrent"},
        note="The children keep sleeping after the lab is done; they become zombies when they "
             "exit (webserver3c never waits): the next run restarts the service.",
    ),
    Experiment(
        id="hanging-curl",
        step="3d",
        claims=("C16",),
        service="part3-fork-leaky",
        title="the hanging curl",
        load={"kind": "curl_hang", "max_time": 3},
        load_text="one curl --max-time 3",
        measure="curl's output and exit status (28: timed out waiting for the end); the "
                "server's open descriptors (/proc/PID/fd)",
        expects="curl to print the response but not terminate: the parent still holds the "
                "socket, so no FIN is sent.",
        rule={"name": "hangs"},
    ),
    Experiment(
        id="emfile",
        step="3d",
        claims=("C17",),
        service="part3-fork-leaky",
        title="out of descriptors: EMFILE",
        load={"kind": "flood", "clients": 300, "deadline": 60, "watch": "fds"},
        load_text="client3 --max-clients=300, every connection held open",
        measure="the server's open descriptors against its nofile limit; its exit and the "
                "last line of its traceback (container logs)",
        expects="the server to die with `OSError: [Errno 24] Too many open files` "
                "(ulimit -n 256).",
        rule={"name": "dies_with", "text": "[Errno 24] Too many open files",
              "not": "Resource temporarily unavailable"},
    ),
    Experiment(
        id="zombie-one-request",
        step="3d",
        claims=("C18",),
        service="part3-fork-leaky",
        title="a zombie after one request",
        load={"kind": "one_request"},
        load_text="one GET /hello",
        measure="the server's children and their state (ps: Z, <defunct>)",
        expects="the child to stay a zombie (`Z`, `<defunct>`) because the parent never "
                "waits for it.",
        rule={"name": "zombies_at_least", "min": 1},
    ),
    Experiment(
        id="eagain",
        step="3d",
        claims=("C20",),
        service="part3-fork-leaky-nproc",
        title="out of processes: EAGAIN",
        load={"kind": "flood", "clients": 500, "deadline": 90, "watch": "procs"},
        load_text="client3 --max-clients=500, every connection held open",
        measure="the container's processes against its limit of 400; the server's exit and "
                "the last line of its traceback",
        expects="fork() to fail with `[Errno 11] Resource temporarily unavailable` (EAGAIN, "
                "ulimit -u 400) and the server to die.",
        rule={"name": "dies_with", "text": "[Errno 11] Resource temporarily unavailable",
              "not": "Too many open files"},
        note="RLIMIT_NPROC counts per uid and never applies to root: the server runs as its "
             "own uid 4000, and the container's pids limit (400) is the deterministic cap.",
    ),
    Experiment(
        id="eintr",
        step="3e",
        claims=("C21",),
        service="part3-sigchld",
        title="EINTR kills the server (and modern Python retries)",
        load={"kind": "eintr", "twin_requests": 4, "twin_sleep": 0.3},
        load_text="4 curls, one at a time, on an ACCEPT=python twin (port "
                  f"{TWIN_PORT}); then one curl on the server",
        measure="the twin's log and liveness; the server's exit and the last line of its "
                "traceback",
        expects="the SIGCHLD handler to reap the child, then accept() to fail with "
                "`Interrupted system call` (EINTR) and the server to die; Python 3.5+ "
                "socket.accept() retries instead (PEP 475).",
        rule={"name": "eintr", "text": "[Errno 4] Interrupted system call"},
        note="The server calls the C library's accept(2) through ctypes, as the article's "
             "Python 2 did; the twin runs the same file with ACCEPT=python.",
    ),
    Experiment(
        id="zombies-under-load",
        step="3f",
        claims=("C23",),
        service="part3-eintr",
        title="zombies under load",
        load={"kind": "burst", "clients": 128, "hold": 5},
        load_text="client3 --max-clients 128 --burst --hold 5 (connect all, then send all at once)",
        measure="zombie children of the server (ps inside the container)",
        expects="zombies to come back because SIGCHLD signals are not queued: one handler "
                "call reaps one child.",
        rule={"name": "zombies_at_least", "min": 1},
    ),
    Experiment(
        id="no-zombies",
        step="3g",
        claims=("C24",),
        service="part3-waitpid",
        title="no zombies: the waitpid loop",
        load={"kind": "burst", "clients": 128, "hold": 5, "nudge": True},
        load_text="client3 --max-clients 128 --burst --hold 5",
        measure="zombie children of the server (ps inside the container)",
        expects="no zombie: waitpid(-1, WNOHANG) in a loop reaps every child that has exited.",
        rule={"name": "no_zombies"},
    ),
    Experiment(
        id="wsgi-concurrent",
        step="3h",
        claims=("C25",),
        service="part3-wsgi-wsgi",
        title="the concurrent WSGI server",
        load={"kind": "burst", "clients": 128, "hold": 5, "nudge": True},
        load_text="client3 --max-clients 128 --burst --hold 5",
        measure="answers; zombie children of the server (ps inside the container)",
        expects="the part 2 WSGI server, made concurrent with fork and the waitpid reaper, "
                "to answer many clients at once without zombies.",
        rule={"name": "no_zombies"},
        note="Its container allows 128 processes: past that, fork() fails and webserver3h "
             "answers 503 with Retry-After instead of dying.",
    ),
    Experiment(
        id="gunicorn",
        step="gunicorn",
        claims=("C25",),
        service="gunicorn-wsgi",
        title="gunicorn, for comparison",
        load={"kind": "burst", "clients": 128, "hold": 5, "nudge": True},
        load_text="client3 --max-clients 128 --burst --hold 5",
        measure="answers; zombie processes in the container (ps)",
        expects="a production server (2 sync workers) to take the same load without zombies "
                "and to survive it. Since the move from gunicorn 23 to 27 it does not answer "
                "every client within the hold: a sync worker now closes gracefully (it shuts "
                "down its side, then waits up to 2 s for the client to close, RFC 9112 section "
                "9.6), and client3's clients keep their connections open for 5 s, so each "
                "worker answers about one client per 2 s.",
        rule={"name": "no_zombies", "lingering_close": 2.0, "workers": 2},
    ),
    # ---- part 4, beyond the article (claims P3, P4 in docs/part4.md)
    Experiment(
        id="slow-clients",
        step="4b",
        claims=(),
        service="part4-evloop-wsgi",
        title="slow clients cost a socket, not a worker (P3)",
        load={"kind": "slow_clients", "slow": 10, "clients": 4, "seconds": 3},
        load_text="4 clients asking GET /hello for 3 s, then again while 10 more send one "
                  "header byte a second",
        measure="answers per second to the 4 clients and their median answer time, "
                "without and with the slow clients",
        expects="(part 4, beyond the article) an event-loop server to keep answering the "
                "others at almost the same rate, within 100 ms, while slow clients are held "
                "open: each costs it a socket, not a worker.",
        rule={"name": "not_held", "ratio": 0.5, "p50": 0.1},
        note="The chart slow-clients draws the same for 3h, 4a, 4b, gunicorn sync and "
             "gunicorn gthread: 4a and gunicorn sync answer nobody once every worker holds "
             "a slow client.",
    ),
    Experiment(
        id="keep-alive",
        step="4b",
        claims=(),
        service="part4-evloop-wsgi",
        title="keep-alive: many requests per connection (P4)",
        load={"kind": "keep_alive", "per_connection": 100, "clients": 4, "seconds": 3},
        load_text="4 clients for 3 s with a new connection per request, then 100 requests "
                  "per connection",
        measure="answers per second both ways; connections opened",
        expects="(part 4, beyond the article) requests over kept-alive connections to be "
                "answered faster than with a connection each: no connect, accept and close "
                "per request.",
        rule={"name": "keep_alive_pays"},
    ),
]

BY_ID = {e.id: e for e in EXPERIMENTS}


@dataclass(frozen=True)
class Series:
    label: str        # legend
    service: str
    experiment: str   # the experiment it belongs to (lab report --only keeps it with it)
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Chart:
    id: str           # also the PNG's name: reports/<id>.png
    title: str
    kind: str         # zombie_sweep, fd_sweep, answer_sweep, bench (lab.runner / lab.report)
    xlabel: str
    ylabel: str
    points: tuple[int, ...] = ()
    series: tuple[Series, ...] = ()
    caption: str = ""


CHARTS: list[Chart] = [
    Chart(
        id="zombies",
        title="Zombies left after N concurrent clients",
        kind="zombie_sweep",
        xlabel="concurrent clients (client3 --burst)",
        ylabel="zombie children left",
        points=(1, 16, 64, 128, 256),
        series=(
            Series("3d fork, never waits", "part3-fork-leaky", "zombie-one-request"),
            Series("3e SIGCHLD + wait()", "part3-sigchld", "eintr"),
            Series("3f wait() once per signal", "part3-eintr", "zombies-under-load"),
            Series("3g waitpid loop", "part3-waitpid", "no-zombies"),
            Series("3h concurrent WSGI", "part3-wsgi-wsgi", "wsgi-concurrent"),
            Series("gunicorn", "gunicorn-wsgi", "gunicorn"),
        ),
        caption="Each point: the service restarted fresh when it held zombies or had died, "
                "client3 --max-clients N --burst --hold 2, then the zombies counted with ps "
                "inside the container once every child had exited. A cross marks a server "
                "that died during the load (the reason is the last line of its traceback); "
                "when a server dies its orphans are reaped by docker-init, so no zombie is "
                "left to count. 3e dies of EINTR when its first child exits; its container "
                "allows 128 processes (compose.yaml's default pids_limit), so from 128 clients "
                "on fork() fails first (EAGAIN). 3d has room for about 252 connections "
                "(ulimit -n 256): at 256 clients it dies of EMFILE if they all connect within "
                "client3's --timeout.",
    ),
    Chart(
        id="fds",
        title="Open descriptors of the server process vs connections held",
        kind="fd_sweep",
        xlabel="connections held open by the client",
        ylabel="open descriptors (/proc/PID/fd)",
        points=(1, 16, 64, 128, 192, 240),
        series=(
            Series("3c closes its copy", "part3-fork", "concurrency"),
            Series("3d keeps every copy", "part3-fork-leaky", "emfile"),
        ),
        caption="The lab holds N connections open (each sent GET /hello) and counts the "
                "parent's descriptors once the server has accepted them all. 3d's limit "
                "(ulimit -n 256) is drawn: one more connection than it has room for kills "
                "it with EMFILE (experiment emfile).",
    ),
    Chart(
        id="answer-time",
        title=f"Time until all N parallel clients are answered (SLEEP={TWIN_SLEEP:g} twins)",
        kind="answer_sweep",
        xlabel="parallel clients",
        ylabel="seconds until the last answer",
        points=(1, 2, 3, 4),
        series=(
            Series("3b iterative", "part3-iterative-sleep", "serialisation",
                   {"script": "webserver3b.py", "sleep": TWIN_SLEEP}),
            Series("3c fork", "part3-fork", "concurrency",
                   {"script": "webserver3c.py", "sleep": TWIN_SLEEP}),
        ),
        caption=f"Twins of webserver3b and webserver3c (the same files, SLEEP={TWIN_SLEEP:g} "
                f"instead of 60, port {TWIN_PORT}, in the services' own containers). The "
                "iterative server answers the N-th client after (N-1) sleeps; the forking "
                "server answers all at once.",
    ),
    Chart(
        id="slow-clients",
        title="Answers per second to 4 normal clients while N slow clients are held open",
        kind="slow_sweep",
        xlabel="slow clients (one header byte a second)",
        ylabel="answers per second (4 clients)",
        points=(0, 2, 5, 10),
        series=(
            Series("3h fork per connection", "part3-wsgi-wsgi", "slow-clients"),
            Series("4a pre-fork", "part4-prefork-wsgi", "slow-clients"),
            Series("4b event loops", "part4-evloop-wsgi", "slow-clients"),
            Series("gunicorn sync", "gunicorn-wsgi", "slow-clients"),
            Series("gunicorn gthread", "gunicorn-gthread-wsgi", "slow-clients"),
        ),
        caption="Each point: N connections that send one byte of a request head a second, "
                "then 4 clients asking GET /hello (a connection each, 1 s timeout) for 2 s. "
                "2 workers for 4a and gunicorn sync: from 2 slow clients on they answer "
                "nobody. The lab's Python clients bound the rates (a few thousand a second): "
                "compare the shapes, not the heights; `bench` measures the rates.",
    ),
    Chart(
        id="keep-alive",
        title="Answers per second against requests per connection",
        kind="keepalive_sweep",
        xlabel="requests per connection",
        ylabel="answers per second (4 clients)",
        points=(1, 10, 100),
        series=(
            Series("4a pre-fork", "part4-prefork-wsgi", "keep-alive"),
            Series("4b event loops", "part4-evloop-wsgi", "keep-alive"),
            Series("gunicorn sync", "gunicorn-wsgi", "keep-alive"),
            Series("gunicorn gthread", "gunicorn-gthread-wsgi", "keep-alive"),
        ),
        caption="4 clients for 2 s each point; the last request on a connection says "
                "Connection: close. 4a and gunicorn sync close after every answer anyway, so "
                "they stay flat; 4b and gthread keep the connection. Python clients: compare "
                "the shapes; `bench` measures the rates.",
    ),
    Chart(
        id="bench",
        title="Requests per second: ours vs gunicorn (from the benchmark)",
        kind="bench",
        xlabel="",
        ylabel="requests per second",
        caption="From reports/bench.json, written by the benchmark (scripts/bench).",
    ),
]


def readme_table() -> str:
    """The markdown table README embeds (`lab readme-table`)."""
    rows = ["| experiment | step | claims | service | load | the article expects |",
            "|---|---|---|---|---|---|"]
    for e in EXPERIMENTS:
        rows.append(f"| `{e.id}` | {e.step} | {', '.join(e.claims)} | {e.service} "
                    f"| {e.load_text} | {e.expects.replace('|', '/')} |")
    return "\n".join(rows)
