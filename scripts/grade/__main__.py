"""grade SERVICE [--only a,b] [--junit-xml PATH] [--json PATH] [--env NAME=VALUE] | --list
grade --class [FOLDER] [--only a,b] [--out reports/class]

Exit status: 0 every stage passed or was skipped, 1 a stage failed, 2 a usage
error (unknown service or stage, no engine socket, a target that does not
start or listen on 8888 within 30 s), each said in one line. With --class: 0
once every submission is graded or reported as an error (a failing student
is not a failing run), 2 for a usage error (no folder, no submissions).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from grade import report
from grade import stages as S


class Usage(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise Usage(message)


def parser() -> Parser:
    p = Parser(prog="grade", add_help=True,
               description="Grade a server of the stack (or yours) stage by stage, lesson by "
                           "lesson of the article.")
    p.add_argument("service", nargs="?", help="a server service of compose.yaml, or `yours`")
    p.add_argument("--list", action="store_true", help="the stages, what each checks, the lesson")
    p.add_argument("--only", metavar="STAGES", help="comma-separated stage ids")
    p.add_argument("--junit-xml", metavar="PATH", help="one testcase per stage")
    p.add_argument("--json", metavar="PATH", help='{"target", "stages": [...]}')
    p.add_argument("--env", metavar="NAME=VALUE", action="append", default=[],
                   help="set in every copy of the target (e.g. SLEEP=2 for 3b)")
    p.add_argument("--jobs", type=int, default=3, help="stages at once (default 3)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--readme", action="store_true",
                   help="print the stage table and calibration matrix docs/grading.md embeds")
    p.add_argument("--calibrate", action="store_true",
                   help="grade the stack's servers and compare with grade/calibration.py "
                        "(the stages each row proves; --full: every stage)")
    p.add_argument("--full", action="store_true", help="with --calibrate: every stage")
    p.add_argument("--class", dest="klass", action="store_true",
                   help="grade every subfolder with a Dockerfile of FOLDER (default: the "
                        "folder LSBAWS_CLASS names, mounted at /class) into reports/class/")
    p.add_argument("--out", metavar="DIR", default="reports/class",
                   help="with --class: where the summary lands (default reports/class)")
    p.add_argument("--at-once", type=int, default=None,
                   help="with --class: students graded at once (default 2)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except Usage as error:
        print(f"grade: {error}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.list:
        print(report.list_stages())
        return 0
    if args.readme:
        from grade.calibration import readme_matrix

        print("<!-- grade-stages:start -->\n" + S.readme_table() + "\n<!-- grade-stages:end -->")
        print()
        print("<!-- grade-matrix:start -->\n" + readme_matrix() + "\n<!-- grade-matrix:end -->")
        return 0
    if args.calibrate:
        from instrument.engine import Engine, EngineError

        try:
            engine = Engine()
        except EngineError as error:
            raise Usage(str(error)) from None
        from grade.calibration import calibrate

        only = [args.service] if args.service else None
        return calibrate(engine, full=args.full, only=only, jobs=args.jobs)
    if args.klass:
        return grade_class(args)
    if not args.service:
        raise Usage("name a service to grade (e.g. `grade part3-waitpid`, `grade yours`), "
                    "or --list")
    ids = stage_ids(args.only)
    from grade.target import parse_env

    try:
        env = parse_env(args.env)
    except ValueError as error:
        raise Usage(str(error)) from None
    if args.jobs < 1:
        raise Usage("--jobs wants 1 or more")

    from grade.target import server_names

    valid = server_names()
    if args.service not in valid:
        raise Usage(f"unknown service {args.service!r}; valid: {', '.join(valid)}")
    from instrument.engine import Engine, EngineError

    try:
        engine = Engine()
    except EngineError as error:
        raise Usage(str(error)) from None
    return grade(engine, args.service, ids, env, args)


def stage_ids(only: str | None) -> list[str]:
    if not only:
        return list(S.IDS)
    ids = [i.strip() for i in only.split(",") if i.strip()]
    unknown = [i for i in ids if i not in S.BY_ID]
    if unknown or not ids:
        raise Usage(f"unknown stage {', '.join(unknown) or '(none given)'}; valid: "
                    f"{', '.join(S.IDS)}")
    return [i for i in S.IDS if i in ids]


def grade_class(args) -> int:
    from pathlib import Path

    from grade import classroom

    folder = classroom.folder_from(args.service)
    if not str(folder) or str(folder) == ".":
        raise Usage("no class folder: run `LSBAWS_CLASS=./path/to/submissions docker compose "
                    "run --rm tests grade --class` (one subfolder with a Dockerfile per student)")
    if not folder.is_dir():
        raise Usage(f"no class folder at {folder}")
    if not classroom.submissions(folder):
        raise Usage(f"no submissions in {folder}: no subfolder holds a Dockerfile")
    ids = stage_ids(args.only)
    at_once = args.at_once or classroom.STUDENTS_AT_ONCE
    if at_once < 1 or args.jobs < 1:
        raise Usage("--at-once and --jobs want 1 or more")
    from instrument.engine import Engine, EngineError

    try:
        engine = Engine()
    except EngineError as error:
        raise Usage(str(error)) from None

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        classroom.grade_class(engine, folder, Path(args.out), ids, at_once, args.jobs)
    except KeyboardInterrupt:
        print("grade: interrupted; its copies and images removed", file=sys.stderr)
        return 130
    return 0


def grade(engine, service: str, ids: list[str], env: dict, args) -> int:
    from instrument.copies import Copies, CopyError
    from instrument.engine import EngineError

    from grade.checks import Ctx
    from grade.runner import Progress, run
    from grade.target import resolve

    def say(text):
        print(text, file=sys.stderr, flush=True)

    try:
        target = resolve(engine, service, env, say)
    except EngineError as error:
        raise Usage(str(error)) from None
    copies = Copies(engine)
    copies.sweep()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    progress = Progress(service, len(ids), enabled=not args.quiet)
    t0 = time.monotonic()
    try:
        results = run(Ctx(target, copies), ids, progress, args.jobs)
    except CopyError as error:
        raise Usage(f"{service} does not start: {error}") from None
    except KeyboardInterrupt:
        progress.close()
        say("grade: interrupted; removing its copies")
        return 130
    finally:
        progress.close()
        copies.remove_all()
    seconds = time.monotonic() - t0
    if env:
        target.notes.append("every copy ran with " + " ".join(f"{k}={v}" for k, v in env.items()))
    print(report.table(service, target.image, results, seconds, target.notes), flush=True)
    if args.junit_xml:
        say(f"grade: wrote {report.write_junit(args.junit_xml, service, results)}")
    if args.json:
        say(f"grade: wrote {report.write_json(args.json, service, results)}")
    return 1 if any(r.verdict in ("fail", "error") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
