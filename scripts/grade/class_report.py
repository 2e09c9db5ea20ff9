"""What `grade --class` writes into reports/class/: summary.json (the
shape the issue fixed), summary.md (the class matrix in the form of the
calibration matrix), index.html (the same matrix, each cell opening its
evidence and lesson) and junit/NAME.xml (one file per student)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

from grade import report
from grade import stages as S
from grade.calibration import SHORT

CELL = {"pass": "✓", "fail": "**✗**", "skip": "–", "error": "E"}


def summary(ids: list[str], students) -> dict:
    return {"stages": list(ids),
            "students": [{"name": s.name, "verdicts": s.verdicts(ids), "error": s.error,
                          "seconds": float(s.seconds)} for s in students]}


def markdown(ids: list[str], students, seconds: float) -> str:
    head = "| student | " + " | ".join(f"`{SHORT.get(i, i)}`" for i in ids) + " |"
    rows = [f"# The class, graded ({len(students)} submissions in {seconds:.0f} s)", "",
            head, "|---|" + "---|" * len(ids)]
    for s in students:
        v = s.verdicts(ids)
        rows.append(f"| {s.name} | " + " | ".join(CELL[v[i]] for i in ids) + " |")
    rows += ["", "✓ pass, **✗** FAIL, – skip (the evidence says why), E error (not graded: "
             "see below). Columns: " + ", ".join(f"`{SHORT.get(i, i)}` {i}" for i in ids
                                                if SHORT.get(i, i) != i) + "."]
    errors = [s for s in students if s.error]
    if errors:
        rows += ["", "Not graded:"] + [f"- {s.name}: {s.error}" for s in errors]
    noted = [s for s in students if s.notes]
    if noted:
        rows += ["", "Notes:"] + [f"- {s.name}: {n}" for s in noted for n in s.notes]
    return "\n".join(rows) + "\n"


def _cell(student, stage_id: str, verdict: str) -> str:
    st = S.BY_ID[stage_id]
    if student.error:
        evidence = student.error
    elif stage_id in student.results:
        evidence = student.results[stage_id].evidence
    else:
        evidence = "no result"
    lesson = f"lesson ({st.lesson}): {st.teaches} The fix to read: {st.fix}"
    mark = {"pass": "✓", "fail": "✗", "skip": "–", "error": "E"}[verdict]
    return (f'<td class="{verdict}"><details><summary>{mark}</summary>'
            f"<p>{html.escape(evidence)}</p><p><em>{html.escape(lesson)}</em></p>"
            "</details></td>")


def page(ids: list[str], students, seconds: float) -> str:
    head = "".join(f'<th title="{html.escape(S.BY_ID[i].checks)}">{html.escape(i)}</th>'
                   for i in ids)
    rows = []
    for s in students:
        v = s.verdicts(ids)
        note = f' title="{html.escape(" ".join(s.notes))}"' if s.notes else ""
        rows.append(f"<tr><th{note}>{html.escape(s.name)}{' *' if s.notes else ''}</th>"
                    + "".join(_cell(s, i, v[i]) for i in ids) + "</tr>")
    noted = [f"<li>{html.escape(s.name)}: {html.escape(n)}</li>" for s in students
             for n in s.notes]
    notes = f"<p>* Notes:</p><ul>{''.join(noted)}</ul>\n" if noted else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The class, graded</title>
<style>
body {{ font-family: sans-serif; }} table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 2px 4px; vertical-align: top; }}
td.pass {{ background: #dfd; }} td.fail {{ background: #fdd; }}
td.skip {{ background: #eee; }} td.error {{ background: #fc9; }}
details p {{ max-width: 28em; font-size: small; }}
</style></head><body>
<h1>The class, graded: {len(students)} submissions in {seconds:.0f} s</h1>
<p>Open a cell for the evidence and the lesson. ✓ pass, ✗ fail, – skip, E error (not graded).</p>
<table><tr><th>student</th>{head}</tr>
{chr(10).join(rows)}
</table>
{notes}</body></html>
"""


def junit(student, ids: list[str]) -> bytes:
    if not student.error:
        return report.to_junit(student.name, student.results)
    suite = ET.Element("testsuite", name=f"grade {student.name}", tests=str(len(ids)),
                       failures="0", skipped="0", errors=str(len(ids)),
                       time=f"{student.seconds:.2f}")
    for stage_id in ids:
        case = ET.SubElement(suite, "testcase", classname=f"grade.{student.name}",
                             name=stage_id, time="0")
        ET.SubElement(case, "error", message=student.error)
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def junit_name(name: str) -> str:
    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip(".") or "student") + ".xml"


def write_all(out: Path, ids: list[str], students, seconds: float) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "junit").mkdir(exist_ok=True)
    for old in (out / "junit").glob("*.xml"):
        old.unlink()   # a student who left the class leaves no stale file
    files = [out / "summary.json", out / "summary.md", out / "index.html"]
    files[0].write_text(json.dumps(summary(ids, students), indent=1) + "\n", encoding="utf-8")
    files[1].write_text(markdown(ids, students, seconds), encoding="utf-8")
    files[2].write_text(page(ids, students, seconds), encoding="utf-8")
    for s in students:
        (out / "junit" / junit_name(s.name)).write_bytes(junit(s, ids))
    return files + [out / "junit"]
