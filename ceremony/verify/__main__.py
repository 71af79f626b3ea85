"""``python -m ceremony.verify BUNDLE [--json]``: the verifier with no device library at all."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ceremony.verify.core import Report, verify_bundle


def render(report: Report) -> str:
    """The human report: one line per numbered step, then the verdict."""
    out = [f"bundle: {report.bundle}"]
    for step in report.steps:
        mark = {True: "ok  ", False: "FAIL", None: "----"}[step.ok]
        where = ""
        if step.line is not None:
            seq = "" if step.seq is None else f", seq {step.seq}"
            where = f" (transcript.jsonl line {step.line}{seq})"
        detail = f": {step.detail}" if step.detail else ""
        out.append(f"  {mark} {step.number:>2}. {step.name}{where}{detail}")
    if report.ok:
        kind = " REHEARSAL" if report.rehearsal else ""
        out.append(f"VERIFIED{kind}: ceremony {report.ceremony_id}, outcome {report.outcome}, "
                   f"{report.entries} entries, head {report.head}")
        if report.original is not None:
            who = ", ".join(report.original["contributors"]) or "nobody"
            out.append(f"RECOVERY of ceremony {report.original['ceremony_id']} (head "
                       f"{report.original['head']}): its root key, rebuilt from the shares "
                       f"of {who}")
    else:
        failed = report.first_failure
        assert failed is not None
        out.append(f"NOT VERIFIED: step {failed.number} ({failed.name}) failed "
                   f"[{failed.requirement}]")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ceremony.verify",
                                     description="Verify a ceremony bundle offline.")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = verify_bundle(args.bundle)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
