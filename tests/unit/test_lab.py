"""The lab's pure parts: parsing the process table and the probe, and the
verdict rules. No engine, no rich, no matplotlib: runs on the host with

    PYTHONPATH=scripts python3 -m pytest tests/unit/test_lab.py

and in the tests container (this file puts scripts/ on sys.path itself).
"""

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from lab import procs  # noqa: E402
from lab.experiments import BY_ID, CHARTS, EXPERIMENTS, SERVICES, readme_table  # noqa: E402
from lab.verdict import RULES, judge  # noqa: E402

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
    "@@pids\n512\n"

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


def test_children_zombies_descendants_and_state_counts():
    table = procs.parse_ps(PS)
    assert [p.pid for p in procs.children(table, 7)] == [119, 120, 121]
    assert [p.pid for p in procs.zombies(table, 7)] == [119, 120]
    assert procs.zombies(table, 1) == []
    assert [p.pid for p in procs.descendants(table, 1)] == [7, 119, 120, 121]
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


# ---------------------------------------------------------------- the data

def test_every_experiment_names_a_known_service_rule_and_load():
    from lab.runner import LOADS

    assert len(BY_ID) == len(EXPERIMENTS), "experiment ids must be unique"
    for e in EXPERIMENTS:
        assert e.service in SERVICES, e.id
        assert e.rule["name"] in RULES, e.id
        assert e.load["kind"] in LOADS, e.id
        assert all(c.startswith("C") and c[1:].isdigit() for c in e.claims), e.id
        assert e.expects.endswith("."), e.id


def test_every_run_time_behaviour_of_the_issue_has_an_experiment():
    steps = {e.step for e in EXPERIMENTS}
    assert {"3b", "3c", "3d", "3e", "3f", "3g", "3h", "gunicorn"} <= steps
    assert {"C11", "C14", "C16", "C17", "C18", "C20", "C21", "C23", "C24", "C25"} <= {
        c for e in EXPERIMENTS for c in e.claims}


def test_every_chart_series_belongs_to_an_experiment_on_the_same_service():
    for chart in CHARTS:
        for s in chart.series:
            assert s.experiment in BY_ID, (chart.id, s.label)
            assert s.service in SERVICES
    zombies = next(c for c in CHARTS if c.id == "zombies")
    assert {s.service for s in zombies.series} == {
        "part3-fork-leaky", "part3-sigchld", "part3-eintr", "part3-waitpid",
        "part3-wsgi-wsgi", "gunicorn-wsgi"}
    assert zombies.points[0] == 1 and zombies.points[-1] == 256


def test_readme_table_lists_every_experiment_once():
    table = readme_table()
    lines = table.splitlines()
    assert lines[0].startswith("| experiment |")
    assert len(lines) == 2 + len(EXPERIMENTS)
    for e in EXPERIMENTS:
        assert sum(f"| `{e.id}` |" in line for line in lines) == 1


# ---------------------------------------------------------------- verdicts

def test_zombies_under_load_agrees_with_zombies_and_says_so_with_numbers():
    v = judge("zombies-under-load", {"service": "part3-eintr", "clients": 128, "zombies": 89,
                                     "survived": True, "answered": 128})
    assert v.agrees
    assert v.sentence.startswith(
        "part3-eintr after 128 concurrent clients: 89 zombie children (<defunct>); "
        "the server survived. The article expects zombies to come back because SIGCHLD "
        "signals are not queued")


@pytest.mark.parametrize("obs", [
    {"zombies": 0, "survived": True},
    {"zombies": 40, "survived": False, "crash": "OSError: [Errno 24] Too many open files"},
])
def test_zombies_under_load_disagrees_without_zombies_or_when_the_server_died(obs):
    v = judge("zombies-under-load", {"service": "part3-eintr", "clients": 128, **obs})
    assert not v.agrees
    assert v.label == "does NOT agree with the article"


def test_one_zombie_after_one_request_names_the_child():
    v = judge("zombie-one-request", {
        "service": "part3-fork-leaky", "clients": 1, "zombies": 1, "survived": True,
        "sample": {"pid": 50, "ppid": 7, "state": "Z", "args": "[python] <defunct>"}})
    assert v.agrees
    assert "its child 50 is a zombie (state Z, [python] <defunct>, PPID 7" in v.observed


@pytest.mark.parametrize("obs, agrees", [
    ({"zombies": 0, "survived": True, "answered": 128}, True),
    ({"zombies": 3, "survived": True, "answered": 128}, False),
    ({"zombies": 0, "survived": True, "answered": 120}, False),
    ({"zombies": 0, "survived": False, "answered": 128, "crash": "x"}, False),
])
def test_no_zombies_needs_no_zombie_every_answer_and_a_live_server(obs, agrees):
    v = judge("no-zombies", {"service": "part3-waitpid", "clients": 128, **obs})
    assert v.agrees is agrees
    assert f"{obs['answered']} answered, {obs['zombies']} zombie" in v.observed


def test_zombies_left_by_a_reaper_are_explained_when_the_next_request_reaps_them():
    v = judge("no-zombies", {"service": "part3-waitpid", "clients": 16, "zombies": 2,
                             "survived": True, "answered": 16, "reaped_by_next": 2})
    assert not v.agrees  # zombies were left: the article says none
    assert "One more request reaped 2 of them" in v.observed
    assert "before accept(2) blocks" in v.observed


def test_dies_with_needs_the_right_error():
    base = {"service": "part3-fork-leaky", "clients": 300, "exited": True, "exit_code": 1,
            "seconds": 4.2, "peak": 255, "peak_what": "open descriptors", "limit": "256"}
    v = judge("emfile", {**base, "crash": "OSError: [Errno 24] Too many open files"})
    assert v.agrees
    assert v.observed == ("part3-fork-leaky under 300 clients died after 4.2 s with exit code 1: "
                          "OSError: [Errno 24] Too many open files (the lab saw up to 255 open "
                          "descriptors; limit: 256 open descriptors).")
    v = judge("emfile", {**base, "held": 251, "crash": "OSError: [Errno 24] Too many open files"})
    assert v.observed.endswith("(it held 251 connections open; limit: 256 open descriptors).")
    assert not judge("emfile", {**base, "crash": "BlockingIOError: [Errno 11] Resource "
                                                "temporarily unavailable"}).agrees
    assert judge("eagain", {**base, "crash": "BlockingIOError: [Errno 11] Resource "
                                             "temporarily unavailable"}).agrees
    alive = judge("emfile", {**base, "exited": False, "exit_code": None, "crash": ""})
    assert not alive.agrees and "was still running" in alive.observed


def test_hanging_curl():
    obs = {"service": "part3-fork-leaky", "curl_out": "Hello, World!\n", "curl_rc": 28,
           "seconds": 3.0, "fds": 5}
    assert judge("hanging-curl", obs).agrees
    assert not judge("hanging-curl", {**obs, "curl_rc": 0}).agrees  # it ended: a FIN came
    assert not judge("hanging-curl", {**obs, "curl_out": ""}).agrees


def test_serialised_needs_one_sleep_between_answers_and_quick_connects():
    obs = {"service": "part3-iterative-sleep", "clients": 3, "sleep": 2.0,
           "answers": [4.02, 0.01, 2.01], "connects": [0.001, 0.002, 0.001], "backlog": 2}
    v = judge("serialisation", obs)
    assert v.agrees, v.observed
    assert "after 0.01 s, 2.01 s, 4.02 s" in v.observed
    assert "up to 2 connections waited in the kernel's listen backlog" in v.observed
    assert not judge("serialisation", {**obs, "answers": [0.01, 0.02, 0.03]}).agrees
    assert not judge("serialisation", {**obs, "answers": [0.01, 2.0, None]}).agrees
    assert not judge("serialisation", {**obs, "connects": [0.001, 1.9, 3.9]}).agrees
    assert judge("serialisation", {**obs, "backlog": None}).agrees  # not read: still agrees


def test_concurrent_needs_quick_answers_and_one_child_each():
    obs = {"service": "part3-fork", "clients": 20, "sleep": 60.0, "answers": [0.05] * 20,
           "children_of_server": 20, "server_pid": 7}
    v = judge("concurrency", obs)
    assert v.agrees
    assert v.observed == ("part3-fork answered 20 of 20 parallel clients, the slowest after "
                          "0.05 s, though each child sleeps 60 s after its answer; 20 children "
                          "with the server's PID (7) as PPID served them.")
    assert not judge("concurrency", {**obs, "answers": [0.05] * 19 + [60.1]}).agrees
    assert not judge("concurrency", {**obs, "children_of_server": 1}).agrees


def test_eintr_needs_the_crash_and_the_modern_retry():
    obs = {"service": "part3-sigchld",
           "retry": {"requests": 4, "answered": 4, "reaped": 4, "alive": True,
                     "interrupted": False},
           "crash": {"exited": True, "seconds": 3.1, "exit_code": 1,
                     "reaped": "Child 234 terminated with status 0",
                     "crash": "InterruptedError: [Errno 4] Interrupted system call"}}
    v = judge("eintr", obs)
    assert v.agrees, v.observed
    assert "InterruptedError: [Errno 4] Interrupted system call" in v.observed
    assert "(the handler reaped the child: 'Child 234 terminated with status 0')" in v.observed
    assert not judge("eintr", {**obs, "retry": {**obs["retry"], "alive": False}}).agrees
    assert not judge("eintr", {**obs, "crash": {**obs["crash"], "exited": False}}).agrees


def test_an_observation_that_could_not_be_made_never_agrees():
    v = judge("no-zombies", {"service": "part3-waitpid", "error": "client3 exited 2"})
    assert not v.agrees and "could not measure: client3 exited 2" in v.observed
    v = judge("no-zombies", {"service": "part3-waitpid"})  # keys missing
    assert not v.agrees


# ---------------------------------------------------------------- the benchmark file

@pytest.mark.parametrize("data", [
    {"results": [{"service": "part3-wsgi-flask", "rps": 812.5},
                 {"service": "gunicorn-flask", "requests_per_sec": 1500}]},
    [{"server": "part3-wsgi-flask", "rps": 812.5}, {"name": "gunicorn-flask", "rps": 1500}],
    {"part3-wsgi-flask": 812.5, "gunicorn-flask": {"rps": 1500}},
])
def test_bench_results_are_read_in_the_plausible_shapes(data):
    from lab.report import parse_bench

    assert parse_bench(data) == [("part3-wsgi-flask", 812.5), ("gunicorn-flask", 1500.0)]


def test_bench_results_as_scripts_bench_writes_them():
    from lab.report import parse_bench

    rows = [{"target": "part3-wsgi-wsgi", "server": "webserver3h", "app": "wsgi", "rps": 950.2,
             "p50_ms": 40.1, "p99_ms": 90.3, "errors": 0},
            {"target": "gunicorn-wsgi", "server": "gunicorn", "app": "wsgi", "rps": 1400.0,
             "p50_ms": 30.0, "p99_ms": 60.0, "errors": 0}]
    assert parse_bench(rows) == [("part3-wsgi-wsgi (webserver3h, wsgi)", 950.2),
                                 ("gunicorn-wsgi (gunicorn, wsgi)", 1400.0)]


def test_bench_missing_says_how_to_run_it(tmp_path):
    from lab.report import BENCH_HOWTO, load_bench

    assert load_bench(tmp_path / "bench.json") == ([], "", BENCH_HOWTO)
    (tmp_path / "bench.json").write_text('{"note": "nothing"}')
    rows, source, note = load_bench(tmp_path / "bench.json")
    assert rows == [] and "no results" in note


# ---------------------------------------------------------------- bad input

def test_unknown_experiment_or_service_lists_the_valid_ones(capsys):
    from lab.__main__ import main

    assert main(["run", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'" in err and "zombies-under-load" in err
    assert main(["watch", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown service 'nope'" in err and "part3-eintr" in err
    assert main(["report", "--only", "no-zombies,nope"]) == 2


def test_missing_engine_socket_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    from lab import engine
    from lab.__main__ import main

    monkeypatch.setattr(engine, "SOCKET_PATH", str(tmp_path / "docker.sock"))
    assert main(["run", "no-zombies"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "no engine socket" in err and "docker compose run --rm lab" in err
