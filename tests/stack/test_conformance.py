"""HTTP conformance: our WSGI servers and gunicorn (27) against the
request set of scripts/conformance (written from RFC 9110 and RFC 9112),
its smuggling category included (the peers are compared by `conformance`,
not here: their answers are a report, not a claim of ours).

- ours (webserver2, webserver3h, and the part 4 servers) answer every valid
  case right and refuse every invalid one with a status the RFC allows;
  the deliberate differences are what docs/conformance.md says;
- gunicorn answers as recorded (scripts/conformance/gunicorn-recorded.json,
  `python -m conformance --record-gunicorn`), so a change in gunicorn is
  noticed rather than silently moving the scores;
- the bytes of the conformance findings (an earlier run's), sent to each server: ours now refuse them
  (or keep Transfer-Encoding), gunicorn as it did when they were found;
- a chunked form reaches Flask, Pyramid and Django whole.

The whole set runs once (about 2 s), shared by the tests.
"""

from __future__ import annotations

import pytest
from conformance import run as conformance
from conformance.cases import CASES, DEVIATIONS
from instrument import wire
from servicelocks import SHARED, held

GUNICORN = "gunicorn-wsgi"
TARGETS = [t for t in conformance.targets() if t.ours or t.service == GUNICORN]
OURS = [t.service for t in TARGETS if t.ours]


@pytest.fixture(scope="module")
def answers(up):
    for target in TARGETS:
        up(target.service)
    with held(SHARED, [t.service for t in TARGETS]):  # only asks (tests/servicelocks.py)
        return conformance.run(TARGETS)


def wrong(results, kind):
    return [f"{case.name} ({case.rfc}): {results[case.name].label}, want {conformance._expected(case)}"
            for case in CASES if case.kind == kind and not results[case.name].right]


def test_the_set_has_at_least_100_cases_valid_and_invalid():
    kinds = [case.kind for case in CASES]
    assert len(CASES) >= 100
    assert kinds.count("valid") >= 40 and kinds.count("invalid") >= 40


@pytest.mark.parametrize("service", OURS)
def test_ours_answers_every_valid_case_right(answers, service):
    assert wrong(answers[service], "valid") == []


@pytest.mark.parametrize("service", OURS)
def test_ours_refuses_every_invalid_case_with_a_status_the_rfc_allows(answers, service):
    assert wrong(answers[service], "invalid") == []


@pytest.mark.parametrize("service", OURS)
def test_ours_answers_every_either_case_one_of_the_ways_the_rfc_allows(answers, service):
    assert wrong(answers[service], "either") == []


@pytest.mark.parametrize("service", OURS)
def test_ours_deliberate_differences_are_the_documented_ones(answers, service):
    got = {case.name: answers[service][case.name].answer for case in DEVIATIONS}
    assert got == {case.name: "200" if case.ours == "env" else str(case.ours)
                   for case in DEVIATIONS}


def test_gunicorn_answers_as_recorded(answers):
    recorded = conformance.recorded_labels()
    assert recorded, f"no recording: python -m conformance --record-gunicorn ({conformance.RECORDED})"
    now = {name: result.label for name, result in answers[GUNICORN].items()}
    changed = {name: f"was {recorded.get(name)!r}, now {label!r}"
               for name, label in now.items() if recorded.get(name) != label}
    assert changed == {}, "gunicorn answers differently: rerun with --record-gunicorn " \
                          "if this is a new gunicorn, and update docs/conformance.md's scores"


# ---- the conformance findings: the same bytes to every server ------------------------------

HEAD = b"Host: conformance.test\r\n"
FINDINGS = {  # name: (bytes, what ours answers, what gunicorn 27 answers; "env": 200)
    # gunicorn 23 answered "close" to chunk-size-whitespace and 200 to the other five it now refuses
    "transfer-encoding-kept": (
        b"POST /environ HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n", "env", "env"),
    "userinfo-not-in-host": (
        b"GET http://user:pass@example.org:8080/environ HTTP/1.1\r\n\r\n", 400, "env"),
    "chunk-size-whitespace": (
        b"POST /environ HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0 \r\n\r\n", 400, 400),
    "non-ascii-target": ("GET /environ/café HTTP/1.1\r\n".encode() + HEAD + b"\r\n", 400, 400),
    "trailer-content-length": (
        b"POST /environ HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n", 400, 400),
    "trailer-host": (
        b"POST /environ HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nHost: evil.test\r\n\r\n", 400, 400),
    "trailer-transfer-encoding": (
        b"POST /environ HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 400),
    "two-empty-lines-first": (b"\r\n\r\nGET /environ HTTP/1.1\r\n" + HEAD + b"\r\n", 400, 400),
    "content-type-differing": (
        b"POST /environ HTTP/1.1\r\n" + HEAD + b"Content-Type: text/plain\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1\r\n\r\nx", 400, 400),
}


def answer_of(reply):
    if reply.data:
        response = reply.response()
        if response.status == 200:
            return "env", response.json()
        return response.status, None
    return "close" if reply.closed else "timeout", None


@pytest.mark.parametrize("finding", FINDINGS)
@pytest.mark.parametrize("service", OURS + [GUNICORN])
def test_the_conformance_findings(answers, service, finding):  # answers: the services are up
    data, ours, gunicorn = FINDINGS[finding]
    got, environ = answer_of(wire.exchange(service, wire.PORT, data, timeout=5, shut_wr=True))
    assert got == (gunicorn if service == GUNICORN else ours)
    if got == "env" and finding == "transfer-encoding-kept":
        values = {key: item["value"] for key, item in environ.items()}
        assert values["HTTP_TRANSFER_ENCODING"] == "chunked"
        assert environ["wsgi.input"]["read"] == "hello"
        if service != GUNICORN:
            assert (values["CONTENT_LENGTH"], values["wsgi.input_terminated"]) == ("5", "True")


FORM = (b"POST %s HTTP/1.1\r\nHost: conformance.test\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        b"3\r\na=1\r\n5\r\n&b=22\r\n0\r\n\r\n")


FRAMEWORKS = [("part2-flask", b"/form"), ("part2-pyramid", b"/form"), ("part2-django", b"/upload"),
              ("part3-wsgi-flask", b"/form"), ("part3-wsgi-pyramid", b"/form"),
              ("part3-wsgi-django", b"/upload")]


@pytest.fixture(scope="module")
def frameworks_up(up):
    for service, _ in FRAMEWORKS:
        up(service)


@pytest.mark.parametrize("service, path", FRAMEWORKS)
def test_a_chunked_form_reaches_the_framework_whole(frameworks_up, service, path):
    # Werkzeug trusts CONTENT_LENGTH with Transfer-Encoding: chunked only when
    # wsgi.input_terminated says the stream ends by itself
    reply = wire.exchange(service, wire.PORT, FORM % path, timeout=5, shut_wr=True)
    response = reply.response()
    assert response.status == 200, reply.summary()
    assert response.json() == {"fields": 2, "bytes": 5}
