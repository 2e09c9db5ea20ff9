"""How the suite runs in parallel: pytest-xdist with `--dist loadgroup`.

`docker compose run --rm tests` runs the tests image's command, `pytest
tests -n 5 --dist loadgroup --no-loadscope-reorder`: five workers in the one
tests container. Most of the suite waits (servers meant to hang, timeouts a
test must sit out, the grader's copies), so five workers on two cores finish
in about a third of the serial time. docs/testing.md tells the whole story.

Tests that share a server and would disturb each other (a restart, a crash,
a flood that exhausts its descriptors or processes, a twin on port 8899 of
the same container, a load, a count of its children) must not run at the
same time. The tables below (the one place to change; no test file names a
group) say how:

1. MODULE_GROUPS: its file (the lab's end-to-end run restarts 3d and 3f);
   a file mapped to None touches no compose service: the grader's tests,
   whose copies are each run's own containers (instrument.copies);
2. SERVICE_GROUPS: the compose services it touches (a parameter that is a
   service name, else the names in its code, in the code of the helpers
   and fixtures it uses: string literals, module constants, f-strings put
   together from its parameters) -> an xdist group, run on one worker;
3. LOCKED: the WSGI servers, asked by hundreds of tests, take a lock per
   service at run time instead (tests/servicelocks.py): shared for the
   READERS, which only ask, exclusive for any other test;
4. TWIN_NAMES: a test that starts a twin (port 8899 in the service's
   container) on a service that is otherwise shared is grouped with the
   other twins of that service;
5. tests that share a module-scoped fixture of their module stay together
   (not the UP_ONLY_FIXTURES, which only start services), the unit tests'
   too: a fixture made once (a local server, a collection of the suite)
   rather than once on every worker.

Groups that meet in one test are merged. A test with no group runs anywhere
(most unit tests, part1, gunicorn-only tests).

The groups are ordered longest first (SECONDS: estimates from a measured
run), so the grader's calibration and the lab start at once and the short
tests fill the other workers around them; within a group the order stays
the collection's (or pytest-randomly's, with `-p randomly`).

`record(table, key, text, header)` keeps a row of a comparison table (ours
against gunicorn); the tables are printed at the end of the run and written
to reports/TABLE.md. Under xdist each worker sends its rows to the
controller (workeroutput), which prints them in the collection's order.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path

import pytest

# ----------------------------------------------------------------- the tables

# a test file (glob, from the repository root) -> its group, whatever it
# touches; None: it touches no compose service (it runs anywhere)
MODULE_GROUPS = {
    # the grader runs copies of the images, never the services; each run's
    # copies carry an owner of their own (instrument.copies), so two grade
    # runs at once leave each other alone
    "tests/stack/test_grade*.py": None,
    "tests/stack/test_lab_e2e.py": "part3-zombies",   # 3d and 3f, restarted after
}

# a compose service (glob) -> the group of every test that touches it. A
# service not here (part1, gunicorn-flask, ...) is shared: nothing restarts
# or holds it, no test counts its children.
SERVICE_GROUPS = {
    "part3-iterative": "part3-iterative",             # C10: the backlog holds exactly one
    "part3-iterative-sleep": "part3-iterative-sleep",  # a request puts it to sleep 60 s
    "part3-fork": "part3-fork",                        # C14-C16: 20 children asleep, a twin
    "part3-fork-leaky": "part3-zombies",               # EMFILE (C17), zombies counted
    "part3-eintr": "part3-zombies",                    # a burst's zombies (C23, the lab)
    "part3-fork-leaky-nproc": "part3-nproc",           # EAGAIN from fork (C20)
    "part3-sigchld": "part3-sigchld",                  # one request kills it (C21)
    "part3-waitpid": "part3-waitpid",                  # a burst (C24)
}

# the WSGI servers, asked by hundreds of tests: a lock per service at run
# time instead of a group (tests/servicelocks.py). The iterative webserver2
# is held by a drip-fed head for 10 s, children and descriptors are counted,
# twins share port 8899, workers are killed (P2) and held (P3); gunicorn's
# two sync workers: the drip-fed head holds one for 14 s, P3 holds both.
LOCKED = ["part2-*", "part3-wsgi-*", "part4-*", "gunicorn-wsgi"]

# tests that only ask a locked server (requests and answers: nothing held,
# restarted, killed or counted, no twin): a shared lock, side by side. Any
# other test on a locked server takes it alone.
READERS = [
    "tests/stack/test_wsgi_differential.py::test_same_answer_as_gunicorn[*",
    "tests/stack/test_conformance.py::*",
    "tests/stack/test_part1_part2.py::test_every_service_answers_hello_*",
    "tests/stack/test_part2_environ.py::*",
]

# module-scoped fixtures that only make sure services are up (idempotent,
# no state): they do not bind their module's tests together
UP_ONLY_FIXTURES = {"servers_up", "frameworks_up"}

# a test whose code uses one of these names starts a twin: the same server
# again inside the service's container, on port 8899 (instrument.engine.Twin):
# one at a time per container, even on a service that is otherwise shared
TWIN_NAMES = {"Twin"}

# estimated seconds (a serial run on two cores, 2026-12-04) to start the
# longest first: a test's own line, else its module's seconds per test
SECONDS = {
    "tests/stack/test_grade.py::test_calibration_matrix_tells_the_articles_story": 114,
    "tests/stack/test_grade_class.py::test_a_class_with_hostile_*": 75,   # its class run
    "tests/stack/test_lab_e2e.py::test_lab_report_*": 27,
    "tests/stack/test_wsgi_bad_input.py::test_slow_drip_fed_head_*": 14,
    "tests/stack/test_part4.py::test_p5_drip_fed_head_*": 10,
    "tests/stack/test_grade.py::test_grade_command_*": 7,
    "tests/stack/test_lab_e2e.py::test_lab_run_*": 5,
    "tests/stack/test_part3.py::test_c2[34]_*": 7,
    "tests/stack/test_part3.py::test_c16_leaky_*": 7,
    "tests/unit/test_client3.py::test_a_client_that_overruns_*": 4,
    "tests/stack/test_part4.py::test_p3_*": 4,
}
MODULE_SECONDS = {  # module -> (seconds, tests) in that run
    "tests/stack/test_part3.py": (45, 17), "tests/stack/test_part4.py": (43, 27),
    "tests/stack/test_wsgi_bad_input.py": (24, 54),
    "tests/stack/test_wsgi_differential.py": (21, 166),
    "tests/stack/test_wsgi_robustness.py": (19, 7),
    "tests/unit/test_real_servers_part1_part3.py": (18, 48),
    "tests/unit/test_real_servers_webserver2_3h.py": (14, 47),
    "tests/stack/test_part3_wsgi.py": (12, 21), "tests/unit/test_client3.py": (11, 16),
    "tests/stack/test_part1_part2.py": (10, 38), "tests/unit/test_parser_fuzz.py": (4, 6),
}
DEFAULT_SECONDS = {"tests/stack/": 0.5, "": 0.05}

ROOT = Path(__file__).resolve().parents[1]
STACK = "tests/stack/"  # the tests against the compose services; the others run anywhere

# --------------------------------------------------------- what a test touches


def _services() -> list[str]:
    try:
        from instrument import servers
        return servers.names()
    except (ImportError, OSError):
        return []


def _strings(func, module, seen) -> tuple[set[str], set[str]]:
    """(string constants, names) in a function's code, its nested code and the
    module helpers it calls; module constants it names count as constants."""
    strings, names = set(), set()
    if not isinstance(func, types.FunctionType) or func in seen:
        return strings, names
    seen.add(func)
    glob = vars(module) if module else {}

    def walk(code):
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                walk(const)
            elif isinstance(const, str) and const != func.__doc__:
                strings.add(const)
            elif isinstance(const, (tuple, frozenset)):
                strings.update(c for c in const if isinstance(c, str))
        for name in code.co_names:
            names.add(name)
            value = glob.get(name)
            if isinstance(value, str):
                strings.add(value)
            elif isinstance(value, (list, tuple, set, frozenset)):
                strings.update(v for v in value if isinstance(v, str))
            elif (isinstance(value, types.FunctionType) and module
                  and (value.__module__ == module.__name__ or _helper(value))):
                more, more_names = _strings(value, module, seen)
                strings.update(more)
                names.update(more_names)
    walk(func.__code__)
    return strings, names


def _helper(func) -> bool:
    """A function of the suite's own helper modules (tests/stack/differential.py,
    bad_input.py, ...): the services its code names count as the test's."""
    module = sys.modules.get(func.__module__)
    path = getattr(module, "__file__", None) or ""
    return path.startswith(str(ROOT / "tests")) and not Path(path).name.startswith(
        ("test_", "conftest"))


def _composed(service: str, tokens: set[str], params: set[str]) -> bool:
    """Is the service name made of tokens joined by '-', one of them a
    parameter (an f-string such as f"part4-{kind}-{app}")?"""
    parts = service.split("-")
    reach = {0: False}  # position -> a parameter used on the way
    for i in range(len(parts)):
        if i not in reach:
            continue
        for j in range(i + 1, len(parts) + 1):
            piece = "-".join(parts[i:j])
            if piece in tokens or piece in params:
                reach[j] = reach.get(j, False) or reach[i] or piece in params
    return reach.get(len(parts), False)


def touched(item, services: list[str]) -> tuple[set[str], set[str], list[str]]:
    """(services, names, module-scoped fixtures of its module) of a test."""
    params = {str(v) for v in getattr(getattr(item, "callspec", None), "params", {}).values()
              if isinstance(v, (str, int))}
    module = getattr(item, "module", None)
    wide = []
    strings, names, seen = set(), set(), set()
    for func in [getattr(item, "function", None)] + _local_fixtures(item, wide):
        more, more_names = _strings(func, module, seen)
        strings |= more
        names |= more_names
    named = {p for p in params if p in services}
    if named:  # parametrised by service: that one, not the module's list
        return named, names, wide
    tokens = {s.strip("-:/ ") for s in strings}
    found = set()
    for service in services:
        pattern = re.compile(rf"(?<![\w-]){re.escape(service)}(?![\w-])")
        if any(pattern.search(s) for s in strings) or _composed(service, tokens, params):
            found.add(service)
    return found, names, wide


def _local_fixtures(item, wide: list[str]) -> list:
    """The fixtures the test uses that its own module defines; the names of
    those scoped wider than the function go into `wide`."""
    out = []
    info = getattr(item, "_fixtureinfo", None)
    module = getattr(item, "module", None)
    for name in getattr(item, "fixturenames", ()):
        for fixdef in (info.name2fixturedefs.get(name, ()) if info else ()):
            func = getattr(fixdef, "func", None)
            if module is not None and getattr(func, "__module__", None) == module.__name__:
                out.append(func)
                if fixdef.scope != "function" and name not in UP_ONLY_FIXTURES:
                    wide.append(name)
    return out


def _rel(item) -> str:
    return Path(str(item.path)).resolve().relative_to(ROOT).as_posix()


def assign_groups(items) -> dict[str, str | None]:
    """nodeid -> xdist group (None: runs anywhere), from the tables."""
    services = _services()
    parent: dict = {}

    def find(key):
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    keys_of = {}
    for item in items:
        rel = _rel(item)
        by_module = [g for pat, g in MODULE_GROUPS.items() if fnmatch.fnmatch(rel, pat)]
        keys = {("group", g) for g in by_module if g}
        if (by_module and not keys) or not rel.startswith(STACK):
            # mapped to None, or a unit test: only its module's shared fixtures
            keys |= {("fixture", rel, name) for name in touched(item, [])[2]}
        elif not keys and rel.startswith(STACK):
            found, names, wide = touched(item, services)
            mapped = {s: [g for pat, g in SERVICE_GROUPS.items() if fnmatch.fnmatch(s, pat)]
                      for s in found if not _locked(s)}
            keys |= {("group", g) for groups in mapped.values() for g in groups}
            if names & TWIN_NAMES:
                keys |= {("group", f"twins-{s}") for s, groups in mapped.items() if not groups}
            keys |= {("fixture", rel, name) for name in wide}
        keys_of[item.nodeid] = keys
        for key in keys:
            find(key)
        for a, b in zip(sorted(keys), sorted(keys)[1:], strict=False):
            parent[find(a)] = find(b)
    members: dict = {}
    for key in parent:
        members.setdefault(find(key), set()).add(key)

    def name(root) -> str:
        groups = sorted(k[1] for k in members[root] if k[0] == "group")
        if groups:
            return "+".join(groups)
        return sorted(Path(k[1]).stem for k in members[root])[0]
    return {nodeid: (name(find(min(keys))) if keys else None)
            for nodeid, keys in keys_of.items()}


def _locked(service: str) -> bool:
    return any(fnmatch.fnmatch(service, pat) for pat in LOCKED)


def assign_locks(items) -> dict[str, tuple[str, list[str]]]:
    """nodeid -> (shared or exclusive, the locked services it touches)."""
    from servicelocks import EXCLUSIVE, SHARED

    services = _services()
    locks = {}
    for item in items:
        rel = _rel(item)
        if not rel.startswith(STACK) or any(g is None and fnmatch.fnmatch(rel, pat)
                                            for pat, g in MODULE_GROUPS.items()):
            continue
        mine = sorted(s for s in touched(item, services)[0] if _locked(s))
        if mine:
            reader = any(fnmatch.fnmatchcase(item.nodeid, pat) for pat in READERS)
            locks[item.nodeid] = (SHARED if reader else EXCLUSIVE, mine)
    return locks


def estimate(nodeid: str) -> float:
    for pattern, seconds in SECONDS.items():
        if fnmatch.fnmatchcase(nodeid, pattern) or fnmatch.fnmatchcase(
                nodeid.split("[")[0], pattern):
            return seconds
    path = nodeid.split("::")[0]
    if path in MODULE_SECONDS:
        seconds, count = MODULE_SECONDS[path]
        return seconds / count
    return next(s for prefix, s in DEFAULT_SECONDS.items() if path.startswith(prefix))


# ------------------------------------------------------------------ the hooks

ORDER = pytest.StashKey[dict]()
RECORDS = pytest.StashKey[dict]()
GROUPS = pytest.StashKey[dict]()
GROUP_FILES = pytest.StashKey[Path]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    # before any reordering (pytest-randomly's too): the order the files say,
    # which the recorded tables keep
    config.stash[ORDER] = {item.nodeid: i for i, item in enumerate(items)}
    return (yield)


def _group_and_order(config, items):
    groups = assign_groups(items)
    config.stash[GROUPS] = groups
    from servicelocks import LOCKS

    config.stash[LOCKS] = assign_locks(items)
    folder = (getattr(config, "workerinput", None) or {}).get("lsbaws_groups")
    weight: dict = {}
    for item in items:
        key = groups[item.nodeid] or item.nodeid
        weight[key] = weight.get(key, 0) + estimate(item.nodeid)
    for item in items:
        if groups[item.nodeid]:
            item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    # longest group first; a stable sort keeps the order inside a group
    items.sort(key=lambda it: -weight[groups[it.nodeid] or it.nodeid])
    if folder:  # for the controller's scheduler
        mine = Path(folder) / f"{config.workerinput['workerid']}.json"
        mine.with_suffix(".tmp").write_text(json.dumps(
            {nodeid: f"group:{group}" for nodeid, group in groups.items() if group}))
        mine.with_suffix(".tmp").rename(mine)


class _Grouping:
    """Runs after pytest-randomly's shuffle and before xdist reads the marks."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config, items):
        _group_and_order(config, items)


def pytest_configure(config):
    config.pluginmanager.register(_Grouping(), "lsbaws-grouping")
    if getattr(config, "workerinput", None) is None and config.getoption("dist", "no") != "no":
        config.stash[GROUP_FILES] = Path(tempfile.mkdtemp(prefix="lsbaws-xdist-groups-"))


def pytest_unconfigure(config):
    shutil.rmtree(config.stash.get(GROUP_FILES, None) or "/nonexistent", ignore_errors=True)


# xdist 3.8 puts a test in its group by renaming it `nodeid@group`, which
# pytest 9.2's nodes (a NodeId, no `_nodeid`) ignore. So the workers write
# their nodeid -> group table to a file and the controller's scheduler (the
# same loadgroup scheduling) reads its groups from there.

@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    if GROUP_FILES in node.config.stash:
        node.workerinput["lsbaws_groups"] = str(node.config.stash[GROUP_FILES])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup" or GROUP_FILES not in config.stash:
        return None
    from xdist.scheduler import LoadGroupScheduling

    folder = config.stash[GROUP_FILES]

    class TableGroups(LoadGroupScheduling):
        table: dict | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.table is None:  # every worker has collected: its file is there
                files = sorted(folder.glob("*.json"))
                self.table = json.loads(files[0].read_text()) if files else {}
                reporter = config.pluginmanager.get_plugin("terminalreporter")
                if reporter and self.table:
                    reporter.write_line(describe({n: g.removeprefix("group:")
                                                  for n, g in self.table.items()}))
            return self.table.get(nodeid) or nodeid

    return TableGroups(config, log)


def describe(groups: dict) -> str:
    """One line: each group, its tests and estimated seconds, longest first."""
    sizes: dict = {}
    for nodeid, group in groups.items():
        if group:
            seconds, count = sizes.get(group, (0.0, 0))
            sizes[group] = (seconds + estimate(nodeid), count + 1)
    return "xdist groups (tests, estimated s): " + ", ".join(
        f"{g} ({n}, {s:.0f})" for g, (s, n) in sorted(sizes.items(), key=lambda kv: -kv[1][0]))


def pytest_report_collectionfinish(config, items):
    if config.getoption("verbose", 0) > 0 and config.stash.get(GROUPS, None):
        return describe(config.stash[GROUPS])
    return None


# ------------------------------------------------------------- the record tables


def _current_index(config) -> int:
    current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0].split("@")[0]
    return config.stash.get(ORDER, {}).get(current, 1 << 30)


@pytest.fixture(scope="session")
def record(request):
    """record(table, key, text, header=""): a row of a table for the docs."""
    config = request.config
    tables = config.stash.setdefault(RECORDS, {})

    def record(table: str, key: str, text: str, header: str = "") -> None:
        rows = tables.setdefault(table, {"header": header, "rows": {}})
        rows["header"] = header or rows["header"]
        rows["rows"][key] = (_current_index(config), len(rows["rows"]), text)
    return record


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the rows to the controller
        workeroutput["lsbaws_records"] = json.dumps(session.config.stash.get(RECORDS, {}))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """On the controller: a worker's rows join the tables."""
    text = getattr(node, "workeroutput", {}).get("lsbaws_records")
    if not text:
        return
    tables = node.config.stash.setdefault(RECORDS, {})
    for table, got in json.loads(text).items():
        rows = tables.setdefault(table, {"header": got["header"], "rows": {}})
        rows["header"] = rows["header"] or got["header"]
        rows["rows"].update({k: tuple(v) for k, v in got["rows"].items()})


REPORTS = Path("/lsbaws/reports")


def pytest_terminal_summary(terminalreporter, config):
    if getattr(config, "workeroutput", None) is not None:
        return
    for table, got in config.stash.get(RECORDS, {}).items():
        ordered = sorted(got["rows"].items(), key=lambda kv: kv[1][:2])
        text = "\n".join([got["header"]] * bool(got["header"])
                         + [f"| {key} | {value[2]} |" for key, value in ordered])
        terminalreporter.write_sep("-", table)
        terminalreporter.write_line(text)
        if REPORTS.is_dir() and os.access(REPORTS, os.W_OK):
            (REPORTS / f"{table}.md").write_text(text + "\n")
