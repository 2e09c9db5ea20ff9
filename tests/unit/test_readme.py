"""README's tables are copies of one source each: the lab table of the
experiments (`lab readme-table`, in docs/lab.md), the services table of compose.yaml."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lab_table_is_what_lab_readme_table_prints():
    readme = (ROOT / "docs" / "lab.md").read_text(encoding="utf-8")  # README's depth on the lab
    start, end = "<!-- lab-table:start -->\n", "\n<!-- lab-table:end -->"
    assert start in readme and end in readme, "docs/lab.md lost its lab-table markers"
    in_readme = readme.split(start, 1)[1].split(end, 1)[0].strip()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    printed = subprocess.run([sys.executable, "-m", "lab", "readme-table"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert in_readme == printed, "docs/lab.md's lab table is stale: paste `lab readme-table`"


def test_readme_services_table_names_every_service_of_compose_yaml():
    """compose.yaml is the one list of services; README's table must not forget one."""
    from instrument.servers import TOOLS, names

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## The services", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| ")]
    named = set()
    for cell in rows:
        parts = [p.strip() for p in cell.split(",")]
        stem = parts[0].rsplit("-", 1)[0]
        named.add(parts[0])
        named.update(stem + p if p.startswith("-") else p for p in parts[1:])
    missing = [name for name in [*names(), *TOOLS] if name not in named]
    assert not missing, f"README's services table lacks {missing}"
