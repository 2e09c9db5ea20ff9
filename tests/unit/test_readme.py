"""README's lab table is the experiments' own data, printed by `lab readme-table`."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lab_table_is_what_lab_readme_table_prints():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- lab-table:start -->\n", "\n<!-- lab-table:end -->"
    assert start in readme and end in readme, "README lost its lab-table markers"
    in_readme = readme.split(start, 1)[1].split(end, 1)[0].strip()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    printed = subprocess.run([sys.executable, "-m", "lab", "readme-table"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert in_readme == printed, "README's lab table is stale: paste `lab readme-table`"
