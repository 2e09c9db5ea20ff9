#!/usr/bin/env python3
"""client3.py: the load client of part 3: many clients holding connections open.

Forks --max-clients client processes. Each opens --max-conns connections to
--host:--port, sends one `GET /hello` on each, holds them open for --hold
seconds, then closes them and exits. The parent collects what happened over a
pipe and prints one line, for example

  client3: 300 clients x 1 connections to part3-fork-leaky:8888: 256 connected,
  44 failed (44 x ConnectionRefusedError: [Errno 111] Connection refused)

(on one line), or with --json one JSON object:
  host, port, clients, conns_per_client  what was asked
  connected  connections whose connect() succeeded
  sent       requests sent (a connection reset before that counts as failed)
  answered   connections on which an HTTP answer arrived during --hold
  failed     connections that never got their request out: refused, timed
             out, reset, or their client was not started or was killed
  killed     clients killed (SIGKILL) because they overran the deadline
  errors     {"<exception class>: <message>": count} for every failure

--burst makes the moment deterministic: every client first connects all its
connections and tells the parent; when all have (or --timeout has passed), and
--settle seconds later (the server accepts them meanwhile), the parent releases
them all at once and they send their requests together. The server's children
then exit together, which is what shows lost SIGCHLDs (webserver3f).

The article's client3 has an indentation slip: its os._exit(0) sits inside the
connection loop, so each child exits after its first connection whatever
--max-conns says. Ours does what the help says; the default --max-conns 1 is
what the article actually ran.

Bounded: at most 1000 clients x 100 connections, aimed only at the one
address --host resolves to (IPv4). A client still alive --timeout + --hold + 2
seconds after the requests went out is killed (SIGKILL); every client is reaped.
Exit status: 0 when the run completed, failed connections included;
2 on bad arguments (or a --host that does not resolve).
"""

import argparse
import collections
import json
import os
import select
import signal
import socket
import sys
import time

REQUEST = "GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
MARGIN = 2.0  # seconds of grace before a client that overran is killed


def number(kind, low, high, name):
    """An argparse type: a `kind` between low and high, else exit 2."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} expected, got {text!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, got {text}")
        return value

    return parse


OPTIONS = [  # flag, type, default, metavar, help
    ("--host", str, "localhost", "HOST", "the server, resolved once to one IPv4 address"),
    ("--port", number(int, 1, 65535, "a port"), 8888, "PORT", "the server's port"),
    ("--max-clients", number(int, 1, 1000, "a whole number"), 1, "N", "clients to fork"),
    ("--max-conns", number(int, 1, 100, "a whole number"), 1, "N", "connections per client"),
    ("--hold", number(float, 0, 3600, "seconds"), 3.0, "SECONDS", "hold them open this long"),
    ("--timeout", number(float, 0.1, 600, "seconds"), 5.0, "SECONDS", "time to connect them all"),
    ("--settle", number(float, 0, 60, "seconds"), 0.5, "SECONDS", "--burst: wait before release"),
]
EPILOG = """\
Each client connects, sends `GET /hello` on every connection, holds them open
for --hold seconds, closes them and exits. With --burst every client connects
first; once all have (or --timeout passed) and --settle seconds more, they are
released at once and all send together. A client still running --timeout +
--hold + 2 s after that is killed. The article's client3 exits after its first
connection whatever --max-conns says: the default --max-conns 1 is what it ran.
Prints one summary line (or --json). Exit status: 0 when the run completed,
failed connections included; 2 on bad arguments."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="client3.py",
        description="Many forked clients, each holding connections open:\n"
        "the load client of Let's Build A Web Server, part 3.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, kind, default, metavar, text in OPTIONS:
        parser.add_argument(
            flag, type=kind, default=default, metavar=metavar, help=f"{text} (default: {default})"
        )
    parser.add_argument(
        "--burst", action="store_true", help="connect everything first, then send all at once"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:  # resolve once: every client aims at this one address
        found = socket.getaddrinfo(args.host, args.port, socket.AF_INET, socket.SOCK_STREAM)
        args.address = found[0][4]
    except OSError as error:
        parser.error(f"cannot resolve --host {args.host!r}: {error}")
    return args


def reason(error):
    """The real exception, as Python prints it: class and message."""
    return f"{type(error).__name__}: {error}"[:200]


def report(fd, **message):
    """One JSON line to the parent: a single write, atomic below PIPE_BUF."""
    os.write(fd, (json.dumps(message) + "\n").encode())


def run_client(args, report_fd, go_fd):
    """One client process: connect, (wait for the release), send, hold, report."""
    request = REQUEST.format(host=args.host).encode()
    errors = collections.Counter()
    connected, sent, answered = [], [], 0
    deadline = time.monotonic() + args.timeout  # for all of this client's connects
    for _ in range(args.max_conns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            sock.connect(args.address)
        except OSError as error:
            errors[reason(error)] += 1
            sock.close()
            continue
        connected.append(sock)
        if not args.burst:
            try:
                sock.sendall(request)
                sent.append(sock)
            except OSError as error:  # connected, but reset before the request
                errors[reason(error)] += 1

    if args.burst:
        report(report_fd, phase="connected")
        os.read(go_fd, 1)  # blocks until the parent closes its end: the release
        for sock in connected:
            sock.settimeout(args.timeout)
            try:
                sock.sendall(request)
                sent.append(sock)
            except OSError as error:  # connected, but reset before the request
                errors[reason(error)] += 1

    # Hold every connection open; note which ones an HTTP answer arrived on.
    end = time.monotonic() + (args.hold if connected else 0)
    waiting = list(sent)
    while waiting and (left := end - time.monotonic()) > 0:
        for sock in select.select(waiting, [], [], left)[0]:
            waiting.remove(sock)
            try:
                answered += sock.recv(4096).startswith(b"HTTP/")
            except OSError:  # reset by the server: held, but not answered
                pass
    time.sleep(max(0.0, end - time.monotonic()))
    for sock in connected:
        sock.close()
    report(
        report_fd,
        phase="done",
        connected=len(connected),
        sent=len(sent),
        answered=answered,
        errors=dict(errors),
    )


def main(argv=None):
    args = parse_args(argv)
    report_r, report_w = os.pipe()  # clients -> parent: one JSON line per message
    go_r, go_w = os.pipe()  # --burst: the parent closes go_w to release the clients
    children, reports, all_exited = [], [], False
    errors = collections.Counter()
    try:
        for _ in range(args.max_clients):
            try:
                pid = os.fork()
            except OSError as error:  # out of processes: count, do not retry
                missing = (args.max_clients - len(children)) * args.max_conns
                errors[f"client not started: {reason(error)}"] += missing
                break
            if pid == 0:  # client
                try:
                    os.close(report_r)
                    os.close(go_w)  # or the release (EOF on go_r) never comes
                    run_client(args, report_w, go_r)
                finally:
                    os._exit(0)
            children.append(pid)
        os.close(report_w)
        os.close(go_r)
        with open(report_r, "rb", buffering=0) as pipe, open(go_w, "wb") as go:
            reports, all_exited = collect(args, pipe, go, len(children))
    finally:
        killed = reap(children, kill=not all_exited)

    total = {"connected": 0, "failed": 0, "sent": 0, "answered": 0, "killed": killed}
    for message in reports:
        for key in ("connected", "sent", "answered"):
            total[key] += message[key]
        errors.update(message["errors"])
    if silent := len(children) - len(reports):
        errors["no report: client killed after the deadline"] += silent * args.max_conns
    total["failed"] = sum(errors.values())
    print_summary(args, total, errors)
    return 0


def collect(args, pipe, go, started):
    """Read the clients' reports; with --burst, release them all at once.

    Returns (the reports, whether every client has exited)."""
    reports, buffer, ready = [], b"", 0
    released = not args.burst
    wake = time.monotonic() + args.timeout + (MARGIN if args.burst else args.hold)
    while True:
        if not released and (ready >= started or time.monotonic() >= wake):
            time.sleep(args.settle)  # let the server accept every connection
            go.close()  # the release: every client's read() returns at once
            released = True
            wake = time.monotonic() + args.timeout + args.hold
        left = wake + (MARGIN if released else 0) - time.monotonic()
        if released and left <= 0:
            return reports, False
        if not select.select([pipe], [], [], max(0.0, left))[0]:
            continue
        chunk = pipe.read(65536)
        if not chunk:  # every client has closed its end: all have exited
            return reports, True
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            message = json.loads(line)
            if message["phase"] == "connected":
                ready += 1
            else:
                reports.append(message)


def reap(children, kill):
    """Reap every client; with `kill`, SIGKILL those still running first.

    Returns how many were killed."""
    killed = 0
    for pid in children:
        if kill and os.waitpid(pid, os.WNOHANG)[0] == pid:
            continue  # it had exited: reaped just now
        if kill:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        os.waitpid(pid, 0)
    return killed


def print_summary(args, total, errors):
    if args.json:
        summary = {
            "host": args.host,
            "port": args.port,
            "clients": args.max_clients,
            "conns_per_client": args.max_conns,
            **total,
            "errors": dict(errors.most_common()),
        }
        print(json.dumps(summary))
        return
    line = (
        f"client3: {args.max_clients} clients x {args.max_conns} connections "
        f"to {args.host}:{args.port}: {total['connected']} connected, "
        f"{total['failed']} failed"
    )
    if errors:
        line += " (" + ", ".join(f"{n} x {r}" for r, n in errors.most_common()) + ")"
    print(line)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the clients were killed and reaped in main()
        print("\nclient3.py: interrupted", file=sys.stderr)
        sys.exit(130)
