"""The article's part 3 exercise: claim C25, a concurrent WSGI server.

webserver3h (part 2's WSGI server + fork per connection + the waitpid
reaper) serves the four applications to 50 clients at once and leaves no
zombie; gunicorn (2 sync workers) serves the same applications to the same
load, side by side, as the yardstick.
"""

import json
import time

import pytest
from stackkit import fetch, fetch_parallel, http_get, wait_for

BODIES = {
    "wsgi": b"Hello world from a simple WSGI application!",
    "flask": b"Hello world from Flask!",
    "pyramid": b"Hello world from Pyramid!",
    "django": b"Hello world from Django!",
}
CLIENTS = 50
SERVICES = [f"{server}-{app}" for server in ("part3-wsgi", "gunicorn") for app in BODIES]


@pytest.mark.parametrize("service", SERVICES, indirect=True)
def test_c25_serves_50_clients_at_once_without_zombies(service, record_property):
    name = service.name
    body = BODIES[name.rsplit("-", 1)[1]]
    t0 = time.monotonic()
    replies = fetch_parallel(name, CLIENTS, http_get("/hello", name), None, timeout=30)
    took = time.monotonic() - t0
    record_property(f"c25_{name}_seconds", round(took, 2))
    print(f"{name}: {CLIENTS} clients at once in {took:.2f} s")
    errors = [r.error for r in replies if r.error]
    assert not errors, f"{len(errors)} of {CLIENTS} failed: {errors[:5]}"
    statuses = sorted({r.status for r in replies})
    assert statuses == [200], f"statuses {statuses}"
    wrong = [r.body for r in replies if r.body.strip() != body]
    assert not wrong, f"{len(wrong)} bodies are not {body!r}: {wrong[:3]}"
    assert all(r.eof for r in replies), "a connection was not closed after its response"
    wait_for(lambda: not service.zombies(), 10, 0.2, f"no zombie in {name}")
    assert service.running()


def test_c25_the_concurrent_server_tells_the_app_it_is_multiprocess(stack):
    """The same environ as C9, from webserver3h: one process per request."""
    name = "part3-wsgi-wsgi"
    stack[name].ensure_running()
    reply = fetch(name, http_get("/environ", name), None, timeout=10)
    assert reply.status == 200, reply.data[:300]
    environ = json.loads(reply.body)
    assert environ["wsgi.multiprocess"] == {"type": "bool", "value": "True"}
    assert environ["wsgi.multithread"] == {"type": "bool", "value": "False"}
