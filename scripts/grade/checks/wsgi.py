"""Part 2's stages: a WSGI server runs the grader's apps (its own copies
with APP set): the four frameworks, the environ, a whole body, parity with
gunicorn. Each skips on a server that takes no APP."""

from __future__ import annotations

import hashlib
import json
import os
import threading

from instrument import servers, wire
from instrument.copies import Copy, CopyError

from grade import stages as S
from grade.checks.base import (
    APP,
    APP_NAMES,
    GREETING,
    PORT,
    Ctx,
    Result,
    answered,
    bad,
    get,
    ok,
    skip,
)
from grade.requests import HOST, PARITY
from grade.target import GUNICORN_SERVICE


def _not_wsgi(ctx: Ctx) -> Result | None:
    if ctx.target.wsgi:
        return None
    return skip("not a WSGI server: its image sets no APP (module of module:app) to take "
                "an application from")


def check_wsgi_apps(ctx: Ctx) -> Result:
    if (no := _not_wsgi(ctx)) is not None:
        return no
    results: dict[str, str] = {}

    def one(kind):
        try:
            copy = ctx.copy(f"wsgi-apps.{kind}", app=kind)
        except CopyError as error:
            results[kind] = f"did not start: {error}"
            return
        reply = get(copy, timeout=10)
        if reply.status == 200 and reply.body == GREETING[kind]:
            results[kind] = ""
        else:
            results[kind] = f"got {reply.summary()} {reply.body[:60]!r}"
        copy.remove()

    threads = [threading.Thread(target=one, args=(k,)) for k in APP]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    failed = {k: v for k, v in results.items() if v}
    missing = [k for k in APP if k not in results]
    if failed or missing:
        parts = [f"{APP_NAMES[k]}: {v}" for k, v in failed.items()]
        parts += [f"{APP_NAMES[k]}: no result" for k in missing]
        return bad("; ".join(parts))
    return ok("bare WSGI, Flask, Pyramid and Django each answered 200 with their own page")


def check_environ(ctx: Ctx) -> Result:
    if (no := _not_wsgi(ctx)) is not None:
        return no
    copy = ctx.copy("environ", app="wsgi")
    reply = wire.exchange(copy.address(), PORT, wire.request(
        "GET", "/environ?probe=1&x=%41", "grade.test:8888", [("X-Grade", "42")]),
        S.ANSWER_TIMEOUT, until=answered)
    if reply.status != 200:
        return bad(f"/environ got {reply.summary()}")
    try:
        report = json.loads(reply.body)
    except ValueError:
        return bad(f"/environ did not answer the grader's app's JSON: {reply.body[:80]!r}")
    if report["problems"]:
        n = len(report["problems"])
        return bad(f"{n} problem{'s' * (n > 1)}: " + "; ".join(report["problems"][:4]))
    return ok(f"{len(report['keys'])} keys; every PEP 3333 key present with its type and value")


def check_body(ctx: Ctx) -> Result:
    if (no := _not_wsgi(ctx)) is not None:
        return no
    copy = ctx.copy("body", app="wsgi")
    body = os.urandom(S.BODY_SIZE)
    reply = wire.exchange(copy.address(), PORT, wire.request(
        "POST", "/echo", HOST, [("Content-Type", "application/octet-stream")], body),
        10, until=answered)
    if reply.status != 200:
        how = "reset" if reply.reset else reply.summary()
        return bad(f"no answer from the app for a {len(body):,}-byte POST: {how} "
                   "(the server stopped reading the body?)")
    try:
        got = json.loads(reply.body)
    except ValueError:
        return bad(f"/echo did not answer the grader's app's JSON: {reply.body[:80]!r}")
    if got["length"] != len(body) or got["sha256"] != hashlib.sha256(body).hexdigest():
        return bad(f"the app got {got['length']:,} of {len(body):,} bytes"
                   + ("" if got["length"] != len(body) else ", different bytes"))
    return ok(f"the app read all {len(body):,} bytes (SHA-256 equal)")


def check_parity(ctx: Ctx) -> Result:
    if (no := _not_wsgi(ctx)) is not None:
        return no
    gunicorn = next((s for s in servers.servers() if s.name == GUNICORN_SERVICE), None)
    if gunicorn is None:
        return skip(f"no {GUNICORN_SERVICE} service in compose.yaml to compare with")
    try:
        ctx.copies.client.images.get(gunicorn.image)
    except Exception:
        return skip(f"no gunicorn image {gunicorn.image} to compare with: "
                    f"`docker compose build {GUNICORN_SERVICE}`")
    copies: dict[str, Copy] = {}
    errors: dict[str, str] = {}

    def start(role, image):
        try:
            copies[role] = ctx.copy(f"parity.{role}", app="wsgi", image=image)
        except CopyError as error:
            errors[role] = str(error)

    threads = [threading.Thread(target=start, args=a)
               for a in (("target", None), ("gunicorn", gunicorn.image))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if "gunicorn" in errors:
        return skip(f"the gunicorn copy did not start: {errors['gunicorn']}")
    if "target" in errors:
        return bad(f"the copy with the grader's app did not start: {errors['target']}")

    def seen(copy, data):
        reply = wire.exchange(copy.address(), PORT, data, S.ANSWER_TIMEOUT, until=answered)
        resp = reply.response()
        ctype = (resp.header("Content-Type") or "").replace(" ", "").lower()
        return resp.status, ctype, resp.body

    differ = []
    for label, data in PARITY:
        ours, theirs = seen(copies["target"], data), seen(copies["gunicorn"], data)
        if ours != theirs:
            differ.append(f"{label}: {_difference(ours, theirs)}")
    if differ:
        return bad(f"{len(differ)} of {len(PARITY)} answers differ from gunicorn's: "
                   + "; ".join(differ[:2]))
    return ok(f"{len(PARITY)} requests answered as gunicorn answers them (status, content type, "
              "body)")


def _difference(ours, theirs) -> str:
    """The first thing that differs, said briefly."""
    if ours[0] != theirs[0]:
        return f"status {ours[0]}, gunicorn {theirs[0]}"
    if ours[1] != theirs[1]:
        return f"content type {ours[1] or 'none'}, gunicorn {theirs[1] or 'none'}"
    try:
        a, b = json.loads(ours[2]), json.loads(theirs[2])
        key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        return f"the app saw {key} {a.get(key)!r}, under gunicorn {b.get(key)!r}"
    except (ValueError, StopIteration, AttributeError):
        return f"body {ours[2][:40]!r}, gunicorn {theirs[2][:40]!r}"
