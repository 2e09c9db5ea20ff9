"""bench (scripts/bench/) reads wrk's report right (no load, no timing: the parser only)."""

from bench.__main__ import parse_wrk

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
