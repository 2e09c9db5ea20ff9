"""bench: our servers against gunicorn and the peers, in one run, with goals.

    docker compose run --rm tests bench                 (every comparison below)
    bench --only 4a-bare,4b-bare --duration 3s --rounds 1
    bench part3-wsgi-wsgi gunicorn-wsgi                 (just these targets, once)
    docker compose run --rm tests bench --peers         (every server, both loads, both apps)

Run it inside the compose network (the tests container): load through the
host's published ports is throttled by the port proxy, and a client
outside the tests container's network namespace lacks its
net.ipv4.tcp_tw_reuse=1, so connection-per-request load runs it out of
ephemeral ports within seconds. Only the project's own services are
targets; every load is bounded (wrk -d, at most 25 s a run).

Each comparison is ours (A) against its yardstick (B) under the same load,
measured A, B, A, B, A, B (--rounds pairs, so drifting noise hits both
alike); the figures are the medians of the rounds. Beside req/s it reads
the CPU time each server's container used during each run (cgroup
cpuacct, through the engine's socket): CPU per request hardly moves when
other work loads the machine, req/s does. The loads:

    close       wrk -t2 -c50 -d5s --latency -H 'Connection: close' .../hello
                (a new connection per request: gunicorn's sync worker and
                webserver4a serve one request per connection anyway)
    keep-alive  wrk -t2 -c50 -d5s --latency .../hello (50 connections, each
                carrying request after request)
    keep-alive + 10 slow clients: the same, while 10 more connections each
                send one byte of a request head a second

It prints each run, then a table with req/s, p50 and p99 (medians), the
ratio A/B and the goal of each comparison (reached or not), and writes the
rows (a list of {target, server, app, rps, p50_ms, p99_ms, errors, ...},
the shape `lab report` charts) to /lsbaws/reports/bench.json when that
directory is writable, or to --json PATH. It exits 1 if a target did not
answer; a goal not reached is reported, not an error (machines differ).

`--peers`: every server (ours: webserver3h, 4a, 4b; gunicorn 27 sync and
gthread, granian, uWSGI, waitress, cheroot) x {close, keep-alive} x {bare,
Flask}, in rounds (each round every server once per cell, the order rotated),
3 s runs, 2 rounds by default: about 5 minutes. It prints every row (req/s,
p50, p99, errors, CPU ms per 1,000 requests from the container's cgroup)
and issue 17's goals as ratios (printed, never asserted), and writes a row
per target and load: {target, load, rps, p50_ms, p99_ms, errors,
cpu_ms_per_1000, server, app, runs_rps}.

Without wrk on PATH it falls back to instrument.clients.answer_rate (one
thread per connection; the GIL makes it the bottleneck above ~1,500 req/s,
so its figures are lower bounds and it says so).

The package, by role: load (wrk and its report), targets (server and app of
a service, from compose.yaml), comparisons (what against what, the goals),
measure (answers, limits, cgroup CPU, one run), table (medians, ratios,
tables), cli (the command line).
"""

from .cli import main
from .comparisons import COMPARISONS, PEER_GOALS, Comparison
from .load import parse_wrk, wrk_command
from .table import median_row, peer_row, peer_table, peer_verdicts, table, verdict

__all__ = ["COMPARISONS", "PEER_GOALS", "Comparison", "main", "median_row", "parse_wrk",
           "peer_row", "peer_table", "peer_verdicts", "table", "verdict", "wrk_command"]
