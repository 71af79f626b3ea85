"""`ceremony status [DIR] [--json | --tui] [--at TIME]`: the keys a directory's bundles and
lineage records know of (ceremony/status.py builds the report; this prints or shows it).

Exit 0 when nothing is overdue and everything verifies, 1 otherwise; 2 for a directory
that does not exist or a malformed ``--at``. Failures are CeremonyErrors; cli/main.py maps
them to exit codes.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ceremony.errors import UsageError

EXIT_OK, EXIT_CHECK_FAILED = 0, 1


def add_parser(sub: Any) -> None:
    """Add `status` to the `ceremony` parser's subcommands."""
    p = sub.add_parser("status", help="every root key known from the bundles and lineage "
                       "records in a directory: state, age, next rotation, what is overdue "
                       "or does not verify (exit 1 then)")
    p.add_argument("directory", type=Path, nargs="?", default=Path("."),
                   help="where the bundles are (searched below; default: the current "
                   "directory)")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--json", action="store_true", help="print the report as JSON "
                      "(format ceremony.status.v1, docs/status.md)")
    view.add_argument("--tui", action="store_true", help="show it in the terminal UI "
                      "(read-only)")
    p.add_argument("--at", metavar="DATE", help="as seen at another time (UTC; YYYY-MM-DD or "
                   "YYYY-MM-DDTHH:MM:SSZ): what will be overdue on that day")


def parse_at(text: str | None) -> datetime | None:
    """``--at``: a UTC date or date and time; UsageError (exit 2) otherwise."""
    if text is None:
        return None
    for shape in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, shape).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise UsageError(f"--at {text!r} is not a UTC date (YYYY-MM-DD) or time "
                     "(YYYY-MM-DDTHH:MM:SSZ)", hint="for example --at 2030-01-01")


def cmd_status(args: argparse.Namespace) -> int:
    """`ceremony status`: 0 all fine, 1 something overdue or not verifying, 2 bad input."""
    from ceremony.status import render_text, status

    report = status(args.directory, parse_at(args.at))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    elif args.tui:
        from ceremony.tui.status import StatusApp

        StatusApp(report).run()
    else:
        print(render_text(report))
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED
