"""Which server and app a service runs, read from compose.yaml (the one
source: its build target and build args), for the rows and the chart."""

from __future__ import annotations

from functools import cache

from instrument.servers import compose_file

SERVER_BY_TARGET = {  # compose build target -> the server it runs
    "part2": "webserver2", "part3-wsgi": "webserver3h", "gunicorn": "gunicorn 27 sync",
    "gunicorn-gthread": "gunicorn 27 gthread", "waitress": "waitress", "cheroot": "cheroot",
    "granian": "granian", "uwsgi": "uWSGI",
}
APP_NAMES = {"wsgiapp": "wsgi", "flaskapp": "flask", "pyramidapp": "pyramid",
             "djangoapp": "django"}


@cache
def _services() -> dict:
    import yaml

    return (yaml.safe_load(compose_file().read_text()) or {}).get("services") or {}


def describe(service: str) -> tuple[str, str]:
    """(server, app) for a compose service: ("webserver4b", "flask"),
    ("granian", "wsgi"); ("?", "?") for a name compose.yaml does not have."""
    build = (_services().get(service) or {}).get("build")
    if not isinstance(build, dict):
        return "?", "?"
    target, args = build.get("target", ""), build.get("args") or {}
    if target in ("part3", "part4"):  # one file per step: the step names the server
        server = str(args.get("STEP", "?"))
    else:
        server = SERVER_BY_TARGET.get(target, target or "?")
    app = APP_NAMES.get(str(args.get("APP", "")), "bare")
    return server, app


def services() -> list[str]:
    return list(_services())


def port(service: str, load: str, default: int = 8888) -> int:
    """The port a load goes to: 8888, or for keep-alive the service's
    KEEPALIVE_PORT when compose.yaml gives one (uWSGI answers keep-alive on a
    second socket of the same workers: see docker/Dockerfile's uwsgi stage)."""
    if load != "keep-alive":
        return default
    env = (_services().get(service) or {}).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return int(env.get("KEEPALIVE_PORT") or default)
