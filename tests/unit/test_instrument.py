"""The instrument's pure parts (scripts/instrument): parsing ps, the probe,
/proc/net/tcp, limits and /proc/PID/stat; wait_for; the wire client against
a socket this test owns; the server list read from compose.yaml. No engine.
"""

import os
import socket
import threading
import time
import types

import pytest
from instrument import procs, servers, waiting, wire

# `ps -e -o pid=,ppid=,stat=,comm=,args=` in part3-eintr after a burst, as the
# probe prints it: docker-init, the server, zombies, a sleeping child, the
# probe itself (sh -c, ps) and the engine's runc init.
PS = """\
      1       0 Ss   docker-init     /sbin/docker-init -- sh /usr/local/bin/announce sh -c exec python "$STEP.py"
      7       1 S    python          python webserver3f.py
    119       7 Z    python          <defunct>
    120       7 Z    python          [python] <defunct>
    121       7 S    python          python webserver3f.py
    432       0 Ss   sh              sh -c  t=$(ps -e -o pid=,ppid=,stat=,comm=,args=) echo "$t"
    437     432 R    ps              ps -e -o pid=,ppid=,stat=,comm=,args=
    438       0 Rsl  runc:[2:INIT]   runc init
"""

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:22B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1199803 1
   1: 00000000:22C3 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 1199804 1
   2: 0B00007F:A5FF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1192594 1
   3: 0B00007F:22B8 0B00007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 1199900 1
"""

LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units
Max processes             400                  400                  processes
Max open files            256                  256                  files
"""

PROBE_OUT = PS + "@@pid 7\n@@tcp\n" + TCP + "@@fd\n0\n1\n2\n3\n4\n@@limits\n" + LIMITS + \
    "@@pids\n512\n@@end\n"

EMFILE_LOG = """\
Serving HTTP on port 8888 ...
Connections held open by the parent: 251
Traceback (most recent call last):
  File "/srv/lsbaws/part3/webserver3d.py", line 79, in <module>
    serve_forever()
  File "/srv/lsbaws/part3/webserver3d.py", line 59, in serve_forever
    client_connection, client_address = listen_socket.accept()
                                        ^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/socket.py", line 294, in accept
    fd, addr = self._accept()
               ^^^^^^^^^^^^^^
OSError: [Errno 24] Too many open files
Child PID: 300. Parent PID 7
"""


# ---------------------------------------------------------------- ps

def test_parse_ps_reads_pid_ppid_state_and_command():
    table = procs.parse_ps(PS)
    assert [p.pid for p in table] == [1, 7, 119, 120, 121, 432, 437, 438]
    server = table[1]
    assert (server.pid, server.ppid, server.state, server.args) == (7, 1, "S", "python webserver3f.py")
    assert table[0].args.startswith("/sbin/docker-init -- sh")  # spaces in args kept


def test_a_zombie_is_shown_as_ps_aux_does():
    table = {p.pid: p for p in procs.parse_ps(PS)}
    for pid in (119, 120):
        assert table[pid].zombie
        assert table[pid].args == "[python] <defunct>"
        assert table[pid].state_name == "zombie"
    assert not table[121].zombie and table[121].state_name == "sleeping"


def test_parse_ps_skips_what_is_not_a_row():
    text = "  PID  PPID STAT COMMAND COMMAND\n\nWarning: bad syntax\n  5 1 S python python x.py\n"
    assert procs.parse_ps(text) == [procs.Proc(5, 1, "S", "python x.py")]
    assert procs.parse_ps("") == []


def test_a_row_without_args_gets_its_command_name():
    assert procs.parse_ps("9 7 S python\n")[0].args == "[python]"


def test_the_server_is_the_python_or_gunicorn_process_under_pid_1():
    table = procs.parse_ps(PS)
    assert procs.server_of(table).pid == 7
    gunicorn = procs.parse_ps(
        "1 0 Ss docker-init /sbin/docker-init -- sh announce\n"
        "7 1 S gunicorn /opt/venv/bin/python /opt/venv/bin/gunicorn --bind 0.0.0.0:8888\n"
        "9 7 S gunicorn /opt/venv/bin/python /opt/venv/bin/gunicorn --bind 0.0.0.0:8888\n")
    assert procs.server_of(gunicorn).pid == 7
    # a twin started by docker exec has PPID 0: not the server
    assert procs.server_of(procs.parse_ps("30 0 S python python webserver3b.py\n")) is None
    # a dead server (zombie of docker-init) is not the server either
    assert procs.server_of(procs.parse_ps("7 1 Z python <defunct>\n")) is None


def test_children_zombies_and_state_counts():
    table = procs.parse_ps(PS)
    assert [p.pid for p in procs.children(table, 7)] == [119, 120, 121]
    assert [p.pid for p in procs.zombies(table, 7)] == [119, 120]
    assert procs.zombies(table, 1) == []
    assert procs.state_counts(procs.children(table, 7)) == {"zombie": 2, "sleeping": 1}


def test_excerpt_shows_init_server_zombies_first_and_never_the_probe():
    table = procs.parse_ps(PS)
    rows, more = procs.excerpt(table, limit=4)
    assert [p.pid for p in rows] == [1, 7, 119, 120]
    assert more == 1  # 121; the probe (432, 437) and runc init (438) are not counted
    rows, more = procs.excerpt(table, limit=50)
    assert [p.pid for p in rows] == [1, 7, 119, 120, 121] and more == 0


def test_probe_output_is_split_into_its_sections():
    look = procs.parse_probe(PROBE_OUT)
    assert look.server_pid == 7 and look.server.args == "python webserver3f.py"
    assert [p.pid for p in look.table] == [1, 7, 119, 120, 121]  # without the probe
    assert look.fds == 5
    assert look.nofile == "256"
    assert look.pids_max == "512"
    assert look.queue(8888) == 0
    assert look.queue(8899) == 2
    assert look.queue(9999) is None


def test_probe_without_a_server():
    look = procs.parse_probe("1 0 Ss docker-init /sbin/docker-init\n@@pid \n@@tcp\n" + TCP
                             + "@@fd\n@@limits\n@@pids\nmax\n")
    assert look.server_pid is None and look.server is None
    assert look.fds is None and look.nofile is None
    assert look.pids_max == "max"


def test_listen_queue_reads_only_listen_rows():
    assert procs.listen_queue(TCP, 8888) == 0  # the ESTABLISHED row on 8888 is not it
    assert procs.listen_queue(TCP, 8899) == 2
    assert procs.listen_queue("header only\n", 8888) is None


def test_last_count_reads_the_servers_own_tally():
    assert procs.last_count(EMFILE_LOG, "Connections held open by the parent:") == 251
    assert procs.last_count("Serving HTTP on port 8888 ...\n", "Connections held") is None


def test_fd_count_and_limits():
    assert procs.fd_count("0\n1\n2\n3\n") == 4
    assert procs.fd_count("ls: cannot access '/proc/9/fd': No such file or directory\n") == 0
    assert procs.limit_of(LIMITS, "Max open files") == ("256", "256")
    assert procs.limit_of(LIMITS, "Max processes") == ("400", "400")
    assert procs.limit_of(LIMITS, "Max stack size") is None


@pytest.mark.parametrize("log, line", [
    (EMFILE_LOG, "OSError: [Errno 24] Too many open files"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n"
     "    pid = os.fork()\nBlockingIOError: [Errno 11] Resource temporarily unavailable\n",
     "BlockingIOError: [Errno 11] Resource temporarily unavailable"),
    ("Child 9 terminated with status 0\nTraceback (most recent call last):\n"
     "  File \"webserver3e.py\", line 99, in serve_forever\n"
     "InterruptedError: [Errno 4] Interrupted system call\n",
     "InterruptedError: [Errno 4] Interrupted system call"),
    ("Serving HTTP on port 8888 ...\n", ""),
])
def test_crash_line_is_the_exception_that_ended_the_server(log, line):
    assert procs.crash_line(log) == line




def test_tcp_rows_read_ports_states_queues_and_inodes():
    rows = procs.tcp_rows(TCP)
    assert [(r.local_port, r.remote_port, r.state, r.rx_queue) for r in rows] == [
        (8888, 0, "0A", 0), (8899, 0, "0A", 2), (42495, 0, "0A", 0), (8888, 50000, "01", 0)]
    assert rows[3].inode == "1199900" and not rows[3].listening
    assert procs.tcp_rows("  sl  local_address rem_address   st\n") == []


def test_parse_stat_keeps_a_name_with_spaces_and_shows_a_zombie_as_ps_does():
    stat = "4242 (python x) S 7 4242 4242 0 -1 4194304 0 0 0 0"
    assert procs.parse_stat(4242, stat, b"python\0webserver3c.py\0") == procs.Proc(
        4242, 7, "S", "python webserver3c.py")
    zombie = procs.parse_stat(4243, "4243 (python) Z 7 4242 4242", b"")
    assert zombie.zombie and zombie.args == "[python] <defunct>"


def test_local_table_sees_this_process_and_its_parent():
    me = {p.pid: p for p in procs.local_table()}[os.getpid()]
    assert me.ppid == os.getppid() and not me.zombie


# ---------------------------------------------------------------- waiting

def test_wait_for_returns_the_first_truthy_value():
    values = iter([0, None, "", 7, 8])
    assert waiting.wait_for(lambda: next(values), 5, 0.001) == 7


def test_wait_for_raises_timed_out_with_what_and_the_last_value():
    t = time.monotonic()
    with pytest.raises(waiting.TimedOut, match=r"0.2 s waiting for the moon \(last: \[\]\)"):
        waiting.wait_for(lambda: [], 0.2, 0.05, "the moon")
    assert 0.2 <= time.monotonic() - t < 1.5
    assert waiting.poll(lambda: 0, 0.05, 0.01) == 0  # poll returns the miss


# ---------------------------------------------------------------- wire

@pytest.fixture
def peer():
    """A loopback server that does what the test says with each connection:
    `peer.behave(conn)` runs in a thread after accept()."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)

    class Peer:
        port = sock.getsockname()[1]
        behave = staticmethod(lambda conn: conn.close())
        conns: list = []

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            Peer.conns.append(conn)
            threading.Thread(target=Peer.behave, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield Peer
    sock.close()
    for c in Peer.conns:
        c.close()


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"


def _answer_then(close: bool):
    def behave(conn):
        conn.recv(65536)
        conn.sendall(ANSWER)
        if close:
            conn.close()
    return behave


def test_exchange_tells_eof_from_timeout(peer):
    peer.behave = _answer_then(close=True)
    got = wire.exchange("127.0.0.1", peer.port, wire.get(), timeout=3)
    assert got.eof and not got.timed_out and got.status == 200 and got.body == b"hello\n"
    peer.behave = _answer_then(close=False)
    got = wire.exchange("127.0.0.1", peer.port, wire.get(), timeout=0.5)
    assert got.timed_out and not got.eof and got.status == 200
    assert got.summary() == "200 OK (left open)"


def test_until_stops_at_the_marker_and_finish_reads_on_to_eof_or_timeout(peer):
    peer.behave = _answer_then(close=False)
    got = wire.exchange("127.0.0.1", peer.port, wire.get(), timeout=3, until=b"hello",
                        keep_open=True)
    assert got.matched and not got.eof and not got.timed_out and got.sock is not None
    got.finish(0.4)
    assert got.timed_out and not got.eof and got.sock is None

    peer.behave = _answer_then(close=True)
    got = wire.exchange("127.0.0.1", peer.port, wire.get(), timeout=3, until=b"hello",
                        keep_open=True)
    got.finish(3)
    assert got.eof and not got.timed_out


def test_refused_and_reset_are_kept_not_raised(peer):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    got = wire.exchange("127.0.0.1", port, wire.get(), timeout=2)
    assert got.refused and not got.ok and got.summary() == "refused"

    def reset(conn):
        conn.recv(65536)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        conn.close()
    peer.behave = reset
    got = wire.exchange("127.0.0.1", peer.port, wire.get(), timeout=2)
    assert got.reset and not got.data and got.summary() == "reset, no answer"


def test_parallel_starts_together_and_burst_connects_all_before_sending(peer):
    peer.behave = _answer_then(close=True)
    replies = wire.parallel("127.0.0.1", peer.port, 5, wire.get(), timeout=3, until=b"hello")
    assert all(r.matched and r.answered is not None for r in replies)
    seen = []

    def connected(socks):
        seen.append(len(socks))
        waiting.wait_for(lambda: len(peer.conns) >= 6 + 5, 3, 0.01, "five accepts")

    peer.conns.clear()
    peer.conns.extend([None] * 6)  # placeholders: count only the burst's accepts
    replies = wire.burst("127.0.0.1", peer.port, 5, wire.get(), timeout=3, connected=connected)
    assert seen == [5] and [r.status for r in replies] == [200] * 5
    del peer.conns[:6]


def test_parse_response_skips_1xx_decodes_chunked_and_keeps_a_head_body():
    resp = wire.parse_response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                               b"Transfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
                               + wire.chunked(b"abcdef", 4))
    assert (resp.status, resp.interim, resp.body, resp.complete) == (200, [100], b"abcdef", True)
    assert resp.header_all("x-a") == ["1", "2"]
    head = wire.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n",
                               head_request=True)
    assert head.body == b"hello\n"  # a HEAD answer's body should be empty: kept to be seen
    short = wire.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello")
    assert not short.complete
    assert wire.parse_response(b"garbage").status == 0


def test_parse_response_keeps_the_version_and_every_byte_it_was_given():
    data = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"
    resp = wire.parse_response(data)
    assert (resp.version, resp.body, resp.raw_body, resp.raw) == ("HTTP/1.0", b"ok", b"okEXTRA", data)
    assert wire.parse_response(b"garbage").raw == b"garbage"


def test_request_frames_the_body_and_asks_to_close():
    raw = wire.request("POST", "/echo", "h", [("X-A", "1"), ("X-A", "2")], b"abc")
    assert raw == (b"POST /echo HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n"
                   b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert b"Connection" not in wire.request("GET", "/", None, close=False)


# ---------------------------------------------------------------- servers

COMPOSE = """
x-server: &server
  init: true
services:
  part1: {<<: *server, image: lsbaws/part1:dev, ports: ["127.0.0.1:8001:8888"]}
  part3-fork: {profiles: [part3, all], image: x, ports: ["127.0.0.1:8303:8888"]}
  gunicorn-gthread-wsgi: {profiles: [gunicorn, part4, all], image: y}
  calibrate: {image: busybox, environment: [A=1]}
  lab: {profiles: [lab]}
  tests: {profiles: [tests, all]}
"""


def test_servers_are_every_service_but_the_tools_in_file_order(tmp_path):
    path = tmp_path / "compose.yaml"
    path.write_text(COMPOSE)
    found = servers.servers(str(path))
    assert [s.name for s in found] == ["part1", "part3-fork", "gunicorn-gthread-wsgi",
                                       "calibrate"]
    assert found[0].host_port == 8001 and found[0].profiles == () and found[0].article
    assert found[1].profiles == ("part3", "all") and found[1].article
    assert not found[2].article and not found[3].article and found[3].host_port is None
    assert dict(found[3].environment) == {"A": "1"}


def test_the_real_compose_file_has_the_article_21():
    names = [s.name for s in servers.article()]
    assert len(names) == 21 and names[0] == "part1"
    assert {n.split("-")[0] for n in names} == {"part1", "part2", "part3", "gunicorn"}
    assert len({s.host_port for s in servers.article()}) == 21


# ---------------------------------------------------------------- lost exec output

def test_again_if_lost_runs_a_reader_again_only_while_its_output_is_empty():
    from instrument.engine import again_if_lost
    answers = iter([(0, ""), (0, ""), (0, "Max open files 1024 1024")])
    assert again_if_lost(lambda: next(answers)) == (0, "Max open files 1024 1024")
    calls = []
    assert again_if_lost(lambda: calls.append(1) or (1, "")) == (1, "")
    assert len(calls) == 1, "a silent failure is not lost output unless it always prints"
    calls.clear()
    assert again_if_lost(lambda: calls.append(1) or (2, ""), prints_on_failure=True) == (2, "")
    assert len(calls) == 6
    calls.clear()
    assert again_if_lost(lambda: calls.append(1) or (0, "x")) == (0, "x") and len(calls) == 1


def test_a_probe_cut_short_is_read_again_and_never_taken_for_a_table_without_its_server():
    from instrument.engine import again_if_lost
    cut = PROBE_OUT[:len(PS) // 2]  # the engine gave the first half of the table only
    assert not procs.probe_complete(cut) and procs.probe_complete(PROBE_OUT)
    answers = iter([(0, cut), (0, PROBE_OUT)])
    assert again_if_lost(lambda: next(answers), complete=procs.probe_complete) == (0, PROBE_OUT)
    assert procs.parse_probe(PROBE_OUT).server_pid == 7


def test_once_never_runs_a_change_twice_and_reads_its_output_back_when_lost():
    from instrument.engine import EngineError, Service

    class Lossy(Service):
        def __init__(self, lose: bool, code: int = 0):
            self.name, self.lose, self.code, self.calls = "part4-evloop", lose, code, []
            self.engine = types.SimpleNamespace(relay=lambda: None)  # the exec way

        def exec(self, cmd, user=None):
            self.calls.append(cmd)
            if cmd[:2] == ["sh", "-c"]:
                return self.code, "" if self.lose else "1780000000.5\n"
            if cmd[0] == "cat":
                return 0, "1780000000.5\n"
            return 0, ""

    for lose in (False, True):
        svc = Lossy(lose)
        assert svc.once("date +%s.%N; kill -TERM 7") == "1780000000.5\n"
        scripts = [c for c in svc.calls if c[:2] == ["sh", "-c"]]
        assert len(scripts) == 1 and "kill -TERM 7" in scripts[0][2]
        assert svc.calls[-1][:2] == ["rm", "-f"], "the kept output is removed"
    with pytest.raises(EngineError, match="exit 1"):
        Lossy(False, code=1).once("kill -TERM 7")


# ---------------------------------------------------------------- ensure_up

class _ProbedService:
    """A Service of its own process (an xdist worker) whose container runs
    and whose probe (`look`, one exec) is counted."""

    def __init__(self, folder, started):
        from types import SimpleNamespace

        from instrument.engine import ReadySeen, Service

        self.svc = Service(SimpleNamespace(ready_seen=ReadySeen(folder)), "part3-eintr")
        self.svc.state = lambda: {"Status": "running", "StartedAt": started[0]}
        self.probes = 0

        def look(pid=None):
            self.probes += 1
            return procs.parse_probe(PROBE_OUT)
        self.svc.look = look


def test_a_server_one_worker_saw_ready_is_not_probed_again_until_it_restarts(tmp_path):
    started = ["2026-12-07T12:00:00.1Z"]
    first, second = _ProbedService(tmp_path, started), _ProbedService(tmp_path, started)
    assert first.svc.ensure_up().pid == 7 and first.probes == 1
    assert second.svc.ensure_up().pid == 7 and second.probes == 0   # the first one's look
    assert first.svc.ensure_up().pid == 7 and first.probes == 1
    started[0] = "2026-12-07T12:00:09.5Z"                          # its container started again
    assert second.svc.ensure_up().pid == 7 and second.probes == 1
    (tmp_path / "part3-eintr").write_text("[\"torn")               # unreadable: probe, never guess
    third = _ProbedService(tmp_path, started)
    assert third.svc.ensure_up().pid == 7 and third.probes == 1
