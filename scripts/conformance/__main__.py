"""python -m conformance: see the package docstring."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .cases import CASES, DEVIATIONS
from .run import RECORDED, report, run, score, tally, targets, to_json, verdicts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="conformance", description=__doc__)
    parser.add_argument("--local", action="store_true",
                        help="reach the servers through 127.0.0.1 and their published ports")
    parser.add_argument("--only", default="", help="comma-separated services (default: every *-wsgi)")
    parser.add_argument("--out", default=os.environ.get("REPORTS", "reports"),
                        help="the directory for conformance.md (default: reports)")
    parser.add_argument("--record-gunicorn", action="store_true",
                        help=f"write gunicorn-wsgi's answers to {RECORDED.name} (the stack test "
                        "compares today's gunicorn with them)")
    args = parser.parse_args(argv)
    only = [name for name in args.only.split(",") if name]
    chosen = targets(args.local, only or None)
    if not chosen:
        print("conformance: no *-wsgi service to test", file=sys.stderr)
        return 2
    started = time.monotonic()
    results = run(chosen)
    seconds = time.monotonic() - started
    absent = [t.service for t in chosen
              if all(r.answer == "refused" or "Errno" in r.answer for r in results[t.service].values())]
    for service in absent:
        print(f"conformance: {service} is not reachable; left out "
              f"(docker compose --profile all up -d {service})", file=sys.stderr)
    present = [t for t in chosen if t.service not in absent]
    results = {t.service: results[t.service] for t in present}
    command = "python -m conformance" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    text = report(results, present, command, seconds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "conformance.md").write_text(text)
    why = {t.service: "not reachable (docker compose --profile all up -d " + t.service + ")"
           for t in chosen if t.service in absent}
    (out / "conformance.json").write_text(json.dumps(to_json(results, why), indent=1) + "\n")
    for target in present:
        s = score(results[target.service])
        print(f"{target.server:17s} {target.service:22s} valid {s['valid'][0]}/{s['valid'][1]}  "
              f"invalid {s['invalid'][0]}/{s['invalid'][1]}  either {s['either'][0]}/"
              f"{s['either'][1]}  all {s['all'][0]}/{s['all'][1]}  "
              + "  ".join(f"{k} {n}" for k, n in tally(verdicts(results[target.service])).items()))
    print(f"{len(CASES)} cases (+{len(DEVIATIONS)} deliberate differences) in {seconds:.1f} s; "
          f"report: {out / 'conformance.md'}, {out / 'conformance.json'}")
    if args.record_gunicorn and "gunicorn-wsgi" in results:
        labels = {name: result.label for name, result in results["gunicorn-wsgi"].items()}
        RECORDED.write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
        print(f"recorded gunicorn-wsgi's answers in {RECORDED}")
    ours_wrong = [(t.service, name) for t in present if t.ours
                  for name, r in results[t.service].items()
                  if not r.right and name in {c.name for c in CASES}]
    return 1 if ours_wrong else 0


if __name__ == "__main__":
    sys.exit(main())
