"""Part 3 of the article: claims C10-C24, against the compose services.

The steps keep the article's values (a 60 s sleep, backlog 5, ...). Where a
test needs a short sleep it starts a *twin*: the same file, in the same
container, on port 8899, with other settings in its environment; the twin is
killed afterwards. Tests that crash a server or fill it with zombies restart
it at the end, so the suite passes in any order and twice in a row. (One
request to the leaky server leaves what the article shows after one curl, a
held connection and a zombie; C16, C18 and C19 leave that much and do not
depend on a clean table. C17 and C20 end with a restart.) Nothing
here connects to a server to see whether it is up (the `up` fixture reads
/proc/net/tcp): a probe would leave a descriptor and a zombie on 3d and
kill 3e.

An answer that ends with the connection (EOF) and one that stays open
(timeout) are told apart everywhere (wire.Reply.eof / .timed_out): C11, C14
and C16 are about exactly that difference.
"""

import json
import time

import pytest
from instrument import client3, clients, wire
from instrument.engine import PORT, TWIN_PORT
from instrument.twin import Twin
from instrument.waiting import wait_for

HELLO = b"Hello, World!"


def get(host):
    return wire.get("/hello", host, close=False)  # the article's servers ignore it anyway


# ---------------------------------------------------------------- C10-C13

def test_c10_iterative_server_serves_one_client_at_a_time(up):
    """A client that connects and says nothing holds webserver3a in recv():
    a second client, connected and asking, gets nothing until the first one
    is served. A concurrent server would answer the second at once."""
    svc = up("part3-iterative")
    first, second = clients.hold_silent("part3-iterative", PORT, n=2, timeout=10)
    try:
        # the server has taken the first connection and waits for its request
        wait_for(lambda: svc.listen_queue() == 1, 5, 0.05,
                 "the second client to wait in the backlog")
        early = wire.exchange("part3-iterative", data=get("part3-iterative"), timeout=1.5,
                              sock=second, keep_open=True)
        assert early.timed_out and not early.data, \
            f"the second client was answered while the first was being served: {early.summary()}"
        first_reply = wire.exchange("part3-iterative", data=get("part3-iterative"), timeout=5,
                                    sock=first)
        second_reply = wire.exchange("part3-iterative", timeout=5, sock=second)
        assert HELLO in first_reply.data and first_reply.eof, first_reply.summary()
        assert HELLO in second_reply.data and second_reply.eof, \
            f"the second client was not served after the first: {second_reply.summary()}"
    finally:
        first.close()
        second.close()


SLEEP_3B = 3.0
SLEEP_3C = 60.0  # part3-fork: the article's sleep in each child


@pytest.fixture(scope="module")
def iterative_sleep_run(up):
    """Two clients against a webserver3b twin that sleeps SLEEP_3B s after
    each response (part3-iterative-sleep itself keeps the article's 60 s)."""
    svc = up("part3-iterative-sleep")
    host = "part3-iterative-sleep"
    run = {}
    with Twin(svc, "webserver3b.py", SLEEP=SLEEP_3B):
        # before the first request: the server's sleep cannot start earlier
        run["t_asked"] = time.monotonic()
        first = wire.exchange(host, TWIN_PORT, get(host), timeout=10, until=HELLO,
                              keep_open=True)
        run["t_first"] = time.monotonic()
        assert first.matched, f"the first client got no answer: {first.summary()}"
        # the server is asleep now; a second client and two more connect
        t0 = time.monotonic()
        second = wire.connect(host, TWIN_PORT, timeout=10)
        run["connect_second"] = time.monotonic() - t0
        run["t_connected"] = time.monotonic()
        extras = clients.hold_silent(host, TWIN_PORT, n=2, timeout=10)
        run["connect_all"] = time.monotonic() - t0
        second.sendall(get(host))
        run["queued_during_sleep"] = svc.listen_queue(TWIN_PORT)
        run["t_queue_read"] = time.monotonic()
        answer = wire.exchange(host, TWIN_PORT, timeout=SLEEP_3B + 10, until=HELLO, sock=second)
        run["t_second"] = time.monotonic()
        run["second_data"] = answer.data
        # 3b closes the first connection when its sleep is over: an EOF, not a timeout
        run["first_end"] = first.finish(SLEEP_3B + 5)
        for s in (second, *extras):
            s.close()
    return run


def test_c11_second_client_waits_for_the_first_ones_sleep(iterative_sleep_run):
    run = iterative_sleep_run
    assert HELLO in run["second_data"], "the second client got no answer"
    waited = run["t_second"] - run["t_first"]
    since_asked = run["t_second"] - run["t_asked"]
    print(f"second answer {waited:.2f} s after the first, {since_asked:.2f} s after the "
          f"first request (SLEEP={SLEEP_3B})")
    # Measured from the first request, not from the first answer: this client
    # may notice that answer late (a loaded machine: 2.81 s in one CI run),
    # but the server cannot have answered it, slept and answered the second
    # in less than its sleep.
    assert since_asked >= SLEEP_3B, (
        f"the second client was answered {since_asked:.2f} s after the first request: "
        f"less than the server's {SLEEP_3B} s sleep")
    assert waited < SLEEP_3B + 5, f"the second answer took {waited:.2f} s: not the sleep"
    # the first connection ended when the sleep was over (3b closes after it)
    first = run["first_end"]
    assert first.eof and not first.timed_out, \
        f"the first connection did not end after the sleep: {first.summary()}"


def test_c12_second_connect_succeeds_at_once_held_in_the_backlog(iterative_sleep_run):
    run = iterative_sleep_run
    print(f"connect() took {run['connect_second'] * 1000:.1f} ms; "
          f"{run['queued_during_sleep']} connection(s) in the accept queue during the sleep")
    assert run["connect_second"] < 0.5, f"connect() took {run['connect_second']:.2f} s"
    assert run["connect_all"] < 0.5, f"three connects took {run['connect_all']:.2f} s"
    # it connected while the server slept (before the first's sleep was over) ...
    assert run["t_queue_read"] - run["t_first"] < SLEEP_3B
    # ... and the kernel, not the server, held it: three connections were
    # waiting in the listen backlog, none accepted yet
    assert run["queued_during_sleep"] == 3


def test_c13_client_gets_an_ephemeral_port_the_server_listens_on_8888(up):
    svc = up("part3-iterative")
    low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    socks = clients.hold_silent("part3-iterative", PORT, n=2, timeout=10)
    try:
        ports = [s.getsockname()[1] for s in socks]
        for s, port in zip(socks, ports, strict=True):
            assert low <= port <= high, f"local port {port} not in the ephemeral range {low}-{high}"
            assert s.getpeername()[1] == 8888
        assert ports[0] != ports[1]
        # the server's side: a connection from our ephemeral port to its 8888
        rows = svc.tcp()
        for port in ports:
            assert any(r.local_port == 8888 and r.remote_port == port and r.state == "01"
                       for r in rows), f"no ESTABLISHED 8888 <- {port} in the server's table"
        assert any(r.local_port == 8888 and r.listening for r in rows)
        for s in socks:
            s.sendall(get("part3-iterative"))
        for s in socks:
            assert HELLO in wire.exchange("part3-iterative", timeout=5, sock=s).data
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------- C14-C16

@pytest.fixture(scope="module")
def fork_run(up):
    """20 clients at once against part3-fork (children sleep 60 s after the
    response), each read on for a second after its answer; the server's side
    of each connection stays with its sleeping child while the tests look,
    then the service is restarted to drop the children."""
    svc = up("part3-fork")
    replies = wire.parallel("part3-fork", PORT, 20, get("part3-fork"), timeout=10,
                            until=HELLO, keep_open=True)
    # C14's second look, taken here, right after the answers (whatever runs
    # between this and C14): read on for a second on every connection. The
    # server's side stays open for C15, held by the sleeping children.
    wire.finish_all([r for r in replies if r.matched], 1.0)
    try:
        yield svc, replies
    finally:
        for r in replies:
            r.close()
        svc.restart()


def test_c14_fork_server_answers_20_clients_at_once(fork_run):
    _, replies = fork_run
    unanswered = [r.summary() for r in replies if not r.matched]
    assert not unanswered, unanswered
    slowest = max(r.answered for r in replies)
    print(f"20 clients answered, slowest after {slowest:.2f} s (SLEEP={SLEEP_3C})")
    # All 20 answered within the timeout (10 s), far less than one child's
    # sleep. No tighter bar on time: one of 2 s measured the machine, not the
    # server (20 connects meet a listen backlog of 5; on a loaded machine the
    # kernel sends a SYN the parent had no room for again 1 s, then 3 s later:
    # 2.13 s in one CI run). The proof that nobody waited for anyone's sleep
    # is the next one: after the last answer every connection stayed open for
    # another second (read by the fixture), so no child's sleep had ended.
    ended = [f"{r.summary()} (eof {r.eof}, reset {r.reset}, error {r.error}, after "
             f"{r.elapsed:.1f} s)" for r in replies if not (r.timed_out and not r.eof)]
    assert not ended, f"{len(ended)} of 20 did not stay open: {ended}"


def test_c15_each_connection_is_served_by_a_child_of_the_server(fork_run):
    svc, replies = fork_run
    server = svc.server_pid()
    procs = {p.pid: p for p in svc.processes()}
    owners = svc.socket_owners([r.local_port for r in replies])
    serving = set()
    for port, pids in owners.items():
        assert len(pids) == 1, f"connection from port {port} held by {pids}, expected one child"
        child = procs[pids[0]]
        assert child.ppid == server, f"{child} serves port {port}; its PPID is not {server}"
        assert child.pid != server
        assert child.state.startswith("S"), f"{child} should be sleeping"
        serving.add(child.pid)
    assert len(serving) == 20, f"20 connections served by {len(serving)} distinct children"


def test_c16_leaky_server_sends_the_body_but_no_eof(up, curl):
    svc = up("part3-fork-leaky")
    server = svc.server_pid()
    result = curl("http://part3-fork-leaky:8888/hello", timeout=3)
    assert result.stdout.strip() == "Hello, World!", result
    assert result.returncode == 28, (
        f"curl ended (exit {result.returncode}) instead of hanging: the server sent a FIN")
    # the same with a raw socket: the body, then 3 s without EOF; the child
    # is gone, the parent alone holds the connection, which stays ESTABLISHED
    # on the server's side (no FIN)
    r = wire.exchange("part3-fork-leaky", data=get("part3-fork-leaky"), until=HELLO,
                      keep_open=True)
    try:
        assert r.matched, r.summary()
        owners = wait_for(lambda: (o := svc.socket_owners([r.local_port]))[r.local_port]
                          == [server] and o, 5, 0.2, "the parent to be the only holder")
        assert owners[r.local_port] == [server]
        state = [t.state for t in svc.tcp()
                 if t.local_port == PORT and t.remote_port == r.local_port]
        assert state == ["01"], f"server side of the connection is {state}, not ESTABLISHED"
    finally:
        r.finish(3)
    assert r.timed_out and not r.eof, f"the connection ended: {r.summary()}"


def test_c16_fork_server_that_closes_its_copy_sends_eof(up, curl):
    """part3-fork's children sleep 60 s before closing; a twin of the same
    file with SLEEP=0 shows the EOF at once. The real service shows it
    structurally: only the child holds the connection (the parent closed its
    copy), so the FIN leaves when the child closes (checked in C15)."""
    svc = up("part3-fork")
    with Twin(svc, "webserver3c.py", SLEEP=0):
        result = curl(f"http://part3-fork:{TWIN_PORT}/hello", timeout=3)
        assert result.returncode == 0, f"curl did not end: {result}"
        assert result.stdout.strip() == "Hello, World!"
        r = wire.exchange("part3-fork", TWIN_PORT, get("part3-fork"), timeout=3)
        assert HELLO in r.data and r.eof and not r.timed_out, r.summary()
        assert r.elapsed < 3


# ---------------------------------------------------------------- C17-C20

def _flood_until_dead(svc, clients, deadline):
    """client3 --max-clients N, holding its connections, until the server dies."""
    # --timeout: a client whose SYN the full backlog (5) dropped keeps retrying
    running = client3.start("--host", svc.name, "--port", str(PORT), "--max-clients",
                            str(clients), "--max-conns", "1", "--hold", str(deadline + 10),
                            "--timeout", str(deadline))
    try:
        t0 = time.monotonic()
        state = svc.wait_exited(deadline)
        took = time.monotonic() - t0
    finally:
        out = client3.stop(running)
    return state, took, out


def test_c17_leaky_server_dies_of_emfile_under_300_clients(up, record_property):
    svc = up("part3-fork-leaky")
    try:
        server = svc.server_pid()
        assert svc.limit(server, "Max open files") == ("256", "256")
        state, took, _ = _flood_until_dead(svc, 300, 60)
        logs = svc.logs_since_start()
        record_property("c17_seconds_to_die", round(took, 1))
        print(f"part3-fork-leaky died after {took:.1f} s, exit code {state['ExitCode']}")
        assert state["ExitCode"] == 1, logs[-2000:]
        assert "OSError: [Errno 24] Too many open files" in logs, logs[-2000:]
        assert "Resource temporarily unavailable" not in logs
        assert "accept" in logs.split("Traceback")[-1], "EMFILE did not come from accept()"
    finally:
        svc.restart()


def _new_zombie(svc):
    """One request to the leaky server; return (server pid, the zombie child)."""
    server = svc.server_pid()
    before = {p.pid for p in svc.zombies(server)}
    r = wire.exchange(svc.name, data=get(svc.name), timeout=5, until=HELLO)
    assert r.matched, r.summary()
    new = wait_for(lambda: [p for p in svc.zombies(server) if p.pid not in before],
                   10, 0.2, "a new zombie child")
    return server, new[0]


def test_c18_after_one_request_the_child_is_a_zombie(up):
    svc = up("part3-fork-leaky")
    server, zombie = _new_zombie(svc)
    print(f"ps: {zombie.pid} {zombie.ppid} {zombie.state} {zombie.args}")
    assert zombie.ppid == server
    assert zombie.state.startswith("Z")
    assert "<defunct>" in zombie.args


def test_c19_a_zombie_survives_kill_9(up):
    svc = up("part3-fork-leaky")
    server, zombie = _new_zombie(svc)
    uid = str(svc.uid(server))
    code, out = svc.exec(["kill", "-9", str(zombie.pid)], user=uid)
    assert code == 0, f"kill -9 {zombie.pid} failed: {out}"
    # a live process would be gone at once; the zombie stays, for as long as we look
    looks = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline or looks < 3:
        still = [p for p in svc.processes() if p.pid == zombie.pid]
        assert still and still[0].zombie and still[0].ppid == server, \
            f"the zombie {zombie.pid} is gone after kill -9: {still}"
        looks += 1


def test_c20_leaky_server_dies_when_fork_hits_the_process_limit(up, record_property):
    svc = up("part3-fork-leaky-nproc")
    try:
        server = svc.server_pid()
        limit = svc.pids_max()
        assert limit != "max", ("the engine discarded pids_limit: pids.max is 'max' inside "
                                "part3-fork-leaky-nproc, so the 400-process cap does not hold")
        assert limit == "400", f"pids.max is {limit}, compose.yaml asks for 400"
        uid = svc.uid(server)
        assert uid != 0, "the server runs as root: RLIMIT_NPROC never applies to root"
        assert uid == 4000, f"the server runs as uid {uid}, not its own uid 4000"
        assert svc.limit(server, "Max processes") == ("400", "400")
        assert svc.limit(server, "Max open files") == ("500", "500")
        state, took, _ = _flood_until_dead(svc, 500, 90)
        logs = svc.logs_since_start()
        record_property("c20_seconds_to_die", round(took, 1))
        print(f"part3-fork-leaky-nproc died after {took:.1f} s, exit code {state['ExitCode']}")
        assert state["ExitCode"] == 1, logs[-2000:]
        assert "[Errno 11] Resource temporarily unavailable" in logs, logs[-2000:]
        assert "Too many open files" not in logs
        assert "fork" in logs.split("Traceback")[-1], "EAGAIN did not come from fork()"
    finally:
        svc.restart()


# ---------------------------------------------------------------- C21-C24

def test_c21_sigchld_interrupts_accept2_and_the_server_dies(engine, curl):
    """webserver3e calls the C library's accept(2) (ctypes), as the article's
    Python 2 did: the SIGCHLD handler reaps the child, then accept(2) returns
    the kernel's EINTR, uncaught."""
    svc = engine.service("part3-sigchld")
    svc.restart()
    try:
        result = curl("http://part3-sigchld:8888/hello", timeout=15)
        assert result.stdout.strip() == "Hello, World!", result
        state = svc.wait_exited(20)
        logs = svc.logs_since_start()
        assert state["ExitCode"] == 1, logs[-2000:]
        assert "InterruptedError: [Errno 4] Interrupted system call" in logs, logs[-2000:]
        # the handler reaped the child (its line is on stdout, the traceback on
        # stderr: the engine does not keep their order), and the traceback is accept's
        assert "terminated with status" in logs, f"the handler reaped nothing:\n{logs[-2000:]}"
        assert "accept" in logs.partition("Traceback")[2]
    finally:
        svc.restart()


def test_c21_python_socket_accept_retries_after_the_signal_pep475(engine, curl):
    """The same file with ACCEPT=python uses socket.accept(), which Python
    3.5+ restarts after the handler returns (PEP 475): it survives."""
    svc = engine.service("part3-sigchld")
    svc.restart()  # fresh: nothing sent to the service itself
    with Twin(svc, "webserver3e.py", ACCEPT="python", SLEEP="0.3") as t:
        for i in range(4):
            result = curl(f"http://part3-sigchld:{TWIN_PORT}/hello", timeout=10)
            assert result.returncode == 0 and result.stdout.strip() == "Hello, World!", (i, result)
            # the child's exit sent SIGCHLD while the parent sat in accept()
            wait_for(lambda n=i + 1: t.log().count("terminated with status") >= n, 10, 0.1,
                     f"the handler to reap child {i + 1}")
            assert t.alive(), f"the twin died after request {i + 1}:\n{t.log()[-2000:]}"
        log = t.log()
        assert "Interrupted system call" not in log
        assert "Traceback" not in log


def test_c22_one_request_at_a_time_leaves_no_zombie_and_no_crash(up, curl):
    svc = up("part3-eintr")
    if svc.zombies():
        svc.restart()  # zombies left by an earlier burst (C23, the lab)
    server = svc.server_pid()
    for i in range(10):
        result = curl("http://part3-eintr:8888/hello", timeout=10)
        assert result.returncode == 0 and result.stdout.strip() == "Hello, World!", (i, result)
    wait_for(lambda: svc.children(server) == [], 10, 0.2,
             "no child left of part3-eintr (zombie or not)")
    assert svc.running()
    assert svc.server_pid() == server, "the server was replaced: it crashed"


REAPED = "terminated with status"  # what grim_reaper writes for each child it waited for
CLIENTS = 128


def _burst(svc, clients=CLIENTS):
    """client3's burst (connect all, then release every request at once);
    wait until all its children have exited. Every child of the burst is
    accounted for: reaped (the handler's log line) or left a zombie.
    Zombies that were there before the burst are not counted.
    Returns (server pid, client3's report, children reaped, the burst's zombies)."""
    server = svc.server_pid()
    zombies_before = {p.pid for p in svc.zombies(server)}
    reaped_before = svc.logs_since_start().count(REAPED)
    report = client3.run_json("--host", svc.name, "--port", str(PORT), "--max-clients",
                              str(clients), "--max-conns", "1", "--hold", "3", "--burst",
                              "--settle", "2", timeout=120)
    # every client connected before the release and sent its request with
    # the others (how many answers arrived within --hold depends on the load)
    assert report["connected"] == clients and report["sent"] == clients, report
    assert report["failed"] == 0, report

    def settled():
        kids = svc.children(server)
        new_zombies = [p for p in kids if p.zombie and p.pid not in zombies_before]
        reaped = svc.logs_since_start().count(REAPED) - reaped_before
        done = all(p.zombie for p in kids) and reaped + len(new_zombies) == clients
        return done and (reaped, new_zombies)

    reaped, zombies = wait_for(settled, 30, 0.5,
                               f"every child of the burst on {svc.name} to be reaped or a zombie")
    return server, report, reaped, zombies


def test_c23_a_burst_of_128_clients_leaves_zombies_on_webserver3f(up, record_property):
    """One wait() per handler call, and SIGCHLDs that arrive together are one
    signal: a burst of 128 children exiting together leaves many zombies, not
    one or two (seen: 50-119; asked: at least an eighth of the clients)."""
    svc = up("part3-eintr")
    try:
        server, report, reaped, zombies = _burst(svc)
        record_property("c23_zombies", len(zombies))
        print(f"C23: {CLIENTS} clients at once on part3-eintr: {reaped} children reaped, "
              f"{len(zombies)} left as zombies (client3: {json.dumps(report)})")
        assert len(zombies) >= CLIENTS // 8, (
            f"only {len(zombies)} of {CLIENTS} children left as zombies: SIGCHLDs were not lost")
        assert all(p.ppid == server for p in zombies)
        assert svc.running() and svc.server_pid() == server, "webserver3f should survive the burst"
    finally:
        svc.restart()  # the zombies would stay forever


def test_c24_waitpid_loop_leaves_no_zombie_after_the_burst(up, record_property):
    svc = up("part3-waitpid")
    server, _, reaped, zombies = _burst(svc)
    wait_for(lambda: not svc.zombies(server), 10, 0.2,
             "no zombie child of part3-waitpid after the burst")
    record_property("c24_zombies", 0)
    print(f"C24: {CLIENTS} clients at once on part3-waitpid: {reaped} children reaped, no zombie")
    assert svc.running() and svc.server_pid() == server
