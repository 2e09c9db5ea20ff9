"""The instrument's engine against the real one: what a look-up costs it.

A test's first use of a service finds its container; a test run does that
about 300 times. docker-py's list inspects every container it lists, one
request each, unless asked for a sparse list: with the stack's 45
containers that was 46 requests a look-up (12,864 inspects in a run), now
two (the service's row, then its whole inspect).
"""

from __future__ import annotations


def test_a_service_is_found_in_two_requests_to_the_engine(engine):
    api = engine.client.api
    sent = []
    send = api.send

    def counting(request, **kwargs):
        sent.append(f"{request.method} {request.path_url.split('?')[0]}")
        return send(request, **kwargs)

    api.send = counting
    try:
        container = engine.service("part1").container
    finally:
        del api.send   # the instance attribute goes: the class's send again
    assert container.attrs["Config"]["Labels"]["com.docker.compose.service"] == "part1"
    assert len(sent) <= 2, sent
