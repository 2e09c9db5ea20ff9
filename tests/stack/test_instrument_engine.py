"""The instrument's engine against the real one: what a look-up costs it.

A test's first use of a service finds its container; a test run does that
about 300 times. docker-py's list inspects every container it lists, one
request each, unless asked for a sparse list: with the stack's 45
containers that was 46 requests a look-up (12,864 inspects in a run), now
two (the service's row, then its whole inspect).

A look into a service (its processes, a /proc file) is no exec either: the
engine's relay runs it (instrument.relay), as an exec would have, for an
inspect of the container instead of ~0.06 CPU-seconds of the engine's time.
"""

from __future__ import annotations

import contextlib

from instrument import procs


@contextlib.contextmanager
def requests_to(api):
    """The requests the engine's client sends meanwhile: ["GET /path", ...]."""
    sent = []
    send = api.send

    def counting(request, **kwargs):
        sent.append(f"{request.method} {request.path_url.split('?')[0]}")
        return send(request, **kwargs)

    api.send = counting
    try:
        yield sent
    finally:
        del api.send   # the instance attribute goes: the class's send again


def test_a_service_is_found_in_two_requests_to_the_engine(engine):
    with requests_to(engine.client.api) as sent:
        container = engine.service("part1").container
    assert container.attrs["Config"]["Labels"]["com.docker.compose.service"] == "part1"
    assert len(sent) <= 2, sent


def test_a_look_into_a_service_is_no_exec_and_sees_what_an_exec_sees(engine):
    svc = engine.service("part1")
    assert engine.relay() is not None, "this engine refused the relay's observer"
    with requests_to(engine.client.api) as sent:
        look = svc.look()
        fds = svc.fds(look.server_pid)
        listening = svc.listening()
    assert not [r for r in sent if r.endswith("/exec")], sent
    assert look.server and listening and fds and fds >= 4, (look.server, listening, fds)
    code, out = svc.exec(["sh", "-c", procs.PROBE, "probe", ""])
    by_exec = procs.parse_probe(out)
    assert code == 0 and by_exec.server_pid == look.server_pid
    assert by_exec.queue(8888) == look.queue(8888) and by_exec.pids_max == look.pids_max


def test_the_looks_into_a_copy_are_no_exec_but_its_sentinel(engine):
    from instrument.copies import Copies

    copies = Copies(engine)
    try:
        with requests_to(engine.client.api) as sent:
            copy = copies.start("lsbaws/part1:dev", "relay-check")
            ready = copy.wait_listening(30)
            look = copy.look()
        execs = [r for r in sent if r.endswith("/exec")]
        assert len(execs) == 1, sent   # the sentinel (instrument.copies), no look
        assert ready.server_pid and look.server_pid == ready.server_pid and look.listening
    finally:
        copies.remove_all()
