"""What is graded: a server service of compose.yaml, by name, as its image.

`yours` (and any service whose image the grader can build itself: a build
context without build args, e.g. the busybox calibration server) is built
through the engine first, so `grade yours` grades the files as they are now:
the tests service mounts ${LSBAWS_YOURS:-./services/yours} at /yours.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from instrument import servers
from instrument.engine import EngineError

YOURS_MOUNT = Path(os.environ.get("LSBAWS_YOURS_MOUNT", "/yours"))
ROOT = Path(__file__).resolve().parents[2]
APPS_DIR = Path(__file__).resolve().parent / "apps"
APPS_PATH = "/lsbaws-grade"      # where the grader's apps land in a copy
GUNICORN_SERVICE = "gunicorn-wsgi"

# services the grader builds itself (from a directory with a Dockerfile that
# needs no build argument) when asked to grade them
SELF_BUILT = {"yours": None, "busybox": ROOT / "services" / "busybox"}


@dataclass
class Target:
    name: str
    image: str
    env: dict[str, str] = field(default_factory=dict)     # --env overrides
    image_env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def wsgi(self) -> bool:
        """A WSGI target takes its application from APP, as the stack's WSGI images do."""
        return bool(self.env.get("APP") or self.image_env.get("APP"))

    def copy_env(self, app: str | None = None) -> dict[str, str]:
        env = dict(self.env)
        if app:
            env["APP"] = app
            path = self.env.get("PYTHONPATH") or self.image_env.get("PYTHONPATH", "")
            env["PYTHONPATH"] = APPS_PATH + (":" + path if path else "")
        return env


def grader_files() -> dict[str, bytes]:
    return {f"{APPS_PATH}/{p.name}": p.read_bytes() for p in sorted(APPS_DIR.glob("*.py"))}


def server_names() -> list[str]:
    return servers.names()


def resolve(engine, name: str, env: dict[str, str], say=print, source: str | None = None,
            image: str | None = None) -> Target:
    """The service's image (built first if the grader builds it). `source` and
    `image`: build that directory of the checkout into that tag instead (the
    calibration grades the starter without touching the user's `yours`)."""
    known = {s.name: s for s in servers.servers()}
    if name not in known:
        raise EngineError(f"unknown service {name!r}; valid: {', '.join(known)}")
    if source:
        image = image or f"lsbaws/{name}-grade:dev"
        _build(engine, name, ROOT / source, source, image, say)
    else:
        image = known[name].image or f"{engine.project}-{name}"
        if name in SELF_BUILT:
            build(engine, name, image, say)
    try:
        config = engine.client.images.get(image).attrs["Config"]
    except engine.docker.errors.ImageNotFound:
        raise EngineError(f"image {image} of {name} is missing: run "
                          f"`{engine.compose_command('--profile', '*', 'build', name)}`") from None
    image_env = dict(e.partition("=")[::2] for e in config.get("Env") or [])
    return Target(name, image, dict(env), image_env)


def build(engine, name: str, image: str, say=print) -> None:
    """Build the service's image through the engine, from its directory."""
    if name == "yours":
        source = YOURS_MOUNT if (YOURS_MOUNT / "Dockerfile").is_file() else None
        where = os.environ.get("LSBAWS_YOURS") or "./services/yours"
        if source is None:
            try:
                engine.client.images.get(image)
            except engine.docker.errors.ImageNotFound:
                raise EngineError(f"no Dockerfile at {YOURS_MOUNT} (the tests service mounts "
                                  "${LSBAWS_YOURS:-./services/yours} there) and no image "
                                  f"{image}: run `{engine.compose_command('build', 'yours')}`"
                                  ) from None
            say(f"grade: {YOURS_MOUNT} is not mounted: grading the image {image} as it is")
            return
    else:
        source = SELF_BUILT[name]
        where = str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source)
        try:
            engine.client.images.get(image)
            return  # built already (by compose or an earlier grade)
        except engine.docker.errors.ImageNotFound:
            pass
    _build(engine, name, source, where, image, say)


def _build(engine, name: str, source: Path, where: str, image: str, say) -> None:
    from instrument.build import BuildFailed
    from instrument.build import build as build_image

    say(f"grade: building {name} from {where} ...")
    try:
        build_image(engine, source, tag=image, labels={"lsbaws.built-by": "grade"}, tail=3)
    except BuildFailed as error:
        raise EngineError(f"{name} did not build from {where}: {error}") from None


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"--env wants NAME=VALUE, got {pair!r}")
        env[key] = value
    return env
