"""The article's part 3 exercise: claim C25, a concurrent WSGI server.

webserver3h (part 2's WSGI server + fork per connection + the waitpid
reaper) serves the four applications to many clients at once and leaves no
zombie; gunicorn (2 sync workers) serves the same applications to the same
load, side by side, as the yardstick.

"At once" is shown, not assumed: five clients connect and say nothing, and
the server's own tables show how it holds them: how many live children it
has, and how many of the ten connections a process has accept()ed (in the
container's /proc/net/tcp a connection still waiting in the listen backlog
has no inode yet). webserver3h has a live child and an accepted connection
for each of the five at the same moment; gunicorn's two sync workers accept
two; the iterative webserver2 accepts one. Then every request is released
at once and all five are answered. (Five: webserver2 keeps the article's
listen backlog of 5, and a sixth connect() would wait for room.)
"""

import json

import pytest
from instrument import procs, wire
from instrument.engine import PORT
from instrument.waiting import poll, wait_for

BODIES = {
    "wsgi": b"Hello world from a simple WSGI application!",
    "flask": b"Hello world from Flask!",
    "pyramid": b"Hello world from Pyramid!",
    "django": b"Hello world from Django!",
}
CLIENTS = 50
SERVICES = [f"{server}-{app}" for server in ("part3-wsgi", "gunicorn") for app in BODIES]
HELD = 5
KINDS = {"part3-wsgi": "a child per connection", "gunicorn": "a pool of workers",
         "part2": "one connection at a time"}


def expected_shape(kind: str, workers: int) -> tuple[int, int]:
    """How a server holds HELD silent connections: (new live children, accepted)."""
    return {"a child per connection": (HELD, HELD),
            "a pool of workers": (0, workers),
            "one connection at a time": (0, 1)}[kind]


@pytest.mark.parametrize("service, kind", [
    (f"{prefix}-{app}", kind) for prefix, kind in KINDS.items() for app in BODIES],
    indirect=["service"])
def test_c25_how_each_server_holds_five_clients_at_once(service, kind):
    """webserver3h: five live children at the same moment; gunicorn and the
    iterative webserver2 are told apart from it (and from each other) by the
    same two numbers."""
    name = service.name
    server = service.server_pid()
    wait_for(lambda: not [p for p in service.children(server) if p.zombie or
                          "gunicorn" not in p.args], 10, 0.2, f"{name} to have no request child")
    workers = {p.pid for p in service.children(server)}  # gunicorn's pool; none for ours
    seen = {}

    def shape(ports):
        look = service.look(server)
        kids = [p for p in procs.children(look.table, server)
                if p.pid not in workers and not p.zombie]
        accepted = [r for r in procs.tcp_rows(look.tcp) if r.local_port == PORT
                    and r.remote_port in ports and r.state == "01" and r.inode != "0"]
        return len(kids), len(accepted)

    def connected(socks):
        ports = {s.getsockname()[1] for s in socks}
        want = expected_shape(kind, len(workers))
        seen["shape"] = (poll(lambda: (got := shape(ports)) == want and got, 10, 0.1)
                         or shape(ports))

    replies = wire.burst(name, PORT, HELD, wire.get("/hello", name), timeout=30,
                         connected=connected)
    children, accepted = seen["shape"]
    print(f"{name}: {HELD} silent clients -> {children} new children alive, {accepted} "
          f"connections accepted ({len(workers)} workers before)")
    assert (children, accepted) == expected_shape(kind, len(workers)), (
        f"{name} should hold {HELD} clients as {kind}: expected (children, accepted) "
        f"{expected_shape(kind, len(workers))}, saw {(children, accepted)}")
    app = name.rsplit("-", 1)[1]
    assert [r.status for r in replies] == [200] * HELD, [r.summary() for r in replies]
    assert all(r.body.strip() == BODIES[app] for r in replies)


@pytest.mark.parametrize("service", SERVICES, indirect=True)
def test_c25_serves_50_clients_at_once_without_zombies(service, record_property):
    name = service.name
    body = BODIES[name.rsplit("-", 1)[1]]
    replies = wire.parallel(name, PORT, CLIENTS, wire.get("/hello", name), timeout=30)
    took = max(r.elapsed for r in replies)
    record_property(f"c25_{name}_seconds", round(took, 2))
    print(f"{name}: {CLIENTS} clients at once in {took:.2f} s")
    errors = [r.summary() for r in replies if not r.eof]
    assert not errors, f"{len(errors)} of {CLIENTS} did not end with the response: {errors[:5]}"
    statuses = sorted({r.status for r in replies})
    assert statuses == [200], f"statuses {statuses}"
    wrong = [r.body for r in replies if r.body.strip() != body]
    assert not wrong, f"{len(wrong)} bodies are not {body!r}: {wrong[:3]}"
    wait_for(lambda: not service.zombies(), 10, 0.2, f"no zombie in {name}")
    assert service.running()


def test_c25_the_concurrent_server_tells_the_app_it_is_multiprocess(up):
    """The same environ as C9, from webserver3h: one process per request."""
    name = "part3-wsgi-wsgi"
    up(name)
    reply = wire.exchange(name, data=wire.get("/environ", name), timeout=10)
    assert reply.status == 200, reply.data[:300]
    environ = json.loads(reply.body)
    assert environ["wsgi.multiprocess"] == {"type": "bool", "value": "True"}
    assert environ["wsgi.multithread"] == {"type": "bool", "value": "False"}
