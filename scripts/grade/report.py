"""The grade as a table (stdout), JUnit XML and JSON."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

from grade import stages as S
from grade.checks import Result

MARK = {"pass": "pass", "fail": "FAIL", "skip": "skip", "error": "ERROR"}


def table(target: str, image: str, results: dict[str, Result], seconds: float,
          notes: list[str] = ()) -> str:
    width = max(80, min(140, shutil.get_terminal_size((120, 24)).columns))
    idw = max(len(i) for i in S.IDS)
    ev_width = width - idw - 9
    lines = [f"grade {target} ({image}): {len(results)} stages in {seconds:.0f} s"]
    lines += [f"  note: {n}" for n in notes]
    lines.append(f"{'stage':<{idw}}  result  evidence")
    for stage_id, r in results.items():
        wrapped = textwrap.wrap(r.evidence, ev_width) or [""]
        lines.append(f"{stage_id:<{idw}}  {MARK[r.verdict]:<6}  {wrapped[0]}")
        lines += [f"{'':<{idw}}          {w}" for w in wrapped[1:]]
        if r.verdict in ("fail", "error"):
            st = S.BY_ID[stage_id]
            lesson = textwrap.wrap(f"lesson ({st.lesson}): {st.teaches} See {st.fix}", ev_width)
            lines += [f"{'':<{idw}}          {w}" for w in lesson]
    counts = {v: sum(r.verdict == v for r in results.values()) for v in MARK}
    lines.append(f"{counts['pass']} pass, {counts['fail']} FAIL, {counts['skip']} skip"
                 + (f", {counts['error']} ERROR" if counts["error"] else ""))
    return "\n".join(lines)


def to_json(target: str, results: dict[str, Result]) -> dict:
    return {"target": target,
            "stages": [{"id": i, "verdict": r.verdict, "evidence": r.evidence,
                        "seconds": r.seconds} for i, r in results.items()]}


def to_junit(target: str, results: dict[str, Result]) -> bytes:
    suite = ET.Element("testsuite", name=f"grade {target}", tests=str(len(results)),
                       failures=str(sum(r.verdict == "fail" for r in results.values())),
                       skipped=str(sum(r.verdict == "skip" for r in results.values())),
                       errors=str(sum(r.verdict == "error" for r in results.values())),
                       time=f"{sum(r.seconds for r in results.values()):.2f}")
    for stage_id, r in results.items():
        case = ET.SubElement(suite, "testcase", classname=f"grade.{target}", name=stage_id,
                             time=f"{r.seconds:.2f}")
        if r.verdict == "fail":
            st = S.BY_ID[stage_id]
            node = ET.SubElement(case, "failure", message=r.evidence)
            node.text = f"{r.evidence}\nlesson ({st.lesson}): {st.teaches}\nthe fix: {st.fix}"
        elif r.verdict == "error":
            ET.SubElement(case, "error", message=r.evidence)
        elif r.verdict == "skip":
            ET.SubElement(case, "skipped", message=r.evidence)
        else:
            ET.SubElement(case, "system-out").text = r.evidence
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write(path: str, data: bytes) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def write_json(path: str, target: str, results: dict[str, Result]) -> Path:
    return write(path, (json.dumps(to_json(target, results), indent=1) + "\n").encode())


def write_junit(path: str, target: str, results: dict[str, Result]) -> Path:
    return write(path, to_junit(target, results))


def list_stages() -> str:
    idw = max(len(i) for i in S.IDS)
    out = []
    for s in S.STAGES:
        out.append(f"{s.id:<{idw}}  {s.lesson:<7} {s.checks}")
        out.append(f"{'':<{idw}}          passes when: {s.threshold}")
        out.append(f"{'':<{idw}}          the lesson: {s.teaches}")
        out.append(f"{'':<{idw}}          the fix: {s.fix}"
                   + ("   (WSGI servers only)" if s.wsgi else ""))
    return "\n".join(out)
