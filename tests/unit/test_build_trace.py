"""instrument/build.py without an engine: BuildKit's progress (protobuf) read
into log lines, and the legacy builder taken when the engine refuses
BuildKit. The builds themselves: tests/stack/test_grade_build.py."""

from __future__ import annotations

import types

import pytest
from instrument import build as B

import docker


def varint(n: int) -> bytes:
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def field(number: int, value) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def test_trace_lines_reads_step_output_and_step_errors_in_order():
    vertex = field(1, b"sha256:ab") + field(3, b"[2/2] RUN make") + field(4, 0) \
        + field(7, b"process did not complete successfully: exit code: 2")
    log = field(1, b"sha256:ab") + field(3, 1) + field(4, b"cc -o server server.c\n"
                                                       b"server.c:3: error: expected ';'\n")
    status = field(3, log) + field(1, vertex) + field(2, field(1, b"sha256:ab"))
    assert B.trace_lines(status) == ["cc -o server server.c", "server.c:3: error: expected ';'",
                                     "process did not complete successfully: exit code: 2"]


def test_trace_lines_stops_at_a_cut_message_without_raising():
    whole = field(3, field(4, b"first line\n")) + field(3, field(4, b"second line\n"))
    assert B.trace_lines(whole[:-5]) == ["first line"]


class RefusingApi:
    def _url(self, path):
        return path

    def _post(self, *args, **kwargs):
        raise docker.errors.APIError("buildkit not supported by daemon")


def test_an_engine_that_refuses_buildkit_gets_the_legacy_build(tmp_path, monkeypatch):
    monkeypatch.delenv("LSBAWS_LEGACY_BUILD", raising=False)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    asked = []

    def legacy_build(**kwargs):
        asked.append(kwargs)
        return types.SimpleNamespace(id="sha256:legacy"), iter(())

    client = types.SimpleNamespace(api=RefusingApi(),
                                   images=types.SimpleNamespace(build=legacy_build))
    engine = types.SimpleNamespace(client=client, docker=docker)
    assert B.build(engine, tmp_path, tag="t:dev") == "sha256:legacy"
    assert asked and asked[0]["path"] == str(tmp_path) and asked[0]["tag"] == "t:dev"


def test_a_legacy_build_that_the_engine_refuses_says_what_both_builders_said(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")

    def legacy_build(**kwargs):
        raise docker.errors.APIError("no space left on device")

    client = types.SimpleNamespace(api=RefusingApi(),
                                   images=types.SimpleNamespace(build=legacy_build))
    engine = types.SimpleNamespace(client=client, docker=docker)
    with pytest.raises(B.BuildFailed, match="no space left.*BuildKit: buildkit not supported"):
        B.build(engine, tmp_path)
