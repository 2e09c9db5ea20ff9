"""Send the cases, judge the answers, score and report.

Each case goes out on its own connection (instrument.wire.exchange, the
one raw client), followed by a half-close, to wsgiapp's /environ route,
which answers with the environ and the body it read. judge() compares the
answer with the case: a valid case must get 200 with the expected environ
and body; an invalid one a refusal with one of its statuses; an "either"
case may get either. Why the environ-echo app is wsgiapp: it is the app
every `*-wsgi` service already serves (gunicorn's included), so no second
server has to be started inside a container, and a reader can see the same
answer with `curl 127.0.0.1:8201/environ`.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from instrument import wire
from instrument.servers import servers

from .cases import ABSENT, CASES, DEVIATIONS, Case

TIMEOUT = 5.0
RECORDED = Path(__file__).with_name("gunicorn-recorded.json")
SERVER_NAMES = {  # service name prefix -> the server it runs
    "part2-": "webserver2", "part3-wsgi-": "webserver3h", "part4-prefork-": "webserver4a",
    "part4-evloop-": "webserver4b", "gunicorn-gthread-": "gunicorn gthread",
    "gunicorn-": "gunicorn sync", "waitress-": "waitress", "cheroot-": "cheroot",
    "granian-": "granian", "uwsgi-": "uWSGI",
}
OURS_PREFIXES = ("part2-", "part3-wsgi-", "part4-")  # the project's own WSGI servers


@dataclass(frozen=True)
class Target:
    service: str
    host: str
    port: int

    @property
    def server(self) -> str:
        for prefix, name in SERVER_NAMES.items():
            if self.service.startswith(prefix):
                return name
        return self.service

    @property
    def ours(self) -> bool:
        return self.service.startswith(OURS_PREFIXES)


def targets(local: bool = False, only: list[str] | None = None) -> list[Target]:
    """The services that serve wsgiapp (`*-wsgi`), in compose.yaml's order."""
    found = []
    for server in servers():
        if not server.name.endswith("-wsgi") or (only and server.name not in only):
            continue
        if local:
            if server.host_port:
                found.append(Target(server.name, "127.0.0.1", server.host_port))
        else:
            found.append(Target(server.name, server.name, wire.PORT))
    return found


@dataclass(frozen=True)
class Result:
    answer: str  # "200", "400", "close", "timeout", "refused", ...
    accepted: bool
    right: bool
    detail: str = ""  # what was wrong

    @property
    def label(self) -> str:
        """The answer in a word or two, with what was wrong: stable across runs."""
        return self.answer + (f" ({self.detail})" if self.detail else "")


# Servers that drop a request whose client half-closed before the answer
# (granian: hyper reads the EOF and closes, no answer even to a plain GET).
# Their cases go without the half-close and are read until a whole answer;
# a truncated case then ends by the timeout ("timeout", not "close").
NO_HALF_CLOSE = ("granian-",)


def _complete(data: bytes) -> bool:
    return wire.parse_response(data).complete


def send(case: Case, target: Target, timeout: float = TIMEOUT) -> wire.Reply:
    if target.service.startswith(NO_HALF_CLOSE):
        return wire.exchange(target.host, target.port, case.data, timeout=timeout,
                             until=_complete)
    return wire.exchange(target.host, target.port, case.data, timeout=timeout, shut_wr=True)


def asked(case: Case, target: Target, timeout: float = TIMEOUT) -> wire.Reply:
    """send, and once more when not a byte came back in `timeout` s: a
    timeout is never a right answer, and a machine that stalls for seconds
    (a fresh CI machine building images beside the run) is not the server's
    answer. A server that hangs on a case hangs twice: still "timeout"."""
    reply = send(case, target, timeout)
    if reply.timed_out and not reply.data:
        reply = send(case, target, timeout)
    return reply


def _value(environ: dict, key: str):
    item = environ.get(key)
    return ABSENT if item is None else item.get("value")


def _show(value) -> str:
    return "absent" if value is ABSENT else repr(value)


def judge(case: Case, reply: wire.Reply) -> Result:
    response = reply.response() if reply.data else None
    status = response.status if response is not None and response.status else None
    if status is None:
        if reply.refused:
            answer = "refused"
        elif reply.closed:
            answer = "close"
        elif reply.timed_out:
            answer = "timeout"
        else:
            answer = reply.error or "no answer"
        right = answer == "close" and "close" in case.reject
        return Result(answer, False, right, "" if right else "no answer")
    answer = str(status)
    if not 200 <= status < 300:
        if status in case.reject:
            return Result(answer, False, True)
        if case.reject and 400 <= status < 600:
            return Result(answer, False, False, "refused, with another status")
        return Result(answer, False, False, "refused a valid request" if not case.reject
                      else "unexpected status")
    if case.env is None:
        return Result(answer, True, False, "accepted an invalid request")
    if not case.echo:
        return Result(answer, True, True)
    try:
        environ = json.loads(response.body)
    except ValueError:
        return Result(answer, True, False, "no environ in the answer")
    wrong = []
    for key, want in case.env.items():
        got = _value(environ, key)
        choices = want if isinstance(want, tuple) else (want,)
        if not any(got is choice if choice is ABSENT else got == choice for choice in choices):
            wrong.append(f"{key}={_show(got)[:60]}")
    if case.body is not None:
        read = environ.get("wsgi.input", {}).get("read")
        if read != case.body.decode("latin-1"):
            wrong.append(f"body={read!r:.40}")
    return Result(answer, True, not wrong, "; ".join(wrong))


def run(target_list: list[Target], cases: list[Case] | None = None,
        timeout: float = TIMEOUT) -> dict[str, dict[str, Result]]:
    """{service: {case name: Result}}; the targets in parallel, the cases in order."""
    cases = list(CASES + DEVIATIONS) if cases is None else cases

    def one_target(target):
        return {case.name: judge(case, asked(case, target, timeout)) for case in cases}

    with ThreadPoolExecutor(max_workers=max(1, len(target_list))) as pool:
        found = list(pool.map(one_target, target_list))
    return {target.service: results for target, results in zip(target_list, found, strict=True)}


# ------------------------------------------------------------------ scoring and the report


def score(results: dict[str, Result], cases=CASES) -> dict[str, tuple[int, int]]:
    """{kind: (right, of)} for valid, invalid, either, and all."""
    out = {}
    for kind in ("valid", "invalid", "either"):
        chosen = [case for case in cases if case.kind == kind]
        out[kind] = (sum(results[case.name].right for case in chosen), len(chosen))
    out["all"] = (sum(results[case.name].right for case in cases), len(cases))
    out["refused"] = (sum(not results[case.name].accepted for case in cases
                          if case.kind == "invalid"), out["invalid"][1])
    return out


def verdicts(results: dict[str, Result], cases=None) -> dict[str, str]:
    """{case id: pass | warn | fail}: a wrong answer fails a MUST, warns a SHOULD or MAY."""
    cases = CASES if cases is None else cases
    return {case.name: case.verdict(results[case.name].right) for case in cases}


def tally(marks: dict[str, str], cases=None) -> dict[str, int]:
    names = {case.name for case in (CASES if cases is None else cases)}
    chosen = [v for name, v in marks.items() if name in names]
    return {v: chosen.count(v) for v in ("pass", "warn", "fail")}


def to_json(all_results: dict[str, dict[str, Result]], absent: dict[str, str]) -> dict:
    """reports/conformance.json: {"cases": [{id, category, section, level}],
    "results": {service: {case id: pass | warn | fail}}, "absent": {service: why}}."""
    return {"cases": [{"id": c.name, "category": c.group, "section": c.rfc, "level": c.strength}
                      for c in CASES],
            "results": {service: verdicts(results) for service, results in all_results.items()},
            "absent": absent}


def verdict_table(all_results: dict[str, dict[str, Result]], target_list: list[Target]) -> list[str]:
    smuggling = [c for c in CASES if c.group == "smuggling"]
    lines = ["| server | service | pass | warn (SHOULD/MAY) | fail (MUST) | smuggling: pass / "
             "warn / fail | MUST failures |", "|---|---|---|---|---|---|---|"]
    for t in target_list:
        if t.service not in all_results:
            continue
        marks = verdicts(all_results[t.service])
        every, smug = tally(marks), tally(marks, smuggling)
        failed = ", ".join(name for name, v in marks.items() if v == "fail") or "none"
        lines.append(f"| {t.server} | {t.service} | {every['pass']} | {every['warn']} | "
                     f"{every['fail']} | {smug['pass']} / {smug['warn']} / {smug['fail']} | "
                     f"{failed} |")
    return lines


def _expected(case: Case) -> str:
    parts = []
    if case.env is not None:
        parts.append("200")
    parts += [str(status) for status in case.reject]
    return " or ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(all_results: dict[str, dict[str, Result]], target_list: list[Target],
           command: str, seconds: float) -> str:
    columns = [t for t in target_list if t.service in all_results]
    lines = ["# HTTP conformance: our servers, gunicorn and the peers, case by case", "",
             f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{seconds:.1f} s. {len(CASES)} cases written from RFC 9110 and RFC 9112 "
             "(scripts/conformance/cases.py), each sent on its own connection to wsgiapp's "
             "/environ. Right: a valid case answered 200 with the expected environ and body; "
             "an invalid one refused with a status the RFC allows; an 'either' case (the RFC "
             "lets the server refuse or accept) either way.", "",
             "| server | service | valid right | invalid refused right | either right | "
             "all right | invalid refused at all |", "|---|---|---|---|---|---|---|"]
    for target in columns:
        s = score(all_results[target.service])
        cells = [f"{s[k][0]} of {s[k][1]}" for k in ("valid", "invalid", "either", "all", "refused")]
        lines.append(f"| {target.server} | {target.service} | " + " | ".join(cells) + " |")
    lines += ["", "## Verdicts: pass, warn, fail", "",
              "A wrong answer to a case whose RFC level is MUST is a fail; to a SHOULD or "
              "MAY a warn. The smuggling category (scripts/conformance/smuggling.py) is "
              f"{sum(c.group == 'smuggling' for c in CASES)} of the cases.", ""]
    lines += verdict_table(all_results, columns)
    head = ("| case | kind | RFC | level | expected | " + " | ".join(t.server for t in columns)
            + " |")
    rule = "|---|---|---|---|---|" + "---|" * len(columns)

    def row(case):
        cells = []
        for target in columns:
            result = all_results[target.service][case.name]
            mark = "" if result.right else (" ✗" if case.strength == "MUST" else " (warn)")
            cells.append(_cell(result.label + mark))
        return (f"| {case.name} | {case.kind} | {case.rfc} | {case.strength} | {_expected(case)} | "
                + " | ".join(cells) + " |")

    differing = [case for case in CASES
                 if not all(all_results[t.service][case.name].right for t in columns)]
    lines += ["", "## Where a server is wrong", "",
              "✗: not what the RFC allows (the detail says what came back instead)." if differing
              else "Nowhere: every server answered every case as the RFC allows.", ""]
    if differing:
        lines += [head, rule] + [row(case) for case in differing]
    lines += ["", "## Our deliberate differences from the RFC (not scored)", "",
              "| case | RFC | the RFC says | ours answers | " + " | ".join(t.server for t in columns)
              + " |", "|---|---|---|---|" + "---|" * len(columns)]
    for case in DEVIATIONS:
        cells = [_cell(all_results[t.service][case.name].answer) for t in columns]
        rfc_says = "400" if case.reject else "200"
        lines.append(f"| {case.name} | {case.rfc} | {rfc_says} | "
                     f"{'200' if case.ours == 'env' else case.ours} | " + " | ".join(cells) + " |")
    lines += ["", "Why: " + " ".join(f"**{case.name}**: {case.note}" for case in DEVIATIONS), "",
              "## Every case", "", head, rule] + [row(case) for case in CASES]
    return "\n".join(lines) + "\n"


def recorded_labels() -> dict[str, str]:
    return json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
