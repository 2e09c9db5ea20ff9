"""Our WSGI servers answer like gunicorn, request by request; and under
wsgiref.validate. The cases and what differs by design are in differential.py.
"""

from __future__ import annotations

import json
import re

import pytest
from differential import (
    APPS,
    BAD_LOG,
    BIG_FORM,
    CASES,
    DIFFERS_BY_DESIGN,
    FORM_CT,
    HOST,
    Case,
    ask,
    gunicorn,
    ours,
    without_port,
)
from instrument import wire
from instrument.twin import Twin
from instrument.waiting import poll
from instrument.wire import request


def _params():
    for app in APPS:
        for case in CASES[app]:
            yield pytest.param(app, case, id=f"{app}-{case.id}")


@pytest.fixture(scope="module", autouse=True)
def servers_up(up):
    for app in APPS:
        for name in (*ours(app), gunicorn(app)):
            up(name)


def test_at_least_25_cases_per_application():
    for app in APPS:
        assert len(CASES[app]) >= 25, f"{app}: {len(CASES[app])} cases"


@pytest.mark.parametrize("app,case", list(_params()))
def test_same_answer_as_gunicorn(app, case):
    reference = ask(gunicorn(app), case)
    if case.expect is not None:
        assert reference.status == case.expect, \
            f"gunicorn answered {reference.status} to {case.id}, the case expects {case.expect}"
    for server in ours(app):
        got = ask(server, case)
        assert got.status == reference.status, f"{server}: status"
        assert got.content_type == reference.content_type, f"{server}: Content-Type"
        if case.method == "HEAD":  # gunicorn may send one: see DIFFERENCES_BY_DESIGN
            assert got.body == b"", f"{server}: a body after a HEAD answer"
        else:
            assert got.body == reference.body, f"{server}: body differs from gunicorn's"


# ---------------------------------------------------------------- by design

def _environ(server: str, case: Case) -> dict:
    answer = ask(server, case)
    assert answer.status == 200
    return {k: v["value"] for k, v in json.loads(answer.body).items()}


@pytest.mark.parametrize("key", list(DIFFERS_BY_DESIGN), ids=lambda k: f"{k[0]}-{k[1]}")
def test_differs_from_gunicorn_by_design(key, capsys):
    app, case_id = key
    case, expected = DIFFERS_BY_DESIGN[key]
    theirs = None
    if case_id == "upload-100k-chunked":
        plain = Case("plain", "POST", "/upload", (FORM_CT,), BIG_FORM)
        expected = ask(gunicorn(app), plain)
        assert json.loads(expected.body)["fields"] > 50
    for server in ours(app):
        if case_id == "environ-absolute-form":
            env = _environ(server, case)
            assert env["HTTP_HOST"] == "other.example:8080", server
            assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/environ", "q=1"), server
        elif case_id == "environ-chunked":
            env = _environ(server, case)
            assert env.get("CONTENT_LENGTH") == "100", server
            assert env.get("HTTP_TRANSFER_ENCODING") == "chunked", server
            assert env.get("wsgi.input_terminated") == "True", server
        elif case_id == "environ-repeated-raw":
            env = _environ(server, case)
            assert env["HTTP_X_REP"] == "a, b", server
            assert env["HTTP_COOKIE"] == "a=1; b=2", server
        else:
            assert ask(server, case) == expected, server
    if case_id.startswith("environ-"):
        env = _environ(gunicorn(app), case)
        theirs = {k: env.get(k) for k in ("HTTP_HOST", "CONTENT_LENGTH",
                                          "HTTP_TRANSFER_ENCODING", "HTTP_X_REP", "HTTP_COOKIE")}
    else:
        theirs = ask(gunicorn(app), case, strict=False)
    with capsys.disabled():
        print(f"\n  [by design] {app} {case_id}: gunicorn answered {theirs!r:.300}")


# ---------------------------------------------------------------- under wsgiref.validate
# For each application a twin of each of our servers is started inside the
# service's own container (part2-<app>: webserver2.py; part3-wsgi-<app>:
# webserver3h.py) with WSGI_VALIDATE=1, so wsgiref's validator stands between
# the server and the application and checks both sides of PEP 3333 on every
# request. The twin gets every case above and must answer each exactly as
# the same server without the validator does; no AssertionError, traceback,
# WSGIWarning or 500 may appear in its log. Then a request with a method the
# validator does not know must make it warn: the validator is really there.

VALIDATED = {  # service prefix -> (the server's file, its directory in the image)
    "part2": ("webserver2.py", "/srv/lsbaws/part2"),
    "part3-wsgi": ("webserver3h.py", "/srv/lsbaws/part3"),
}
@pytest.mark.parametrize("prefix", list(VALIDATED))
@pytest.mark.parametrize("app", APPS)
def test_application_passes_wsgiref_validator(up, app, prefix):
    service = up(f"{prefix}-{app}")
    script, workdir = VALIDATED[prefix]
    with Twin(service, ["python", script, f"{app}app:app"], workdir=workdir,
              WSGI_VALIDATE=1) as twin:
        # wsgi.input_terminated makes Werkzeug call read() without a size on a
        # chunked request, which the input-termination extension allows and PEP 3333's
        # validator refuses: an incompatibility of the two, not of the server
        checked = [case for case in CASES[app] if not (app == "flask" and "chunked" in case.id)]
        for case in checked:
            plain = ask(service.name, case)
            validated = ask(service.name, case, port=twin.port)
            assert validated.status != 500, \
                f"{case.id}: 500 under the validator; log:\n{twin.log()[-3000:]}"
            assert without_port(validated) == without_port(plain), \
                f"{case.id}: the validated twin answers otherwise; log:\n{twin.log()[-3000:]}"
        log = twin.log()
        assert twin.alive(), f"the twin died; log:\n{log[-3000:]}"
        wire.exchange(service.name, twin.port, request("BREW", "/hello", HOST), timeout=20)
        warned = poll(lambda: "Unknown REQUEST_METHOD: 'BREW'" in twin.log(), 5, 0.1)
    bad = [line for line in log.splitlines() if BAD_LOG.search(line)]
    assert not bad, "the validator complained:\n" + "\n".join(bad[:20]) + \
        f"\n--- log ---\n{log[-3000:]}"
    served = len(re.findall(r'" [1-5]\d\d \d+', log))
    assert served >= len(checked), f"only {served} access lines in the twin's log:\n{log}"
    assert warned, "no WSGIWarning for an unknown method: is wsgiref.validate on in the twin?"
