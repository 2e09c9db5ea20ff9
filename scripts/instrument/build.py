"""build: an image from a folder with a Dockerfile, through the engine's socket.

The grader builds what it grades: a student's submission (`grade --class`,
untagged) or a service compose has not built (`grade yours`). It asks the
engine for BuildKit (the build API's version 2), as `docker build` does: on
this project's storage driver (fuse-overlayfs) the legacy builder commits a
container for every instruction and each commit walks the whole image, so a
four-line Dockerfile on lsbaws/part1 took 14 s of CPU where BuildKit takes 5
(docs/grading.md). An engine that refuses version 2 (Windows containers, an
old or a BuildKit-less engine) gets the legacy build, as docker-py makes it;
LSBAWS_LEGACY_BUILD=1 asks for the legacy build everywhere.

Either way a failed build raises BuildFailed with the log's last lines: the
output of the step that failed (a RUN's own output) and the engine's error.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
from collections import deque
from pathlib import Path

TIMEOUT = 600           # seconds one build may take
BUILDKIT_TRACE = "moby.buildkit.trace"
BUILDKIT_IMAGE = "moby.image.id"


class BuildFailed(Exception):
    """The build ended without an image; str() is the log's tail and the error."""


def build(engine, path: Path, tag: str | None = None, labels: dict | None = None,
          tail: int = 6) -> str:
    """Build the image of the folder `path` (its Dockerfile, its .dockerignore);
    its id. Raises BuildFailed with the last `tail` lines of the log."""
    docker = engine.docker
    buildkit_said = "not asked: LSBAWS_LEGACY_BUILD is set"
    if not os.environ.get("LSBAWS_LEGACY_BUILD"):
        try:
            return _buildkit(engine, path, tag, labels, tail)
        except docker.errors.APIError as refused:      # no BuildKit on this engine
            buildkit_said = refused.explanation or str(refused)
    try:
        image, _ = engine.client.images.build(path=str(path), tag=tag, labels=labels or {},
                                              rm=True, forcerm=True, pull=False,
                                              timeout=TIMEOUT)
        return image.id
    except docker.errors.BuildError as error:
        lines = [str(c.get("stream") or c.get("error") or "").strip() for c in error.build_log]
        raise BuildFailed(" | ".join([ln for ln in lines if ln][-tail:]) or error.msg) from None
    except docker.errors.APIError as error:
        raise BuildFailed(f"{error.explanation or error} (BuildKit: {buildkit_said})") from None


def _context(path: Path) -> bytes:
    """The folder as the tar the engine reads, less what .dockerignore names.
    Whole-second times: a PAX header first (Python's tarfile writes one for a
    fractional mtime) makes BuildKit take the body for a lone Dockerfile."""
    from docker.utils.build import exclude_paths

    ignore = path / ".dockerignore"
    exclude = []
    if ignore.is_file():
        exclude = [ln.strip() for ln in ignore.read_text().splitlines()
                   if ln.strip() and not ln.strip().startswith("#")]
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name in sorted(exclude_paths(str(path), exclude, dockerfile="Dockerfile")):
            info = archive.gettarinfo(str(path / name), arcname=name)
            if info is None:     # a socket, a fifo: not sendable
                continue
            info.mtime = int(info.mtime)
            if info.isfile():
                with open(path / name, "rb") as data:
                    archive.addfile(info, data)
            else:
                archive.addfile(info)
    return body.getvalue()


def _buildkit(engine, path: Path, tag: str | None, labels: dict | None, tail: int) -> str:
    """One BuildKit build over the API: the context as the request's body, the
    answer a stream of JSON lines (BuildKit's progress as protobuf in base64,
    the image id, or an error)."""
    api = engine.client.api
    params = {"version": "2", "labels": json.dumps(labels or {})}
    if tag:
        params["t"] = tag
    response = api._post(api._url("/build"), params=params, data=_context(path), stream=True,
                         headers={"Content-Type": "application/tar"}, timeout=TIMEOUT)
    api._raise_for_status(response)
    log: deque[str] = deque(maxlen=tail)
    image = None
    for line in api._stream_helper(response, decode=True):
        if line.get("id") == BUILDKIT_TRACE:
            log.extend(trace_lines(base64.b64decode(line.get("aux") or "")))
        elif line.get("id") == BUILDKIT_IMAGE:
            image = (line.get("aux") or {}).get("ID")
        elif line.get("error"):
            error = str(line["error"]).strip()   # often a step's error said again
            raise BuildFailed(" | ".join([ln for ln in log if ln not in error] + [error]))
        elif line.get("stream", "").strip():
            log.append(line["stream"].strip())
    if not image:
        raise BuildFailed(" | ".join(log) or "the engine ended the build without an image")
    return image


def trace_lines(status: bytes) -> list[str]:
    """The lines a BuildKit StatusResponse carries: each step's output (its
    `logs`, field 3: VertexLog.msg, field 4) and a step's error (`vertexes`,
    field 1: Vertex.error, field 7), in order."""
    lines = []
    for number, value in _fields(status):
        if number == 3 and isinstance(value, bytes):
            msg = dict(_fields(value)).get(4, b"")
            lines += [ln.strip() for ln in msg.decode("utf-8", "replace").splitlines()
                      if ln.strip()]
        elif number == 1 and isinstance(value, bytes):
            error = dict(_fields(value)).get(7)
            if error:
                lines.append(error.decode("utf-8", "replace").strip())
    return lines


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i


def _fields(buf: bytes):
    """(field number, value) of a protobuf message: an int for a varint,
    bytes for a length-delimited or fixed field. Stops at what it cannot read."""
    i = 0
    try:
        while i < len(buf):
            key, i = _varint(buf, i)
            kind = key & 7
            if kind == 0:
                value, i = _varint(buf, i)
            elif kind == 2:
                size, i = _varint(buf, i)
                value, i = buf[i:i + size], i + size
            elif kind in (1, 5):
                size = 8 if kind == 1 else 4
                value, i = buf[i:i + size], i + size
            else:
                return
            if i > len(buf):     # cut short: the field is not all there
                return
            yield key >> 3, value
    except IndexError:
        return

