"""The pieces the conformance cases are made of: Case, and the request
builders (get, post, chunked) and case makers (valid, invalid, either).

A case also has a category (the part of the protocol it tests) and a level,
the RFC's keyword for what it asks of the server: MUST, SHOULD or MAY. A
server that answers a case wrong gets `fail` for a MUST and `warn` for a
SHOULD or a MAY (as the strictest published suites score); right is `pass`.
The smuggling cases name their level; the older cases take it from their
note (MUST when the note quotes one), else MAY for an "either" case and
SHOULD otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

ABSENT = object()  # the key must not be in the environ
HOST = b"Host: conformance.test\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    rfc: str  # "9112 6.3": RFC number and section
    data: bytes
    env: dict | None = None  # expected environ subset when accepted
    body: bytes | None = b""  # what the application reads from wsgi.input
    reject: tuple = ()  # acceptable refusals: statuses, or "close"
    note: str = ""
    echo: bool = True  # False: the answer has no environ (HEAD, OPTIONS *): status only
    ours: object = None  # DEVIATIONS only: what our servers answer ("env" or a status)
    level: str = ""  # MUST, SHOULD or MAY ("": from the note, see the module docstring)
    category: str = ""  # "": from the RFC section (see CATEGORIES)

    @property
    def kind(self) -> str:
        if not self.reject:
            return "valid"
        return "invalid" if self.env is None else "either"

    @property
    def section(self) -> str:
        return self.rfc

    @property
    def strength(self) -> str:
        """MUST, SHOULD or MAY."""
        if self.level:
            return self.level
        if "MUST" in self.note:
            return "MUST"
        return "MAY" if self.kind == "either" else "SHOULD"

    @property
    def group(self) -> str:
        """The category: the case's own, else the one its RFC section falls in."""
        if self.category:
            return self.category
        for prefix, name in CATEGORIES:
            if self.rfc.startswith(prefix):
                return name
        return "semantics"

    def verdict(self, right: bool) -> str:
        """pass, or for a wrong answer fail (MUST) or warn (SHOULD, MAY)."""
        return "pass" if right else ("fail" if self.strength == "MUST" else "warn")


CATEGORIES = [  # RFC section prefix -> category, first match wins
    ("9112 2", "message"), ("9112 3", "request-line"), ("9112 5", "fields"),
    ("9110 5", "fields"), ("9112 6", "framing"), ("9112 7", "chunked"), ("9112 8", "framing"),
    ("9110 4", "target"), ("9110 9", "method"),
]


def get(target=b"/environ", *fields, method=b"GET", version=b"HTTP/1.1", host=HOST, body=b""):
    head = method + b" " + target + b" " + version + b"\r\n" + (host or b"")
    return head + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def post(body, *fields, target=b"/environ"):
    return get(target, *fields, method=b"POST", body=body)


def chunked(encoded, *fields, target=b"/environ"):
    return get(target, b"Transfer-Encoding: chunked", *fields, method=b"POST", body=encoded)


def valid(name, rfc, data, env=None, body=b"", note="", echo=True, level="", category=""):
    return Case(name, rfc, data, env=dict(env or {}), body=body, note=note, echo=echo,
                level=level, category=category)


def invalid(name, rfc, data, *reject, note="", level="", category=""):
    return Case(name, rfc, data, env=None, body=None, reject=tuple(reject or (400,)), note=note,
                level=level, category=category)


def either(name, rfc, data, env, reject=(400,), body=b"", note="", level="", category=""):
    return Case(name, rfc, data, env=dict(env), body=body, reject=tuple(reject), note=note,
                level=level, category=category)


