"""servers: the list of server services, read from compose.yaml (the one source).

    for s in servers(): print(s.name, s.profiles, s.host_port, s.image)

A server is every service of compose.yaml but the tools (`tests`, `lab`),
in the file's order. Services other helpers add (part 4, gunicorn's
threaded worker, `yours`, a calibration server) come with it; code that
wants the article's own 21 asks `article()`, which keeps the services of
the article's profiles.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TOOLS = ("tests", "lab")
ARTICLE_PROFILES = ("part2", "part3", "part3-wsgi", "gunicorn")


@dataclass(frozen=True)
class Server:
    name: str
    profiles: tuple[str, ...]   # () for a service that starts without --profile
    host_port: int | None       # the published port on 127.0.0.1, if any
    image: str
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def article(self) -> bool:
        """One of the article's 21: part1 (no profile), or a service whose
        profiles are article profiles only (and `all`); gunicorn's threaded
        worker is also in `part4`, so it is not one."""
        named = set(self.profiles) - {"all"}
        if not named:
            return self.name == "part1"
        return named <= set(ARTICLE_PROFILES)


def compose_file() -> Path:
    here = Path(__file__).resolve()
    for candidate in (os.environ.get("LSBAWS_COMPOSE", ""), here.parents[2] / "compose.yaml",
                      "/lsbaws/compose.yaml"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("compose.yaml not found: set LSBAWS_COMPOSE")


def parse(text: str) -> list[Server]:
    import yaml

    services = (yaml.safe_load(text) or {}).get("services") or {}
    found = []
    for name, spec in services.items():
        if name in TOOLS:
            continue
        spec = spec or {}
        env = spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.partition("=")[::2] for e in env)
        found.append(Server(name, tuple(spec.get("profiles") or ()), _host_port(spec),
                            str(spec.get("image", "")),
                            tuple((str(k), str(v)) for k, v in env.items())))
    return found


def _host_port(spec: dict) -> int | None:
    for port in spec.get("ports") or []:
        text = str(port.get("published", "")) if isinstance(port, dict) else str(port)
        parts = text.split(":")
        if len(parts) >= 2 and parts[-2].isdigit():
            return int(parts[-2])
        if isinstance(port, dict) and text.isdigit():
            return int(text)
    return None


@cache
def servers(path: str | None = None) -> tuple[Server, ...]:
    return tuple(parse(Path(path or compose_file()).read_text()))


def names(path: str | None = None) -> list[str]:
    return [s.name for s in servers(path)]


def article(path: str | None = None) -> list[Server]:
    return [s for s in servers(path) if s.article]
