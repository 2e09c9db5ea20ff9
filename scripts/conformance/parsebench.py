"""Microbenchmark of wsgicore's request parser: a typical curl GET, N times.

    python3 scripts/conformance/parsebench.py [--module PATH ...] [-n 100000]

Prints microseconds per request for the blocking read_request (from an
io.BytesIO, as the unit tests call it, and from a BufferedReader, as a
socket's) and for RequestParser (feed + next_request, as webserver4b's event
loop calls it); both are the one parser of wsgicore.parser. A --module is the
package's directory (services/part2/wsgicore, the default) or a one-file
wsgicore.py of an older commit (`git show 87ddc12:services/part2/wsgicore.py
> /tmp/old.py`). Several are measured in turns, A/B/A/B, and the best of the
runs is kept: the machine's other load hits them alike.
"""

import argparse
import importlib.util
import io
import sys
import time
from pathlib import Path

CURL_GET = (b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8888\r\n"
            b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")


def load(path, number=[0]):  # noqa: B006  (a counter: each load its own name)
    """A wsgicore package directory or a one-file wsgicore.py, imported
    under a name of its own (so two can be compared in one process)."""
    number[0] += 1
    name, path = f"wsgicore_bench{number[0]}", Path(path)
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py", submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timed(func, n):
    """CPU seconds of this process (not wall time: the machine's other load
    then slows every run alike instead of stealing time from some)."""
    started = time.process_time()
    func(n)
    return (time.process_time() - started) / n * 1e6


def benchmarks(core):
    def blocking(n, read_request=core.read_request, data=CURL_GET, BytesIO=io.BytesIO):
        for _ in range(n):
            read_request(BytesIO(data))

    def buffered(n, read_request=core.read_request, data=CURL_GET, BytesIO=io.BytesIO,
                 BufferedReader=io.BufferedReader):
        for _ in range(n):
            read_request(BufferedReader(BytesIO(data)))

    found = {"read_request(BytesIO)": blocking,
             "read_request(BufferedReader), as on a socket": buffered}
    if hasattr(core, "RequestParser"):
        def fed(n, RequestParser=core.RequestParser, data=CURL_GET):
            for _ in range(n):
                parser = RequestParser()
                parser.feed(data)
                parser.next_request()

        def reused(n, RequestParser=core.RequestParser, data=CURL_GET):
            parser = RequestParser()
            feed, next_request = parser.feed, parser.next_request
            for _ in range(n):
                feed(data)
                next_request()

        found["RequestParser: new + feed + next_request"] = fed
        found["RequestParser: keep-alive (one parser)"] = reused
    return found


def main(argv=None):
    default = Path(__file__).resolve().parents[2] / "services" / "part2" / "wsgicore"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="a wsgicore package directory or wsgicore.py to measure (repeatable)")
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    paths = args.module or [str(default)]
    suites = {path: benchmarks(load(path)) for path in paths}
    best = {(path, name): float("inf") for path, suite in suites.items() for name in suite}
    for _ in range(args.runs):
        for path, suite in suites.items():
            for name, func in suite.items():
                best[path, name] = min(best[path, name], timed(func, args.n))
    print(f"{args.n} x {len(CURL_GET)}-byte curl GET, best of {args.runs} interleaved runs, CPU time, "
          f"Python {sys.version.split()[0]}")
    for path, suite in suites.items():
        print(path)
        for name in suite:
            micros = best[path, name]
            print(f"  {name:45s} {micros:6.2f} us/request  ({1e6 / micros:,.0f}/s)")


if __name__ == "__main__":
    main()
