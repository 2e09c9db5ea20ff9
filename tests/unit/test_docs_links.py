"""README.md and docs/*.md are a map: every relative link and `#anchor` in them
resolves, and every service and profile their `docker compose ...` commands name
exists in compose.yaml (the one list of services).

Anchors are GitHub's: a heading's text, lowercased, with every character that is
not a letter, a digit, a space, `-` or `_` dropped and each space made a `-`;
a repeated heading gets `-1`, `-2`, ... Links inside code (fenced or inline) are
not links; URLs with a scheme (https:, mailto:) are not checked here.
"""

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# The tests image holds only part of the checkout (README.md, docs/, compose.yaml,
# services/, scripts/, tests/; reports/ is mounted): there, a target under a
# top-level folder the image leaves out is not checked (the host run checks it).
FULL_CHECKOUT = (ROOT / "docker" / "Dockerfile").is_file()
LEFT_OUT_OF_IMAGE = {"docker", ".ci", ".github"}


def left_out_of_image(dest: Path) -> bool:
    if FULL_CHECKOUT or not dest.is_relative_to(ROOT) or dest == ROOT:
        return False
    top = dest.relative_to(ROOT).parts[0]
    return top in LEFT_OUT_OF_IMAGE and not (ROOT / top).exists()


FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


# ---------------------------------------------------------------- markdown

def without_code(text: str) -> str:
    """The page with fenced blocks and inline code blanked (their links are not links)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub(lambda m: " " * len(m.group(0)), text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link: its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for match in HEADING.finditer(FENCE.sub("", text)):
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(text: str) -> list[str]:
    return [m.group(1) for m in LINK.finditer(without_code(text))]


def broken_links(page: Path) -> list[str]:
    """Each link of `page` that does not resolve, with the reason."""
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in links(text):
        if SCHEME.match(target) or target.startswith("//"):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() and not left_out_of_image(dest):
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
            continue
        if anchor:
            if dest.suffix != ".md" or dest.is_dir():
                broken.append(f"{target}: an anchor into a file that is not markdown")
            elif anchor not in anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return broken


# ---------------------------------------------------------------- compose commands

# options of `docker compose` and of its subcommands that take a value
GLOBAL_VALUED = {"-f", "--file", "-p", "--project-name", "--profile", "--env-file",
                 "--project-directory", "--ansi", "--parallel", "--progress"}
SUB_VALUED = {"-e", "--env", "-w", "--workdir", "-u", "--user", "--tail", "-t", "--timeout",
              "--scale", "--entrypoint", "--name", "-v", "--volume", "-l", "--label", "--pull",
              "--index", "--since", "--until", "--format", "--exit-code-from", "-p", "--publish",
              "--wait-timeout", "--signal", "-s"}
# subcommands whose first argument is the service and the rest its command line
ONE_SERVICE = {"run", "exec"}
# subcommands whose arguments are all service names
SERVICES = {"up", "build", "logs", "restart", "stop", "start", "ps", "down", "pull", "kill",
            "rm", "top", "create", "pause", "unpause", "push", "events", "images", "port"}


def compose_commands(text: str) -> list[str]:
    """Every `docker compose ...` command line of a page: in code blocks and inline code."""
    pieces = []
    for block in FENCE.finditer(text):
        body = block.group(0).replace("\\\n", " ")
        pieces += body.splitlines()
    pieces += [m.group(2).replace("\n", " ") for m in INLINE_CODE.finditer(FENCE.sub("", text))]
    found = []
    for piece in pieces:
        piece = piece.replace("\\|", "|")
        for m in re.finditer(r"docker compose\b(.*)", piece):
            rest = re.split(r"\s(?:\||&&|\|\||;|&)\s|\s#\s|\s#$|\s2>&1|[;&]\s*$", m.group(1))[0]
            found.append("docker compose" + rest.rstrip())
    return found


def named(command: str) -> tuple[list[str], list[str]]:
    """(profiles, services) a `docker compose ...` command names."""
    try:
        words = shlex.split(command)[2:]
    except ValueError:
        words = command.split()[2:]
    profiles, services = [], []
    i = 0
    while i < len(words) and words[i].startswith("-"):           # global options
        word = words[i]
        if word.startswith("--profile="):
            profiles.append(word.split("=", 1)[1])
        elif word in GLOBAL_VALUED and i + 1 < len(words):
            if word == "--profile":
                profiles.append(words[i + 1])
            i += 1
        i += 1
    if i >= len(words):
        return profiles, services
    sub, args = words[i], words[i + 1:]
    operands = []
    j = 0
    while j < len(args):
        word = args[j]
        if word == "--":
            operands += args[j + 1:]
            break
        if word.startswith("-"):
            if word in SUB_VALUED and "=" not in word:
                j += 1
            j += 1
            continue
        operands.append(word)
        if sub in ONE_SERVICE:
            break
        j += 1
    if sub in ONE_SERVICE or sub in SERVICES:
        services = operands
    if sub == "run" and operands:                 # the tools' own service arguments
        services += served_by_tools(args[args.index(operands[0]) + 1:])
    return profiles, services


def served_by_tools(line: list[str]) -> list[str]:
    """Services named on a tool's command line: `grade SERVICE`, `lab watch SERVICE`,
    `client3 --host SERVICE`."""
    found = [line[k + 1] for k, w in enumerate(line[:-1]) if w == "--host"]
    found += [w.split("=", 1)[1] for w in line if w.startswith("--host=")]
    for tool in ("grade", "watch"):
        if tool in line:
            rest = line[line.index(tool) + 1:]
            if rest and re.fullmatch(r"[a-z0-9][a-z0-9-]*", rest[0]):
                found.append(rest[0])
    return found


def compose() -> tuple[set[str], set[str]]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = set(data["services"])
    profiles = {p for s in data["services"].values() for p in s.get("profiles", [])}
    return services, profiles | {"*"}


def unknown_names(page: Path) -> list[str]:
    services, profiles = compose()
    wrong = []
    for command in compose_commands(page.read_text(encoding="utf-8")):
        used_profiles, used_services = named(command)
        wrong += [f"`{command}`: no profile {p!r} in compose.yaml"
                  for p in used_profiles if p not in profiles]
        wrong += [f"`{command}`: no service {s!r} in compose.yaml"
                  for s in used_services if s not in services]
    return wrong


# ---------------------------------------------------------------- the pages

@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n  " + "\n  ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_compose_command_names_real_services_and_profiles(page):
    wrong = unknown_names(page)
    assert not wrong, f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(wrong)


PATHLIKE = re.compile(r"\.?[\w-]+(?:\.[\w-]+)*(?:/[\w.*-]+)*/?")


def named_paths(page: Path) -> list[str]:
    """The repository paths a page names in inline code (`scripts/lab/`, `compose.yaml`,
    `tests/unit/test_real_servers_*.py`): spans with a `/` or a known suffix, no space."""
    spans = [m.group(2).strip() for m in INLINE_CODE.finditer(FENCE.sub("", page.read_text("utf-8")))]
    return [s for s in spans if PATHLIKE.fullmatch(s) and not s.startswith("/")
            and ("/" in s or re.search(r"\.(py|ya?ml|md|sh|txt|json|toml)$", s))]


def exists(path: str) -> bool:
    """A path from the root, or a bare name (`wire.py`, `helloworld/`) somewhere in the tree.
    What the runs write under `reports/` is output: only `reports/` itself must be there."""
    path = path.rstrip("/")
    if path.startswith("reports/"):
        path = "reports"
    if "/" in path or (ROOT / path).exists() or path in LEFT_OUT_OF_IMAGE:
        return any(ROOT.glob(path)) or left_out_of_image(ROOT / path)
    return any(any((ROOT / top).glob(f"**/{path}")) for top in ("services", "scripts", "tests", "docker"))


@pytest.mark.parametrize("page", ["README.md", "docs/layout.md"])
def test_the_paths_the_map_names_exist(page):
    """The map and the layout name files that are there (a move must update them)."""
    paths = named_paths(ROOT / page)
    assert len(paths) >= 5, paths
    missing = [p for p in paths if not exists(p)]
    assert not missing, f"{page} names paths that do not exist: {missing}"


def test_readme_links_every_docs_page():
    """docs/ is reached from the map: no page of it is an orphan."""
    readme = links((ROOT / "README.md").read_text(encoding="utf-8"))
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in readme if not SCHEME.match(t)}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"README.md links no {orphans}"


def test_readme_is_a_map_of_at_most_300_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move the depth into docs/"


def test_the_commands_readme_shows_are_found():
    """The checks above see the README's own commands (so an empty match cannot pass)."""
    commands = compose_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "docker compose up part3-fork" in commands
    assert "docker compose run --rm tests" in commands
    assert named("docker compose --profile '*' build") == (["*"], [])
    assert named("docker compose run --rm tests grade part3-waitpid --only eof")[1] == [
        "tests", "part3-waitpid"]
    assert named("docker compose run --rm tests client3 --host part3-fork-leaky")[1] == [
        "tests", "part3-fork-leaky"]


def test_readme_counts_the_servers_the_tests_service_starts():
    """'starts the N servers the `tests` service depends on' is compose.yaml's count."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    depends = data["services"]["tests"].get("depends_on", {})
    m = re.search(r"starts the (\d+) servers the `tests` service depends on", readme)
    assert m, "README lost the sentence counting the servers `docker compose run --rm tests` starts"
    assert int(m.group(1)) == len(depends), f"README says {m.group(1)}, compose.yaml has {len(depends)}"


def test_readme_counts_the_conformance_cases():
    """'N cases from RFC 9110 and 9112 (M of them request smuggling)' is the corpus's count."""
    from conformance.cases import CASES

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    said = re.findall(r"(\d+) cases from (?:RFC|the RFCs)[^()]*\((\d+) of them request smuggling\)", readme)
    smuggling = sum(1 for case in CASES if getattr(case, "category", None) == "smuggling")
    assert said, "README lost the count of the conformance cases"
    assert all((int(n), int(m)) == (len(CASES), smuggling) for n, m in said), \
        f"README says {said}; scripts/conformance has {len(CASES)} cases, {smuggling} smuggling"


def test_readme_shows_the_bad_input_header_the_run_prints():
    """The expected end of the test run shows the bad-input table's header as
    tests/stack/test_wsgi_bad_input.py prints it (a new gunicorn renames its column)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    source = (ROOT / "tests" / "stack" / "test_wsgi_bad_input.py").read_text(encoding="utf-8")
    shown = [line for line in readme.splitlines() if line.startswith("| malformed request |")]
    assert len(shown) == 1, "README's expected test run lost the bad-input table's header"
    assert f'HEADER = ("{shown[0]}\\n"' in source, \
        f"README shows {shown[0]!r}; test_wsgi_bad_input.HEADER says otherwise"


def test_troubleshooting_names_the_host_ports_compose_yaml_publishes():
    """'127.0.0.1:8001 to 8501' is the lowest and highest host port of compose.yaml."""
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    ports = [int(p.split(":")[-2]) for s in data["services"].values() for p in s.get("ports", [])]
    text = " ".join((ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8").split())
    m = re.search(r"127\.0\.0\.1:(\d+) to (\d+)", text)
    assert m, "docs/troubleshooting.md lost the range of the host ports"
    assert (int(m.group(1)), int(m.group(2))) == (min(ports), max(ports)), \
        f"the host ports are {min(ports)} to {max(ports)}, docs/troubleshooting.md says {m.group(0)}"


# ---------------------------------------------------------------- the checker itself

@pytest.mark.parametrize("heading, anchor", [
    ("Beyond the article: a WSGI server that is actually correct",
     "beyond-the-article-a-wsgi-server-that-is-actually-correct"),
    ("What made them fast, and what did not", "what-made-them-fast-and-what-did-not"),
    ("Offline build (no image registry)", "offline-build-no-image-registry"),
    ("Let's Build A Web Server — runnable and tested", "lets-build-a-web-server--runnable-and-tested"),
    ("The `tests` service, 4a_b", "the-tests-service-4a_b"),
])
def test_slug_is_githubs(heading, anchor):
    assert slug(heading) == anchor


def test_a_broken_link_a_missing_anchor_and_an_unknown_service_are_caught(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "FULL_CHECKOUT", True)
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web: {profiles: [demo]}\n  db: {}\n", encoding="utf-8")
    (tmp_path / "other.md").write_text("# Other\n\n## Part two\n\n## Part two\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#part-two-1) [ok](#page) [gone](missing.md) "
        "[no anchor](other.md#part-three) [self](#nowhere) `[code](not-a-link.md)`\n\n"
        "```console\n$ docker compose --profile demo up -d web db\n"
        "$ docker compose --profile nope run --rm webb python -m x   # comment\n```\n"
        "Then `docker compose exec db ps` and `docker compose\nlogs wbe | tail -1`.\n",
        encoding="utf-8")
    broken = broken_links(page)
    assert [b.split(":")[0] for b in broken] == ["missing.md", "other.md#part-three", "#nowhere"]
    assert unknown_names(page) == [
        "`docker compose --profile nope run --rm webb python -m x`: no profile 'nope' in compose.yaml",
        "`docker compose --profile nope run --rm webb python -m x`: no service 'webb' in compose.yaml",
        "`docker compose logs wbe`: no service 'wbe' in compose.yaml",
    ]
