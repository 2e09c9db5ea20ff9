"""How the grader builds a submission (instrument/build.py): with BuildKit
where the engine has it, else (or with LSBAWS_LEGACY_BUILD=1) the legacy
builder; a build that fails says why with the failing step's own output,
which a teacher needs to tell a student what went wrong."""

from __future__ import annotations

import pytest
from instrument.build import BuildFailed, build

# the step's output is 42-printed; its command line (which the engine's error
# repeats) is not, so only the step's own output can put it in the error
FAILING = 'FROM lsbaws/part1:dev\nRUN echo "$((6 * 7))-printed" && exit 3\n'


@pytest.mark.parametrize("builder", ["buildkit", "legacy"])
def test_a_failing_step_is_reported_with_its_output(engine, tmp_path, monkeypatch, builder):
    if builder == "legacy":
        monkeypatch.setenv("LSBAWS_LEGACY_BUILD", "1")
    (tmp_path / "Dockerfile").write_text(FAILING)
    with pytest.raises(BuildFailed) as failed:
        build(engine, tmp_path, tail=6)
    assert "42-printed" in str(failed.value), str(failed.value)
    assert "3" in str(failed.value).rsplit("42-printed", 1)[1], str(failed.value)


def test_a_build_sends_what_dockerignore_leaves_and_tags_and_labels(engine, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM lsbaws/part1:dev\nCOPY . /srv/ctx/\n")
    (tmp_path / ".dockerignore").write_text("# not sent\nsecret.txt\n")
    (tmp_path / "kept.txt").write_text("kept\n")
    (tmp_path / "secret.txt").write_text("never in the image\n")
    tag = "lsbaws-test/build:dev"       # as `grade yours` tags what it builds
    image = build(engine, tmp_path, tag=tag, labels={"lsbaws.test": "build"})
    try:
        seen = engine.client.containers.run(tag, ["-A", "/srv/ctx"], entrypoint="ls", remove=True)
        assert sorted(seen.decode().split()) == [".dockerignore", "Dockerfile", "kept.txt"]
        built = engine.client.images.get(tag)
        assert built.id == image and built.labels.get("lsbaws.test") == "build"
    finally:
        engine.client.images.remove(tag, force=True)
