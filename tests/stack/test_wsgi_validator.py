"""Issue 4: every application, wrapped by wsgiref.validate, passes through both servers.

For each application a twin of the server is started inside the service's
own container (part2-<app>: webserver2.py; part3-wsgi-<app>: webserver3h.py)
with WSGI_VALIDATE=1 on port 8899, so wsgiref's validator stands between
the server and the application and checks both sides of PEP 3333 on every
request: the environ, start_response, the body iterable and its close(),
wsgi.input and wsgi.errors. The twin gets the application's requests from
the differential tests (GET, HEAD, 404, 405, forms over 64 KiB, chunked,
Expect: 100-continue, the CSRF flow, the JSON endpoint, the Pyramid
route) and must answer each exactly as the same server without the
validator does. Its output goes to a file in the container's /tmp; no
AssertionError, traceback, WSGIWarning or 500 may appear in it.
"""

from __future__ import annotations

import json
import re

import pytest
from test_wsgi_differential import APPS, CASES, Answer, ask
from wsgikit import ServerTwin

TWIN_PORT = 8899
SERVERS = {  # service prefix -> (the server's file, its directory in the image)
    "part2": ("webserver2.py", "/srv/lsbaws/part2"),
    "part3-wsgi": ("webserver3h.py", "/srv/lsbaws/part3"),
}
BAD_LOG = re.compile(r"AssertionError|Traceback|WSGIWarning|Exception ignored|"
                     r'" 5\d\d \d+')


def _without_port(answer):
    """The twin listens on 8899: /environ's SERVER_PORT says so, rightly."""
    if answer.content_type == "application/json" and b'"SERVER_PORT"' in answer.body:
        data = json.loads(answer.body)
        data.pop("SERVER_PORT")
        return Answer(answer.status, answer.content_type, json.dumps(data).encode())
    return answer


def _cases(app):
    # the fragment case is an xfail of the differential test (a '#' in PATH_INFO)
    return [c for c in CASES[app] if c.id != "fragment-in-target"]


@pytest.mark.parametrize("prefix", list(SERVERS))
@pytest.mark.parametrize("app", APPS)
def test_application_passes_wsgiref_validator(stack, app, prefix):
    service = stack[f"{prefix}-{app}"]
    service.ensure_running()
    script, workdir = SERVERS[prefix]
    twin = ServerTwin(service, ["python", script, f"{app}app:app"], TWIN_PORT, workdir,
                      env={"WSGI_VALIDATE": "1"}, tag="validate")
    with twin:
        for case in _cases(app):
            plain = ask(service.name, case)
            validated = ask(service.name, case, port=TWIN_PORT)
            assert validated.status != 500, \
                f"{case.id}: 500 under the validator; log:\n{twin.log()[-3000:]}"
            assert _without_port(validated) == _without_port(plain), \
                f"{case.id}: the validated twin answers otherwise; log:\n{twin.log()[-3000:]}"
        log = twin.log()
        assert twin.alive(), f"the twin died; log:\n{log[-3000:]}"
    bad = [line for line in log.splitlines() if BAD_LOG.search(line)]
    assert not bad, "the validator complained:\n" + "\n".join(bad[:20]) + \
        f"\n--- log ---\n{log[-3000:]}"
    served = len(re.findall(r'" [1-5]\d\d \d+', log))
    assert served >= len(_cases(app)), f"only {served} access lines in the twin's log:\n{log}"
