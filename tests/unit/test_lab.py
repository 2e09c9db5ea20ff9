"""The lab's pure parts: the experiments as data, the verdict rules, the
report's pieces. No engine: runs on the host (`python3 -m pytest
tests/unit/test_lab.py`; pyproject puts scripts/ on the path).
"""

import pytest
from instrument import servers
from lab.experiments import BY_ID, CHARTS, EXPERIMENTS, readme_table
from lab.verdict import RULES, judge

SERVICES = servers.names()

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


@pytest.mark.parametrize("obs, agrees", [
    ({"zombies": 0, "survived": True, "answered": 10}, True),
    ({"zombies": 0, "survived": True, "answered": 128}, True),
    ({"zombies": 0, "survived": True, "answered": 1}, False),
    ({"zombies": 2, "survived": True, "answered": 10}, False),
    ({"zombies": 0, "survived": False, "answered": 10, "crash": "x"}, False),
])
def test_gunicorn_27_lingers_on_each_close_so_held_clients_wait_but_no_zombie_is_left(obs, agrees):
    v = judge("gunicorn", {"service": "gunicorn-wsgi", "clients": 128, **obs})
    assert v.agrees is agrees
    if obs["answered"] < 128:
        assert f"other {128 - obs['answered']} were not answered within the hold" in v.observed
        assert "lingered up to 2 s" in v.observed


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

def test_bench_results_as_scripts_bench_writes_them():
    from lab.report import parse_bench

    rows = [{"target": "part3-wsgi-wsgi", "server": "webserver3h", "app": "wsgi", "rps": 950.2,
             "p50_ms": 40.1, "p99_ms": 90.3, "errors": 0},
            {"target": "gunicorn-wsgi", "server": "gunicorn", "app": "wsgi", "rps": 1400.0,
             "p50_ms": 30.0, "p99_ms": 60.0, "errors": 0}]
    assert parse_bench(rows) == [("part3-wsgi-wsgi (webserver3h, wsgi)", 950.2),
                                 ("gunicorn-wsgi (gunicorn, wsgi)", 1400.0)]


def test_bench_chart_keeps_a_bar_per_row_when_a_service_is_in_two_comparisons():
    """bench measures gunicorn-wsgi against 4a and against 3h: two bars, two labels."""
    pytest.importorskip("matplotlib")
    from lab.experiments import CHARTS
    from lab.report import chart_bench, parse_bench

    rows = parse_bench([
        {"comparison": "4a-bare", "target": "part4-prefork-wsgi", "rps": 6000.0},
        {"comparison": "4a-bare", "target": "gunicorn-wsgi", "rps": 2500.0},
        {"comparison": "3h-bare", "target": "part3-wsgi-wsgi", "rps": 400.0},
        {"comparison": "3h-bare", "target": "gunicorn-wsgi", "rps": 2200.0}])
    assert len({label for label, _ in rows}) == 4
    chart = next(c for c in CHARTS if c.kind == "bench")
    import matplotlib.pyplot as plt

    seen = {}
    real_barh = plt.Axes.barh

    def spy(self, y, width, *args, **kwargs):
        seen["ax"] = self
        return real_barh(self, y, width, *args, **kwargs)

    plt.Axes.barh = spy
    try:
        png = chart_bench(chart, rows)
    finally:
        plt.Axes.barh = real_barh
    assert png.startswith(b"\x89PNG")
    # four bars at four heights (a categorical axis would stack the two gunicorn-wsgi)
    assert len({round(bar.get_y(), 3) for bar in seen["ax"].patches}) == 4


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
    from instrument import engine
    from lab.__main__ import main

    monkeypatch.setattr(engine, "SOCKET_PATH", str(tmp_path / "docker.sock"))
    assert main(["run", "no-zombies"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "no engine socket" in err and "docker compose run --rm tests|lab" in err


def test_a_report_whose_chart_could_not_be_measured_shows_the_errors(tmp_path):
    from lab import report

    zombies = next(c for c in CHARTS if c.id == "zombies")
    errors = {s.label: {"error": f"EngineError: {s.service} did not come back"}
              for s in zombies.series}
    results = {"charts": {"zombies": errors}, "experiments": []}
    assert report.write(tmp_path, results, [tmp_path / "bench.json"]) == {}
    page = (tmp_path / "index.html").read_text()
    assert "could not be drawn" in page
    assert page.count("could not measure: EngineError") == len(zombies.series)
    # one measured series is drawn, the others keep their error beside it
    pytest.importorskip("matplotlib")
    errors["3g waitpid loop"] = [{"clients": 1, "zombies": 0, "survived": True}]
    assert "zombies" in report.write(tmp_path, results, [tmp_path / "bench.json"])


def test_the_report_title_names_the_parts_the_experiments_run(tmp_path):
    from lab import report

    assert report.title() == ("Let's Build A Web Server, parts 3 and 4 (part 4 beyond the "
                              "article): the lab report")
    report.write(tmp_path, {"charts": {}, "experiments": []}, [tmp_path / "bench.json"])
    page = (tmp_path / "index.html").read_text()
    assert "<h1>Let&#x27;s Build A Web Server, parts 3 and 4 (part 4 beyond" in page
