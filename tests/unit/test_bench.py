"""bench (scripts/bench/) reads wrk's report right (no load, no timing: the parser only)."""

from bench import COMPARISONS, median_row, parse_wrk, table, verdict, wrk_command

WRK_OUTPUT = """\
Running 10s test @ http://part3-wsgi-wsgi:8888/hello
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.06ms   12.34ms   1.02s    91.20%
    Req/Sec   612.50     80.11   800.00     70.00%
  Latency Distribution
     50%  812.00us
     75%   45.10ms
     90%   60.00ms
     99%    1.20s
  12250 requests in 10.01s, 2.10MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 1
Requests/sec:   1223.78
Transfer/sec:    214.88KB
"""


def test_parse_wrk_reads_rate_percentiles_in_ms_and_errors():
    assert parse_wrk(WRK_OUTPUT) == {
        "rps": 1223.78, "p50_ms": 0.812, "p99_ms": 1200.0, "requests": 12250, "errors": 6}


def test_the_issue_goals_are_in_the_code_and_never_lowered():
    goals = {c.key: (c.ours, c.theirs, c.load, c.goal, c.slow_clients) for c in COMPARISONS}
    assert goals == {
        "4a-bare": ("part4-prefork-wsgi", "gunicorn-wsgi", "close", 2.0, 0),
        "4a-flask": ("part4-prefork-flask", "gunicorn-flask", "close", 1.5, 0),
        "4b-bare": ("part4-evloop-wsgi", "gunicorn-gthread-wsgi", "keep-alive", 2.0, 0),
        "4b-flask": ("part4-evloop-flask", "gunicorn-gthread-flask", "keep-alive", 1.5, 0),
        "3h-bare": ("part3-wsgi-wsgi", "gunicorn-wsgi", "close", 0.3, 0),
        "4b-slow": ("part4-evloop-wsgi", "part4-evloop-wsgi", "keep-alive", 0.8, 10),
    }


def test_close_load_sends_connection_close_and_keep_alive_does_not():
    class Args:
        threads, connections, duration, timeout = 2, 50, "5s", "5s"
    close = wrk_command("part4-prefork-wsgi", "close", Args)
    keep = wrk_command("part4-evloop-wsgi", "keep-alive", Args)
    assert "Connection: close" in close and "Connection: close" not in keep
    assert keep[-1] == "http://part4-evloop-wsgi:8888/hello"


def test_medians_ratio_and_the_table_row_shape_the_lab_reads():
    run = lambda rps, p50: {"rps": rps, "p50_ms": p50, "p99_ms": p50 * 4, "errors": 0,  # noqa: E731
                            "cpu_us": 1e5 / rps}
    ours = median_row("part4-prefork-wsgi", [run(4000, 10), run(5000, 9), run(4600, 8)],
                      "close", 0, "4a-bare")
    theirs = median_row("gunicorn-wsgi", [run(2000, 20), run(2200, 22)], "close", 0, "4a-bare")
    assert ours["rps"] == 4600 and ours["p50_ms"] == 9 and theirs["rps"] == 2100
    for row in (ours, theirs):  # the lab's report.parse_bench needs these
        assert {"target", "server", "app", "rps", "p50_ms", "p99_ms", "errors"} <= set(row)
    v = verdict(COMPARISONS[0], ours, theirs)
    assert v["ratio"] == 2.19 and v["reached"]
    assert ours["cpu_us_per_request"] == 21.7 and v["cpu_ratio"] == 2.2
    text = table([ours, theirs], [v])
    assert "| 4a-bare | close | webserver4a (part4-prefork-wsgi) | 4,600 |" in text
    assert "**2.19x** | >= 2x, reached |" in text


def test_targets_come_from_compose_yaml():
    from bench.targets import describe
    assert describe("part4-evloop-flask") == ("webserver4b", "flask")
    assert describe("part3-wsgi-wsgi") == ("webserver3h", "wsgi")
    assert describe("gunicorn-gthread-wsgi") == ("gunicorn 27 gthread", "wsgi")
    assert describe("granian-flask") == ("granian", "flask")
    assert describe("uwsgi-wsgi") == ("uWSGI", "wsgi")
    assert describe("no-such-service") == ("?", "?")


def test_every_peer_service_is_in_compose_yaml():
    from bench.comparisons import peer_services
    from instrument.servers import names
    assert set(peer_services()) <= set(names())
    assert len(peer_services()) == 18


def test_peer_goals_are_the_issues_and_flask_is_at_75_percent():
    from bench import PEER_GOALS, peer_row, peer_table, peer_verdicts
    goals = {(g.ours, g.theirs, g.load): g.goal for g in PEER_GOALS}
    assert goals == {
        ("part4-evloop", "granian", "keep-alive"): 1.0, ("part4-evloop", "uwsgi", "keep-alive"): 2.0,
        ("part4-evloop", "gunicorn-gthread", "keep-alive"): 3.0,
        ("part4-evloop", "waitress", "keep-alive"): 5.0,
        ("part4-evloop", "cheroot", "keep-alive"): 5.0,
        ("part4-prefork", "uwsgi", "close"): 1.0, ("part4-prefork", "granian", "close"): 1.0,
        ("part4-prefork", "gunicorn", "close"): 2.5}
    run = lambda rps: {"rps": rps, "p50_ms": 1.0, "p99_ms": 4.0, "errors": 0,  # noqa: E731
                       "cpu_us": 1e5 / rps}
    rows = [peer_row("part4-evloop-wsgi", [run(30000)], "keep-alive"),
            peer_row("granian-wsgi", [run(40000)], "keep-alive"),
            peer_row("part4-evloop-flask", [run(6000)], "keep-alive"),
            peer_row("granian-flask", [run(8000)], "keep-alive")]
    assert set(rows[0]) >= {"target", "load", "rps", "p50_ms", "p99_ms", "errors",
                            "cpu_ms_per_1000"}
    assert rows[0]["cpu_ms_per_1000"] == 3.3  # 3.3 µs per request = 3.3 ms per 1,000
    verdicts = peer_verdicts(rows)
    assert [(v["app"], v["ratio"], v["goal"], v["reached"]) for v in verdicts] == [
        ("wsgi", 0.75, 1.0, False), ("flask", 0.75, 0.75, True)]
    text = peer_table(rows, verdicts)
    assert "| part4-evloop-wsgi | granian-wsgi | keep-alive | **0.75x** | >= 1x, **missed** |" in text
    assert "| keep-alive | bare | webserver4b (part4-evloop-wsgi) | 30,000 |" in text


def test_the_lab_chart_labels_a_peers_row_with_its_load():
    from lab.report import parse_bench
    rows = [{"target": "granian-wsgi", "load": "close", "rps": 10.0, "server": "granian",
             "app": "wsgi"}, {"target": "granian-wsgi", "load": "keep-alive", "rps": 20.0,
                              "server": "granian", "app": "wsgi"}]
    assert parse_bench(rows) == [("granian-wsgi (granian, wsgi, close)", 10.0),
                                 ("granian-wsgi (granian, wsgi, keep-alive)", 20.0)]
